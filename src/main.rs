//! The `portvakt` command line: serve, migrate, manage users, check the configuration,
//! verify and prune the audit log.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use portvakt::accounts::service::{self as accounts, NewAccount};
use portvakt::accounts::{Email, Name};
use portvakt::audit::{self, Audit, VerifyError};
use portvakt::config::{Config, Level, SETTINGS, Span};
use portvakt::crypto::secret::{self, MasterKey};
use portvakt::ops::backup::{self, Progress, Trigger};
use portvakt::store::Store;
use portvakt::telemetry::{self, Sink};
use portvakt::{AppState, Application, roles};
use secrecy::SecretString;

/// portvakt: accounts, sessions, tokens and sign-in for your applications, in one service.
///
/// With no configuration it serves on 127.0.0.1:8080 with an embedded SQLite database in
/// ./data. Settings come from PORTVAKT_* environment variables, a .env file and an optional
/// portvakt.toml (in that order of precedence); `portvakt config` lists them all.
#[derive(Parser)]
#[command(name = "portvakt", version, about, long_about)]
struct Cli {
    /// A TOML settings file (default: ./portvakt.toml when it exists).
    #[arg(long, global = true, env = "PORTVAKT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (migrates the database first unless PORTVAKT_MIGRATE_ON_START=false).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage users directly in the database (works while the service runs, or before it ever ran).
    #[command(subcommand)]
    User(UserCommand),
    /// List roles, or make one require MFA, directly in the database (no API token needed).
    #[command(subcommand)]
    Role(RoleCommand),
    /// Register, list and delete OpenID Connect clients directly in the database.
    #[command(subcommand)]
    Client(portvakt::oidc::clients::cli::ClientCommand),
    /// Rotate or list the token signing keys, directly in the database (no API token needed).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check the configuration for production readiness; exits non-zero on any failure.
    Check {
        /// Print the report as JSON (`score`, counts, and `findings` with item, level,
        /// message and fix) instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Verify or prune the tamper-evident audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Exit 0 if the local service answers GET /health with 200, else 1 (for container
    /// HEALTHCHECKs: no curl needed). Uses PORTVAKT_ADDR, and the configured certificate
    /// when native TLS is on.
    Healthcheck,
    /// Write a consistent backup of the database while the service runs, or check one.
    Backup(BackupArgs),
    /// Restore a backup into the configured database, which must be empty (either backend:
    /// this is also the way from SQLite to PostgreSQL). Needs the backed-up service's secret key.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
    /// Import users with the password hashes of another application (bcrypt, Werkzeug,
    /// Django, passlib, argon2); they are rehashed to argon2id at each user's next login.
    /// Re-running updates the same users (matched by email). Bad rows are reported as
    /// `line N: reason` and skipped; the exit code is 1 if any row was rejected.
    Import {
        /// A CSV file (header: email, password_hash, and optionally name, roles, created_at,
        /// email_verified) or JSON lines with the same keys.
        file: PathBuf,
        /// The file's format; by default from its extension (.csv, .jsonl, .ndjson, .json).
        #[arg(long, value_enum)]
        format: Option<portvakt::import::Format>,
    },
    /// Print a new random secret key for PORTVAKT_SECRET_KEY.
    Secret,
    /// Print every setting with its default, as a .env file.
    Config,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is asked for on the terminal, or read from stdin.
    Create {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long)]
        name: Option<String>,
        /// Also give the account the `admin` role.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Lift the lockout of an account locked after repeated failed logins.
    Unlock {
        /// The account's email address.
        #[arg(long)]
        email: String,
    },
    /// List accounts, ordered by email; `--q` keeps those whose email or name starts with it.
    List {
        /// Email or name prefix (case-insensitive).
        #[arg(long)]
        q: Option<String>,
        /// Page number, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Accounts per page (1..=200).
        #[arg(long, default_value_t = 50)]
        per_page: u32,
    },
    /// Disable an account: it cannot log in and every session ends at once.
    Disable {
        #[arg(long)]
        email: String,
    },
    /// Enable a disabled account again.
    Enable {
        #[arg(long)]
        email: String,
    },
    /// Set an account's roles (replacing the ones it has; `user` is always kept).
    SetRole {
        #[arg(long)]
        email: String,
        /// Comma-separated role names, e.g. `admin` or `support,auditor`; `user` alone for none.
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
    },
    /// Erase an account and its personal data, as `DELETE /api/v1/admin/users/{id}` does.
    Delete {
        #[arg(long)]
        email: String,
        /// Confirm; without it nothing is erased.
        #[arg(long)]
        yes: bool,
    },
    /// Print an account: id, email, name, roles, state and dates.
    Show {
        /// The account's email address.
        #[arg(long)]
        email: String,
    },
    /// Set a new password (asked for on the terminal, or read from stdin), end every session
    /// of the account and lift a lockout: recovery when the owner cannot log in.
    ResetPassword {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum RoleCommand {
    /// List every role: its permissions, whether it is built in and whether it requires MFA.
    List,
    /// Make a role (built-in ones too, e.g. `admin`) require MFA, or not: without it, a
    /// session whose login had no second factor gets nothing from the role.
    RequireMfa {
        /// The role name.
        name: String,
        /// Require MFA.
        #[arg(long, conflicts_with = "off", required_unless_present = "off")]
        on: bool,
        /// Stop requiring MFA.
        #[arg(long)]
        off: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Make new signing keys (EdDSA, RS256, ES256) that sign from now on, on every instance
    /// (within 30 s). The previous keys keep verifying the tokens they signed until those
    /// expire (max(access token lifetime, 1 hour) plus 30 s), then are deleted. Audited as
    /// `key_rotated`.
    Rotate {
        /// A key leaked: delete the previous keys at once, so every token they signed fails
        /// now (users log in or refresh again; refresh tokens are unaffected).
        #[arg(long)]
        delete_previous: bool,
    },
    /// List the stored keys: kid, algorithm, when made, and when a retired one is deleted.
    List,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct BackupArgs {
    /// Where to write the backup (gzip-compressed, owner-only); must not exist yet.
    #[arg(long, value_name = "FILE", required = true)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<BackupCommand>,
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Read a backup file through: checksum, row counts, completeness. Prints its manifest;
    /// exits 1 if the file is truncated, corrupted or not a backup.
    Verify {
        /// The backup file.
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the hash chain from the signed checkpoint to the signed head; name the first
    /// entry that was altered or removed and exit 1, or print a summary.
    Verify,
    /// Delete entries older than PORTVAKT_AUDIT_RETENTION_DAYS now (`serve` does it hourly),
    /// moving the signed checkpoint so that the rest still verifies.
    Prune {
        /// Delete entries older than this instead (e.g. `90d`, `12h`, `30s`).
        #[arg(long, value_name = "AGE")]
        older_than: Option<Span>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Secret => {
            println!("{}", portvakt::crypto::secret::generate());
            return ExitCode::SUCCESS;
        }
        Command::Config => {
            print!("{}", env_example());
            return ExitCode::SUCCESS;
        }
        Command::Backup(BackupArgs {
            command: Some(BackupCommand::Verify { file }),
            ..
        }) => return backup_verify(&file),
        _ => {}
    }
    // Docker reserves exit code 2 of a HEALTHCHECK command: a health check says 1 for any
    // failure, its configuration included.
    let usage_error = if matches!(cli.command, Command::Healthcheck) {
        ExitCode::FAILURE
    } else {
        ExitCode::from(2)
    };
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("portvakt: {e}");
            return usage_error;
        }
    };
    let sink = if matches!(cli.command, Command::Serve) {
        Sink::Stdout
    } else {
        Sink::Stderr
    };
    let log = match telemetry::init(&config, sink) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("portvakt: {e:#}");
            return usage_error;
        }
    };
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portvakt: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log_ref = &log;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve => serve(config).await,
            Command::Migrate => migrate(config).await,
            Command::User(UserCommand::Create {
                email,
                name,
                admin,
                password_stdin,
            }) => {
                log_ref.flush();
                create_user(config, &email, name.as_deref(), admin, password_stdin).await
            }
            Command::User(UserCommand::Unlock { email }) => unlock_user(config, &email).await,
            Command::User(UserCommand::Show { email }) => show_user(config, &email).await,
            Command::User(UserCommand::List { q, page, per_page }) => {
                list_users(config, q.as_deref(), page, per_page).await
            }
            Command::User(UserCommand::Disable { email }) => {
                change_user(config, &email, Some(true), None).await
            }
            Command::User(UserCommand::Enable { email }) => {
                change_user(config, &email, Some(false), None).await
            }
            Command::User(UserCommand::SetRole { email, roles }) => {
                change_user(config, &email, None, Some(roles)).await
            }
            Command::User(UserCommand::Delete { email, yes }) => {
                delete_user(config, &email, yes).await
            }
            Command::User(UserCommand::ResetPassword {
                email,
                password_stdin,
            }) => reset_password(config, &email, password_stdin).await,
            Command::Role(RoleCommand::List) => list_roles(config).await,
            Command::Role(RoleCommand::RequireMfa { name, on, .. }) => {
                role_require_mfa(config, &name, on).await
            }
            Command::Client(command) => client_command(config, command).await,
            Command::Keys(KeysCommand::Rotate { delete_previous }) => {
                rotate_keys(config, delete_previous).await
            }
            Command::Keys(KeysCommand::List) => list_keys(config).await,
            Command::Check { json } => check(&config, json).await,
            Command::Healthcheck => portvakt::ops::healthcheck::run(&config).await,
            Command::Audit(AuditCommand::Verify) => audit_verify(&config).await,
            Command::Audit(AuditCommand::Prune { older_than }) => {
                audit_prune(&config, older_than).await
            }
            Command::Backup(BackupArgs { out: Some(out), .. }) => backup_to(&config, &out).await,
            Command::Restore { file } => restore(&config, &file).await,
            Command::Import { file, format } => import(config, &file, format).await,
            Command::Backup(_) | Command::Secret | Command::Config => Ok(()),
        }
    });
    // Log lines are buffered: write them out before speaking directly, to keep the order.
    log.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("portvakt: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let fails: Vec<_> = config
        .findings()
        .into_iter()
        .filter(|f| f.level == Level::Fail)
        .collect();
    if !fails.is_empty() {
        let lines: Vec<String> = fails
            .iter()
            .map(|f| format!("  - {}: {} (fix: {})", f.item, f.message, f.fix))
            .collect();
        let setting = if config.is_production() {
            "in production with an unsafe configuration"
        } else {
            "with a broken configuration"
        };
        anyhow::bail!(
            "refusing to start {setting}:\n{}\nRun `portvakt check` for the full report.",
            lines.join("\n")
        );
    }
    let app = Application::build(config).await?;
    app.run_until_stopped(portvakt::http::server::shutdown_signal())
        .await;
    Ok(())
}

