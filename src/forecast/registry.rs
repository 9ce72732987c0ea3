//! Per-family model state: models loaded from the model store at
//! start, trained in the background on first use and retrained on a
//! schedule. A query never waits for training: it gets whatever predictor
//! is current, the seasonal baseline until a model is ready.
//!
//! A family whose history is still too short to train on waits for it
//! rather than failing: it is tried again when enough history can exist,
//! and neither counts as a failed run nor shows as a failed model (a
//! newly scraped metric would otherwise raise the failure alerts).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use burn::tensor::Device;
use serde::Serialize;

use super::training::{TrainingPlan, fit};
use super::{Baseline, Cache, Predictor, ServedModel};
use crate::calendar::{now_ms, rfc3339};
use crate::cluster::Trainer;
use crate::config::Config;
use crate::model::store::{Head, ModelStore, StoreError};
use crate::model::train::{Epoch, Shortfall, TrainError};
use crate::telemetry::Metrics;
use crate::upstream::{FamilySource, TrainingCaps, TrainingHistory, Upstream};

/// How often the scheduler looks for due retraining and retries.
const SCHEDULE_TICK: Duration = Duration::from_secs(30);
/// First retry delay after a failed training; doubles up to an hour.
const RETRY_BASE_MS: i64 = 60_000;
const RETRY_MAX_MS: i64 = 3_600_000;
/// Step used to evaluate configured expressions when no step is configured.
const EXPR_STEP_MS: i64 = 60_000;

/// The lifecycle state of a family's model, as `/api/v1/models` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Known, not trained yet (perhaps queued); the baseline answers.
    Pending,
    /// First training under way; the baseline answers.
    Training,
    /// The history is too short to train on yet; the baseline answers
    /// until it is long enough.
    WaitingForHistory,
    /// A trained model answers (it may be retraining in the background).
    Ready,
    /// Training failed and no model exists; the baseline answers.
    Failed,
}

impl State {
    const ALL: [State; 5] = [
        State::Pending,
        State::Training,
        State::WaitingForHistory,
        State::Ready,
        State::Failed,
    ];

    /// The state as `/api/v1/models` and `/metrics` name it.
    pub fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Training => "training",
            State::WaitingForHistory => "waiting_for_history",
            State::Ready => "ready",
            State::Failed => "failed",
        }
    }
}

/// A family's wait for history, as last measured.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    shortfall: Shortfall,
    /// When it was measured (Unix ms).
    checked_ms: i64,
}

#[derive(Default)]
struct Entry {
    model: Option<Arc<ServedModel>>,
    /// A training task exists (running or waiting for its turn).
    scheduled: bool,
    /// A training run is under way.
    running: bool,
    error: Option<String>,
    failures: u32,
    /// The last run found too little history: when, and how much.
    waiting: Option<Waiting>,
    /// When training is tried again, after a failure or a wait (Unix ms).
    retry_at_ms: i64,
    /// The last finished epoch of the run under way.
    progress: Option<Epoch>,
    /// Whether the model served was loaded from the model store rather
    /// than trained by this process.
    from_store: bool,
    /// When the newest model in the store was trained (Unix ms).
    saved_at_ms: Option<i64>,
    /// When the family was first asked for (Unix ms).
    first_asked_ms: i64,
}

impl Entry {
    fn state(&self) -> State {
        if self.model.is_some() {
            State::Ready
        } else if self.running {
            State::Training
        } else if self.waiting.is_some() {
            State::WaitingForHistory
        } else if self.error.is_some() {
            State::Failed
        } else {
            State::Pending
        }
    }

    /// How long the family has gone without a fresh model: since its
    /// newest model (served or saved by another replica) was trained, or
    /// since it was first asked for.
    fn age_ms(&self, now: i64) -> i64 {
        let trained = self.model.as_ref().map(|m| m.meta.trained_at_ms);
        now - trained.max(self.saved_at_ms).unwrap_or(self.first_asked_ms)
    }

    /// Whether the scheduler should train the family at `now`.
    fn due(&self, now: i64, retrain_interval_ms: i64) -> bool {
        !self.scheduled
            && now >= self.retry_at_ms
            && match &self.model {
                Some(m) => now - m.meta.trained_at_ms >= retrain_interval_ms,
                None => self.error.is_some() || self.waiting.is_some(),
            }
    }
}

