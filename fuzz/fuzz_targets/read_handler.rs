//! The whole remote-read handler, request bytes in and response out, as
//! `/api/v1/read` answers once the body has arrived: decoding, limits,
//! name resolution, the embedded demo's history, the seasonal baseline's
//! forecasts and anomaly scores (no training starts), and both answer
//! encodings, read to the end, under limits that bound each input's work.
//! Nothing may panic, and nothing may be a server error but the
//! deadline's 503: the demo upstream never fails.
#![no_main]

use std::sync::{Arc, OnceLock};

use http_body_util::BodyExt as _;
use promcast::config::Config;
use promcast::model::Backend;
use promcast::server::AppState;
use promcast::server::remote_read::respond;
use promcast_fuzz::fuzz_target;

const LIMITS: &str = "limits:\n  max_query_range: 2h\n  max_queries_per_request: 4\n  request_timeout: 10s\n";

/// One server for every input, as a process has.
fn server() -> &'static (tokio::runtime::Runtime, Arc<AppState>) {
    static SERVER: OnceLock<(tokio::runtime::Runtime, Arc<AppState>)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let models = std::env::temp_dir().join(format!("promcast-fuzz-{}", std::process::id()));
        // Limits that keep every input's work to a fraction of libFuzzer's
        // 25 s timeout: a legal query may ask for a month of many families,
        // which the server answers within its request deadline, but not
        // in one fuzzing unit.
        let mut config = Config::parse(LIMITS, "fuzz limits").expect("the limits parse");
        config.model_store.url = models.display().to_string();
        let ctx = runtime
            .block_on(promcast::app::build(config, Backend::Flex))
            .expect("the demo");
        ctx.registry.disable_on_demand_training();
        let state = Arc::new(AppState::new(ctx, None).expect("the server state"));
        (runtime, state)
    })
}

fuzz_target!(|data: &[u8]| {
    let (runtime, state) = server();
    runtime.block_on(async {
        let response = respond(state, data).await;
        let status = response.status();
        // The demo upstream never fails; a 503 can only be the deadline.
        assert!(
            !status.is_server_error() || status == 503,
            "{status} for a request to the demo"
        );
        response
            .into_body()
            .collect()
            .await
            .expect("the answer's body");
    });
});
