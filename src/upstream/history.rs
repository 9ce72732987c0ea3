//! Recent source history kept between queries. A family's series are read
//! from the upstream once; after that each query reads only what came since
//! (with an overlap for late samples), so that a dashboard refresh or an
//! alert evaluation costs the upstream minutes of samples instead of the
//! day the model needs for normalisation and its seasonal input.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};

use super::SourceSeries;
use crate::labels::{Labels, Matcher};

/// Re-read this much before the end of what is cached: samples can arrive
/// late (scrape lag, remote write), and a cached gap would never fill.
pub const OVERLAP_MS: i64 = 5 * 60_000;

/// What to read from the upstream for a query, with the cached part the
/// answer will be built from.
#[derive(Debug, Clone)]
pub enum Plan {
    /// Everything from the query's start: nothing usable is cached.
    Full,
    /// Only from this time (ms) on; the snapshot has the rest.
    Tail(i64, Snapshot),
    /// Nothing: the snapshot has the whole range, overlap included.
    Cached(Snapshot),
}

/// A family's cached history as a plan found it. It stays whole while
/// the upstream is read, even if other queries evict or replace the entry
/// meanwhile, so the answer never depends on what the cache still holds.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The cached range: complete from `from_ms` to `to_ms` (never later
    /// than when it was read).
    from_ms: i64,
    to_ms: i64,
    /// Shared with the entry: taking a snapshot copies no samples.
    series: Arc<Vec<SourceSeries>>,
}

impl Snapshot {
    fn samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }

    /// This history with a read of `[from_ms, end_ms]` in place of what it
    /// had from `from_ms` on, keeping its span, sliding forward.
    fn extended(&self, from_ms: i64, tail: &[SourceSeries], end_ms: i64) -> Snapshot {
        let span = self.to_ms - self.from_ms;
        let to_ms = self.to_ms.max(read_until(end_ms));
        let kept_from = self.from_ms.max(to_ms - span);
        Snapshot {
            from_ms: kept_from,
            to_ms,
            series: Arc::new(combine(&self.series, from_ms, tail, kept_from..=i64::MAX)),
        }
    }
}

/// Cached history per family and source selector, bounded in samples.
pub struct HistoryCache {
    state: Mutex<State>,
    max_samples: usize,
}

/// The entries, with what every query would otherwise recount: a use
/// counter for LRU order and the total sample count.
#[derive(Default)]
struct State {
    entries: HashMap<String, Entry>,
    clock: u64,
    total: usize,
}

impl State {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Drops least recently used entries until the total fits.
    fn evict(&mut self, max_samples: usize) {
        while self.total > max_samples {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.total -= e.cached.samples();
            }
        }
    }
}

struct Entry {
    cached: Snapshot,
    /// For least-recently-used eviction.
    used: u64,
}

