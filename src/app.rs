//! Wiring: the upstream, model registry, forecast cache and metrics that a
//! configuration calls for, shared by the server and the operator commands.

use std::path::{Path, PathBuf};
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
/// The folder of `--model.dir` that holds the embedded demo's models.
const DEMO_MODELS: &str = "demo";

/// Where the models of `config`'s upstream live under `model_dir`
/// (`--model.dir`): there for a real upstream, in its `demo/` folder for
/// the embedded demo, so that models of the demo's made-up series never
/// load against a real upstream, nor the other way round.
pub fn model_dir(config: &Config, model_dir: &Path) -> PathBuf {
    match config.upstream.url {
        Some(_) => model_dir.to_owned(),
        None => model_dir.join(DEMO_MODELS),
    }
}

/// Builds everything a configuration calls for and loads the saved models
/// of its upstream from under `model_dir` (see [`model_dir`]). Nothing
/// runs in the background yet.
pub fn build(config: Config, model_dir: PathBuf, backend: Backend) -> anyhow::Result<Arc<Context>> {
    let dir = self::model_dir(&config, &model_dir);
    let config = Arc::new(config);
    let device = backend.device()?;
    let metrics = Arc::new(Metrics::new());
    let upstream = Arc::new(match &config.upstream.url {
        Some(url) => {
            let client = prometheus::Client::new(url.clone(), &config.upstream)?;
            tracing::info!(upstream = %client.base(), "reading history from the upstream");
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
        dir,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{FEATURES, LstmNet, NetSpec, store};

    /// A model trained on the demo loads with the demo and not against a
    /// real upstream over the same `--model.dir`.
    #[test]
    fn demo_models_stay_with_the_demo() {
        let root = tempfile::tempdir().unwrap();
        let demo = Config::default();
        let mut real = Config::default();
        real.upstream.url = Some("http://127.0.0.1:9".parse().unwrap());
        let family = "demo_cpu_usage_percent";
        let spec = NetSpec {
            inputs: FEATURES,
            window: 4,
            hidden: 2,
            layers: 1,
            outputs: 2,
        };
        let device = Backend::Flex.device().unwrap();
        let mut meta = store::tests::meta(spec, 1);
        meta.family = family.to_owned();
        store::save(
            &model_dir(&demo, root.path()),
            &LstmNet::new(spec, &device),
            meta,
        )
        .unwrap();

        let served = |config: &Config| {
            build(config.clone(), root.path().to_owned(), Backend::Flex)
                .unwrap()
                .registry
                .statuses()
                .into_iter()
                .any(|s| s.family == family && s.version == 1)
        };
        assert!(served(&demo), "the demo loads its own model");
        assert!(!served(&real), "a real upstream must not load the demo's");
        assert!(store::list(root.path()).is_empty());
    }
}
