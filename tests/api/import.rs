//! `portvakt import`: users moved from other applications log in with the passwords they
//! had, their hashes become argon2id at that first login, and re-running a file updates
//! instead of duplicating.

use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

#[derive(serde::Deserialize)]
struct Fixture {
    format: String,
    library: String,
    password: String,
    hash: String,
}

fn fixtures() -> Vec<Fixture> {
    let text = include_str!("../fixtures/legacy-hashes/hashes.json");
    serde_json::from_str(text).unwrap()
}

async fn stored_hash(app: &TestApp, email: &str) -> String {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE email_key = $1")
        .bind(email.to_lowercase())
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
}

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(app.state.store.pool())
        .await
        .unwrap()
}

fn write(app: &TestApp, name: &str, text: &str) -> String {
    let path = app.data_dir().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn users_with_hashes_from_real_libraries_log_in_and_are_moved_to_argon2id() {
    let app = spawn_app().await;
    let fixtures = fixtures();
    let mut lines = String::new();
    for (i, f) in fixtures.iter().enumerate() {
        let row = json!({
            "email": format!("Legacy{i}@Example.com"),
            "name": format!("{} user", f.library),
            "password_hash": f.hash,
            "roles": [],
            "created_at": "2019-05-06T07:08:09Z",
            "email_verified": i % 2 == 0,
        });
        lines.push_str(&format!("{row}\n"));
    }
    let file = write(&app, "users.jsonl", &lines);
    let (ok, out, err) = app.cli(&["import", &file]).await;
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains(&format!(
            "{} created, 0 updated, 0 rejected",
            fixtures.len()
        )),
        "{out}"
    );

    for (i, f) in fixtures.iter().enumerate() {
        let email = format!("legacy{i}@example.com");
        let what = format!("{} from {}", f.format, f.library);
        assert_eq!(stored_hash(&app, &email).await, f.hash, "{what}");
        assert_eq!(
            app.login(&email, &format!("?{}", f.password))
                .await
                .status(),
            401,
            "{what}: a wrong password"
        );
        let tokens = app.login_ok(&email, &f.password).await;
        let rehashed = stored_hash(&app, &email).await;
        assert!(
            rehashed.starts_with("$argon2id$v=19$"),
            "{what}: {rehashed}"
        );
        let me: Value = app.me(&tokens.access_token).await.json().await.unwrap();
        assert_eq!(me["email"], format!("Legacy{i}@Example.com"), "{what}");
        assert_eq!(me["email_verified"], i % 2 == 0, "{what}");
        assert_eq!(me["roles"], json!(["user"]), "{what}");
        assert!(
            me["created_at"]
                .as_str()
                .unwrap()
                .starts_with("2019-05-06T07:08:09"),
            "{what}: {me}"
        );
        // The new hash works, and is left alone from now on.
        app.login_ok(&email, &f.password).await;
        assert_eq!(stored_hash(&app, &email).await, rehashed, "{what}");
        assert_eq!(
            app.login(&email, &format!("?{}", f.password))
                .await
                .status(),
            401,
            "{what}: a wrong password after the rehash"
        );
    }
}

/// Hashes of "correct horse battery staple" from `hashes.json` (bcrypt, Werkzeug pbkdf2).
const GOOD: &str = "$2b$04$v7W.Z2qQbcid7NRSTj0zsOLUPzB.AVyJGgFtlmLhGDcqFQpfNiV0W";

