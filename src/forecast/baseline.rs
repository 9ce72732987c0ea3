//! The seasonal baseline that answers until a family's model is ready:
//! the current value plus the change seen over the same stretch one day
//! earlier (flat where there is no day of history). It answers from the
//! second sample of a series on, with a band that is wide while the series
//! is young (see `read.rs`).

use crate::calendar::{DAY_MS, HOUR_MS};
use crate::model::train::residual_sigma;
use crate::model::{Grid, Shape};
use crate::upstream::SourceSeries;

use super::Anchor;

/// Fewest one-step changes the baseline measures its error on.
const MIN_SIGMA_CHANGES: usize = 30;

/// The seasonal baseline for one family.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// The configured step, or `None` for the source's spacing.
    pub step_ms: Option<i64>,
    /// Input window length (`defaults.lookback`).
    pub lookback_ms: i64,
    /// Longest horizon served.
    pub max_horizon_ms: i64,
    /// Interval half-width in normalised units (e.g. 1.645 for 90 %).
    lo: Vec<f32>,
    hi: Vec<f32>,
}

impl Baseline {
    /// A baseline with a central interval of `coverage`.
    pub fn new(step_ms: Option<i64>, lookback_ms: i64, max_horizon_ms: i64, coverage: f64) -> Self {
        let z = normal_quantile(0.5 + coverage / 2.0) as f32;
        Self {
            step_ms,
            lookback_ms,
            max_horizon_ms,
            lo: vec![-z],
            hi: vec![z],
        }
    }

    /// History needed before the first evaluation time; with `anomaly`,
    /// also the anomaly score's memory at the configured step, or at a
    /// minute where the step follows the source (a series scraped more
    /// slowly gets less memory from the baseline than from its model).
    pub fn history_ms(&self, anomaly: bool) -> i64 {
        let base = DAY_MS + self.lookback_ms + super::STALENESS_MS + HOUR_MS;
        if !anomaly {
            return base;
        }
        let step = self.step_ms.unwrap_or(crate::calendar::MINUTE_MS);
        base + super::anomaly_memory(step) as i64 * step
    }

    /// The grid step: configured, else the source's spacing.
    pub fn step_ms(&self, source: &[SourceSeries]) -> i64 {
        crate::model::window::choose_step(
            self.step_ms,
            super::source_spacing(source),
            self.max_horizon_ms,
        )
    }

    /// The window layout at `step`: the model's, except that every point
    /// is normalised at itself (a segment of one). The baseline runs no
    /// network, so points sharing a pass would save nothing, and a shared
    /// pass is normalised at its first point, up to half a lookback before
    /// the newest: a series younger than that would answer nothing. This
    /// way two samples on the grid suffice.
    pub fn shape(&self, step: i64) -> Shape {
        Shape {
            segment: 1,
            ..Shape::for_step(step, self.lookback_ms, self.max_horizon_ms, 0)
        }
    }

    /// Lower interval offsets (normalised).
    pub fn residual_lo(&self) -> &[f32] {
        &self.lo
    }

    /// Upper interval offsets (normalised).
    pub fn residual_hi(&self) -> &[f32] {
        &self.hi
    }

    /// The baseline forecast anchored at grid index `i`: the window's
    /// seasonal-naive curve as it is, with the spread of the one-step
    /// changes over the normalisation span before it as its error.
    pub fn anchor(&self, grid: &Grid, i: usize, shape: &Shape) -> Option<Anchor> {
        let w = grid.window(i, shape)?;
        let from = (i + 1).saturating_sub(shape.norm_points);
        Some(Anchor {
            last: w.last,
            sigma: one_step_sigma(&grid.values[from..=i]) / w.scale,
            scale: w.scale,
            deltas: w.seasonal,
        })
    }
}

/// Robust spread of one-step changes over `values` (source units, gaps as
/// `NaN`): the baseline's stand-in for a model's one-step residual spread.
/// Only values at or before an anchor go in, so that a score is causal.
/// `NaN` from fewer than [`MIN_SIGMA_CHANGES`] changes: a spread read off
/// a handful of samples would make a young series' every wiggle look
/// unusual.
fn one_step_sigma(values: &[f64]) -> f64 {
    let diffs: Vec<f64> = values
        .windows(2)
        .filter(|w| w[0].is_finite() && w[1].is_finite())
        .map(|w| w[1] - w[0])
        .collect();
    if diffs.len() < MIN_SIGMA_CHANGES {
        return f64::NAN;
    }
    residual_sigma(&diffs)
}

/// Inverse of the standard normal CDF (Acklam's rational approximation,
/// relative error below 1.2e-9), for turning a coverage into a half-width.
pub fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -39.696_830_286_653_76,
        220.946_098_424_520_5,
        -275.928_510_446_968_7,
        138.357_751_867_269,
        -30.664_798_066_147_16,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -54.476_098_798_224_06,
        161.585_836_858_040_9,
        -155.698_979_859_886_6,
        66.801_311_887_719_72,
        -13.280_681_552_885_72,
    ];
    const C: [f64; 6] = [
        -0.007_784_894_002_430_293,
        -0.322_396_458_041_136_5,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        0.007_784_695_709_041_462,
        0.322_467_129_070_039_8,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles() {
        assert!((normal_quantile(0.95) - 1.644_853_6).abs() < 1e-6);
        assert!((normal_quantile(0.5)).abs() < 1e-9);
        assert!((normal_quantile(0.001) + 3.090_232_3).abs() < 1e-6);
    }

    #[test]
    fn repeats_yesterdays_change() {
        let step = 3_600_000;
        // Two days of hourly values: a ramp 0..23 each day.
        let values: Vec<f64> = (0..48).map(|i| (i % 24) as f64).collect();
        let grid = Grid::from_values(0, step, values);
        let b = Baseline::new(Some(step), 4 * step, 3 * step, 0.9);
        let shape = b.shape(step);
        let a = b.anchor(&grid, 30, &shape).unwrap();
        assert_eq!(a.last, 6.0);
        // Yesterday at 06:00 → 07:00 rose by 1: so should today.
        assert!((f64::from(a.deltas[0]) * a.scale - 1.0).abs() < 1e-6);
        // Without a day of history the baseline is flat.
        let early = b.anchor(&grid, 10, &shape).unwrap();
        assert!(early.deltas.iter().all(|d| *d == 0.0));
    }
}
