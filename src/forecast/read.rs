//! Phase 3 of an evaluation: each requested output read off its series'
//! anchors at every evaluation time, forecasts held within the series'
//! domain.

use std::cell::LazyCell;
use std::sync::Arc;

use crate::labels::METRIC_NAME;
use crate::series::{HORIZON_LABEL, Output, SeriesKind};
use crate::upstream::SourceSeries;

use super::plan::SeriesPlan;
use super::{Anchor, Evaluation, Predictor, SyntheticSeries, anomaly, before};

/// Residual calibration of a predictor on one series, in normalised units.
struct Calibration<'a> {
    lo: &'a [f32],
    hi: &'a [f32],
    /// For the baseline, the series' first sample read: a young series'
    /// band widens beyond the spread it has shown (see [`Calibration::widening`]).
    first_ms: Option<i64>,
}

impl Calibration<'_> {
    /// How much wider than its calibration the band of a forecast made at
    /// `anchor` and read `ahead_ms` later is.
    ///
    /// The baseline's band is the series' spread over its normalisation
    /// span (a day). A series seen for less than that has shown only the
    /// spread of a shorter stretch, and a forecast further ahead than it
    /// has been seen is a guess: its band grows with the square root of
    /// how much further (as a random walk's spread would), up to the
    /// normalisation span. A series seen for the whole span keeps its band.
    fn widening(&self, ev: &Evaluation, anchor: i64, ahead_ms: i64) -> f64 {
        let Some(first) = self.first_ms else {
            return 1.0;
        };
        let span = ev.shape.norm_points as i64 * ev.step;
        let seen = (anchor - first).max(ev.step);
        (ahead_ms.min(span) as f64 / seen as f64).max(1.0).sqrt()
    }
}

/// The synthetic series of one source series: one per output that has a
/// value at some evaluation time.
pub fn series_outputs(
    ev: &Evaluation,
    series: &SourceSeries,
    plan: &SeriesPlan,
) -> Vec<SyntheticSeries> {
    let (lo, hi, first_ms) = match ev.predictor {
        Predictor::Model(m) => (
            &m.meta.report.residual_lo[..],
            &m.meta.report.residual_hi[..],
            None,
        ),
        Predictor::Baseline(b) => (
            b.residual_lo(),
            b.residual_hi(),
            series.samples.first().map(|s| s.0),
        ),
    };
    let calibration = Calibration { lo, hi, first_ms };
    // Read off every sample, which only forecasts need: an anomaly score
    // alone does not pay for it.
    let domain = LazyCell::new(|| Domain::of(&series.samples));
    let anchor_at = |t: i64| {
        plan.span
            .index(t)
            .and_then(|i| plan.anchors.get(&i).cloned().flatten())
    };
    let mut result = Vec::new();
    for output in ev.outputs {
        let samples: Vec<(i64, f64)> = ev
            .times
            .iter()
            .filter_map(|&t| {
                let value = match output.kind {
                    SeriesKind::AnomalyScore => plan.anomaly.get(&t).and_then(|c| {
                        let g = before(t, ev.step);
                        c.score(anchor_at(g).and_then(|a| residual(ev, &a, series, t, g)))
                    }),
                    kind => {
                        let g = t.div_euclid(ev.step) * ev.step;
                        anchor_at(g).map(|a| {
                            domain.clamp(forecast(ev, &calibration, &a, output, kind, t, g), t)
                        })
                    }
                };
                value.filter(|v| v.is_finite()).map(|v| (t, v))
            })
            .collect();
        if samples.is_empty() {
            continue;
        }
        let mut labels = series.labels.clone();
        labels.insert(METRIC_NAME.to_owned(), output.kind.series_name(ev.family));
        if let Some(h) = &output.horizon {
            labels.insert(HORIZON_LABEL.to_owned(), h.label().to_owned());
        }
        result.push(SyntheticSeries { labels, samples });
    }
    result
}

