//! Backup and restore through the real binary: a backup taken while signups keep arriving
//! restores into a fresh SQLite and a fresh PostgreSQL database, where every account that
//! existed before the backup started can log in and the audit log verifies.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portvakt::ops::backup::{self, tables};
use reqwest::StatusCode;

use crate::helpers::{
    PASSWORD, TestApp, TestDatabase, eventually, fresh_database, skipped, spawn_app_on,
    spawn_app_with,
};

/// `portvakt` with only the given variables (and a scratch working directory).
async fn portvakt(env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_portvakt"));
    cmd.current_dir(dir.path());
    for (key, _) in std::env::vars() {
        if key.starts_with("PORTVAKT_") {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env.iter().copied());
    let out = cmd.args(args).output().await.expect("portvakt runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The row count `backup verify` prints for `table`.
fn manifest_rows(manifest: &str, table: &str) -> Option<i64> {
    manifest.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some(table))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

/// Takes a backup of `app` with the binary into `dir`; returns its path.
async fn backup_of(app: &TestApp, dir: &Path, name: &str) -> PathBuf {
    let file = dir.join(name);
    let (ok, out, err) = app.cli(&["backup", "--out", path_str(&file)]).await;
    assert!(ok, "backup failed: {out}{err}");
    file
}

/// Restores `file` into a fresh SQLite data directory; returns the directory.
async fn restore_into_sqlite(file: &Path, secret: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out, err) = portvakt(
        &[
            ("PORTVAKT_DATA_DIR", path_str(dir.path())),
            ("PORTVAKT_SECRET_KEY", secret),
        ],
        &["restore", path_str(file)],
    )
    .await;
    assert!(ok, "restore into SQLite failed: {out}{err}");
    assert!(out.contains("restored"), "{out}");
    dir
}

/// Every account logs in on `app`, and `audit verify` passes on its database (`env` names
/// it and the secret key).
async fn everyone_logs_in_and_the_audit_log_verifies(
    app: &TestApp,
    emails: &[String],
    env: &[(&str, &str)],
) {
    assert!(!emails.is_empty());
    for email in emails {
        assert_eq!(
            app.login(email, PASSWORD).await.status(),
            StatusCode::OK,
            "{email} logs in on the restored copy"
        );
    }
    let (ok, out, err) = app.cli_with(env, &["audit", "verify"]).await;
    assert!(ok, "audit verify on the restored copy: {out}{err}");
    assert!(out.contains("audit log OK"), "{out}");
}

async fn user_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
}

async fn sign_up(app: &TestApp, n: usize) -> Vec<String> {
    let mut emails = Vec::new();
    for _ in 0..n {
        let email = format!("b-{}@example.com", uuid::Uuid::new_v4().simple());
        assert_eq!(
            app.signup(&email, PASSWORD).await.status(),
            StatusCode::CREATED
        );
        emails.push(email);
    }
    emails
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_signups_restores_into_both_backends_with_every_committed_user() {
    let secret = portvakt::crypto::secret::generate();
    let source =
        Arc::new(spawn_app_on(TestDatabase::Sqlite, &[("secret_key", secret.as_str())]).await);
    // Signups keep arriving, from two clients, until the backup is done.
    let committed = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for _ in 0..2 {
        let (app, committed, stop) = (source.clone(), committed.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let email = format!("c-{}@example.com", uuid::Uuid::new_v4().simple());
                if app.signup(&email, PASSWORD).await.status() == StatusCode::CREATED {
                    committed.lock().unwrap().push(email);
                }
            }
        }));
    }
    let some = eventually(Duration::from_secs(60), || async {
        committed.lock().unwrap().len() >= 6
    })
    .await;
    assert!(some, "signups are being committed");

    let before_backup: Vec<String> = committed.lock().unwrap().clone();
    let files = tempfile::tempdir().unwrap();
    let file = backup_of(&source, files.path(), "during-signups.backup.gz").await;
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let total = committed.lock().unwrap().len();
    let (ok, manifest, err) = portvakt(&[], &["backup", "verify", path_str(&file)]).await;
    assert!(ok, "{err}");

    // SQLite.
    let restored_dir = restore_into_sqlite(&file, &secret).await;
    let restored = spawn_app_on(
        TestDatabase::Sqlite,
        &[
            ("data_dir", path_str(restored_dir.path())),
            ("secret_key", secret.as_str()),
        ],
    )
    .await;
    let restored_env = [
        ("PORTVAKT_DATA_DIR", path_str(restored_dir.path())),
        ("PORTVAKT_SECRET_KEY", secret.as_str()),
    ];
    everyone_logs_in_and_the_audit_log_verifies(&restored, &before_backup, &restored_env).await;
    let users = user_count(&restored).await;
    assert!(
        users >= before_backup.len() as i64 && users <= total as i64,
        "{users} users restored: at least the {} committed before the backup, at most all {total}",
        before_backup.len()
    );
    assert_eq!(
        manifest_rows(&manifest, "users"),
        Some(users),
        "the manifest counts the restored users:\n{manifest}"
    );

    // PostgreSQL.
    let db = fresh_database().await;
    let Some(url) = db.url().map(str::to_string) else {
        skipped(
            "a_backup_taken_during_signups_restores_into_both_backends_with_every_committed_user (PostgreSQL half)",
            "set PORTVAKT_TEST_DATABASE_URL to restore into PostgreSQL too",
        );
        return;
    };
    let (ok, out, err) = portvakt(
        &[
            ("PORTVAKT_DATABASE_URL", url.as_str()),
            ("PORTVAKT_SECRET_KEY", secret.as_str()),
        ],
        &["restore", path_str(&file)],
    )
    .await;
    assert!(ok, "restore into PostgreSQL failed: {out}{err}");
    let on_postgres = spawn_app_on(db, &[("secret_key", secret.as_str())]).await;
    everyone_logs_in_and_the_audit_log_verifies(
        &on_postgres,
        &before_backup,
        &[("PORTVAKT_SECRET_KEY", secret.as_str())],
    )
    .await;
    assert_eq!(user_count(&on_postgres).await, users);
}

