//! OpenID Connect provider. For now: the JWKS that publishes our token signing keys.

pub mod routes;

pub use routes::router;
