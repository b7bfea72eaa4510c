//! Operations endpoints: liveness, readiness and metrics.

pub mod check;
pub mod healthcheck;
pub mod metrics;
pub mod routes;

pub use routes::{metrics_router, router};