#[tokio::test]
async fn a_postgres_backup_restores_into_sqlite() {
    let db = fresh_database().await;
    if !db.is_postgres() {
        skipped(
            "a_postgres_backup_restores_into_sqlite",
            "set PORTVAKT_TEST_DATABASE_URL to back up from PostgreSQL",
        );
        return;
    }
    let secret = portvakt::crypto::secret::generate();
    let source = spawn_app_on(db, &[("secret_key", secret.as_str())]).await;
    let emails = sign_up(&source, 3).await;
    // Sessions and refresh tokens travel too.
    let pair = source.login_ok(&emails[0], PASSWORD).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup_of(&source, files.path(), "pg.backup.gz").await;

    let dir = restore_into_sqlite(&file, &secret).await;
    let restored = spawn_app_on(
        TestDatabase::Sqlite,
        &[
            ("data_dir", path_str(dir.path())),
            ("secret_key", secret.as_str()),
        ],
    )
    .await;
    let restored_env = [
        ("PORTVAKT_DATA_DIR", path_str(dir.path())),
        ("PORTVAKT_SECRET_KEY", secret.as_str()),
    ];
    everyone_logs_in_and_the_audit_log_verifies(&restored, &emails, &restored_env).await;
    assert_eq!(
        restored.refresh(&pair.refresh_token).await.status(),
        StatusCode::OK,
        "a session from before the backup continues on the restored copy"
    );
}

