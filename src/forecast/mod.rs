//! Turns a family's source history and its predictor (a trained LSTM, or
//! the seasonal baseline until one is ready) into synthetic samples at the
//! requested evaluation times.
//!
//! Forecasts are made at *anchors*: points of the model's time grid. The
//! value of `predicted_m{horizon=h}` at time `t` comes from the anchor
//! `g = floor(t / step) · step <= t`, read `h + (t − g)` ahead, so it only
//! uses samples at or before `t` (the convention of `predict_linear`), and
//! anchors are shared and cached across queries and evaluation times.
//!
//! An evaluation runs in three phases: `plan` (each series' grid, the
//! anchors its outputs read, cache look-ups), the model over every pass
//! still missing ([`evaluate`]), and `read` (outputs off the anchors).
//! [`select`] is the query core above it, [`registry`] and [`training`]
//! keep the models it runs.

pub mod anomaly;
mod baseline;
mod cache;
pub mod missing;
mod plan;
mod read;
pub mod registry;
pub mod select;
pub mod training;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;

use crate::calendar::DAY_MS;
use crate::labels::Labels;
use crate::model::store::ModelMeta;
use crate::model::{LstmNet, Pass, Shape, Window, predict};
use crate::series::{Output, SeriesKind};
use crate::telemetry::Metrics;
use crate::upstream::SourceSeries;

pub use baseline::Baseline;
pub use cache::Cache;

/// PromQL's lookback delta: an instant query reads no sample older than
/// this (not to be confused with `defaults.lookback`, the model's input
/// window).
pub const STALENESS_MS: i64 = 300_000;
/// Passes per model call.
const BATCH: usize = 1024;
/// Forecasts one evaluation plans at once, at most (about 1.5 KB each at
/// 361 steps ahead, with their inputs).
const MAX_FORECASTS_ALIVE: usize = 200_000;

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
    /// The predictor's one-step error here, normalised: what an anomaly
    /// score measures the next sample's residual in.
    pub sigma: f64,
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

impl Predictor {
    /// How much history before the first evaluation time the predictor
    /// reads (input window, normalisation window, a step of slack, and
    /// with `anomaly` the anomaly score's memory).
    pub fn history_ms(&self, anomaly: bool) -> i64 {
        match self {
            Predictor::Model(m) => {
                let (s, step) = (m.meta.shape, m.meta.step_ms);
                let memory = if anomaly { anomaly_memory(step) } else { 0 };
                (s.history_points() + memory + 2) as i64 * step + STALENESS_MS
            }
            Predictor::Baseline(b) => b.history_ms(anomaly),
        }
    }
}

/// How old a sample may be and still count at a grid of `step_ms`:
/// PromQL's lookback delta, or two steps for sources scraped more slowly.
pub fn staleness_ms(step_ms: i64) -> i64 {
    STALENESS_MS.max(2 * step_ms)
}

/// What every series of one evaluation shares: the request, and the grid
/// the predictor works on.
pub struct Evaluation<'a> {
    predictor: &'a Predictor,
    family: &'a str,
    outputs: &'a [Output],
    /// Evaluation times, ascending, never empty.
    times: &'a [i64],
    step: i64,
    shape: Shape,
    staleness: i64,
    grid_start: i64,
    /// The runs of rows the anomaly scores at `times` read, by phase;
    /// empty when none is asked.
    anomaly_runs: BTreeMap<i64, RowRun>,
    needs_forecast: bool,
    now: i64,
}

impl<'a> Evaluation<'a> {
    /// The grid `predictor` works on for `source`, reaching back far enough
    /// for the first time's inputs; `None` when there are no times.
    fn new(
        predictor: &'a Predictor,
        family: &'a str,
        outputs: &'a [Output],
        times: &'a [i64],
        source: &[SourceSeries],
    ) -> Option<Self> {
        let &t_min = times.first()?;
        let (step, shape) = match predictor {
            Predictor::Model(m) => (m.meta.step_ms, m.meta.shape),
            Predictor::Baseline(b) => {
                let step = b.step_ms(source);
                (step, b.shape(step))
            }
        };
        let needs_anomaly = outputs.iter().any(|o| o.kind == SeriesKind::AnomalyScore);
        // The anomaly score reads the samples of its memory, but
        // forecasts only at the times asked.
        let points_back = (shape.history_points() + 1) as i64;
        let anomaly_runs = if needs_anomaly {
            row_runs(times, step, anomaly_memory(step))
        } else {
            BTreeMap::new()
        };
        Some(Self {
            predictor,
            family,
            outputs,
            times,
            step,
            shape,
            staleness: staleness_ms(step),
            grid_start: t_min.div_euclid(step) * step - points_back * step,
            anomaly_runs,
            needs_forecast: outputs.iter().any(|o| o.kind != SeriesKind::AnomalyScore),
            now: crate::calendar::now_ms(),
        })
    }
}