#[tokio::test]
async fn bad_rows_are_reported_by_line_and_the_rest_is_imported_once() {
    let app = spawn_app().await;
    let pbkdf2 = "pbkdf2:sha256:1000$c5VHq8oZTeT34hmy$abf259f21298d4bebbd8c641076363d131b7b8853ba0fb3e104f19799b424541";
    let csv = format!(
        "email,name,password_hash,roles,created_at,email_verified\n\
         ada@example.com,Ada,{GOOD},admin;user,2020-01-01T00:00:00Z,true\n\
         bob@example.com,Bob,md5$abc$def,,,false\n\
         not-an-email,X,{GOOD},,,\n\
         cy@example.com,Cy,{GOOD},superuser,,\n\
         dee@example.com,Dee,$2b$31$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE,,,\n\
         eve@example.com,\"Eve, with a comma\",{pbkdf2},,,no\n\
         ADA@example.com,Ada Again,{GOOD},admin,,true\n\
         fay@example.com,Fay,{GOOD},,yesterday,\n"
    );
    let file = write(&app, "users.csv", &csv);
    let (ok, out, err) = app.cli(&["import", &file]).await;
    assert!(!ok, "rejected rows make the exit code non-zero: {out}");
    assert!(out.contains("2 created, 1 updated, 5 rejected"), "{out}");
    for expected in [
        "line 3: password_hash: unrecognised password hash format",
        "line 4: email must be a valid email address",
        "line 5: roles: no role is named \"superuser\"",
        "line 6: password_hash: bcrypt hash: cost 31 is outside 4..=16",
        "line 9: created_at: \"yesterday\" is not an RFC 3339 time",
    ] {
        assert!(err.contains(expected), "{expected:?} not in {err}");
    }
    assert!(
        !err.contains("abcdefghijklmnopqrstuu"),
        "no hash in messages: {err}"
    );
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 2);
    // Line 8 updated line 2's account (same email, other case): roles as listed there (an
    // import may not take `admin` from the last enabled admin).
    let ada = app
        .login_ok("ada@example.com", "correct horse battery staple")
        .await;
    let me: Value = app.me(&ada.access_token).await.json().await.unwrap();
    assert_eq!(me["name"], "Ada Again");
    assert_eq!(me["email"], "ADA@example.com");
    assert_eq!(me["roles"], json!(["admin", "user"]));
    let eve = app
        .login_ok("eve@example.com", "correct horse battery staple")
        .await;
    let me: Value = app.me(&eve.access_token).await.json().await.unwrap();
    assert_eq!(me["name"], "Eve, with a comma");
    assert_eq!(me["email_verified"], false);

    // The same file again: nothing new.
    let before = count(&app, "SELECT COUNT(*) FROM users").await;
    let (_, out, _) = app.cli(&["import", &file]).await;
    assert!(out.contains("0 created, 3 updated, 5 rejected"), "{out}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, before);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM user_roles").await, 3);
    assert_eq!(
        count(
            &app,
            "SELECT COUNT(*) FROM audit_log WHERE action = 'users_imported'"
        )
        .await,
        2,
        "one entry per batch"
    );

    // A clean file succeeds.
    let clean = write(
        &app,
        "more.ndjson",
        &format!(
            "{}\n\n{}\n",
            json!({"email": "gil@example.com", "password_hash": GOOD, "roles": ["admin"]}),
            json!({"email": "hal@example.com", "password_hash": pbkdf2, "name": null})
        ),
    );
    let (ok, out, err) = app.cli(&["import", &clean]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("2 created, 0 updated, 0 rejected"), "{out}");
    let (ok, _, err) = app.cli(&["audit", "verify"]).await;
    assert!(ok, "{err}");
}

