//! Phase 1 of an evaluation: for every source series, its grid, the anchors
//! the requested outputs read, which of them the cache already holds, the
//! passes the model still has to run for the others, and what the anomaly
//! score knows from the samples alone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::model::window::{Span, sample_points};
use crate::model::{FEATURES, Grid, Pass, Shape, Window};
use crate::upstream::SourceSeries;

use super::cache::{self, Cache};
use super::{Anchor, Evaluation, Predictor, ServedModel, anomaly, before, rows_per_day};
use crate::telemetry::Metrics;

/// The anchors one series needs, by grid index; `None` until computed.
pub type Anchors = BTreeMap<usize, Option<Arc<Anchor>>>;

/// Forecasts of one series that the model still has to make: one pass,
/// and the windows that read it, each with the cache key it goes under.
pub struct Pending {
    /// Index of the series in the evaluation's source.
    pub series: usize,
    /// The network run that serves every window below.
    pub pass: Pass,
    /// The anchors read off the pass, and their cache keys.
    pub windows: Vec<(Window, cache::Key)>,
}

/// One series, planned.
pub struct SeriesPlan {
    /// Where its grid lies (the grid itself is dropped after planning).
    pub span: Span,
    /// Anchors needed; cached or baseline ones already filled in.
    pub anchors: Anchors,
    /// Those a forecast reads, beyond its first step.
    pub forecast_reads: BTreeSet<usize>,
    /// What the anomaly score at each evaluation time knows from the
    /// samples; empty when no score is asked.
    pub anomaly: BTreeMap<i64, anomaly::Context>,
}

/// Every series planned, and the model runs still to do.
pub struct Planned {
    /// Per series, in source order.
    pub series: Vec<SeriesPlan>,
    /// Passes to run, across all series.
    pub pending: Vec<Pending>,
}

/// Fewest series worth a thread of their own when planning.
const MIN_SERIES_PER_THREAD: usize = 256;

/// Plans every series of `source`, large families across threads.
pub fn plan(ev: &Evaluation, source: &[SourceSeries], cache: &Cache, metrics: &Metrics) -> Planned {
    let mut plan = Planned {
        series: Vec::with_capacity(source.len()),
        pending: Vec::new(),
    };
    let planned = map_in_parallel(source, |si, series| {
        plan_series(ev, si, series, cache, metrics)
    });
    for (series, pending) in planned {
        plan.series.push(series);
        plan.pending.extend(pending);
    }
    plan
}

/// One series' grid, the anchors its outputs read, and what the model must
/// still compute for them.
fn plan_series(
    ev: &Evaluation,
    si: usize,
    series: &SourceSeries,
    cache: &Cache,
    metrics: &Metrics,
) -> (SeriesPlan, Vec<Pending>) {
    let (step, t_max) = (ev.step, ev.times[ev.times.len() - 1]);
    let grid = Grid::resample(&series.samples, ev.grid_start, t_max, step, ev.staleness);
    let mut anchors = Anchors::new();
    let mut forecast_reads = BTreeSet::new();
    if ev.needs_forecast {
        for &t in ev.times {
            if let Some(i) = grid.index(t.div_euclid(step) * step) {
                anchors.insert(i, None);
                forecast_reads.insert(i);
            }
        }
    }
    let fingerprint = cache::fingerprint(&series.labels);
    if !ev.anomaly_runs.is_empty() {
        for &t in ev.times {
            if let Some(i) = grid.index(before(t, step)) {
                anchors.insert(i, None);
            }
        }
    }
    let anomaly = anomaly_contexts(ev, series);
    let layouts = Layouts {
        whole: &ev.shape,
        one_step: ev.shape.one_step(),
        forecast_reads: &forecast_reads,
    };
    let pending = match ev.predictor {
        Predictor::Baseline(b) => {
            for (&i, slot) in anchors.iter_mut() {
                *slot = b.anchor(&grid, i, layouts.of(i)).map(Arc::new);
            }
            Vec::new()
        }
        Predictor::Model(m) => {
            let lookup = Lookup {
                ev,
                model: m,
                fingerprint,
                cache,
                metrics,
            };
            lookup.pending(si, &grid, &mut anchors, &layouts)
        }
    };
    // The grid itself (a day of values and their prefix sums) ends here,
    // so that a large family's grids are never all alive at once.
    let plan = SeriesPlan {
        span: grid.span(),
        anchors,
        forecast_reads,
        anomaly,
    };
    (plan, pending)
}

