//! Serving cost, in two parts, printed as tables.
//!
//! 1. Server time, in process: `forecast::evaluate`, the code behind every
//!    synthetic series, with a trained model of the default shape (2 × 50
//!    LSTM, one hour of input, horizons 15m/1h/6h) on a family of 1-minute
//!    series. A day of 1-minute forecasts for one series (every configured
//!    horizon with its bounds, and the anomaly score), cold and warm
//!    forecast cache; an instant `predicted_…{horizon="1h"}` for 1,000 and
//!    10,000 series, at the time of day where its windows are longest (the
//!    last point of a segment: a whole hour) and where they are shortest
//!    (the first: half an hour). Memory per model and per cached series.
//! 2. Through a real Prometheus (the e2e harness: 3 series, a week at one
//!    minute, promcast as its remote-read target): the same kinds of query
//!    against the same query on the source series, as a ratio.
//!
//! `cargo bench --bench serving` (release build; Debian's prometheus and
//! promtool for part 2).

#[allow(dead_code)] // the bench uses a few of the integration tests' helpers
#[path = "../tests/common"]
mod common {
    pub mod exposition;
    pub mod family;
    pub mod harness;
    pub mod http;
    pub mod models;
    pub mod process;
    pub mod prometheus;
    pub mod running;
    pub mod scenario;
    pub mod secrets;

    pub use family::{METRIC, PREDICTED};
    pub use harness::Harness;
    pub use scenario::{DAY, INSTANCES};
}
mod timing;

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use burn::module::Module;
use burn::tensor::Device;
use promcast::calendar::{DAY_MS, HOUR_MS, MINUTE_MS};
use promcast::duration::PromDuration;
use promcast::forecast::training::{TrainingPlan, fit};
use promcast::forecast::{Cache, Cancel, FamilyQuery, Predictor, ServedModel, evaluate};
use promcast::labels::Labels;
use promcast::model::train::TrainConfig;
use promcast::series::{Horizon, Output, SeriesKind};
use promcast::telemetry::Metrics;
use promcast::upstream::SourceSeries;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const FAMILY: &str = "bench_cpu";
/// Room for every forecast a run makes.
const CACHE_VALUES: usize = 50_000_000;

/// The system allocator, counting live bytes for the memory figures.
struct Counting;

static LIVE_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call goes straight to the system allocator; the counter
// only watches.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_BYTES.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> usize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    in_process();
    through_prometheus().await;
}

/// `count` series of one-minute samples ending at `end`: a daily cycle
/// whose phase and level differ per series, with noise.
fn family(count: usize, span_ms: i64, end: i64) -> Vec<SourceSeries> {
    let mut rng = SmallRng::seed_from_u64(7);
    (0..count)
        .map(|n| {
            let phase = n as f64 * 0.37;
            let level = 40.0 + (n % 17) as f64;
            let samples = (end - span_ms..=end)
                .step_by(MINUTE_MS as usize)
                .map(|t| {
                    let day = t as f64 / DAY_MS as f64 * std::f64::consts::TAU;
                    (
                        t,
                        level + 20.0 * (day + phase).sin() + rng.random_range(-2.0..2.0),
                    )
                })
                .collect();
            let labels: Labels = [("instance".to_string(), format!("host-{n:05}"))].into();
            SourceSeries { labels, samples }
        })
        .collect()
}

/// A model of the default shape, trained briefly: serving cost depends on
/// the network's shape, not on how well it forecasts.
fn train(end: i64, device: &Device) -> ServedModel {
    let history = family(8, 3 * DAY_MS, end);
    let plan = TrainingPlan {
        family: FAMILY.into(),
        version: 1,
        step_ms: None,
        lookback_ms: HOUR_MS,
        max_horizon_ms: 6 * HOUR_MS,
        train: TrainConfig {
            max_epochs: 2,
            ..TrainConfig::default()
        },
        warm_start: None,
    };
    let start = Instant::now();
    let (meta, net) = fit(&plan, &history, (end - 3 * DAY_MS, end), device, &|_| {})
        .expect("the bench family trains");
    eprintln!(
        "trained a {:?} model in {:.1?}",
        meta.shape,
        start.elapsed()
    );
    ServedModel {
        meta,
        net,
        device: device.clone(),
    }
}

