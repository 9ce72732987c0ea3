//! Training: windows from every series of a family, a time-based hold-out
//! for validation, Adam on a masked multi-horizon absolute error scaled per
//! step, early stopping on the validation loss, and the residual
//! statistics that calibrate the prediction interval and the anomaly score.
//!
//! Why that loss: forecasts are judged by absolute error at each horizon
//! (MASE), and infrastructure series have spikes; squared error lets the
//! spikes and the far steps, whose errors are largest, dominate, so the
//! near steps were learnt worst. Each step's error is divided by the error
//! of a flat forecast at that step, so every horizon counts alike, and the
//! absolute error makes the forecast a median, which spikes barely move.

use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use rand::SeedableRng;
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::network::{LstmNet, NetSpec};
use super::window::{FEATURES, Grid, Pass, Shape, Window};
use crate::duration::PromDuration;

/// Share of the history held out (the most recent part) for validation.
const VALIDATION_SHARE: f64 = 0.2;
/// Fewest windows a training run accepts.
const MIN_TRAIN_WINDOWS: usize = 32;
const MIN_VALIDATION_WINDOWS: usize = 8;
/// Validation windows scored per epoch, at most.
const MAX_VALIDATION_WINDOWS: usize = 2048;
/// Training windows kept in memory: this many epochs' worth.
const POOL_EPOCHS: usize = 8;
/// Windows per inference batch during validation.
const EVAL_BATCH: usize = 512;
/// Share of an interval tail's nominal miss rate that its validation
/// quantile is read at.
const TAIL_MISS_SHARE: f64 = 0.5;
/// Floor of a step's flat-forecast error when weighting the loss
/// (normalised units).
const MIN_STEP_ERROR: f64 = 1e-3;
/// Consistency constant turning a median absolute deviation into a
/// standard deviation for Gaussian data.
const MAD_TO_SIGMA: f64 = 1.4826;
/// A Gaussian's 99th percentile of absolute deviation, in σ.
const TAIL_QUANTILE: f64 = 0.99;
const TAIL_SIGMAS: f64 = 2.576;

/// Network size and training budget: the `model:` section of the
/// configuration file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// LSTM hidden units per layer.
    pub hidden: usize,
    /// Stacked LSTM layers.
    pub layers: usize,
    /// Upper bound on training epochs (early stopping usually ends sooner).
    pub max_epochs: usize,
    /// Upper bound on the epochs of a retrain that starts from the
    /// previous model's weights: it refines a network that already fits,
    /// so it needs far fewer.
    pub warm_epochs: usize,
    /// Epochs without validation improvement before training stops.
    pub patience: usize,
    /// Windows per optimisation step.
    pub batch_size: usize,
    /// Training windows sampled per epoch (bounds the cost of long histories).
    pub windows_per_epoch: usize,
    /// Adam learning rate.
    pub learning_rate: f64,
    /// Wall-clock budget of one training run.
    pub max_training_time: PromDuration,
    /// Central coverage of `predicted_lower_`/`predicted_upper_`.
    pub interval_coverage: f64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            hidden: 50,
            layers: 2,
            max_epochs: 30,
            warm_epochs: 4,
            patience: 6,
            batch_size: 128,
            windows_per_epoch: 4096,
            learning_rate: 2e-3,
            max_training_time: PromDuration::from_secs(300),
            interval_coverage: 0.9,
        }
    }
}

/// What a run measured, saved with the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// Epochs run.
    pub epochs: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Whether the run started from the previous model's weights.
    #[serde(default)]
    pub warm_start: bool,
    /// Training windows available.
    pub train_windows: usize,
    /// Validation windows scored.
    pub validation_windows: usize,
    /// Validation loss of the best epoch: the mean over steps of absolute
    /// error divided by the flat forecast's (1 = no better than flat).
    pub validation_loss: f64,
    /// Validation mean absolute error, normalised units, all steps.
    pub validation_mae: f64,
    /// The same error for a flat last-value forecast, for comparison.
    pub naive_mae: f64,
    /// Per step ahead, the lower residual quantile of the interval.
    pub residual_lo: Vec<f32>,
    /// Per step ahead, the upper residual quantile of the interval.
    pub residual_hi: Vec<f32>,
    /// Robust spread of one-step-ahead residuals (normalised units).
    pub one_step_sigma: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// A trained network and its report.
