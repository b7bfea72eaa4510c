//! Per-account backoff on failed logins, keyed by the submitted email whether or not an
//! account has it, so that the limit itself reveals nothing. After `after` failures each
//! further attempt must wait: `initial`, doubling with every failure, up to `max`. While the
//! wait runs even the right password is refused, and refused attempts do not extend it. A
//! successful login forgets the failures; so does `reset` without a new failure.
//!
//! Attempts in flight count until they report, and once an email is in backoff only one
//! attempt at a time is let through: otherwise a spray from many addresses at once would get
//! a whole burst of guesses past the threshold and past each wait.
//!
//! State lives in this process for now; the methods are async so that a shared backend
//! (Redis) can take its place without touching the login code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Config;

/// The invalidation kind that carries emails whose backoff an unlock cleared.
pub const INVALIDATION_KIND: &str = "backoff";

/// Emails tracked at most; beyond it, emails that are not in backoff are dropped first.
const MAX_TRACKED: usize = 200_000;

#[derive(Debug, Clone, Copy)]
pub struct BackoffRules {
    pub after: u32,
    pub initial: Duration,
    pub max: Duration,
    pub reset: Duration,
}

impl BackoffRules {
    pub fn from_config(config: &Config) -> BackoffRules {
        BackoffRules {
            after: config.login_backoff_after,
            initial: config.login_backoff_initial,
            max: config.login_backoff_max,
            reset: config.login_backoff_reset,
        }
    }

    /// The wait imposed after the `failures`-th failure.
    fn wait_after(&self, failures: u32) -> Option<Duration> {
        if self.after == 0 || failures < self.after {
            return None;
        }
        let doublings = (failures - self.after).min(40);
        let wait = self
            .initial
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max);
        Some(wait.min(self.max))
    }
}

#[derive(Debug)]
struct Entry {
    failures: u32,
    pending: u32,
    last_failure: Instant,
    wait_until: Option<Instant>,
}

pub struct LoginBackoff {
    rules: BackoffRules,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

/// Permission for one login attempt; report its outcome with [`Attempt::failed`] or
/// [`Attempt::succeeded`]. Dropped without either (the database was down, say), it counts
/// as neither.
pub struct Attempt {
    key: Option<String>,
    entries: Arc<Mutex<HashMap<String, Entry>>>,
    rules: BackoffRules,
}

impl LoginBackoff {
    pub fn new(rules: BackoffRules) -> LoginBackoff {
        LoginBackoff {
            rules,
            entries: Arc::default(),
        }
    }

    /// [`admit`](Self::admit) as a request sees it: a refusal is the 429 with `detail` and
    /// `Retry-After`, counted in the metrics as the `backoff` limit.
    pub async fn admit_or_refuse(
        &self,
        key: &str,
        detail: &'static str,
    ) -> Result<Attempt, crate::error::AppError> {
        self.admit(key).await.map_err(|retry_after| {
            crate::telemetry::metrics::rate_limited("backoff");
            crate::error::AppError::RateLimited {
                retry_after,
                detail,
            }
        })
    }

    /// Lets an attempt for `key` (the email's lowercase form) go ahead, or says how long
    /// to wait.
    pub async fn admit(&self, key: &str) -> Result<Attempt, Duration> {
        let attempt = |key: Option<String>| Attempt {
            key,
            entries: self.entries.clone(),
            rules: self.rules,
        };
        if self.rules.after == 0 {
            return Ok(attempt(None));
        }
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        if let Some(entry) = entries.get_mut(key) {
            if entry.pending == 0
                && entry.wait_until.is_none_or(|t| t <= now)
                && now.duration_since(entry.last_failure) >= self.rules.reset
            {
                entry.failures = 0;
                entry.wait_until = None;
            }
            if let Some(until) = entry.wait_until
                && until > now
            {
                return Err(until - now);
            }
            // Attempts in flight count as failures until they report: a burst of concurrent
            // guesses gets no more tries than one guess after another would. (So at most
            // `after` logins of one email run at once.)
            if entry.failures.saturating_add(entry.pending) >= self.rules.after && entry.pending > 0
            {
                return Err(self.rules.initial);
            }
            entry.pending += 1;
        } else {
            if entries.len() >= MAX_TRACKED {
                prune(&mut entries, now, self.rules.reset, true);
            }
            entries.insert(
                key.to_string(),
                Entry {
                    failures: 0,
                    pending: 1,
                    last_failure: now,
                    wait_until: None,
                },
            );
        }
        Ok(attempt(Some(key.to_string())))
    }

    /// Forgets emails whose failures are old; called periodically.
    pub fn forget_idle(&self) {
        prune(
            &mut lock(&self.entries),
            Instant::now(),
            self.rules.reset,
            false,
        );
    }

    /// Clears an email's failures (an admin unlocked the account).
    pub async fn clear(&self, key: &str) {
        lock(&self.entries).remove(key);
    }

    /// Clears the failures of emails announced by another instance (see [`announced`]).
    pub fn forget(&self, announced: &[String]) {
        let mut entries = lock(&self.entries);
        for key in announced.iter().filter_map(|a| from_hex(a)) {
            entries.remove(&key);
        }
    }
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt").finish_non_exhaustive()
    }
}

