//! The audit log's side of a person's export and erasure (GDPR): which entries are about
//! them, and clearing those entries' personal data without breaking the chain.
//!
//! An entry is about a person when they acted in it, when it targets their account or one of
//! their sessions, or when its personal data names their email address (a failed login for
//! an address before the account existed). Erasure clears the IP, user agent and personal
//! data of every such entry, all three together because one salted digest covers them; the
//! random user id in `actor_id`/`target_id` stays, so the trail stays a trail.

use serde_json::Value;
use sqlx::AnyConnection;

use super::Audit;
use super::chain::ERASED_PREFIX;
use super::store::{self, StoredEntry};

/// Who the entries are about.
#[derive(Debug, Clone, Copy)]
pub struct Person<'a> {
    pub user_id: &'a str,
    /// The identity key of the email (lowercase).
    pub email_key: &'a str,
    /// Every session of the account still on record.
    pub sessions: &'a [String],
}

/// Every entry about `person`, in chain order, each once.
pub async fn about(
    conn: &mut AnyConnection,
    person: &Person<'_>,
) -> Result<Vec<StoredEntry>, sqlx::Error> {
    let mut entries = store::by_actor_or_user_target(conn, person.user_id).await?;
    for session in person.sessions {
        entries.extend(store::by_target(conn, "session", session).await?);
    }
    let candidates = store::by_personal_like(conn, &like_pattern(person.email_key)).await?;
    entries.extend(
        candidates
            .into_iter()
            .filter(|e| names_email(e.personal.as_deref(), person.email_key)),
    );
    entries.sort_by_key(|e| e.seq);
    entries.dedup_by_key(|e| e.seq);
    Ok(entries)
}

impl Audit {
    /// Clears the personal data of every entry about `person` and seals each erasure (see
    /// `chain`). Runs inside the caller's write transaction; returns how many entries lost
    /// personal data.
    pub async fn erase_personal(
        &self,
        conn: &mut AnyConnection,
        person: &Person<'_>,
    ) -> Result<u64, sqlx::Error> {
        let mut erased = 0;
        for e in about(conn, person).await? {
            let already = e
                .personal_salt
                .as_deref()
                .is_some_and(|s| s.starts_with(ERASED_PREFIX));
            // An entry that never had personal data has no digest to seal and nothing to clear.
            let Some(digest) = e.personal_digest.as_deref().filter(|_| !already) else {
                continue;
            };
            let seal = self.signer().seal_erasure(e.seq, digest);
            store::clear_personal(conn, e.seq, &seal).await?;
            erased += 1;
        }
        Ok(erased)
    }
}

/// A LIKE pattern that finds every personal JSON holding `email_key` in any letter case, and
/// perhaps a few more (checked exactly by [`names_email`]). `lower()` and LIKE fold only ASCII
/// on SQLite, so other characters match any one character; those JSON escapes match any run.
fn like_pattern(email_key: &str) -> String {
    let mut pattern = String::from("%");
    for c in email_key.chars() {
        match c {
            '%' | '_' => {
                pattern.push('\\');
                pattern.push(c);
            }
            // Stored JSON-escaped, as two characters.
            '"' | '\\' => pattern.push('%'),
            c if c.is_ascii() => pattern.push(c),
            _ => pattern.push('_'),
        }
    }
    pattern.push('%');
    pattern
}

/// Whether a stored personal JSON object has a string value that is this address in any case.
fn names_email(personal: Option<&str>, email_key: &str) -> bool {
    let Some(Value::Object(map)) = personal.and_then(|p| serde_json::from_str(p).ok()) else {
        return false;
    };
    map.values()
        .filter_map(Value::as_str)
        .any(|v| crate::accounts::model::email_key(v) == email_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pattern_escapes_wildcards_and_leaves_non_ascii_open() {
        assert_eq!(like_pattern("a_b%c@x.io"), r"%a\_b\%c@x.io%");
        assert_eq!(like_pattern("åsa@x.se"), "%_sa@x.se%");
        assert_eq!(like_pattern(r#""a\b"@x.se"#), "%%a%b%@x.se%");
    }

    #[test]
    fn only_the_same_address_in_any_case_is_a_match() {
        let p = Some(r#"{"email":"Åsa@Example.com"}"#);
        assert!(names_email(p, "åsa@example.com"));
        assert!(!names_email(p, "sa@example.com"));
        assert!(!names_email(
            Some(r#"{"email":"xåsa@example.com"}"#),
            "åsa@example.com"
        ));
        assert!(!names_email(None, "a@b.c"));
        assert!(!names_email(Some("not json"), "a@b.c"));
    }
}
