//! From raw samples to model inputs: a series resampled onto a regular time
//! grid, normalised by its own trailing statistics, cut into passes with
//! calendar inputs, and the targets a forecast is trained against.
//!
//! Why passes: the network starts from a zero state, so a forecast at every
//! grid point from its own fixed-length window would run the network over
//! each point once per window that covers it (60 times for an hour of
//! 1-minute input). Instead, input windows start at multiples of a
//! *segment* of grid points (absolute time, so every query cuts them
//! alike): the forecasts at the `segment` consecutive points whose windows
//! start at the same point read one run of the network, a *pass*, at
//! different steps. A window therefore holds between `window − segment + 1`
//! and `window` points, and the points of a pass share one normalisation.

use crate::calendar::{self, DAY_MS};

/// Inputs per time step: normalised value, then sine and cosine of the
/// time of day and of the time of week.
pub const FEATURES: usize = 5;

/// Normalised inputs are clipped to this magnitude so that one wild sample
/// cannot saturate the network.
const CLIP: f64 = 10.0;

/// A series on a regular grid aligned to multiples of `step_ms` since the
/// epoch; `NaN` where the source had no sample.
#[derive(Debug, Clone)]
pub struct Grid {
    /// Timestamp of `values[0]`.
    pub start_ms: i64,
    /// Grid spacing.
    pub step_ms: i64,
    /// One value per grid point, `NaN` where none: a value that is not
    /// finite counts as none.
    pub values: Vec<f64>,
    /// Prefix sums over `values - offset` for O(1) trailing statistics.
    prefix: Prefix,
    offset: f64,
}

/// Running sums of a grid's values, one more than the values, as three
/// columns: a run of spans reads each in lock step, which vectorises
/// ([`Grid::spreads`]).
#[derive(Debug, Clone)]
struct Prefix {
    sum: Vec<f64>,
    square: Vec<f64>,
    count: Vec<u32>,
}

/// Where a grid's points are, without their values: what is left to keep
/// of a grid once its windows are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// Timestamp of the first point.
    pub start_ms: i64,
    /// Spacing.
    pub step_ms: i64,
    /// Number of points.
    pub points: usize,
}

impl Span {
    /// Timestamp of point `i`.
    pub fn time(self, i: usize) -> i64 {
        self.start_ms + i as i64 * self.step_ms
    }

    /// The index of timestamp `t`, if `t` is one of the points.
    pub fn index(self, t: i64) -> Option<usize> {
        let d = t - self.start_ms;
        (d >= 0 && d % self.step_ms == 0)
            .then(|| (d / self.step_ms) as usize)
            .filter(|&i| i < self.points)
    }
}

/// How windows are cut: the same at training and serving time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shape {
    /// Grid points per input window, at most: the length of a full pass.
    pub window: usize,
    /// Consecutive forecast points that share one pass (see the module
    /// documentation); passes start at multiples of it.
    pub segment: usize,
    /// Model steps forecast ahead (`K`).
    pub horizon_steps: usize,
    /// Grid points of trailing history the per-series normalisation uses.
    pub norm_points: usize,
    /// Whether the time-of-week inputs are live. A model that has not seen
    /// every weekday several times would extrapolate them into nonsense, so
    /// they are zero unless the training history spans [`WEEKLY_HISTORY_MS`].
    pub weekly: bool,
}

/// Training history needed before time-of-week inputs are used.
pub const WEEKLY_HISTORY_MS: i64 = 21 * DAY_MS;

/// Most model steps a forecast reaches ahead; an automatic step is raised
/// to stay below it (a 15 s scrape interval would need 1,440 steps for 6 h).
pub const MAX_HORIZON_STEPS: i64 = 512;

impl Shape {
    /// The layout for a grid of `step_ms`: input windows covering
    /// `lookback_ms` (4 to 128 points) at most and half of it at least, one
    /// output per step up to one step past the longest horizon (a time
    /// between grid points reads up to a step further), and a day of
    /// normalisation history.
    pub fn for_step(step_ms: i64, lookback_ms: i64, max_horizon_ms: i64, history_ms: i64) -> Self {
        let window = ceil_div(lookback_ms, step_ms).clamp(4, 128) as usize;
        Self {
            window,
            segment: window / 2,
            horizon_steps: (ceil_div(max_horizon_ms, step_ms) + 1) as usize,
            norm_points: ((DAY_MS / step_ms) as usize).max(window),
            weekly: history_ms >= WEEKLY_HISTORY_MS,
        }
    }

