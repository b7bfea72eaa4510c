//! The delivery worker: claims due messages, sends them, records the outcome.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart, header::ContentType};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Mail;
use super::store::{self, Claimed};
use crate::config::Config;
use crate::store::{Store, micros_after, now_micros};
use crate::telemetry::metrics::{MAIL_FAILED, MAIL_OUTBOX_DEPTH, MAIL_PRUNED, MAIL_SENT};

/// How long a claim keeps other workers off a message. Far above one SMTP conversation
/// ([`super::smtp::SEND_TIMEOUT`], twice over), so only a worker that died loses its claim.
const LEASE: Duration = Duration::from_secs(300);

/// The longest the worker sleeps without looking: messages retried by another instance, or
/// whose announcement was lost, are picked up within this.
const POLL: Duration = Duration::from_secs(30);

/// Recording a delivery is retried this often before giving up: a message sent but not
/// recorded is sent again once its claim expires.
const RECORD_TRIES: u32 = 5;

/// Errors stored in `last_error` are cut to this many characters.
const ERROR_CHARS: usize = 500;

/// How often, at most, the worker deletes messages past their retention. A shorter
/// retention (tests, or an operator who keeps almost nothing) is honoured within half of it.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Why an attempt failed, and whether trying again could help.
struct Failure {
    /// For `last_error` and the log: no credentials (lettre never echoes them, and the
    /// server's answer to AUTH carries none).
    error: String,
    /// The server refused this message for good (5xx): another attempt gets the same answer.
    permanent: Option<String>,
}

impl Failure {
    fn temporary(error: String) -> Failure {
        Failure {
            error,
            permanent: None,
        }
    }
}

/// Reply codes of a failed AUTH (RFC 4954 §6): permanent by their first digit, but about
/// this instance's credentials, not about the message. Giving every message up over a wrong
/// password would lose all mail until an operator noticed; it waits for the fix instead.
const AUTH_CODES: &[&str] = &["530", "534", "535", "538"];

fn classify(e: &lettre::transport::smtp::Error) -> Failure {
    let error = cut(&e.to_string());
    let permanent = match e.status() {
        Some(code) if e.is_permanent() => {
            let code = code.to_string();
            (!AUTH_CODES.contains(&code.as_str())).then_some(code)
        }
        _ => None,
    };
    Failure { error, permanent }
}

enum Delivery {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// No SMTP configured: write `.eml` files here and to the log.
    Folder {
        dir: PathBuf,
        log_bodies: bool,
    },
}

struct Worker {
    store: Store,
    mail: Arc<Mail>,
    delivery: Delivery,
    from: Mailbox,
    retry_initial: Duration,
    retry_max: Duration,
    max_attempts: i64,
    /// Zero: kept forever.
    retention: Duration,
    failed_retention: Duration,
    /// This worker's name in `claimed_by`.
    claimer: String,
}

