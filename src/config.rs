//! Settings from `PORTVAKT_*` environment variables, a `.env` file and an optional
//! `portvakt.toml`, in that order of precedence over the built-in defaults.
//!
//! Every setting is declared once in [`SETTINGS`] with its default and its documentation;
//! `.env.example`, the README table and `portvakt config` are all derived from that list, and
//! a test keeps them in step. Values are parsed from text the same way whatever their source,
//! so `PORTVAKT_DB_POOL_MAX=10` and `db_pool_max = 10` mean the same thing, and an error names
//! the variable and the source it came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use secrecy::{ExposeSecret, SecretString};

/// The prefix of every environment variable portvakt reads.
pub const ENV_PREFIX: &str = "PORTVAKT_";

/// One configurable setting: its key (lowercase, as in `portvakt.toml`), its default as
/// text, and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    pub key: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

impl Setting {
    /// The environment variable for this setting, e.g. `PORTVAKT_ADDR`.
    pub fn env_name(&self) -> String {
        format!("{ENV_PREFIX}{}", self.key.to_ascii_uppercase())
    }
}

macro_rules! settings {
    ($($key:literal = $default:literal : $doc:literal;)*) => {
        /// Every setting portvakt understands, in documentation order.
        pub const SETTINGS: &[Setting] = &[$(Setting { key: $key, default: $default, doc: $doc }),*];
    };
}

settings! {
    "env" = "development" : "`development` or `production`. Production refuses to start with an unsafe setting (run `portvakt check`).";
    "addr" = "127.0.0.1:8080" : "Listen address (host:port).";
    "tls_cert" = "" : "PEM file with the certificate chain (leaf first) to serve HTTPS natively; needs `PORTVAKT_TLS_KEY` too. Empty means plain HTTP, for use behind a TLS-terminating proxy. Re-read on SIGHUP.";
    "tls_key" = "" : "PEM file with the private key of `PORTVAKT_TLS_CERT` (PKCS#8, RSA or SEC1). Readable by the service's user only. Re-read on SIGHUP.";
    "data_dir" = "./data" : "Directory for the SQLite database and, in development, the generated secret key.";
    "database_url" = "" : "`postgres://user:pass@host/db` for PostgreSQL; empty means SQLite at `<data_dir>/portvakt.db`. `PORTVAKT_DATABASE_URL_FILE` reads it from a file.";
    "secret_key" = "" : "At least 32 random bytes, hex or base64 (`portvakt secret` prints one). Encrypts signing keys at rest. Required in production; generated into the data dir in development. `PORTVAKT_SECRET_KEY_FILE` reads it from a file.";
    "issuer" = "" : "Public base URL of this service, the `iss` of every token. Must be https in production; defaults to `http://<addr>` in development.";
    "log" = "info" : "Log level, optionally per module: comma-separated `level` and `target=level` directives (e.g. `info,portvakt=debug,sqlx=warn`).";
    "log_format" = "" : "`json` or `pretty`; defaults to `json` in production and `pretty` in development.";
    "migrate_on_start" = "true" : "Apply pending database migrations when `serve` starts.";
    "db_pool_max" = "10" : "Maximum database connections in the pool.";
    "db_pool_min" = "1" : "Connections kept open while idle.";
    "db_acquire_timeout" = "5s" : "How long a request waits for a free database connection before failing with 503.";
    "db_busy_timeout" = "5s" : "SQLite only: how long a write waits for the database lock.";
    "argon2_memory_kib" = "19456" : "argon2id memory cost in KiB (OWASP: 19456).";
    "argon2_iterations" = "2" : "argon2id time cost (OWASP: 2).";
    "argon2_parallelism" = "1" : "argon2id lanes (OWASP: 1).";
    "hash_threads" = "0" : "Threads that hash passwords; 0 means one per CPU core.";
    "hash_queue" = "64" : "Password hashes allowed to wait for a thread; beyond that, login and signup answer 503 with Retry-After.";
    "password_min_length" = "8" : "Minimum password length in characters (8..=128).";
    "password_min_score" = "3" : "Minimum zxcvbn strength score (0..=4).";
    "access_token_ttl" = "15m" : "Lifetime of access tokens (e.g. `900`, `15m`).";
    "access_token_alg" = "EdDSA" : "Signature algorithm of access tokens: `EdDSA` (Ed25519), `RS256` or `ES256`. Tokens signed before a change keep verifying until they expire.";
    "key_rotation_interval" = "90d" : "`serve` replaces the token signing keys with new ones this often (e.g. `30d`); 0 turns scheduled rotation off (`portvakt keys rotate` rotates by hand). A retired key stays in the JWKS, and verifies, for max(access_token_ttl, 1h) plus 30s, then is deleted. With several instances, one of them rotates.";
    "refresh_token_ttl" = "30d" : "Sliding lifetime of a session: each refresh extends it by this much.";
    "oidc_session_ttl" = "12h" : "Lifetime of the browser session that the OIDC login page opens (its cookie); after it, the next authorization asks the user to log in again.";
    "cache_ttl" = "5s" : "How long an instance trusts its cached copy of a session or profile before re-reading it. Changes made on this instance (and, with PostgreSQL, on any instance) apply at once regardless; this bounds staleness only if an announcement is lost.";
    "token_cache_size" = "100000" : "Verified access tokens remembered (each is verified once, then checked against its session).";
    "max_body_bytes" = "65536" : "Largest accepted request body; larger bodies get 413.";
    "request_timeout" = "30s" : "Requests taking longer are answered with 408.";
    "header_read_timeout" = "10s" : "A client must send its request headers within this time (and, with native TLS, first complete the handshake within it).";
    "max_connections" = "1000" : "Concurrent HTTP connections; further clients wait in the listen backlog.";
    "max_connections_per_ip" = "100" : "Open connections one client address may hold (an IPv6 client counts per /64); more are closed at once. Trusted proxies are exempt. 0 means no cap.";
    "shutdown_timeout" = "30s" : "On SIGTERM/SIGINT, how long in-flight requests may take to finish.";
    "trusted_proxies" = "" : "Comma-separated CIDRs of reverse proxies whose forwarding header (`forwarded_header`) is believed (e.g. `10.0.0.0/8,127.0.0.1/32`). Empty: the socket peer is the client.";
    "forwarded_header" = "x-forwarded-for" : "The header your trusted proxies append the client to: `x-forwarded-for` (with `X-Forwarded-Proto`) or `forwarded` (RFC 7239). Only that one is read; a proxy passes the other through from the client untouched.";
    "rate_limit_per_second" = "50" : "Requests per second allowed per client IP on every route but `/health`, `/ready` and `/metrics`; 0 turns the limit off.";
    "rate_limit_burst" = "100" : "Requests a client IP may make at once before `rate_limit_per_second` applies.";
    "auth_rate_limit_per_minute" = "10" : "Requests per minute per client IP on each of login, signup, refresh and password change; 0 turns the limit off.";
    "auth_rate_limit_burst" = "20" : "Burst allowed on each of login, signup, refresh and password change before `auth_rate_limit_per_minute` applies.";
    "login_backoff_after" = "5" : "Failed logins for one email before each further attempt must wait; 0 turns the backoff off.";
    "login_backoff_initial" = "1s" : "The first wait after `login_backoff_after` failures; each further failure doubles it.";
    "login_backoff_max" = "15m" : "The longest wait between login attempts for one email.";
    "login_backoff_reset" = "24h" : "Failures for an email are forgotten after this long without a new failure (a successful login forgets them at once).";
    "lockout_threshold" = "0" : "Consecutive wrong passwords (at login or as the current password of a password change) that lock an existing account until an admin unlocks it (`portvakt user unlock`); 0 means never lock.";
    "cors_origins" = "" : "Comma-separated origins allowed to call the API from a browser (`https://app.example.com`). Empty denies all; `*` allows any (refused in production).";
    "cors_allow_credentials" = "false" : "Let browsers send cookies and credentials cross-origin; needs explicit `cors_origins`.";
    "admin_allowed_networks" = "" : "Comma-separated CIDRs allowed to reach `/api/v1/admin/*`; others get 404. Empty allows any.";
    "hsts_max_age" = "730d" : "`Strict-Transport-Security` max-age sent on responses to https requests; 0 sends none.";
    "metrics_addr" = "" : "Serve `/metrics` on this separate address (host:port, e.g. an internal interface) instead of the main one. Empty: `/metrics` is on the main listener, where `PORTVAKT_ADMIN_ALLOWED_NETWORKS` also guards it.";
    "sentry_dsn" = "" : "Report panics and 5xx answers to a Sentry-compatible endpoint (`https://key@host/project`), with request id and user id, never bodies. Empty: off. `PORTVAKT_SENTRY_DSN_FILE` reads it from a file.";
    "audit_retention_days" = "365" : "Audit log entries older than this many days are deleted (hourly, and by `portvakt audit prune`) behind a signed checkpoint that keeps the chain verifiable; 0 keeps them forever.";
    "events_auth_timeout" = "10s" : "Live events: a WebSocket on `/api/v1/events` must send its `auth` message within this time, or it is closed with 4408.";
    "events_ping_interval" = "30s" : "Live events: how often the server pings each WebSocket; one that misses two pongs in a row is closed.";
    "events_buffer" = "256" : "Live events: events queued per WebSocket for a client that reads slower than they come; one that falls this far behind is dropped (close 1008) so that it never slows the others.";
    "backup_interval" = "0" : "`serve` writes a backup this often (e.g. `24h`); 0 turns scheduled backups off. With several instances on one PostgreSQL database, one of them takes each backup.";
    "backup_dir" = "" : "Directory of scheduled backups (created owner-only); empty means `<data_dir>/backups`. Use a different disk than the database's.";
    "backup_keep" = "7" : "Scheduled backups kept in `backup_dir`; older ones are deleted after each new one. Files named otherwise are never touched.";
    "smtp_url" = "" : "Where email is delivered: `smtp://[user:pass@]host[:port]` (STARTTLS required, port 587), `smtps://[user:pass@]host[:port]` (TLS from the first byte, port 465), or `smtp://host:port?tls=none` for an unencrypted relay (production allows that only on a loopback address). Empty: messages are written to the log and to `<data_dir>/outbox/` instead (development). `PORTVAKT_SMTP_URL_FILE` reads it from a file.";
    "mail_from" = "" : "The `From` of every email (`Portvakt <noreply@example.com>`); empty means `portvakt@<issuer host>` (`portvakt@localhost` when that is an IP address).";
    "mail_retry_initial" = "30s" : "Email: the wait after a failed delivery attempt; each further failure doubles it.";
    "mail_retry_max" = "1h" : "Email: the longest wait between delivery attempts of one message.";
    "mail_max_attempts" = "20" : "Email: delivery attempts of one message before it is given up (recorded, with the last error, and counted in `portvakt_mail_failed_total{reason=\"attempts\"}`). A permanent rejection (SMTP 5xx other than authentication) gives up at once.";
    "smtp_ca_file" = "" : "PEM file of CA certificates trusted for the SMTP server's certificate in addition to the system's trust store, for an internal relay with a private CA. Empty: the system's trust store only.";
    "mail_retention" = "7d" : "Email: sent messages stay in the outbox (recipient, subject, times; never the body) this long, then are deleted; 0 keeps them forever.";
    "mail_failed_retention" = "30d" : "Email: messages given up stay in the outbox, with their last error, this long for operators to look into, then are deleted; 0 keeps them forever.";
    "mail_templates_dir" = "" : "Directory of email templates that replace the built-in ones, file by file (`verify_email`, `password_reset`, `password_changed`, `new_login`, each as `.subject`, `.txt` and `.html`). Empty means the built-in templates.";
    "login_alerts" = "new-device" : "Email the account when it logs in: `new-device` (from a user agent and network not seen in its sessions of the last 90 days; never at its first login), `always` (every login but the first), or `off`.";
    "email_verification_ttl" = "24h" : "Lifetime of an email verification token.";
    "password_reset_ttl" = "30m" : "Lifetime of a password reset token.";
    "require_verified_email" = "false" : "Refuse login (403 `email-not-verified`, after the password is checked) to accounts whose email is not verified.";
    "webauthn_rp_id" = "" : "Passkeys: the relying party id, the domain passkeys are bound to (`example.com` serves pages on `https://app.example.com` and `https://id.example.com` alike). Empty means the issuer's host, or `localhost` when that is an IP address (browsers refuse passkeys on IP addresses). Changing it orphans every registered passkey.";
    "webauthn_origins" = "" : "Passkeys: comma-separated origins (`https://app.example.com`) of the pages that run passkey ceremonies, each on `PORTVAKT_WEBAUTHN_RP_ID` or a subdomain of it. Empty means the issuer's origin (with `localhost` in place of an IP address). Must be https in production, except `http://localhost`.";
}

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    Default,
    File(PathBuf),
    DotEnv,
    Env,
    Explicit,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::DotEnv => write!(f, ".env"),
            Origin::Env => write!(f, "environment"),
            Origin::Explicit => write!(f, "explicit setting"),
        }
    }
}

