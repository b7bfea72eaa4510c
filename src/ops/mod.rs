//! Operations endpoints: liveness and readiness.

pub mod routes;

pub use routes::router;
