//! Wiring: the upstream, model registry, forecast cache and metrics that a
//! configuration calls for, shared by the server and the operator commands.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::forecast::Cache;
use crate::forecast::registry::Registry;
use crate::forecast::select::Context;
use crate::model::Backend;
use crate::telemetry::Metrics;
use crate::upstream::{Upstream, prometheus};

/// Output values the forecast cache may hold (4 bytes each).
const CACHE_VALUES: usize = 16 << 20;

/// Builds everything a configuration calls for and loads the saved models
/// from `model_dir`. Nothing runs in the background yet.
pub fn build(config: Config, model_dir: PathBuf, backend: Backend) -> anyhow::Result<Arc<Context>> {
    let config = Arc::new(config);
    let device = backend.device()?;
    let metrics = Arc::new(Metrics::new());
    let upstream = Arc::new(match &config.upstream.url {
        Some(url) => {
            tracing::info!(upstream = %url, "reading history from the upstream");
            let client = prometheus::Client::new(url.clone(), &config.upstream)?;
            Upstream::prometheus(client, Arc::clone(&metrics))
        }
        None => {
            let demo = Upstream::demo(Arc::clone(&metrics));
            tracing::info!(
                families = demo.builtin_families().join(","),
                "no upstream configured: using the embedded demo"
            );
            demo
        }
    });
    let cache = Arc::new(Cache::new(CACHE_VALUES));
    let registry = Arc::new(Registry::new(
        Arc::clone(&config),
        Arc::clone(&upstream),
        device,
        model_dir,
        Arc::clone(&metrics),
        Arc::clone(&cache),
    ));
    registry.load_saved();
    Ok(Arc::new(Context {
        config,
        upstream,
        registry,
        cache,
        metrics,
        missing: Default::default(),
    }))
}
