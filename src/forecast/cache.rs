//! Cache of model outputs per source series and anchor time. A forecast
//! made at a past grid point from complete data never changes for a given
//! model version, so a range query that moves forward recomputes only the
//! new points. A recent anchor is keyed by its inputs too: it is reused
//! until a new sample changes them, so the queries between two scrapes run
//! the model once.
//!
//! The anomaly score reads a few thousand one-step residuals per series
//! (`anomaly::memory`): far too many whole forecasts to keep, so the
//! residuals of settled rows are kept on their own, 4 bytes a row, per
//! series, model version and phase of the model grid ([`RowKey`]). An
//! alert rule evaluated every minute then computes only the rows that are
//! new since its last evaluation.

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

/// Identifies one series' settled anomaly rows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RowKey {
    /// Family name.
    pub family: String,
    /// Model version the residuals came from; 0 for the baseline.
    pub version: u64,
    /// Fingerprint of the source series' labels.
    pub series: u64,
    /// The model step, and the rows' offset from its multiples.
    pub step_ms: i64,
    pub phase_ms: i64,
}

/// Consecutive rows' residuals from `start_ms`, one model step apart;
/// `NaN` where a row has none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// Time of the first row.
    pub start_ms: i64,
    /// One residual per row.
    pub residuals: Vec<f32>,
}

impl Rows {
    /// The residual kept for the row at `t_ms` (`Some(NaN)`: the row had
    /// none); `None` where no row at `t_ms` is kept.
    pub fn at(&self, t_ms: i64, step_ms: i64) -> Option<f32> {
        let offset = t_ms - self.start_ms;
        if offset < 0 || offset % step_ms != 0 {
            return None;
        }
        self.residuals.get((offset / step_ms) as usize).copied()
    }
}

/// A bounded map from [`Key`] to model outputs, and from [`RowKey`] to
/// settled anomaly rows.
pub struct Cache {
    entries: Mutex<HashMap<Key, Arc<Anchor>>>,
    max_values: usize,
    rows: Mutex<RowStore>,
}

/// Settled anomaly rows, and how many there are in all.
#[derive(Default)]
struct RowStore {
    map: HashMap<RowKey, Rows>,
    held: usize,
}

impl Cache {
    /// A cache holding at most `max_values` output values in all, and as
    /// many anomaly rows.
    pub fn new(max_values: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_values,
            rows: Mutex::default(),
        }
    }

    /// The settled rows of `key` between `from_ms` and `to_ms`
    /// (inclusive), if any are kept.
    pub fn rows(&self, key: &RowKey, from_ms: i64, to_ms: i64) -> Option<Rows> {
        let store = lock(&self.rows);
        let kept = store.map.get(key)?;
        let step = key.step_ms;
        let end_ms = kept.start_ms + kept.residuals.len() as i64 * step;
        let first = from_ms.max(kept.start_ms);
        let last = to_ms.min(end_ms - step);
        if last < first {
            return None;
        }
        let i = ((first - kept.start_ms) / step) as usize;
        let j = ((last - kept.start_ms) / step) as usize;
        Some(Rows {
            start_ms: first,
            residuals: kept.residuals[i..=j].to_vec(),
        })
    }

    /// Keeps `new` (settled rows) for `key`, joined to what is kept where
    /// they meet or overlap, replacing it otherwise. When full the rows
    /// start over, as the forecasts do.
    pub fn put_rows(&self, key: RowKey, new: Rows) {
        if new.residuals.is_empty() {
            return;
        }
        let mut store = lock(&self.rows);
        let step = key.step_ms;
        let joined = match store.map.remove(&key) {
            Some(kept) => {
                store.held -= kept.residuals.len();
                join(kept, new, step)
            }
            None => new,
        };
        store.held += joined.residuals.len();
        if store.held > self.max_values {
            store.map.clear();
            store.held = joined.residuals.len();
        }
        store.map.insert(key, joined);
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
        let mut store = lock(&self.rows);
        store.map.retain(|k, _| k.family != family);
        store.held = store.map.values().map(|r| r.residuals.len()).sum();
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

/// `kept` and `new` as one run where they meet or overlap (`new` wins
/// where both have a row), else `new` alone.
fn join(kept: Rows, new: Rows, step: i64) -> Rows {
    let end = |r: &Rows| r.start_ms + r.residuals.len() as i64 * step;
    if new.start_ms > end(&kept) || kept.start_ms > end(&new) {
        return new;
    }
    let start_ms = kept.start_ms.min(new.start_ms);
    let len = ((end(&kept).max(end(&new)) - start_ms) / step) as usize;
    let mut residuals = vec![f32::NAN; len];
    for r in [&kept, &new] {
        let at = ((r.start_ms - start_ms) / step) as usize;
        residuals[at..at + r.residuals.len()].copy_from_slice(&r.residuals);
    }
    Rows {
        start_ms,
        residuals,
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

    #[test]
    fn rows_join_where_they_meet_and_are_read_back_in_part() {
        let c = Cache::new(1000);
        let key = RowKey {
            family: "cpu".into(),
            version: 1,
            series: 7,
            step_ms: 10,
            phase_ms: 0,
        };
        let rows = |start_ms: i64, values: &[f32]| Rows {
            start_ms,
            residuals: values.to_vec(),
        };
        c.put_rows(key.clone(), rows(100, &[1.0, 2.0, 3.0]));
        // Overlapping the end: joined, the newer value wins.
        c.put_rows(key.clone(), rows(120, &[30.0, 4.0]));
        assert_eq!(
            c.rows(&key, 0, 1000),
            Some(rows(100, &[1.0, 2.0, 30.0, 4.0]))
        );
        assert_eq!(c.rows(&key, 110, 120), Some(rows(110, &[2.0, 30.0])));
        assert_eq!(c.rows(&key, 140, 200), None);
        // Apart from what is kept: it replaces it.
        c.put_rows(key.clone(), rows(500, &[5.0]));
        assert_eq!(c.rows(&key, 0, 1000), Some(rows(500, &[5.0])));
        c.evict_family("cpu");
        assert_eq!(c.rows(&key, 0, 1000), None);
    }
}
