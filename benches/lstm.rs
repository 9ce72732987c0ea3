//! The LSTM against PyTorch on the seed's reference workload, in one run:
//! promcast's network (2 stacked LSTM layers, input 1, hidden 50, a linear
//! head on the last step) trained on 144 windows of 24 hourly points,
//! full-batch Adam (lr 1e-3), MSE, 100 epochs; then one-window latency and
//! 1,000- and 10,000-window throughput. The same workload runs in PyTorch
//! through `benches/pytorch/run`, with as many threads as promcast uses
//! and PyTorch's default settings. Prints a table per run (two runs) with
//! each backend's speed as a multiple of PyTorch's, and whether the machine
//! was idle around it; then seconds an epoch of promcast's own training
//! configuration on flex, and of the same network on as many windows in
//! PyTorch (`lstm_reference.py --own-steps`).
//!
//! `cargo bench --bench lstm` (release build). PyTorch is installed into
//! `target/pytorch-venv` on first use; where that is impossible its column
//! says why and the rest still runs.

mod timing;

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Tensor, TensorData};
use promcast::model::{Backend, LstmNet, NetSpec};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const POINTS: usize = 168;
const WINDOW: usize = 24;
const EPOCHS: usize = 100;
const LEARNING_RATE: f64 = 1e-3;
const SEED: u64 = 42;
const LATENCY_RUNS: (usize, usize) = (20, 200);
/// Warm-up and measured runs per batch size, as in the PyTorch script.
const BATCHES: [(usize, usize, usize); 2] = [(1_000, 2, 20), (10_000, 2, 5)];

/// One framework's figures.
#[derive(Debug, Clone, Copy)]
struct Figures {
    train_s: f64,
    latency_ms: f64,
    per_s_1k: f64,
    per_s_10k: f64,
}

/// An epoch of promcast's own training configuration, and its shape for
/// the PyTorch script's copy of it.
struct OwnConfiguration {
    epoch_s: f64,
    /// Points of the longest window, to which a batch is padded.
    steps: usize,
    validation_windows: usize,
}

/// Whole runs of both sides, one table each: one run alone is within a
/// run-to-run spread of about ±15 %.
const RUNS: usize = 2;

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    for run in 1..=RUNS {
        let busy_before = busy_cpus();
        let mut columns: Vec<(String, Result<Figures, String>)> = Vec::new();
        for backend in [Backend::Flex, Backend::NdArray] {
            let result = match backend.device() {
                Ok(device) => Ok(measure(&device)),
                Err(e) => Err(e.to_string()),
            };
            columns.push((format!("promcast, {backend}"), result));
        }
        let own = own_configuration();
        eprintln!("running the PyTorch reference ({threads} threads)…");
        let reference = pytorch(threads, &own);
        let busy_after = busy_cpus();
        println!("\nrun {run} of {RUNS}");
        print_table(
            threads,
            &columns,
            &reference.as_ref().map(|r| r.0).map_err(String::clone),
        );
        let pytorch_epoch = match &reference {
            Ok((_, epoch_s)) => format!(
                "; PyTorch, the same network and windows: {epoch_s:.2} s ({:.2}×)",
                epoch_s / own.epoch_s
            ),
            Err(_) => String::new(),
        };
        println!(
            "\npromcast's own training configuration on flex (4,096 windows of {} points an epoch and {} to validate, 361 outputs, seasonal input): {:.2} s an epoch{pytorch_epoch}",
            own.steps, own.validation_windows, own.epoch_s
        );
        println!(
            "other processes running, most seen in 1 s: {busy_before} before, {busy_after} after{}",
            if busy_before + busy_after == 0 {
                " (idle)"
            } else {
                ": the machine was not idle, the ratios do not hold"
            }
        );
    }
}