/// Tells an evaluation that its answer is no longer wanted (the request's
/// deadline passed): it stops at its next check, between batches of
/// forecasts, instead of keeping a core busy for an answer nobody reads.
/// What it computed before stopping stays in the cache.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Asks the evaluation to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a query asks of one family: its outputs at its times.
#[derive(Debug, Clone, Copy)]
pub struct FamilyQuery<'a> {
    /// The family's name.
    pub family: &'a str,
    /// The synthetic series wanted of each source series.
    pub outputs: &'a [Output],
    /// Evaluation times, sorted ascending.
    pub times: &'a [i64],
}

/// Evaluates the query's outputs for every source series at each of its
/// times. Series without data in the model's input window get
/// no samples at those times.
///
/// Three phases: plan every series (grids, anchors needed, cache look-ups),
/// run the model once over every pass still missing, then read each output
/// off its anchors.
pub fn evaluate(
    predictor: &Predictor,
    query: &FamilyQuery,
    source: &[SourceSeries],
    cache: &Cache,
    metrics: &Metrics,
    cancel: &Cancel,
) -> Vec<SyntheticSeries> {
    let FamilyQuery {
        family,
        outputs,
        times,
    } = *query;
    let Some(ev) = Evaluation::new(predictor, family, outputs, times, source) else {
        return Vec::new();
    };
    // A large family is evaluated a share of its series at a time, so that
    // the inputs and forecasts alive at once stay bounded whatever the
    // number of series and times.
    let per_series = ev.times.len();
    let chunk = (MAX_FORECASTS_ALIVE / per_series.max(1)).max(1);
    let mut result = Vec::new();
    for part in source.chunks(chunk) {
        if cancel.is_cancelled() {
            return Vec::new();
        }
        let mut plan = plan::plan(&ev, part, cache, metrics);
        if let Predictor::Model(m) = predictor {
            run_model(m, plan.pending, &mut plan.series, cache, metrics, cancel);
        }
        result.extend(
            part.iter()
                .zip(&plan.series)
                .flat_map(|(series, planned)| read::series_outputs(&ev, series, planned)),
        );
    }
    metrics.series_served.inc_by(result.len() as u64);
    result
}

/// Runs the model over every pending pass, in batches of passes of one
/// length so that few are padded, and caches and records each anchor;
/// stops between batches once cancelled.
fn run_model(
    m: &ServedModel,
    mut pending: Vec<plan::Pending>,
    series: &mut [plan::SeriesPlan],
    cache: &Cache,
    metrics: &Metrics,
    cancel: &Cancel,
) {
    pending.sort_by_key(|p| p.pass.points());
    for chunk in pending.chunks(BATCH) {
        if cancel.is_cancelled() {
            return;
        }
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
                sigma: m.meta.report.one_step_sigma,
            });
            let planned = &mut series[si];
            // An anchor only anomaly rows read holds one step: not a
            // forecast to serve to anyone else.
            if planned.forecast_reads.contains(&w.end) {
                cache.put(key.clone(), Arc::clone(&anchor));
            }
            planned.anchors.insert(w.end, Some(anchor));
        }
    }
}

/// The last grid point strictly before `t`: the anchor whose forecast the
/// sample at `t` is compared with.
fn before(t: i64, step: i64) -> i64 {
    (t - 1).div_euclid(step) * step
}

/// Rows of memory the anomaly score has at a model step of `step_ms`.
pub fn anomaly_memory(step_ms: i64) -> usize {
    anomaly::memory(rows_per_day(step_ms))
}

/// Model steps of `step_ms` in a day, at least one.
fn rows_per_day(step_ms: i64) -> usize {
    (DAY_MS / step_ms.max(1)).max(1) as usize
}

/// A stretch of anomaly rows: consecutive model steps from `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowRun {
    start: i64,
    rows: usize,
}

/// The rows the anomaly scores at `times` read, by their phase on the
/// model grid (a time's row falls on `t`, `t − step`, …): per phase, one
/// run from `memory − 1` steps before its first time to its last time, so
/// that the times of a range query share their rows.
fn row_runs(times: &[i64], step: i64, memory: usize) -> BTreeMap<i64, RowRun> {
    let mut spans: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
    for &t in times {
        let span = spans.entry(t.rem_euclid(step)).or_insert((t, t));
        *span = (span.0.min(t), span.1.max(t));
    }
    spans
        .into_iter()
        .map(|(phase, (first, last))| {
            let start = first - (memory.max(1) as i64 - 1) * step;
            let rows = ((last - start) / step) as usize + 1;
            (phase, RowRun { start, rows })
        })
        .collect()
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
mod tests;
