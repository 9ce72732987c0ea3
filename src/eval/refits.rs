//! ETS and MSTL in a back-test: unlike the LSTM, refitted at every origin
//! on the points just before it.

use std::collections::HashMap;

use super::Phase;
use super::methods::{self, Refit};
use super::plan::FilePlan;

/// Origins refitted between two progress reports.
const PROGRESS_EVERY: usize = 64;

/// Each refitted model's forecasts from each origin, one to the plan's
/// longest horizon ahead.
#[derive(Debug)]
pub struct Refits(HashMap<(Refit, usize), Vec<f64>>);

impl Refits {
    /// Refits both models at every origin of the plan.
    pub fn run(plan: &FilePlan, progress: &(dyn Fn(Phase) + Sync)) -> Self {
        let (values, origins) = (&plan.grid.values, &plan.origins);
        let ahead = plan.max_steps().max(1);
        origins
            .iter()
            .enumerate()
            .flat_map(|(done, &i)| {
                let fits =
                    Refit::ALL.map(|m| ((m, i), methods::refit(m, values, i, ahead, plan.day)));
                if done % PROGRESS_EVERY == PROGRESS_EVERY - 1 || done + 1 == origins.len() {
                    progress(Phase::Refitting {
                        done: done + 1,
                        total: origins.len(),
                    });
                }
                fits.into_iter().filter_map(|(key, f)| Some((key, f?)))
            })
            .collect()
    }

    /// `model`'s forecast `steps` ahead of origin `i`.
    pub fn at(&self, model: Refit, i: usize, steps: usize) -> Option<f64> {
        self.0.get(&(model, i)).map(|f| f[steps - 1])
    }
}

impl FromIterator<((Refit, usize), Vec<f64>)> for Refits {
    fn from_iter<I: IntoIterator<Item = ((Refit, usize), Vec<f64>)>>(fits: I) -> Self {
        Self(fits.into_iter().collect())
    }
}
