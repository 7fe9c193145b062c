//! The objects the Raft thread applied last, by key, in memory: a read of
//! one of them ([`crate::Store::get`], and the apply of the next
//! transaction that reads it) neither reads RocksDB nor decodes it. Kubernetes
//! objects are read most right after they are written (a controller updates
//! what it just created, an agent reports the status of the pod it was just
//! given), so the last objects written are the ones worth keeping.
//!
//! Only the Raft thread fills it, right after an apply batch is written and
//! before the applied index moves past it (see `Peer::apply`), so a cached
//! object is never older than RocksDB's as far as any reader can tell: a
//! read that waited for an applied index finds every object written up to
//! it, here or on disk. Reads never fill it (a read racing a write could
//! put back an object that was just replaced). A snapshot installed clears
//! it.
//!
//! Bounds: at most [`CACHE_BYTES_MAX`] bytes of keys and values; an object
//! larger than [`CACHE_VALUE_MAX`] is not kept. Past the bound the cache
//! starts over empty: O(1) per write, and what matters (the objects written
//! since) is back within moments. (Evicting one entry at a time by the map's
//! first key costs a scan that grows as the front of the map empties.)

use std::collections::HashMap;

use crate::model::KeyValue;

/// Most bytes of keys and values kept.
pub const CACHE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Largest object (key and value) kept.
pub const CACHE_VALUE_MAX: usize = 64 * 1024;

/// Recently applied objects by key (see the module doc).
#[derive(Debug, Default)]
pub struct ObjectCache {
    objects: HashMap<String, KeyValue>,
    bytes: usize,
    bytes_max: usize,
}

fn size(kv: &KeyValue) -> usize {
    kv.key.len() + kv.value.len()
}

impl ObjectCache {
    /// An empty cache holding at most `bytes_max` bytes of keys and values.
    pub fn new(bytes_max: usize) -> ObjectCache {
        ObjectCache {
            objects: HashMap::new(),
            bytes: 0,
            bytes_max,
        }
    }

    /// The object at `key`, if it is kept: `Some(None)` is never answered;
    /// `None` means "not kept, read the disk".
    pub fn get(&self, key: &str) -> Option<&KeyValue> {
        self.objects.get(key)
    }

    /// Records what one apply batch wrote: `Some` objects written, `None`
    /// keys deleted. Only objects written at least twice are kept: an
    /// object that was updated is likely to be updated again (status,
    /// scale, heartbeats), while most created ones are not, and keeping
    /// every create cost a create-heavy load 5–9 % of its puts/s.
    pub fn applied(&mut self, writes: impl IntoIterator<Item = (String, Option<KeyValue>)>) {
        for (key, kv) in writes {
            if let Some(old) = self.objects.remove(&key) {
                self.bytes -= size(&old);
            }
            match kv {
                Some(kv) if kv.version > 1 && size(&kv) <= CACHE_VALUE_MAX.min(self.bytes_max) => {
                    self.bytes += size(&kv);
                    self.objects.insert(key, kv);
                }
                _ => {}
            }
        }
        if self.bytes > self.bytes_max {
            self.clear();
        }
    }

    /// Forgets everything (a snapshot replaced the state).
    pub fn clear(&mut self) {
        self.objects.clear();
        self.bytes = 0;
    }

    /// Bytes of keys and values kept.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Objects kept.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether nothing is kept.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value_len: usize, rev: u64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: vec![7; value_len],
            create_revision: 1,
            mod_revision: rev,
            version: rev,
        }
    }

    #[test]
    fn updates_are_kept_creates_not_deletes_remove() {
        let mut c = ObjectCache::new(CACHE_BYTES_MAX);
        c.applied([("/a".to_string(), Some(kv("/a", 10, 1)))]);
        assert!(c.get("/a").is_none(), "a create is not kept");
        c.applied([("/a".to_string(), Some(kv("/a", 20, 2)))]);
        assert_eq!(c.get("/a").map(|kv| kv.mod_revision), Some(2));
        assert_eq!(c.bytes(), 22);
        c.applied([("/a".to_string(), None)]);
        assert!(c.get("/a").is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn bounded_by_bytes_and_object_size() {
        let mut c = ObjectCache::new(1_000);
        for i in 0..100u64 {
            let key = format!("/k{i:02}");
            c.applied([(key.clone(), Some(kv(&key, 96, i + 2)))]);
            assert!(c.bytes() <= 1_000, "{} bytes", c.bytes());
            assert!(c.get(&key).is_some() || c.is_empty());
        }
        assert!(!c.is_empty() && c.len() <= 10);
        // Too large to keep: the older copy goes too (it is stale).
        c.applied([("/k99".to_string(), Some(kv("/k99", 2_000, 200)))]);
        assert!(c.get("/k98").is_some() || c.len() < 10);
        assert!(c.get("/k99").is_none());
        let mut big = ObjectCache::new(CACHE_BYTES_MAX);
        big.applied([("/big".to_string(), Some(kv("/big", CACHE_VALUE_MAX, 2)))]);
        assert!(big.is_empty());
    }
}
