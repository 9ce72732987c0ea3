//! `promcast train [FAMILY...]`: trains families now, from the upstream,
//! saves the models to the model store, and prints a summary table.

use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::forecast::registry::{ModelStatus, State};
use crate::forecast::select::Context;

use super::table;

/// How often the progress bar looks at the training run.
const POLL: Duration = Duration::from_millis(200);

/// Trains `families` (every known family when empty) one after the other.
pub async fn run(ctx: &Context, families: Vec<String>) -> anyhow::Result<()> {
    let families = if families.is_empty() {
        ctx.registry.families()
    } else {
        families
    };
    if families.is_empty() {
        anyhow::bail!(
            "no family to train: name one (`promcast train node_load1`) or configure series: in the config file"
        );
    }
    let style = ProgressStyle::with_template("{prefix:>28} [{bar:30}] epoch {pos}/{len} {msg}")
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?
        .progress_chars("=> ");
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for family in families {
        let bar = ProgressBar::new(ctx.config.model.max_epochs as u64)
            .with_style(style.clone())
            .with_prefix(family.clone());
        bar.set_message("reading history");
        let registry = Arc::clone(&ctx.registry);
        let name = family.clone();
        let run = tokio::spawn(async move { registry.train_now(&name).await });
        tokio::pin!(run);
        let status = loop {
            tokio::select! {
                done = &mut run => break done?,
                () = tokio::time::sleep(POLL) => {
                    let status = ctx.registry.statuses().into_iter().find(|s| s.family == family);
                    if let Some([epoch, max]) = status.and_then(|s| s.epoch) {
                        bar.set_length(max as u64);
                        bar.set_position(epoch as u64);
                        bar.set_message("training");
                    }
                }
            }
        };
        let ok = status
            .as_ref()
            .is_some_and(|s| s.state == State::Ready && s.error.is_none());
        bar.finish_with_message(if ok { "done" } else { "failed" });
        if !ok {
            failed.push(format!(
                "{family}: {}",
                status
                    .as_ref()
                    .and_then(why_not)
                    .unwrap_or_else(|| "unknown state".to_owned())
            ));
        }
        rows.push(row(&family, status.as_ref()));
    }
    println!();
    print!(
        "{}",
        table(
            &[
                "family",
                "result",
                "version",
                "series",
                "step",
                "epochs",
                "validation MAE",
                "flat MAE",
                "seconds",
                "error"
            ],
            &rows
        )
    );
    if !failed.is_empty() {
        anyhow::bail!(
            "{} of {} families failed to train:\n  {}",
            failed.len(),
            rows.len(),
            failed.join("\n  ")
        );
    }
    Ok(())
}

fn row(family: &str, status: Option<&ModelStatus>) -> Vec<String> {
    let dash = || "-".to_owned();
    let Some(s) = status else {
        return vec![
            family.to_owned(),
            "unknown".into(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
            dash(),
        ];
    };
    let result = if s.error.is_some() {
        "failed"
    } else if s.history.is_some() {
        "waiting"
    } else {
        "trained"
    };
    vec![
        family.to_owned(),
        result.to_owned(),
        s.version.to_string(),
        s.series.map_or_else(dash, |n| n.to_string()),
        s.step.clone().unwrap_or_else(dash),
        s.epochs.map_or_else(dash, |n| n.to_string()),
        s.validation_mae.map_or_else(dash, |v| format!("{v:.4}")),
        s.naive_mae.map_or_else(dash, |v| format!("{v:.4}")),
        s.training_seconds.map_or_else(dash, |v| format!("{v:.1}")),
        why_not(s).unwrap_or_default(),
    ]
}

/// Why a family has no new model: its training error, or how much history
/// it still waits for.
fn why_not(s: &ModelStatus) -> Option<String> {
    s.error.clone().or_else(|| {
        s.history
            .as_ref()
            .map(|h| format!("waiting for history: {}", h.summary))
    })
}