/// Seconds an epoch takes with the configuration the server trains with
/// (`TrainConfig::default()`: 4,096 windows an epoch, hidden 50, 2 layers)
/// on three series of a week at a 1-minute step and horizons up to 6 h
/// (361 outputs, seasonal input): what a user waits for after the first
/// query, epoch by epoch. The median of three epochs.
fn own_configuration() -> OwnConfiguration {
    use promcast::model::Grid;
    use promcast::model::train::{TrainConfig, train};
    const STEP_MS: i64 = 60_000;
    const WEEK: usize = 7 * 1440;
    let mut rng = SmallRng::seed_from_u64(SEED);
    let grids: Vec<Grid> = (0..3)
        .map(|s| {
            let values = (0..WEEK)
                .map(|i| {
                    let day = std::f64::consts::TAU * i as f64 / 1440.0;
                    50.0 + 20.0 * (day + f64::from(s)).sin() + rng.random_range(-5.0..5.0)
                })
                .collect();
            Grid::from_values(0, STEP_MS, values)
        })
        .collect();
    let shape =
        promcast::model::Shape::for_step(STEP_MS, 3_600_000, 21_600_000, WEEK as i64 * STEP_MS);
    let cfg = TrainConfig {
        max_epochs: 3,
        patience: 3,
        ..TrainConfig::default()
    };
    let ends = std::cell::RefCell::new(vec![Instant::now()]);
    let trained = train(&grids, shape, &cfg, SEED, None, &Device::flex(), &|_| {
        ends.borrow_mut().push(Instant::now());
    })
    .expect("training on a week of three series");
    let ends = ends.into_inner();
    let mut epochs: Vec<f64> = ends
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    epochs.sort_by(f64::total_cmp);
    OwnConfiguration {
        epoch_s: epochs.get(epochs.len() / 2).copied().unwrap_or(f64::NAN),
        steps: shape.window,
        validation_windows: trained.report.validation_windows,
    }
}

/// The most processes running beside this one over a second (Linux's
/// `procs_running`, sampled every 100 ms): a ratio holds only when both
/// sides ran on an otherwise idle machine.
fn busy_cpus() -> usize {
    (0..10)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            std::fs::read_to_string("/proc/stat")
                .ok()
                .and_then(|stat| {
                    stat.lines()
                        .find_map(|l| l.strip_prefix("procs_running "))
                        .and_then(|n| n.trim().parse::<usize>().ok())
                })
                .map_or(0, |running| running.saturating_sub(1))
        })
        .max()
        .unwrap_or(0)
}

/// `50 + 20·sin(t) + N(0, 5)` over two periods, min-max scaled: windows of
/// `WINDOW` points and the point after each.
fn dataset() -> (Vec<f32>, Vec<f32>) {
    let mut rng = SmallRng::seed_from_u64(SEED);
    let series: Vec<f64> = (0..POINTS)
        .map(|i| {
            let t = 4.0 * std::f64::consts::PI * i as f64 / (POINTS - 1) as f64;
            // Box–Muller: a normal draw from two uniform ones.
            let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
            let noise = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
            50.0 + 20.0 * t.sin() + 5.0 * noise
        })
        .collect();
    let (lo, hi) = series
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let scaled: Vec<f32> = series
        .iter()
        .map(|v| ((v - lo) / (hi - lo)) as f32)
        .collect();
    let inputs = (0..POINTS - WINDOW)
        .flat_map(|i| scaled[i..i + WINDOW].iter().copied())
        .collect();
    (inputs, scaled[WINDOW..].to_vec())
}

fn spec() -> NetSpec {
    NetSpec {
        inputs: 1,
        window: WINDOW,
        hidden: 50,
        layers: 2,
        outputs: 1,
    }
}

/// Runs `windows` (flattened) through `net`, from host memory to host memory
/// as serving does. The seasonal term is zero, which leaves a plain LSTM
/// with a linear head.
fn infer(net: &LstmNet, windows: &[f32], device: &Device) -> Vec<f32> {
    let n = windows.len() / WINDOW;
    let x = Tensor::<3>::from_data(TensorData::new(windows.to_vec(), [n, WINDOW, 1]), device);
    let out = net.forward(x, &ends(n), Tensor::zeros([n, 1], device));
    out.into_data().try_into_vec().expect("f32 output")
}

/// The network's rows for `n` windows each read at its last step, as the
/// reference reads them.
fn ends(n: usize) -> Vec<usize> {
    (1..=n).map(|w| w * WINDOW - 1).collect()
}

fn measure(device: &Device) -> Figures {
    let (inputs, targets) = dataset();
    let n = targets.len();
    device.seed(SEED);
    let train_device = device.clone().autodiff();
    let x = Tensor::<3>::from_data(TensorData::new(inputs, [n, WINDOW, 1]), &train_device);
    let y = Tensor::<2>::from_data(TensorData::new(targets, [n, 1]), &train_device);
    let zeros = Tensor::<2>::zeros([n, 1], &train_device);
    let rows = ends(n);
    let mut net = LstmNet::new(spec(), &train_device);
    let mut optim = AdamConfig::new().init();
    let start = Instant::now();
    let mut loss = 0.0;
    for _ in 0..EPOCHS {
        let diff = net.forward(x.clone(), &rows, zeros.clone()) - y.clone();
        let mse = (diff.clone() * diff).mean();
        loss = mse.clone().into_scalar::<f32>();
        let grads = GradientsParams::from_grads(mse.backward(), &net);
        net = optim.step(LEARNING_RATE, net, grads);
    }
    let train_s = start.elapsed().as_secs_f64();
    eprintln!(
        "{device:?}: trained {EPOCHS} epochs on {n} windows in {train_s:.3} s, loss {loss:.6}"
    );

    let net = net.valid();
    let mut rng = SmallRng::seed_from_u64(SEED + 1);
    let one: Vec<f32> = (0..WINDOW).map(|_| rng.random()).collect();
    let (warm, runs) = LATENCY_RUNS;
    let latency = timing::median(warm, runs, || {
        black_box(infer(&net, &one, device));
    });
    let mut per_s = BATCHES.iter().map(|&(size, warm, runs)| {
        let batch: Vec<f32> = (0..size * WINDOW).map(|_| rng.random()).collect();
        size as f64
            / timing::median(warm, runs, || {
                black_box(infer(&net, &batch, device));
            })
            .as_secs_f64()
    });
    Figures {
        train_s,
        latency_ms: latency.as_secs_f64() * 1e3,
        per_s_1k: per_s.next().unwrap_or_default(),
        per_s_10k: per_s.next().unwrap_or_default(),
    }
}

