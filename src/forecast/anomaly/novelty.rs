//! The score's novelty part: how unlike every recent shape of the series
//! the shape of its last [`WINDOW`] samples is, in form, level and size.
//!
//! Why: the rank and the guard judge one sample at a time, so a series
//! that changes its rhythm (spikes coming twice as often, a holiday's
//! flat morning, a daily cycle that stops or swings wider, a level held
//! where the series has not been lately) without any one sample being
//! out of the ordinary never scores. A shape's distance to its nearest
//! match among the shapes before it (a left matrix profile, as discord
//! detectors use) is high exactly there. It is ranked as the rank part
//! ranks residuals: against the largest novelty of the [`RANK_ROWS`] rows
//! before (a day, where that is more), so a series whose shapes never
//! repeat closely does not page for that.
//!
//! Measured and matched only every [`STRIDE`] model steps, counted from
//! the epoch so that every query measures the same rows: that costs
//! 1/256 of a full matrix profile and kept its gain on NAB
//! (BENCHMARKS.md). A row between two of those reads the novelty of the
//! one before it. An instant score needs only the largest of its recent
//! novelties, which a search that gives up on a shape at its first close
//! match finds at a fraction of the cost of each novelty, exactly.

use std::cell::OnceCell;
use std::ops::{Range, RangeInclusive};

use super::{MIN_RANK_ROWS, MIN_SIGMA, RANK_ROWS, SEASON_SPREAD};
use crate::model::Grid;

/// Samples in a shape.
pub const WINDOW: usize = 24;
/// Model steps between the rows whose shapes are measured and matched.
pub const STRIDE: usize = 16;
/// The part is `SHARE · novelty / largest`: 1 at 1/0.85 times the largest
/// novelty of the [`RANK_ROWS`] rows before, or of a day if more (or of
/// [`MIN_SIGMA`] daily spreads, so that a series that repeats itself
/// exactly does not page on rounding).
pub const SHARE: f64 = 0.85;
/// Fewest earlier shapes for a novelty, and fewest novelties for the
/// largest: as many rows as the rank part needs.
const MIN_SHAPES: usize = MIN_RANK_ROWS / STRIDE;
/// Strides from a shape back to the latest one it may match: the shapes
/// must not overlap.
const NEAREST: usize = WINDOW.div_ceil(STRIDE);
/// Strides in the [`RANK_ROWS`] rows.
const RANKED: usize = RANK_ROWS / STRIDE;
/// Strides from a shape back to the oldest shape it is matched against,
/// and to the oldest novelty it is ranked against: the [`RANK_ROWS`] rows
/// before, or a day and [`SEASON_SPREAD`] rows if more. Why the day: at a
/// 1-minute step 1,000 rows are 17 hours, so a daily pattern would never
/// meet yesterday's (it would be new every day), and a shape met only
/// once before (today's run of a daily job against yesterday's) would be
/// ranked against novelties that never include yesterday's, its equal.
const fn lookback(rows_per_day: usize) -> usize {
    let day = (rows_per_day + SEASON_SPREAD).div_ceil(STRIDE);
    if day > RANKED { day } else { RANKED }
}

/// Rows before the asked rows that the novelty part's shapes read: back
/// to the oldest shape an asked row's largest novelty matches against.
/// (The daily spread that floors a part is read at measured rows near the
/// asked ones, well inside what the rank reads.)
pub const fn reach(rows_per_day: usize) -> usize {
    STRIDE - 1 + 2 * lookback(rows_per_day) * STRIDE + WINDOW - 1
}

/// The novelty part of every row from some row on.
pub struct Novelty {
    /// The part at each measured row from the first that a row from
    /// `from` reads (`NaN` where none), one per [`STRIDE`] rows.
    parts: Vec<f64>,
    /// The row of `parts[0]`.
    first: usize,
}

