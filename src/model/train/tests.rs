use super::*;

#[test]
fn residual_sigma_follows_the_tail() {
    // Symmetric ±1: MAD 1 → σ 1.4826; the tail gives 1/2.576 less.
    let even: Vec<f64> = (0..100)
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    assert!((residual_sigma(&even) - MAD_TO_SIGMA).abs() < 1e-9);
    // Mostly zero with 2 % at ±50: the bulk says 0, the tail 50/2.576.
    let spiky: Vec<f64> = (0..100)
        .map(|i| match i {
            0 => 50.0,
            1 => -50.0,
            _ => 0.0,
        })
        .collect();
    assert!((residual_sigma(&spiky) - 50.0 / TAIL_SIGMAS).abs() < 1e-9);
    assert_eq!(residual_sigma(&[]), 0.0);
}

#[test]
fn quantiles_interpolate() {
    let v = [4.0, 1.0, 3.0, 2.0];
    assert_eq!(quantile(&v, 0.0), 1.0);
    assert_eq!(quantile(&v, 1.0), 4.0);
    assert_eq!(quantile(&v, 0.5), 2.5);
    assert_eq!(quantile(&[], 0.5), 0.0);
}

/// A short run on a clean daily cycle must learn something: beat the
/// flat forecast on held-out data.
#[test]
fn learns_a_daily_cycle_better_than_flat() {
    let step = 600_000; // 10 minutes
    let n = 6 * 144;
    let values: Vec<f64> = (0..n)
        .map(|i| {
            let day = i as f64 / 144.0 * std::f64::consts::TAU;
            50.0 + 20.0 * day.sin() + ((i * 7919 % 13) as f64 - 6.0) * 0.2
        })
        .collect();
    let grid = Grid::from_values(0, step, values);
    let shape = Shape {
        window: 12,
        segment: 6,
        horizon_steps: 12,
        norm_points: 144,
        weekly: false,
    };
    let cfg = TrainConfig {
        hidden: 16,
        layers: 1,
        max_epochs: 40,
        warm_epochs: 2,
        patience: 40,
        batch_size: 32,
        windows_per_epoch: 256,
        learning_rate: 1e-2,
        max_training_time: PromDuration::from_secs(120),
        interval_coverage: 0.9,
    };
    let trained = train(
        std::slice::from_ref(&grid),
        shape,
        &cfg,
        7,
        None,
        &Device::flex(),
        &|_| {},
    )
    .unwrap();
    let r = &trained.report;
    assert!(r.validation_mae < r.naive_mae * 0.8, "{r:?}");
    assert!(!r.warm_start);
    assert_eq!(r.residual_lo.len(), 12);
    assert!(
        r.residual_lo
            .iter()
            .zip(&r.residual_hi)
            .all(|(lo, hi)| lo <= hi)
    );

    // A retrain from these weights takes at most `warm_epochs` and starts
    // where the first run ended: ahead of a cold run of as many epochs
    // with the same seed, which is what it would be had the weights not
    // been loaded.
    let warm = train(
        std::slice::from_ref(&grid),
        shape,
        &cfg,
        8,
        Some(&trained.net),
        &Device::flex(),
        &|_| {},
    )
    .unwrap();
    let short = TrainConfig {
        max_epochs: 2,
        ..cfg.clone()
    };
    let cold = train(&[grid], shape, &short, 8, None, &Device::flex(), &|_| {}).unwrap();
    let (w, c) = (&warm.report, &cold.report);
    assert!(w.warm_start && w.epochs <= 2, "{w:?}");
    assert!(w.validation_mae < r.validation_mae * 1.2, "{w:?} vs {r:?}");
    assert!(w.validation_mae < c.validation_mae, "{w:?} vs {c:?}");
}

const SMALL: Shape = Shape {
    window: 8,
    segment: 4,
    horizon_steps: 4,
    norm_points: 16,
    weekly: false,
};

fn tiny() -> TrainConfig {
    TrainConfig {
        hidden: 4,
        layers: 1,
        max_epochs: 1,
        warm_epochs: 1,
        patience: 1,
        batch_size: 4,
        windows_per_epoch: 4,
        learning_rate: 1e-3,
        max_training_time: PromDuration::from_secs(10),
        interval_coverage: 0.9,
    }
}

/// A short history is measured in time, from its first sample, however
/// long the grid it sits in.
#[test]
fn too_little_history_is_a_shortfall_in_time() {
    // 40 NaN points (the unfilled part of the training window), then 20
    // minutes of samples.
    let mut values = vec![f64::NAN; 40];
    values.extend([1.0; 20]);
    let grid = Grid::from_values(0, 60_000, values);
    let err = train(&[grid], SMALL, &tiny(), 1, None, &Device::flex(), &|_| {}).err();
    // 42 steps before the split are 80 % of 52.5: 53 minutes.
    let expected = Shortfall {
        have_ms: 19 * 60_000,
        need_ms: 53 * 60_000,
        step_ms: 60_000,
    };
    match err {
        Some(TrainError::NotEnoughHistory(s)) => assert_eq!(s, expected),
        other => panic!("{other:?}"),
    }
    assert_eq!(expected.to_string(), "19m of ~53m");
    assert_eq!(expected.wait_ms(), 35 * 60_000);
    assert_eq!(expected.after(60 * 60_000).have_ms, expected.need_ms);
    let seconds = Shortfall {
        have_ms: 45_500,
        need_ms: 33_255_000,
        step_ms: 45_000,
    };
    assert_eq!(seconds.to_string(), "45s of ~9h15m");
}