/// Every problem found while reading the configuration, reported together.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

impl FromStr for Environment {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "development" | "dev" => Ok(Self::Development),
            "production" | "prod" => Ok(Self::Production),
            _ => Err("expected `development` or `production`".into()),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Development => "development",
            Self::Production => "production",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            _ => Err("expected `json` or `pretty`".into()),
        }
    }
}

/// A duration written as plain seconds (`900`) or with a unit (`250ms`, `30s`, `15m`, `12h`, `30d`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span(pub Duration);

impl FromStr for Span {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| "expected a duration such as `30s`, `15m` or `30d`".to_string())?;
        let secs = |mult: u64| {
            n.checked_mul(mult)
                .map(Duration::from_secs)
                .ok_or_else(|| "duration too large".to_string())
        };
        let d = match unit.trim() {
            "" | "s" => secs(1)?,
            "ms" => Duration::from_millis(n),
            "m" | "min" => secs(60)?,
            "h" => secs(3600)?,
            "d" => secs(86_400)?,
            _ => return Err(format!("unknown unit `{unit}` (use ms, s, m, h or d)")),
        };
        Ok(Span(d))
    }
}

/// A list of IP networks written as comma-separated CIDRs; a bare address is a network of one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetList(pub Vec<ipnet::IpNet>);

impl NetList {
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when the list trusts far more than any proxy fleet: a network wider than an
    /// IPv4 /8 or an IPv6 /16 (which also catches `0.0.0.0/1,128.0.0.0/1`).
    pub fn covers_everything(&self) -> bool {
        self.0.iter().any(|net| match net {
            ipnet::IpNet::V4(v4) => v4.prefix_len() < 8,
            ipnet::IpNet::V6(v6) => v6.prefix_len() < 16,
        })
    }
}

impl FromStr for NetList {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = match item.parse::<ipnet::IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match item.parse::<std::net::IpAddr>() {
                    Ok(ip) => ipnet::IpNet::from(ip.to_canonical()),
                    Err(_) => {
                        return Err(format!(
                            "`{item}` is not an IP address or CIDR network (e.g. 10.0.0.0/8)"
                        ));
                    }
                },
            };
            nets.push(net);
        }
        Ok(NetList(nets))
    }
}

/// Which forwarding header the trusted proxies write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardedHeader {
    XForwardedFor,
    Forwarded,
}

impl FromStr for ForwardedHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "x-forwarded-for" => Ok(Self::XForwardedFor),
            "forwarded" => Ok(Self::Forwarded),
            _ => Err("expected `x-forwarded-for` or `forwarded`".into()),
        }
    }
}

/// When a login is announced to the account by email (`login_alerts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAlerts {
    /// Only from a device (user agent and network) not seen in the account's recent sessions.
    NewDevice,
    /// Every login but the account's first.
    Always,
    Off,
}

impl FromStr for LoginAlerts {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "new-device" => Ok(Self::NewDevice),
            "always" => Ok(Self::Always),
            "off" => Ok(Self::Off),
            _ => Err("expected `new-device`, `always` or `off`".into()),
        }
    }
}

/// The browser origins allowed to call the API cross-origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    None,
    Any,
    /// Serialized origins (`scheme://host[:port]`), as browsers send them in `Origin`.
    List(Vec<String>),
}

impl FromStr for CorsOrigins {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let items: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .collect();
        if items.is_empty() {
            return Ok(CorsOrigins::None);
        }
        if items == ["*"] {
            return Ok(CorsOrigins::Any);
        }
        let mut origins = Vec::with_capacity(items.len());
        for item in items {
            if item == "*" {
                return Err("`*` cannot be combined with explicit origins".into());
            }
            let url = url::Url::parse(item).map_err(|_| {
                format!("`{item}` is not an origin such as https://app.example.com")
            })?;
            let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
            if !matches!(url.scheme(), "http" | "https") || !bare || url.username() != "" {
                return Err(format!(
                    "`{item}` is not an origin: use scheme://host[:port] with nothing after it"
                ));
            }
            origins.push(url.origin().ascii_serialization());
        }
        Ok(CorsOrigins::List(origins))
    }
}

/// The parsed, typed configuration. Built only through [`Config::load`] or [`Config::from_pairs`],
/// so every instance has passed the same checks.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: Environment,
    pub addr: SocketAddr,
    /// Native TLS, when configured; otherwise plain HTTP.
    pub tls: Option<TlsFiles>,
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    pub secret_key: Option<SecretString>,
    pub issuer: String,
    pub issuer_is_default: bool,
    pub log: String,
    pub log_format: LogFormat,
    pub migrate_on_start: bool,
    pub db_pool_max: u32,
    pub db_pool_min: u32,
    pub db_acquire_timeout: Duration,
    pub db_busy_timeout: Duration,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    pub hash_threads: usize,
    pub hash_queue: usize,
    pub password_min_length: usize,
    pub password_min_score: u8,
    pub access_token_ttl: Duration,
    /// The algorithm that signs access tokens.
    pub access_token_alg: crate::crypto::keys::SigningAlg,
    /// How often `serve` rotates the signing keys; zero: never.
    pub key_rotation_interval: Duration,
    pub refresh_token_ttl: Duration,
    /// Lifetime of a browser session on the OIDC pages.
    pub oidc_session_ttl: Duration,
    pub cache_ttl: Duration,
    pub token_cache_size: usize,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub shutdown_timeout: Duration,
    pub trusted_proxies: NetList,
    pub forwarded_header: ForwardedHeader,
    pub rate_limit_per_second: u32,
    pub rate_limit_burst: u32,
    pub auth_rate_limit_per_minute: u32,
    pub auth_rate_limit_burst: u32,
    pub login_backoff_after: u32,
    pub login_backoff_initial: Duration,
    pub login_backoff_max: Duration,
    pub login_backoff_reset: Duration,
    pub lockout_threshold: u32,
    pub cors_origins: CorsOrigins,
    pub cors_allow_credentials: bool,
    pub admin_allowed_networks: NetList,
    pub hsts_max_age: Duration,
    pub audit_retention_days: u32,
    /// A separate listener for `/metrics`; `None` serves it on the main one.
    pub metrics_addr: Option<SocketAddr>,
    pub sentry_dsn: Option<SecretString>,
    pub events_auth_timeout: Duration,
    pub events_ping_interval: Duration,
    pub events_buffer: usize,
    /// 0: no scheduled backups.
    pub backup_interval: Duration,
    pub backup_dir: PathBuf,
    pub backup_keep: usize,
    /// Where email goes; `None` writes it to the log and `<data_dir>/outbox/`.
    pub smtp: Option<crate::mail::SmtpUrl>,
    /// The `From` of every email.
    pub mail_from: lettre::message::Mailbox,
    pub mail_from_is_default: bool,
    pub mail_retry_initial: Duration,
    pub mail_retry_max: Duration,
    pub mail_max_attempts: u32,
    pub mail_templates_dir: Option<PathBuf>,
    /// 0: sent messages are kept forever.
    pub mail_retention: Duration,
    /// 0: given-up messages are kept forever.
    pub mail_failed_retention: Duration,
    pub login_alerts: LoginAlerts,
    pub email_verification_ttl: Duration,
    pub password_reset_ttl: Duration,
    pub require_verified_email: bool,
    /// Passkeys: the relying party id and the origins allowed to run ceremonies.
    pub webauthn: crate::auth::passkeys::RelyingParty,
    /// Things worth telling the operator that do not stop the start (unknown variables, ...).
    pub warnings: Vec<String>,
}

