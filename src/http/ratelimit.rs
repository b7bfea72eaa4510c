//! Per-client-IP rate limits (GCRA, from the `governor` crate): one limit for every route
//! but health, readiness and metrics, and a stricter one per route on the routes that guess
//! or spend secrets (login, signup, refresh, and later MFA and password reset).
//!
//! Counters live in this process for now. Everything goes through [`RateLimits::check`], so
//! a shared backend (Redis) can be added here without touching the middleware or handlers.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, MatchedPath};
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::client::client_ip;
use crate::config::Config;
use crate::error::AppError;

type Keyed<K> = RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock>;

/// Which limit a request is counted against.
#[derive(Debug, Clone, Copy)]
pub enum Rule<'a> {
    /// Every route but health, readiness and metrics.
    Global,
    /// One sensitive route, named by its path pattern.
    Auth(&'a str),
}

pub struct RateLimits {
    global: Option<Keyed<IpAddr>>,
    auth: Option<Keyed<(Arc<str>, IpAddr)>>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(config: &Config) -> RateLimits {
        let global = quota(
            Quota::per_second,
            config.rate_limit_per_second,
            config.rate_limit_burst,
        )
        .map(RateLimiter::keyed);
        let auth = quota(
            Quota::per_minute,
            config.auth_rate_limit_per_minute,
            config.auth_rate_limit_burst,
        )
        .map(RateLimiter::keyed);
        RateLimits {
            global,
            auth,
            clock: DefaultClock::default(),
        }
    }

    /// Counts one request by `ip` against `rule`; `Err` carries how long to wait.
    // Async so that a shared (network) backend fits behind the same call.
    pub async fn check(&self, rule: Rule<'_>, ip: IpAddr) -> Result<(), Duration> {
        let ip = bucket(ip);
        match rule {
            Rule::Global => match &self.global {
                Some(limiter) => self.decide(limiter, &ip),
                None => Ok(()),
            },
            Rule::Auth(route) => match &self.auth {
                Some(limiter) => self.decide(limiter, &(Arc::from(route), ip)),
                None => Ok(()),
            },
        }
    }

    fn decide<K: Hash + Eq + Clone>(&self, limiter: &Keyed<K>, key: &K) -> Result<(), Duration> {
        limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Drops the state of clients that have been quiet long enough to be back at full burst,
    /// so memory follows the number of active clients, not of all clients ever seen.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.global {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.auth {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

/// The address a limit is counted for. An IPv6 client usually holds a whole /64 (and can
/// pick any address in it), so all of it counts as one client.
pub(crate) fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

fn quota(per: fn(NonZeroU32) -> Quota, rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
    Some(per(rate).allow_burst(burst))
}

/// Put first among a handler's arguments to apply the strict per-route limit: counted per
/// client IP and matched route, before the body is read or a password is hashed.
#[derive(Debug, Clone, Copy)]
pub struct AuthRateLimit;

impl<S> FromRequestParts<S> for AuthRateLimit
where
    Arc<RateLimits>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let limits = Arc::<RateLimits>::from_ref(state);
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path(), MatchedPath::as_str);
        limits
            .check(Rule::Auth(route), client_ip(parts))
            .await
            .map_err(|retry_after| {
                crate::telemetry::metrics::rate_limited("auth");
                AppError::RateLimited {
                    retry_after,
                    detail: "Too many attempts on this route from your address; see Retry-After.",
                }
            })?;
        Ok(AuthRateLimit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(pairs: &[(&str, &str)]) -> RateLimits {
        RateLimits::new(&Config::from_pairs(pairs.iter().copied()).unwrap())
    }

    #[tokio::test]
    async fn the_burst_passes_then_the_next_request_waits_about_one_interval() {
        let l = limits(&[("rate_limit_per_second", "10"), ("rate_limit_burst", "3")]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check(Rule::Global, ip).await.is_ok());
        }
        let wait = l.check(Rule::Global, ip).await.unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another client is unaffected.
        assert!(
            l.check(Rule::Global, "192.0.2.2".parse().unwrap())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn auth_limits_are_per_route() {
        let l = limits(&[
            ("auth_rate_limit_per_minute", "1"),
            ("auth_rate_limit_burst", "1"),
        ]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(l.check(Rule::Auth("/login"), ip).await.is_ok());
        let wait = l.check(Rule::Auth("/login"), ip).await.unwrap_err();
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert!(l.check(Rule::Auth("/signup"), ip).await.is_ok());
    }

    #[tokio::test]
    async fn an_ipv6_slash_64_is_one_client() {
        let l = limits(&[("rate_limit_per_second", "1"), ("rate_limit_burst", "1")]);
        assert!(
            l.check(Rule::Global, "2001:db8:1:2::1".parse().unwrap())
                .await
                .is_ok()
        );
        assert!(
            l.check(Rule::Global, "2001:db8:1:2:ffff::9".parse().unwrap())
                .await
                .is_err()
        );
        assert!(
            l.check(Rule::Global, "2001:db8:1:3::1".parse().unwrap())
                .await
                .is_ok()
        );
        // IPv4 clients, also written IPv4-mapped, are counted per address.
        assert!(
            l.check(Rule::Global, "192.0.2.1".parse().unwrap())
                .await
                .is_ok()
        );
        assert!(
            l.check(Rule::Global, "::ffff:192.0.2.1".parse().unwrap())
                .await
                .is_err()
        );
        assert!(
            l.check(Rule::Global, "192.0.2.2".parse().unwrap())
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn zero_turns_a_limit_off() {
        let l = limits(&[("rate_limit_per_second", "0"), ("rate_limit_burst", "1")]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..100 {
            assert!(l.check(Rule::Global, ip).await.is_ok());
        }
    }
}
