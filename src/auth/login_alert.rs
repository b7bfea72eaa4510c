//! The new-login alert: an email to the account when it signs in from a device it has not
//! used recently (`login_alerts`), queued in the login's own transaction, so that it goes
//! out exactly when the session exists.
//!
//! A device is the pair (user agent, network): the same user agent string from the same
//! IPv4 /24 or IPv6 /64 as one of the account's sessions of the last [`KNOWN_FOR`]. The user
//! agent alone would not do (an attacker on the most common browser would look like every
//! victim on it), and the address alone would alert on every browser update at home. The
//! first login of an account alerts never: there is nothing to compare it with, and its
//! owner just signed up (or was imported).
//!
//! The alert goes to the account's address whether or not it is verified: it is the only
//! channel to the owner, an unverified account is exactly the one whose owner may not have
//! noticed a stolen password, and the password-changed notice does the same. The cost is
//! that a mistyped address learns when, from where and with which browser someone signs in.

use std::net::IpAddr;
use std::time::Duration;

use sqlx::{AnyConnection, Row};

use crate::accounts::{UserId, store as accounts};
use crate::app::AppState;
use crate::config::LoginAlerts;
use crate::error::AppError;
use crate::http::ClientInfo;
use crate::mail::templates::{self, NEW_LOGIN};
use crate::mail::{Mailbox, Message};
use crate::store::{micros_after, now_micros};

/// How long a device stays known after a session from it began.
pub const KNOWN_FOR: Duration = Duration::from_secs(90 * 86_400);

/// Recent sessions compared, newest first: far more devices than a person uses.
const COMPARED: i64 = 500;

/// The longest user agent an alert shows.
const USER_AGENT_CHARS: usize = 200;

/// Queues the alert for a login of `user` from `client`, when the setting asks for one.
/// Call it in the login's transaction *before* its session is inserted: the sessions it
/// compares with must be the earlier ones.
pub(super) async fn before_session(
    app: &AppState,
    conn: &mut AnyConnection,
    user: UserId,
    client: &ClientInfo,
) -> Result<(), AppError> {
    let mode = app.config.login_alerts;
    if mode == LoginAlerts::Off {
        return Ok(());
    }
    let earlier = recent_devices(conn, user).await?;
    let new_device = match earlier {
        Earlier::None => return Ok(()),
        Earlier::Some(devices) => !devices.iter().any(|d| d.matches(client)),
    };
    if mode == LoginAlerts::NewDevice && !new_device {
        return Ok(());
    }
    let Some(account) = accounts::find_by_id(&mut *conn, user).await? else {
        return Ok(());
    };
    let to: Mailbox = match account.email.parse() {
        Ok(to) => to,
        Err(e) => {
            tracing::warn!(user_id = %user, error = %e, "address unusable for email; no login alert");
            return Ok(());
        }
    };
    let when = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
        ))
        .unwrap_or_default();
    let user_agent = shown_user_agent(client.user_agent.as_deref());
    let from_new_device = if new_device {
        " from a device or network it has not used in the last 90 days"
    } else {
        ""
    };
    let r = templates::render(
        app.config.mail_templates_dir.as_deref(),
        NEW_LOGIN,
        &[
            ("email", &account.email),
            ("when", &when),
            ("ip", &client.ip),
            ("user_agent", &user_agent),
            ("issuer", &app.config.issuer),
            ("from_new_device", from_new_device),
        ],
    );
    app.mail
        .enqueue(
            conn,
            &Message {
                user: Some(user),
                to,
                subject: r.subject,
                text: r.text,
                html: Some(r.html),
            },
        )
        .await?;
    tracing::info!(user_id = %user, new_device, "login alert queued");
    Ok(())
}

/// A (user agent, address) pair an account signed in from.
struct Device {
    ip: Option<String>,
    user_agent: Option<String>,
}

impl Device {
    fn matches(&self, client: &ClientInfo) -> bool {
        self.user_agent.as_deref() == client.user_agent.as_deref()
            && self
                .ip
                .as_deref()
                .is_some_and(|ip| same_network(ip, &client.ip))
    }
}