/// The PEM files native TLS is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Raw text values by key, each remembering where it came from.
#[derive(Debug, Default)]
struct Sources {
    values: BTreeMap<String, (String, Origin)>,
    warnings: Vec<String>,
    problems: Vec<String>,
}

impl Sources {
    fn set(&mut self, key: &str, value: String, origin: Origin) {
        self.values.insert(key.to_string(), (value, origin));
    }

    /// Takes `PORTVAKT_*` pairs from one source. `X_FILE` variants of secrets read the file.
    fn absorb_env_pairs(
        &mut self,
        pairs: impl IntoIterator<Item = (String, String)>,
        origin: Origin,
    ) {
        for (name, value) in pairs {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = rest.to_ascii_lowercase();
            // Test harness variables share the prefix but are not settings.
            if key.starts_with("test_") || key == "config" {
                continue;
            }
            if let Some(base) = key
                .strip_suffix("_file")
                .filter(|b| FILE_VARIANTS.contains(b))
            {
                match std::fs::read_to_string(&value) {
                    Ok(content) => self.set(
                        base,
                        content.trim_end_matches(['\n', '\r']).to_string(),
                        origin.clone(),
                    ),
                    Err(e) => self
                        .problems
                        .push(format!("{name} ({origin}): cannot read {value}: {e}")),
                }
                continue;
            }
            if SETTINGS.iter().any(|s| s.key == key) {
                self.set(&key, value, origin.clone());
            } else {
                self.warnings.push(format!(
                    "{name} ({origin}) is not a portvakt setting and was ignored"
                ));
            }
        }
    }

    fn absorb_toml(&mut self, path: &Path) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(format!("{}: {e}", path.display()));
                return;
            }
        };
        let table: toml::Table = match text.parse() {
            Ok(t) => t,
            Err(e) => {
                self.problems.push(format!("{}: {e}", path.display()));
                return;
            }
        };
        for (key, value) in table {
            if !SETTINGS.iter().any(|s| s.key == key) {
                self.problems
                    .push(format!("{}: unknown setting `{key}`", path.display()));
                continue;
            }
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .iter()
                    .map(|v| match v {
                        toml::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(","),
                other => {
                    self.problems.push(format!(
                        "{}: `{key}` cannot be a {}",
                        path.display(),
                        other.type_str()
                    ));
                    continue;
                }
            };
            self.set(&key, text, Origin::File(path.to_path_buf()));
        }
    }

    fn raw(&self, key: &str) -> (String, Origin) {
        match self.values.get(key) {
            Some((v, o)) => (v.trim().to_string(), o.clone()),
            None => (default_of(key).to_string(), Origin::Default),
        }
    }

    fn parse<T: FromStr>(&mut self, key: &str) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        let (text, origin) = self.raw(key);
        match text.parse::<T>() {
            Ok(v) => Some(v),
            Err(e) => {
                self.problems.push(format!(
                    "{} ({origin}): `{text}` is not valid: {e}",
                    env_name(key)
                ));
                None
            }
        }
    }

    fn text(&self, key: &str) -> Option<String> {
        let (text, _) = self.raw(key);
        (!text.is_empty()).then_some(text)
    }

    fn range<T: FromStr + PartialOrd + fmt::Display + Copy>(
        &mut self,
        key: &str,
        lo: T,
        hi: T,
    ) -> Option<T>
    where
        T::Err: fmt::Display,
    {
        let v = self.parse::<T>(key)?;
        if v < lo || v > hi {
            let (_, origin) = self.raw(key);
            self.problems.push(format!(
                "{} ({origin}): {v} is outside {lo}..={hi}",
                env_name(key)
            ));
            return None;
        }
        Some(v)
    }

    fn span(&mut self, key: &str, min: Duration) -> Option<Duration> {
        let Span(d) = self.parse::<Span>(key)?;
        if d < min {
            let (_, origin) = self.raw(key);
            self.problems.push(format!(
                "{} ({origin}): must be at least {min:?}",
                env_name(key)
            ));
            return None;
        }
        Some(d)
    }
}

/// Settings whose value may come from a file named by `PORTVAKT_<KEY>_FILE` (container secrets).
const FILE_VARIANTS: &[&str] = &["secret_key", "database_url", "sentry_dsn", "smtp_url"];

fn default_of(key: &str) -> &'static str {
    SETTINGS
        .iter()
        .find(|s| s.key == key)
        .map(|s| s.default)
        .unwrap_or("")
}

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.to_ascii_uppercase())
}

