//! Operations: liveness and readiness endpoints, backup and restore.

pub mod backup;
pub mod routes;

pub use routes::router;
