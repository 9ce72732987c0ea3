//! `GET /federate?match[]=…`: the latest value of each selected synthetic
//! series as text exposition, stamped with the evaluation time (future
//! timestamps would be dropped by the scraper). Scrape with
//! `honor_labels: true`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};

use crate::calendar::now_ms;
use crate::forecast::SyntheticSeries;
use crate::labels::parse_selector;

use super::exposition::{self, Sample};
use super::{AppState, HttpResponse, query_failed, refuse};
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
    let latest: Vec<Sample> = all
        .iter()
        .filter_map(|s| Some((&s.labels, *s.samples.last()?)))
        .collect();
    exposition::response(&latest)
}