impl Config {
    /// Reads the process environment, `./.env` and the TOML file (`path`, or `./portvakt.toml`
    /// when it exists).
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let file = path.map(Path::to_path_buf).or_else(|| {
            let p = PathBuf::from("portvakt.toml");
            p.exists().then_some(p)
        });
        Self::load_from(file.as_deref(), Path::new(".env"), std::env::vars())
    }

    /// The layering behind [`Config::load`] with its inputs explicit: `env` > `dotenv` > `file`
    /// > defaults.
    pub fn load_from(
        file: Option<&Path>,
        dotenv: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut sources = Sources::default();
        if let Some(file) = file {
            sources.absorb_toml(file);
        }
        match dotenvy::from_path_iter(dotenv) {
            Ok(iter) => {
                let mut pairs = Vec::new();
                for item in iter {
                    match item {
                        Ok(pair) => pairs.push(pair),
                        Err(e) => sources.problems.push(format!("{}: {e}", dotenv.display())),
                    }
                }
                sources.absorb_env_pairs(pairs, Origin::DotEnv);
            }
            Err(e) if e.not_found() => {}
            Err(e) => sources.problems.push(format!("{}: {e}", dotenv.display())),
        }
        sources.absorb_env_pairs(env, Origin::Env);
        Self::finish(sources)
    }

    /// Builds a configuration from explicit `(key, value)` pairs over the defaults, ignoring
    /// the environment. Keys are the lowercase setting names. Used by tests and embedders.
    pub fn from_pairs<K: AsRef<str>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Config, ConfigError> {
        let mut sources = Sources::default();
        for (k, v) in pairs {
            let key = k.as_ref().to_ascii_lowercase();
            if SETTINGS.iter().any(|s| s.key == key) {
                sources.set(&key, v.into(), Origin::Explicit);
            } else {
                sources.problems.push(format!("unknown setting `{key}`"));
            }
        }
        Self::finish(sources)
    }

    fn finish(mut s: Sources) -> Result<Config, ConfigError> {
        let env = s.parse::<Environment>("env");
        let addr = s.parse::<SocketAddr>("addr");
        let data_dir = PathBuf::from(s.text("data_dir").unwrap_or_else(|| "./data".into()));
        let log = s.text("log").unwrap_or_else(|| "info".into());
        let log_format = s
            .text("log_format")
            .map(|_| s.parse::<LogFormat>("log_format"));
        let migrate_on_start = s.parse::<bool>("migrate_on_start");
        let db_pool_max = s.range::<u32>("db_pool_max", 1, 1000);
        let db_pool_min = s.range::<u32>("db_pool_min", 0, 1000);
        let db_acquire_timeout = s.span("db_acquire_timeout", Duration::from_millis(1));
        let db_busy_timeout = s.span("db_busy_timeout", Duration::ZERO);
        let argon2_memory_kib = s.range::<u32>("argon2_memory_kib", 8, 4 * 1024 * 1024);
        let argon2_iterations = s.range::<u32>("argon2_iterations", 1, 100);
        let argon2_parallelism = s.range::<u32>("argon2_parallelism", 1, 64);
        let hash_threads = s.range::<usize>("hash_threads", 0, 1024);
        let hash_queue = s.range::<usize>("hash_queue", 0, 1_000_000);
        let password_min_length = s.range::<usize>("password_min_length", 8, 128);
        let password_min_score = s.range::<u8>("password_min_score", 0, 4);
        let access_token_ttl = s.span("access_token_ttl", Duration::from_secs(1));
        let access_token_alg = s.parse::<crate::crypto::keys::SigningAlg>("access_token_alg");
        let key_rotation_interval = s.span("key_rotation_interval", Duration::ZERO);
        if let Some(d) = key_rotation_interval
            && !d.is_zero()
            && d < Duration::from_secs(1)
        {
            s.problems
                .push("PORTVAKT_KEY_ROTATION_INTERVAL must be 0 (off) or at least 1s".into());
        }
        let refresh_token_ttl = s.span("refresh_token_ttl", Duration::from_secs(1));
        let oidc_session_ttl = s.span("oidc_session_ttl", Duration::from_secs(60));
        let cache_ttl = s.span("cache_ttl", Duration::ZERO);
        let token_cache_size = s.range::<usize>("token_cache_size", 0, 100_000_000);
        let max_body_bytes = s.range::<usize>("max_body_bytes", 1024, 1 << 30);
        let request_timeout = s.span("request_timeout", Duration::from_millis(1));
        let header_read_timeout = s.span("header_read_timeout", Duration::from_millis(1));
        let max_connections = s.range::<usize>("max_connections", 1, 1_000_000);
        let max_connections_per_ip = s.range::<usize>("max_connections_per_ip", 0, 1_000_000);
        let shutdown_timeout = s.span("shutdown_timeout", Duration::ZERO);
        let trusted_proxies = s.parse::<NetList>("trusted_proxies");
        let forwarded_header = s.parse::<ForwardedHeader>("forwarded_header");
        let rate_limit_per_second = s.range::<u32>("rate_limit_per_second", 0, 1_000_000);
        let rate_limit_burst = s.range::<u32>("rate_limit_burst", 1, 1_000_000);
        let auth_rate_limit_per_minute = s.range::<u32>("auth_rate_limit_per_minute", 0, 1_000_000);
        let auth_rate_limit_burst = s.range::<u32>("auth_rate_limit_burst", 1, 1_000_000);
        let login_backoff_after = s.range::<u32>("login_backoff_after", 0, 1_000_000);
        let login_backoff_initial = s.span("login_backoff_initial", Duration::from_millis(1));
        let login_backoff_max = s.span("login_backoff_max", Duration::from_millis(1));
        let login_backoff_reset = s.span("login_backoff_reset", Duration::from_secs(1));
        let lockout_threshold = s.range::<u32>("lockout_threshold", 0, 1_000_000);
        let cors_origins = s.parse::<CorsOrigins>("cors_origins");
        let cors_allow_credentials = s.parse::<bool>("cors_allow_credentials");
        let admin_allowed_networks = s.parse::<NetList>("admin_allowed_networks");
        let hsts_max_age = s.span("hsts_max_age", Duration::ZERO);
        let audit_retention_days = s.range::<u32>("audit_retention_days", 0, 36_500);
        let metrics_addr = s
            .text("metrics_addr")
            .map(|_| s.parse::<SocketAddr>("metrics_addr"));
        let sentry_dsn = s.text("sentry_dsn");
        if let Some(dsn) = &sentry_dsn
            && let Err(e) = crate::telemetry::errors::check_dsn(dsn)
        {
            s.problems.push(format!("PORTVAKT_SENTRY_DSN: {e}"));
        }
        let events_auth_timeout = s.span("events_auth_timeout", Duration::from_millis(10));
        let events_ping_interval = s.span("events_ping_interval", Duration::from_millis(10));
        let events_buffer = s.range::<usize>("events_buffer", 1, 1_000_000);
        let backup_interval = s.span("backup_interval", Duration::ZERO);
        if let Some(d) = backup_interval
            && !d.is_zero()
            && d < Duration::from_secs(1)
        {
            s.problems
                .push("PORTVAKT_BACKUP_INTERVAL must be 0 (off) or at least 1s".into());
        }
        let backup_dir = s
            .text("backup_dir")
            .map_or_else(|| data_dir.join("backups"), PathBuf::from);
        let backup_keep = s.range::<usize>("backup_keep", 1, 100_000);
        let smtp = match s.text("smtp_url") {
            Some(text) => match crate::mail::SmtpUrl::parse(&text) {
                Ok(url) => Some(url),
                Err(e) => {
                    s.problems.push(format!("PORTVAKT_SMTP_URL: {e}"));
                    None
                }
            },
            None => None,
        };
        let smtp = match (smtp, s.text("smtp_ca_file")) {
            (Some(url), Some(file)) => match crate::mail::smtp::read_ca_file(Path::new(&file)) {
                Ok(ca) => Some(url.with_ca(file, ca)),
                Err(e) => {
                    s.problems.push(format!("PORTVAKT_SMTP_CA_FILE: {e}"));
                    None
                }
            },
            // Unused without SMTP, but a broken file is reported now rather than on the day SMTP
            // is turned on.
            (None, Some(file)) => {
                if let Err(e) = crate::mail::smtp::read_ca_file(Path::new(&file)) {
                    s.problems.push(format!("PORTVAKT_SMTP_CA_FILE: {e}"));
                }
                None
            }
            (smtp, None) => smtp,
        };
        let mail_from_text = s.text("mail_from");
        let mail_retry_initial = s.span("mail_retry_initial", Duration::from_millis(10));
        let mail_retry_max = s.span("mail_retry_max", Duration::from_millis(10));
        let mail_max_attempts = s.range::<u32>("mail_max_attempts", 1, 1000);
        let mail_templates_dir = s.text("mail_templates_dir").map(PathBuf::from);
        let mail_retention = s.span("mail_retention", Duration::ZERO);
        let mail_failed_retention = s.span("mail_failed_retention", Duration::ZERO);
        let login_alerts = s.parse::<LoginAlerts>("login_alerts");
        let email_verification_ttl = s.span("email_verification_ttl", Duration::from_secs(1));
        let password_reset_ttl = s.span("password_reset_ttl", Duration::from_secs(1));
        let require_verified_email = s.parse::<bool>("require_verified_email");
        if let (Some(initial), Some(max)) = (mail_retry_initial, mail_retry_max)
            && initial > max
        {
            s.problems
                .push("PORTVAKT_MAIL_RETRY_INITIAL is longer than PORTVAKT_MAIL_RETRY_MAX".into());
        }

        let database_url = s.text("database_url");
        let secret_key = s.text("secret_key").map(SecretString::from);
        let issuer_text = s.text("issuer");
        let tls = match (s.text("tls_cert"), s.text("tls_key")) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
            }),
            (None, None) => None,
            (cert, _) => {
                let (set, unset) = if cert.is_some() {
                    ("tls_cert", "tls_key")
                } else {
                    ("tls_key", "tls_cert")
                };
                let (_, origin) = s.raw(set);
                s.problems.push(format!(
                    "{} ({origin}) is set but {} is not: native TLS needs both the certificate and the key file (or neither, behind a TLS-terminating proxy)",
                    env_name(set),
                    env_name(unset)
                ));
                None
            }
        };

        if let (Some(min), Some(max)) = (db_pool_min, db_pool_max)
            && min > max
        {
            s.problems.push(format!(
                "PORTVAKT_DB_POOL_MIN ({min}) is larger than PORTVAKT_DB_POOL_MAX ({max})"
            ));
        }
        if let (Some(CorsOrigins::Any), Some(true)) = (&cors_origins, cors_allow_credentials) {
            s.problems.push(
                "PORTVAKT_CORS_ALLOW_CREDENTIALS needs explicit PORTVAKT_CORS_ORIGINS: browsers refuse credentials with `*`, and reflecting any origin would hand every site the user's session".into(),
            );
        }
        if let (Some(initial), Some(max)) = (login_backoff_initial, login_backoff_max)
            && initial > max
        {
            s.problems.push(
                "PORTVAKT_LOGIN_BACKOFF_INITIAL is longer than PORTVAKT_LOGIN_BACKOFF_MAX".into(),
            );
        }
        if let Some(url) = &database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            s.problems.push(
                "PORTVAKT_DATABASE_URL must start with postgres://, postgresql:// or sqlite:"
                    .into(),
            );
        }

        let issuer = match (&issuer_text, addr) {
            (Some(text), _) => match validate_issuer(text) {
                Ok(i) => Some(i),
                Err(e) => {
                    s.problems.push(format!("PORTVAKT_ISSUER: {e}"));
                    None
                }
            },
            (None, Some(addr)) => Some(default_issuer(addr, tls.is_some())),
            (None, None) => None,
        };

        let webauthn = issuer.as_deref().and_then(|issuer| {
            crate::auth::passkeys::RelyingParty::from_settings(
                issuer,
                s.text("webauthn_rp_id").as_deref(),
                s.text("webauthn_origins").as_deref(),
            )
            .map_err(|e| s.problems.push(e))
            .ok()
        });

        let mail_from = match (&mail_from_text, &issuer) {
            (Some(text), _) => match text.parse::<lettre::message::Mailbox>() {
                Ok(m) => Some(m),
                Err(e) => {
                    s.problems.push(format!(
                        "PORTVAKT_MAIL_FROM: `{text}` is not a mailbox such as `Portvakt <noreply@example.com>`: {e}"
                    ));
                    None
                }
            },
            (None, Some(issuer)) => {
                default_mail_from(issuer).or_else(|| "Portvakt <portvakt@localhost>".parse().ok())
            }
            (None, None) => None,
        };

        let log_format = match log_format {
            Some(Some(f)) => Some(f),
            Some(None) => None,
            None => env.map(|e| match e {
                Environment::Production => LogFormat::Json,
                Environment::Development => LogFormat::Pretty,
            }),
        };

        if !s.problems.is_empty() {
            return Err(ConfigError {
                problems: s.problems,
            });
        }
        let missing = || ConfigError {
            problems: vec!["internal: a setting failed to parse without a message".into()],
        };
        let database_url = database_url.unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("portvakt.db").display()
            )
        });
        Ok(Config {
            env: env.ok_or_else(missing)?,
            addr: addr.ok_or_else(missing)?,
            tls,
            data_dir,
            database_url: SecretString::from(database_url),
            secret_key,
            issuer_is_default: issuer_text.is_none(),
            issuer: issuer.ok_or_else(missing)?,
            log,
            log_format: log_format.ok_or_else(missing)?,
            migrate_on_start: migrate_on_start.ok_or_else(missing)?,
            db_pool_max: db_pool_max.ok_or_else(missing)?,
            db_pool_min: db_pool_min.ok_or_else(missing)?,
            db_acquire_timeout: db_acquire_timeout.ok_or_else(missing)?,
            db_busy_timeout: db_busy_timeout.ok_or_else(missing)?,
            argon2_memory_kib: argon2_memory_kib.ok_or_else(missing)?,
            argon2_iterations: argon2_iterations.ok_or_else(missing)?,
            argon2_parallelism: argon2_parallelism.ok_or_else(missing)?,
            hash_threads: hash_threads.ok_or_else(missing)?,
            hash_queue: hash_queue.ok_or_else(missing)?,
            password_min_length: password_min_length.ok_or_else(missing)?,
            password_min_score: password_min_score.ok_or_else(missing)?,
            access_token_ttl: access_token_ttl.ok_or_else(missing)?,
            access_token_alg: access_token_alg.ok_or_else(missing)?,
            key_rotation_interval: key_rotation_interval.ok_or_else(missing)?,
            refresh_token_ttl: refresh_token_ttl.ok_or_else(missing)?,
            oidc_session_ttl: oidc_session_ttl.ok_or_else(missing)?,
            cache_ttl: cache_ttl.ok_or_else(missing)?,
            token_cache_size: token_cache_size.ok_or_else(missing)?,
            max_body_bytes: max_body_bytes.ok_or_else(missing)?,
            request_timeout: request_timeout.ok_or_else(missing)?,
            header_read_timeout: header_read_timeout.ok_or_else(missing)?,
            max_connections: max_connections.ok_or_else(missing)?,
            max_connections_per_ip: max_connections_per_ip.ok_or_else(missing)?,
            shutdown_timeout: shutdown_timeout.ok_or_else(missing)?,
            trusted_proxies: trusted_proxies.ok_or_else(missing)?,
            forwarded_header: forwarded_header.ok_or_else(missing)?,
            rate_limit_per_second: rate_limit_per_second.ok_or_else(missing)?,
            rate_limit_burst: rate_limit_burst.ok_or_else(missing)?,
            auth_rate_limit_per_minute: auth_rate_limit_per_minute.ok_or_else(missing)?,
            auth_rate_limit_burst: auth_rate_limit_burst.ok_or_else(missing)?,
            login_backoff_after: login_backoff_after.ok_or_else(missing)?,
            login_backoff_initial: login_backoff_initial.ok_or_else(missing)?,
            login_backoff_max: login_backoff_max.ok_or_else(missing)?,
            login_backoff_reset: login_backoff_reset.ok_or_else(missing)?,
            lockout_threshold: lockout_threshold.ok_or_else(missing)?,
            cors_origins: cors_origins.ok_or_else(missing)?,
            cors_allow_credentials: cors_allow_credentials.ok_or_else(missing)?,
            admin_allowed_networks: admin_allowed_networks.ok_or_else(missing)?,
            hsts_max_age: hsts_max_age.ok_or_else(missing)?,
            audit_retention_days: audit_retention_days.ok_or_else(missing)?,
            metrics_addr: match metrics_addr {
                Some(addr) => Some(addr.ok_or_else(missing)?),
                None => None,
            },
            sentry_dsn: sentry_dsn.map(SecretString::from),
            events_auth_timeout: events_auth_timeout.ok_or_else(missing)?,
            events_ping_interval: events_ping_interval.ok_or_else(missing)?,
            events_buffer: events_buffer.ok_or_else(missing)?,
            backup_interval: backup_interval.ok_or_else(missing)?,
            backup_dir,
            backup_keep: backup_keep.ok_or_else(missing)?,
            smtp,
            mail_from: mail_from.ok_or_else(missing)?,
            mail_from_is_default: mail_from_text.is_none(),
            mail_retry_initial: mail_retry_initial.ok_or_else(missing)?,
            mail_retry_max: mail_retry_max.ok_or_else(missing)?,
            mail_max_attempts: mail_max_attempts.ok_or_else(missing)?,
            mail_templates_dir,
            mail_retention: mail_retention.ok_or_else(missing)?,
            mail_failed_retention: mail_failed_retention.ok_or_else(missing)?,
            login_alerts: login_alerts.ok_or_else(missing)?,
            email_verification_ttl: email_verification_ttl.ok_or_else(missing)?,
            password_reset_ttl: password_reset_ttl.ok_or_else(missing)?,
            require_verified_email: require_verified_email.ok_or_else(missing)?,
            webauthn: webauthn.ok_or_else(missing)?,
            warnings: s.warnings,
        })
    }

    pub fn is_production(&self) -> bool {
        self.env == Environment::Production
    }

    pub fn is_postgres(&self) -> bool {
        let url = self.database_url.expose_secret();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// Threads for password hashing: the configured number, or one per core.
    pub fn hash_thread_count(&self) -> usize {
        if self.hash_threads > 0 {
            self.hash_threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
        }
    }
}

