//! Accounts: signup, the profile, password change, the password rules, and GDPR export and
//! erasure.

pub mod cache;
pub mod directory;
pub mod gdpr;
pub mod manage;
pub mod model;
pub mod policy;
pub mod routes;
pub mod service;
pub mod store;

pub use cache::ProfileCache;
pub use model::{Email, Name, User, UserId, UserView};
pub use policy::PasswordPolicy;
pub use routes::router;