#[tokio::test]
async fn verify_prints_the_manifest_and_rejects_a_flipped_byte_a_truncated_file_and_a_stranger() {
    let app = spawn_app_with(&[]).await;
    sign_up(&app, 2).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup_of(&app, files.path(), "good.backup.gz").await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "backups hold password hashes");
    }
    let leftovers: Vec<_> = std::fs::read_dir(files.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file is left behind");

    let (ok, out, err) = portvakt(&[], &["backup", "verify", path_str(&file)]).await;
    assert!(ok, "{err}");
    assert!(out.contains("backup OK"), "{out}");
    assert_eq!(manifest_rows(&out, "users"), Some(2), "{out}");
    let latest = app.state.store.latest_schema_version();
    assert!(out.contains(&format!("schema version  {latest}")), "{out}");
    let record = backup::last_backup(&app.state.store)
        .await
        .unwrap()
        .expect("the backup is recorded");
    assert_eq!(record.triggered_by, "manual");
    assert!(record.file.ends_with("good.backup.gz"), "{}", record.file);
    assert_eq!(record.bytes as u64, std::fs::metadata(&file).unwrap().len());
    assert!(out.contains(&record.sha256), "{out}");

    let bytes = std::fs::read(&file).unwrap();
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let truncated = &bytes[..bytes.len() - 9];
    // Where a flipped bit lands decides whether gzip, the JSON or the checksum notices it.
    for (name, content, says) in [
        (
            "flipped.backup.gz",
            &flipped[..],
            ["corrupted", "truncated"],
        ),
        ("truncated.backup.gz", truncated, ["truncated", "truncated"]),
        (
            "stranger.backup.gz",
            b"name,email\n".as_slice(),
            ["not a portvakt backup", "not a portvakt backup"],
        ),
    ] {
        let path = files.path().join(name);
        std::fs::write(&path, content).unwrap();
        let (ok, out, err) = portvakt(&[], &["backup", "verify", path_str(&path)]).await;
        assert!(!ok, "{name} verified: {out}");
        assert!(err.contains("is not a usable backup"), "{name}: {err}");
        assert!(says.iter().any(|s| err.contains(s)), "{name}: {err}");
    }
}

/// `file` with its lines (header and rows; not the trailer) edited by `edit` and the checksum
/// made to match again, as if portvakt had written it so.
fn rewritten(file: &Path, out: &Path, edit: impl FnOnce(&mut Vec<serde_json::Value>)) {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(file).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    lines.pop();
    edit(&mut lines);
    let mut body = String::new();
    for line in &lines {
        body.push_str(&line.to_string());
        body.push('\n');
    }
    let sha = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
    let hex: String = sha.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let rows = lines.len() - 1;
    body.push_str(&serde_json::json!({ "end": { "rows": rows, "sha256": hex } }).to_string());
    body.push('\n');
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(body.as_bytes()).unwrap();
    gz.finish().unwrap();
}

#[tokio::test]
async fn a_restore_that_fails_half_way_leaves_the_target_empty() {
    let secret = portvakt::crypto::secret::generate();
    let source = spawn_app_with(&[("secret_key", secret.as_str())]).await;
    sign_up(&source, 2).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup_of(&source, files.path(), "src.backup.gz").await;
    // The second account takes the first one's email: the database refuses that row.
    let clash = files.path().join("clash.backup.gz");
    rewritten(&file, &clash, |lines| {
        let users: Vec<usize> = (1..lines.len())
            .filter(|&i| lines[i]["t"] == "users")
            .collect();
        let key = lines[users[0]]["v"][2].clone();
        lines[users[1]]["v"][2] = key;
    });
    let (ok, _, _) = portvakt(&[], &["backup", "verify", path_str(&clash)]).await;
    assert!(ok, "the file itself is intact");

    let target = tempfile::tempdir().unwrap();
    let env = [
        ("PORTVAKT_DATA_DIR", path_str(target.path())),
        ("PORTVAKT_SECRET_KEY", secret.as_str()),
    ];
    let (ok, out, err) = portvakt(&env, &["restore", path_str(&clash)]).await;
    assert!(!ok, "{out}");
    assert!(err.to_lowercase().contains("unique"), "{err}");
    // Nothing of it stayed: the target still counts as empty, and takes the good backup.
    let (ok, out, err) = portvakt(&env, &["restore", path_str(&file)]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("restored"), "{out}");
}

