//! The promcast binary: flags, start-up, and the server's lifetime.

#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use promcast::config::Config;
use promcast::duration::PromDuration;
use promcast::forecast::select;
use promcast::model::Backend;
use promcast::model::store::ModelStore;
use promcast::server::{self, AppState};
use promcast::telemetry::{self, LogFormat};
use promcast::{app, calendar, commands, eval};
/// How long background work gets to finish after the server has drained.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// How often readiness re-probes an upstream that has not answered yet.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// LSTM forecasts and anomaly scores for Prometheus, served as synthetic
/// series over remote read.
///
/// The flags below go before or after a subcommand alike:
/// `promcast forecast X --upstream.url=URL`.
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
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    config_file: Option<PathBuf>,

    /// Address to listen on for HTTP (remote read, federate, metrics, API).
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = "0.0.0.0:9201",
        global = true
    )]
    listen_address: SocketAddr,

    /// Prometheus's web configuration file (TLS, `basic_auth_users` with
    /// bcrypt hashes, response headers), as Prometheus and its exporters
    /// take it; reloaded on SIGHUP and when it or a file it names changes.
    #[arg(long = "web.config.file", value_name = "PATH", global = true)]
    web_config_file: Option<PathBuf>,

    /// Replicas sharing the model directory: each family is trained by one
    /// of them (README, Replicas). Overrides `cluster.replicas`.
    #[arg(long = "cluster.replicas", value_name = "N", global = true)]
    cluster_replicas: Option<u32>,

    /// This replica's number, 0 to N-1. Default: PROMCAST_CLUSTER_ORDINAL
    /// (set it from the pod's `apps.kubernetes.io/pod-index` label), else
    /// the number the pod name ends with (a StatefulSet's `promcast-2`,
    /// from HOSTNAME).
    #[arg(
        long = "cluster.ordinal",
        value_name = "I",
        env = "PROMCAST_CLUSTER_ORDINAL",
        global = true
    )]
    cluster_ordinal: Option<u32>,

    /// Never train: serve the models other replicas save.
    #[arg(long = "cluster.serve-only", global = true)]
    cluster_serve_only: bool,

    /// Base URL of the Prometheus-compatible server to read history from,
    /// e.g. http://localhost:9090. Overrides `upstream.url` in the config.
    /// Without any upstream, the embedded demo is served.
    #[arg(long = "upstream.url", value_name = "URL", global = true)]
    upstream_url: Option<url::Url>,

    /// Where trained models are saved and loaded: a directory, or
    /// s3://bucket/prefix shared by replicas (credentials from the AWS
    /// environment; README, Replicas). The embedded demo's go in its demo/
    /// folder. Overrides `model_store.url` (default data/models).
    #[arg(
        long = "model.store",
        alias = "model.dir",
        value_name = "DIR|URL",
        global = true
    )]
    model_store: Option<String>,

    /// Compute backend for the LSTM: flex (pure-Rust CPU, default), ndarray
    /// (CPU, deprecated by burn) or wgpu (GPU; needs the `wgpu` cargo feature).
    #[arg(long, value_name = "BACKEND", default_value = "flex", global = true)]
    backend: Backend,

    /// Log level: error, warn, info, debug or trace.
    #[arg(
        long = "log.level",
        value_name = "LEVEL",
        default_value = "info",
        global = true
    )]
    log_level: tracing::Level,

    /// Log format.
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Option<Command>,
}

/// What to do; serving is the default.
#[derive(Debug, Clone, clap::Subcommand)]
enum Command {
    /// Serve remote read, federation, the status page and metrics (default).
    Serve,
    /// Train (or refresh) families now, from the upstream, and save the
    /// models to --model.dir, with progress and a summary table. A running
    /// server on the same directory loads them within 30 s. Without FAMILY: every
    /// configured family (the demo's, without an upstream).
    Train {
        /// Families to train.
        #[arg(value_name = "FAMILY")]
        families: Vec<String>,
    },
    /// Print the forecast for a selector as a table, e.g.
    /// `promcast forecast 'node_filesystem_avail_bytes{instance="db-1:9100"}'`.
    /// A plain metric selector means all its synthetic series; the saved
    /// model answers, or the seasonal baseline where none is trained.
    Forecast {
        /// A metric name or a synthetic series name, with matchers.
        selector: String,
        /// Forecast origin (RFC 3339 or Unix seconds); default now.
        #[arg(long)]
        at: Option<String>,
    },
    /// Delete families' saved models from --model.dir (from its demo/
    /// folder without an upstream): a family no longer wanted, one to
    /// train afresh, or models left over from another upstream. A running
    /// server keeps what it has loaded until it restarts.
    Forget {
        /// Families to forget.
        #[arg(value_name = "FAMILY", required = true)]
        families: Vec<String>,
    },
    /// Back-test forecasts and anomaly scores on recorded series (CSV
    /// files of `timestamp,value`, NAB's format) by rolling origin: the
    /// LSTM as served against seasonal naive, predict_linear, AutoETS and
    /// MSTL. Prints MASE per horizon, interval coverage and anomaly
    /// detection against labelled windows.
    Eval(EvalArgs),
}

