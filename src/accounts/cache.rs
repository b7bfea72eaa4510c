//! Profiles cached per instance, as the JSON the API returns, so `GET /users/me` needs
//! neither a database round trip nor serialization.
//!
//! Writes on this instance drop the entry at once, other instances hear of them through
//! `store::notify`, and every entry expires after `cache_ttl` in case an announcement is lost.
//! A read that raced a write is not cached: each invalidation bumps an epoch, and a value
//! loaded under an older epoch is returned but not kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use quick_cache::sync::Cache;

use axum::body::Bytes;

use super::model::UserId;

/// The invalidation kind for changed users.
pub const INVALIDATION_KIND: &str = "user";

#[derive(Clone)]
struct Entry {
    json: Bytes,
    loaded: Instant,
}

pub struct ProfileCache {
    entries: Cache<UserId, Entry>,
    ttl: Duration,
    epoch: AtomicU64,
}

impl std::fmt::Debug for ProfileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProfileCache")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A token taken before reading the database, presented when caching what was read.
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl ProfileCache {
    pub fn new(ttl: Duration, capacity: usize) -> ProfileCache {
        ProfileCache {
            entries: Cache::new(capacity.max(16)),
            ttl,
            epoch: AtomicU64::new(0),
        }
    }

    pub fn get(&self, id: UserId) -> Option<Bytes> {
        let entry = self.entries.get(&id)?;
        (entry.loaded.elapsed() < self.ttl).then_some(entry.json)
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::Acquire))
    }

    /// Keeps a value read under `epoch`, unless something was invalidated since. The check
    /// follows the insert, so an invalidation landing in between still removes the entry.
    pub fn put(&self, id: UserId, json: Bytes, epoch: Epoch) {
        if self.ttl.is_zero() {
            return;
        }
        self.entries.insert(
            id,
            Entry {
                json,
                loaded: Instant::now(),
            },
        );
        if self.epoch.load(Ordering::Acquire) != epoch.0 {
            self.entries.remove(&id);
        }
    }

    pub fn invalidate(&self, id: UserId) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.remove(&id);
    }

    pub fn invalidate_ids(&self, ids: &[String]) {
        for id in ids.iter().filter_map(|s| UserId::parse(s)) {
            self.invalidate(id);
        }
    }

    pub fn clear(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str) -> Bytes {
        Bytes::from(name.to_string())
    }

    #[test]
    fn a_read_that_raced_a_write_is_not_cached() {
        let cache = ProfileCache::new(Duration::from_secs(60), 100);
        let id = UserId::new();
        let before = cache.epoch();
        cache.invalidate(id); // a write lands while the read is in flight
        cache.put(id, view("old"), before);
        assert!(cache.get(id).is_none());
        let now = cache.epoch();
        cache.put(id, view("new"), now);
        assert_eq!(cache.get(id).unwrap(), "new");
    }

    #[test]
    fn entries_expire() {
        let cache = ProfileCache::new(Duration::from_millis(1), 100);
        let id = UserId::new();
        cache.put(id, view("x"), cache.epoch());
        std::thread::sleep(Duration::from_millis(5));
        assert!(cache.get(id).is_none());
    }
}