/// `portvakt@<issuer host>`, or `portvakt@localhost` when the host is an IP address (lettre
/// takes no address literals).
fn default_mail_from(issuer: &str) -> Option<lettre::message::Mailbox> {
    let url = url::Url::parse(issuer).ok()?;
    let domain = match url.host()? {
        url::Host::Domain(d) => d.to_string(),
        url::Host::Ipv4(_) | url::Host::Ipv6(_) => "localhost".to_string(),
    };
    format!("Portvakt <portvakt@{domain}>").parse().ok()
}

fn default_issuer(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = if addr.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        addr.ip().to_string()
    };
    match addr {
        SocketAddr::V6(_) if !addr.ip().is_unspecified() => {
            format!("{scheme}://[{host}]:{}", addr.port())
        }
        _ => format!("{scheme}://{host}:{}", addr.port()),
    }
}

/// An issuer is an absolute http(s) URL without query or fragment (OIDC Discovery 1.0 §3);
/// a trailing slash is dropped so that `iss` compares equal however it was written.
fn validate_issuer(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|_| format!("`{text}` is not an absolute URL"))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("`{text}` must use http or https"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{text}` must not have a query or fragment"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{text}` has no host"));
    }
    Ok(text.trim_end_matches('/').to_string())
}

// ---- secret key rules ----

/// Minimum decoded length of a secret key.
pub const MIN_SECRET_BYTES: usize = 32;

/// The example value in `.env.example`, refused wherever it shows up.
pub const EXAMPLE_SECRET: &str = "REPLACE_ME_with_the_output_of_portvakt_secret";

/// The file a development instance keeps its generated secret in.
pub const DEV_SECRET_FILE: &str = "secret.key";

/// The key material a secret stands for: hex or base64 decoded when it is such, the raw
/// bytes otherwise.
pub fn key_material(text: &str) -> Vec<u8> {
    let t = text.trim();
    let is_hex =
        t.len().is_multiple_of(2) && !t.is_empty() && t.bytes().all(|b| b.is_ascii_hexdigit());
    if is_hex {
        let mut out = Vec::with_capacity(t.len() / 2);
        for pair in t.as_bytes().chunks(2) {
            let s = std::str::from_utf8(pair).unwrap_or("00");
            out.push(u8::from_str_radix(s, 16).unwrap_or(0));
        }
        return out;
    }
    for engine in [&URL_SAFE_NO_PAD, &URL_SAFE, &STANDARD, &STANDARD_NO_PAD] {
        if let Ok(bytes) = engine.decode(t) {
            return bytes;
        }
    }
    t.as_bytes().to_vec()
}

