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
    let step = choose_step(plan.step_ms, source_spacing(history), plan.max_horizon_ms);
    let (first, last) = history
        .iter()
        .filter_map(|s| Some((s.samples.first()?.0, s.samples.last()?.0)))
        .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
        .unwrap_or((end, end));
    let shape = Shape::for_step(step, plan.lookback_ms, plan.max_horizon_ms, last - first);
    let grids: Vec<Grid> = history
        .iter()
        .map(|s| Grid::resample(&s.samples, start, end, step, staleness_ms(step)))
        .collect();
    let trained = train(
        &grids,
        shape,
        &plan.train,
        seed_for(&plan.family),
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

    /// The seed is part of what makes a model reproducible, across
    /// processes and Rust releases: pinned to SHA-256's first 8 bytes.
    #[test]
    fn seeds_are_pinned() {
        assert_eq!(seed_for("cpu"), 0x78f5_d0c6_f784_ab68);
        assert_ne!(seed_for("cpu"), seed_for("cpu2"));
    }
}