impl HistoryCache {
    /// A cache holding at most `max_samples` samples in all.
    pub fn new(max_samples: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            max_samples,
        }
    }

    /// The key of a family's series selected by `matchers`.
    pub fn key(family: &str, matchers: &[Matcher]) -> String {
        let mut parts: Vec<String> = matchers.iter().map(ToString::to_string).collect();
        parts.sort();
        format!("{family}{{{}}}", parts.join(","))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock::lock(&self.state)
    }

    /// Whether `key` has an entry.
    pub fn contains(&self, key: &str) -> bool {
        self.lock().entries.contains_key(key)
    }

    /// What must be read for `[start_ms, end_ms]`.
    pub fn plan(&self, key: &str, start_ms: i64, end_ms: i64) -> Plan {
        match self.lock().entries.get(key).map(|e| &e.cached) {
            Some(c) if c.from_ms <= start_ms && start_ms <= c.to_ms => {
                let fresh_until = c.to_ms - OVERLAP_MS;
                if end_ms <= fresh_until {
                    Plan::Cached(c.clone())
                } else {
                    Plan::Tail(fresh_until.max(start_ms), c.clone())
                }
            }
            _ => Plan::Full,
        }
    }

    /// Stores a full read of `[start_ms, end_ms]` and returns it.
    pub fn store(
        &self,
        key: String,
        start_ms: i64,
        end_ms: i64,
        series: Vec<SourceSeries>,
    ) -> Vec<SourceSeries> {
        let cached = Snapshot {
            from_ms: start_ms,
            to_ms: read_until(end_ms),
            series: Arc::new(series.clone()),
        };
        let mut state = self.lock();
        state.total += cached.samples();
        let entry = Entry {
            cached,
            used: state.tick(),
        };
        if let Some(old) = state.entries.insert(key, entry) {
            state.total -= old.cached.samples();
        }
        state.evict(self.max_samples);
        series
    }

    /// Answers `[start_ms, end_ms]` from `cached`, the snapshot the plan
    /// gave, and a read of `[from_ms, end_ms]` (a [`Plan::Tail`], or nothing
    /// for [`Plan::Cached`]), and merges the read into the entry. The entry
    /// takes it only while it is still the one the plan saw: one evicted
    /// meanwhile stays evicted, and one another query replaced is already
    /// as complete as the cache can tell.
    pub fn merge(
        &self,
        key: &str,
        cached: Snapshot,
        tail: Option<(i64, Vec<SourceSeries>)>,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SourceSeries> {
        let (answer, merged) = match &tail {
            Some((from_ms, tail)) => (
                combine(&cached.series, *from_ms, tail, start_ms..=end_ms),
                Some(cached.extended(*from_ms, tail, end_ms)),
            ),
            None => (
                combine(&cached.series, i64::MAX, &[], start_ms..=end_ms),
                None,
            ),
        };
        let mut guard = self.lock();
        let state = &mut *guard;
        let used = state.tick();
        if let Some(entry) = state.entries.get_mut(key) {
            entry.used = used;
            if let Some(merged) = merged
                && Arc::ptr_eq(&entry.cached.series, &cached.series)
            {
                state.total = state.total - entry.cached.samples() + merged.samples();
                entry.cached = merged;
            }
        }
        state.evict(self.max_samples);
        answer
    }
}

/// Per series, the samples of `cached` before `from_ms` followed by those
/// of `tail`, all within `keep`. Series keep their cached order, those new
/// in `tail` follow in its order, and those left empty are dropped. Series
/// are found by their labels through an index: a family can have
/// thousands.
fn combine(
    cached: &[SourceSeries],
    from_ms: i64,
    tail: &[SourceSeries],
    keep: RangeInclusive<i64>,
) -> Vec<SourceSeries> {
    let mut out: Vec<SourceSeries> = cached
        .iter()
        .map(|s| SourceSeries {
            labels: s.labels.clone(),
            samples: s
                .samples
                .iter()
                .copied()
                .filter(|&(t, _)| t < from_ms && keep.contains(&t))
                .collect(),
        })
        .collect();
    let mut index: HashMap<&Labels, usize> = HashMap::with_capacity(cached.len());
    for (i, s) in cached.iter().enumerate() {
        index.entry(&s.labels).or_insert(i);
    }
    for new in tail {
        let i = *index.entry(&new.labels).or_insert_with(|| {
            out.push(SourceSeries {
                labels: new.labels.clone(),
                samples: Vec::new(),
            });
            out.len() - 1
        });
        out[i].samples.extend(
            new.samples
                .iter()
                .copied()
                .filter(|(t, _)| keep.contains(t)),
        );
    }
    out.retain(|s| !s.samples.is_empty());
    out
}

