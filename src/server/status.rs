//! `GET /`: the status page, in the spirit of Prometheus's own: where
//! history comes from and whether it answers, every family's model, and per
//! family a chart of the source series against the forecast made for each
//! moment, with the prediction band. Server-rendered HTML and SVG.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use hyper::StatusCode;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use tokio::time::Instant;

use crate::calendar::{now_ms, rfc3339};
use crate::forecast::evaluation_times;
use crate::forecast::missing::MissingFamily;
use crate::forecast::registry::ModelStatus;
use crate::labels::{Labels, METRIC_NAME, Matcher};
use crate::series::{HORIZON_LABEL, SeriesKind};

use super::chart::Chart;
use super::{AppState, HttpResponse, text};
use crate::forecast::select::{self, Budget, MAX_POINTS};

/// How much past the charts show.
const CHART_SPAN_MS: i64 = 6 * 3_600_000;
const CHART_STEP_MS: i64 = 5 * 60_000;
/// Families charted; the table lists them all.
const MAX_CHARTS: usize = 16;

/// Renders the status page.
pub async fn page(state: &AppState) -> HttpResponse {
    let deadline = Instant::now() + state.ctx.config.limits.request_timeout.to_std();
    let statuses = state.ctx.registry.statuses();
    let families = state.ctx.registry.families();
    let mut html = String::from(HEAD);
    let ready = state.ready.load(Ordering::Relaxed);
    let _ = write!(
        html,
        "<h1>promcast</h1><p class=\"upstream\">Upstream: <b>{}</b> · {} · ",
        escape(&state.ctx.upstream.describe()),
        if ready {
            "ready"
        } else {
            "<b>not ready</b>: the upstream has not answered yet"
        },
    );
    match state.ctx.upstream.last_error() {
        Some((at, error)) => {
            let _ = write!(
                html,
                "last upstream error at {}: <span class=\"error\">{}</span></p>",
                rfc3339(at),
                escape(&error)
            );
        }
        None => html.push_str("no upstream errors since start</p>"),
    }
    html.push_str(&model_table(&families, &statuses));
    html.push_str(&missing_table(&state.ctx.missing.list()));
    html.push_str("<h2>Forecasts</h2><p class=\"legend\">Black: the source series. Blue, dashed: the forecast for each moment, made one horizon earlier (the configured horizon nearest 1h), continuing past now. Shaded: the prediction interval. Red: now.</p>");
    for family in families.iter().take(MAX_CHARTS) {
        html.push_str(&family_chart(state, family, deadline).await);
    }
    if families.len() > MAX_CHARTS {
        let _ = write!(
            html,
            "<p>{} more families are not charted here.</p>",
            families.len() - MAX_CHARTS
        );
    }
    html.push_str(FOOT);
    let mut response = text(StatusCode::OK, html);
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn model_table(families: &[String], statuses: &[ModelStatus]) -> String {
    let mut out = String::from(
        "<h2>Models</h2><table id=\"models\"><thead><tr><th>family</th><th>state</th><th>answering</th><th>version</th><th>trained at</th><th>validation MAE</th><th>flat MAE</th><th>step</th><th>series</th><th>training</th><th>last error</th></tr></thead><tbody>",
    );
    let opt = |v: Option<String>| v.map_or_else(|| "–".to_owned(), |v| escape(&v));
    for family in families {
        let Some(s) = statuses.iter().find(|s| &s.family == family) else {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>pending</td><td>seasonal_baseline</td><td colspan=\"8\">not asked for yet</td></tr>",
                escape(family)
            );
            continue;
        };
        let state = s.state.name();
        let state_cell = match &s.history {
            Some(h) => format!("{state}: {}", h.summary),
            None => state.to_owned(),
        };
        let training = match (s.training, s.queued, &s.retry_at, &s.history) {
            (true, _, _, _) => "running".to_owned(),
            (_, true, _, _) => "queued".to_owned(),
            (_, _, _, Some(h)) => format!("starts at {} (enough history)", h.ready_at),
            (_, _, Some(at), None) => format!("retry at {at}"),
            _ => s.training_seconds.map_or_else(
                || "–".to_owned(),
                |t| format!("{t:.0} s, {} epochs", s.epochs.unwrap_or(0)),
            ),
        };
        let _ = write!(
            out,
            "<tr class=\"{state}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"error\">{}</td></tr>",
            escape(&s.family),
            escape(&state_cell),
            s.predictor,
            s.version,
            opt(s.trained_at.clone()),
            opt(s.validation_mae.map(|v| format!("{v:.3}"))),
            opt(s.naive_mae.map(|v| format!("{v:.3}"))),
            opt(s.step.clone()),
            opt(s.series.map(|n| n.to_string())),
            escape(&training),
            opt(s.error.clone()),
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// Families asked for that the upstream has no series of, if any: told
/// apart from those still short of history, which are in the model table.
fn missing_table(missing: &[MissingFamily]) -> String {
    if missing.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h2>Not found upstream</h2><p class=\"legend\">Asked for, but the upstream has no series for the selector: a misspelt name, a metric not scraped yet, or matchers that select nothing. Their forecasts are empty.</p><table id=\"missing\"><thead><tr><th>family</th><th>selector</th><th>queries</th><th>last asked</th></tr></thead><tbody>",
    );
    for m in missing {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&m.family),
            escape(&m.selector),
            m.queries,
            escape(&m.last_asked)
        );
    }
    out.push_str("</tbody></table>");
    out
}