async fn migrate(config: Config) -> anyhow::Result<()> {
    let store = portvakt::store::Store::connect(&config).await?;
    let before = store.applied_schema_version().await?;
    store.migrate().await?;
    let after = store.applied_schema_version().await?;
    if before < portvakt::audit::SCHEMA_VERSION && after >= portvakt::audit::SCHEMA_VERSION {
        let (secret_key, _) = secret::resolve(&config)?;
        Audit::new(&MasterKey::new(&secret_key))
            .seal_genesis(&store)
            .await?;
    }
    store.close().await;
    if before == after {
        println!("database schema is current (version {after})");
    } else {
        println!("database migrated from version {before} to {after}");
    }
    Ok(())
}

async fn unlock_user(config: Config, email: &str) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let app = AppState::build(config).await?;
    let user = accounts::find_by_email(&app, &email)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?
        .ok_or_else(|| anyhow::anyhow!("no account has the email {}", email.as_str()))?;
    let unlocked = accounts::unlock(&app, user.id, None, None)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    app.store.close().await;
    if unlocked {
        println!("unlocked {} ({})", user.email, user.id);
    } else {
        println!("{} ({}) was not locked", user.email, user.id);
    }
    Ok(())
}

/// The account with `email`, or an error that names it.
async fn account(app: &AppState, email: &str) -> anyhow::Result<portvakt::accounts::User> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    accounts::find_by_email(app, &email)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?
        .ok_or_else(|| anyhow::anyhow!("no account has the email {}", email.as_str()))
}

