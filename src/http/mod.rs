//! HTTP plumbing shared by every capability: request ids, the request context and log line,
//! problem rendering for errors we did not produce ourselves, our `Json` extractor, client
//! identity, and the server loop. Nothing here knows about a capability.

pub mod client;
pub mod edge;
pub mod json;
pub mod problem;
pub mod request_id;
pub mod server;

pub use client::{ClientInfo, ClientIp, UserAgent};
pub use json::Json;