pub struct Trained {
    /// The best network, without autodiff state.
    pub net: LstmNet,
    /// Measurements of the run.
    pub report: Report,
}

/// How far a family's history falls short of what training needs: a
/// state that time cures, not a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    /// History there is: from the first sample to the end of the run.
    pub have_ms: i64,
    /// History training needs at this step ([`history_needed_ms`]).
    pub need_ms: i64,
    /// The model step it was measured at.
    pub step_ms: i64,
}

impl Shortfall {
    /// The history there is, rounded down to the minute (to the second
    /// below one), for people.
    pub fn have(&self) -> PromDuration {
        let unit = if self.have_ms < 60_000 { 1_000 } else { 60_000 };
        PromDuration::from_millis((self.have_ms.max(0) / unit * unit) as u64)
    }

    /// The history needed, rounded up to the minute, for people.
    pub fn need(&self) -> PromDuration {
        PromDuration::from_millis((self.need_ms.max(0) as u64).div_ceil(60_000) * 60_000)
    }

    /// The model step, for people.
    pub fn step(&self) -> PromDuration {
        PromDuration::from_millis(self.step_ms.max(0) as u64)
    }

    /// How long until the history is long enough, if the series keeps
    /// being scraped: the difference, and a step for the grid to catch up
    /// (its last point may lie up to a step before the run's end).
    pub fn wait_ms(&self) -> i64 {
        (self.need_ms - self.have_ms).max(0) + self.step_ms
    }

    /// The same shortfall `elapsed_ms` later, the history grown by as
    /// much (never past the need).
    pub fn after(&self, elapsed_ms: i64) -> Self {
        Self {
            have_ms: (self.have_ms + elapsed_ms.max(0)).min(self.need_ms),
            ..*self
        }
    }
}

/// "22m of ~9h15m".
impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} of ~{}", self.have(), self.need())
    }
}

/// Why a training run produced no model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "not enough history yet: {0} needed at a {step} step (for the longest horizon, the lookback and a held-out validation share); training starts once it exists",
        step = .0.step()
    )]
    NotEnoughHistory(Shortfall),
    #[error(
        "too few complete windows: {train} training and {validation} validation windows (need {MIN_TRAIN_WINDOWS} and {MIN_VALIDATION_WINDOWS}); the history has too many gaps"
    )]
    NotEnoughData { train: usize, validation: usize },
    #[error("training diverged (validation loss is not finite)")]
    Diverged,
    #[error("the previous model's weights could not be reused: {0}")]
    WarmStart(String),
}

/// A set of windows with their targets, flattened for tensors.
struct Batchable {
    /// Each window's pass inputs up to its end, one after another.
    inputs: Vec<f32>,
    /// Where each window's inputs start in `inputs`, then where they end.
    offsets: Vec<usize>,
    seasonal: Vec<f32>,
    targets: Vec<f32>,
    len: usize,
}

/// Tensors of one batch.
struct Batch {
    /// One pass per window, each read at its window's end (`rows`).
    inputs: Tensor<3>,
    rows: Vec<usize>,
    seasonal: Tensor<2>,
    /// Targets with gaps zeroed.
    targets: Tensor<2>,
    /// 1 where a target is present.
    mask: Tensor<2>,
    /// Number of present targets.
    present: usize,
}

impl Batchable {
    fn new(windows: Vec<(Pass, Window, Vec<f32>)>) -> Self {
        let len = windows.len();
        let mut inputs = Vec::new();
        let mut offsets = vec![0];
        let mut seasonal = Vec::new();
        let mut targets = Vec::new();
        for (p, w, t) in windows {
            inputs.extend(p.features);
            offsets.push(inputs.len());
            seasonal.extend(w.seasonal);
            targets.extend(t);
        }
        Self {
            inputs,
            offsets,
            seasonal,
            targets,
            len,
        }
    }

