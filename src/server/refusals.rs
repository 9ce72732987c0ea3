//! Refused requests in the log: at info, so that an operator sees why a
//! dashboard is empty, but at most one line per kind of refusal per
//! interval, so that a rule evaluated every 15 seconds against a bad
//! horizon does not flood it. Each line counts the refusals it stands for.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shortest time between two log lines of one kind.
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Rate-limits refusal log lines per kind.
pub struct Refusals {
    interval: Duration,
    /// Per kind: when its last line was logged, and the refusals since.
    kinds: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl Refusals {
    /// At most one line per kind every `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Logs a refusal of `kind` (a limit's field, `horizon`, `selector`,
    /// `request`) with its `reason`, unless a line of that kind was logged
    /// within the interval; then it is counted in the next line.
    pub fn log(&self, kind: &'static str, reason: &str) {
        if let Some(suppressed) = self.admit(kind, Instant::now()) {
            tracing::info!(kind, suppressed, reason, "request refused");
        }
    }

    /// Whether a refusal of `kind` at `now` gets a line; if so, how many
    /// of its kind went without one since the last line.
    fn admit(&self, kind: &'static str, now: Instant) -> Option<u64> {
        let mut kinds = crate::lock::lock(&self.kinds);
        match kinds.get_mut(kind) {
            Some((last, suppressed)) if now.duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                *last = now;
                Some(std::mem::take(suppressed))
            }
            None => {
                kinds.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_per_interval_counting_the_rest() {
        let r = Refusals::new(Duration::from_secs(60));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(r.admit("horizon", at(0)), Some(0));
        assert_eq!(r.admit("horizon", at(10)), None);
        assert_eq!(r.admit("horizon", at(59)), None);
        // Another kind has an interval of its own.
        assert_eq!(r.admit("limits.max_query_range", at(30)), Some(0));
        assert_eq!(r.admit("horizon", at(60)), Some(2));
        assert_eq!(r.admit("horizon", at(61)), None);
        assert_eq!(r.admit("horizon", at(200)), Some(1));
        assert_eq!(r.admit("horizon", at(300)), Some(0));
    }
}