#[tokio::test]
async fn restore_refuses_a_newer_schema_a_wrong_secret_key_and_a_non_empty_target_and_changes_nothing()
 {
    let secret = portvakt::crypto::secret::generate();
    let source = spawn_app_with(&[("secret_key", secret.as_str())]).await;
    let theirs = sign_up(&source, 1).await;
    let files = tempfile::tempdir().unwrap();
    let file = backup_of(&source, files.path(), "src.backup.gz").await;

    // A newer schema: refused before the target is even created.
    let newer = files.path().join("newer.backup.gz");
    rewritten(&file, &newer, |h| {
        h[0]["schema_version"] = serde_json::json!(9999)
    });
    let (ok, _, _) = portvakt(&[], &["backup", "verify", path_str(&newer)]).await;
    assert!(ok, "the rewritten file is itself intact");
    let empty = tempfile::tempdir().unwrap();
    let target = [
        ("PORTVAKT_DATA_DIR", path_str(empty.path())),
        ("PORTVAKT_SECRET_KEY", secret.as_str()),
    ];
    let (ok, _, err) = portvakt(&target, &["restore", path_str(&newer)]).await;
    assert!(!ok);
    assert!(err.contains("newer than this binary"), "{err}");
    assert!(
        std::fs::read_dir(empty.path()).unwrap().next().is_none(),
        "nothing was created"
    );

    // An older backup into a target already migrated past it: its rows would skip the later
    // migrations, so it is refused.
    let older = files.path().join("older.backup.gz");
    let latest = source.state.store.latest_schema_version();
    rewritten(&file, &older, |h| {
        h[0]["schema_version"] = serde_json::json!(latest - 1)
    });
    let migrated = tempfile::tempdir().unwrap();
    let target = [
        ("PORTVAKT_DATA_DIR", path_str(migrated.path())),
        ("PORTVAKT_SECRET_KEY", secret.as_str()),
    ];
    let (ok, _, err) = portvakt(&target, &["migrate"]).await;
    assert!(ok, "{err}");
    let (ok, _, err) = portvakt(&target, &["restore", path_str(&older)]).await;
    assert!(!ok);
    assert!(err.contains("past the backup's"), "{err}");

    // Another secret key: refused, nothing created.
    let other = portvakt::crypto::secret::generate();
    let wrong = [
        ("PORTVAKT_DATA_DIR", path_str(empty.path())),
        ("PORTVAKT_SECRET_KEY", other.as_str()),
    ];
    let (ok, _, err) = portvakt(&wrong, &["restore", path_str(&file)]).await;
    assert!(!ok);
    assert!(err.contains("secret key"), "{err}");
    assert!(std::fs::read_dir(empty.path()).unwrap().next().is_none());

    // A target with an account of its own: refused, and that account is all it has.
    let busy = spawn_app_with(&[("secret_key", secret.as_str())]).await;
    let mine = sign_up(&busy, 1).await;
    let (ok, _, err) = busy
        .cli_with(
            &[("PORTVAKT_SECRET_KEY", secret.as_str())],
            &["restore", path_str(&file)],
        )
        .await;
    assert!(!ok);
    assert!(err.contains("not empty") && err.contains("users"), "{err}");
    assert_eq!(user_count(&busy).await, 1);
    assert_eq!(
        busy.login(&mine[0], PASSWORD).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        busy.login(&theirs[0], PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn scheduled_backups_write_files_and_keep_only_backup_keep() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(&[
        ("backup_interval", "1s"),
        ("backup_keep", "2"),
        ("backup_dir", path_str(dir.path())),
    ])
    .await;
    sign_up(&app, 1).await;
    let files = || -> Vec<PathBuf> {
        let mut f: Vec<PathBuf> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
            .collect();
        f.sort();
        f
    };
    let scheduled = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM backups WHERE triggered_by = 'scheduled'",
        )
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
    };
    let pruned = eventually(Duration::from_secs(60), || async {
        scheduled().await >= 3 && files().len() == 2
    })
    .await;
    assert!(
        pruned,
        "three scheduled backups were taken and two kept: {} recorded, files {:?}",
        scheduled().await,
        files()
    );
    let last = backup::last_backup(&app.state.store)
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(last.triggered_by, "scheduled");
    let newest = files().pop().unwrap();
    let (ok, out, err) = portvakt(&[], &["backup", "verify", path_str(&newest)]).await;
    assert!(ok, "{err}");
    assert_eq!(manifest_rows(&out, "users"), Some(1), "{out}");
}