#[tokio::test]
async fn files_it_cannot_read_are_refused_before_anything_is_written() {
    let app = spawn_app().await;
    let txt = write(&app, "users.txt", "email,password_hash\n");
    let (ok, _, err) = app.cli(&["import", &txt]).await;
    assert!(!ok);
    assert!(err.contains("--format csv or --format jsonl"), "{err}");

    let header = write(
        &app,
        "bad.csv",
        &format!("email,password\na@example.com,{GOOD}\n"),
    );
    let (ok, _, err) = app.cli(&["import", &header]).await;
    assert!(!ok);
    assert!(err.contains("line 1: unknown column \"password\""), "{err}");

    let json = write(
        &app,
        "users.txt",
        &format!(
            "{}\n{{not json\n",
            json!({"email": "a@example.com", "password_hash": GOOD, "extra": 1})
        ),
    );
    let (ok, out, err) = app.cli(&["import", "--format", "jsonl", &json]).await;
    assert!(!ok);
    assert!(out.contains("0 created, 0 updated, 2 rejected"), "{out}");
    assert!(
        err.contains("line 1: not a user record: unknown field `extra`"),
        "{err}"
    );
    assert!(err.contains("line 2: not a user record"), "{err}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test]
async fn an_import_cannot_take_admin_from_the_last_enabled_admin() {
    let app = spawn_app().await;
    let admin = write(
        &app,
        "admin.ndjson",
        &format!(
            "{}\n",
            json!({"email": "root@example.com", "password_hash": GOOD, "roles": ["admin"]})
        ),
    );
    let (ok, out, err) = app.cli(&["import", &admin]).await;
    assert!(ok, "{out}{err}");
    // A later export of the old application, where the account was a plain user.
    let later = write(
        &app,
        "later.ndjson",
        &format!(
            "{}\n{}\n",
            json!({"email": "Root@example.com", "name": "Root", "password_hash": GOOD, "roles": []}),
            json!({"email": "new@example.com", "password_hash": GOOD})
        ),
    );
    let (ok, out, err) = app.cli(&["import", &later]).await;
    assert!(!ok, "a refused row makes the exit code non-zero: {out}");
    assert!(
        out.contains("1 created, 0 updated, 1 rejected"),
        "{out}{err}"
    );
    assert!(err.contains("line 1:") && err.contains("admin"), "{err}");
    let admins = count(
        &app,
        "SELECT COUNT(*) FROM users u JOIN user_roles r ON r.user_id = u.id WHERE r.role = 'admin' AND u.disabled_at IS NULL",
    )
    .await;
    assert_eq!(admins, 1);
    let name: Option<String> =
        sqlx::query_scalar("SELECT name FROM users WHERE email_key = 'root@example.com'")
            .fetch_one(app.state.store.pool())
            .await
            .unwrap();
    assert_eq!(name, None, "the refused row changed nothing");

    // With another admin in place the same row is an ordinary update.
    let second = write(
        &app,
        "second.ndjson",
        &format!(
            "{}\n",
            json!({"email": "second@example.com", "password_hash": GOOD, "roles": ["admin"]})
        ),
    );
    assert!(app.cli(&["import", &second]).await.0);
    let (ok, out, err) = app.cli(&["import", &later]).await;
    assert!(ok, "{out}{err}");
    assert!(out.contains("0 created, 2 updated, 0 rejected"), "{out}");
}

/// A hash holding a control character (here a NUL in a Werkzeug salt, which PostgreSQL cannot
/// store) is a bad row like any other: reported with its line, the rest imported.
#[tokio::test]
async fn a_hash_with_a_control_character_is_a_rejected_row_not_a_failed_import() {
    let app = spawn_app().await;
    let nul = "pbkdf2:sha256:1000$c5VH\u{0}q8oZTeT34hmy$abf259f21298d4bebbd8c641076363d131b7b8853ba0fb3e104f19799b424541";
    let tab = "pbkdf2:sha256:1000$c5VH\tq8oZTeT34hmy$abf259f21298d4bebbd8c641076363d131b7b8853ba0fb3e104f19799b424541";
    let file = write(
        &app,
        "users.jsonl",
        &format!(
            "{}\n{}\n{}\n",
            json!({"email": "nul@example.com", "password_hash": nul}),
            json!({"email": "tab@example.com", "password_hash": tab}),
            json!({"email": "ok@example.com", "password_hash": GOOD}),
        ),
    );
    let (ok, out, err) = app.cli(&["import", &file]).await;
    assert!(!ok, "{out}");
    assert!(
        out.contains("1 created, 0 updated, 2 rejected"),
        "{out}\n{err}"
    );
    assert!(err.contains("line 1: password_hash"), "{err}");
    assert!(err.contains("line 2: password_hash"), "{err}");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM users").await, 1);
}

/// Files saved by spreadsheet programs and Windows editors: a UTF-8 byte order mark before the
/// first column or object, and CRLF line ends.
#[tokio::test]
async fn a_byte_order_mark_and_crlf_line_ends_are_read_like_any_file() {
    let app = spawn_app().await;
    let csv = write(
        &app,
        "users.csv",
        &format!(
            "\u{feff}email,name,password_hash\r\nbom@example.com,\"Bom, quoted\",{GOOD}\r\nbom2@example.com,B2,{GOOD}\r\n"
        ),
    );
    let (ok, out, err) = app.cli(&["import", &csv]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("2 created, 0 updated, 0 rejected"), "{out}");
    // The mark before the first object, or alone on a first line.
    for (file, start) in [("users.jsonl", "\u{feff}"), ("blank.jsonl", "\u{feff}\r\n")] {
        let jsonl = write(
            &app,
            file,
            &format!(
                "{start}{}\r\n{}\r\n",
                json!({"email": "bom3@example.com", "password_hash": GOOD}),
                json!({"email": "bom4@example.com", "password_hash": GOOD}),
            ),
        );
        let (ok, out, err) = app.cli(&["import", &jsonl]).await;
        assert!(ok, "{file}: {out}\n{err}");
        assert!(out.contains("0 rejected"), "{file}: {out}");
    }
    app.login_ok("bom@example.com", "correct horse battery staple")
        .await;
    app.login_ok("bom3@example.com", "correct horse battery staple")
        .await;
}

/// CSV files with CRLF line ends (RFC 4180; Python's `csv` module and spreadsheets write them)
/// report bad rows at the lines an editor shows, like LF files.
#[tokio::test]
async fn bad_rows_of_a_crlf_file_are_reported_at_their_own_lines() {
    let app = spawn_app().await;
    for (file, end) in [("lf.csv", "\n"), ("crlf.csv", "\r\n")] {
        let text = [
            "email,name,password_hash".to_string(),
            format!("a-{file}@example.com,A,{GOOD}"),
            format!("not-an-email,B,{GOOD}"),
            format!("c-{file}@example.com,\"C, with a comma\",{GOOD}"),
            format!("d-{file}@example.com,D,md5$abc$def"),
            format!("e-{file}@example.com,E,{GOOD},extra"),
        ]
        .join(end)
            + end;
        let path = write(&app, file, &text);
        let (ok, out, err) = app.cli(&["import", &path]).await;
        assert!(!ok, "{file}: {out}");
        assert!(
            out.contains("2 created, 0 updated, 3 rejected"),
            "{file}: {out}"
        );
        for expected in [
            "line 3: email",
            "line 5: password_hash",
            "line 6: 4 fields where the header has 3",
        ] {
            assert!(err.contains(expected), "{file}: {expected:?} not in {err}");
        }
    }
}

/// A re-import never takes a password back: the same file leaves the argon2id rehash of a
/// login alone, a password set in portvakt (a change, or a signup) stays, and only a new hash
/// for a password that is still an imported one replaces it, ending that account's sessions.
#[tokio::test]
async fn a_re_import_never_takes_a_password_back_and_a_new_one_ends_sessions() {
    let app = spawn_app().await;
    let fixtures = fixtures();
    let first = fixtures
        .iter()
        .find(|f| f.format == "bcrypt" && f.password == "correct horse battery staple")
        .unwrap();
    let second = fixtures
        .iter()
        .find(|f| f.format == "bcrypt" && f.password.starts_with("pässwörd"))
        .unwrap();
    let line = |email: &str, hash: &str| {
        format!(
            "{}\n",
            json!({"email": email, "name": "N", "password_hash": hash})
        )
    };
    let old = write(&app, "old.jsonl", &line("ada@example.com", &first.hash));
    assert!(app.cli(&["import", &old]).await.0);
    let session = app.login_ok("ada@example.com", &first.password).await;
    let rehashed = stored_hash(&app, "ada@example.com").await;
    assert!(rehashed.starts_with("$argon2id$"), "{rehashed}");

    // The same file again: the rehash and the session stay.
    assert!(app.cli(&["import", &old]).await.0);
    assert_eq!(stored_hash(&app, "ada@example.com").await, rehashed);
    assert_eq!(app.me(&session.access_token).await.status(), 200);

    // A new hash from the file (the password was changed in the old application meanwhile).
    let new = write(&app, "new.jsonl", &line("ada@example.com", &second.hash));
    assert!(app.cli(&["import", &new]).await.0);
    assert_eq!(
        app.login("ada@example.com", &first.password).await.status(),
        401
    );
    // The session ended: its refresh token at once, its access token within the running
    // service's cache lifetime (the import is another process; on PostgreSQL, at once).
    assert_eq!(app.refresh(&session.refresh_token).await.status(), 401);
    let ended = crate::helpers::eventually(std::time::Duration::from_secs(7), || async {
        app.me(&session.access_token).await.status() == 401
    })
    .await;
    assert!(
        ended,
        "the access token still works after the cache lifetime"
    );
    let session = app.login_ok("ada@example.com", &second.password).await;

    // A password changed in portvakt is kept by every later import.
    let change = app
        .authed(
            reqwest::Method::POST,
            "/api/v1/users/me/password",
            &session.access_token,
        )
        .json(&json!({"current_password": second.password, "new_password": "a brand new passphrase 7"}));
    assert_eq!(app.send(change).await.status(), 204);
    assert!(app.cli(&["import", &old]).await.0);
    assert!(app.cli(&["import", &new]).await.0);
    app.login_ok("ada@example.com", "a brand new passphrase 7")
        .await;
    assert_eq!(
        app.login("ada@example.com", &second.password)
            .await
            .status(),
        401
    );

    // So is the password of an account that signed up here; the rest of the row applies.
    assert_eq!(
        app.signup("bob@example.com", "bobs own passphrase 9")
            .await
            .status(),
        201
    );
    let bob = write(&app, "bob.jsonl", &line("bob@example.com", &first.hash));
    assert!(app.cli(&["import", &bob]).await.0);
    let token = app
        .login_ok("bob@example.com", "bobs own passphrase 9")
        .await;
    assert_eq!(
        app.me(&token.access_token)
            .await
            .json::<Value>()
            .await
            .unwrap()["name"],
        "N"
    );
    assert_eq!(
        app.login("bob@example.com", &first.password).await.status(),
        401
    );
}