impl Novelty {
    /// The novelty parts that rows from `from` on read, on `grid`'s rows
    /// (consecutive model steps, the first of them `origin` steps after
    /// the epoch), with `rows_per_day` rows a day.
    pub fn new(grid: &Grid, rows_per_day: usize, origin: i64, from: usize) -> Self {
        let offset = (-origin).rem_euclid(STRIDE as i64) as usize;
        // Measured rows are offset + k · STRIDE: k0 is the first that a
        // row from `from` reads, `last` the last.
        let measured = |row: usize| row.checked_sub(offset).map(|d| d / STRIDE);
        let Some(last) = grid.values.len().checked_sub(1).and_then(measured) else {
            return Self {
                parts: Vec::new(),
                first: 0,
            };
        };
        let k0 = measured(from).unwrap_or(0);
        let lookback = lookback(rows_per_day);
        let shapes = Shapes::new(
            grid,
            rows_per_day,
            offset,
            k0.saturating_sub(2 * lookback),
            last,
        );
        let novelty_from = k0.saturating_sub(lookback);
        // The novelties that every part ranks against (an instant score's
        // few parts share all but a few): only their largest matters,
        // which costs far fewer distances than each of them. The others
        // matter only above it.
        let core = last.saturating_sub(lookback).max(novelty_from)..k0;
        let core_largest = shapes.largest(core.clone());
        let mut hint = None;
        let novelties: Vec<f64> = (novelty_from..=last)
            .map(|k| {
                if core.contains(&k) {
                    return f64::NAN;
                }
                let above = if k < k0 {
                    core_largest
                } else {
                    f64::NEG_INFINITY
                };
                let (novelty, next) = shapes.novelty_above(k, above, hint);
                hint = next;
                novelty.unwrap_or(f64::NAN)
            })
            .collect();
        let parts = (k0..=last)
            .map(|k| {
                let earlier = k.saturating_sub(lookback).max(novelty_from)..k;
                let count = earlier.clone().filter(|&j| shapes.has_novelty(j)).count();
                let novelty = novelties[k - novelty_from];
                if count < MIN_SHAPES || novelty.is_nan() {
                    return f64::NAN;
                }
                let Some(spread) = shapes.spread(k) else {
                    return f64::NAN;
                };
                let largest = novelties[earlier.start - novelty_from..earlier.end - novelty_from]
                    .iter()
                    .copied()
                    .fold(core_largest, f64::max);
                SHARE * novelty / largest.max(MIN_SIGMA * spread)
            })
            .collect();
        Self {
            parts,
            first: offset + k0 * STRIDE,
        }
    }

    /// The novelty part at row `i`: that of the latest measured row at or
    /// before it, if it has one.
    pub fn part(&self, i: usize) -> Option<f64> {
        let k = i.checked_sub(self.first)? / STRIDE;
        self.parts.get(k).copied().filter(|p| !p.is_nan())
    }
}

/// The shapes at the measured rows from some row on, by their index `k`
/// (measured row `offset + k · STRIDE`), each computed when first read.
struct Shapes<'a> {
    grid: &'a Grid,
    rows_per_day: usize,
    offset: usize,
    /// The index of the first shape.
    from: usize,
    shapes: Vec<OnceCell<Shape>>,
    /// How many shapes before each index are present.
    present_before: Vec<u32>,
}

impl<'a> Shapes<'a> {
    fn new(grid: &'a Grid, rows_per_day: usize, offset: usize, from: usize, last: usize) -> Self {
        let mut present_before = vec![0];
        for k in from..=last {
            let end = offset + k * STRIDE;
            let present =
                end + 1 >= WINDOW && grid.present(end + 1 - WINDOW, end + 1) as usize == WINDOW;
            present_before.push(present_before[k - from] + u32::from(present));
        }
        Self {
            grid,
            rows_per_day,
            offset,
            from,
            shapes: (from..=last).map(|_| OnceCell::new()).collect(),
            present_before,
        }
    }

    fn present(&self, k: usize) -> bool {
        self.present_before[k - self.from + 1] > self.present_before[k - self.from]
    }

    /// Shape `k`, which must be present.
    fn shape(&self, k: usize) -> &Shape {
        self.shapes[k - self.from].get_or_init(|| {
            shape(self.grid, self.offset + k * STRIDE).unwrap_or(Shape {
                mean: f64::NAN,
                centred: [f32::NAN; WINDOW],
            })
        })
    }

    /// The shapes that shape `k` is matched against, if it has enough of
    /// them for a novelty.
    fn earlier(&self, k: usize) -> Option<RangeInclusive<usize>> {
        let latest = k.checked_sub(NEAREST).filter(|&l| l >= self.from)?;
        let oldest = k.saturating_sub(lookback(self.rows_per_day)).max(self.from);
        let count =
            self.present_before[latest - self.from + 1] - self.present_before[oldest - self.from];
        (self.present(k) && count as usize >= MIN_SHAPES).then_some(oldest..=latest)
    }

    /// The daily spread before shape `k`: there is one wherever the shape
    /// is present and a day has two rows or more.
    fn spread(&self, k: usize) -> Option<f64> {
        let end = self.offset + k * STRIDE;
        self.grid.spread(end.saturating_sub(self.rows_per_day), end)
    }

    fn has_novelty(&self, k: usize) -> bool {
        self.earlier(k).is_some()
    }