    /// The same layout forecasting one step ahead only: what an anomaly
    /// score's rows read.
    pub fn one_step(&self) -> Self {
        Self {
            horizon_steps: 1,
            ..*self
        }
    }

    /// Grid points before its anchor that a forecast reads, at most: its
    /// window, and the normalisation at its pass's first forecast point
    /// (which is up to a segment earlier).
    pub fn history_points(&self) -> usize {
        (self.norm_points + self.segment).max(self.window)
    }
}

/// The model step: the configured one, else the source's sample spacing
/// (whole seconds, 60 s when unknown), raised to a multiple of itself when
/// the longest horizon would need more than [`MAX_HORIZON_STEPS`].
pub fn choose_step(configured: Option<i64>, spacing: Option<i64>, max_horizon_ms: i64) -> i64 {
    if let Some(step) = configured {
        return step.max(1);
    }
    let base = spacing.map_or(60_000, |s| ((s + 500) / 1000 * 1000).max(1000));
    let factor = ceil_div(ceil_div(max_horizon_ms, base) + 1, MAX_HORIZON_STEPS).max(1);
    base * factor
}

/// `a / b` rounded up, for non-negative `a` and positive `b`.
fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

/// One run of the network: normalised inputs from a pass start onwards.
#[derive(Debug, Clone)]
pub struct Pass {
    /// Grid index of the first point.
    pub start: usize,
    /// `points × FEATURES` inputs, row-major by time.
    pub features: Vec<f32>,
}

impl Pass {
    /// Grid points covered.
    pub fn points(&self) -> usize {
        self.features.len() / FEATURES
    }
}

/// What one forecast reads besides its pass: how far into the pass, and
/// what turns the network's normalised output into source units.
#[derive(Debug, Clone)]
pub struct Window {
    /// Grid index of the window's first point, where its pass starts.
    pub start: usize,
    /// Grid index of the window's last point: the forecast's anchor.
    pub end: usize,
    /// The source's value at the window end (carried forward over gaps).
    pub last: f64,
    /// Normalisation scale: one normalised unit in source units.
    pub scale: f64,
    /// The seasonal-naive forecast: for each step `1..=K` ahead, the
    /// normalised change over the same stretch one day earlier (0 where
    /// there is no day of history). Daily cycles dominate infrastructure
    /// metrics, and a short input window cannot show where in the cycle a
    /// series is; this hands the model yesterday's answer to improve on.
    pub seasonal: Vec<f32>,
}

impl Window {
    /// Grid points from the pass start to the anchor.
    pub fn points(&self) -> usize {
        self.end + 1 - self.start
    }

    /// A digest of everything the model reads for this window from `pass`
    /// (the pass it starts): equal digests mean equal inputs, hence equal
    /// outputs.
    pub fn digest(&self, pass: &Pass) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let read = pass
            .features
            .get(..self.points() * FEATURES)
            .unwrap_or_default();
        for v in read.iter().chain(&self.seasonal) {
            std::hash::Hash::hash(&v.to_bits(), &mut h);
        }
        std::hash::Hash::hash(&self.last.to_bits(), &mut h);
        std::hash::Hash::hash(&self.scale.to_bits(), &mut h);
        std::hash::Hasher::finish(&h)
    }
}

/// The values at `points` times from `first_ms`, `step_ms` apart (not
/// necessarily on multiples of the step, so not a [`Grid`]): each the
/// latest of `samples` (sorted by time) at or before it if less than
/// `staleness_ms` old, `NaN` where none; one walk through the samples.
pub fn sample_points(
    samples: &[(i64, f64)],
    first_ms: i64,
    points: usize,
    step_ms: i64,
    staleness_ms: i64,
) -> Vec<f64> {
    let mut next = 0;
    (0..points as i64)
        .map(|k| {
            let t = first_ms + k * step_ms;
            while next < samples.len() && samples[next].0 <= t {
                next += 1;
            }
            match next.checked_sub(1).map(|i| samples[i]) {
                Some((ts, value)) if t - ts < staleness_ms => value,
                _ => f64::NAN,
            }
        })
        .collect()
}