/// How far a read that asked up to `end_ms` is complete: the future has
/// not happened yet, so a query reaching past now caches only up to now.
fn read_until(end_ms: i64) -> i64 {
    end_ms.min(crate::calendar::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels::Labels;

    const MIN: i64 = 60_000;

    fn series(instance: &str, from: i64, to: i64) -> SourceSeries {
        SourceSeries {
            labels: Labels::from([("instance".to_owned(), instance.to_owned())]),
            samples: (from / MIN..=to / MIN)
                .map(|m| (m * MIN, m as f64))
                .collect(),
        }
    }

    #[test]
    fn reads_the_tail_only_and_answers_like_a_full_read() {
        let cache = HistoryCache::new(1_000_000);
        let key = HistoryCache::key("m", &[Matcher::equal("job", "node")]);
        let (start, end) = (0, 1440 * MIN);
        assert!(matches!(cache.plan(&key, start, end), Plan::Full));
        let first = cache.store(key.clone(), start, end, vec![series("a", start, end)]);
        assert_eq!(first, vec![series("a", start, end)]);

        // Ten minutes later: only the last 15 minutes are read again, and
        // a late sample inside the overlap replaces what was cached.
        let (start2, end2) = (start + 10 * MIN, end + 10 * MIN);
        let Plan::Tail(from, cached) = cache.plan(&key, start2, end2) else {
            panic!("expected a tail read");
        };
        assert_eq!(from, end - OVERLAP_MS);
        let mut tail = vec![series("a", from, end2), series("b", end2, end2)];
        tail[0].samples[0].1 = -1.0;
        let merged = cache.merge(&key, cached, Some((from, tail)), start2, end2);
        let mut want_a = series("a", start2, end2);
        let late = want_a.samples.iter_mut().find(|s| s.0 == from).unwrap();
        late.1 = -1.0;
        assert_eq!(merged, vec![want_a, series("b", end2, end2)]);

        // A query inside the cached range, away from its end, reads nothing.
        let Plan::Cached(cached) = cache.plan(&key, start2, end2 - OVERLAP_MS) else {
            panic!("expected the cache to have it");
        };
        let cached = cache.merge(&key, cached, None, start2 + MIN, start2 + 2 * MIN);
        assert_eq!(cached, vec![series("a", start2 + MIN, start2 + 2 * MIN)]);
        // Before what is cached (the entry slid forward): a full read.
        assert!(matches!(cache.plan(&key, start, end2), Plan::Full));
    }

    #[test]
    fn the_future_is_not_cached() {
        let cache = HistoryCache::new(1_000_000);
        let now = crate::calendar::now_ms();
        let key = HistoryCache::key("m", &[]);
        cache.store(key.clone(), now - 60 * MIN, now + 360 * MIN, vec![]);
        // A later query up to now must read what arrived since.
        assert!(matches!(
            cache.plan(&key, now - 30 * MIN, now),
            Plan::Tail(..)
        ));
    }

    #[test]
    fn evicts_least_recently_used_entries() {
        let cache = HistoryCache::new(150);
        for (i, name) in ["a", "b"].iter().enumerate() {
            let key = HistoryCache::key(name, &[]);
            cache.store(key, 0, 99 * MIN, vec![series(name, 0, 99 * MIN)]);
            assert!(
                matches!(
                    cache.plan(&HistoryCache::key(name, &[]), 0, MIN),
                    Plan::Cached(_)
                ),
                "{i}"
            );
        }
        // 200 samples do not fit in 150: "a", the older, went.
        assert!(matches!(
            cache.plan(&HistoryCache::key("a", &[]), 0, MIN),
            Plan::Full
        ));
        assert!(matches!(
            cache.plan(&HistoryCache::key("b", &[]), 0, MIN),
            Plan::Cached(_)
        ));
    }

    /// Another family's insert evicts the entry while the upstream is
    /// read: the answer is still the whole range, from the plan's snapshot.
    #[test]
    fn answers_the_whole_range_when_evicted_during_the_read() {
        let cache = HistoryCache::new(1500);
        let key = HistoryCache::key("m", &[]);
        let (start, end) = (0, 1000 * MIN);
        cache.store(key.clone(), start, end, vec![series("a", start, end)]);
        let (start2, end2) = (start + 10 * MIN, end + 10 * MIN);
        let Plan::Tail(from, partly) = cache.plan(&key, start2, end2) else {
            panic!("expected a tail read");
        };
        let Plan::Cached(wholly) = cache.plan(&key, start2, end - OVERLAP_MS) else {
            panic!("expected the cache to have it");
        };

        let other = HistoryCache::key("other", &[]);
        cache.store(other, start, end, vec![series("b", start, end)]);
        assert!(matches!(cache.plan(&key, start2, end2), Plan::Full));

        let tail = vec![series("a", from, end2)];
        let merged = cache.merge(&key, partly, Some((from, tail)), start2, end2);
        assert_eq!(merged, vec![series("a", start2, end2)]);
        let cached = cache.merge(&key, wholly, None, start2, end - OVERLAP_MS);
        assert_eq!(cached, vec![series("a", start2, end - OVERLAP_MS)]);
        // The eviction stands: the cache is over its bound without it.
        assert!(matches!(cache.plan(&key, start2, end2), Plan::Full));
    }

    /// Two queries of one family read their tails at once and the later
    /// one merges first: the older read must not cut what it cached.
    #[test]
    fn an_older_read_leaves_a_newer_entry_alone() {
        let cache = HistoryCache::new(1_000_000);
        let key = HistoryCache::key("m", &[]);
        let (start, end) = (0, 1000 * MIN);
        cache.store(key.clone(), start, end, vec![series("a", start, end)]);
        let (end_a, end_b) = (end + 10 * MIN, end + 40 * MIN);
        let Plan::Tail(from_a, cached_a) = cache.plan(&key, start, end_a) else {
            panic!("expected a tail read");
        };
        let Plan::Tail(from_b, cached_b) = cache.plan(&key, start, end_b) else {
            panic!("expected a tail read");
        };

        let tail_b = vec![series("a", from_b, end_b)];
        let merged_b = cache.merge(&key, cached_b, Some((from_b, tail_b)), start, end_b);
        assert_eq!(merged_b, vec![series("a", start, end_b)]);
        let tail_a = vec![series("a", from_a, end_a)];
        let merged_a = cache.merge(&key, cached_a, Some((from_a, tail_a)), start, end_a);
        assert_eq!(merged_a, vec![series("a", start, end_a)]);

        let (start2, end2) = (start + 40 * MIN, end_b - OVERLAP_MS);
        let Plan::Cached(cached) = cache.plan(&key, start2, end2) else {
            panic!("expected the cache to have it");
        };
        let cached = cache.merge(&key, cached, None, start2, end2);
        assert_eq!(cached, vec![series("a", start2, end2)]);
    }

    /// The upstream answers a family's series in any order, some new: each
    /// joins its cached part, in the order the cache first saw them.
    #[test]
    fn joins_series_by_labels_in_any_order() {
        let cache = HistoryCache::new(1_000_000);
        let key = HistoryCache::key("m", &[]);
        let names: Vec<String> = (0..50).map(|i| format!("i{i}")).collect();
        let (start, end) = (0, 100 * MIN);
        let first = names.iter().map(|n| series(n, start, end)).collect();
        cache.store(key.clone(), start, end, first);
        let (start2, end2) = (start + 10 * MIN, end + 10 * MIN);
        let Plan::Tail(from, cached) = cache.plan(&key, start2, end2) else {
            panic!("expected a tail read");
        };
        let mut tail: Vec<_> = names.iter().rev().map(|n| series(n, from, end2)).collect();
        tail.insert(10, series("new", end2, end2));

        let merged = cache.merge(&key, cached, Some((from, tail)), start2, end2);
        let mut want: Vec<_> = names.iter().map(|n| series(n, start2, end2)).collect();
        want.push(series("new", end2, end2));
        assert_eq!(merged, want);
        let Plan::Cached(cached) = cache.plan(&key, start2, end2 - OVERLAP_MS) else {
            panic!("expected the cache to have it");
        };
        let cached = cache.merge(&key, cached, None, start2, end2 - OVERLAP_MS);
        want.pop();
        for s in &mut want {
            s.samples.retain(|&(t, _)| t <= end2 - OVERLAP_MS);
        }
        assert_eq!(cached, want);
    }
}
