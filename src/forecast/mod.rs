//! Turns a family's source history and its predictor (a trained LSTM, or
//! the seasonal baseline until one is ready) into synthetic samples at the
//! requested evaluation times.
//!
//! Forecasts are made at *anchors*: points of the model's time grid. The
//! value of `predicted_m{horizon=h}` at time `t` comes from the anchor
//! `g = floor(t / step) · step <= t`, read `h + (t − g)` ahead, so it only
//! uses samples at or before `t` (the convention of `predict_linear`), and
//! anchors are shared and cached across queries and evaluation times.

pub mod baseline;
pub mod cache;
pub mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::tensor::Device;

use crate::labels::{Labels, METRIC_NAME};
use crate::model::store::ModelMeta;
use crate::model::{FEATURES, Grid, LstmNet, Pass, Window, predict};
use crate::series::{HORIZON_LABEL, Output, SeriesKind};
use crate::telemetry::Metrics;
use crate::upstream::SourceSeries;

pub use baseline::Baseline;
pub use cache::Cache;

/// Prometheus's default lookback: a sample older than this is stale.
pub const LOOKBACK_MS: i64 = 300_000;
/// An anomaly score above 1 means the value is this many robust standard
/// deviations of one-step-ahead error away from the forecast.
pub const ANOMALY_SIGMAS: f64 = 5.0;
/// Passes per model call.
const BATCH: usize = 1024;

/// A forecast made at one anchor: the value there and the predicted
/// normalised change at each model step ahead.
#[derive(Debug, Clone)]
pub struct Anchor {
    /// Source value at the anchor.
    pub last: f64,
    /// One normalised unit in source units.
    pub scale: f64,
    /// Predicted change, normalised, at steps `1..=K`.
    pub deltas: Vec<f32>,
}

/// A trained model as served.
pub struct ServedModel {
    /// Its metadata (version, step, calibration).
    pub meta: ModelMeta,
    /// The network, without autodiff.
    pub net: LstmNet,
    /// Device the network lives on.
    pub device: Device,
}

/// What answers a family's queries right now.
#[derive(Clone)]
pub enum Predictor {
    /// A trained model.
    Model(Arc<ServedModel>),
    /// The seasonal baseline, until a model is ready.
    Baseline(Baseline),
}

/// One synthetic output series.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticSeries {
    /// Labels including `__name__` (and `horizon` where it applies).
    pub labels: Labels,
    /// `(unix ms, value)` in time order.
    pub samples: Vec<(i64, f64)>,
}

/// Forecasts of one series that the model still has to make: one pass,
/// and the windows that read it, each with the cache key it goes under.
struct Pending {
    series: usize,
    pass: Pass,
    windows: Vec<(Window, cache::Key)>,
}

/// Residual calibration of a predictor, in normalised units.
struct Calibration<'a> {
    lo: &'a [f32],
    hi: &'a [f32],
    one_step_sigma: f64,
}

impl Predictor {
    /// How much history before the first evaluation time the predictor
    /// reads (input window, normalisation window, and a step of slack).
    pub fn history_ms(&self) -> i64 {
        match self {
            Predictor::Model(m) => {
                let s = m.meta.shape;
                (s.history_points() as i64 + 2) * m.meta.step_ms + LOOKBACK_MS
            }
            Predictor::Baseline(b) => b.history_ms(),
        }
    }
}

/// Fewest series worth a thread of their own when planning.
const MIN_SERIES_PER_THREAD: usize = 256;

/// `f(index, item)` for every item, in order, with large inputs split
/// across the machine's cores: building a family's windows is independent
/// per series, and with thousands of series it is a good share of a query.
fn map_in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len() / MIN_SERIES_PER_THREAD)
        .max(1);
    if threads == 1 {
        return items.iter().enumerate().map(|(i, t)| f(i, t)).collect();
    }
    let per = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let parts: Vec<_> = items
            .chunks(per)
            .enumerate()
            .map(|(n, part)| {
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(i, t)| f(n * per + i, t))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        parts
            .into_iter()
            .flat_map(|p| p.join().expect("a planning thread panicked"))
            .collect()
    })
}