/// Where a series' forecasts may lie. Bytes, counts and ratios never go
/// below 0, yet their forecasts can: the model predicts changes, and a band
/// around a value near 0 reaches below it. Remote read does not say which
/// metrics cannot go negative; their history does: at `t`, a series none
/// of whose samples up to `t` was negative is held at 0 from below. Only
/// samples at or before `t` decide, as for the forecast itself, and only
/// those the query read (at least the day the model normalises by): one
/// pass over samples already at hand. Per series rather than per family,
/// so that a series' forecast does not depend on which of its siblings a
/// selector matched.
#[derive(Debug, Clone, Copy)]
pub struct Domain {
    /// The time of the first negative sample, if any.
    first_negative: Option<i64>,
}

impl Domain {
    /// The domain that `samples` show.
    pub fn of(samples: &[(i64, f64)]) -> Self {
        Self {
            first_negative: samples.iter().find(|(_, v)| *v < 0.0).map(|(t, _)| *t),
        }
    }

    /// `value`, raised to 0 where the series had not gone negative by `t`;
    /// a value that is not finite stays as it is, to be left out.
    pub fn clamp(self, value: f64, t: i64) -> f64 {
        let held = self.first_negative.is_none_or(|first| first > t);
        if held && value < 0.0 && value.is_finite() {
            0.0
        } else {
            value
        }
    }
}

/// The residual of the sample at `t` against the forecast made at the
/// anchor `g` before it; `None` where there is no sample or no error to
/// measure it in.
fn residual(
    ev: &Evaluation,
    a: &Arc<Anchor>,
    series: &SourceSeries,
    t: i64,
    g: i64,
) -> Option<anomaly::Residual> {
    let sigma = Some(a.sigma).filter(|s| s.is_finite())?;
    let x = latest_at(&series.samples, t, ev.staleness)?;
    let expected = a.last + a.scale * along(&a.deltas, (t - g) as f64 / ev.step as f64);
    Some(anomaly::Residual {
        value: x - expected,
        error: anomaly::sigma(sigma) * a.scale,
    })
}

/// The forecast (or a bound of it) of `output` at `t` from the anchor `g`,
/// read `horizon + (t − g)` ahead.
fn forecast(
    ev: &Evaluation,
    calibration: &Calibration,
    a: &Arc<Anchor>,
    output: &Output,
    kind: SeriesKind,
    t: i64,
    g: i64,
) -> f64 {
    let horizon = output
        .horizon
        .as_ref()
        .map_or(0, |h| h.duration().as_millis_i64());
    let ahead = horizon + t - g;
    let k = ahead as f64 / ev.step as f64;
    let offset = match kind {
        SeriesKind::PredictedLower => along(calibration.lo, k),
        SeriesKind::PredictedUpper => along(calibration.hi, k),
        _ => 0.0,
    } * calibration.widening(ev, g, ahead);
    a.last + a.scale * (along(&a.deltas, k) + offset)
}

/// A per-step curve (`curve[j]` at step `j + 1`, 0 at step 0) read at
/// fractional step `k` by linear interpolation, held at its last value.
pub fn along(curve: &[f32], k: f64) -> f64 {
    if curve.is_empty() {
        return 0.0;
    }
    let at = |j: usize| {
        if j == 0 {
            0.0
        } else {
            f64::from(curve[(j - 1).min(curve.len() - 1)])
        }
    };
    let k = k.clamp(0.0, curve.len() as f64);
    let lo = k.floor() as usize;
    at(lo) + (at(lo + 1) - at(lo)) * (k - lo as f64)
}

/// The latest sample at or before `t`, if fresher than `staleness`.
pub fn latest_at(samples: &[(i64, f64)], t: i64, staleness: i64) -> Option<f64> {
    let n = samples.partition_point(|(ts, _)| *ts <= t);
    let (ts, v) = *samples.get(n.checked_sub(1)?)?;
    (t - ts < staleness).then_some(v)
}