    /// Per step ahead, the reciprocal of the mean absolute target, the
    /// error of a flat forecast there (targets are changes from the last
    /// value); floored so that a step that never changes cannot dominate.
    fn step_weights(&self, k: usize) -> Vec<f32> {
        let mut sum = vec![0.0f64; k];
        let mut count = vec![0usize; k];
        for row in self.targets.chunks(k) {
            for (j, t) in row.iter().enumerate() {
                if t.is_finite() {
                    sum[j] += f64::from(t.abs());
                    count[j] += 1;
                }
            }
        }
        sum.iter()
            .zip(&count)
            .map(|(s, &c)| (1.0 / (s / c.max(1) as f64).max(MIN_STEP_ERROR)) as f32)
            .collect()
    }

    /// The batch of the windows in `idx`.
    fn batch(&self, idx: &[usize], spec: &NetSpec, device: &Device) -> Batch {
        let k = spec.outputs;
        let passes: Vec<&[f32]> = idx
            .iter()
            .map(|&i| &self.inputs[self.offsets[i]..self.offsets[i + 1]])
            .collect();
        let reads = passes.iter().map(|p| p.len() / FEATURES).enumerate();
        let (inputs, rows) = super::pass_inputs(&passes, reads, device);
        let mut s = Vec::with_capacity(idx.len() * k);
        let mut y = Vec::with_capacity(idx.len() * k);
        let mut m = Vec::with_capacity(idx.len() * k);
        for &i in idx {
            s.extend_from_slice(&self.seasonal[i * k..(i + 1) * k]);
            for &t in &self.targets[i * k..(i + 1) * k] {
                y.push(if t.is_finite() { t } else { 0.0 });
                m.push(if t.is_finite() { 1.0 } else { 0.0 });
            }
        }
        Batch {
            present: m.iter().filter(|v| **v > 0.0).count(),
            inputs,
            rows,
            seasonal: Tensor::from_data(TensorData::new(s, [idx.len(), k]), device),
            targets: Tensor::from_data(TensorData::new(y, [idx.len(), k]), device),
            mask: Tensor::from_data(TensorData::new(m, [idx.len(), k]), device),
        }
    }
}

/// One finished epoch, as reported to the caller of [`train`].
#[derive(Debug, Clone, Copy)]
pub struct Epoch {
    /// Epochs done, from 1.
    pub epoch: usize,
    /// The most epochs this run may take (early stopping may end it sooner).
    pub max_epochs: usize,
    /// Validation loss after this epoch (see [`Report::validation_loss`]).
    pub validation_loss: f64,
}

