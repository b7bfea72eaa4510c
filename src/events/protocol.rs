//! The messages of the events socket (API.md, "Live events"), as JSON text frames, and the
//! close codes it ends with.

use serde::{Deserialize, Serialize};

use crate::audit::EntryView;

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// First message of every connection.
    Auth { token: String },
    /// Asks for a stream beyond the user's own events; `audit` is the one there is.
    Subscribe { stream: String },
}

impl ClientMessage {
    /// Parses a text frame; `None` for anything that is not one of the messages.
    pub fn parse(text: &str) -> Option<ClientMessage> {
        serde_json::from_str(text).ok()
    }
}

/// The stream of every audit entry, for callers with `audit:read`.
pub const AUDIT_STREAM: &str = "audit";

/// What the server sends.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage<'a> {
    Ready,
    Subscribed { stream: &'a str },
    Error { message: &'a str },
    Event { event: &'a EntryView },
}

impl ServerMessage<'_> {
    pub fn to_text(&self) -> String {
        // Serialising these plain structs cannot fail; the fallback keeps the type honest.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","message":"internal error"}"#.into())
    }
}

/// Close codes (RFC 6455 §7.4; 4000-4999 are ours, after the HTTP status they resemble).
pub mod close {
    /// The server is shutting down.
    pub const GOING_AWAY: u16 = 1001;
    /// The client read too slowly and fell too far behind.
    pub const TOO_SLOW: u16 = 1008;
    /// Something failed on our side (the database); the client may reconnect.
    pub const INTERNAL: u16 = 1011;
    /// Bad or missing token, a first message that is not `auth`, or the token expired or its
    /// session ended.
    pub const UNAUTHORIZED: u16 = 4401;
    /// A stream the caller may not read.
    pub const FORBIDDEN: u16 = 4403;
    /// No `auth` in time, or two pings left without a pong.
    pub const TIMEOUT: u16 = 4408;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_are_tagged_by_type_and_strict() {
        assert_eq!(
            ClientMessage::parse(r#"{"type":"auth","token":"t"}"#),
            Some(ClientMessage::Auth { token: "t".into() })
        );
        assert_eq!(
            ClientMessage::parse(r#"{"type":"subscribe","stream":"audit"}"#),
            Some(ClientMessage::Subscribe {
                stream: "audit".into()
            })
        );
        for bad in [
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":"t","extra":1}"#,
            r#"{"type":"hello"}"#,
            r#"{"token":"t"}"#,
            r#"["auth"]"#,
            "auth",
        ] {
            assert_eq!(ClientMessage::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_messages_render_as_the_contract_says() {
        assert_eq!(ServerMessage::Ready.to_text(), r#"{"type":"ready"}"#);
        assert_eq!(
            ServerMessage::Subscribed { stream: "audit" }.to_text(),
            r#"{"type":"subscribed","stream":"audit"}"#
        );
        assert_eq!(
            ServerMessage::Error { message: "no" }.to_text(),
            r#"{"type":"error","message":"no"}"#
        );
    }
}