impl Grid {
    /// Resamples `samples` (sorted by time) onto the grid points in
    /// `[start_ms, end_ms]`: each point takes the latest sample at or
    /// before it, if that sample is less than `staleness_ms` old, as a
    /// Prometheus instant query would.
    pub fn resample(
        samples: &[(i64, f64)],
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        staleness_ms: i64,
    ) -> Self {
        let first = start_ms.div_euclid(step_ms) * step_ms;
        let points = if end_ms < first {
            0
        } else {
            ((end_ms - first) / step_ms + 1) as usize
        };
        let values = sample_points(samples, first, points, step_ms, staleness_ms);
        Self::from_values(first, step_ms, values)
    }

    /// A grid from already aligned values; those that are not finite (a
    /// `histogram_quantile` of +Inf) become `NaN`, none.
    pub fn from_values(start_ms: i64, step_ms: i64, mut values: Vec<f64>) -> Self {
        for v in values.iter_mut().filter(|v| !v.is_finite()) {
            *v = f64::NAN;
        }
        let offset = values
            .iter()
            .copied()
            .find(|v| v.is_finite())
            .unwrap_or(0.0);
        // Written in place from locals: pushed one by one, the sums went
        // through memory on every row (a push's growth check may call
        // out), a third of a large instant score's planning.
        let points = values.len() + 1;
        let mut prefix = Prefix {
            sum: vec![0.0; points],
            square: vec![0.0; points],
            count: vec![0; points],
        };
        let (mut sum, mut square, mut count) = (0.0, 0.0, 0u32);
        for (i, v) in values.iter().enumerate() {
            if v.is_finite() {
                let d = v - offset;
                sum += d;
                square += d * d;
                count += 1;
            }
            prefix.sum[i + 1] = sum;
            prefix.square[i + 1] = square;
            prefix.count[i + 1] = count;
        }
        Self {
            start_ms,
            step_ms,
            values,
            prefix,
            offset,
        }
    }

    /// Timestamp of grid point `i`.
    pub fn time(&self, i: usize) -> i64 {
        self.span().time(i)
    }

    /// The grid index of timestamp `t`, if `t` is a grid point inside the grid.
    pub fn index(&self, t: i64) -> Option<usize> {
        self.span().index(t)
    }

    /// The grid's points without their values.
    pub fn span(&self) -> Span {
        Span {
            start_ms: self.start_ms,
            step_ms: self.step_ms,
            points: self.values.len(),
        }
    }

    /// The spread of the present values in `[from, to)` as the forecasts
    /// normalise by it: their standard deviation, held off zero for flat
    /// series; `None` without two values.
    pub fn spread(&self, from: usize, to: usize) -> Option<f64> {
        self.mean_and_spread(from, to).map(|(_, spread)| spread)
    }

    /// The mean of the present values in `[from, to)` and their
    /// [`spread`](Self::spread).
    fn mean_and_spread(&self, from: usize, to: usize) -> Option<(f64, f64)> {
        let (mean, std, count) = self.stats(from, to)?;
        (count >= 2).then(|| (mean, floor_scale(std, mean)))
    }

    /// How many values in `[from, to)` are present.
    pub fn present(&self, from: usize, to: usize) -> u32 {
        self.prefix.count[to] - self.prefix.count[from]
    }

    /// Each point's [`spread`](Self::spread) over the `span` points
    /// before it (fewer near the start), from point `from` on; `NaN`
    /// where there is none and before `from`. The same values as that
    /// many calls of `spread`, at a fraction of the cost: an instant
    /// anomaly score reads thousands of them per series.
    pub fn spreads(&self, span: usize, from: usize) -> Vec<f64> {
        let points = self.values.len();
        let mut spreads = vec![f64::NAN; points];
        // Points whose span is cut by the grid's start, one at a time.
        let whole = from.max(span).min(points);
        for (i, spread) in spreads.iter_mut().enumerate().take(whole).skip(from) {
            *spread = self.spread(0, i).unwrap_or(f64::NAN);
        }
        // The rest with the arithmetic of `mean_and_spread`, without
        // branches: each column in lock step with itself `span`
        // points earlier.
        let (now, then) = (
            whole..points,
            whole.saturating_sub(span)..points.saturating_sub(span),
        );
        let sums = &self.prefix;
        let (sum, sum_before) = (&sums.sum[now.clone()], &sums.sum[then.clone()]);
        let (square, square_before) = (&sums.square[now.clone()], &sums.square[then.clone()]);
        let (count, count_before) = (&sums.count[now], &sums.count[then]);
        for (k, spread) in spreads[whole..].iter_mut().enumerate() {
            let n = count[k] - count_before[k];
            let (mean, std) = moments(sum[k] - sum_before[k], square[k] - square_before[k], n);
            let floored = floor_scale(std, mean + self.offset);
            *spread = if n >= 2 { floored } else { f64::NAN };
        }
        spreads
    }