enum Earlier {
    /// The account never had a session: this is its first login.
    None,
    /// Devices of its sessions within [`KNOWN_FOR`] (possibly none).
    Some(Vec<Device>),
}

async fn recent_devices(conn: &mut AnyConnection, user: UserId) -> Result<Earlier, sqlx::Error> {
    let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM sessions WHERE user_id = $1 LIMIT 1")
        .bind(user.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    if any.is_none() {
        return Ok(Earlier::None);
    }
    let since = now_micros().saturating_sub(micros_after(0, KNOWN_FOR));
    let rows = sqlx::query(
        "SELECT ip, user_agent FROM sessions WHERE user_id = $1 AND created_at > $2 \
         ORDER BY created_at DESC LIMIT $3",
    )
    .bind(user.to_string())
    .bind(since)
    .bind(COMPARED)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Device {
                ip: r.try_get("ip")?,
                user_agent: r.try_get("user_agent")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map(Earlier::Some)
}

/// Whether two addresses are in one IPv4 /24 or IPv6 /64 (where a home or office connection
/// moves about: DHCP, privacy addresses).
fn same_network(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(IpAddr::V4(a)), Ok(IpAddr::V4(b))) => a.octets()[..3] == b.octets()[..3],
        (Ok(IpAddr::V6(a)), Ok(IpAddr::V6(b))) => a.segments()[..4] == b.segments()[..4],
        _ => a == b,
    }
}

/// The user agent as the alert shows it. It is text the person signing in chose, shown in a
/// mail from us: printable ASCII only (no bidi tricks or look-alike letters), one line, cut
/// short, and with what a mail client would turn into a link broken up (`evil[.]example`,
/// `https[://]`), so that a login cannot plant a phishing link in our email. Dots between
/// digits, as in version numbers, stay.
fn shown_user_agent(ua: Option<&str>) -> String {
    let clean: String = ua
        .unwrap_or("")
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    let clean = clean.split_whitespace().collect::<Vec<_>>().join(" ");
    if clean.is_empty() {
        return "(none sent)".into();
    }
    let mut cut: String = clean.chars().take(USER_AGENT_CHARS).collect();
    if clean.chars().count() > USER_AGENT_CHARS {
        cut.push_str("...");
    }
    let chars: Vec<char> = cut.replace("://", "[://]").chars().collect();
    let mut out = String::with_capacity(chars.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        let letter = |j: Option<usize>| {
            j.and_then(|j| chars.get(j))
                .is_some_and(|c| c.is_ascii_alphabetic())
        };
        if c == '.' && letter(i.checked_sub(1)) && letter(Some(i + 1)) {
            out.push_str("[.]");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_are_compared_by_prefix() {
        assert!(same_network("203.0.113.5", "203.0.113.200"));
        assert!(!same_network("203.0.113.5", "203.0.114.5"));
        assert!(same_network("2001:db8:1:2::1", "2001:db8:1:2:aaaa::9"));
        assert!(!same_network("2001:db8:1:2::1", "2001:db8:1:3::1"));
        assert!(!same_network("203.0.113.5", "::ffff:203.0.113.5"));
    }

    #[test]
    fn a_user_agent_cannot_carry_a_link_or_hidden_text() {
        let ua = "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0.6099.71 Safari/537.36";
        assert_eq!(shown_user_agent(Some(ua)), ua);
        assert_eq!(
            shown_user_agent(Some("Go to https://evil.example.com/reset now")),
            "Go to https[://]evil[.]example[.]com/reset now"
        );
        assert_eq!(
            shown_user_agent(Some("a\r\nSubject: x\u{202e}b")),
            "a Subject: x b"
        );
        assert_eq!(shown_user_agent(None), "(none sent)");
        assert_eq!(shown_user_agent(Some(" \t")), "(none sent)");
        let long = shown_user_agent(Some(&"x".repeat(1000)));
        assert_eq!(long.len(), USER_AGENT_CHARS + 3);
    }
}