/// Evaluates `outputs` for every source series at every time in `times`
/// (sorted ascending). Series without data in the model's input window get
/// no samples at those times.
pub fn evaluate(
    predictor: &Predictor,
    family: &str,
    outputs: &[Output],
    times: &[i64],
    source: &[SourceSeries],
    cache: &Cache,
    metrics: &Metrics,
) -> Vec<SyntheticSeries> {
    let (Some(&t_min), Some(&t_max)) = (times.first(), times.last()) else {
        return Vec::new();
    };
    let (step, shape) = match predictor {
        Predictor::Model(m) => (m.meta.step_ms, m.meta.shape),
        Predictor::Baseline(b) => {
            let step = b.step_ms(source);
            (step, b.shape(step))
        }
    };
    let staleness = LOOKBACK_MS.max(2 * step);
    let grid_start = t_min.div_euclid(step) * step - (shape.history_points() as i64 + 1) * step;
    let needs_anomaly = outputs.iter().any(|o| o.kind == SeriesKind::AnomalyScore);
    let needs_forecast = outputs.iter().any(|o| o.kind != SeriesKind::AnomalyScore);
    let now = crate::calendar::now_ms();

    // Phase 1: grids, anchors needed, and cache lookups for every series.
    let plan_series = |si: usize, series: &SourceSeries| {
        let grid = Grid::resample(&series.samples, grid_start, t_max, step, staleness);
        let fp = cache::fingerprint(&series.labels);
        let mut needed: BTreeMap<usize, Option<Arc<Anchor>>> = BTreeMap::new();
        for &t in times {
            if needs_forecast && let Some(i) = grid.index(t.div_euclid(step) * step) {
                needed.insert(i, None);
            }
            if needs_anomaly && let Some(i) = grid.index(before(t, step)) {
                needed.insert(i, None);
            }
        }
        let pending = match predictor {
            Predictor::Baseline(b) => {
                for (&i, slot) in needed.iter_mut() {
                    *slot = b.anchor(&grid, i, &shape).map(Arc::new);
                }
                Vec::new()
            }
            Predictor::Model(m) => {
                let lookup = |key: &cache::Key| {
                    let hit = cache.get(key);
                    if hit.is_some() {
                        metrics.cache_hits.inc();
                    }
                    hit
                };
                // Complete history makes a forecast final; until then it
                // holds for exactly these inputs. So settled anchors are
                // looked up before any input is built, and recent ones
                // need their inputs for their key.
                let recent = |i: usize| grid.time(i) + staleness >= now;
                let mut passes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
                for (&i, slot) in needed.iter_mut() {
                    if !recent(i) {
                        *slot = lookup(&cache_key(family, m, fp, grid.time(i), 0));
                    }
                    if slot.is_none()
                        && let Some(start) = grid.pass_start(i, &shape)
                    {
                        passes.entry(start).or_default().push(i);
                    }
                }
                let mut pending = Vec::new();
                for (start, ends) in passes {
                    let points = ends.last().map_or(0, |&end| end + 1 - start);
                    let Some(mut pass) = grid.pass(start, points, &shape) else {
                        continue;
                    };
                    let mut windows = Vec::new();
                    for end in ends {
                        let Some(w) = grid.window(end, &shape) else {
                            continue;
                        };
                        let input = if recent(end) { w.digest(&pass) } else { 0 };
                        let key = cache_key(family, m, fp, grid.time(end), input);
                        match recent(end).then(|| lookup(&key)).flatten() {
                            Some(hit) => {
                                needed.insert(end, Some(hit));
                            }
                            None => windows.push((w, key)),
                        }
                    }
                    if let Some((last, _)) = windows.last() {
                        pass.features.truncate(last.points() * FEATURES);
                        pending.push(Pending {
                            series: si,
                            pass,
                            windows,
                        });
                    }
                }
                pending
            }
        };
        // The grid itself (a day of values and their prefix sums) goes
        // here, so that a large family's grids are never all alive at once.
        let one_step_sigma = match predictor {
            Predictor::Model(m) => m.meta.report.one_step_sigma,
            Predictor::Baseline(_) => baseline::one_step_sigma(&grid),
        };
        (grid.span(), one_step_sigma, needed, pending)
    };
    let mut spans = Vec::with_capacity(source.len());
    let mut sigmas = Vec::with_capacity(source.len());
    let mut anchors: Vec<BTreeMap<usize, Option<Arc<Anchor>>>> = Vec::with_capacity(source.len());
    let mut pending: Vec<Pending> = Vec::new();
    for (span, sigma, needed, waiting) in map_in_parallel(source, plan_series) {
        spans.push(span);
        sigmas.push(sigma);
        anchors.push(needed);
        pending.extend(waiting);
    }

    // Phase 2: batched model runs over every pass with a window not cached,
    // passes of one length together so that few are padded.
    if let Predictor::Model(m) = predictor {
        pending.sort_by_key(|p| p.pass.points());
        for chunk in pending.chunks(BATCH) {
            let passes: Vec<&Pass> = chunk.iter().map(|p| &p.pass).collect();
            let windows: Vec<(usize, &Window)> = chunk
                .iter()
                .enumerate()
                .flat_map(|(j, p)| p.windows.iter().map(move |(w, _)| (j, w)))
                .collect();
            let outputs = predict(&m.net, &passes, &windows, &m.device);
            let keyed = chunk
                .iter()
                .flat_map(|p| p.windows.iter().map(move |(w, key)| (p.series, w, key)));
            for ((si, w, key), deltas) in keyed.zip(outputs) {
                metrics.cache_misses.inc();
                let anchor = Arc::new(Anchor {
                    last: w.last,
                    scale: w.scale,
                    deltas,
                });
                cache.put(key.clone(), anchor.clone());
                anchors[si].insert(w.end, Some(anchor));
            }
        }
    }

    // Phase 3: read each output off its anchors.
    let mut result = Vec::new();
    for (si, series) in source.iter().enumerate() {
        let span = spans[si];
        let (lo, hi) = match predictor {
            Predictor::Model(m) => (
                &m.meta.report.residual_lo[..],
                &m.meta.report.residual_hi[..],
            ),
            Predictor::Baseline(b) => (b.residual_lo(), b.residual_hi()),
        };
        let calibration = Calibration {
            lo,
            hi,
            one_step_sigma: sigmas[si],
        };
        let anchor_at = |t: i64| {
            span.index(t)
                .and_then(|i| anchors[si].get(&i).cloned().flatten())
        };
        for output in outputs {
            let mut samples = Vec::new();
            for &t in times {
                let value = match output.kind {
                    SeriesKind::AnomalyScore => {
                        let g = before(t, step);
                        anchor_at(g).and_then(|a| {
                            let x = latest_at(&series.samples, t, staleness)?;
                            let expected =
                                a.last + a.scale * along(&a.deltas, (t - g) as f64 / step as f64);
                            Some(
                                (x - expected).abs()
                                    / (ANOMALY_SIGMAS * calibration.one_step_sigma * a.scale),
                            )
                        })
                    }
                    kind => {
                        let g = t.div_euclid(step) * step;
                        let horizon = output
                            .horizon
                            .as_ref()
                            .map_or(0, |h| h.duration().as_millis_i64());
                        let k = (horizon + t - g) as f64 / step as f64;
                        anchor_at(g).map(|a| {
                            let offset = match kind {
                                SeriesKind::PredictedLower => along(calibration.lo, k),
                                SeriesKind::PredictedUpper => along(calibration.hi, k),
                                _ => 0.0,
                            };
                            a.last + a.scale * (along(&a.deltas, k) + offset)
                        })
                    }
                };
                if let Some(v) = value.filter(|v| v.is_finite()) {
                    samples.push((t, v));
                }
            }
            if samples.is_empty() {
                continue;
            }
            let mut labels = series.labels.clone();
            labels.insert(METRIC_NAME.to_owned(), output.kind.series_name(family));
            if let Some(h) = &output.horizon {
                labels.insert(HORIZON_LABEL.to_owned(), h.label().to_owned());
            }
            result.push(SyntheticSeries { labels, samples });
        }
    }
    metrics.series_served.inc_by(result.len() as u64);
    result
}

