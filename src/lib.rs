//! portvakt: accounts, sessions, tokens and sign-in for your applications, in one service.
//!
//! See `ARCHITECTURE.md` in the design notes for the shape of the code: one module per
//! capability, each owning its routes, logic and SQL; `app` is the one place that knows them all.

#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
#![deny(clippy::await_holding_lock)]

pub mod accounts;
pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod config;
pub mod crypto;
pub mod error;
pub mod events;
pub mod http;
pub mod import;
pub mod mail;
pub mod oidc;
pub mod openapi;
pub mod ops;
pub mod roles;
pub mod store;
pub mod telemetry;

pub use app::{AppState, Application};
pub use config::Config;
