//! `GET /demo/metrics`: the embedded demo's source series, for a
//! Prometheus to scrape next to the forecasts, so that "what happened"
//! and "what was forecast" can be queried together. Each sample keeps the
//! demo's own timestamp: Prometheus then stores exactly the samples that
//! promcast forecasts from. Scrape with `honor_labels: true`, or the
//! demo's `instance` and `job` become `exported_instance` and
//! `exported_job` and no longer match the forecasts' labels.

use hyper::StatusCode;

use crate::calendar::now_ms;
use crate::forecast::STALENESS_MS;
use crate::labels::{Labels, METRIC_NAME};

use super::exposition::{self, Sample};
use super::{AppState, HttpResponse, text};

/// Handles one scrape: the latest sample of every demo series, or 404
/// when history comes from a real upstream (whose own series are there).
pub async fn metrics(state: &AppState) -> HttpResponse {
    let ctx = &state.ctx;
    let families = ctx.upstream.builtin_families();
    if families.is_empty() {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "no demo here: promcast reads history from {}, which holds the source series\n",
                ctx.upstream.describe()
            ),
        );
    }
    let now = now_ms();
    let mut latest: Vec<(Labels, (i64, f64))> = Vec::new();
    for family in &families {
        let series = match ctx
            .upstream
            .fetch(ctx.registry.source(family), &[], now - STALENESS_MS, now)
            .await
        {
            Ok(series) => series,
            Err(e) => return text(StatusCode::BAD_GATEWAY, format!("{family}: {e}\n")),
        };
        latest.extend(series.into_iter().filter_map(|s| {
            let last = *s.samples.last()?;
            let mut labels = s.labels;
            labels.insert(METRIC_NAME.to_owned(), family.clone());
            Some((labels, last))
        }));
    }
    let samples: Vec<Sample> = latest.iter().map(|(l, s)| (l, *s)).collect();
    exposition::response(&samples)
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;
    use crate::config::Config;
    use crate::model::Backend;

    /// A scrape of `/demo/metrics` from a promcast reading `upstream`, or
    /// its demo.
    async fn scrape(upstream: Option<&str>) -> (StatusCode, String) {
        let mut config = Config::default();
        config.upstream.url = upstream.map(|u| u.parse().expect("URL"));
        let dir = tempfile::tempdir().expect("temporary directory");
        config.model_store.url = dir.path().display().to_string();
        let ctx = crate::app::build(config, Backend::Flex)
            .await
            .expect("build");
        let state = AppState::new(ctx, None).expect("state");
        let response = metrics(&state).await;
        let status = response.status();
        let body = response.into_body().collect().await.expect("body");
        (
            status,
            String::from_utf8_lossy(&body.to_bytes()).into_owned(),
        )
    }

    #[tokio::test]
    async fn the_demo_serves_its_series_and_a_real_upstream_none() {
        let (status, body) = scrape(None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let samples: Vec<&str> = body.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(samples.len(), 6, "every demo series once:\n{body}");
        assert!(
            body.contains("demo_memory_used_bytes{instance=\"api-1:8080\",job=\"api\"} "),
            "{body}"
        );
        let now = now_ms();
        for line in samples {
            let ts: i64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            assert!(ts % 60_000 == 0 && now - ts < 2 * 60_000, "{line}");
        }
        let (status, body) = scrape(Some("http://127.0.0.1:9/")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert!(body.contains("127.0.0.1:9"), "{body}");
    }
}