/// One family's section: its first series (in label order) and its
/// forecast, or why there is nothing to show.
async fn family_chart(state: &AppState, family: &str, deadline: Instant) -> String {
    let mut out = format!("<section class=\"family\"><h3>{}</h3>", escape(family));
    match chart(state, family, deadline).await {
        Ok((labels, horizon, svg)) => {
            let _ = write!(
                out,
                "<p class=\"series\">{} · horizon {}</p>{svg}",
                escape(&format_labels(&labels)),
                escape(&horizon)
            );
        }
        Err(reason) => {
            let _ = write!(out, "<p class=\"nodata\">No chart: {}</p>", escape(&reason));
        }
    }
    out.push_str("</section>");
    out
}

async fn chart(
    state: &AppState,
    family: &str,
    deadline: Instant,
) -> Result<(Labels, String, String), String> {
    let horizons = state.ctx.config.horizons(family);
    // The one nearest an hour: far enough to look ahead, near enough to
    // follow the series.
    let horizon = horizons
        .iter()
        .min_by_key(|h| h.as_millis().abs_diff(3_600_000))
        .ok_or("no horizon configured")?;
    let now = now_ms();
    let start = now - CHART_SPAN_MS;
    let history = tokio::time::timeout_at(
        deadline,
        state
            .ctx
            .upstream
            .fetch(state.ctx.registry.source(family), &[], start, now),
    )
    .await
    .map_err(|_| "the request deadline passed".to_owned())?
    .map_err(|e| e.to_string())?;
    let first = history
        .into_iter()
        .filter(|s| !s.samples.is_empty())
        .min_by(|a, b| a.labels.cmp(&b.labels))
        .ok_or("the upstream has no recent samples")?;
    let names = [
        SeriesKind::Predicted,
        SeriesKind::PredictedLower,
        SeriesKind::PredictedUpper,
    ]
    .map(|kind| kind.series_name(family));
    let mut matchers = vec![
        Matcher::new(METRIC_NAME, "=~", &names.join("|")).map_err(|e| e.to_string())?,
        Matcher::equal(HORIZON_LABEL, &horizon.to_string()),
    ];
    matchers.extend(crate::labels::equal_to(&first.labels));
    let times = evaluation_times(start, now, CHART_STEP_MS, MAX_POINTS);
    let mut budget = Budget::new(&state.ctx.config.limits);
    let series = select::select(&state.ctx, &matchers, &times, deadline, &mut budget)
        .await
        .map_err(|e| e.to_string())?;
    let ahead = horizon.as_millis_i64();
    let of = |name: &str| -> Vec<(i64, f64)> {
        series
            .iter()
            .find(|s| s.labels.get(METRIC_NAME).map(String::as_str) == Some(name))
            .map(|s| s.samples.iter().map(|&(t, v)| (t + ahead, v)).collect())
            .unwrap_or_default()
    };
    let forecast = of(&names[0]);
    let band: Vec<(i64, f64, f64)> = of(&names[1])
        .into_iter()
        .zip(of(&names[2]))
        .map(|((t, lo), (_, hi))| (t, lo, hi))
        .collect();
    let svg = Chart {
        actual: &first.samples,
        forecast: &forecast,
        band: &band,
        now_ms: now,
    }
    .svg()
    .ok_or("nothing to draw")?;
    Ok((first.labels, horizon.to_string(), svg))
}

fn format_labels(labels: &Labels) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// HTML-escapes text for element content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const HEAD: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>promcast status</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:80em}
table{border-collapse:collapse;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.5em;text-align:left}
th{background:#f3f3f3}
tr.ready td:nth-child(2){color:#2a7d2a}
tr.waiting_for_history td:nth-child(2){color:#8a6d00}
tr.failed td:nth-child(2),.error{color:#b00020}
section.family{display:inline-block;vertical-align:top;margin:0 1em 1em 0}
section.family h3{margin:0.3em 0;font-size:1em}
p.series,p.legend{font-size:0.85em;color:#555}
</style></head><body>
"#;

const FOOT: &str = r#"<h2>Endpoints</h2><ul>
<li><code>POST /api/v1/read</code>: Prometheus remote read (list promcast in <code>remote_read</code> with <code>read_recent: true</code>)</li>
<li><a href="/federate?match[]=%7B__name__%3D~%22predicted_.%2B%22%7D">/federate</a>: latest synthetic values</li>
<li><a href="/api/v1/models">/api/v1/models</a>: model state as JSON</li>
<li><a href="/metrics">/metrics</a>: promcast's own metrics</li>
<li><a href="/-/healthy">/-/healthy</a>, <a href="/-/ready">/-/ready</a></li>
</ul></body></html>
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