/// How a training run ended.
enum Outcome {
    /// Boxed: a served model is large beside the other outcomes.
    Trained(Box<ServedModel>),
    /// Too little history: not a failure, a time to try again.
    Waiting(Shortfall),
    /// Another replica saved this generation first: the result is
    /// discarded for the winner's.
    Superseded(u64),
    Failed(anyhow::Error),
}

impl From<anyhow::Result<ServedModel>> for Outcome {
    fn from(result: anyhow::Result<ServedModel>) -> Self {
        match result {
            Ok(model) => Outcome::Trained(Box::new(model)),
            Err(e) => {
                if let Some(TrainError::NotEnoughHistory(shortfall)) = e.downcast_ref() {
                    Outcome::Waiting(*shortfall)
                } else if let Some(StoreError::Superseded { current, .. }) = e.downcast_ref() {
                    Outcome::Superseded(*current)
                } else {
                    Outcome::Failed(e)
                }
            }
        }
    }
}

/// How much history a family waiting for it has, and needs.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryStatus {
    /// History there is now: as measured, plus the time since (e.g. `22m`).
    pub available: String,
    /// History training needs at the family's step (e.g. `9h15m`).
    pub needed: String,
    /// Both in one phrase: `22m of ~9h15m`.
    pub summary: String,
    /// When the history will be long enough, and training is tried again
    /// (RFC 3339).
    pub ready_at: String,
}

/// One family's entry in `/api/v1/models`.
#[derive(Debug, Serialize)]
pub struct ModelStatus {
    /// Family name.
    pub family: String,
    /// Lifecycle state.
    pub state: State,
    /// What answers queries now: `lstm` or `seasonal_baseline`.
    pub predictor: &'static str,
    /// Model version (0 before the first training).
    pub version: u64,
    /// When the serving model finished training (RFC 3339).
    pub trained_at: Option<String>,
    /// Validation loss of the best epoch: the step-weighted relative
    /// absolute error, the mean over steps ahead of the model's absolute
    /// error divided by the flat forecast's (1 = no better than flat).
    pub validation_error: Option<f64>,
    /// Validation mean absolute error (normalised units).
    pub validation_mae: Option<f64>,
    /// The flat last-value forecast's error on the same windows.
    pub naive_mae: Option<f64>,
    /// Model step.
    pub step: Option<String>,
    /// Training history range (RFC 3339).
    pub training_window: Option<[String; 2]>,
    /// Source series trained on.
    pub series: Option<usize>,
    /// When the model was trained on a sample of the family's series, how
    /// many it had and the settings that bounded the sample.
    pub sampled: Option<String>,
    /// Among replicas (`cluster.replicas` > 1, or serve-only): which one
    /// trains the family, `here` or `replica N`.
    pub trainer: Option<String>,
    /// Where the model served comes from: `trained` by this process, or
    /// `loaded` from the model store (at start, or saved since by
    /// another process, noticed within a scheduler tick of 30 s).
    pub origin: Option<&'static str>,
    /// Epochs run.
    pub epochs: Option<usize>,
    /// Seconds the last successful training took.
    pub training_seconds: Option<f64>,
    /// Whether a (re)training run is under way.
    pub training: bool,
    /// Whether a training run waits for its turn (one runs at a time).
    pub queued: bool,
    /// The last training error.
    pub error: Option<String>,
    /// When training is tried again after a failure or a wait for history
    /// (RFC 3339).
    pub retry_at: Option<String>,
    /// While waiting for history: how much there is and is needed.
    pub history: Option<HistoryStatus>,
    /// The run under way: epochs done and the most it may take.
    pub epoch: Option<[usize; 2]>,
}

/// All families' models.
pub struct Registry {
    config: Arc<Config>,
    upstream: Arc<Upstream>,
    device: Device,
    store: ModelStore,
    metrics: Arc<Metrics>,
    cache: Arc<Cache>,
    entries: Mutex<BTreeMap<String, Entry>>,
    /// One training at a time: training is CPU-bound and must leave room
    /// for queries.
    training: tokio::sync::Semaphore,
    /// Whether a query for an untrained family starts its training.
    on_demand: AtomicBool,
}