/// Held while a network is initialised: burn seeds its initialisation per
/// device, so two trainings initialising at once (files evaluated in
/// parallel, families trained side by side) would draw from each other's
/// stream and neither would be reproducible.
static INIT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Trains a network on the windows of `grids` (one grid per series);
/// `seed` drives initialisation and sampling, so runs are reproducible.
/// With `warm`, a network of the same spec, training starts from its
/// weights for at most [`TrainConfig::warm_epochs`]. `progress` hears of
/// every finished epoch.
pub fn train(
    grids: &[Grid],
    shape: Shape,
    cfg: &TrainConfig,
    seed: u64,
    warm: Option<&LstmNet>,
    device: &Device,
    progress: &dyn Fn(Epoch),
) -> Result<Trained, TrainError> {
    let started = Instant::now();
    let step_ms = grids.first().map_or(1, |g| g.step_ms);
    let need_ms = history_needed_ms(&shape, step_ms);
    let have_ms = history_span(grids).map_or(0, |(first, last)| last - first);
    if have_ms < need_ms {
        return Err(TrainError::NotEnoughHistory(Shortfall {
            have_ms,
            need_ms,
            step_ms,
        }));
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let (train_set, val_set) = split_windows(grids, shape, cfg, &mut rng);
    if train_set.len < MIN_TRAIN_WINDOWS || val_set.len < MIN_VALIDATION_WINDOWS {
        return Err(TrainError::NotEnoughData {
            train: train_set.len,
            validation: val_set.len,
        });
    }
    let spec = NetSpec {
        inputs: FEATURES,
        window: shape.window,
        hidden: cfg.hidden,
        layers: cfg.layers,
        outputs: shape.horizon_steps,
    };
    let warm = warm.filter(|w| w.spec() == spec);
    let max_epochs = if warm.is_some() {
        cfg.warm_epochs.min(cfg.max_epochs)
    } else {
        cfg.max_epochs
    };
    let train_device = device.clone().autodiff();
    let initial = {
        let _guard = crate::lock::lock(&INIT);
        device.seed(seed);
        // burn draws a parameter's initial values when it is first read,
        // not when the network is built: serialising the drawn network
        // reads them all here, under the lock, in a fixed order.
        // The weights go through their serialised form, as a saved
        // model's do, so that they land on the training device whatever
        // device `warm` is on.
        let drawn = LstmNet::new(spec, &train_device);
        let bytes = warm.unwrap_or(&drawn).to_bytes();
        bytes
            .and_then(|b| LstmNet::from_bytes(spec, &train_device, b))
            .map_err(TrainError::WarmStart)?
    };
    let step_weights = train_set.step_weights(spec.outputs);
    let run = Run {
        spec,
        cfg,
        max_epochs,
        train_set: &train_set,
        val_set: &val_set,
        step_weights: &step_weights,
        device,
        started,
    };
    let (net, epochs) = run.epochs(initial, &train_device, &mut rng, progress)?;
    let eval = evaluate(&net, &val_set, &spec, &step_weights, device);
    let (residual_lo, residual_hi) = interval_residuals(&eval.residuals, cfg.interval_coverage);
    let one_step_sigma =
        residual_sigma(eval.residuals.first().map_or(&[][..], Vec::as_slice)).max(1e-6);
    Ok(Trained {
        net,
        report: Report {
            epochs,
            stopped_early: epochs < max_epochs,
            warm_start: warm.is_some(),
            train_windows: train_set.len,
            validation_windows: val_set.len,
            validation_loss: eval.loss,
            validation_mae: eval.mae,
            naive_mae: eval.naive_mae,
            residual_lo,
            residual_hi,
            one_step_sigma,
            seconds: started.elapsed().as_secs_f64(),
        },
    })
}

/// One training run's fixed parts.
struct Run<'a> {
    spec: NetSpec,
    cfg: &'a TrainConfig,
    /// Epochs this run may take: fewer when it starts warm.
    max_epochs: usize,
    train_set: &'a Batchable,
    val_set: &'a Batchable,
    step_weights: &'a [f32],
    device: &'a Device,
    started: Instant,
}

impl Run<'_> {
    /// Adam over shuffled training windows, epoch after epoch, until the
    /// validation loss stops improving, the epochs or the time run out.
    /// Returns the best network (by validation loss) and the epochs run.
    fn epochs(
        &self,
        mut net: LstmNet,
        train_device: &Device,
        rng: &mut SmallRng,
        progress: &dyn Fn(Epoch),
    ) -> Result<(LstmNet, usize), TrainError> {
        let (cfg, spec) = (self.cfg, &self.spec);
        let weights = Tensor::<2>::from_data(
            TensorData::new(self.step_weights.to_vec(), [1, spec.outputs]),
            train_device,
        );
        let mut optim = AdamConfig::new().init();
        let mut best: Option<(f64, LstmNet)> = None;
        let mut since_best = 0;
        let mut epochs = 0;
        let mut order: Vec<usize> = (0..self.train_set.len).collect();
        while epochs < self.max_epochs {
            epochs += 1;
            order.shuffle(rng);
            for idx in order[..cfg.windows_per_epoch.min(order.len())].chunks(cfg.batch_size) {
                let b = self.train_set.batch(idx, spec, train_device);
                if b.present == 0 {
                    continue;
                }
                let diff = (net.forward(b.inputs, &b.rows, b.seasonal) - b.targets) * b.mask;
                let loss = (diff.abs() * weights.clone())
                    .sum()
                    .div_scalar(b.present as f32);
                let grads = GradientsParams::from_grads(loss.backward(), &net);
                net = optim.step(cfg.learning_rate, net, grads);
            }
            let candidate = net.valid();
            let loss = evaluate(
                &candidate,
                self.val_set,
                spec,
                self.step_weights,
                self.device,
            )
            .loss;
            if !loss.is_finite() {
                return Err(TrainError::Diverged);
            }
            tracing::debug!(
                epoch = epochs,
                validation_loss = loss,
                elapsed_s = self.started.elapsed().as_secs_f64(),
                "epoch done"
            );
            progress(Epoch {
                epoch: epochs,
                max_epochs: self.max_epochs,
                validation_loss: loss,
            });
            if best.as_ref().is_none_or(|(b, _)| loss < *b * (1.0 - 1e-4)) {
                best = Some((loss, candidate));
                since_best = 0;
            } else {
                since_best += 1;
            }
            if since_best >= cfg.patience || self.started.elapsed() > cfg.max_training_time.to_std()
            {
                break;
            }
        }
        let (_, net) = best.ok_or(TrainError::Diverged)?;
        Ok((net, epochs))
    }
}

