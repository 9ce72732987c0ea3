//! `GET /federate?match[]=…`: the latest value of each selected synthetic
//! series as text exposition, stamped with the evaluation time (future
//! timestamps would be dropped by the scraper). Scrape with
//! `honor_labels: true`.

use std::fmt::Write as _;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode};

use crate::calendar::now_ms;
use crate::forecast::SyntheticSeries;
use crate::labels::{METRIC_NAME, parse_selector};

use super::{AppState, HttpResponse, query_failed, refuse, text};
use crate::forecast::select::{self, Budget};

/// Handles one federation scrape.
pub async fn handle(state: &AppState, req: &Request<Incoming>) -> HttpResponse {
    let selectors: Vec<String> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
            .filter(|(k, _)| k == "match[]")
            .map(|(_, v)| v.into_owned())
            .collect();
    if selectors.is_empty() {
        return refuse(
            state,
            "selector",
            StatusCode::BAD_REQUEST,
            "at least one match[] parameter is required, e.g. match[]={__name__=~\"predicted_.*\"}",
        );
    }
    let now = now_ms();
    let deadline = tokio::time::Instant::now() + state.ctx.config.limits.request_timeout.to_std();
    let mut budget = Budget::new(&state.ctx.config.limits);
    let mut all: Vec<SyntheticSeries> = Vec::new();
    for selector in &selectors {
        let matchers = match parse_selector(selector) {
            Ok(m) => m,
            Err(e) => return refuse(state, "selector", StatusCode::BAD_REQUEST, e),
        };
        match select::select(&state.ctx, &matchers, &[now], deadline, &mut budget).await {
            Ok(series) => all.extend(series),
            Err(e) => return query_failed(state, &e, format_args!("{selector}: ")),
        }
    }
    all.sort_by(|a, b| a.labels.cmp(&b.labels));
    all.dedup_by(|a, b| a.labels == b.labels);
    let mut response = text(StatusCode::OK, exposition(&all));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Text exposition (format 0.0.4) of the last sample of each series,
/// grouped by metric name.
fn exposition(series: &[SyntheticSeries]) -> String {
    let mut sorted: Vec<&SyntheticSeries> = series.iter().collect();
    sorted.sort_by(|a, b| {
        (a.labels.get(METRIC_NAME), &a.labels).cmp(&(b.labels.get(METRIC_NAME), &b.labels))
    });
    let mut out = String::new();
    let mut current: Option<&str> = None;
    for s in sorted {
        let (Some(name), Some(&(ts, value))) = (s.labels.get(METRIC_NAME), s.samples.last()) else {
            continue;
        };
        if current != Some(name.as_str()) {
            let _ = writeln!(out, "# TYPE {name} untyped");
            current = Some(name);
        }
        let labels: Vec<String> = s
            .labels
            .iter()
            .filter(|(k, _)| *k != METRIC_NAME)
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(
            out,
            "{name}{{{}}} {} {ts}",
            labels.join(","),
            format_value(value)
        );
    }
    out
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_groups_by_name_and_escapes() {
        let s = |name: &str, inst: &str, v: f64| SyntheticSeries {
            labels: [(METRIC_NAME, name), ("instance", inst)]
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            samples: vec![(1, 0.0), (1000, v)],
        };
        let text = exposition(&[
            s("predicted_b", "x", 2.5),
            s("predicted_a", "q\"1", 1.0),
            s("predicted_a", "z", f64::INFINITY),
        ]);
        assert_eq!(
            text,
            "# TYPE predicted_a untyped\npredicted_a{instance=\"q\\\"1\"} 1 1000\npredicted_a{instance=\"z\"} +Inf 1000\n# TYPE predicted_b untyped\npredicted_b{instance=\"x\"} 2.5 1000\n"
        );
    }
}