fn outputs(horizons: &[i64], kinds: &[SeriesKind], anomaly: bool) -> Vec<Output> {
    let mut out: Vec<Output> = horizons
        .iter()
        .flat_map(|&h| {
            kinds.iter().map(move |&kind| Output {
                kind,
                horizon: Some(Horizon::new(PromDuration::from_millis(h as u64))),
            })
        })
        .collect();
    if anomaly {
        out.push(Output {
            kind: SeriesKind::AnomalyScore,
            horizon: None,
        });
    }
    out
}

fn in_process() {
    let device = Device::flex();
    let end = promcast::calendar::now_ms() / MINUTE_MS * MINUTE_MS - 10 * MINUTE_MS;
    let model = Arc::new(train(end, &device));
    let params = model.net.num_params();
    let horizon_steps = model.meta.shape.horizon_steps;
    let segment_ms = model.meta.shape.segment as i64 * model.meta.step_ms;
    let segment_end = end - end.rem_euclid(segment_ms) - MINUTE_MS;
    let predictor = Predictor::Model(model);
    let metrics = Metrics::new();
    let all = [15 * MINUTE_MS, HOUR_MS, 6 * HOUR_MS];
    let kinds = [
        SeriesKind::Predicted,
        SeriesKind::PredictedLower,
        SeriesKind::PredictedUpper,
    ];

    println!("\nserver time in process (forecast::evaluate), flex, median of runs\n");
    println!("| query | series | forecasts made | cold cache | warm cache |");
    println!("|---|---:|---:|---:|---:|");

    // A day of 1-minute forecasts for one series: the day, and the
    // history an anomaly score at its first minute reads (its memory of
    // samples, and the day that normalisation and the seasonal input read).
    let day_outputs = outputs(&all, &kinds, true);
    let anomaly_only = outputs(&[], &[], true);
    let history_ms = predictor.history_ms(true);
    let source = family(1, DAY_MS + history_ms, end);
    let times: Vec<i64> = (end - DAY_MS..=end).step_by(MINUTE_MS as usize).collect();
    let run = |cache: &Cache| {
        evaluate(
            &predictor,
            &FamilyQuery {
                family: FAMILY,
                outputs: &day_outputs,
                times: &times,
            },
            &source,
            cache,
            &metrics,
            &Cancel::default(),
        )
    };
    let made = {
        let cache = Cache::new(CACHE_VALUES);
        run(&cache);
        cache.len()
    };
    let cold = timing::median(1, 5, || {
        black_box(run(&Cache::new(CACHE_VALUES)));
    });
    let warm_cache = Cache::new(CACHE_VALUES);
    let warm = timing::median(1, 20, || {
        black_box(run(&warm_cache));
    });
    println!(
        "| 24 h at 1 min, 3 horizons × 3 kinds + anomaly score | 1 | {made} | {cold:.1?} | {warm:.2?} |"
    );
    let (made, cold, warm) = cold_and_warm(&predictor, &metrics, &anomaly_only, &times, &source, 5);
    println!("| 24 h at 1 min, anomaly score only | 1 | {made} | {cold:.1?} | {warm:.2?} |");

    // An instant anomaly score reads the samples of its whole memory per
    // series, and one forecast: at the minute after a segment's end, the
    // forecast's window is a whole hour (the worst case); a minute later,
    // half an hour.
    for count in [1_000, 10_000] {
        let source = family(count, history_ms, end);
        for (at, window) in [
            (segment_end + MINUTE_MS, "1 h"),
            (segment_end + 2 * MINUTE_MS, "31 min"),
        ] {
            let (made, cold, warm) =
                cold_and_warm(&predictor, &metrics, &anomaly_only, &[at], &source, 3);
            println!(
                "| instant `anomaly_score`, window of {window} | {count} | {made} | {cold:.1?} | {warm:.2?} |"
            );
        }
    }

    let instant = outputs(&[HOUR_MS], &[SeriesKind::Predicted], false);
    let mut cache_bytes = None;
    for count in [1_000, 10_000] {
        let source = family(count, DAY_MS + 2 * HOUR_MS, end);
        for (at, window) in [(segment_end, "1 h"), (segment_end + MINUTE_MS, "31 min")] {
            let run = |cache: &Cache| {
                evaluate(
                    &predictor,
                    &FamilyQuery {
                        family: FAMILY,
                        outputs: &instant,
                        times: &[at],
                    },
                    &source,
                    cache,
                    &metrics,
                    &Cancel::default(),
                )
            };
            let cold = timing::median(1, 3, || {
                black_box(run(&Cache::new(CACHE_VALUES)));
            });
            let warm_cache = Cache::new(CACHE_VALUES);
            let before = live_bytes();
            let answer = run(&warm_cache);
            drop(answer);
            let made = warm_cache.len();
            cache_bytes = Some(live_bytes().saturating_sub(before) as f64 / made as f64);
            let warm = timing::median(1, 5, || {
                black_box(run(&warm_cache));
            });
            println!(
                "| instant `predicted{{horizon=\"1h\"}}`, windows of {window} | {count} | {made} | {cold:.1?} | {warm:.2?} |"
            );
        }
    }
    println!(
        "\nmemory: a family's model holds {params} parameters, {:.0} KiB of f32; a cached forecast ({} steps ahead) {} bytes (live heap growth per forecast, 10,000 series)",
        params as f64 * 4.0 / 1024.0,
        horizon_steps,
        cache_bytes.map_or("?".into(), |b| format!("{b:.0}")),
    );
}