    /// Mean and standard deviation of the present values in `[from, to)`.
    fn stats(&self, from: usize, to: usize) -> Option<(f64, f64, u32)> {
        let n = self.present(from, to);
        if n == 0 {
            return None;
        }
        let sums = &self.prefix;
        let (mean, std) = moments(
            sums.sum[to] - sums.sum[from],
            sums.square[to] - sums.square[from],
            n,
        );
        Some((mean + self.offset, std, n))
    }

    /// Grid index of the start of the pass that the window ending at
    /// `end` reads: the first multiple of the segment (counted from the
    /// epoch) that leaves the window at most `shape.window` points; `None`
    /// before the grid.
    pub fn pass_start(&self, end: usize, shape: &Shape) -> Option<usize> {
        let origin = self.start_ms.div_euclid(self.step_ms);
        let earliest = origin + end as i64 + 1 - shape.window as i64;
        let segment = shape.segment.max(1) as i64;
        let start = -(-earliest).div_euclid(segment) * segment;
        usize::try_from(start - origin).ok()
    }

    /// Mean and scale that the pass starting at `start` is normalised by:
    /// the trailing statistics at its first forecast point, which every
    /// forecast of the pass may read. `None` without two values there.
    fn normalisation(&self, start: usize, shape: &Shape) -> Option<(f64, f64)> {
        let first_anchor = start + shape.window - shape.segment.clamp(1, shape.window);
        if first_anchor >= self.values.len() {
            return None;
        }
        let norm_from = (first_anchor + 1).saturating_sub(shape.norm_points);
        self.mean_and_spread(norm_from, first_anchor + 1)
    }

    /// The pass over `points` grid points from `start` (a pass start), or
    /// `None` when they hold no sample at all or run past the grid.
    pub fn pass(&self, start: usize, points: usize, shape: &Shape) -> Option<Pass> {
        let (mean, scale) = self.normalisation(start, shape)?;
        let values = self.values.get(start..start + points)?;
        // Gaps take the previous value; leading gaps the first present one.
        let mut carried = values.iter().copied().find(|v| v.is_finite())?;
        let mut features = Vec::with_capacity(points * FEATURES);
        for (i, &v) in (start..).zip(values) {
            if v.is_finite() {
                carried = v;
            }
            let z = ((carried - mean) / scale).clamp(-CLIP, CLIP);
            let t = self.time(i);
            let day = std::f64::consts::TAU * calendar::day_fraction(t);
            let (week_sin, week_cos) = if shape.weekly {
                let week = std::f64::consts::TAU * calendar::week_fraction(t);
                (week.sin(), week.cos())
            } else {
                (0.0, 0.0)
            };
            features.extend([z, day.sin(), day.cos(), week_sin, week_cos].map(|f| f as f32));
        }
        Some(Pass { start, features })
    }

    /// The window ending at grid index `end`, or `None` when `end` holds no
    /// sample or is too early. A grid point holds a sample at most the
    /// staleness old, so a series that stopped reporting gets no forecast
    /// from history gone stale: its forecasts end with it, as Prometheus
    /// stops showing the series itself.
    pub fn window(&self, end: usize, shape: &Shape) -> Option<Window> {
        let last = *self.values.get(end)?;
        if !last.is_finite() {
            return None;
        }
        let start = self.pass_start(end, shape)?;
        let (_, scale) = self.normalisation(start, shape)?;
        let day = (DAY_MS / self.step_ms) as usize;
        let value = |j: usize| self.values.get(j).copied().filter(|v| v.is_finite());
        let seasonal = (1..=shape.horizon_steps)
            .map(|k| {
                let change = (k <= day && end >= day)
                    .then(|| Some((value(end + k - day)? - value(end - day)?) / scale))
                    .flatten();
                change.unwrap_or(0.0).clamp(-CLIP, CLIP) as f32
            })
            .collect();
        Some(Window {
            start,
            end,
            last,
            scale,
            seasonal,
        })
    }

    /// Training targets of `window`: the normalised change from its last
    /// value at each step `1..=K` ahead, `NaN` where the grid has no value.
    pub fn targets(&self, window: &Window, horizon_steps: usize) -> Vec<f32> {
        (1..=horizon_steps)
            .map(|k| {
                self.values
                    .get(window.end + k)
                    .map_or(f32::NAN, |v| ((v - window.last) / window.scale) as f32)
            })
            .collect()
    }
}