/// Per step ahead, the lower and upper residual quantiles that bound a
/// central interval of `coverage`.
///
/// The validation period is short and just before serving; out of sample,
/// errors run larger (`promcast eval` measured 78 % coverage at 1h for a
/// 90 % interval read off plain quantiles), so each tail takes half its
/// nominal miss rate.
fn interval_residuals(residuals: &[Vec<f64>], coverage: f64) -> (Vec<f32>, Vec<f32>) {
    let lo_q = (1.0 - coverage) / 2.0 * TAIL_MISS_SHARE;
    let hi_q = 1.0 - lo_q;
    residuals
        .iter()
        .map(|step| (quantile(step, lo_q) as f32, quantile(step, hi_q) as f32))
        .unzip()
}

/// The history that training at `step_ms` with windows of `shape` needs:
/// the span from the first sample to the end of the run over which a
/// series without gaps yields `MIN_TRAIN_WINDOWS` training and
/// `MIN_VALIDATION_WINDOWS` validation windows.
///
/// Training windows end from one full input window after the first sample
/// up to `horizon_steps` before the split (their targets must not reach
/// into the validation share), so the part before the split needs
/// `MIN_TRAIN_WINDOWS + window + horizon_steps − 2` steps; the validation
/// share needs its windows and two steps of rounding.
pub fn history_needed_ms(shape: &Shape, step_ms: i64) -> i64 {
    let before_split = (MIN_TRAIN_WINDOWS + shape.window + shape.horizon_steps - 2) as f64;
    let validation = (MIN_VALIDATION_WINDOWS + 2) as f64;
    let steps = (before_split / (1.0 - VALIDATION_SHARE)).max(validation / VALIDATION_SHARE);
    steps.ceil() as i64 * step_ms
}

/// The first and last present point of any of `grids`: the history that
/// is split into training and validation. `None` without any value.
fn history_span(grids: &[Grid]) -> Option<(i64, i64)> {
    let present = |g: &Grid, i: usize| g.values[i].is_finite().then(|| g.time(i));
    let first = grids
        .iter()
        .filter_map(|g| (0..g.values.len()).find_map(|i| present(g, i)))
        .min()?;
    let last = grids
        .iter()
        .filter_map(|g| (0..g.values.len()).rev().find_map(|i| present(g, i)))
        .max()?;
    Some((first, last))
}

/// The time that holds out the most recent [`VALIDATION_SHARE`] of the
/// present points: counted in points, not in time, so that a gap or
/// history that ends days before the grid does (an exporter that stopped)
/// leaves validation the most recent windows that exist rather than
/// empty time. Between two points it interpolates, so that a series
/// without gaps splits where a share of its time span would.
fn split_time(grids: &[Grid]) -> i64 {
    let mut times: Vec<i64> = grids
        .iter()
        .flat_map(|g| {
            g.values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.is_finite())
                .map(|(i, _)| g.time(i))
        })
        .collect();
    if times.is_empty() {
        return 0;
    }
    let position = (times.len() - 1) as f64 * (1.0 - VALIDATION_SHARE);
    let i = position as usize;
    // The i-th time in order and the one after it, without sorting them all.
    let (_, &mut at, later) = times.select_nth_unstable(i);
    let Some(&next) = later.iter().min() else {
        return at;
    };
    at + ((position - i as f64) * (next - at) as f64).ceil() as i64
}