impl Registry {
    /// A registry over the model store `store`.
    pub fn new(
        config: Arc<Config>,
        upstream: Arc<Upstream>,
        device: Device,
        store: ModelStore,
        metrics: Arc<Metrics>,
        cache: Arc<Cache>,
    ) -> Self {
        Self {
            config,
            upstream,
            device,
            store,
            metrics,
            cache,
            entries: Mutex::new(BTreeMap::new()),
            training: tokio::sync::Semaphore::new(1),
            on_demand: AtomicBool::new(true),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        crate::lock::lock(&self.entries)
    }

    /// Loads every saved model newer than the one served: at start all of
    /// them, then, from the scheduler, those another process (`promcast
    /// train`, another replica) saved since. Corrupt models are moved
    /// aside (the family then retrains); a store out of reach is tried
    /// again at the next tick.
    pub async fn load_saved(&self) {
        match self.store.heads().await {
            Ok(heads) => {
                for head in heads {
                    self.load_newer(head).await;
                }
            }
            Err(e) => {
                self.metrics.model_store_error();
                tracing::warn!(store = %self.store, error = %e, "could not list the model store; trying again in 30 s");
            }
        }
        self.update_gauges();
    }

    async fn load_newer(&self, Head { family, saved }: Head) {
        let served = self.lock().get(&family).map_or((false, 0), |e| {
            (e.running, e.model.as_ref().map_or(0, |m| m.meta.version))
        });
        if let Ok(saved) = &saved {
            self.lock().entry(family.clone()).or_default().saved_at_ms = Some(saved.trained_at_ms);
        }
        let newer = saved.map_or(true, |s| s.version > served.1);
        // A run here installs what it saves.
        if served.0 || !newer {
            return;
        }
        match self.store.load(&family, &self.device).await {
            Ok(stored) => {
                let version = stored.meta.version;
                let model = Arc::new(ServedModel {
                    meta: stored.meta,
                    net: stored.net,
                    device: self.device.clone(),
                });
                let mut entries = self.lock();
                let entry = entries.entry(family.clone()).or_default();
                if entry
                    .model
                    .as_ref()
                    .is_some_and(|m| m.meta.version >= version)
                {
                    return;
                }
                tracing::info!(
                    family,
                    version,
                    replaces = served.1,
                    store = %self.store,
                    "loaded model from the model store"
                );
                entry.model = Some(model);
                entry.from_store = true;
                drop(entries);
                self.cache.evict_family(&family);
            }
            Err(e) if e.is_corrupt() => {
                tracing::warn!(family, error = %e, "model unusable, moved aside; the family will retrain");
                self.store.quarantine(&family).await;
            }
            Err(e) => {
                self.metrics.model_store_error();
                tracing::warn!(family, error = %e, "could not load the saved model; trying again in 30 s");
            }
        }
    }

    /// Families known to the registry, the configuration and the upstream.
    pub fn families(&self) -> Vec<String> {
        let mut all: Vec<String> = self.lock().keys().cloned().collect();
        all.extend(self.config.series.iter().map(|s| s.name.clone()));
        all.extend(self.upstream.builtin_families());
        all.sort();
        all.dedup();
        all
    }

    /// What to read from the upstream for `family`.
    pub fn source<'a>(&'a self, family: &'a str) -> FamilySource<'a> {
        FamilySource {
            name: family,
            expr: self.config.series(family).and_then(|s| s.expr.as_deref()),
            step_ms: self
                .config
                .step(family)
                .map_or(EXPR_STEP_MS, |s| s.as_millis_i64()),
        }
    }

    /// The predictor answering `family` now.
    pub fn predictor(&self, family: &str) -> Predictor {
        if let Some(model) = self.lock().get(family).and_then(|e| e.model.clone()) {
            return Predictor::Model(model);
        }
        let max = self.config.max_horizon(family).as_millis_i64();
        Predictor::Baseline(Baseline::new(
            self.config.step(family).map(|s| s.as_millis_i64()),
            self.config.defaults.lookback.as_millis_i64(),
            max,
            self.config.model.interval_coverage,
        ))
    }

    /// Who trains `family` among replicas (see [`crate::cluster`]): the
    /// first-ranked one, or the second once the family's newest model is
    /// older than twice the retrain interval. `None` alone: this process
    /// trains every family.
    fn trainer(&self, family: &str, entry: &Entry, now: i64) -> Option<Trainer> {
        let cluster = &self.config.cluster;
        if cluster.replicas <= 1 && !cluster.serve_only {
            return None;
        }
        let interval = self.config.defaults.retrain_interval.as_millis_i64();
        let me = cluster.ordinal.unwrap_or(0);
        Some(cluster.trainer(me, family, entry.age_ms(now), interval))
    }

    fn trains_here(&self, family: &str, entry: &Entry, now: i64) -> bool {
        self.trainer(family, entry, now)
            .is_none_or(|t| t == Trainer::Here)
    }

    /// Makes sure `family` has a model or is getting one: starts training
    /// in the background when it has none and none is running (respecting
    /// the retry back-off after failures and the wait for history).
    pub fn ensure_trained(self: &Arc<Self>, family: &str) {
        if !self.on_demand.load(Ordering::Relaxed) {
            return;
        }
        let start = {
            let now = now_ms();
            let mut entries = self.lock();
            let entry = entries.entry(family.to_owned()).or_insert_with(|| Entry {
                first_asked_ms: now,
                ..Entry::default()
            });
            let due = entry.model.is_none()
                && !entry.scheduled
                && now >= entry.retry_at_ms
                && self.trains_here(family, entry, now);
            if due {
                entry.scheduled = true;
            }
            due
        };
        self.update_gauges();
        if start {
            self.spawn_training(family.to_owned());
        }
    }

    fn spawn_training(self: &Arc<Self>, family: String) {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.train_family(family).await });
    }

    /// Retrains families whose model is older than the retrain interval,
    /// retries failed ones and those whose history is now long enough,
    /// forever.
    pub fn spawn_scheduler(self: &Arc<Self>) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SCHEDULE_TICK);
            loop {
                tick.tick().await;
                me.load_saved().await;
                let now = now_ms();
                let interval = me.config.defaults.retrain_interval.as_millis_i64();
                let due: Vec<String> = {
                    let mut entries = me.lock();
                    entries
                        .iter_mut()
                        .filter(|(f, e)| e.due(now, interval) && me.trains_here(f, e, now))
                        .map(|(f, e)| {
                            e.scheduled = true;
                            f.clone()
                        })
                        .collect()
                };
                for family in due {
                    me.spawn_training(family);
                }
            }
        });
    }

    /// Stops queries from starting training, for short-lived processes
    /// (`promcast forecast`) that would exit before it finished.
    pub fn disable_on_demand_training(&self) {
        self.on_demand.store(false, Ordering::Relaxed);
    }

    /// Trains `family` now (after any run under way) and returns its status
    /// afterwards: for operators' offline training.
    pub async fn train_now(self: &Arc<Self>, family: &str) -> Option<ModelStatus> {
        self.lock().entry(family.to_owned()).or_default().scheduled = true;
        Arc::clone(self).train_family(family.to_owned()).await;
        self.statuses().into_iter().find(|s| s.family == family)
    }

    async fn train_family(self: Arc<Self>, family: String) {
        let Ok(_permit) = self.training.acquire().await else {
            return;
        };
        {
            let mut entries = self.lock();
            let entry = entries.entry(family.clone()).or_default();
            entry.running = true;
            entry.progress = None;
        }
        self.update_gauges();
        tracing::info!(family, "training started");
        let started = std::time::Instant::now();
        let outcome = Outcome::from(self.run_training(&family).await);
        let seconds = started.elapsed().as_secs_f64();
        match &outcome {
            Outcome::Trained(_) => self.metrics.training_run(true, seconds),
            Outcome::Failed(_) => self.metrics.training_run(false, seconds),
            Outcome::Superseded(_) => self.metrics.model_store_conflict(),
            Outcome::Waiting(_) => {}
        }
        let superseded = matches!(outcome, Outcome::Superseded(_));
        {
            let mut entries = self.lock();
            let entry = entries.entry(family.clone()).or_default();
            entry.scheduled = false;
            entry.running = false;
            entry.waiting = None;
            match outcome {
                Outcome::Trained(model) => {
                    tracing::info!(
                        family,
                        version = model.meta.version,
                        seconds,
                        epochs = model.meta.report.epochs,
                        validation_mae = model.meta.report.validation_mae,
                        naive_mae = model.meta.report.naive_mae,
                        "training finished"
                    );
                    entry.model = Some(Arc::from(model));
                    entry.from_store = false;
                    entry.error = None;
                    entry.failures = 0;
                    entry.retry_at_ms = 0;
                }
                Outcome::Waiting(shortfall) => {
                    let now = now_ms();
                    entry.retry_at_ms = now + shortfall.wait_ms();
                    tracing::info!(
                        family,
                        history = %shortfall,
                        step = %shortfall.step(),
                        retry_at = rfc3339(entry.retry_at_ms),
                        "waiting for history: too short to train on yet; the seasonal baseline answers until then"
                    );
                    entry.waiting = Some(Waiting {
                        shortfall,
                        checked_ms: now,
                    });
                    entry.error = None;
                    entry.failures = 0;
                }
                Outcome::Superseded(current) => {
                    tracing::info!(
                        family,
                        current,
                        "another replica saved this generation first; this training is discarded and its model loaded"
                    );
                }
                Outcome::Failed(e) => {
                    entry.failures += 1;
                    let delay = retry_delay_ms(entry.failures);
                    entry.retry_at_ms = now_ms() + delay;
                    tracing::warn!(family, error = %e, retry_in_s = delay / 1000, "training failed");
                    entry.error = Some(format!("{e:#}"));
                }
            }
        }
        self.cache.evict_family(&family);
        if superseded {
            self.load_saved().await;
        }
        self.update_gauges();
    }

    async fn run_training(self: &Arc<Self>, family: &str) -> anyhow::Result<ServedModel> {
        let end = now_ms();
        let start = end - self.config.defaults.train_window.as_millis_i64();
        let limits = &self.config.limits;
        let caps = TrainingCaps {
            series: limits.max_training_series,
            samples: limits.max_training_samples,
        };
        let TrainingHistory {
            series: history,
            available,
        } = self
            .upstream
            .fetch_for_training(self.source(family), start, end, caps)
            .await?;
        if history.len() < available {
            tracing::info!(
                family,
                series = history.len(),
                available,
                "training on a sample of the family's series (limits.max_training_series, limits.max_training_samples)"
            );
        }
        if history.is_empty() {
            anyhow::bail!("the upstream has no series for {family:?} in the training window");
        }
        let current = self.lock().get(family).and_then(|e| e.model.clone());
        // The generation this training becomes, fixed now: in an object
        // store, it is saved only if nobody saved it (or a later one) in
        // the meantime.
        let stored = self.store.generation(family).await?;
        let plan = TrainingPlan {
            family: family.to_owned(),
            version: current.as_ref().map_or(0, |m| m.meta.version).max(stored) + 1,
            step_ms: self.config.step(family).map(|s| s.as_millis_i64()),
            lookback_ms: self.config.defaults.lookback.as_millis_i64(),
            max_horizon_ms: self.config.max_horizon(family).as_millis_i64(),
            train: self.config.model.clone(),
            warm_start: current.map(|m| (m.meta.shape, m.net.clone())),
        };
        let device = self.device.clone();
        let me = Arc::clone(self);
        let (mut meta, net) = tokio::task::spawn_blocking(move || {
            let progress = |epoch: Epoch| {
                if let Some(entry) = me.lock().get_mut(&plan.family) {
                    entry.progress = Some(epoch);
                }
            };
            fit(&plan, &history, (start, end), &device, &progress)
        })
        .await??;
        meta.series_available = available;
        let meta = self.store.save(&net, meta).await?;
        Ok(ServedModel {
            meta,
            net,
            device: self.device.clone(),
        })
    }

    fn update_gauges(&self) {
        let entries = self.lock();
        let counts: Vec<(&'static str, i64)> = State::ALL
            .iter()
            .map(|s| {
                (
                    s.name(),
                    entries.values().filter(|e| e.state() == *s).count() as i64,
                )
            })
            .collect();
        drop(entries);
        self.metrics.set_models(&counts);
    }

    /// The state of every family, for `/api/v1/models`.
    pub fn statuses(&self) -> Vec<ModelStatus> {
        let now = now_ms();
        let entries = self.lock();
        entries
            .iter()
            .map(|(family, e)| {
                let meta = e.model.as_ref().map(|m| &m.meta);
                ModelStatus {
                    family: family.clone(),
                    state: e.state(),
                    predictor: if meta.is_some() {
                        "lstm"
                    } else {
                        "seasonal_baseline"
                    },
                    version: meta.map_or(0, |m| m.version),
                    trained_at: meta.map(|m| rfc3339(m.trained_at_ms)),
                    validation_error: meta.map(|m| m.report.validation_loss),
                    validation_mae: meta.map(|m| m.report.validation_mae),
                    naive_mae: meta.map(|m| m.report.naive_mae),
                    step: meta.map(|m| {
                        crate::duration::PromDuration::from_millis(m.step_ms.max(0) as u64)
                            .to_string()
                    }),
                    training_window: meta
                        .map(|m| [rfc3339(m.history_ms.0), rfc3339(m.history_ms.1)]),
                    series: meta.map(|m| m.series),
                    sampled: meta.filter(|m| m.series_available > m.series).map(|m| {
                        format!(
                            "{} of {} series (limits.max_training_series, limits.max_training_samples)",
                            m.series, m.series_available
                        )
                    }),
                    origin: meta.map(|_| if e.from_store { "loaded" } else { "trained" }),
                    trainer: self.trainer(family, e, now).map(|t| match t {
                        Trainer::Here => "here".to_owned(),
                        Trainer::Replica(n) => format!("replica {n}"),
                        Trainer::Elsewhere => "another replica (this one serves only)".to_owned(),
                    }),
                    epochs: meta.map(|m| m.report.epochs),
                    training_seconds: meta.map(|m| m.report.seconds),
                    training: e.running,
                    queued: e.scheduled && !e.running,
                    error: e.error.clone(),
                    retry_at: ((e.error.is_some() || e.waiting.is_some()) && e.retry_at_ms > 0)
                        .then(|| rfc3339(e.retry_at_ms)),
                    history: e.waiting.map(|w| {
                        let grown = w.shortfall.after(now - w.checked_ms);
                        HistoryStatus {
                            available: grown.have().to_string(),
                            needed: grown.need().to_string(),
                            summary: grown.to_string(),
                            ready_at: rfc3339(w.checked_ms + w.shortfall.wait_ms()),
                        }
                    }),
                    epoch: e
                        .progress
                        .filter(|_| e.running)
                        .map(|p| [p.epoch, p.max_epochs]),
                }
            })
            .collect()
    }
}