/// Why a secret key is too weak to use in production, if it is.
pub fn secret_weakness(text: &str) -> Option<String> {
    if text.trim() == EXAMPLE_SECRET {
        return Some("is the example value from .env.example".into());
    }
    let bytes = key_material(text);
    if bytes.len() < MIN_SECRET_BYTES {
        return Some(format!(
            "is {} bytes; at least {MIN_SECRET_BYTES} random bytes are required",
            bytes.len()
        ));
    }
    // 32 random bytes have about 30 distinct values; a repeated or patterned key has few.
    let mut seen = [false; 256];
    let distinct = bytes
        .iter()
        .filter(|b| !std::mem::replace(&mut seen[usize::from(**b)], true))
        .count();
    if distinct < 16 {
        return Some("does not look random (too few distinct bytes)".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_accept_plain_seconds_and_units() {
        assert_eq!("900".parse::<Span>().unwrap().0, Duration::from_secs(900));
        assert_eq!("15m".parse::<Span>().unwrap().0, Duration::from_secs(900));
        assert_eq!(
            "250ms".parse::<Span>().unwrap().0,
            Duration::from_millis(250)
        );
        assert_eq!(
            "30d".parse::<Span>().unwrap().0,
            Duration::from_secs(30 * 86_400)
        );
        assert!("15 parsecs".parse::<Span>().is_err());
        assert!("".parse::<Span>().is_err());
    }

    #[test]
    fn defaults_give_a_development_config_on_sqlite() {
        let c = Config::from_pairs::<&str, &str>([]).unwrap();
        assert_eq!(c.env, Environment::Development);
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.issuer, "http://127.0.0.1:8080");
        assert!(!c.is_postgres());
        assert_eq!(c.access_token_ttl, Duration::from_secs(900));
        assert_eq!(c.log_format, LogFormat::Pretty);
    }

    #[test]
    fn every_problem_is_reported_with_its_variable() {
        let err = Config::from_pairs([
            ("db_pool_max", "many"),
            ("access_token_ttl", "soon"),
            ("password_min_length", "4"),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("PORTVAKT_DB_POOL_MAX"), "{text}");
        assert!(text.contains("PORTVAKT_ACCESS_TOKEN_TTL"), "{text}");
        assert!(text.contains("PORTVAKT_PASSWORD_MIN_LENGTH"), "{text}");
    }

    #[test]
    fn issuer_must_be_a_plain_absolute_url() {
        assert!(validate_issuer("https://id.example.com/").is_ok());
        assert_eq!(
            validate_issuer("https://id.example.com/").unwrap(),
            "https://id.example.com"
        );
        assert!(validate_issuer("id.example.com").is_err());
        assert!(validate_issuer("https://id.example.com/?a=b").is_err());
        assert!(validate_issuer("ftp://id.example.com").is_err());
    }

    #[test]
    fn environment_beats_dotenv_which_beats_the_file_which_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let toml = dir.path().join("portvakt.toml");
        std::fs::write(
            &toml,
            "addr = \"127.0.0.1:7001\"\nlog = \"warn\"\ndb_pool_max = 3\naccess_token_ttl = 60\n",
        )
        .unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(
            &dotenv,
            "PORTVAKT_ADDR=127.0.0.1:7002\nPORTVAKT_LOG=debug\n",
        )
        .unwrap();
        let env = [
            ("PORTVAKT_ADDR".to_string(), "127.0.0.1:7003".to_string()),
            ("HOME".to_string(), "/x".to_string()),
        ];
        let c = Config::load_from(Some(&toml), &dotenv, env).unwrap();
        assert_eq!(c.addr.port(), 7003, "environment wins");
        assert_eq!(c.log, "debug", ".env beats the file");
        assert_eq!(c.db_pool_max, 3, "the file beats defaults");
        assert_eq!(c.access_token_ttl, Duration::from_secs(60));
        assert_eq!(
            c.refresh_token_ttl,
            Duration::from_secs(30 * 86_400),
            "defaults fill the rest"
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8\n").unwrap();
        let env = [(
            "PORTVAKT_SECRET_KEY_FILE".to_string(),
            path.display().to_string(),
        )];
        let c = Config::load_from(None, &dir.path().join(".env"), env).unwrap();
        assert_eq!(
            c.secret_key.unwrap().expose_secret(),
            "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8"
        );
    }

    #[test]
    fn unknown_settings_are_rejected_in_files_and_named_in_warnings_from_env() {
        let mut s = Sources::default();
        s.absorb_env_pairs(
            [("PORTVAKT_DATABSE_URL".to_string(), "x".to_string())],
            Origin::Env,
        );
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains("PORTVAKT_DATABSE_URL"));
        s.absorb_env_pairs(
            [("PORTVAKT_TEST_DATABASE_URL".to_string(), "x".to_string())],
            Origin::Env,
        );
        assert_eq!(s.warnings.len(), 1);
        assert!(Config::from_pairs([("no_such_thing", "1")]).is_err());
    }

    #[test]
    fn short_repetitive_and_example_secrets_are_weak() {
        assert!(secret_weakness("changeme").is_some());
        assert!(secret_weakness(&"a".repeat(64)).is_some());
        assert!(secret_weakness(EXAMPLE_SECRET).is_some());
        // 32 random bytes, hex-encoded or as `openssl rand -base64 32` prints them, are fine.
        let bytes: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(97).wrapping_add(13))
            .collect();
        assert_eq!(
            secret_weakness(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
            None
        );
        assert_eq!(secret_weakness(&STANDARD.encode(&bytes)), None);
    }
}

// ---- production guards ----

/// How serious a finding is. In production any `Fail` stops the service from starting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Pass,
    Warn,
    Fail,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Pass => "pass",
            Level::Warn => "warn",
            Level::Fail => "fail",
        })
    }
}

/// One line of the readiness report: what was checked, what was found, how to fix it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub item: &'static str,
    pub message: String,
    pub fix: String,
}