/// Cuts training and validation windows: validation windows start after
/// the split time, training windows end (targets included) before it, so
/// nothing of the validation period leaks into training. The split holds
/// out the most recent share of the history there is (see
/// [`split_time`]), not of the training window read, which a young series
/// fills only in part.
fn split_windows(
    grids: &[Grid],
    shape: Shape,
    cfg: &TrainConfig,
    rng: &mut SmallRng,
) -> (Batchable, Batchable) {
    let split = split_time(grids);
    let mut train_idx = Vec::new();
    let mut val_idx = Vec::new();
    for (gi, g) in grids.iter().enumerate() {
        let ahead = shape.horizon_steps as i64 * g.step_ms;
        for end in 0..g.values.len() {
            let t = g.time(end);
            if t + ahead <= split {
                train_idx.push((gi, end));
            } else if t >= split {
                val_idx.push((gi, end));
            }
        }
    }
    // At most `cap` windows, drawn at random among those that hold data:
    // drawing among all ends first would fill the pool with the empty
    // windows of a long gap.
    let build = |mut idx: Vec<(usize, usize)>, cap: usize, rng: &mut SmallRng| {
        if idx.len() > cap {
            idx.shuffle(rng);
        }
        let mut kept: Vec<_> = idx
            .into_iter()
            .filter_map(|(gi, end)| {
                let g = &grids[gi];
                let w = g.window(end, &shape)?;
                let t = g.targets(&w, shape.horizon_steps);
                let pass = g.pass(w.start, w.points(), &shape)?;
                t.iter()
                    .any(|v| v.is_finite())
                    .then_some(((gi, end), (pass, w, t)))
            })
            .take(cap)
            .collect();
        kept.sort_unstable_by_key(|(at, _)| *at);
        Batchable::new(kept.into_iter().map(|(_, window)| window).collect())
    };
    let train = build(train_idx, cfg.windows_per_epoch * POOL_EPOCHS, rng);
    let val = build(val_idx, MAX_VALIDATION_WINDOWS, rng);
    (train, val)
}

struct Evaluation {
    loss: f64,
    mae: f64,
    naive_mae: f64,
    /// Per step ahead, every present residual (target − prediction).
    residuals: Vec<Vec<f64>>,
}

fn evaluate(
    net: &LstmNet,
    set: &Batchable,
    spec: &NetSpec,
    step_weights: &[f32],
    device: &Device,
) -> Evaluation {
    let k = spec.outputs;
    let mut residuals = vec![Vec::new(); k];
    let (mut weighted, mut abs, mut naive, mut n) = (0.0, 0.0, 0.0, 0usize);
    let all: Vec<usize> = (0..set.len).collect();
    for idx in all.chunks(EVAL_BATCH) {
        let b = set.batch(idx, spec, device);
        let pred: Vec<f32> = net
            .forward(b.inputs, &b.rows, b.seasonal)
            .into_data()
            .try_to_vec()
            .unwrap_or_default();
        for (row, &i) in idx.iter().enumerate() {
            let targets = &set.targets[i * k..(i + 1) * k];
            let predicted = pred.get(row * k..(row + 1) * k).unwrap_or_default();
            for (((residuals, &y), &p), &w) in residuals
                .iter_mut()
                .zip(targets)
                .zip(predicted)
                .zip(step_weights)
            {
                if y.is_finite() {
                    let r = f64::from(y - p);
                    weighted += r.abs() * f64::from(w);
                    abs += r.abs();
                    naive += f64::from(y).abs();
                    n += 1;
                    residuals.push(r);
                }
            }
        }
    }
    let n = n.max(1) as f64;
    Evaluation {
        loss: weighted / n,
        mae: abs / n,
        naive_mae: naive / n,
        residuals,
    }
}

/// The standard deviation that the anomaly score measures surprises in:
/// robust (from the median absolute deviation) for the bulk, but never
/// less than the tail implies (the 99th percentile of absolute deviation
/// read as 2.576 σ), since infrastructure residuals are heavy-tailed and a
/// bulk-only σ would flag every noisy minute. The root mean square where
/// both are 0 (a mostly constant series); 0 without residuals.
pub fn residual_sigma(residuals: &[f64]) -> f64 {
    let center = quantile(residuals, 0.5);
    let deviations: Vec<f64> = residuals.iter().map(|r| (r - center).abs()).collect();
    let spread = (MAD_TO_SIGMA * quantile(&deviations, 0.5))
        .max(quantile(&deviations, TAIL_QUANTILE) / TAIL_SIGMAS);
    if spread > 0.0 {
        spread
    } else {
        (residuals.iter().map(|r| r * r).sum::<f64>() / residuals.len().max(1) as f64).sqrt()
    }
}

/// The `q` quantile of `values` by linear interpolation; 0 when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests;