/// The wait before retrying after `failures` failed runs in a row: one
/// minute, doubling up to an hour, so that a family whose upstream is down
/// neither hammers it nor waits long once it is back.
fn retry_delay_ms(failures: u32) -> i64 {
    (RETRY_BASE_MS << failures.saturating_sub(1).min(10)).min(RETRY_MAX_MS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::UpstreamConfig;
    use crate::upstream::prometheus::Client;

    fn registry(
        config: Config,
        upstream: Upstream,
        metrics: Arc<Metrics>,
        dir: &tempfile::TempDir,
    ) -> Arc<Registry> {
        Arc::new(Registry::new(
            Arc::new(config),
            Arc::new(upstream),
            Device::flex(),
            ModelStore::Directory(dir.path().to_owned()),
            metrics,
            Arc::new(Cache::new(1024)),
        ))
    }

    /// The family's failures, retry time and state once no run is
    /// scheduled, waiting up to 10 s for that.
    async fn settled(registry: &Registry, family: &str) -> (u32, i64, State) {
        for _ in 0..200 {
            {
                let entries = registry.lock();
                let e = &entries[family];
                if !e.scheduled {
                    return (e.failures, e.retry_at_ms, e.state());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("training did not finish within 10 s");
    }

    #[test]
    fn retry_delay_doubles_up_to_an_hour() {
        let minutes: Vec<i64> = (1..=9).map(|f| retry_delay_ms(f) / 60_000).collect();
        assert_eq!(minutes, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay_ms(u32::MAX), RETRY_MAX_MS);
    }

    /// A family whose upstream refuses connections fails, is not retried
    /// before its back-off ends however often it is queried, and then
    /// backs off twice as long.
    #[tokio::test]
    async fn failed_training_backs_off() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url: url::Url = format!("http://{}", closed.local_addr().unwrap())
            .parse()
            .unwrap();
        drop(closed);
        let metrics = Arc::new(Metrics::new());
        let client = Client::new(url, &UpstreamConfig::default()).unwrap();
        let upstream = Upstream::prometheus(client, Arc::clone(&metrics));
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(Config::default(), upstream, metrics, &dir);

        let before = now_ms();
        registry.ensure_trained("fam");
        let (failures, retry_at, state) = settled(&registry, "fam").await;
        assert_eq!((failures, state), (1, State::Failed));
        assert!(
            (before + RETRY_BASE_MS..=now_ms() + RETRY_BASE_MS).contains(&retry_at),
            "retry at {retry_at}, now {}",
            now_ms()
        );
        let status = registry.statuses().pop().unwrap();
        assert!(status.error.unwrap().contains("upstream"));
        assert!(status.retry_at.is_some());
        assert!(status.history.is_none());

        for _ in 0..5 {
            registry.ensure_trained("fam");
        }
        assert_eq!(
            settled(&registry, "fam").await.0,
            1,
            "retried during the back-off"
        );

        // The back-off has passed: the next query retries, fails again and
        // waits twice as long.
        registry.lock().get_mut("fam").unwrap().retry_at_ms = 0;
        let before = now_ms();
        registry.ensure_trained("fam");
        let (failures, retry_at, _) = settled(&registry, "fam").await;
        assert_eq!(failures, 2);
        assert!(retry_at >= before + 2 * RETRY_BASE_MS);
    }

    /// An hour of history where training needs about nine: the family
    /// waits for history, which is neither a failed run nor a failed
    /// model, says how much it has and needs, and is tried again when the
    /// history can be long enough, not before, by query or schedule.
    #[tokio::test]
    async fn short_history_waits_instead_of_failing() {
        const FAMILY: &str = "demo_cpu_usage_percent";
        let mut config = Config::default();
        config.defaults.train_window = crate::duration::PromDuration::hours(1);
        let metrics = Arc::new(Metrics::new());
        let upstream = Upstream::demo(Arc::clone(&metrics));
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(config, upstream, Arc::clone(&metrics), &dir);

        let before = now_ms();
        registry.ensure_trained(FAMILY);
        let (failures, retry_at, state) = settled(&registry, FAMILY).await;
        assert_eq!((failures, state), (0, State::WaitingForHistory));
        let status = registry.statuses().pop().unwrap();
        assert_eq!(
            (status.error, status.predictor),
            (None, "seasonal_baseline")
        );
        let history = status.history.expect("history status");
        // One-minute demo samples: a 1m step, 564 of them.
        assert_eq!(history.needed, "9h24m");
        assert!(
            ["59m of ~9h24m", "1h of ~9h24m"].contains(&history.summary.as_str()),
            "{history:?}"
        );
        // Tried again when the missing ~8h23m have passed.
        let wait = retry_at - before;
        assert!(
            (8 * 3_600_000..9 * 3_600_000).contains(&wait),
            "retry in {wait} ms"
        );
        assert_eq!(status.retry_at.as_deref(), Some(history.ready_at.as_str()));

        let text = metrics.encode();
        for line in [
            r#"promcast_models{state="waiting_for_history"} 1"#,
            r#"promcast_models{state="failed"} 0"#,
            r#"promcast_training_runs_total{result="failure"} 0"#,
            r#"promcast_training_runs_total{result="success"} 0"#,
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }

        // Queries before then start nothing; the scheduler does not either.
        for _ in 0..5 {
            registry.ensure_trained(FAMILY);
        }
        assert!(
            !registry.lock()[FAMILY].scheduled,
            "retried before the history can suffice"
        );
        let now = now_ms();
        assert!(!registry.lock()[FAMILY].due(now, i64::MAX));
        assert!(registry.lock()[FAMILY].due(retry_at, i64::MAX));
    }

    /// A model another process saves into the directory (a newer version)
    /// replaces the one served at the next load, and says where it came
    /// from; an older or equal one does not.
    #[tokio::test]
    async fn newer_models_saved_by_others_are_loaded() {
        use crate::model::network::{LstmNet, NetSpec};
        const FAMILY: &str = "cpu";
        let metrics = Arc::new(Metrics::new());
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(
            Config::default(),
            Upstream::demo(Arc::clone(&metrics)),
            metrics,
            &dir,
        );
        let spec = NetSpec {
            inputs: crate::model::FEATURES,
            window: 4,
            hidden: 4,
            layers: 1,
            outputs: 3,
        };
        let net = LstmNet::new(spec, &Device::flex());
        let served = |registry: &Registry| match registry.predictor(FAMILY) {
            Predictor::Model(m) => m.meta.version,
            Predictor::Baseline(_) => 0,
        };
        let store = ModelStore::Directory(dir.path().to_owned());
        let meta = crate::model::store::tests::meta;
        store.save(&net, meta(spec, 1)).await.unwrap();
        registry.load_saved().await;
        assert_eq!(served(&registry), 1);
        store.save(&net, meta(spec, 5)).await.unwrap();
        registry.load_saved().await;
        assert_eq!(served(&registry), 5);
        let status = registry.statuses().pop().unwrap();
        assert_eq!(status.origin, Some("loaded"));
        registry.load_saved().await;
        assert_eq!(served(&registry), 5);
    }

    /// Two trainers of one family on one bucket (two replicas that both
    /// believe they train it) race for its first generation: one saves it,
    /// the other discards its result, counts the conflict and serves the
    /// winner's model, the same bytes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_raced_generation_is_saved_once_and_the_loser_counted() {
        const FAMILY: &str = "demo_cpu_usage_percent";
        let moto = crate::model::store::moto().await;
        let config = Config::parse(
            "model:\n  hidden: 4\n  max_epochs: 1\n  windows_per_epoch: 64\n  patience: 1\n",
            "test",
        )
        .unwrap();
        let replicas: Vec<(Arc<Registry>, Arc<Metrics>)> = (0..2)
            .map(|_| {
                let metrics = Arc::new(Metrics::new());
                let store = ModelStore::open(&moto.config("race")).unwrap();
                let registry = Arc::new(Registry::new(
                    Arc::new(config.clone()),
                    Arc::new(Upstream::demo(Arc::clone(&metrics))),
                    Device::flex(),
                    store,
                    Arc::clone(&metrics),
                    Arc::new(Cache::new(1024)),
                ));
                (registry, metrics)
            })
            .collect();
        let runs = replicas.iter().map(|(registry, _)| {
            let registry = Arc::clone(registry);
            tokio::spawn(async move { registry.train_now(FAMILY).await.unwrap() })
        });
        let mut statuses = Vec::new();
        for run in runs.collect::<Vec<_>>() {
            statuses.push(run.await.unwrap());
        }
        let conflicts: Vec<bool> = replicas
            .iter()
            .map(|(_, metrics)| {
                metrics
                    .encode()
                    .contains("promcast_model_store_conflicts_total 1")
            })
            .collect();
        assert_eq!(
            conflicts.iter().filter(|c| **c).count(),
            1,
            "one loser: {conflicts:?}"
        );
        let mut origins: Vec<_> = statuses.iter().map(|s| (s.version, s.origin)).collect();
        origins.sort();
        assert_eq!(origins, [(1, Some("loaded")), (1, Some("trained"))]);
        let weights: Vec<Vec<u8>> = replicas
            .iter()
            .map(|(registry, _)| match registry.predictor(FAMILY) {
                Predictor::Model(m) => m.net.to_bytes().unwrap().to_vec(),
                Predictor::Baseline(_) => panic!("no model served"),
            })
            .collect();
        assert!(
            weights[0] == weights[1],
            "the replicas serve different weights"
        );
    }

    /// Among three replicas, only the family's first-ranked one trains it;
    /// a query at another starts nothing (it answers with the baseline) and
    /// `/api/v1/models` names the trainer; a serve-only replica trains
    /// nothing.
    #[tokio::test]
    async fn only_the_familys_trainer_trains_it() {
        const FAMILY: &str = "demo_cpu_usage_percent";
        let mut config = Config::default();
        config.cluster.replicas = 3;
        let three = config.cluster;
        let first = three.ranking(FAMILY)[0];
        let serve_only = crate::cluster::ClusterConfig {
            serve_only: true,
            ordinal: Some(first),
            ..three
        };
        let replicas = (0..3).map(|ordinal| crate::cluster::ClusterConfig {
            ordinal: Some(ordinal),
            ..three
        });
        for cluster in replicas.chain([serve_only]) {
            config.cluster = cluster;
            let metrics = Arc::new(Metrics::new());
            let dir = tempfile::tempdir().unwrap();
            let upstream = Upstream::demo(Arc::clone(&metrics));
            let registry = registry(config.clone(), upstream, metrics, &dir);
            let trains = cluster.ordinal == Some(first) && !cluster.serve_only;
            let now = now_ms();
            let entry = Entry {
                first_asked_ms: now,
                ..Entry::default()
            };
            assert_eq!(
                registry.trains_here(FAMILY, &entry, now),
                trains,
                "{cluster:?}"
            );
            if !trains {
                registry.ensure_trained(FAMILY);
                assert!(!registry.lock()[FAMILY].scheduled, "{cluster:?}");
                let status = registry.statuses().pop().unwrap();
                let expected = if cluster.serve_only {
                    "another replica (this one serves only)".to_owned()
                } else {
                    format!("replica {first}")
                };
                assert_eq!(status.trainer, Some(expected));
            }
        }
    }
}
