//! The promcast binary: flags, start-up, and the server's lifetime.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use promcast::config::Config;
use promcast::forecast::Cache;
use promcast::forecast::registry::Registry;
use promcast::model::Backend;
use promcast::server::auth::Auth;
use promcast::server::{self, AppState};
use promcast::telemetry::{self, LogFormat, Metrics};
use promcast::tls;
use promcast::upstream::{Upstream, prometheus};

/// Output values the forecast cache may hold (4 bytes each).
const CACHE_VALUES: usize = 16 << 20;
/// How long background work gets to finish after the server has drained.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often readiness re-probes an upstream that has not answered yet.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// LSTM forecasts and anomaly scores for Prometheus, served as synthetic
/// series over remote read.
///
/// Add promcast to Prometheus's `remote_read` (with `read_recent: true`),
/// then query `predicted_<metric>{horizon="1h"}`,
/// `predicted_lower_<metric>`, `predicted_upper_<metric>` and
/// `anomaly_score_<metric>` like any other series. Without a configured
/// upstream promcast serves an embedded demo.
#[derive(Debug, Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// YAML configuration file (every field optional; see README.md).
    #[arg(long = "config.file", value_name = "PATH")]
    config_file: Option<PathBuf>,

    /// Address to listen on for HTTP (remote read, federate, metrics, API).
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = "0.0.0.0:9201"
    )]
    listen_address: SocketAddr,

    /// Base URL of the Prometheus-compatible server to read history from,
    /// e.g. http://localhost:9090. Overrides `upstream.url` in the config.
    /// Without any upstream, the embedded demo is served.
    #[arg(long = "upstream.url", value_name = "URL")]
    upstream_url: Option<url::Url>,

    /// Directory where trained models are saved and loaded at start.
    #[arg(long = "model.dir", value_name = "DIR", default_value = "data/models")]
    model_dir: PathBuf,

    /// Compute backend for the LSTM: flex (pure-Rust CPU, default), ndarray
    /// (CPU, deprecated by burn) or wgpu (GPU; needs the `wgpu` cargo feature).
    #[arg(long, value_name = "BACKEND", default_value = "flex")]
    backend: Backend,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long = "log.level", value_name = "LEVEL", default_value = "info")]
    log_level: tracing::Level,

    /// Log format.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    log_format: LogFormat,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    telemetry::init_logging(cli.log_level, cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(cli));
    // A training run in a blocking thread would otherwise hold the exit for
    // minutes; abandoning it is safe because models are saved atomically.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let mut config = match &cli.config_file {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(url) = cli.upstream_url {
        config.upstream.url = Some(url);
    }
    let config = Arc::new(config);
    let device = cli.backend.device()?;
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
                "no upstream configured: serving the embedded demo"
            );
            demo
        }
    });
    let cache = Arc::new(Cache::new(CACHE_VALUES));
    let registry = Arc::new(Registry::new(
        Arc::clone(&config),
        Arc::clone(&upstream),
        device,
        cli.model_dir.clone(),
        Arc::clone(&metrics),
        Arc::clone(&cache),
    ));
    registry.load_saved();
    registry.spawn_scheduler();
    let state = Arc::new(AppState {
        config: Arc::clone(&config),
        upstream: Arc::clone(&upstream),
        registry: Arc::clone(&registry),
        cache,
        metrics,
        ready: Default::default(),
        auth: Auth::from_config(&config.web)?,
    });
    spawn_readiness(Arc::clone(&state));

    let tls = config
        .web
        .tls_server_config
        .as_ref()
        .map(tls::acceptor)
        .transpose()?;
    let listener = tokio::net::TcpListener::bind(cli.listen_address)
        .await
        .with_context(|| format!("listening on {}", cli.listen_address))?;
    tracing::info!(
        address = %cli.listen_address,
        tls = tls.is_some(),
        auth = state.auth.enabled(),
        backend = %cli.backend,
        model_dir = %cli.model_dir.display(),
        "promcast listening"
    );
    server::serve(listener, state, tls, shutdown_signal()).await;
    Ok(())
}

/// Marks promcast ready once the upstream answers. With the embedded demo
/// it also starts training the demo families, so that a first look shows
/// LSTM forecasts within minutes; every other family trains on first use.
fn spawn_readiness(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            match state.upstream.probe().await {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = %e, "upstream not answering yet"),
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        state.ready.store(true, Ordering::Relaxed);
        tracing::info!("upstream answered: ready");
        for family in state.upstream.builtin_families() {
            state.registry.ensure_trained(&family);
        }
    });
}

/// Completes on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
