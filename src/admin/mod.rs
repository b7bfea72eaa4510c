//! The admin API (`/api/v1/admin/*`): actions on other people's accounts, each behind a
//! permission. Hidden from networks outside `admin_allowed_networks` by the HTTP guard.

pub mod routes;

pub use routes::router;