fn cache_key(family: &str, m: &ServedModel, series: u64, anchor_ms: i64, input: u64) -> cache::Key {
    cache::Key {
        family: family.to_owned(),
        version: m.meta.version,
        series,
        anchor_ms,
        input,
    }
}

/// The last grid point strictly before `t`: the anchor whose forecast an
/// anomaly score at `t` compares against.
fn before(t: i64, step: i64) -> i64 {
    (t - 1).div_euclid(step) * step
}

/// A per-step curve (`curve[j]` at step `j + 1`, 0 at step 0) read at
/// fractional step `k` by linear interpolation, held at its last value.
fn along(curve: &[f32], k: f64) -> f64 {
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
fn latest_at(samples: &[(i64, f64)], t: i64, staleness: i64) -> Option<f64> {
    let n = samples.partition_point(|(ts, _)| *ts <= t);
    let (ts, v) = *samples.get(n.checked_sub(1)?)?;
    (t - ts < staleness).then_some(v)
}

/// The evaluation times for a query over `[start_ms, end_ms]`: `end_ms`,
/// and every `step` before it back to `start_ms`, so that a Prometheus
/// range query (start `S − lookback`, end `E`, step hint) finds a sample at
/// exactly each of its evaluation times. At most `max_points` times.
pub fn evaluation_times(start_ms: i64, end_ms: i64, step_ms: i64, max_points: usize) -> Vec<i64> {
    if end_ms < start_ms {
        return Vec::new();
    }
    if step_ms <= 0 {
        return vec![end_ms];
    }
    let span = end_ms - start_ms;
    let step = step_ms.max(span / max_points.max(1) as i64 + 1);
    let mut times: Vec<i64> = (0..)
        .map(|i| end_ms - i * step)
        .take_while(|t| *t >= start_ms)
        .collect();
    times.reverse();
    times
}

/// The typical spacing of the source's samples (median gap), if any series
/// has two samples.
pub fn source_spacing(source: &[SourceSeries]) -> Option<i64> {
    let mut gaps: Vec<i64> = source
        .iter()
        .flat_map(|s| {
            s.samples
                .windows(2)
                .map(|w| w[1].0 - w[0].0)
                .filter(|g| *g > 0)
                .take(2000)
        })
        .collect();
    if gaps.is_empty() {
        return None;
    }
    let mid = gaps.len() / 2;
    Some(*gaps.select_nth_unstable(mid).1)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::duration::PromDuration;
    use crate::series::Horizon;

    fn cycle(until_ms: i64) -> Vec<SourceSeries> {
        let samples = (0..=until_ms / 60_000)
            .map(|i| {
                let t = i * 60_000;
                (
                    t,
                    50.0 + 20.0 * (t as f64 / 86_400_000.0 * std::f64::consts::TAU).sin(),
                )
            })
            .collect();
        vec![SourceSeries {
            labels: [("instance".to_owned(), "a".to_owned())].into(),
            samples,
        }]
    }

    fn outputs() -> Vec<Output> {
        let h = |s: &str| Some(Horizon::new(s.parse::<PromDuration>().unwrap()));
        vec![
            Output {
                kind: SeriesKind::Predicted,
                horizon: h("1h"),
            },
            Output {
                kind: SeriesKind::PredictedUpper,
                horizon: h("1h"),
            },
            Output {
                kind: SeriesKind::AnomalyScore,
                horizon: None,
            },
        ]
    }

    fn run(source: &[SourceSeries], times: &[i64]) -> Vec<SyntheticSeries> {
        let predictor = Predictor::Baseline(Baseline::new(None, 1_800_000, 21_600_000, 0.9));
        evaluate(
            &predictor,
            "cpu",
            &outputs(),
            times,
            source,
            &Cache::new(1 << 20),
            &Metrics::new(),
        )
    }

    /// An untrained model with windows of `window` 1-minute points.
    fn model(window: usize, hidden: usize, layers: usize) -> Predictor {
        use crate::model::network::NetSpec;
        let spec = NetSpec {
            inputs: FEATURES,
            window,
            hidden,
            layers,
            outputs: 5,
        };
        let device = Device::flex();
        Predictor::Model(Arc::new(ServedModel {
            meta: crate::model::store::tests::meta(spec, 1),
            net: LstmNet::new(spec, &device),
            device,
        }))
    }

    /// A range query reads one pass for several forecasts; each must be
    /// the forecast that an instant query at its time makes alone.
    #[test]
    fn a_range_forecasts_as_instant_queries_do() {
        let predictor = model(8, 6, 2);
        let end = 2 * 86_400_000 + 17 * 60_000;
        let source = cycle(end);
        let times = evaluation_times(end - 1_200_000, end, 60_000, 100);
        let eval = |times: &[i64], metrics: &Metrics| {
            evaluate(
                &predictor,
                "cpu",
                &outputs(),
                times,
                &source,
                &Cache::new(1 << 20),
                metrics,
            )
        };
        let metrics = Metrics::new();
        let range = eval(&times, &metrics);
        // 21 forecasts and 21 anomaly anchors, one step earlier: 22 in all.
        assert_eq!(metrics.cache_misses.get(), 22);
        assert_eq!(range.len(), 3);
        for (n, &t) in times.iter().enumerate() {
            let alone = eval(&[t], &Metrics::new());
            for (r, a) in range.iter().zip(&alone) {
                assert_eq!(r.labels, a.labels);
                let (x, y) = (r.samples[n], a.samples[0]);
                assert_eq!(x.0, y.0);
                assert!(
                    (x.1 - y.1).abs() <= 1e-5 * x.1.abs().max(1.0),
                    "at {t}: {x:?} {y:?}"
                );
            }
        }
    }

    /// An anchor in the last minutes runs the model once for the same
    /// inputs, and again when a late sample changes them.
    #[test]
    fn recent_anchors_are_reused_until_their_inputs_change() {
        let predictor = model(4, 3, 1);
        let now = crate::calendar::now_ms() / 60_000 * 60_000;
        let mut source = cycle(now);
        let (cache, metrics) = (Cache::new(1 << 20), Metrics::new());
        let h5 = Horizon::new("5m".parse::<PromDuration>().unwrap());
        let outputs = [Output {
            kind: SeriesKind::Predicted,
            horizon: Some(h5),
        }];
        let eval = |source: &[SourceSeries]| {
            evaluate(
                &predictor,
                "cpu",
                &outputs,
                &[now],
                source,
                &cache,
                &metrics,
            )
        };
        let first = eval(&source);
        assert_eq!(first[0].samples.len(), 1, "{first:?}");
        assert_eq!(
            (metrics.cache_misses.get(), metrics.cache_hits.get()),
            (1, 0)
        );
        assert_eq!(eval(&source), first);
        assert_eq!(
            (metrics.cache_misses.get(), metrics.cache_hits.get()),
            (1, 1)
        );
        if let Some(last) = source[0].samples.last_mut() {
            last.1 += 30.0;
        }
        assert_ne!(eval(&source), first);
        assert_eq!(
            (metrics.cache_misses.get(), metrics.cache_hits.get()),
            (2, 1)
        );
    }

    /// A forecast at `t` uses samples at or before `t` only: the samples
    /// after `t` must not change it (predict_linear's convention).
    #[test]
    fn forecasts_never_see_the_future() {
        let t = 3 * 86_400_000 + 123_456;
        let full = run(&cycle(4 * 86_400_000), &[t]);
        let cut = run(&cycle(t), &[t]);
        assert_eq!(full, cut);
        assert_eq!(full.len(), 3);
        let names: Vec<&str> = full
            .iter()
            .map(|s| s.labels[METRIC_NAME].as_str())
            .collect();
        assert_eq!(
            names,
            ["predicted_cpu", "predicted_upper_cpu", "anomaly_score_cpu"]
        );
        assert_eq!(full[0].labels[HORIZON_LABEL], "1h");
        assert_eq!(full[0].labels["instance"], "a");
        assert!(!full[2].labels.contains_key(HORIZON_LABEL));
        // Yesterday's shape, one hour on: close to the true value.
        let truth =
            50.0 + 20.0 * ((t + 3_600_000) as f64 / 86_400_000.0 * std::f64::consts::TAU).sin();
        assert!(
            (full[0].samples[0].1 - truth).abs() < 1.0,
            "{:?} vs {truth}",
            full[0].samples
        );
        assert!(
            full[1].samples[0].1 > full[0].samples[0].1,
            "upper bound above the forecast"
        );
        assert!(full[2].samples[0].1 < 1.0, "a clean cycle is not anomalous");
    }

    #[test]
    fn every_evaluation_time_gets_a_sample_while_data_is_fresh() {
        let end = 2 * 86_400_000;
        let times = evaluation_times(end - 6 * 3_600_000, end, 60_000, 11_000);
        let out = run(&cycle(end), &times);
        assert!(out.iter().all(|s| s.samples.len() == times.len()));
        // Long after the source stopped, there is nothing to forecast from.
        let late = run(&cycle(end), &[end + 86_400_000]);
        assert!(late.is_empty());
    }

    #[test]
    fn along_interpolates_from_zero() {
        let c = [1.0, 3.0];
        assert_eq!(along(&c, 0.0), 0.0);
        assert_eq!(along(&c, 0.5), 0.5);
        assert_eq!(along(&c, 1.5), 2.0);
        assert_eq!(along(&c, 2.0), 3.0);
        assert_eq!(along(&c, 7.0), 3.0);
    }

    #[test]
    fn evaluation_times_end_aligned() {
        assert_eq!(evaluation_times(0, 300, 100, 100), [0, 100, 200, 300]);
        assert_eq!(evaluation_times(50, 300, 100, 100), [100, 200, 300]);
        assert_eq!(evaluation_times(0, 300, 0, 100), [300]);
        assert_eq!(evaluation_times(0, 1000, 1, 10).len(), 10);
        assert!(evaluation_times(10, 0, 1, 10).is_empty());
    }

    #[test]
    fn anchors_precede_evaluation_times() {
        assert_eq!(before(120, 60), 60);
        assert_eq!(before(121, 60), 120);
        assert_eq!(latest_at(&[(0, 1.0), (60, 2.0)], 59, 300), Some(1.0));
        assert_eq!(latest_at(&[(0, 1.0)], 400, 300), None);
        assert_eq!(latest_at(&[(10, 1.0)], 5, 300), None);
    }
}
