//! Timing shared by the benchmarks.

use std::time::{Duration, Instant};

/// Median wall time of `runs` calls of `f`, after `warm` unmeasured ones.
pub fn median(warm: usize, runs: usize, mut f: impl FnMut()) -> Duration {
    for _ in 0..warm {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}
