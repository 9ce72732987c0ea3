//! The anomaly score: how unusual a series' latest sample is, as one
//! number an alert can page on (`anomaly_score_<m> > 1`).
//!
//! Why not the plain one-step residual over its typical size: judged point
//! by point against a fixed scale, a series whose model is worse than
//! average pages all day, every row of a long incident pages again, a spike
//! that comes back every day at about the same time pages every day, and a
//! series with almost no noise pages on rounding. Measured on NAB's
//! protocol (`promcast eval --nab-results`, figures and the ablation in
//! BENCHMARKS.md), each step below earns its place.
//!
//! The score at `t` reads *rows*: `t` and the model steps before it, each
//! with the latest sample there. Only `t` itself needs the model: its
//! residual against the forecast made one step earlier. Everything the
//! score remembers is computed from the samples alone, so a query costs
//! one forecast per series and time asked however long the memory, and
//! arithmetic over the samples (BENCHMARKS.md, "Serving cost of the
//! memory").
//!
//! 1. **Rank**: a residual against the largest *change* of the
//!    [`RANK_ROWS`] rows before it: a row's change is its step from the
//!    row before less the same step a day earlier (the seasonal-naive
//!    residual), measured in that row's daily spread, so that the memory
//!    reads a busy day's changes at that day's scale. It scores 1 at
//!    1 / [`RANK_SHARE`] times that largest change, or that many one-step
//!    errors of the predictor where the recent changes were smaller. What
//!    is unusual is what this series has not done lately, whatever its
//!    model's typical error.
//! 2. **Range guard**: a sample outside the range of the [`GUARD_ROWS`]
//!    samples before it by more than [`GUARD_MARGIN`] of that range scores
//!    by how far, 1 at [`GUARD_SCALE`]. A new level is unusual even where
//!    the forecast follows it at once. A range narrower than [`MIN_SIGMA`]
//!    daily spreads counts as that wide: a constant series that moves
//!    scores high, not infinite (which no query could serve).
//! 3. **Novelty** ([`novelty`]): how unlike every shape of the recent
//!    past the shape of the last samples is, ranked against the largest
//!    such novelty of the [`RANK_ROWS`] rows before (or a day, if more).
//!    A series that changes its rhythm without any one sample out of the
//!    ordinary is unusual too.
//! 4. **Rest**: a row's level (the largest of the three) counts only where it
//!    exceeds the levels of the [`REST`] rows before it and of the rows
//!    within [`SEASON_SPREAD`] of the same time a day earlier, each of
//!    those ranked by its own change (the rows a day earlier without their
//!    novelty: a shape is matched against the day before already);
//!    elsewhere the score is 0. An incident scores when it starts or gets
//!    worse, not on every row while it lasts, and a daily spike that came
//!    yesterday does not page today. Where a day is more rows than the
//!    guard reads (a step under 200 seconds), the level must exceed those a
//!    day earlier [`REPEAT_MARGIN`] times over: yesterday's run of a daily
//!    job is then out of the guard's reach, so today's leaves its range as
//!    yesterday's did, at about the same level. So an alert on the score
//!    fires once per incident, as CAD OSE, KNN CAD and ARTime suppress
//!    after an alarm; `keep_firing_for` holds it open
//!    (see `deploy/prometheus/rules`).
//!
//! The memory is finite on purpose ([`memory`]): the score at `t` depends
//! on no row older than that, so every query, range or instant, remote
//! read or `/federate`, gets the same value at `t` as `promcast eval` does
//! from the whole file (to rounding: the daily spreads' running sums start
//! where a query's rows do).

use crate::model::Grid;
use novelty::Novelty;

pub mod novelty;

