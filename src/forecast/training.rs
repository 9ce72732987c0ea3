//! The training pipeline: from a family's history to a servable model.
//! One path shared by the server's registry and `promcast eval`, so that
//! what is evaluated is what is served.

use burn::tensor::Device;
use sha2::{Digest, Sha256};

use super::{source_spacing, staleness_ms};
use crate::calendar::now_ms;
use crate::model::store::ModelMeta;
use crate::model::train::{Epoch, TrainConfig, TrainError, train};
use crate::model::window::choose_step;
use crate::model::{Grid, LstmNet, Shape};
use crate::upstream::SourceSeries;

/// Everything about a family's training run except its history.
#[derive(Debug, Clone)]
pub struct TrainingPlan {
    /// The family trained.
    pub family: String,
    /// The version the new model gets.
    pub version: u64,
    /// The configured model step; `None` for the source's spacing.
    pub step_ms: Option<i64>,
    /// Input window length (`defaults.lookback`).
    pub lookback_ms: i64,
    /// The family's longest horizon.
    pub max_horizon_ms: i64,
    /// Network size and training budget.
    pub train: TrainConfig,
    /// The model this run replaces, by its layout and network: its
    /// weights start the run where the layout is unchanged.
    pub warm_start: Option<(Shape, LstmNet)>,
}

impl TrainingPlan {
    /// The model step and window layout for a source sampled every
    /// `spacing_ms` (`None`: unknown) with `history_ms` of history.
    pub fn layout(&self, spacing_ms: Option<i64>, history_ms: i64) -> (i64, Shape) {
        let step = choose_step(self.step_ms, spacing_ms, self.max_horizon_ms);
        let shape = Shape::for_step(step, self.lookback_ms, self.max_horizon_ms, history_ms);
        (step, shape)
    }
}

/// Trains the model `plan` describes on `history`, read over `span`
/// (Unix ms, inclusive). The returned metadata names no weights file yet.
pub fn fit(
    plan: &TrainingPlan,
    history: &[SourceSeries],
    span: (i64, i64),
    device: &Device,
    progress: &dyn Fn(Epoch),
) -> Result<(ModelMeta, LstmNet), TrainError> {
    let (start, end) = span;
    let (first, last) = history
        .iter()
        .filter_map(|s| Some((s.samples.first()?.0, s.samples.last()?.0)))
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
        .unwrap_or((end, end));
    let (step, shape) = plan.layout(source_spacing(history), last - first);
    let grids: Vec<Grid> = history
        .iter()
        .map(|s| Grid::resample(&s.samples, start, end, step, staleness_ms(step)))
        .collect();
    let warm = plan
        .warm_start
        .as_ref()
        .filter(|(previous, _)| *previous == shape)
        .map(|(_, net)| net);
    let trained = train(
        &grids,
        shape,
        &plan.train,
        seed_for(&plan.family),
        warm,
        device,
        progress,
    )?;
    let meta = ModelMeta {
        format: 0,
        family: plan.family.clone(),
        version: plan.version,
        trained_at_ms: now_ms(),
        step_ms: step,
        shape,
        spec: trained.net.spec(),
        history_ms: span,
        series: history.len(),
        series_available: history.len(),
        report: trained.report,
        weights: String::new(),
        sha256: String::new(),
    };
    Ok((meta, trained.net))
}

/// A per-family seed, so that retraining on the same data is reproducible:
/// from SHA-256, whose output no Rust release can change (the standard
/// library's `DefaultHasher` may change between releases).
fn seed_for(family: &str) -> u64 {
    let digest = Sha256::digest(family.as_bytes());
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::train::{Shortfall, history_needed_ms};

    /// The seed is part of what makes a model reproducible, across
    /// processes and Rust releases: pinned to SHA-256's first 8 bytes.
    /// What the README's "The first hours" says the defaults need before
    /// a model trains, by scrape interval and horizons.
    #[test]
    fn the_defaults_need_about_nine_hours() {
        let config = crate::config::Config::default();
        let need = |scrape_s: i64, max_horizon_ms: i64| {
            let plan = TrainingPlan {
                family: "m".into(),
                version: 1,
                step_ms: None,
                lookback_ms: config.defaults.lookback.as_millis_i64(),
                max_horizon_ms,
                train: config.model.clone(),
                warm_start: None,
            };
            let (step, shape) = plan.layout(Some(scrape_s * 1000), 0);
            let short = Shortfall {
                have_ms: 0,
                need_ms: history_needed_ms(&shape, step),
                step_ms: step,
            };
            format!("{} at {}", short.need(), short.step())
        };
        let longest = config.max_horizon("m").as_millis_i64();
        assert_eq!(need(15, longest), "9h15m at 45s");
        assert_eq!(need(60, longest), "9h24m at 1m");
        assert_eq!(need(15, 3_600_000), "2h5m at 15s");
        assert_eq!(need(60, 3_600_000), "3h9m at 1m");
    }

    #[test]
    fn seeds_are_pinned() {
        assert_eq!(seed_for("cpu"), 0x78f5_d0c6_f784_ab68);
        assert_ne!(seed_for("cpu"), seed_for("cpu2"));
    }
}