impl Finding {
    pub fn new(
        level: Level,
        item: &'static str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            level,
            item,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

impl Config {
    /// Checks of the configuration itself. What is unsafe in production is a `Fail` there and
    /// a `Warn` in development, where convenience defaults are expected.
    pub fn findings(&self) -> Vec<Finding> {
        let prod = self.is_production();
        let bad = if prod { Level::Fail } else { Level::Warn };
        let mut out = Vec::new();

        match &self.secret_key {
            None if prod => out.push(Finding::new(Level::Fail, "secret_key", "PORTVAKT_SECRET_KEY is not set", "set PORTVAKT_SECRET_KEY (or PORTVAKT_SECRET_KEY_FILE) to the output of `portvakt secret`")),
            None => out.push(Finding::new(Level::Pass, "secret_key", "development secret key kept in the data directory", "set PORTVAKT_SECRET_KEY before going to production")),
            Some(s) => match secret_weakness(s.expose_secret()) {
                Some(why) => out.push(Finding::new(bad, "secret_key", format!("PORTVAKT_SECRET_KEY {why}"), "replace it with the output of `portvakt secret`")),
                None => out.push(Finding::new(Level::Pass, "secret_key", "strong secret key configured", "")),
            },
        }

        if prod && self.issuer_is_default {
            out.push(Finding::new(
                Level::Fail,
                "issuer",
                "PORTVAKT_ISSUER is not set",
                "set PORTVAKT_ISSUER to the public https URL of this service",
            ));
        } else if !self.issuer.starts_with("https://") {
            out.push(Finding::new(
                bad,
                "issuer",
                format!("issuer {} is not https", self.issuer),
                "set PORTVAKT_ISSUER to an https:// URL (terminate TLS at a proxy or natively)",
            ));
        } else {
            out.push(Finding::new(
                Level::Pass,
                "issuer",
                format!("issuer {}", self.issuer),
                "",
            ));
        }

        // OWASP's argon2id table trades memory against passes; below its weakest row
        // (7 MiB x 5) offline guessing gets cheap.
        let work = u64::from(self.argon2_memory_kib) * u64::from(self.argon2_iterations);
        if self.argon2_memory_kib < 7168 || work < 7168 * 5 {
            out.push(Finding::new(
                bad,
                "argon2",
                format!(
                    "argon2id m={} KiB, t={} is below OWASP's minimum",
                    self.argon2_memory_kib, self.argon2_iterations
                ),
                "use PORTVAKT_ARGON2_MEMORY_KIB=19456 and PORTVAKT_ARGON2_ITERATIONS=2",
            ));
        } else {
            out.push(Finding::new(
                Level::Pass,
                "argon2",
                format!(
                    "argon2id m={} KiB, t={}, p={}",
                    self.argon2_memory_kib, self.argon2_iterations, self.argon2_parallelism
                ),
                "",
            ));
        }

        match self.password_min_score {
            0 | 1 => out.push(Finding::new(
                bad,
                "password_policy",
                format!("password strength minimum is {}", self.password_min_score),
                "set PORTVAKT_PASSWORD_MIN_SCORE to 3",
            )),
            2 => out.push(Finding::new(
                Level::Warn,
                "password_policy",
                "password strength minimum is 2",
                "set PORTVAKT_PASSWORD_MIN_SCORE to 3",
            )),
            _ => out.push(Finding::new(
                Level::Pass,
                "password_policy",
                format!(
                    "passwords need {}+ characters and strength {}",
                    self.password_min_length, self.password_min_score
                ),
                "",
            )),
        }

        if self.access_token_ttl > Duration::from_secs(24 * 3600) {
            out.push(Finding::new(
                bad,
                "access_token_ttl",
                format!("access tokens live {}s", self.access_token_ttl.as_secs()),
                "keep PORTVAKT_ACCESS_TOKEN_TTL at an hour or less (15m is the default)",
            ));
        } else if self.access_token_ttl > Duration::from_secs(3600) {
            out.push(Finding::new(
                Level::Warn,
                "access_token_ttl",
                format!("access tokens live {}s", self.access_token_ttl.as_secs()),
                "keep PORTVAKT_ACCESS_TOKEN_TTL at an hour or less",
            ));
        } else {
            out.push(Finding::new(
                Level::Pass,
                "access_token_ttl",
                format!("access tokens live {}s", self.access_token_ttl.as_secs()),
                "",
            ));
        }

        match &self.cors_origins {
            CorsOrigins::Any => out.push(Finding::new(
                bad,
                "cors_origins",
                "any website may call the API from a visitor's browser (`*`)",
                "list the origins of your front ends in PORTVAKT_CORS_ORIGINS",
            )),
            CorsOrigins::None => out.push(Finding::new(
                Level::Pass,
                "cors_origins",
                "no cross-origin browser access",
                "",
            )),
            CorsOrigins::List(list) => out.push(Finding::new(
                Level::Pass,
                "cors_origins",
                format!("cross-origin access for {}", list.join(", ")),
                "",
            )),
        }
        if self.cors_allow_credentials && self.cors_origins == CorsOrigins::None {
            out.push(Finding::new(
                Level::Warn,
                "cors_allow_credentials",
                "credentials are allowed but no origin is",
                "set PORTVAKT_CORS_ORIGINS or drop PORTVAKT_CORS_ALLOW_CREDENTIALS",
            ));
        }
        if self.trusted_proxies.covers_everything() {
            out.push(Finding::new(
                bad,
                "trusted_proxies",
                "every peer is trusted to name the client's IP, so anyone can dodge rate limits and the admin network list",
                "list only your reverse proxies' addresses in PORTVAKT_TRUSTED_PROXIES",
            ));
        }
        if self.rate_limit_per_second == 0 || self.auth_rate_limit_per_minute == 0 {
            out.push(Finding::new(
                Level::Warn,
                "rate_limits",
                "a per-IP rate limit is turned off",
                "keep PORTVAKT_RATE_LIMIT_PER_SECOND and PORTVAKT_AUTH_RATE_LIMIT_PER_MINUTE above 0",
            ));
        } else {
            out.push(Finding::new(
                Level::Pass,
                "rate_limits",
                format!(
                    "{}/s per IP, {}/min on login, signup and refresh",
                    self.rate_limit_per_second, self.auth_rate_limit_per_minute
                ),
                "",
            ));
        }
        if self.login_backoff_after == 0 {
            out.push(Finding::new(
                bad,
                "login_backoff_after",
                "failed logins are never slowed per account, so a password spray from many IPs is unhindered",
                "set PORTVAKT_LOGIN_BACKOFF_AFTER (default 5)",
            ));
        }

        if self.cache_ttl > Duration::from_secs(60) {
            out.push(Finding::new(Level::Warn, "cache_ttl", "a revoked session may stay usable on other instances for over a minute if a broadcast is lost", "keep PORTVAKT_CACHE_TTL at 60s or less"));
        }

        if prod && self.log_format == LogFormat::Pretty {
            out.push(Finding::new(
                Level::Warn,
                "log_format",
                "logs are human-readable text",
                "set PORTVAKT_LOG_FORMAT=json for log shippers",
            ));
        } else {
            out.push(Finding::new(
                Level::Pass,
                "log_format",
                match self.log_format {
                    LogFormat::Json => "logs are JSON lines",
                    LogFormat::Pretty => "logs are readable text (development)",
                },
                "",
            ));
        }

        // Behind a proxy that is not trusted, every client has the proxy's address: one
        // rate-limit bucket for everyone, and audit entries that name the proxy.
        if prod && self.tls.is_none() && self.trusted_proxies.is_empty() {
            out.push(Finding::new(
                Level::Warn,
                "proxy",
                "plain HTTP and no trusted proxy: behind a TLS proxy, every client would look like the proxy",
                "set PORTVAKT_TRUSTED_PROXIES to your reverse proxy's address (or serve TLS natively with PORTVAKT_TLS_CERT/KEY)",
            ));
        } else if !self.trusted_proxies.is_empty() {
            out.push(Finding::new(
                Level::Pass,
                "proxy",
                "client addresses are taken from trusted proxies' forwarding header",
                "",
            ));
        }

        match self.metrics_addr {
            Some(addr) => out.push(Finding::new(
                Level::Pass,
                "metrics",
                format!("/metrics on its own listener {addr}"),
                "",
            )),
            None if prod && self.admin_allowed_networks.is_empty() => out.push(Finding::new(
                Level::Warn,
                "metrics",
                "/metrics is served to anyone who reaches the main listener",
                "set PORTVAKT_METRICS_ADDR to an internal address, or PORTVAKT_ADMIN_ALLOWED_NETWORKS",
            )),
            None => out.push(Finding::new(
                Level::Pass,
                "metrics",
                "/metrics on the main listener",
                "",
            )),
        }

        if self.sentry_dsn.is_some() {
            out.push(Finding::new(
                Level::Pass,
                "error_reporting",
                "5xx answers are reported to PORTVAKT_SENTRY_DSN",
                "",
            ));
        } else if prod {
            out.push(Finding::new(
                Level::Warn,
                "error_reporting",
                "server errors are only in the logs",
                "set PORTVAKT_SENTRY_DSN to be told about them",
            ));
        }

        out.extend(self.mail_findings());
        out.extend(self.webauthn_findings());

        out.extend(self.tls_findings());

        if self.is_postgres() {
            out.push(Finding::new(
                Level::Pass,
                "database",
                format!("PostgreSQL, pool of {}", self.db_pool_max),
                "",
            ));
        } else {
            out.push(Finding::new(
                Level::Pass,
                "database",
                "embedded SQLite (one instance; use PostgreSQL to scale out)",
                "",
            ));
        }

        for w in &self.warnings {
            out.push(Finding::new(
                Level::Warn,
                "settings",
                w.clone(),
                "remove or correct the variable",
            ));
        }
        out
    }
}

impl Config {
    /// Native TLS files: present and readable (a `Fail` in any environment, since the service
    /// could not start), and the key not readable by others. Whether the pair is usable is
    /// checked by loading it, which `portvakt check` does as well.
    fn mail_findings(&self) -> Vec<Finding> {
        let prod = self.is_production();
        let mut out = Vec::new();
        match &self.smtp {
            Some(smtp) if !smtp.encrypted() && prod && !smtp.is_loopback() => {
                out.push(Finding::new(
                    Level::Fail,
                    "smtp",
                    format!(
                        "PORTVAKT_SMTP_URL sends email unencrypted (`tls=none`) to {}",
                        smtp.host
                    ),
                    "use smtp:// (STARTTLS) or smtps://; `tls=none` is for a relay on the loopback address",
                ));
            }
            Some(smtp) => out.push(Finding::new(
                Level::Pass,
                "smtp",
                format!("email is delivered through {}", smtp.describe()),
                "",
            )),
            None if prod => out.push(Finding::new(
                Level::Warn,
                "smtp",
                "no SMTP: emails are only written to the data directory's outbox/ folder, and nobody receives them",
                "set PORTVAKT_SMTP_URL (smtp://user:pass@host:587 or smtps://...)",
            )),
            None => out.push(Finding::new(
                Level::Pass,
                "smtp",
                "no SMTP: emails are written to the log and to the data directory's outbox/ folder",
                "set PORTVAKT_SMTP_URL before going to production",
            )),
        }
        out.push(match self.login_alerts {
            LoginAlerts::Off if prod => Finding::new(
                Level::Warn,
                "login_alerts",
                "login alerts are off: nobody hears of a sign-in with a stolen password",
                "set PORTVAKT_LOGIN_ALERTS=new-device",
            ),
            LoginAlerts::Off => {
                Finding::new(Level::Pass, "login_alerts", "login alerts are off", "")
            }
            LoginAlerts::NewDevice => Finding::new(
                Level::Pass,
                "login_alerts",
                "accounts are emailed on a login from a new device",
                "",
            ),
            LoginAlerts::Always => Finding::new(
                Level::Pass,
                "login_alerts",
                "accounts are emailed on every login but the first",
                "",
            ),
        });
        if prod && self.mail_from_is_default {
            out.push(Finding::new(
                Level::Warn,
                "mail_from",
                format!("emails are sent from the default {}", self.mail_from),
                "set PORTVAKT_MAIL_FROM to an address your mail domain allows (SPF/DKIM)",
            ));
        }
        out
    }

    /// Passkeys: a production relying party must be a real domain served over https, or
    /// browsers (rightly) refuse its ceremonies, or worse, a plain-http page could run them.
    fn webauthn_findings(&self) -> Vec<Finding> {
        let rp = &self.webauthn;
        // The issuer's own origin is the issuer finding's business; report each problem once.
        let issuer_origin = url::Url::parse(&self.issuer)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let insecure: Vec<String> = rp
            .insecure_origins()
            .into_iter()
            .filter(|o| *o != issuer_origin)
            .collect();
        if self.is_production() && rp.rp_id == "localhost" && !self.issuer_is_default {
            vec![Finding::new(
                Level::Fail,
                "webauthn",
                "passkeys are bound to `localhost`",
                "set PORTVAKT_ISSUER (or PORTVAKT_WEBAUTHN_RP_ID) to the public domain",
            )]
        } else if !insecure.is_empty() {
            let level = if self.is_production() {
                Level::Fail
            } else {
                Level::Warn
            };
            vec![Finding::new(
                level,
                "webauthn",
                format!("passkey origins without https: {}", insecure.join(", ")),
                "list only https:// origins in PORTVAKT_WEBAUTHN_ORIGINS",
            )]
        } else {
            vec![Finding::new(
                Level::Pass,
                "webauthn",
                format!("passkeys for `{}` from {}", rp.rp_id, rp.origins_text()),
                "",
            )]
        }
    }

    fn tls_findings(&self) -> Vec<Finding> {
        let Some(files) = &self.tls else {
            return vec![Finding::new(
                Level::Pass,
                "tls",
                "plain HTTP (native TLS is off; terminate TLS at a proxy)",
                "",
            )];
        };
        let mut out = Vec::new();
        for (setting, path) in [
            ("PORTVAKT_TLS_CERT", &files.cert),
            ("PORTVAKT_TLS_KEY", &files.key),
        ] {
            if let Err(e) = std::fs::File::open(path) {
                out.push(Finding::new(
                    Level::Fail,
                    "tls",
                    format!("cannot read {setting} file {}: {e}", path.display()),
                    format!("point {setting} at a readable PEM file"),
                ));
            }
        }
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(&files.key) {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                out.push(Finding::new(
                    Level::Warn,
                    "tls",
                    format!(
                        "the TLS key file {} is accessible to group or others (mode {mode:03o})",
                        files.key.display()
                    ),
                    format!("chmod 600 {}", files.key.display()),
                ));
            }
        }
        if out.is_empty() {
            out.push(Finding::new(
                Level::Pass,
                "tls",
                format!(
                    "native TLS from {} and {}",
                    files.cert.display(),
                    files.key.display()
                ),
                "",
            ));
        }
        out
    }
}

#[cfg(test)]
mod guard_tests {
    use super::*;

    fn prod(extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![("env", "production")];
        pairs.extend_from_slice(extra);
        Config::from_pairs(pairs).unwrap()
    }