/// Rows a residual is ranked against.
pub const RANK_ROWS: usize = 1000;
/// Fewest changes among them for a rank.
pub const MIN_RANK_ROWS: usize = 100;
/// The rank part is `RANK_SHARE · |r| / largest`: 1 at 1/0.7 times the
/// largest recent change.
pub const RANK_SHARE: f64 = 0.7;
/// Samples whose range the guard checks a sample against: a day and a
/// half at a 5-minute step, so that a spike like one a day and some
/// hours earlier is not new (over a day: 87 false alarms at `> 1` on NAB
/// instead of 67, BENCHMARKS.md).
pub const GUARD_ROWS: usize = 432;
/// Fewest samples among them for a guard.
pub const MIN_GUARD_ROWS: usize = 50;
/// A sample this share of the range outside it is not yet unusual.
pub const GUARD_MARGIN: f64 = 0.1;
/// A sample this share of the range outside it scores 1.
pub const GUARD_SCALE: f64 = 0.272;
/// Rows before `t` whose levels `t`'s must exceed.
pub const REST: usize = 24;
/// Rows either side of `t − 1 day` whose levels `t`'s must exceed.
pub const SEASON_SPREAD: usize = 12;
/// Where a day is more rows than the guard reads, how many times the
/// levels of the rows a day earlier a row's level must exceed: a daily
/// job is then out of the guard's range every day, at about yesterday's
/// level, and a plain "exceeds" would page on every other day.
pub const REPEAT_MARGIN: f64 = 1.5;
/// Floor of the one-step error, of the largest change a change is ranked
/// against, and of the range the guard measures by, in units of the
/// series' daily spread (the normalisation scale of its forecasts).
pub const MIN_SIGMA: f64 = 0.05;

/// A row's one-step residual, in source units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Residual {
    /// The sample less its forecast.
    pub value: f64,
    /// The predictor's one-step error there ([`sigma`] times the
    /// normalisation scale).
    pub error: f64,
}

/// The one-step error a residual is measured in: the predictor's, held at
/// [`MIN_SIGMA`] from below.
pub fn sigma(one_step_sigma: f64) -> f64 {
    one_step_sigma.max(MIN_SIGMA)
}

/// Rows the score at `t` reads (`t` included) on a grid of `rows_per_day`
/// steps a day: the rows it rests against, the changes each of them is
/// ranked against, and the day before each change; or, if more, the
/// shapes its novelty parts read ([`novelty::reach`]).
pub fn memory(rows_per_day: usize) -> usize {
    let ranked = RANK_ROWS.max(GUARD_ROWS) + rows_per_day + 2;
    let rested = REST.max(rows_per_day + SEASON_SPREAD) + ranked;
    rested.max(REST + novelty::reach(rows_per_day))
}

/// What the score at one row knows before its residual is known, from
/// the samples alone.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// The largest recent change, in source units at this row's spread.
    largest: Option<f64>,
    /// The row's range guard.
    guard: Option<f64>,
    /// The row's novelty part.
    novelty: Option<f64>,
    /// The highest level among the rows it rests against.
    before: f64,
}

impl Context {
    /// The score given the row's residual, if it has one; `None` where
    /// there is neither a residual to rank nor a sample to guard.
    pub fn score(&self, residual: Option<Residual>) -> Option<f64> {
        let rank = residual
            .zip(self.largest)
            .map(|(r, largest)| RANK_SHARE * r.value.abs() / largest.max(r.error));
        let level = either(either(rank, self.guard), self.novelty)?;
        Some(if level > self.before { level } else { 0.0 })
    }
}

