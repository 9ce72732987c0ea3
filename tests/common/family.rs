//! The family the scenarios forecast: its source metric, the synthetic
//! series promcast serves for it, and promcast's configuration.

/// The source gauge.
pub const METRIC: &str = "e2e_cpu_usage_percent";
/// Its forecasts, as promcast serves them.
pub const PREDICTED: &str = "predicted_e2e_cpu_usage_percent";

/// promcast's configuration for the family: the three default horizons and a
/// small training budget so a test finishes in minutes; it also configures
/// a family from a PromQL expression over `METRIC`.
pub const PROMCAST_CONFIG: &str = "\
defaults:
  horizons: [15m, 1h, 6h]
  train_window: 7d
series:
  - name: e2e_cpu_smoothed
    expr: avg_over_time(e2e_cpu_usage_percent[5m])
model:
  max_epochs: 20
  max_training_time: 3m
";