impl Attempt {
    /// The password was wrong, or the account unknown, disabled or locked. Returns the wait
    /// now imposed, if any.
    pub async fn failed(mut self) -> Option<Duration> {
        let key = self.key.take()?;
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        let entry = entries.get_mut(&key)?;
        entry.pending = entry.pending.saturating_sub(1);
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let wait = self.rules.wait_after(entry.failures);
        if let Some(wait) = wait {
            entry.wait_until = Some(now + wait);
        }
        wait
    }

    pub async fn succeeded(mut self) {
        if let Some(key) = self.key.take() {
            lock(&self.entries).remove(&key);
        }
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            let mut entries = lock(&self.entries);
            if let Some(entry) = entries.get_mut(&key) {
                entry.pending = entry.pending.saturating_sub(1);
                if entry.pending == 0 && entry.failures == 0 {
                    entries.remove(&key);
                }
            }
        }
    }
}

/// An email key as announced to other instances: hex, because announcements are
/// comma-separated and an address may contain a comma.
pub fn announced(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<String> {
    let bytes = (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

fn lock(entries: &Mutex<HashMap<String, Entry>>) -> MutexGuard<'_, HashMap<String, Entry>> {
    // The map holds counters only; a panic elsewhere cannot leave it inconsistent.
    entries
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Drops entries whose failures are older than `reset` and that are neither waiting nor in
/// flight; when `hard`, also every entry not currently in backoff.
fn prune(entries: &mut HashMap<String, Entry>, now: Instant, reset: Duration, hard: bool) {
    entries.retain(|_, e| {
        let waiting = e.wait_until.is_some_and(|t| t > now);
        let recent = now.duration_since(e.last_failure) < reset;
        e.pending > 0 || waiting || (recent && !(hard && e.wait_until.is_none()))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(after: u32) -> BackoffRules {
        BackoffRules {
            after,
            initial: Duration::from_secs(1),
            max: Duration::from_secs(900),
            reset: Duration::from_secs(86_400),
        }
    }

    #[test]
    fn waits_double_from_the_initial_up_to_the_maximum() {
        let r = rules(5);
        assert_eq!(r.wait_after(4), None);
        assert_eq!(r.wait_after(5), Some(Duration::from_secs(1)));
        assert_eq!(r.wait_after(6), Some(Duration::from_secs(2)));
        assert_eq!(r.wait_after(9), Some(Duration::from_secs(16)));
        assert_eq!(r.wait_after(15), Some(Duration::from_secs(900)));
        assert_eq!(r.wait_after(u32::MAX), Some(Duration::from_secs(900)));
        assert_eq!(rules(0).wait_after(100), None);
    }

    #[tokio::test]
    async fn the_wait_refuses_everyone_and_refusals_do_not_extend_it() {
        let b = LoginBackoff::new(rules(2));
        for _ in 0..2 {
            b.admit("a@x").await.unwrap().failed().await;
        }
        let first = b.admit("a@x").await.unwrap_err();
        assert!(first <= Duration::from_secs(1));
        let second = b.admit("a@x").await.unwrap_err();
        assert!(second <= first, "a refusal must not extend the wait");
        // Other emails are unaffected.
        assert!(b.admit("b@x").await.is_ok());
    }

    #[tokio::test]
    async fn success_forgets_and_an_abandoned_attempt_counts_as_nothing() {
        let b = LoginBackoff::new(rules(2));
        b.admit("a@x").await.unwrap().failed().await;
        b.admit("a@x").await.unwrap().succeeded().await;
        b.admit("a@x").await.unwrap().failed().await;
        drop(b.admit("a@x").await.unwrap());
        // One failure since the success: no wait yet.
        assert!(b.admit("a@x").await.is_ok());
    }

    #[tokio::test]
    async fn concurrent_attempts_get_no_more_guesses_than_sequential_ones() {
        let b = LoginBackoff::new(rules(3));
        let running: Vec<_> = [
            b.admit("a@x").await,
            b.admit("a@x").await,
            b.admit("a@x").await,
        ]
        .into_iter()
        .map(Result::unwrap)
        .collect();
        assert!(b.admit("a@x").await.is_err(), "a fourth guess in flight");
        drop(running);
        // One failure: two more may run at once, not three.
        b.admit("a@x").await.unwrap().failed().await;
        let _one = b.admit("a@x").await.unwrap();
        let _two = b.admit("a@x").await.unwrap();
        assert!(b.admit("a@x").await.is_err());
    }

    #[tokio::test]
    async fn an_announced_unlock_clears_the_email_here_too() {
        let b = LoginBackoff::new(rules(1));
        let key = r#""a,b"@x.example"#;
        b.admit(key).await.unwrap().failed().await;
        assert!(b.admit(key).await.is_err());
        b.forget(&[announced(key), "not hex".into()]);
        assert!(b.admit(key).await.is_ok());
    }

    #[tokio::test]
    async fn in_backoff_only_one_attempt_runs_at_a_time() {
        let b = LoginBackoff {
            rules: BackoffRules {
                initial: Duration::from_millis(1),
                ..rules(1)
            },
            entries: Arc::default(),
        };
        b.admit("a@x").await.unwrap().failed().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        let running = b.admit("a@x").await.unwrap();
        assert!(b.admit("a@x").await.is_err());
        drop(running);
        assert!(b.admit("a@x").await.is_ok());
    }
}
