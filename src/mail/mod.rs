//! Email: a durable outbox and the worker that delivers it.
//!
//! A message is written to the `mail_outbox` table by [`Mail::enqueue`] inside the caller's
//! transaction, so it exists exactly when the change that caused it is committed. The worker
//! ([`worker::spawn`], started by `serve`) claims due messages under a lease, sends them over
//! SMTP (or, without `PORTVAKT_SMTP_URL`, writes them to the log and `<data_dir>/outbox/`),
//! and records `sent_at` only after the server accepted the message. A failed attempt is
//! retried with exponential backoff until `mail_max_attempts`, then given up and recorded.
//!
//! Bodies carry one-time links, so they are sealed with the master key while they wait and
//! erased once the message is sent or given up; the metadata stays.

pub mod smtp;
pub mod store;
pub mod templates;
pub mod worker;

use std::sync::Arc;

use sqlx::AnyConnection;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::crypto::secret::MasterKey;

pub use lettre::message::Mailbox;
pub use smtp::SmtpUrl;

/// The invalidation kind that announces a committed message to every instance's worker.
pub const ENQUEUED_KIND: &str = "mail";

/// The master-key purpose that seals message bodies.
const SEAL_PURPOSE: &str = "outbox";

/// One email to send. Plain text is required; the HTML alternative is optional.
#[derive(Debug, Clone)]
pub struct Message {
    /// The account the message is about, if any: erasing it deletes the message.
    pub user: Option<crate::accounts::UserId>,
    pub to: Mailbox,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

/// The handle every capability uses to send email, and the worker's wake-up.
pub struct Mail {
    master: Arc<MasterKey>,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mail(..)")
    }
}

impl Mail {
    pub fn new(master: Arc<MasterKey>) -> Mail {
        Mail {
            master,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Puts `message` in the outbox inside the caller's open transaction and returns its id.
    /// It is sent once the caller commits, and never if the transaction rolls back.
    ///
    /// On PostgreSQL the worker of every instance is told at commit (NOTIFY is delivered at
    /// commit and dropped on rollback). On SQLite, which serves one instance, this instance's
    /// worker is woken at once: its claim waits for the write lock this transaction holds.
    pub async fn enqueue(
        &self,
        conn: &mut AnyConnection,
        message: &Message,
    ) -> Result<Uuid, sqlx::Error> {
        let id = Uuid::now_v7();
        let context = id.to_string();
        let text = self
            .master
            .seal(SEAL_PURPOSE, context.as_bytes(), message.text.as_bytes());
        let html = message.html.as_ref().map(|html| {
            self.master
                .seal(SEAL_PURPOSE, context.as_bytes(), html.as_bytes())
        });
        store::insert(
            conn,
            &store::NewRow {
                id: &context,
                user_id: message.user.map(|u| u.to_string()),
                recipient: &message.to.to_string(),
                subject: &message.subject,
                body_text: &text,
                body_html: html.as_deref(),
            },
        )
        .await?;
        if conn.backend_name() == "PostgreSQL" {
            crate::store::notify::announce_on_postgres(conn, ENQUEUED_KIND, &[context]).await?;
        } else {
            self.wake.notify_one();
        }
        Ok(id)
    }

    /// Wakes this instance's worker (a message was committed elsewhere).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub(crate) fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Opens a sealed body of message `id`.
    pub(crate) fn open(&self, id: &str, sealed: &str) -> anyhow::Result<String> {
        let plain = self
            .master
            .open(SEAL_PURPOSE, id.as_bytes(), sealed)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(String::from_utf8(plain)?)
    }
}