/// Starts the worker; it runs until `stop` turns true, finishing the message in hand first.
pub fn spawn(
    store: Store,
    mail: Arc<Mail>,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<JoinHandle<()>> {
    let delivery = match &config.smtp {
        Some(url) => {
            tracing::info!(smtp = %url.describe(), "email is delivered over SMTP");
            Delivery::Smtp(url.transport().context("building the SMTP transport")?)
        }
        None => Delivery::Folder {
            dir: config.data_dir.join("outbox"),
            log_bodies: !config.is_production(),
        },
    };
    let worker = Worker {
        store,
        mail,
        delivery,
        from: config.mail_from.clone(),
        retry_initial: config.mail_retry_initial,
        retry_max: config.mail_retry_max,
        max_attempts: i64::from(config.mail_max_attempts),
        retention: config.mail_retention,
        failed_retention: config.mail_failed_retention,
        claimer: uuid::Uuid::new_v4().to_string(),
    };
    Ok(tokio::spawn(worker.run(stop)))
}

impl Worker {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let wake = self.mail.waker();
        let prune_every = self.prune_interval();
        let mut next_prune = tokio::time::Instant::now();
        loop {
            if let Some(every) = prune_every
                && tokio::time::Instant::now() >= next_prune
            {
                self.prune().await;
                next_prune = tokio::time::Instant::now() + every;
            }
            let mut claimed_any = false;
            while !*stop.borrow() {
                let now = now_micros();
                match store::claim(&self.store, &self.claimer, now, micros_after(now, LEASE)).await
                {
                    Ok(Some(message)) => {
                        claimed_any = true;
                        self.deliver(message).await;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read the email outbox");
                        break;
                    }
                }
            }
            if *stop.borrow() {
                break;
            }
            let wait = match store::pending(&self.store).await {
                Ok((depth, due)) => {
                    metrics::gauge!(MAIL_OUTBOX_DEPTH).set(depth as f64);
                    due.map_or(POLL, |due| {
                        Duration::from_micros(due.saturating_sub(now_micros()).max(0) as u64)
                            .min(POLL)
                    })
                }
                Err(_) => POLL,
            };
            let wait = match prune_every {
                Some(_) => {
                    wait.min(next_prune.saturating_duration_since(tokio::time::Instant::now()))
                }
                None => wait,
            };
            // A due message that could not be claimed is someone else's: do not spin on it.
            let wait = if claimed_any {
                wait
            } else {
                wait.max(Duration::from_millis(100))
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }

    async fn deliver(&self, message: Claimed) {
        let id = message.id.clone();
        let outcome = match self.build(&message) {
            Ok(email) => self.send(&id, email, &message).await,
            // The body cannot come back (the secret key changed): retrying cannot help.
            Err(e) => {
                let error = cut(&format!("{e:#}"));
                tracing::error!(id = %id, error = %error, "email cannot be built; given up");
                self.give_up(&id, &error, "unbuildable").await;
                return;
            }
        };
        match outcome {
            Ok(outcome) => {
                self.record_sent(&id).await;
                metrics::counter!(MAIL_SENT, "outcome" => outcome).increment(1);
            }
            Err(Failure {
                error,
                permanent: Some(code),
            }) => {
                // The server's answer often quotes the address; the log gets it masked (the
                // row keeps the recipient anyway).
                let address = address_of(&message.recipient);
                let shown = error.replace(&address, &mask(&address));
                tracing::error!(id = %id, attempts = message.attempts, code = %code, error = %shown, "email rejected permanently by the SMTP server; given up");
                self.give_up(&id, &format!("rejected permanently: {error}"), "permanent")
                    .await;
            }
            Err(Failure { error, .. }) if message.attempts >= self.max_attempts => {
                tracing::error!(id = %id, attempts = message.attempts, error = %error, "email could not be delivered; given up");
                self.give_up(&id, &error, "attempts").await;
            }
            Err(Failure { error, .. }) => {
                let wait = self.backoff(message.attempts);
                tracing::warn!(id = %id, attempts = message.attempts, retry_in = ?wait, error = %error, "email delivery failed; will retry");
                metrics::counter!(MAIL_SENT, "outcome" => "retry").increment(1);
                let next = micros_after(now_micros(), wait);
                if let Err(e) =
                    store::mark_retry(&self.store, &id, &self.claimer, next, &error).await
                {
                    tracing::warn!(id = %id, error = %e, "cannot record a failed email attempt; it is retried when its claim expires");
                }
            }
        }
    }

    fn build(&self, message: &Claimed) -> anyhow::Result<lettre::Message> {
        let text = match &message.body_text {
            Some(sealed) => self.mail.open(&message.id, sealed)?,
            None => anyhow::bail!("the message has no body"),
        };
        let html = match &message.body_html {
            Some(sealed) => Some(self.mail.open(&message.id, sealed)?),
            None => None,
        };
        let to: Mailbox = message
            .recipient
            .parse()
            .with_context(|| "the recipient is not a mailbox".to_string())?;
        let domain = self.from.email.domain().to_string();
        let builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(message.subject.clone())
            // The same id on every attempt, so a receiver can tell a repeat from a new message.
            .message_id(Some(format!("<{}@{}>", message.id, domain)));
        let email = match html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(text, html))?,
            None => builder.header(ContentType::TEXT_PLAIN).body(text)?,
        };
        Ok(email)
    }

    /// Hands the message over; `Ok` names the outcome for the metric.
    async fn send(
        &self,
        id: &str,
        email: lettre::Message,
        message: &Claimed,
    ) -> Result<&'static str, Failure> {
        match &self.delivery {
            Delivery::Smtp(transport) => {
                match tokio::time::timeout(super::smtp::SEND_TIMEOUT * 2, transport.send(email))
                    .await
                {
                    Ok(Ok(_)) => {
                        tracing::info!(id = %id, "email delivered");
                        Ok("sent")
                    }
                    Ok(Err(e)) => Err(classify(&e)),
                    Err(_) => Err(Failure::temporary(
                        "the SMTP server did not answer in time".into(),
                    )),
                }
            }
            Delivery::Folder { dir, log_bodies } => {
                let path = dir.join(format!("{id}.eml"));
                let bytes = email.formatted();
                let written = crate::store::create_private_dir(dir)
                    .and_then(|()| std::fs::write(&path, bytes).map_err(Into::into));
                if let Err(e) = written {
                    return Err(Failure::temporary(cut(&format!(
                        "cannot write {}: {e:#}",
                        path.display()
                    ))));
                }
                if *log_bodies {
                    let text = message
                        .body_text
                        .as_deref()
                        .and_then(|s| self.mail.open(id, s).ok())
                        .unwrap_or_default();
                    tracing::info!(id = %id, to = %message.recipient, subject = %message.subject, path = %path.display(), body = %text, "email not sent (no PORTVAKT_SMTP_URL); written to the outbox folder");
                } else {
                    tracing::warn!(id = %id, path = %path.display(), "email not sent (no PORTVAKT_SMTP_URL); written to the outbox folder");
                }
                Ok("written")
            }
        }
    }

    async fn record_sent(&self, id: &str) {
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=RECORD_TRIES {
            match store::mark_sent(&self.store, id, now_micros()).await {
                Ok(()) => return,
                Err(e) if attempt == RECORD_TRIES => {
                    tracing::error!(id = %id, error = %e, "email sent but not recorded; it will be sent again when its claim expires");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    async fn give_up(&self, id: &str, error: &str, reason: &'static str) {
        metrics::counter!(MAIL_SENT, "outcome" => "failed").increment(1);
        metrics::counter!(MAIL_FAILED, "reason" => reason).increment(1);
        if let Err(e) =
            store::mark_failed(&self.store, id, &self.claimer, now_micros(), error).await
        {
            tracing::warn!(id = %id, error = %e, "cannot record a given-up email");
        }
    }

    /// The wait after attempt `attempts` failed: the initial wait, doubled per further
    /// failure, capped.
    fn backoff(&self, attempts: i64) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(30);
        self.retry_initial
            .saturating_mul(1u32 << doublings)
            .min(self.retry_max)
    }

    /// How often to prune, or `None` when both retentions keep everything.
    fn prune_interval(&self) -> Option<Duration> {
        [self.retention, self.failed_retention]
            .into_iter()
            .filter(|d| !d.is_zero())
            .map(|d| (d / 2).clamp(Duration::from_millis(100), PRUNE_EVERY))
            .min()
    }

    /// Deletes sent and given-up messages past their retention. Every instance may do it;
    /// the deletes are idempotent.
    async fn prune(&self) {
        let now = now_micros();
        let before =
            |age: Duration| (!age.is_zero()).then(|| now.saturating_sub(micros_after(0, age)));
        match store::prune(
            &self.store,
            before(self.retention),
            before(self.failed_retention),
        )
        .await
        {
            Ok((sent, failed)) => {
                if sent + failed > 0 {
                    metrics::counter!(MAIL_PRUNED, "state" => "sent").increment(sent);
                    metrics::counter!(MAIL_PRUNED, "state" => "failed").increment(failed);
                    tracing::info!(sent, failed, "old email deleted from the outbox");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot prune the email outbox"),
        }
    }
}

/// The bare address of a stored `To` mailbox.
fn address_of(recipient: &str) -> String {
    recipient
        .parse::<Mailbox>()
        .map(|m| m.email.to_string())
        .unwrap_or_else(|_| recipient.to_string())
}

/// `ada@example.com` as `a***@example.com`: enough for an operator to tell messages apart.
fn mask(address: &str) -> String {
    match address.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

fn cut(text: &str) -> String {
    text.chars().take(ERROR_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_in_a_log_line_is_masked_but_still_tells_the_domain() {
        assert_eq!(mask("ada@example.com"), "a***@example.com");
        assert_eq!(mask("not an address"), "***");
        assert_eq!(
            address_of("Ada Lovelace <ada@example.com>"),
            "ada@example.com"
        );
    }
}