#[tokio::test]
async fn every_table_of_the_schema_is_backed_up_or_knowingly_left_out() {
    let app = spawn_app_with(&[]).await;
    let store = &app.state.store;
    let mut conn = store.pool().acquire().await.unwrap();
    let schema = tables::schema_tables(&mut conn, store.backend())
        .await
        .unwrap();
    assert_eq!(
        tables::unknown(&schema),
        Vec::<&str>::new(),
        "a migration added a table: add it to ops::backup::tables::TABLES (or NOT_BACKED_UP)"
    );
    for t in tables::TABLES {
        assert!(schema.iter().any(|s| s == t.name), "{} is gone", t.name);
    }

    sqlx::query("CREATE TABLE widgets (id TEXT PRIMARY KEY)")
        .execute(&mut *conn)
        .await
        .unwrap();
    drop(conn);
    let files = tempfile::tempdir().unwrap();
    let out = files.path().join("x.backup.gz");
    let (ok, _, err) = app.cli(&["backup", "--out", path_str(&out)]).await;
    assert!(!ok, "a backup that would leave a table out fails");
    assert!(err.contains("widgets"), "{err}");
    assert!(!out.exists());
    assert!(
        std::fs::read_dir(files.path()).unwrap().next().is_none(),
        "no temporary file is left behind"
    );
}

#[tokio::test]
async fn instances_sharing_a_postgres_database_take_each_scheduled_backup_once() {
    let db = fresh_database().await;
    let Some(url) = db.url().map(str::to_string) else {
        skipped(
            "instances_sharing_a_postgres_database_take_each_scheduled_backup_once",
            "instances share a database only on PostgreSQL; set PORTVAKT_TEST_DATABASE_URL",
        );
        return;
    };
    let secret = portvakt::crypto::secret::generate();
    let a = spawn_app_on(db, &[("secret_key", secret.as_str())]).await;
    let b = spawn_app_on(
        TestDatabase::Sqlite,
        &[
            ("database_url", url.as_str()),
            ("secret_key", secret.as_str()),
        ],
    )
    .await;
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let schedule = |dir: &Path| backup::schedule::Schedule {
        dir: dir.to_path_buf(),
        interval: Duration::from_secs(3600),
        keep: 5,
    };
    let (sa, sb) = (schedule(dir_a.path()), schedule(dir_b.path()));
    let (ra, rb) = tokio::join!(
        backup::schedule::run_once(&a.state.store, &sa),
        backup::schedule::run_once(&b.state.store, &sb),
    );
    let taken = [ra.unwrap(), rb.unwrap()]
        .iter()
        .filter(|r| r.is_some())
        .count();
    assert_eq!(
        taken, 1,
        "one of two instances due at once takes the backup"
    );
    // Both are due again at their next tick, but the interval has not passed for the database.
    assert!(
        backup::schedule::run_once(&a.state.store, &sa)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        backup::schedule::run_once(&b.state.store, &sb)
            .await
            .unwrap()
            .is_none()
    );
    let files = std::fs::read_dir(dir_a.path()).unwrap().count()
        + std::fs::read_dir(dir_b.path()).unwrap().count();
    assert_eq!(files, 1);
}