/// Arguments of `promcast eval`.
#[derive(Debug, Clone, clap::Args)]
struct EvalArgs {
    /// CSV files, or folders searched recursively for them.
    #[arg(value_name = "PATH", required_unless_present = "score_only")]
    paths: Vec<PathBuf>,
    /// Run NAB's protocol instead of the back-test: every row scored as
    /// the server would have, the first model trained on the
    /// probationary rows, retrained every `defaults.retrain_interval`;
    /// results written in NAB's layout to DIR/promcast/, then every
    /// detector in DIR scored on NAB's three profiles (with --labels).
    #[arg(long, value_name = "DIR")]
    nab_results: Option<PathBuf>,
    /// With --nab-results: score the results already in DIR, run nothing.
    #[arg(long, requires = "nab_results")]
    score_only: bool,
    /// With --nab-results: seed of the models' initialisation.
    #[arg(long, default_value_t = 0, requires = "nab_results")]
    seed: u64,
    /// Horizons to score, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "5m,1h,6h")]
    horizons: Vec<PromDuration>,
    /// NAB combined_windows.json with labelled anomaly windows.
    #[arg(long, value_name = "FILE")]
    labels: Option<PathBuf>,
    /// Take an origin every N points of the forecast part (1: every
    /// point). ETS and MSTL are refitted at each origin, which
    /// dominates the run time. Every target then falls at the same
    /// phase of any N-point rhythm: prefer N prime to the series'
    /// rhythms (7, not 12, on 5-minute data with hourly jobs).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    stride: u64,
    /// Files evaluated at once (default: one per CPU).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
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
    if let Some(url) = cli.upstream_url.clone() {
        config.upstream.url = Some(url);
    }
    let cluster = &mut config.cluster;
    cluster.replicas = cli.cluster_replicas.unwrap_or(cluster.replicas);
    cluster.ordinal = cli.cluster_ordinal.or(cluster.ordinal);
    cluster.serve_only |= cli.cluster_serve_only;
    anyhow::ensure!(
        cluster.replicas >= 1,
        "--cluster.replicas must be at least 1"
    );
    if cluster.replicas > 1 {
        let ordinal = cluster.this_replica(std::env::var("HOSTNAME").ok().as_deref());
        anyhow::ensure!(
            ordinal < cluster.replicas,
            "cluster ordinal {ordinal} is not below --cluster.replicas {} (set --cluster.ordinal)",
            cluster.replicas
        );
        cluster.ordinal = Some(ordinal);
    }
    if let Some(url) = &cli.model_store {
        config.model_store.url = url.clone();
    }
    let store = app::model_store(&config).context("--model.store")?;
    let build = || app::build(config.clone(), cli.backend);
    match cli.command.clone() {
        None | Some(Command::Serve) => {
            let state = AppState::new(build().await?, cli.web_config_file.clone())?;
            serve(Arc::new(state), &cli, &store).await
        }
        Some(Command::Train { families }) => commands::train::run(&*build().await?, families).await,
        Some(Command::Forecast { selector, at }) => {
            commands::forecast::run(&*build().await?, &selector, at.as_deref()).await
        }
        Some(Command::Forget { families }) => commands::forget::run(&store, &families).await,
        Some(Command::Eval(args)) if args.nab_results.is_some() => {
            let settings = eval::detect::Settings {
                family: format!("nab-{}", args.seed),
                lookback_ms: config.defaults.lookback.as_millis_i64(),
                max_horizon_ms: config.max_horizon("nab").as_millis_i64(),
                train_window_ms: config.defaults.train_window.as_millis_i64(),
                retrain_interval_ms: config.defaults.retrain_interval.as_millis_i64(),
                train: config.model.clone(),
            };
            let request = commands::nab::Request {
                paths: args.paths,
                results: args.nab_results.unwrap_or_default(),
                labels: args.labels,
                score_only: args.score_only,
                jobs: args.jobs.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                }),
            };
            let device = cli.backend.device()?;
            tokio::task::block_in_place(|| commands::nab::run(&settings, &device, &request))
        }
        Some(Command::Eval(args)) => {
            let settings = eval::Settings {
                horizons: args.horizons,
                lookback_ms: config.defaults.lookback.as_millis_i64(),
                train: config.model.clone(),
                stride: usize::try_from(args.stride)?,
            };
            let evaluator = eval::Evaluator::new(settings, cli.backend.device()?);
            let request = commands::eval::Request {
                paths: args.paths,
                labels: args.labels,
                json: args.json,
                jobs: args.jobs.unwrap_or_else(|| {
                    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
                }),
            };
            tokio::task::block_in_place(|| commands::eval::run(&evaluator, &request))
        }
    }
}

