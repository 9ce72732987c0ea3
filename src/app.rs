//! Wiring: the upstream, model registry, forecast cache and metrics that a
//! configuration calls for, shared by the server and the operator commands.

use std::sync::Arc;

use crate::config::Config;
use crate::forecast::Cache;
use crate::forecast::registry::Registry;
use crate::forecast::select::Context;
use crate::model::Backend;
use crate::model::store::ModelStore;
use crate::telemetry::Metrics;
use crate::upstream::{Upstream, prometheus};

/// Output values the forecast cache may hold (4 bytes each).
const CACHE_VALUES: usize = 16 << 20;
/// The folder (prefix) of the model store that holds the embedded demo's
/// models.
const DEMO_MODELS: &str = "demo";

/// Where the models of `config`'s upstream live in `model_store.url`
/// (`--model.store`): there for a real upstream, in its `demo/` folder for
/// the embedded demo, so that models of the demo's made-up series never
/// load against a real upstream, nor the other way round.
pub fn model_store(config: &Config) -> anyhow::Result<ModelStore> {
    let store = ModelStore::open(&config.model_store)?;
    Ok(match config.upstream.url {
        Some(_) => store,
        None => store.sub(DEMO_MODELS),
    })
}

/// Builds everything a configuration calls for and loads the saved models
/// of its upstream from its model store (see [`model_store`]). Nothing
/// runs in the background yet.
pub async fn build(config: Config, backend: Backend) -> anyhow::Result<Arc<Context>> {
    let store = model_store(&config)?;
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
        store,
        Arc::clone(&metrics),
        Arc::clone(&cache),
    ));
    registry.load_saved().await;
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
    /// real upstream over the same `--model.store`.
    #[tokio::test]
    async fn demo_models_stay_with_the_demo() {
        let root = tempfile::tempdir().unwrap();
        let mut demo = Config::default();
        demo.model_store.url = root.path().display().to_string();
        let mut real = demo.clone();
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
        model_store(&demo)
            .unwrap()
            .save(&LstmNet::new(spec, &device), meta)
            .await
            .unwrap();

        let served = async |config: &Config| {
            build(config.clone(), Backend::Flex)
                .await
                .unwrap()
                .registry
                .statuses()
                .into_iter()
                .any(|s| s.family == family && s.version == 1)
        };
        assert!(served(&demo).await, "the demo loads its own model");
        assert!(
            !served(&real).await,
            "a real upstream must not load the demo's"
        );
        let real_store = model_store(&real).unwrap();
        assert!(real_store.heads().await.unwrap().is_empty());
    }
}