/// The anomaly score's context at every evaluation time, from the samples
/// of the rows of its phase: planned here, across threads for a large
/// family, because it is most of an instant score's work.
fn anomaly_contexts(ev: &Evaluation, series: &SourceSeries) -> BTreeMap<i64, anomaly::Context> {
    let step = ev.step;
    let mut contexts = BTreeMap::new();
    for (&phase, &run) in &ev.anomaly_runs {
        let values = sample_points(&series.samples, run.start, run.rows, step, ev.staleness);
        let times: Vec<i64> = ev
            .times
            .iter()
            .copied()
            .filter(|t| t.rem_euclid(step) == phase)
            .collect();
        let asked: Vec<usize> = times
            .iter()
            .map(|t| ((t - run.start) / step) as usize)
            .collect();
        let origin = run.start.div_euclid(step);
        let found = anomaly::contexts(values, rows_per_day(step), origin, &asked);
        contexts.extend(times.into_iter().zip(found));
    }
    contexts
}

/// The layouts a series' anchors are built in: the whole forecast where
/// one is read off the anchor, one step where only anomaly rows read it.
struct Layouts<'a> {
    whole: &'a Shape,
    one_step: Shape,
    forecast_reads: &'a BTreeSet<usize>,
}

impl Layouts<'_> {
    fn of(&self, anchor: usize) -> &Shape {
        if self.forecast_reads.contains(&anchor) {
            self.whole
        } else {
            &self.one_step
        }
    }
}

/// Cache look-ups for one series' model forecasts.
struct Lookup<'a> {
    ev: &'a Evaluation<'a>,
    model: &'a ServedModel,
    fingerprint: u64,
    cache: &'a Cache,
    metrics: &'a Metrics,
}

impl Lookup<'_> {
    fn key(&self, anchor_ms: i64, input: u64) -> cache::Key {
        cache::Key {
            family: self.ev.family.to_owned(),
            version: self.model.meta.version,
            series: self.fingerprint,
            anchor_ms,
            input,
        }
    }

    fn get(&self, key: &cache::Key) -> Option<Arc<Anchor>> {
        let hit = self.cache.get(key);
        if hit.is_some() {
            self.metrics.cache_hits.inc();
        }
        hit
    }

    /// Fills `anchors` from the cache and returns the passes still to run.
    ///
    /// Complete history makes a forecast final; until then it holds for
    /// exactly these inputs. So settled anchors are looked up before any
    /// input is built, and recent ones need their inputs for their key.
    fn pending(
        &self,
        si: usize,
        grid: &Grid,
        anchors: &mut Anchors,
        layouts: &Layouts,
    ) -> Vec<Pending> {
        let shape = &self.ev.shape;
        let recent = |i: usize| grid.time(i) + self.ev.staleness >= self.ev.now;
        let mut passes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (&i, slot) in anchors.iter_mut() {
            if !recent(i) {
                *slot = self.get(&self.key(grid.time(i), 0));
            }
            if slot.is_none()
                && let Some(start) = grid.pass_start(i, shape)
            {
                passes.entry(start).or_default().push(i);
            }
        }
        let mut pending = Vec::new();
        for (start, ends) in passes {
            let points = ends.last().map_or(0, |&end| end + 1 - start);
            let Some(mut pass) = grid.pass(start, points, shape) else {
                continue;
            };
            let mut windows = Vec::new();
            for end in ends {
                let Some(w) = grid.window(end, layouts.of(end)) else {
                    continue;
                };
                let input = if recent(end) { w.digest(&pass) } else { 0 };
                let key = self.key(grid.time(end), input);
                match recent(end).then(|| self.get(&key)).flatten() {
                    Some(hit) => {
                        anchors.insert(end, Some(hit));
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
}

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
