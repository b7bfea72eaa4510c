//! An audit entry as the API shows it (API.md, "Audit entry"): on the live events socket,
//! and to whatever else lists entries to clients.

use serde::Serialize;
use serde_json::{Map, Value};

use super::store::StoredEntry;
use crate::store::rfc3339;

/// `{"id", "at", "actor_id", "ip", "user_agent", "action", "target_type", "target_id",
/// "outcome", "details"}`. The chain's own columns stay inside. `personal` (what someone
/// typed that names a person, such as the address of a login for an unknown account) is
/// shown to audit readers only, inside `details` (see [`EntryView::for_audit_readers`]).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = AuditEntry)]
pub struct EntryView {
    #[schema(format = "uuid")]
    pub id: String,
    /// RFC 3339 UTC.
    #[schema(format = "date-time")]
    pub at: String,
    pub actor_id: Option<String>,
    /// `null` once erased.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub action: String,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: String,
    /// Always an object.
    #[schema(value_type = Object)]
    pub details: Value,
}

impl From<&StoredEntry> for EntryView {
    fn from(e: &StoredEntry) -> EntryView {
        // Stored by `Audit::record` as a JSON object; anything else would be tampering, which
        // `audit verify` reports, and is shown as an empty object rather than failing here.
        let details = serde_json::from_str::<Value>(&e.details)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::Object(Map::new()));
        EntryView {
            id: e.id.clone(),
            at: rfc3339(e.at),
            actor_id: e.actor_id.clone(),
            ip: e.ip.clone(),
            user_agent: e.user_agent.clone(),
            action: e.action.clone(),
            target_type: e.target_type.clone(),
            target_id: e.target_id.clone(),
            outcome: e.outcome.clone(),
            details,
        }
    }
}

impl EntryView {
    /// The entry as callers with `audit:read` see it: `details` also holds the entry's
    /// personal data, where the entry's own facts win over a personal key of the same name.
    pub fn for_audit_readers(e: &StoredEntry) -> EntryView {
        let mut view = EntryView::from(e);
        let personal = e
            .personal
            .as_deref()
            .and_then(|p| serde_json::from_str::<Map<String, Value>>(p).ok());
        if let (Some(personal), Value::Object(details)) = (personal, &mut view.details) {
            for (key, value) in personal {
                details.entry(key).or_insert(value);
            }
        }
        view
    }

    /// The entry as the user it targets sees it when they did not act in it themselves (an
    /// admin unlocked their account, a failed login against it). Another person who acted
    /// keeps their identity, address and browser to themselves and to audit readers: the
    /// target learns what was done to the account, not who did it from where. An entry with
    /// no actor is different: nobody identified acted, so its `ip` and `user_agent` are those
    /// of an attempt against the account (a failed login with someone else's guess, the
    /// lockout it caused), and they are the owner's own security information, shown as any
    /// "failed sign-in from ..." notice shows them: that is how an owner notices an attack.
    pub fn for_target(e: &StoredEntry) -> EntryView {
        let mut view = EntryView::from(e);
        if view.actor_id.is_some() {
            view.actor_id = None;
            view.ip = None;
            view.user_agent = None;
        }
        view
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(details: &str) -> StoredEntry {
        StoredEntry {
            seq: 7,
            id: "0190c1f4-0000-7000-8000-000000000001".into(),
            at: 1_700_000_000_123_456,
            actor_id: Some("u1".into()),
            action: "login".into(),
            target_type: Some("session".into()),
            target_id: Some("s1".into()),
            outcome: "success".into(),
            details: details.into(),
            ip: Some("192.0.2.1".into()),
            user_agent: None,
            personal: Some(r#"{"email":"a@example.com"}"#.into()),
            personal_salt: Some("salt".into()),
            personal_digest: Some("digest".into()),
            prev_hash: "p".into(),
            hash: "h".into(),
        }
    }

    #[test]
    fn renders_exactly_the_fields_of_the_api_shape() {
        let json = serde_json::to_value(EntryView::from(&stored(r#"{"reason":"x"}"#))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "0190c1f4-0000-7000-8000-000000000001",
                "at": "2023-11-14T22:13:20.123456Z",
                "actor_id": "u1",
                "ip": "192.0.2.1",
                "user_agent": null,
                "action": "login",
                "target_type": "session",
                "target_id": "s1",
                "outcome": "success",
                "details": {"reason": "x"},
            })
        );
    }

    #[test]
    fn personal_data_is_for_audit_readers_only_and_never_overrides_a_fact() {
        let e = stored(r#"{"reason":"unknown_email","email":"fact"}"#);
        assert_eq!(
            EntryView::from(&e).details,
            serde_json::json!({"reason": "unknown_email", "email": "fact"})
        );
        let mut e = stored(r#"{"reason":"unknown_email"}"#);
        assert_eq!(
            EntryView::for_audit_readers(&e).details,
            serde_json::json!({"reason": "unknown_email", "email": "a@example.com"})
        );
        e.personal = None;
        assert_eq!(
            EntryView::for_audit_readers(&e).details,
            serde_json::json!({"reason": "unknown_email"})
        );
    }

    #[test]
    fn a_target_sees_neither_who_else_acted_nor_from_where_but_sees_anonymous_attempts() {
        let mut e = stored("{}");
        e.user_agent = Some("AdminsBrowser/1.0".into());
        let view = EntryView::for_target(&e);
        assert_eq!(
            (view.actor_id, view.ip, view.user_agent),
            (None, None, None)
        );
        assert_eq!(view.action, "login");

        e.actor_id = None;
        let view = EntryView::for_target(&e);
        assert_eq!(view.ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(view.user_agent.as_deref(), Some("AdminsBrowser/1.0"));
    }

    #[test]
    fn details_that_are_not_an_object_render_as_an_empty_one() {
        for bad in ["", "[1]", "not json"] {
            assert_eq!(EntryView::from(&stored(bad)).details, serde_json::json!({}));
        }
    }
}
