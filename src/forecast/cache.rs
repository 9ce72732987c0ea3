//! Cache of model outputs per source series and anchor time. A forecast
//! made at a past grid point from complete data never changes for a given
//! model version, so a range query that moves forward recomputes only the
//! new points. A recent anchor is keyed by its inputs too: it is reused
//! until a new sample changes them, so the queries between two scrapes run
//! the model once.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::labels::Labels;
use crate::lock::lock;

use super::Anchor;

/// Identifies one cached anchor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// Family name.
    pub family: String,
    /// Model version the outputs came from.
    pub version: u64,
    /// Fingerprint of the source series' labels.
    pub series: u64,
    /// Anchor grid time (Unix ms).
    pub anchor_ms: i64,
    /// For an anchor whose history may still change (late samples), the
    /// digest of the model's inputs, so that new data means a new key; 0
    /// once the history is complete.
    pub input: u64,
}

/// A bounded map from [`Key`] to model outputs.
pub struct Cache {
    entries: Mutex<HashMap<Key, Arc<Anchor>>>,
    max_values: usize,
}

impl Cache {
    /// A cache holding at most `max_values` output values in all.
    pub fn new(max_values: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_values,
        }
    }

    /// The cached anchor for `key`.
    pub fn get(&self, key: &Key) -> Option<Arc<Anchor>> {
        lock(&self.entries).get(key).cloned()
    }

    /// Stores `anchor`. When full the cache starts over: simpler than LRU
    /// bookkeeping, and a miss only costs recomputation.
    pub fn put(&self, key: Key, anchor: Arc<Anchor>) {
        let mut entries = lock(&self.entries);
        let per_entry = anchor.deltas.len().max(1);
        if (entries.len() + 1) * per_entry > self.max_values {
            entries.clear();
        }
        entries.insert(key, anchor);
    }

    /// Drops every entry of `family` (after retraining).
    pub fn evict_family(&self, family: &str) {
        lock(&self.entries).retain(|k, _| k.family != family);
    }

    /// Number of cached anchors.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A stable-within-the-process fingerprint of a label set.
pub fn fingerprint(labels: &Labels) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    labels.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchor(n: usize) -> Arc<Anchor> {
        Arc::new(Anchor {
            last: 1.0,
            scale: 1.0,
            deltas: vec![0.0; n],
            sigma: 0.1,
        })
    }

    fn key(anchor_ms: i64) -> Key {
        Key {
            family: "cpu".into(),
            version: 1,
            series: 7,
            anchor_ms,
            input: 0,
        }
    }

    #[test]
    fn stores_and_bounds() {
        let c = Cache::new(30);
        c.put(key(1), anchor(10));
        c.put(key(2), anchor(10));
        c.put(key(3), anchor(10));
        assert_eq!(c.len(), 3);
        assert!(c.get(&key(2)).is_some());
        c.put(key(4), anchor(10));
        assert_eq!(c.len(), 1, "a full cache starts over");
        c.evict_family("cpu");
        assert!(c.is_empty());
    }
}