async fn serve(state: Arc<AppState>, cli: &Cli, store: &ModelStore) -> anyhow::Result<()> {
    state.ctx.registry.spawn_scheduler();
    spawn_readiness(Arc::clone(&state));

    state.web.spawn_reloads(Arc::clone(&state.ctx.metrics));
    let listener = tokio::net::TcpListener::bind(cli.listen_address)
        .await
        .with_context(|| format!("listening on {}", cli.listen_address))?;
    tracing::info!(
        address = %cli.listen_address,
        tls = state.web.current().tls.is_some(),
        auth = state.web.current().auth.enabled(),
        backend = %cli.backend,
        model_store = %store,
        "promcast listening"
    );
    server::serve(listener, state, shutdown_signal()).await;
    Ok(())
}

/// Marks promcast ready once the upstream answers. With the embedded demo
/// it also starts training the demo families, so that a first look shows
/// LSTM forecasts within minutes; every other family trains on first use.
fn spawn_readiness(state: Arc<AppState>) {
    tokio::spawn(async move {
        loop {
            match state.ctx.upstream.probe().await {
                Ok(()) => break,
                Err(e) => tracing::warn!(error = %e, "upstream not answering yet"),
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
        state.ready.store(true, Ordering::Relaxed);
        tracing::info!("upstream answered: ready");
        check_expressions(&state.ctx).await;
        for family in state.ctx.upstream.builtin_families() {
            state.ctx.registry.ensure_trained(&family);
        }
    });
}

/// Asks the upstream to evaluate each configured expression once, so that
/// one it refuses (an unknown function, a type error: what the check at
/// load leaves to it) shows at start, in the log and as the upstream's last
/// error on the status page, rather than at the family's first query.
async fn check_expressions(ctx: &select::Context) {
    let now = calendar::now_ms();
    for (i, series) in ctx.config.series.iter().enumerate() {
        let Some(expr) = &series.expr else {
            continue;
        };
        let source = ctx.registry.source(&series.name);
        if let Err(e) = ctx.upstream.fetch(source, &[], now, now).await {
            let field = format!("series[{i}].expr");
            if e.is_refusal() {
                tracing::error!(
                    field = %field,
                    family = %series.name,
                    expr = %expr,
                    error = %e,
                    "the upstream refuses this expression: the family cannot be forecast"
                );
            } else {
                tracing::warn!(
                    field = %field,
                    family = %series.name,
                    error = %e,
                    "could not check this expression with the upstream"
                );
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Every global flag, given before the subcommand or after it.
    #[test]
    fn global_flags_go_on_either_side_of_the_subcommand() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        let flags = [
            "--config.file=promcast.yml",
            "--upstream.url=http://prometheus:9090",
            "--model.store=s3://models/promcast",
            "--backend=ndarray",
            "--log.level=debug",
            "--log.format=json",
            "--web.listen-address=127.0.0.1:9999",
        ];
        let before = [&["promcast"][..], &flags, &["forecast", "up"]].concat();
        let after = [&["promcast", "forecast", "up"][..], &flags].concat();
        // The flag's earlier name still works.
        let old_name = before
            .iter()
            .map(|a| a.replace("--model.store", "--model.dir"));
        for args in [
            before.iter().map(|a| a.to_string()).collect(),
            after.iter().map(|a| a.to_string()).collect(),
            old_name.collect::<Vec<String>>(),
        ] {
            let cli = Cli::try_parse_from(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.config_file, Some(PathBuf::from("promcast.yml")));
            assert_eq!(
                cli.upstream_url.as_ref().map(url::Url::as_str),
                Some("http://prometheus:9090/")
            );
            assert_eq!(cli.model_store.as_deref(), Some("s3://models/promcast"));
            assert_eq!(cli.backend, Backend::NdArray);
            assert_eq!(cli.log_level, tracing::Level::DEBUG);
            assert_eq!(cli.log_format, LogFormat::Json);
            assert_eq!(cli.listen_address.to_string(), "127.0.0.1:9999");
            assert!(matches!(cli.command, Some(Command::Forecast { .. })));
        }
    }
}
