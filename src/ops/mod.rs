//! Operations endpoints: liveness, readiness and metrics.

pub mod healthcheck;
pub mod metrics;
pub mod routes;

pub use routes::{metrics_router, router};
