//! Operations: liveness, readiness, metrics, the readiness check, the healthcheck command,
//! backup and restore.

pub mod backup;
pub mod check;
pub mod healthcheck;
pub mod metrics;
pub mod routes;

pub use routes::{metrics_router, router};