/// Mean and standard deviation of `n` values from their sum and sum of
/// squares (less the grid's offset): the one formula of
/// [`Grid::stats`] and [`Grid::spreads`], inlined so that the latter's
/// loop still vectorises.
#[inline(always)]
fn moments(sum: f64, square: f64, n: u32) -> (f64, f64) {
    let mean = sum / f64::from(n);
    let var = (square / f64::from(n) - mean * mean).max(0.0);
    (mean, var.sqrt())
}

/// A usable normalisation scale even for flat series: a constant series
/// must not turn its first change into an infinite input.
fn floor_scale(std: f64, mean: f64) -> f64 {
    std.max(1e-3 * mean.abs()).max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed-length windows: a segment of one point.
    const SHAPE: Shape = Shape {
        window: 3,
        segment: 1,
        horizon_steps: 2,
        norm_points: 4,
        weekly: true,
    };

    #[test]
    fn steps_and_shapes() {
        assert_eq!(
            choose_step(Some(300_000), Some(60_000), 21_600_000),
            300_000
        );
        assert_eq!(choose_step(None, Some(59_800), 21_600_000), 60_000);
        assert_eq!(choose_step(None, None, 3_600_000), 60_000);
        // 15 s scrapes and a 6 h horizon: 1,441 steps → raised to 45 s.
        assert_eq!(choose_step(None, Some(15_000), 21_600_000), 45_000);
        let s = Shape::for_step(60_000, 1_800_000, 21_600_000, 7 * DAY_MS);
        assert_eq!(
            (
                s.window,
                s.segment,
                s.horizon_steps,
                s.norm_points,
                s.weekly
            ),
            (30, 15, 361, 1440, false)
        );
        assert!(Shape::for_step(60_000, 1_800_000, 21_600_000, 28 * DAY_MS).weekly);
    }

    #[test]
    fn resample_takes_latest_fresh_sample() {
        let samples = [(10_000, 1.0), (65_000, 2.0), (70_000, 3.0), (400_000, 4.0)];
        let g = Grid::resample(&samples, 0, 420_000, 60_000, 300_000);
        assert_eq!(g.start_ms, 0);
        let v: Vec<String> = g.values.iter().map(|v| format!("{v}")).collect();
        // 0: nothing yet; 60s: 1.0; 120s..300s: 3.0 (from 70s); 360s: 3.0 is
        // 290s old; 420s: 4.0.
        assert_eq!(v, ["NaN", "1", "3", "3", "3", "3", "3", "4"]);
    }

    /// A sample of +Inf (or NaN) is no sample, whichever way the grid is
    /// built: neither a value nor a term of the spreads.
    #[test]
    fn values_that_are_not_finite_are_none() {
        let samples = [(0, 1.0), (60_000, f64::INFINITY), (120_000, 3.0)];
        let resampled = Grid::resample(&samples, 0, 120_000, 60_000, 300_000);
        let direct = Grid::from_values(0, 60_000, vec![1.0, f64::NEG_INFINITY, 3.0]);
        for g in [resampled, direct] {
            assert!(g.values[1].is_nan(), "{:?}", g.values);
            assert_eq!(g.present(0, 3), 2);
            assert_eq!(g.spread(0, 3), Some(1.0));
        }
    }

    /// The spreads of a run of points, computed in lock step, are exactly
    /// those of one call each: gaps, a constant stretch (the floor), spans
    /// cut by the grid's start, and runs starting anywhere.
    #[test]
    fn spreads_of_a_run_are_those_of_one_span_each() {
        let values: Vec<f64> = (0..40)
            .map(|i| match i {
                3 | 4 | 17 => f64::NAN,
                20..=27 => 5.0,
                _ => 100.0 + (i as f64 * 0.7).sin() * 3.0,
            })
            .collect();
        let g = Grid::from_values(0, 60_000, values);
        for span in [1, 2, 6, 39, 40, 60] {
            for from in [0, 1, 5, 6, 39, 40] {
                let run = g.spreads(span, from);
                assert_eq!(run.len(), 40);
                for (i, &s) in run.iter().enumerate() {
                    let one = g.spread(i.saturating_sub(span), i);
                    let expected = if i < from { None } else { one };
                    assert_eq!(
                        s.is_nan(),
                        expected.is_none(),
                        "span {span} from {from} row {i}"
                    );
                    if let Some(e) = expected {
                        assert_eq!(s.to_bits(), e.to_bits(), "span {span} from {from} row {i}");
                    }
                }
            }
        }
        assert!(g.spreads(6, 0)[26] > 0.0, "a constant stretch is floored");
    }

    #[test]
    fn stale_samples_leave_gaps() {
        let g = Grid::resample(&[(0, 1.0)], 0, 600_000, 60_000, 300_000);
        assert_eq!(g.values.iter().filter(|v| v.is_finite()).count(), 5);
    }

    #[test]
    fn windows_normalise_by_trailing_statistics() {
        let g = Grid::from_values(0, 60_000, vec![1.0, 3.0, 1.0, 3.0, 5.0, 7.0]);
        let w = g.window(4, &SHAPE).unwrap();
        // Trailing 4 points: 3, 1, 3, 5 → mean 3, std sqrt(2).
        assert!((w.scale - 2f64.sqrt()).abs() < 1e-9);
        assert_eq!(w.last, 5.0);
        let pass = g.pass(w.start, w.points(), &SHAPE).unwrap();
        let z: Vec<f32> = pass.features.chunks(FEATURES).map(|f| f[0]).collect();
        let s = 2f32.sqrt();
        assert!(
            (z[0] + 2.0 / s).abs() < 1e-5 && z[1].abs() < 1e-6 && (z[2] - 2.0 / s).abs() < 1e-5
        );
        let t = g.targets(&w, 2);
        assert!((t[0] - 2.0 / s).abs() < 1e-5);
        assert!(t[1].is_nan());
    }

    /// A gap inside a window repeats the value before it; a window must end
    /// on a sample (a point without one is stale: no forecast from it).
    #[test]
    fn windows_carry_values_over_gaps_and_end_on_a_sample() {
        let nan = f64::NAN;
        let g = Grid::from_values(0, 60_000, vec![1.0, 2.0, nan, 4.0, nan, nan, nan, nan]);
        let shape = Shape {
            norm_points: 8,
            ..SHAPE
        };
        let w = g.window(3, &shape).unwrap();
        assert_eq!((w.start, w.last), (1, 4.0));
        let pass = g.pass(w.start, w.points(), &shape).unwrap();
        let z: Vec<f32> = pass.features.chunks(FEATURES).map(|f| f[0]).collect();
        assert_eq!(z[0], z[1], "a gap repeats the previous value");
        assert!(g.window(1, &shape).is_none(), "window longer than history");
        for stale in [2, 4, 7] {
            assert!(g.window(stale, &shape).is_none(), "no sample at {stale}");
        }
    }

    /// Windows of 4 points at most, passes every 2: the forecasts at two
    /// consecutive points read one pass, normalised alike, at different
    /// steps; the cut follows absolute time, not where the grid starts.
    #[test]
    fn consecutive_windows_share_a_pass() {
        let shape = Shape {
            window: 4,
            segment: 2,
            horizon_steps: 2,
            norm_points: 4,
            weekly: false,
        };
        let values: Vec<f64> = (0..12).map(|i| f64::from(i * i % 7)).collect();
        let g = Grid::from_values(0, 60_000, values.clone());
        let spans: Vec<(usize, usize)> = (2..10)
            .map(|end| {
                let w = g.window(end, &shape).unwrap();
                (w.start, w.points())
            })
            .collect();
        assert_eq!(
            spans,
            [
                (0, 3),
                (0, 4),
                (2, 3),
                (2, 4),
                (4, 3),
                (4, 4),
                (6, 3),
                (6, 4)
            ]
        );
        assert!(g.window(1, &shape).is_none(), "window before the grid");
        let (a, b) = (g.window(6, &shape).unwrap(), g.window(7, &shape).unwrap());
        assert_eq!(a.scale, b.scale);
        let pass = g.pass(4, 4, &shape).unwrap();
        assert_eq!(
            g.pass(4, 3, &shape).unwrap().features,
            pass.features[..3 * FEATURES]
        );
        assert_ne!(a.digest(&pass), b.digest(&pass));
        // The same points on a grid that starts one step later.
        let later = Grid::from_values(60_000, 60_000, values[1..].to_vec());
        let w = later.window(6, &shape).unwrap();
        assert_eq!((w.start, w.points(), w.scale), (3, 4, b.scale));
    }
}
