//! Recent source history kept between queries. A family's series are read
//! from the upstream once; after that each query reads only what came since
//! (with an overlap for late samples), so that a dashboard refresh or an
//! alert evaluation costs the upstream minutes of samples instead of the
//! day the model needs for normalisation and its seasonal input.

use std::collections::HashMap;
use std::sync::Mutex;

use super::SourceSeries;
use crate::labels::Matcher;

/// Re-read this much before the end of what is cached: samples can arrive
/// late (scrape lag, remote write), and a cached gap would never fill.
pub const OVERLAP_MS: i64 = 5 * 60_000;

/// What to read from the upstream for a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Everything from the query's start: nothing usable is cached.
    Full,
    /// Only from this time (ms) on; the cache has the rest.
    Tail(i64),
    /// Nothing: the cache has the whole range, overlap included.
    Cached,
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
                self.total -= e.samples();
            }
        }
    }
}

struct Entry {
    /// The cached range: complete from `from_ms` to `to_ms` (never later
    /// than when it was read).
    from_ms: i64,
    to_ms: i64,
    series: Vec<SourceSeries>,
    /// For least-recently-used eviction.
    used: u64,
}

impl Entry {
    fn samples(&self) -> usize {
        self.series.iter().map(|s| s.samples.len()).sum()
    }
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

    /// What must be read for `[start_ms, end_ms]`.
    pub fn plan(&self, key: &str, start_ms: i64, end_ms: i64) -> Plan {
        match self.lock().entries.get(key) {
            Some(e) if e.from_ms <= start_ms && start_ms <= e.to_ms => {
                let fresh_until = e.to_ms - OVERLAP_MS;
                if end_ms <= fresh_until {
                    Plan::Cached
                } else {
                    Plan::Tail(fresh_until.max(start_ms))
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
        let mut state = self.lock();
        let entry = Entry {
            from_ms: start_ms,
            to_ms: read_until(end_ms),
            series: series.clone(),
            used: state.tick(),
        };
        state.total += entry.samples();
        if let Some(old) = state.entries.insert(key, entry) {
            state.total -= old.samples();
        }
        state.evict(self.max_samples);
        series
    }

    /// Merges a read of `[from_ms, end_ms]` (a [`Plan::Tail`], or nothing
    /// for [`Plan::Cached`]) into the entry and returns `[start_ms, end_ms]`.
    /// The entry keeps the span it was first read with, sliding forward.
    pub fn merge(
        &self,
        key: &str,
        tail: Option<(i64, Vec<SourceSeries>)>,
        start_ms: i64,
        end_ms: i64,
    ) -> Vec<SourceSeries> {
        let mut guard = self.lock();
        let state = &mut *guard;
        let used = state.tick();
        let Some(entry) = state.entries.get_mut(key) else {
            return tail.map(|(_, s)| s).unwrap_or_default();
        };
        entry.used = used;
        if let Some((from_ms, tail)) = tail {
            state.total -= entry.samples();
            for s in &mut entry.series {
                s.samples.retain(|&(t, _)| t < from_ms);
            }
            for new in tail {
                match entry.series.iter_mut().find(|s| s.labels == new.labels) {
                    Some(s) => s.samples.extend(new.samples),
                    None => entry.series.push(new),
                }
            }
            let span = entry.to_ms - entry.from_ms;
            entry.to_ms = entry.to_ms.max(read_until(end_ms));
            entry.from_ms = entry.from_ms.max(entry.to_ms - span);
            let from = entry.from_ms;
            for s in &mut entry.series {
                s.samples.retain(|&(t, _)| t >= from);
            }
            entry.series.retain(|s| !s.samples.is_empty());
            state.total += entry.samples();
        }
        let answer = entry
            .series
            .iter()
            .map(|s| SourceSeries {
                labels: s.labels.clone(),
                samples: s
                    .samples
                    .iter()
                    .copied()
                    .filter(|&(t, _)| (start_ms..=end_ms).contains(&t))
                    .collect(),
            })
            .filter(|s| !s.samples.is_empty())
            .collect();
        state.evict(self.max_samples);
        answer
    }
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
        assert_eq!(cache.plan(&key, start, end), Plan::Full);
        let first = cache.store(key.clone(), start, end, vec![series("a", start, end)]);
        assert_eq!(first, vec![series("a", start, end)]);

        // Ten minutes later: only the last 15 minutes are read again, and
        // a late sample inside the overlap replaces what was cached.
        let (start2, end2) = (start + 10 * MIN, end + 10 * MIN);
        let Plan::Tail(from) = cache.plan(&key, start2, end2) else {
            panic!("expected a tail read");
        };
        assert_eq!(from, end - OVERLAP_MS);
        let mut tail = vec![series("a", from, end2), series("b", end2, end2)];
        tail[0].samples[0].1 = -1.0;
        let merged = cache.merge(&key, Some((from, tail)), start2, end2);
        let mut want_a = series("a", start2, end2);
        let late = want_a.samples.iter_mut().find(|s| s.0 == from).unwrap();
        late.1 = -1.0;
        assert_eq!(merged, vec![want_a, series("b", end2, end2)]);

        // A query inside the cached range, away from its end, reads nothing.
        assert_eq!(cache.plan(&key, start2, end2 - OVERLAP_MS), Plan::Cached);
        let cached = cache.merge(&key, None, start2 + MIN, start2 + 2 * MIN);
        assert_eq!(cached, vec![series("a", start2 + MIN, start2 + 2 * MIN)]);
        // Before what is cached (the entry slid forward): a full read.
        assert_eq!(cache.plan(&key, start, end2), Plan::Full);
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
            Plan::Tail(_)
        ));
    }

    #[test]
    fn evicts_least_recently_used_entries() {
        let cache = HistoryCache::new(150);
        for (i, name) in ["a", "b"].iter().enumerate() {
            let key = HistoryCache::key(name, &[]);
            cache.store(key, 0, 99 * MIN, vec![series(name, 0, 99 * MIN)]);
            assert_eq!(
                cache.plan(&HistoryCache::key(name, &[]), 0, MIN),
                Plan::Cached,
                "{i}"
            );
        }
        // 200 samples do not fit in 150: "a", the older, went.
        assert_eq!(cache.plan(&HistoryCache::key("a", &[]), 0, MIN), Plan::Full);
        assert_eq!(
            cache.plan(&HistoryCache::key("b", &[]), 0, MIN),
            Plan::Cached
        );
    }
}