    /// Shape `k`'s novelty (its distance to its nearest match, per
    /// sample) if it has one above `above`; with the match to try first
    /// for the next shape (the successor of this one's nearest found,
    /// which is usually close again). The search stops at the first
    /// match that shows the novelty is not above: the result is exactly
    /// what a full search gives.
    fn novelty_above(
        &self,
        k: usize,
        above: f64,
        hint: Option<usize>,
    ) -> (Option<f64>, Option<usize>) {
        let Some(earlier) = self.earlier(k) else {
            return (None, None);
        };
        let this = self.shape(k);
        let first = hint.filter(|j| earlier.contains(j));
        let mut nearest = (f64::INFINITY, None);
        for j in first.into_iter().chain(earlier.rev()) {
            if !self.present(j) {
                continue;
            }
            let d = distance(this, self.shape(j));
            if d < nearest.0 {
                nearest = (d, Some(j));
                if per_sample(d) <= above {
                    return (None, Some(j + 1));
                }
            }
        }
        let novelty = per_sample(nearest.0);
        (
            (novelty > above).then_some(novelty),
            nearest.1.map(|j| j + 1),
        )
    }

    /// The largest novelty of the shapes in `rows` (0 if none), exactly,
    /// at a fraction of the distances that every novelty costs: a shape's
    /// distance to the shape a day earlier bounds its novelty from above,
    /// so in the order of those bounds, the first shapes searched set a
    /// high largest early, and a shape whose bound is not above it is not
    /// searched at all (a search in row order met a new largest, and so a
    /// full search, every few shapes: about 2,000 distances a series at a
    /// 1-minute step instead of about 800).
    fn largest(&self, rows: Range<usize>) -> f64 {
        let day = (self.rows_per_day + STRIDE / 2) / STRIDE;
        let mut bounded: Vec<(f64, usize)> = rows
            .filter_map(|k| {
                let earlier = self.earlier(k)?;
                let bound = k
                    .checked_sub(day)
                    .filter(|j| earlier.contains(j) && self.present(*j))
                    .map_or(f64::INFINITY, |j| {
                        per_sample(distance(self.shape(k), self.shape(j)))
                    });
                Some((bound, k))
            })
            .collect();
        bounded.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let mut largest = 0.0;
        for (bound, k) in bounded {
            if bound <= largest {
                break;
            }
            if let (Some(novelty), _) = self.novelty_above(k, largest, None) {
                largest = novelty;
            }
        }
        largest
    }
}

/// A squared distance between shapes as a novelty: per sample, rooted.
fn per_sample(squared: f64) -> f64 {
    (squared / WINDOW as f64).sqrt()
}

/// A shape: [`WINDOW`] samples as they are, level and size included (a
/// shape that only moved, or only grew, is as new as one that changed its
/// form: measured on NAB, BENCHMARKS.md). Held as its mean and the samples
/// less it, in single precision, twice as many to a vector register, since
/// a shape's distances are most of an instant score's work: less their
/// mean, the samples of a series far from 0 keep their precision, and a
/// distance is off by about 1e-6 of the typical one, far below any that
/// matters.
struct Shape {
    mean: f64,
    centred: [f32; WINDOW],
}

/// The shape of the [`WINDOW`] samples ending at row `end`; none where a
/// sample is missing.
fn shape(grid: &Grid, end: usize) -> Option<Shape> {
    let start = (end + 1).checked_sub(WINDOW)?;
    let samples = &grid.values[start..=end];
    let mean = samples.iter().sum::<f64>() / WINDOW as f64;
    if mean.is_nan() {
        return None;
    }
    let mut centred = [0.0; WINDOW];
    for (c, v) in centred.iter_mut().zip(samples) {
        *c = (v - mean) as f32;
    }
    Some(Shape { mean, centred })
}

