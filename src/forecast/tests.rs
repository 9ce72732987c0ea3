use super::read::{Domain, along, latest_at};
use super::*;

use crate::duration::PromDuration;
use crate::labels::METRIC_NAME;
use crate::model::FEATURES;
use crate::model::window::sample_points;
use crate::series::HORIZON_LABEL;
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
        &FamilyQuery {
            family: "cpu",
            outputs: &outputs(),
            times,
        },
        source,
        &Cache::new(1 << 20),
        &Metrics::new(),
        &Cancel::default(),
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

/// A series that stopped reporting is forecast from its last sample while
/// that sample is fresh (within the staleness), and not at all once it is
/// stale: no forecast pretends that hour-old history is current.
#[test]
fn a_stopped_series_gets_no_forecast_from_stale_history() {
    let stop = 2 * 86_400_000;
    let source = cycle(stop);
    let (fresh, stale) = (stop + 60_000, stop + 30 * 60_000);
    let out = run(&source, &[fresh, stale]);
    let predicted = out
        .iter()
        .find(|s| s.labels.get(METRIC_NAME).map(String::as_str) == Some("predicted_cpu"))
        .expect("a forecast series");
    let at: Vec<i64> = predicted.samples.iter().map(|(t, _)| *t).collect();
    assert_eq!(at, [fresh]);
}

/// A cancelled evaluation (its request's deadline passed) stops before
/// the model runs: nothing computed, nothing answered; the same
/// evaluation uncancelled computes and answers.
#[test]
fn a_cancelled_evaluation_computes_nothing() {
    let predictor = model(8, 6, 2);
    let end = 2 * 86_400_000;
    let source = cycle(end);
    let times = evaluation_times(end - 3_600_000, end, 60_000, 100);
    let eval = |cancel: &Cancel, metrics: &Metrics| {
        evaluate(
            &predictor,
            &FamilyQuery {
                family: "cpu",
                outputs: &outputs(),
                times: &times,
            },
            &source,
            &Cache::new(1 << 20),
            metrics,
            cancel,
        )
    };
    let cancelled = Cancel::default();
    cancelled.cancel();
    let metrics = Metrics::new();
    assert!(eval(&cancelled, &metrics).is_empty());
    assert_eq!(metrics.cache_misses.get(), 0);
    assert!(!eval(&Cancel::default(), &metrics).is_empty());
    assert!(metrics.cache_misses.get() > 0);
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
            &FamilyQuery {
                family: "cpu",
                outputs: &outputs(),
                times,
            },
            &source,
            &Cache::new(1 << 20),
            metrics,
            &Cancel::default(),
        )
    };
    let metrics = Metrics::new();
    let range = eval(&times, &metrics);
    // 21 forecasts, and the anomaly score's residual at the first time
    // reads the anchor a step before it; its memory reads samples only.
    assert_eq!(metrics.cache_misses.get(), 21 + 1);
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

/// The anomaly score reads only the first step of the forecasts it alone
/// needs: asked alone, or beside forecasts that read whole anchors, it is
/// the same, on a model with a spike to score.
#[test]
fn an_anomaly_score_is_the_same_alone_or_beside_forecasts() {
    let predictor = model(8, 6, 2);
    let end = 3 * 86_400_000 + 17 * 60_000;
    let mut source = cycle(end);
    let spike = source[0].samples.len() - 30;
    source[0].samples[spike].1 += 400.0;
    let times = evaluation_times(end - 3_600_000, end, 60_000, 100);
    let eval = |outputs: &[Output]| {
        evaluate(
            &predictor,
            &FamilyQuery {
                family: "cpu",
                outputs,
                times: &times,
            },
            &source,
            &Cache::new(1 << 20),
            &Metrics::new(),
            &Cancel::default(),
        )
    };
    let all = eval(&outputs());
    let alone = eval(&outputs()[2..]);
    assert_eq!(all.len(), 3);
    assert_eq!(alone, all[2..]);
    assert!(
        alone[0].samples.iter().any(|(_, v)| *v > 1.0),
        "the spike scores: {:?}",
        alone[0].samples
    );
}

