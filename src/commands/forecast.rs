//! `promcast forecast <selector>`: the forecast for a selector at one
//! moment, as a table: per source series and horizon the predicted value and
//! its interval, and the anomaly score.

use std::collections::BTreeMap;

use crate::calendar::{now_ms, parse_timestamp, rfc3339};
use crate::forecast::select::{self, Budget, Context};
use crate::labels::{Labels, METRIC_NAME, MatchOp, Matcher, parse_selector};
use crate::series::{HORIZON_LABEL, SeriesKind, is_synthetic, parse_name};

use super::table;

/// Prints the forecast for `selector` at `at` (default now).
pub async fn run(ctx: &Context, selector: &str, at: Option<&str>) -> anyhow::Result<()> {
    // The process ends with this command: training could not finish.
    ctx.registry.disable_on_demand_training();
    let at_ms = match at {
        Some(text) => parse_timestamp(text).ok_or_else(|| {
            anyhow::anyhow!(
                "--at {text:?}: expected RFC 3339 (2024-05-01T12:00:00Z) or Unix seconds"
            )
        })?,
        None => now_ms(),
    };
    let matchers = every_kind(parse_selector(selector)?)?;
    let deadline = tokio::time::Instant::now() + ctx.config.limits.request_timeout.to_std();
    let mut budget = Budget::new(&ctx.config.limits);
    let series = select::select(ctx, &matchers, &[at_ms], deadline, &mut budget).await?;
    if series.is_empty() {
        anyhow::bail!(
            "no series: {selector} matches no source series with data before {}",
            rfc3339(at_ms)
        );
    }

    // One row per source series and horizon; the anomaly score, which has
    // no horizon, goes on every row of its series.
    let mut rows: BTreeMap<(String, Labels, String), [Option<f64>; 4]> = BTreeMap::new();
    let mut anomaly: BTreeMap<(String, Labels), f64> = BTreeMap::new();
    for s in &series {
        let Some((kind, family)) = s.labels.get(METRIC_NAME).and_then(|n| parse_name(n)) else {
            continue;
        };
        let Some(&(_, value)) = s.samples.last() else {
            continue;
        };
        let mut labels = s.labels.clone();
        labels.remove(METRIC_NAME);
        let horizon = labels.remove(HORIZON_LABEL).unwrap_or_default();
        let column = match kind {
            SeriesKind::Predicted => 0,
            SeriesKind::PredictedLower => 1,
            SeriesKind::PredictedUpper => 2,
            SeriesKind::AnomalyScore => {
                anomaly.insert((family.to_owned(), labels), value);
                continue;
            }
        };
        rows.entry((family.to_owned(), labels, horizon))
            .or_default()[column] = Some(value);
    }
    for ((family, labels), score) in &anomaly {
        let has_rows = rows.keys().any(|(f, l, _)| f == family && l == labels);
        if !has_rows {
            rows.insert((family.clone(), labels.clone(), String::new()), [None; 4]);
        }
        for ((f, l, _), cells) in rows.iter_mut() {
            if f == family && l == labels {
                cells[3] = Some(*score);
            }
        }
    }

    let statuses = ctx.registry.statuses();
    let families: std::collections::BTreeSet<&String> = rows.keys().map(|(f, _, _)| f).collect();
    println!("forecast at {}", rfc3339(at_ms));
    for family in families {
        let model = statuses
            .iter()
            .find(|s| &s.family == family)
            .filter(|s| s.version > 0);
        match model {
            Some(m) => println!(
                "{family}: LSTM model version {} trained at {}",
                m.version,
                m.trained_at.as_deref().unwrap_or("?")
            ),
            None => println!(
                "{family}: seasonal baseline (no trained model; run `promcast train {family}`)"
            ),
        }
    }
    println!();
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.6}"));
    let table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|((family, labels, horizon), cells)| {
            let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            vec![
                format!("{family}{{{}}}", inner.join(", ")),
                if horizon.is_empty() {
                    "-".to_owned()
                } else {
                    horizon.clone()
                },
                cell(cells[0]),
                cell(cells[1]),
                cell(cells[2]),
                cell(cells[3]),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &[
                "series",
                "horizon",
                "predicted",
                "lower",
                "upper",
                "anomaly score"
            ],
            &table_rows
        )
    );
    Ok(())
}

/// A selector naming a plain metric asks for all its synthetic series.
fn every_kind(matchers: Vec<Matcher>) -> anyhow::Result<Vec<Matcher>> {
    let mut out = Vec::with_capacity(matchers.len());
    for m in matchers {
        match m.op() {
            MatchOp::Equal(name) if m.name() == METRIC_NAME && !is_synthetic(name) => {
                let names: Vec<String> = SeriesKind::ALL
                    .iter()
                    .map(|k| k.series_name(name))
                    .collect();
                out.push(Matcher::new(METRIC_NAME, "=~", &names.join("|"))?);
            }
            _ => out.push(m),
        }
    }
    Ok(out)
}
