//! Black-box tests over real HTTP: every test spawns its own instance on a random port with
//! its own database. Set PORTVAKT_TEST_DATABASE_URL to run the whole suite on PostgreSQL.

mod helpers;

mod accounts;
mod admin;
mod audit;
mod auth;
mod backup;
mod binary;
mod browser;
mod clients;
mod deploy;
mod email_flows;
mod error_reports;
mod errors;
mod events;
mod gdpr;
mod hardening;
mod import;
mod keys;
mod limits;
mod login_alerts;
mod mail;
mod mail_delivery;
mod metrics;
mod mfa;
mod oidc_authorize;
mod oidc_flow;
mod oidc_tokens;
mod openapi;
mod ops;
mod passkeys;
mod password;
mod refresh;
mod relying_parties;
mod role_mfa;
mod sessions;
mod tls;
mod tokens;