/// The squared distance between two shapes: that of their means, once per
/// sample, and that of their centred samples (the cross term of the two
/// is 0, as each shape's centred samples sum to 0), in eight independent
/// lanes so that the compiler can vectorise it.
#[inline]
fn distance(a: &Shape, b: &Shape) -> f64 {
    let mut lanes = [0.0f32; 8];
    for (qa, qb) in a.centred.chunks_exact(8).zip(b.centred.chunks_exact(8)) {
        for ((lane, x), y) in lanes.iter_mut().zip(qa).zip(qb) {
            *lane += (x - y) * (x - y);
        }
    }
    let [a0, a1, a2, a3, a4, a5, a6, a7] = lanes;
    let centred = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7));
    WINDOW as f64 * (a.mean - b.mean).powi(2) + f64::from(centred)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::anomaly::tests::uniform;

    const DAY: usize = 288;

    /// A daily cycle of `days` with noise from a fixed generator; from
    /// row `odd` on, for `len` rows, `change(row)` is added to it.
    fn cycle(days: usize, odd: usize, len: usize, change: fn(usize) -> f64) -> Grid {
        let mut noise = uniform(11);
        let values = (0..days * DAY)
            .map(|i| {
                let changed = if (odd..odd + len).contains(&i) {
                    change(i)
                } else {
                    0.0
                };
                100.0 + 50.0 * daily(i) + noise() + changed
            })
            .collect();
        Grid::from_values(0, 1, values)
    }

    fn daily(row: usize) -> f64 {
        (std::f64::consts::TAU * (row % DAY) as f64 / DAY as f64).sin()
    }

    /// A square wave of a period of 12 rows, within the cycle's range.
    fn square(row: usize) -> f64 {
        if (row / 6) % 2 == 1 { 20.0 } else { 0.0 }
    }

    /// Whether the novelty parts of the rows before a change of the cycle
    /// at row `odd` are all below 1, and some of those while it lasts
    /// above.
    fn novel_only_while(odd: usize, change: fn(usize) -> f64) {
        let grid = cycle(6, odd, 96, change);
        let novelty = Novelty::new(&grid, DAY, 0, 0);
        let parts = |rows: Range<usize>| rows.filter_map(|i| novelty.part(i)).collect::<Vec<_>>();
        let before = parts(3 * DAY..odd);
        assert!(before.len() > 100, "{}", before.len());
        assert!(before.iter().all(|&p| p < 1.0), "{before:?}");
        let during = parts(odd..odd + 96);
        assert!(during.iter().any(|&p| p > 1.0), "{during:?}");
    }

    #[test]
    fn a_shape_seen_before_is_not_novel_and_a_new_one_is() {
        novel_only_while(5 * DAY + 100, square);
    }

    /// From a crossing of its mean on, the cycle swings half as wide
    /// again: every shape has a form seen before, at another size.
    #[test]
    fn a_cycle_that_swings_wider_is_novel() {
        novel_only_while(5 * DAY + DAY / 2, |row| 0.5 * 50.0 * daily(row));
    }

    /// A cycle without noise repeats itself exactly: a rounding-sized
    /// blip on it is new, but not against the floor of the largest.
    #[test]
    fn a_blip_on_an_exact_repeat_does_not_page() {
        let blip = 5 * DAY + 100;
        let values = (0..6 * DAY)
            .map(|i| 100.0 + 50.0 * daily(i) + if i == blip { 1e-6 } else { 0.0 })
            .collect();
        let novelty = Novelty::new(&Grid::from_values(0, 1, values), DAY, 0, 0);
        let parts: Vec<f64> = (3 * DAY..6 * DAY).filter_map(|i| novelty.part(i)).collect();
        assert!(parts.len() > 100, "{}", parts.len());
        assert!(parts.iter().all(|&p| p < 1e-3), "{parts:?}");
    }

    /// At a 1-minute step a day is more than the 1,000 rows a shape is
    /// otherwise matched against: a half-hour job that runs at the same
    /// time every day must meet yesterday's run, or it is new every day.
    #[test]
    fn a_daily_job_is_not_new_at_a_one_minute_step() {
        const DAY_1M: usize = 1440;
        let mut noise = uniform(3);
        let values = (0..4 * DAY_1M)
            .map(|i| {
                let job = if (540..570).contains(&(i % DAY_1M)) {
                    30.0
                } else {
                    0.0
                };
                10.0 + 0.1 * noise() + job
            })
            .collect();
        let novelty = Novelty::new(&Grid::from_values(0, 1, values), DAY_1M, 0, 0);
        let parts: Vec<f64> = (DAY_1M + 500..4 * DAY_1M)
            .filter_map(|i| novelty.part(i))
            .collect();
        assert!(parts.len() > 2 * DAY_1M, "{}", parts.len());
        let largest = parts.iter().copied().fold(0.0, f64::max);
        assert!(largest < 1.0, "{largest}");
    }

    /// An instant score finds the largest recent novelty by giving up on
    /// shapes early; it must be exactly the one every novelty gives.
    #[test]
    fn the_largest_found_by_giving_up_early_is_the_largest_of_all() {
        let grid = cycle(6, 5 * DAY + 100, 96, square);
        for origin in [0, 5] {
            let all = Novelty::new(&grid, DAY, origin, 0);
            let mut scored = 0;
            for i in (3 * DAY..6 * DAY).step_by(7) {
                let alone = Novelty::new(&grid, DAY, origin, i.saturating_sub(24));
                assert_eq!(alone.part(i), all.part(i), "row {i}, origin {origin}");
                scored += usize::from(all.part(i).is_some());
            }
            assert!(scored > 100, "{scored}");
        }
    }

    #[test]
    fn a_shape_with_a_gap_is_none() {
        let mut grid = cycle(3, 0, 0, square);
        let row = 2 * DAY + 5 * STRIDE;
        let mut values = grid.values.clone();
        values[row - 3] = f64::NAN;
        grid = Grid::from_values(0, 1, values);
        let novelty = Novelty::new(&grid, DAY, 0, 0);
        assert_eq!(novelty.part(row), None);
        assert!(novelty.part(row - STRIDE).is_some());
        assert!(novelty.part(row + 2 * STRIDE).is_some());
    }
}