/// A table row: its label, how to read it from the figures, and whether a
/// larger number is better.
type Row = (&'static str, fn(&Figures) -> f64, bool);

/// The reference workload's figures in PyTorch and its seconds an epoch of
/// promcast's own configuration, or why there are none.
fn pytorch(threads: usize, own: &OwnConfiguration) -> Result<(Figures, f64), String> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pytorch/run");
    let out = Command::new(script)
        .args(["--threads", &threads.to_string(), "--json"])
        .args(["--own-steps", &own.steps.to_string()])
        .args(["--own-validation", &own.validation_windows.to_string()])
        // PyTorch as its users run it: its default thread settings.
        .output()
        .map_err(|e| format!("cannot start {script}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let reason = stderr
            .lines()
            .find(|l| l.starts_with("pytorch reference skipped:"))
            .map_or_else(
                || format!("{script} failed ({}): {stderr}", out.status),
                str::to_string,
            );
        return Err(reason);
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("unreadable output from {script}: {e}"))?;
    let field = |k: &str| {
        v[k].as_f64()
            .ok_or_else(|| format!("{script} printed no number for {k}"))
    };
    let figures = Figures {
        train_s: field("train_s")?,
        latency_ms: field("latency_1_ms")?,
        per_s_1k: field("windows_per_s_1k")?,
        per_s_10k: field("windows_per_s_10k")?,
    };
    Ok((figures, field("own_epoch_s")?))
}

fn print_table(
    threads: usize,
    columns: &[(String, Result<Figures, String>)],
    reference: &Result<Figures, String>,
) {
    println!("\nreference workload, {threads} threads for every framework\n");
    let mut header = format!("| {:<26} |", "");
    let mut rule = format!("|{}|", "-".repeat(28));
    for (name, _) in columns {
        header += &format!(" {name:>18} | {:>10} |", "× PyTorch");
        rule += &format!("{}:|{}:|", "-".repeat(19), "-".repeat(11));
    }
    header += &format!(" {:>12} |", "PyTorch");
    rule += &format!("{}:|", "-".repeat(13));
    println!("{header}\n{rule}");
    // Ratios read "times as fast as PyTorch" whichever way a row counts.
    let rows: [Row; 4] = [
        ("train, 100 epochs (s)", |f| f.train_s, false),
        ("1 window (ms)", |f| f.latency_ms, false),
        ("1,000 windows (windows/s)", |f| f.per_s_1k, true),
        ("10,000 windows (windows/s)", |f| f.per_s_10k, true),
    ];
    for (label, read, larger_better) in rows {
        let show = |v: f64| {
            if v >= 100.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.3}")
            }
        };
        let mut line = format!("| {label:<26} |");
        for (_, column) in columns {
            let (value, ratio) = match (column, reference) {
                (Ok(f), Ok(r)) => {
                    let (ours, theirs) = (read(f), read(r));
                    let ratio = if larger_better {
                        ours / theirs
                    } else {
                        theirs / ours
                    };
                    (show(ours), format!("{ratio:.2}×"))
                }
                (Ok(f), Err(_)) => (show(read(f)), "–".into()),
                (Err(_), _) => ("–".into(), "–".into()),
            };
            line += &format!(" {value:>18} | {ratio:>10} |");
        }
        let theirs = reference
            .as_ref()
            .map_or_else(|_| "–".into(), |r| show(read(r)));
        line += &format!(" {theirs:>12} |");
        println!("{line}");
    }
    for (name, column) in columns {
        if let Err(e) = column {
            println!("\n{name}: {e}");
        }
    }
    if let Err(e) = reference {
        println!("\nPyTorch: {e}");
    }
}