/// The contexts of the rows `asked` (indices into `values`: the samples
/// at consecutive model steps, oldest first, `NaN` where none, the first
/// of them `origin` steps after the epoch), each from the rows at or
/// before it. A row with at least [`memory`] rows before it scores as it
/// would with any longer history. A sample that is not finite (a
/// `histogram_quantile` of +Inf) counts as none, as the forecasts count
/// it.
pub fn contexts(
    values: Vec<f64>,
    rows_per_day: usize,
    origin: i64,
    asked: &[usize],
) -> Vec<Context> {
    let Some(&first) = asked.iter().min() else {
        return Vec::new();
    };
    let rested = REST.max(rows_per_day + SEASON_SPREAD);
    let memory = Memory::new(values, rows_per_day, first.saturating_sub(rested));
    let novelty = Novelty::new(
        &memory.grid,
        rows_per_day,
        origin,
        first.saturating_sub(REST),
    );
    let repeat = if rows_per_day > GUARD_ROWS {
        REPEAT_MARGIN
    } else {
        1.0
    };
    // A range query's rows rest against mostly the same rows: each is
    // ranked once.
    let kept = if asked.len() > 1 {
        memory.grid.values.len()
    } else {
        0
    };
    let mut remembered: Vec<Option<Option<f64>>> = vec![None; kept];
    let mut pointwise = |j: usize| match remembered.get_mut(j) {
        Some(kept) => *kept.get_or_insert_with(|| memory.remembered(j)),
        None => memory.remembered(j),
    };
    asked
        .iter()
        .map(|&i| {
            let recent = i.saturating_sub(REST)..i;
            let yesterday = i.checked_sub(rows_per_day).map_or(0..0, |d| {
                d.saturating_sub(SEASON_SPREAD)..(d + SEASON_SPREAD + 1).min(i)
            });
            let before = recent
                .filter_map(|j| either(pointwise(j), novelty.part(j)))
                .fold(0.0, f64::max);
            let before = yesterday
                .filter_map(&mut pointwise)
                .map(|level| level * repeat)
                .fold(before, f64::max);
            Context {
                largest: memory.largest(i).zip(memory.spread(i)).map(|(m, s)| m * s),
                guard: memory.guard(i),
                novelty: novelty.part(i),
                before,
            }
        })
        .collect()
}

/// The served score as a probability-like value in `[0, 1)`, for NAB's
/// results files: `s / (1 + s)`, monotone, with the alarm threshold
/// `s = 1` at 0.5.
pub fn unit_interval(score: f64) -> f64 {
    let s = score.max(0.0);
    s / (1.0 + s)
}

/// What the score knows of the rows from the samples alone, computed
/// where some asked row reads it: an instant score reads a few dozen
/// rows' levels, each over hundreds of rows before it.
struct Memory {
    /// Each row's sample (`NaN` where none or not finite), with the
    /// running sums that give the spread of any span of them.
    grid: Grid,
    /// Each row's daily spread: the spread of the day of samples before it
    /// as the forecasts normalise by it; `NaN` where there are fewer than
    /// two, or before the first row any asked row ranks against.
    spreads: Vec<f64>,
    /// Each row's change, in its daily spread (`NaN` where none, or before
    /// the first row any asked row ranks against).
    changes: Vec<f64>,
    changes_before: Vec<u32>,
    /// The largest change, and the highest and lowest sample, of each
    /// block of [`BLOCK`] rows.
    block_largest: Vec<f64>,
    block_highest: Vec<f64>,
    block_lowest: Vec<f64>,
}

/// Rows per block of changes, for the largest over a span.
const BLOCK: usize = 32;

impl Memory {
    /// The memory of `values` (`NaN` where none), with changes from the
    /// rows that the rows from `from` on rank against.
    fn new(values: Vec<f64>, rows_per_day: usize, from: usize) -> Self {
        // Only spans of rows are read off the grid: its times do not matter.
        // It holds no +Inf, which would otherwise be the largest change and
        // the top of the range for the whole memory.
        let grid = Grid::from_values(0, 1, values);
        let values = &grid.values;
        let n = values.len();
        let changes_from = from.saturating_sub(RANK_ROWS).min(n);
        let guards_from = from.saturating_sub(GUARD_ROWS);
        let spreads = grid.spreads(rows_per_day, changes_from);
        let mut changes = vec![f64::NAN; n];
        for i in changes_from.max(1)..n {
            let step = values[i] - values[i - 1];
            let yesterday = match i.checked_sub(rows_per_day + 1) {
                Some(d) => values[d + 1] - values[d],
                None => f64::NAN,
            };
            let yesterday = if yesterday.is_nan() { 0.0 } else { yesterday };
            changes[i] = (step - yesterday).abs() / spreads[i];
        }
        let mut changes_before = vec![0u32; n + 1];
        for i in 0..n {
            changes_before[i + 1] = changes_before[i] + u32::from(!changes[i].is_nan());
        }
        Self {
            block_largest: block_extremes(&changes, changes_from, f64::max),
            block_highest: block_extremes(values, guards_from, f64::max),
            block_lowest: block_extremes(values, guards_from, f64::min),
            grid,
            spreads,
            changes,
            changes_before,
        }
    }

