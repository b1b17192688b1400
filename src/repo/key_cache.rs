//! API keys without a database round trip per request: what `key_grant` answered, kept per
//! (key, client id) by the repository while the database can say when keys change.
//!
//! Every change to keys and grants (revocation, a grant, a client removed) sends, in its own
//! transaction, a notification (PostgreSQL `NOTIFY stowage_keys`) that every replica's worker
//! listens for; on it the cache is emptied. The process that made the change empties its own
//! cache as the change commits. While no listener is connected — SQLite, which needs no cache
//! (it is in-process), or a lost connection — the cache is off and every request asks the
//! database. A lookup that began before an emptying is not kept (a generation counter), so a
//! revocation can never be undone by a request in flight. Entries also age out after a
//! minute, a backstop.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::KeyGrant;

/// How long an entry is trusted without a notification.
const TTL: Duration = Duration::from_secs(60);
/// Entries kept at most; past it the cache starts over.
const CAPACITY: usize = 10_000;

/// The cache (see the module).
#[derive(Default)]
pub struct KeyCache {
    enabled: AtomicBool,
    generation: AtomicU64,
    entries: Mutex<HashMap<(Uuid, String), (KeyGrant, Instant)>>,
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("on", &self.is_on())
            .finish_non_exhaustive()
    }
}

/// A lookup in progress: where it started, to keep its answer only if nothing changed since.
pub struct Lookup(u64);

impl KeyCache {
    /// The grant, if cached and fresh.
    pub fn get(&self, key_id: Uuid, client_id: &str) -> Option<KeyGrant> {
        if !self.enabled.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(&(key_id, client_id.to_owned()))
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(grant, _)| grant.clone())
    }

    /// Call before asking the database.
    pub fn begin(&self) -> Lookup {
        Lookup(self.generation.load(Ordering::Acquire))
    }

    /// Keeps what the database answered, unless keys changed since `lookup` began.
    pub fn put(&self, lookup: Lookup, key_id: Uuid, client_id: &str, grant: &KeyGrant) {
        if !self.enabled.load(Ordering::Acquire) {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::Acquire) != lookup.0 {
            return;
        }
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(
            (key_id, client_id.to_owned()),
            (grant.clone(), Instant::now()),
        );
    }

    /// Records a use written to the database, so the cached grants do not ask for it again.
    pub fn used(&self, key_id: Uuid, at: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for ((id, _), (grant, _)) in entries.iter_mut() {
            if *id == key_id {
                grant.last_used_at = Some(at);
            }
        }
    }

    /// Whether keys are being cached (a listener is connected).
    pub fn is_on(&self) -> bool {
        self.enabled.load(Ordering::Acquire)
    }

    /// Keys changed: forget everything.
    pub fn clear(&self) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::AcqRel);
        entries.clear();
    }

    /// A listener is connected (`true`) or lost (`false`, which also empties the cache).
    pub fn set_enabled(&self, on: bool) {
        if !on {
            self.enabled.store(false, Ordering::Release);
        }
        self.clear();
        if on {
            self.enabled.store(true, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(revoked: bool) -> KeyGrant {
        KeyGrant {
            key_name: "k".into(),
            secret_hash: vec![1],
            revoked,
            last_used_at: None,
            client_allowed: true,
        }
    }

    #[test]
    fn nothing_is_cached_without_a_listener() {
        let cache = KeyCache::default();
        let id = Uuid::new_v4();
        cache.put(cache.begin(), id, "acme", &grant(false));
        assert!(cache.get(id, "acme").is_none());
    }

    #[test]
    fn a_change_empties_the_cache_and_a_lookup_begun_before_it_is_not_kept() {
        let cache = KeyCache::default();
        cache.set_enabled(true);
        let id = Uuid::new_v4();
        cache.put(cache.begin(), id, "acme", &grant(false));
        assert!(cache.get(id, "acme").is_some());
        assert!(cache.get(id, "globex").is_none());
        let in_flight = cache.begin();
        cache.clear();
        assert!(cache.get(id, "acme").is_none());
        cache.put(in_flight, id, "acme", &grant(false));
        assert!(cache.get(id, "acme").is_none(), "a stale answer came back");
        cache.put(cache.begin(), id, "acme", &grant(true));
        assert!(cache.get(id, "acme").unwrap().revoked);
        cache.set_enabled(false);
        assert!(cache.get(id, "acme").is_none());
    }
}