/// How many forecasts `outputs` at `times` make (the model's runs, kept in
/// the cache or not), and the median time of `runs` runs with a new cache
/// and with a warm one.
fn cold_and_warm(
    predictor: &Predictor,
    metrics: &Metrics,
    outputs: &[Output],
    times: &[i64],
    source: &[SourceSeries],
    runs: usize,
) -> (usize, std::time::Duration, std::time::Duration) {
    let query = FamilyQuery {
        family: FAMILY,
        outputs,
        times,
    };
    let run = |cache: &Cache| {
        evaluate(
            predictor,
            &query,
            source,
            cache,
            metrics,
            &Cancel::default(),
        )
    };
    let warm_cache = Cache::new(CACHE_VALUES);
    let before = metrics.cache_misses.get();
    run(&warm_cache);
    let made = metrics.cache_misses.get() - before;
    let cold = timing::median(0, runs, || {
        black_box(run(&Cache::new(CACHE_VALUES)));
    });
    let warm = timing::median(1, runs.max(3), || {
        black_box(run(&warm_cache));
    });
    (made as usize, cold, warm)
}

async fn through_prometheus() {
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let (mut h, history) = common::Harness::running(tmp.path(), false).await;
    h.instant(common::PREDICTED, history.end).await;
    eprintln!("waiting for the e2e family's model to train…");
    h.wait_model_ready().await;

    println!(
        "\nthrough Prometheus (query API over loopback), {} series, median of runs\n",
        common::INSTANCES.len()
    );
    println!("| query | source series | via promcast | ratio |");
    println!("|---|---:|---:|---:|");
    let one = r#"{instance="a"}"#;
    let day = common::DAY;
    // Cold: each run asks for a day not asked for before.
    let mut days_back = 0;
    let cold_day = {
        let mut times = Vec::new();
        for _ in 0..4 {
            days_back += 1;
            let end = history.end - days_back * day;
            let q = format!("{}{one}", common::PREDICTED);
            let start = Instant::now();
            black_box(h.range(&q, end - day, end, 60).await);
            times.push(start.elapsed());
        }
        times.sort();
        times[times.len() / 2]
    };
    let time_query = async |h: &mut common::Harness, q: String, range: bool| {
        let mut times = Vec::new();
        for _ in 0..11 {
            let start = Instant::now();
            if range {
                black_box(h.range(&q, history.end - day, history.end, 60).await);
            } else {
                black_box(h.instant(&q, history.end).await);
            }
            times.push(start.elapsed());
        }
        times.sort();
        times[times.len() / 2]
    };
    let source_day = time_query(&mut h, format!("{}{one}", common::METRIC), true).await;
    let warm_day = time_query(&mut h, format!("{}{one}", common::PREDICTED), true).await;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!(
        "| 24 h at 1 min, one series, every horizon, cold cache | {source_day:.1?} | {cold_day:.1?} | {:.1}× |",
        ratio(cold_day, source_day)
    );
    println!(
        "| 24 h at 1 min, one series, every horizon, warm cache | {source_day:.1?} | {warm_day:.1?} | {:.1}× |",
        ratio(warm_day, source_day)
    );
    let source_now = time_query(&mut h, common::METRIC.to_string(), false).await;
    let predicted_now = time_query(
        &mut h,
        format!(r#"{}{{horizon="1h"}}"#, common::PREDICTED),
        false,
    )
    .await;
    println!(
        "| instant, whole family, horizon 1h | {source_now:.1?} | {predicted_now:.1?} | {:.1}× |",
        ratio(predicted_now, source_now)
    );
    h.ensure_promcast_alive();
}
