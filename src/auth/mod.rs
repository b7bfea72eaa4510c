//! Signing in: login, sessions with rotating refresh tokens, logout, access tokens and the
//! `Caller` extractor that every authenticated route uses.

pub mod amr;
pub mod backoff;
pub mod caller;
pub mod email_flows;
mod login_alert;
pub mod mfa;
pub mod passkeys;
pub mod routes;
pub mod service;
pub mod sessions;
pub mod tokens;

pub use backoff::LoginBackoff;
pub use caller::Caller;
pub use routes::router;
pub use sessions::SessionCache;
pub use tokens::TokenService;
