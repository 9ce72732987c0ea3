//! `promcast forecast <selector>`: the forecast for a selector at one
//! moment, as a table: per source series and horizon the predicted value and
//! its interval, and the anomaly score.

use std::collections::BTreeMap;

use crate::calendar::{now_ms, parse_timestamp, rfc3339};
use crate::forecast::select::{self, Budget, Context};
use crate::labels::{Labels, METRIC_NAME, MatchOp, Matcher, parse_selector};
use crate::series::{HORIZON_LABEL, SeriesKind, parse_name};

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
    let deadline = tokio::time::Instant::now() + ctx.config.limits.request_timeout.to_std();
    let mut budget = Budget::new(&ctx.config.limits);
    let mut series = Vec::new();
    for matchers in every_kind(parse_selector(selector)?)? {
        series.extend(select::select(ctx, &matchers, &[at_ms], deadline, &mut budget).await?);
    }
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

/// The selectors for every synthetic series of the family a selector
/// names, whether it names the source metric (`m`) or one of its synthetic
/// series (`predicted_m{horizon="1h"}`): one exact name per kind, as
/// Prometheus would send them to the server, so that the table shows the
/// bounds beside the forecast and the server's errors (an unreachable
/// upstream, an HTTP 404) rather than an empty expansion over the families
/// promcast already knows. Other selectors go as they are.
fn every_kind(matchers: Vec<Matcher>) -> anyhow::Result<Vec<Vec<Matcher>>> {
    let family = matchers.iter().find_map(|m| match m.op() {
        MatchOp::Equal(name) if m.name() == METRIC_NAME => Some(
            parse_name(name)
                .map_or(name.as_str(), |(_, family)| family)
                .to_owned(),
        ),
        _ => None,
    });
    let Some(family) = family else {
        return Ok(vec![matchers]);
    };
    let rest: Vec<Matcher> = matchers
        .into_iter()
        .filter(|m| m.name() != METRIC_NAME)
        .collect();
    SeriesKind::ALL
        .iter()
        .map(|kind| {
            let mut selector = vec![Matcher::new(METRIC_NAME, "=", &kind.series_name(&family))?];
            selector.extend(rest.iter().cloned());
            Ok(selector)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(selector: &str) -> Vec<String> {
        let mut names: Vec<String> = every_kind(parse_selector(selector).unwrap())
            .unwrap()
            .iter()
            .map(|matchers| {
                let rendered: Vec<String> = matchers.iter().map(ToString::to_string).collect();
                rendered.join(",")
            })
            .collect();
        names.sort();
        names
    }

    /// A metric nobody has asked for yet still gets exact names, which
    /// reach the upstream (and its errors) as the server's would.
    #[test]
    fn a_family_expands_to_exact_names_of_every_kind() {
        let expected = [
            r#"__name__="anomaly_score_new_metric",job="a""#,
            r#"__name__="predicted_lower_new_metric",job="a""#,
            r#"__name__="predicted_new_metric",job="a""#,
            r#"__name__="predicted_upper_new_metric",job="a""#,
        ];
        assert_eq!(names(r#"new_metric{job="a"}"#), expected);
        assert_eq!(names(r#"predicted_upper_new_metric{job="a"}"#), expected);
        assert_eq!(names(r#"{job="a"}"#), [r#"job="a""#]);
    }
}
