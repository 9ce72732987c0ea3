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
        patience: 40,
        batch_size: 32,
        windows_per_epoch: 256,
        learning_rate: 1e-2,
        max_training_time: PromDuration::from_secs(120),
        interval_coverage: 0.9,
    };
    let trained = train(&[grid], shape, &cfg, 7, &Device::flex(), &|_| {}).unwrap();
    let r = &trained.report;
    assert!(r.validation_mae < r.naive_mae * 0.8, "{r:?}");
    assert_eq!(r.residual_lo.len(), 12);
    assert!(
        r.residual_lo
            .iter()
            .zip(&r.residual_hi)
            .all(|(lo, hi)| lo <= hi)
    );
}

#[test]
fn too_little_history_is_an_error() {
    let grid = Grid::from_values(0, 60_000, vec![1.0; 20]);
    let shape = Shape {
        window: 8,
        segment: 4,
        horizon_steps: 4,
        norm_points: 16,
        weekly: false,
    };
    let cfg = TrainConfig {
        hidden: 4,
        layers: 1,
        max_epochs: 1,
        patience: 1,
        batch_size: 4,
        windows_per_epoch: 4,
        learning_rate: 1e-3,
        max_training_time: PromDuration::from_secs(10),
        interval_coverage: 0.9,
    };
    assert!(matches!(
        train(&[grid], shape, &cfg, 1, &Device::flex(), &|_| {}),
        Err(TrainError::NotEnoughData { .. })
    ));
}