async fn list_users(
    config: Config,
    q: Option<&str>,
    page: u32,
    per_page: u32,
) -> anyhow::Result<()> {
    use portvakt::accounts::directory::{self, Prefix};
    anyhow::ensure!(page >= 1, "--page starts at 1");
    anyhow::ensure!((1..=200).contains(&per_page), "--per-page must be 1..=200");
    let prefix = match q {
        Some(q) => Prefix::parse(q).map_err(|m| anyhow::anyhow!("--q {m}"))?,
        None => None,
    };
    let app = AppState::build(config).await?;
    let offset = i64::from(page - 1) * i64::from(per_page);
    let found = directory::search(
        app.store.pool(),
        app.store.backend(),
        prefix.as_ref(),
        i64::from(per_page),
        offset,
    )
    .await?;
    for u in &found.users {
        println!(
            "{}  {:<40} {:<24} {}{}",
            u.id,
            u.email,
            u.name.as_deref().unwrap_or("-"),
            u.roles.join(","),
            if u.disabled { "  (disabled)" } else { "" }
        );
    }
    let more = if found.total_exact { "" } else { "at least " };
    println!(
        "{} of {more}{} account(s), page {page}",
        found.users.len(),
        found.total
    );
    app.store.close().await;
    Ok(())
}

/// Disables, enables or sets the roles of an account as the operator, with the admin API's
/// rules (no change may leave zero enabled admins) and audit.
async fn change_user(
    config: Config,
    email: &str,
    disabled: Option<bool>,
    roles: Option<Vec<String>>,
) -> anyhow::Result<()> {
    use portvakt::accounts::manage::{self, Changes};
    use portvakt::roles::{RoleName, service::Actor};
    let roles = match roles {
        Some(names) => {
            let mut parsed = names
                .iter()
                .map(|r| {
                    RoleName::parse(r.trim()).map_err(|m| anyhow::anyhow!("--roles `{r}`: {m}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            if !names.iter().any(|r| r.trim() == roles::USER) {
                parsed.push(RoleName::parse(roles::USER).map_err(|m| anyhow::anyhow!("{m}"))?);
            }
            Some(parsed)
        }
        None => None,
    };
    let app = AppState::build(config).await?;
    let user = account(&app, email).await?;
    let changes = Changes {
        disabled,
        roles,
        ..Changes::default()
    };
    let view = manage::update(&app, user.id, changes, Actor::Operator)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    app.store.close().await;
    println!(
        "{} ({}): roles {}{}",
        view.email,
        view.id,
        view.roles.join(", "),
        if view.disabled {
            ", disabled"
        } else {
            ", enabled"
        }
    );
    Ok(())
}

fn role_line(role: &roles::Role) -> String {
    let permissions: Vec<&str> = role.permissions.iter().map(|p| p.as_str()).collect();
    format!(
        "{:<24} {}{}{}",
        role.name,
        if permissions.is_empty() {
            "-".to_string()
        } else {
            permissions.join(",")
        },
        if role.builtin { "  (built-in)" } else { "" },
        if role.require_mfa {
            "  (requires MFA)"
        } else {
            ""
        }
    )
}

async fn list_roles(config: Config) -> anyhow::Result<()> {
    let app = AppState::build(config).await?;
    let all = roles::service::list(&app)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    app.store.close().await;
    for role in &all {
        println!("{}", role_line(role));
    }
    Ok(())
}

/// Sets whether a role requires MFA as the operator, audited like the admin API's change.
async fn role_require_mfa(config: Config, name: &str, on: bool) -> anyhow::Result<()> {
    use portvakt::roles::{RoleName, service::Actor};
    let name = RoleName::parse(name).map_err(|m| anyhow::anyhow!("role `{name}`: {m}"))?;
    let app = AppState::build(config).await?;
    let shown = name.as_str().to_string();
    let role = roles::service::set_require_mfa(&app, name, on, Actor::Operator)
        .await
        .map_err(|e| match e {
            portvakt::error::AppError::NotFound => anyhow::anyhow!("no role is named {shown}"),
            e => anyhow::anyhow!("{}", describe(&e)),
        })?;
    app.store.close().await;
    println!("{}", role_line(&role));
    Ok(())
}

async fn client_command(
    config: Config,
    command: portvakt::oidc::clients::cli::ClientCommand,
) -> anyhow::Result<()> {
    let app = AppState::build(config).await?;
    let result = portvakt::oidc::clients::cli::run(&app, command).await;
    app.store.close().await;
    result
}

/// Rotates the signing keys as the operator, audited like the admin API's rotation.
async fn rotate_keys(config: Config, delete_previous: bool) -> anyhow::Result<()> {
    use portvakt::crypto::keys::rotation::{self, Previous};
    use portvakt::roles::service::Actor;
    let app = AppState::build(config).await?;
    let previous = if delete_previous {
        Previous::Delete
    } else {
        Previous::Retire
    };
    let entry = Actor::Operator.entry(audit::Action::KeyRotated);
    let rotated = rotation::rotate(&app.store, &app.keys, &app.audit, entry, previous)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    app.store.close().await;
    println!("new signing key {}", rotated.kid);
    match (&rotated.previous_kid, delete_previous) {
        (Some(old), false) => println!(
            "previous key {old} verifies its tokens until they expire ({}s), then is deleted",
            app.keys.retention().as_secs()
        ),
        (Some(old), true) => println!("previous key {old} deleted: its tokens fail now"),
        (None, _) => {}
    }
    Ok(())
}

async fn list_keys(config: Config) -> anyhow::Result<()> {
    use portvakt::crypto::keys::rotation;
    use portvakt::store::rfc3339;
    let app = AppState::build(config).await?;
    let keys = rotation::list(&app.store, &app.keys)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    app.store.close().await;
    for k in &keys {
        let state = match (k.retired_at, k.expires_at) {
            (Some(retired), Some(expires)) => format!(
                "retired {}, deleted after {}",
                rfc3339(retired),
                rfc3339(expires)
            ),
            _ => "signing".to_string(),
        };
        println!(
            "{:<43}  {:<5}  made {}  {state}",
            k.kid,
            k.alg,
            rfc3339(k.created_at)
        );
    }
    Ok(())
}

async fn delete_user(config: Config, email: &str, yes: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        yes,
        "erasing {email} cannot be undone: add --yes to go ahead"
    );
    let app = AppState::build(config).await?;
    let user = account(&app, email).await?;
    portvakt::accounts::gdpr::erase_by_operator(&app, user.id)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    app.store.close().await;
    println!("erased {} ({})", user.email, user.id);
    Ok(())
}

async fn show_user(config: Config, email: &str) -> anyhow::Result<()> {
    let app = AppState::build(config).await?;
    let user = account(&app, email).await?;
    let roles = roles::of_user(app.store.pool(), user.id).await?;
    let when = |t: Option<i64>| t.map_or_else(|| "-".to_string(), portvakt::store::rfc3339);
    println!("id:             {}", user.id);
    println!("email:          {}", user.email);
    println!("name:           {}", user.name.as_deref().unwrap_or("-"));
    println!("roles:          {}", roles.join(", "));
    println!("email verified: {}", when(user.email_verified_at));
    println!("disabled:       {}", when(user.disabled_at));
    println!("locked:         {}", when(user.locked_at));
    println!(
        "created:        {}",
        portvakt::store::rfc3339(user.created_at)
    );
    println!(
        "updated:        {}",
        portvakt::store::rfc3339(user.updated_at)
    );
    app.store.close().await;
    Ok(())
}

async fn reset_password(config: Config, email: &str, password_stdin: bool) -> anyhow::Result<()> {
    let password = read_password(password_stdin)?;
    let app = AppState::build(config).await?;
    let user = account(&app, email).await?;
    let revoked = accounts::reset_password(&app, user.id, password, None)
        .await
        .map_err(|e| anyhow::anyhow!("password rejected: {}", describe(&e)))?;
    app.store.close().await;
    println!(
        "new password set for {} ({}); {revoked} session(s) ended",
        user.email, user.id
    );
    Ok(())
}

async fn create_user(
    config: Config,
    email: &str,
    name: Option<&str>,
    admin: bool,
    password_stdin: bool,
) -> anyhow::Result<()> {
    let email = Email::parse(email).map_err(|m| anyhow::anyhow!("--email {m}"))?;
    let name = Name::parse(name).map_err(|m| anyhow::anyhow!("--name {m}"))?;
    let password = read_password(password_stdin)?;
    let app = AppState::build(config).await?;
    let mut context = vec![email.as_str().to_string()];
    context.extend(name.as_deref().map(str::to_string));
    accounts::check_new_password(&app, "password", &password, context)
        .await
        .map_err(|e| anyhow::anyhow!("password rejected: {}", describe(&e)))?;
    let mut roles_to_add = vec![roles::USER];
    if admin {
        roles_to_add.push(roles::ADMIN);
    }
    let user = accounts::create(
        &app,
        NewAccount {
            email,
            name,
            password,
        },
        &roles_to_add,
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    println!(
        "created user {} <{}> with roles {}",
        user.id,
        user.email,
        user.roles.join(", ")
    );
    app.store.close().await;
    Ok(())
}

/// The database and the audit log's signing key, without the rest of a server.
async fn open_audit(config: &Config) -> anyhow::Result<(Store, Audit)> {
    let store = Store::connect(config).await?;
    let applied = store.applied_schema_version().await?;
    let latest = store.latest_schema_version();
    anyhow::ensure!(
        applied == latest,
        "the database schema is at version {applied} and this binary's at {latest}: run `portvakt migrate` with the newer of the two"
    );
    let (secret_key, source) = secret::resolve(config)?;
    // A key made up just now cannot be the one that signed the log: say so, instead of
    // reporting every signature as forged.
    anyhow::ensure!(
        !matches!(source, secret::SecretSource::DevFile { created: true }),
        "no secret key was configured or kept in the data directory, so the audit log's signatures cannot be checked: set PORTVAKT_SECRET_KEY to the key the service runs with"
    );
    Ok((store, Audit::new(&MasterKey::new(&secret_key))))
}

async fn audit_verify(config: &Config) -> anyhow::Result<()> {
    let (store, audit) = open_audit(config).await?;
    let result = audit::verify(&store, &audit).await;
    store.close().await;
    match result {
        Ok(r) => {
            let pruned = if r.pruned_through > 0 {
                format!(
                    " (entries up to {} pruned behind a valid checkpoint)",
                    r.pruned_through
                )
            } else {
                String::new()
            };
            println!(
                "audit log OK: {} entries checked through entry {}{pruned}; head hash {}",
                r.entries, r.head_seq, r.head_hash
            );
            Ok(())
        }
        Err(VerifyError::Broken(b)) => anyhow::bail!("audit log BROKEN: {b}"),
        Err(e) => Err(e.into()),
    }
}

async fn audit_prune(config: &Config, older_than: Option<Span>) -> anyhow::Result<()> {
    let before = match older_than {
        Some(Span(age)) => audit::prune::cutoff(age),
        None if config.audit_retention_days == 0 => {
            println!(
                "PORTVAKT_AUDIT_RETENTION_DAYS is 0: entries are kept forever; nothing pruned"
            );
            return Ok(());
        }
        None => audit::prune::cutoff(audit::prune::retention(config.audit_retention_days)),
    };
    let (store, audit) = open_audit(config).await?;
    let result = audit::prune(&store, &audit, before).await;
    store.close().await;
    match result {
        Ok(r) => {
            println!(
                "pruned {} audit entries; the signed checkpoint is at entry {}",
                r.pruned, r.through
            );
            Ok(())
        }
        Err(VerifyError::Broken(b)) => {
            anyhow::bail!("audit log BROKEN, nothing more pruned: {b}")
        }
        Err(e) => Err(e.into()),
    }
}

async fn backup_to(config: &Config, out: &std::path::Path) -> anyhow::Result<()> {
    let store = Store::connect(config).await?;
    let applied = store.applied_schema_version().await?;
    let latest = store.latest_schema_version();
    anyhow::ensure!(
        applied == latest,
        "the database schema is at version {applied} and this binary's at {latest}: back up with the binary the service runs, or run `portvakt migrate` first"
    );
    let result = backup::take(&store, out, Trigger::Manual, &Progress::on_terminal()).await;
    store.close().await;
    let r = result?;
    println!(
        "backup written to {} ({} bytes, sha256 {}); restoring it needs this service's secret key (PORTVAKT_SECRET_KEY)",
        out.display(),
        r.bytes,
        r.sha256
    );
    Ok(())
}

fn backup_verify(file: &std::path::Path) -> ExitCode {
    match backup::verify_file(file) {
        Ok((h, trailer)) => {
            println!("backup OK: {}", file.display());
            println!("  format          {} v{}", h.format, h.format_version);
            println!("  portvakt        {}", h.portvakt_version);
            println!("  schema version  {}", h.schema_version);
            println!("  backend         {}", h.backend);
            println!(
                "  created at      {}",
                portvakt::store::rfc3339(h.created_at)
            );
            println!("  sha256          {}", trailer.sha256);
            println!("  rows            {}", trailer.rows);
            for t in &h.tables {
                println!("    {:<18} {}", t.name, t.rows);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("portvakt: {} is not a usable backup: {e}", file.display());
            ExitCode::FAILURE
        }
    }
}

async fn restore(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    let r = backup::restore(config, file, &Progress::on_terminal()).await?;
    println!(
        "restored {} rows from a {} backup taken at {} (schema version {}) into the {} database; run the service with the same PORTVAKT_SECRET_KEY, and `portvakt audit verify` to check the restored audit log",
        r.rows,
        r.header.backend,
        portvakt::store::rfc3339(r.header.created_at),
        r.header.schema_version,
        r.backend.name()
    );
    Ok(())
}

async fn import(
    config: Config,
    file: &std::path::Path,
    format: Option<portvakt::import::Format>,
) -> anyhow::Result<()> {
    let format = format
        .or_else(|| portvakt::import::Format::from_path(file))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot tell the format of {} from its extension: pass --format csv or --format jsonl",
                file.display()
            )
        })?;
    let app = AppState::build(config).await?;
    let result = portvakt::import::run(
        &app.store,
        &app.audit,
        file,
        format,
        &Progress::on_terminal(),
    )
    .await;
    app.store.close().await;
    let summary = result?;
    for line in &summary.rejected {
        eprintln!("{line}");
    }
    println!(
        "imported {}: {} created, {} updated, {} rejected",
        file.display(),
        summary.created,
        summary.updated,
        summary.rejected.len()
    );
    anyhow::ensure!(
        summary.rejected.is_empty(),
        "{} row(s) rejected (listed above); the other rows were imported: fix those rows and run the import again",
        summary.rejected.len()
    );
    Ok(())
}

fn describe(e: &portvakt::error::AppError) -> String {
    use portvakt::error::AppError;
    match e {
        AppError::Invalid(errors) => errors
            .iter()
            .map(|f| f.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
        AppError::Conflict { detail, .. } => detail.clone(),
        AppError::Internal(inner) => format!("{inner:#}"),
        other => other.to_string(),
    }
}

fn read_password(from_stdin: bool) -> anyhow::Result<SecretString> {
    if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let password = line.trim_end_matches(['\n', '\r']).to_string();
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        return Ok(SecretString::from(password));
    }
    let first = rpassword::prompt_password("Password: ")?;
    let second = rpassword::prompt_password("Repeat password: ")?;
    anyhow::ensure!(first == second, "the passwords do not match");
    Ok(SecretString::from(first))
}

async fn check(config: &Config, json: bool) -> anyhow::Result<()> {
    let mut findings = config.findings();
    // Load the certificate as `serve` would, unless its files are already known unreadable.
    if let Some(files) = &config.tls
        && !findings
            .iter()
            .any(|f| f.item == "tls" && f.level == Level::Fail)
    {
        findings.push(portvakt::http::tls::certificate_finding(files));
    }
    findings.extend(portvakt::ops::check::database_findings(config).await);
    let report = portvakt::ops::check::Report::new(findings);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    anyhow::ensure!(report.failures == 0, "{} check(s) failed", report.failures);
    Ok(())
}

/// `.env.example`: every setting, its documentation and its default.
fn env_example() -> String {
    let mut out = String::from(
        "# portvakt settings: every variable with its default.\n# Copy to .env and uncomment what you change. Environment variables override .env,\n# which overrides portvakt.toml.\n",
    );
    for s in SETTINGS {
        out.push('\n');
        for line in textwrap(s.doc, 88) {
            out.push_str(&format!("# {line}\n"));
        }
        let value = if s.key == "secret_key" {
            portvakt::config::EXAMPLE_SECRET
        } else {
            s.default
        };
        out.push_str(&format!("# {}={}\n", s.env_name(), value));
    }
    out
}

fn textwrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        lines.push(line);
    }
    lines
}