    /// Row `i`'s daily spread, if it has one.
    fn spread(&self, i: usize) -> Option<f64> {
        present(self.spreads[i])
    }

    /// The largest change among the [`RANK_ROWS`] rows before row `i`, if
    /// at least [`MIN_RANK_ROWS`] of them have one.
    fn largest(&self, i: usize) -> Option<f64> {
        let from = i.saturating_sub(RANK_ROWS);
        if self.changes_before[i] - self.changes_before[from] < MIN_RANK_ROWS as u32 {
            return None;
        }
        Some(extreme(
            &self.changes,
            &self.block_largest,
            from..i,
            f64::max,
        ))
    }

    /// The point-wise level of an earlier row `i` as the score remembers
    /// it: its change ranked the same way as a residual, or its guard.
    fn remembered(&self, i: usize) -> Option<f64> {
        let rank = present(self.changes[i])
            .zip(self.largest(i))
            .map(|(c, m)| RANK_SHARE * c / m.max(MIN_SIGMA));
        either(rank, self.guard(i))
    }

    /// How far the sample at row `i` lies outside the range of the
    /// [`GUARD_ROWS`] samples before it, the range held at [`MIN_SIGMA`]
    /// daily spreads from below; none without enough samples or a daily
    /// spread to hold it by.
    fn guard(&self, i: usize) -> Option<f64> {
        let x = present(self.grid.values[i])?;
        let from = i.saturating_sub(GUARD_ROWS);
        if (self.grid.present(from, i) as usize) < MIN_GUARD_ROWS {
            return None;
        }
        let floor = MIN_SIGMA * self.spread(i)?;
        let hi = extreme(&self.grid.values, &self.block_highest, from..i, f64::max);
        let lo = extreme(&self.grid.values, &self.block_lowest, from..i, f64::min);
        let outside = (x - hi).max(lo - x).max(0.0) / (hi - lo).max(floor);
        Some(if outside > GUARD_MARGIN {
            outside / GUARD_SCALE
        } else {
            0.0
        })
    }
}

/// The extreme (by `pick`, which ignores `NaN`) of `values[range]`, read
/// whole blocks at a time off `blocks` (each block of [`BLOCK`] values'
/// own extreme).
fn extreme(
    values: &[f64],
    blocks: &[f64],
    range: std::ops::Range<usize>,
    pick: impl Fn(f64, f64) -> f64 + Copy,
) -> f64 {
    let (first, last) = (range.start.div_ceil(BLOCK), range.end / BLOCK);
    if first >= last {
        return fold(&values[range], pick);
    }
    pick(
        pick(
            fold(&values[range.start..first * BLOCK], pick),
            fold(&blocks[first..last], pick),
        ),
        fold(&values[last * BLOCK..range.end], pick),
    )
}

/// The extreme (by `pick`) of each block of [`BLOCK`] values, from the
/// block holding `from` on (`NaN` before: no asked row reads them).
fn block_extremes(values: &[f64], from: usize, pick: impl Fn(f64, f64) -> f64 + Copy) -> Vec<f64> {
    let skipped = from / BLOCK;
    let mut blocks = vec![f64::NAN; skipped];
    blocks.extend(
        values[(skipped * BLOCK).min(values.len())..]
            .chunks(BLOCK)
            .map(|b| fold(b, pick)),
    );
    blocks
}

/// The extreme (by `pick`, which ignores `NaN`) of `values`, in four
/// independent lanes so that the compiler can keep them in one register.
fn fold(values: &[f64], pick: impl Fn(f64, f64) -> f64 + Copy) -> f64 {
    let mut lanes = [f64::NAN; 4];
    let mut quads = values.chunks_exact(4);
    for quad in &mut quads {
        for (lane, &v) in lanes.iter_mut().zip(quad) {
            *lane = pick(*lane, v);
        }
    }
    let rest = quads.remainder().iter().copied().fold(f64::NAN, pick);
    lanes.into_iter().fold(rest, pick)
}

/// `x`, unless it is `NaN` (none).
fn present(x: f64) -> Option<f64> {
    (!x.is_nan()).then_some(x)
}

/// The larger of two optional levels.
fn either(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
