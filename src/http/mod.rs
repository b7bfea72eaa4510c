//! HTTP plumbing shared by every capability: request ids, the request context and log line,
//! problem rendering for errors we did not produce ourselves, our `Json` extractor, client
//! identity, the server loop and its TLS. Nothing here knows about a capability.

pub mod client;
pub mod cors;
pub mod edge;
pub mod guard;
pub mod headers;
pub mod json;
pub mod problem;
pub mod ratelimit;
pub mod request_id;
pub mod server;
pub mod tls;

pub use client::{ClientInfo, ClientIp, UserAgent};
pub use json::Json;
pub use ratelimit::{AuthRateLimit, RateLimits};