/// Long enough, but mostly gaps: that is a failure, not a wait.
#[test]
fn a_long_history_of_gaps_is_an_error() {
    let values = (0..120)
        .map(|i| if i % 20 == 0 { 1.0 } else { f64::NAN })
        .collect();
    let grid = Grid::from_values(0, 60_000, values);
    assert!(matches!(
        train(&[grid], SMALL, &tiny(), 1, None, &Device::flex(), &|_| {}),
        Err(TrainError::NotEnoughData { .. })
    ));
}

/// History that ends long before the grid does (an exporter that
/// stopped) or that has a long gap still trains: validation holds the
/// most recent windows that exist: the split falls in the last stretch
/// of data.
#[test]
fn stale_or_gapped_history_validates_on_its_latest_windows() {
    let cfg = tiny();
    let points = 400;
    let cycle = |i: usize| (i % 7) as f64;
    let mut stale: Vec<f64> = (0..points).map(cycle).collect();
    stale.extend(std::iter::repeat_n(f64::NAN, 3 * points));
    let mut gapped: Vec<f64> = (0..points / 2).map(cycle).collect();
    gapped.extend(std::iter::repeat_n(f64::NAN, 3 * points));
    gapped.extend((0..points / 2).map(cycle));
    let last_stretch = [(0, points), (points / 2 + 3 * points, 4 * points)];
    for ((what, values), (from, to)) in [("stale", stale), ("gapped", gapped)]
        .into_iter()
        .zip(last_stretch)
    {
        let grid = Grid::from_values(0, 60_000, values);
        let split = split_time(std::slice::from_ref(&grid));
        assert!(
            (grid.time(from)..grid.time(to)).contains(&split),
            "{what}: split at {split}"
        );
        let (train_set, val_set) = split_windows(
            std::slice::from_ref(&grid),
            SMALL,
            &cfg,
            &mut SmallRng::seed_from_u64(1),
        );
        assert!(
            train_set.len >= MIN_TRAIN_WINDOWS && val_set.len >= MIN_VALIDATION_WINDOWS,
            "{what}: {} training and {} validation windows",
            train_set.len,
            val_set.len
        );
        let trained = train(&[grid], SMALL, &cfg, 1, None, &Device::flex(), &|_| {});
        assert!(trained.is_ok(), "{what}: {:?}", trained.err());
    }
}

/// A series without gaps that spans exactly the history needed yields
/// enough windows, whether the grid starts at its first sample (eval) or
/// a training window earlier (the server), wherever the segments fall;
/// 5 % less is too little where they fall worst (a window's first end
/// comes a full window after the first sample).
#[test]
fn the_history_needed_is_enough_and_not_much_more() {
    let shapes = [
        (45_000, Shape::for_step(45_000, 3_600_000, 21_600_000, 0)),
        (60_000, Shape::for_step(60_000, 3_600_000, 21_600_000, 0)),
        (15_000, Shape::for_step(15_000, 3_600_000, 3_600_000, 0)),
        (1_000, Shape::for_step(1_000, 3_600_000, 10_000, 0)),
        (60_000, SMALL),
    ];
    let cfg = TrainConfig::default();
    // Training and validation windows of a grid whose first point is
    // `origin` steps after the epoch: `lead` gaps, then `points` values.
    let counts = |shape: Shape, step: i64, origin: i64, lead: usize, points: usize| {
        let mut values = vec![f64::NAN; lead];
        values.extend((0..points).map(|i| (i % 7) as f64));
        let grid = Grid::from_values(origin * step, step, values);
        let (train, val) = split_windows(&[grid], shape, &cfg, &mut SmallRng::seed_from_u64(1));
        (train.len, val.len)
    };
    for (step, shape) in shapes {
        let need = history_needed_ms(&shape, step);
        assert_eq!(need % step, 0);
        let points = (need / step) as usize + 1;
        let seg = shape.segment as i64;
        for offset in [0, 1, seg / 2] {
            for lead in [0, 3 * shape.window] {
                let origin = 1000 * seg + offset - lead as i64;
                let (train, val) = counts(shape, step, origin, lead, points);
                assert!(
                    train >= MIN_TRAIN_WINDOWS && val >= MIN_VALIDATION_WINDOWS,
                    "{shape:?} at {step} ms, offset {offset}, {lead} gaps first: {train} and {val} windows"
                );
            }
        }
        let (train, val) = counts(shape, step, 1000 * seg + 1, 0, points * 19 / 20);
        assert!(
            train < MIN_TRAIN_WINDOWS || val < MIN_VALIDATION_WINDOWS,
            "{shape:?} at {step} ms: 95 % of the need already gives {train} and {val} windows"
        );
    }
}
