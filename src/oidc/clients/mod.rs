//! OpenID Connect clients: the registry the authorize and token endpoints read. Admins manage
//! it over `/api/v1/admin/clients`, operators with `portvakt client`.
//!
//! For the token endpoint: [`find`] a client by id, then [`verify_secret`] what it presented.

pub mod cli;
pub mod model;
pub mod routes;
pub mod service;
pub mod store;

pub use model::{AuthMethod, ClientId, ClientSpec, GrantType, IdTokenAlg, RedirectUri, Scope};
pub use routes::router;
pub use service::{find, verify_secret};
pub use store::Client;