    fn fails(c: &Config) -> Vec<&'static str> {
        c.findings()
            .into_iter()
            .filter(|f| f.level == Level::Fail)
            .map(|f| f.item)
            .collect()
    }

    #[test]
    fn production_passkeys_need_a_domain_and_https_origins() {
        let strong = "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8";
        let base = [("secret_key", strong), ("issuer", "https://id.example.com")];
        assert!(!fails(&prod(&base)).contains(&"webauthn"));
        let mut plain = base.to_vec();
        plain.extend([
            ("webauthn_rp_id", "example.com"),
            (
                "webauthn_origins",
                "https://id.example.com, http://app.example.com",
            ),
        ]);
        assert_eq!(fails(&prod(&plain)), vec!["webauthn"]);
        let mut local = base.to_vec();
        local.extend([
            ("webauthn_rp_id", "localhost"),
            ("webauthn_origins", "http://localhost:3000"),
        ]);
        assert_eq!(fails(&prod(&local)), vec!["webauthn"]);
        // Origins off the relying party's domain stop the start, in any environment.
        let err = Config::from_pairs(vec![
            ("webauthn_rp_id", "example.com"),
            ("webauthn_origins", "https://example.org"),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("PORTVAKT_WEBAUTHN_RP_ID"), "{err}");
    }

    #[test]
    fn production_needs_a_strong_secret_and_an_https_issuer() {
        assert_eq!(fails(&prod(&[])), vec!["secret_key", "issuer"]);
        assert_eq!(
            fails(&prod(&[
                ("secret_key", "short"),
                ("issuer", "http://id.example.com")
            ])),
            vec!["secret_key", "issuer"]
        );
        let strong = "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8";
        assert!(
            fails(&prod(&[
                ("secret_key", strong),
                ("issuer", "https://id.example.com")
            ]))
            .is_empty()
        );
    }

    #[test]
    fn production_sends_unencrypted_email_only_to_a_loopback_relay() {
        let strong = "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8";
        let with = |url: &'static str| {
            prod(&[
                ("secret_key", strong),
                ("issuer", "https://id.example.com"),
                ("smtp_url", url),
            ])
        };
        assert_eq!(
            fails(&with("smtp://mail.example.com:25?tls=none")),
            vec!["smtp"]
        );
        assert!(fails(&with("smtp://127.0.0.1:25?tls=none")).is_empty());
        assert!(fails(&with("smtp://user:pw@mail.example.com")).is_empty());
        assert!(fails(&with("smtps://mail.example.com")).is_empty());
        let err = Config::from_pairs([("smtp_url", "smtp://h?tls=off")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PORTVAKT_SMTP_URL"), "{err}");
        // Without SMTP production starts, and `check` says plainly that nobody gets email.
        let none = prod(&[("secret_key", strong), ("issuer", "https://id.example.com")]);
        let smtp = none
            .findings()
            .into_iter()
            .find(|f| f.item == "smtp")
            .unwrap();
        assert_eq!(smtp.level, Level::Warn);
    }

    #[test]
    fn login_alerts_default_to_new_devices_and_production_warns_when_they_are_off() {
        let strong = "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8";
        let c = Config::from_pairs::<&str, &str>([]).unwrap();
        assert_eq!(c.login_alerts, LoginAlerts::NewDevice);
        let level = |value: &'static str| {
            prod(&[
                ("secret_key", strong),
                ("issuer", "https://id.example.com"),
                ("login_alerts", value),
            ])
            .findings()
            .into_iter()
            .find(|f| f.item == "login_alerts")
            .unwrap()
            .level
        };
        assert_eq!(level("off"), Level::Warn);
        assert_eq!(level("always"), Level::Pass);
        assert_eq!(level("NEW-DEVICE"), Level::Pass);
        let err = Config::from_pairs([("login_alerts", "sometimes")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("PORTVAKT_LOGIN_ALERTS"), "{err}");
    }

    #[test]
    fn mail_from_defaults_to_the_issuer_host_and_must_be_a_mailbox() {
        let c = Config::from_pairs([("issuer", "https://id.example.com")]).unwrap();
        assert_eq!(
            c.mail_from.to_string(),
            "Portvakt <portvakt@id.example.com>"
        );
        let c = Config::from_pairs::<&str, &str>([]).unwrap();
        assert_eq!(c.mail_from.email.to_string(), "portvakt@localhost");
        let c = Config::from_pairs([("mail_from", "Acme <id@acme.test>")]).unwrap();
        assert_eq!(c.mail_from.email.to_string(), "id@acme.test");
        assert!(Config::from_pairs([("mail_from", "not a mailbox")]).is_err());
    }

    #[test]
    fn tls_needs_both_files_and_then_defaults_the_issuer_to_https() {
        let err = Config::from_pairs([("tls_cert", "cert.pem")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PORTVAKT_TLS_CERT (explicit setting) is set but PORTVAKT_TLS_KEY is not"),
            "{err}"
        );
        let err = Config::from_pairs([("tls_key", "key.pem")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PORTVAKT_TLS_KEY (explicit setting) is set but PORTVAKT_TLS_CERT"),
            "{err}"
        );
        let c = Config::from_pairs([("tls_cert", "c.pem"), ("tls_key", "k.pem")]).unwrap();
        assert_eq!(c.issuer, "https://127.0.0.1:8080");
        assert_eq!(c.tls.unwrap().key, PathBuf::from("k.pem"));
        assert!(Config::from_pairs::<&str, &str>([]).unwrap().tls.is_none());
    }

    #[test]
    fn unreadable_tls_files_fail_everywhere_and_an_exposed_key_warns() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "x").unwrap();
        let c = Config::from_pairs([
            ("tls_cert", cert.display().to_string()),
            ("tls_key", key.display().to_string()),
        ])
        .unwrap();
        let tls: Vec<_> = c
            .findings()
            .into_iter()
            .filter(|f| f.item == "tls")
            .collect();
        assert_eq!(tls.len(), 1);
        assert_eq!(tls[0].level, Level::Fail);
        assert!(tls[0].message.contains("PORTVAKT_TLS_KEY") && tls[0].message.contains("key.pem"));

        std::fs::write(&key, "x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
            let tls: Vec<_> = c
                .findings()
                .into_iter()
                .filter(|f| f.item == "tls")
                .collect();
            assert_eq!(tls.len(), 1);
            assert_eq!(tls[0].level, Level::Warn);
            assert!(tls[0].message.contains("640"), "{}", tls[0].message);
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let tls: Vec<_> = c
            .findings()
            .into_iter()
            .filter(|f| f.item == "tls")
            .collect();
        assert_eq!(tls[0].level, Level::Pass);
    }

    #[test]
    fn open_cors_trusting_everyone_and_no_backoff_are_refused_in_production() {
        let strong = [
            ("secret_key", "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8"),
            ("issuer", "https://id.example.com"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut pairs = strong.to_vec();
            pairs.push(extra);
            fails(&prod(&pairs))
        };
        assert_eq!(with(("cors_origins", "*")), vec!["cors_origins"]);
        assert_eq!(
            with(("trusted_proxies", "0.0.0.0/0")),
            vec!["trusted_proxies"]
        );
        assert_eq!(with(("trusted_proxies", "::/0")), vec!["trusted_proxies"]);
        assert_eq!(
            with(("trusted_proxies", "0.0.0.0/1,128.0.0.0/1")),
            vec!["trusted_proxies"]
        );
        assert_eq!(
            with(("login_backoff_after", "0")),
            vec!["login_backoff_after"]
        );
        assert!(with(("cors_origins", "https://app.example.com")).is_empty());
        assert!(with(("trusted_proxies", "10.0.0.0/8, 127.0.0.1")).is_empty());
        // Development only warns.
        let dev = Config::from_pairs([("cors_origins", "*")]).unwrap();
        assert!(dev.findings().iter().all(|f| f.level != Level::Fail));
    }

    #[test]
    fn origins_and_networks_are_parsed_strictly() {
        let origins: CorsOrigins = "https://App.Example.com/, http://localhost:3000"
            .parse()
            .unwrap();
        assert_eq!(
            origins,
            CorsOrigins::List(vec![
                "https://app.example.com".into(),
                "http://localhost:3000".into()
            ])
        );
        for bad in [
            "app.example.com",
            "https://a.example/path",
            "ftp://a.example",
            "*, https://a.example",
        ] {
            assert!(bad.parse::<CorsOrigins>().is_err(), "{bad}");
        }
        let nets: NetList = "10.0.0.0/8, 192.0.2.7, 2001:db8::/32".parse().unwrap();
        assert!(nets.contains("10.9.8.7".parse().unwrap()));
        assert!(nets.contains("::ffff:192.0.2.7".parse().unwrap()));
        assert!(!nets.contains("192.0.2.8".parse().unwrap()));
        assert!(nets.contains("2001:db8::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<NetList>().is_err());
        assert!("example.com".parse::<NetList>().is_err());
        assert!(
            Config::from_pairs([("login_backoff_initial", "1h"), ("login_backoff_max", "1m")])
                .is_err()
        );
    }

    #[test]
    fn weak_hashing_is_refused_in_production_only() {
        let strong = "q7Xw2d9Lk3Vb8Nc1Mz5Rt6Yp0Hs4Gf7Ja2Ue9Wi3Oo8";
        let c = prod(&[
            ("secret_key", strong),
            ("issuer", "https://a.example"),
            ("argon2_memory_kib", "1024"),
        ]);
        assert_eq!(fails(&c), vec!["argon2"]);
        let dev = Config::from_pairs([("argon2_memory_kib", "1024")]).unwrap();
        assert!(fails(&dev).is_empty());
    }
}