/// A series stuck at zero for two days that moves gets a score to page
/// on, not an infinite one that no query can serve.
#[test]
fn a_constant_series_that_moves_is_served_a_score() {
    let end = 2 * 86_400_000;
    let mut samples: Vec<(i64, f64)> = (0..end / 60_000).map(|i| (i * 60_000, 0.0)).collect();
    samples.push((end, 5.0));
    let source = [SourceSeries {
        labels: [("instance".to_owned(), "a".to_owned())].into(),
        samples,
    }];
    let out = run(&source, &[end]);
    let score = out
        .iter()
        .find(|s| s.labels[METRIC_NAME] == "anomaly_score_cpu")
        .and_then(|s| s.samples.first())
        .map(|&(_, v)| v);
    assert!(score.is_some_and(|v| v.is_finite() && v > 1.0), "{out:?}");
}

/// An instant anomaly score runs the model once per series, however long
/// its memory: what it remembers comes from the samples.
#[test]
fn an_instant_anomaly_score_makes_one_forecast_per_series() {
    let predictor = model(8, 6, 2);
    let end = 3 * 86_400_000 + 17 * 60_000;
    let source = cycle(end);
    let metrics = Metrics::new();
    let scored = evaluate(
        &predictor,
        &FamilyQuery {
            family: "cpu",
            outputs: &outputs()[2..],
            times: &[end],
        },
        &source,
        &Cache::new(1 << 20),
        &metrics,
        &Cancel::default(),
    );
    assert_eq!(scored.len(), source.len());
    assert!(scored.iter().all(|s| s.samples.len() == 1));
    assert_eq!(metrics.cache_misses.get(), source.len() as u64);
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
            &FamilyQuery {
                family: "cpu",
                outputs: &outputs,
                times: &[now],
            },
            source,
            &cache,
            &metrics,
            &Cancel::default(),
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
    let truth = 50.0 + 20.0 * ((t + 3_600_000) as f64 / 86_400_000.0 * std::f64::consts::TAU).sin();
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

/// A series scraped for two minutes already gets the baseline's forecast
/// (it used to need samples up to half a lookback before the newest
/// point), with a band that widens as the square root of the horizon
/// beyond the history seen; with more than a day seen it does not widen.
#[test]
fn the_baseline_answers_young_series_with_wide_bands() {
    let h = |s: &str| Some(Horizon::new(s.parse::<PromDuration>().unwrap()));
    let outputs: Vec<Output> = ["15m", "1h"]
        .into_iter()
        .flat_map(|horizon| {
            [SeriesKind::Predicted, SeriesKind::PredictedUpper].map(|kind| Output {
                kind,
                horizon: h(horizon),
            })
        })
        .collect();
    let predictor = Predictor::Baseline(Baseline::new(None, 3_600_000, 21_600_000, 0.9));
    let half_widths = |source: &[SourceSeries], t: i64| -> Vec<f64> {
        let out = evaluate(
            &predictor,
            &FamilyQuery {
                family: "cpu",
                outputs: &outputs,
                times: &[t],
            },
            source,
            &Cache::new(1 << 20),
            &Metrics::new(),
            &Cancel::default(),
        );
        assert_eq!(out.len(), 4, "{out:?}");
        let value = |name: &str, horizon: &str| {
            out.iter()
                .find(|s| s.labels[METRIC_NAME] == name && s.labels[HORIZON_LABEL] == horizon)
                .map(|s| s.samples[0].1)
                .unwrap()
        };
        ["15m", "1h"]
            .map(|horizon| value("predicted_upper_cpu", horizon) - value("predicted_cpu", horizon))
            .to_vec()
    };
    let start = 10 * 86_400_000;
    let young: Vec<SourceSeries> = cycle(start + 120_000)
        .into_iter()
        .map(|mut s| {
            s.samples.retain(|(t, _)| *t >= start);
            s
        })
        .collect();
    assert_eq!(young[0].samples.len(), 3);
    let w = half_widths(&young, start + 120_000);
    // Seen for 2 minutes: 15m is √7.5 wider than calibrated, 1h √30.
    assert!((w[1] / w[0] - 2.0).abs() < 1e-9, "{w:?}");
    assert!(w[0] > 0.0);
    // Seen for days: one band at every horizon.
    let w = half_widths(&cycle(start), start);
    assert!((w[1] / w[0] - 1.0).abs() < 1e-9, "{w:?}");
}

/// A series that never went negative gets no negative forecast or bound;
/// one that did is forecast as the model says from its first negative
/// sample on, and held at 0 before it.
#[test]
fn forecasts_of_series_that_never_went_negative_stay_at_or_above_zero() {
    let end = 3 * 86_400_000;
    let times = evaluation_times(end - 86_400_000, end, 600_000, 1000);
    let lower = [Output {
        kind: SeriesKind::PredictedLower,
        horizon: Some(Horizon::new("1h".parse::<PromDuration>().unwrap())),
    }];
    let lower_bounds = |offset: f64| {
        let mut source = cycle(end);
        // 50 ± 20 shifted down: 0 at the trough, or below it.
        for sample in &mut source[0].samples {
            sample.1 -= 30.0 + offset;
        }
        let first_negative = source[0].samples.iter().find(|s| s.1 < 0.0).map(|s| s.0);
        let predictor = Predictor::Baseline(Baseline::new(None, 1_800_000, 21_600_000, 0.9));
        let out = evaluate(
            &predictor,
            &FamilyQuery {
                family: "disk",
                outputs: &lower,
                times: &times,
            },
            &source,
            &Cache::new(1 << 20),
            &Metrics::new(),
            &Cancel::default(),
        );
        assert_eq!(out[0].samples.len(), times.len());
        (out[0].samples.clone(), first_negative)
    };
    let (never, first_negative) = lower_bounds(-0.5);
    assert_eq!(first_negative, None);
    assert!(never.iter().all(|s| s.1 >= 0.0), "{never:?}");
    assert!(
        never.iter().any(|s| s.1 == 0.0),
        "the band reaches below 0 near the trough and is held there: {never:?}"
    );
    let (went, first_negative) = lower_bounds(1.0);
    let first_negative = first_negative.expect("the shifted cycle goes negative");
    assert!(first_negative < times[0], "before the evaluated day");
    assert!(
        went.iter().any(|s| s.1 < 0.0),
        "a series with negative samples keeps negative bounds: {went:?}"
    );
}

#[test]
fn the_domain_is_decided_by_samples_up_to_the_evaluation_time() {
    let domain = Domain::of(&[(0, 1.0), (60, -0.5), (120, 2.0)]);
    assert_eq!(domain.clamp(-3.0, 59), 0.0);
    assert_eq!(domain.clamp(-3.0, 60), -3.0);
    assert_eq!(domain.clamp(4.0, 0), 4.0);
    let positive = Domain::of(&[(0, 0.0), (60, 5.0)]);
    assert_eq!(positive.clamp(-1.0, 1000), 0.0);
    assert!(positive.clamp(f64::NAN, 1000).is_nan());
    assert_eq!(positive.clamp(f64::NEG_INFINITY, 1000), f64::NEG_INFINITY);
}

/// The anomaly rows' one walk through the samples (off the multiples of
/// the step) finds what a look-up per time finds, gaps and stale samples
/// included.
#[test]
fn sampled_rows_match_a_look_up_per_time() {
    let samples: Vec<(i64, f64)> = (0..500)
        .filter(|i| i % 17 > 3)
        .map(|i| (i * 1_000 + (i % 3) * 100, i as f64))
        .collect();
    let walked = sample_points(&samples, -2_500, 603, 1_000, 2_500);
    assert_eq!(walked.len(), 603);
    for (k, v) in walked.iter().enumerate() {
        let t = k as i64 * 1_000 - 2_500;
        let expected = read::latest_at(&samples, t, 2_500).unwrap_or(f64::NAN);
        assert_eq!(v.to_bits(), expected.to_bits(), "at {t}");
    }
}
