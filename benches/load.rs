//! Remote-read load: 200 concurrent loopback clients against a real
//! Prometheus's own `/api/v1/read` (the reference: reading the raw source
//! series) and against promcast (a plain selector, and forecasts served by
//! a trained LSTM), in one run on the same data. Prints one table of
//! throughput, p50/p99 latency and errors, with throughput as a ratio of the
//! reference.
//!
//! `cargo bench --bench load` (release build of promcast; needs Debian's
//! prometheus and promtool, as the tests do).

#[allow(dead_code)] // the bench uses a few of the integration tests' helpers
#[path = "../tests/common"]
mod common {
    pub mod exposition;
    pub mod family;
    pub mod harness;
    pub mod http;
    pub mod load;
    pub mod models;
    pub mod process;
    pub mod prometheus;
    pub mod remote_read;
    pub mod running;
    pub mod scenario;
    pub mod secrets;

    pub use family::{METRIC, PREDICTED};
    pub use harness::Harness;
    pub use load::{drive_load, read_range};
    pub use remote_read::{MATCH_EQ, matcher, snappy};
}

use std::time::Duration;

use common::*;
use prost::Message as _;

const CLIENTS: usize = 200;
const PER_CLIENT: usize = 10_000;
const DURATION: Duration = Duration::from_secs(10);

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let tmp = tempfile::tempdir().expect("create temporary directory");
    let (mut h, history) = Harness::running(tmp.path(), false).await;
    // Ask once so that the family trains, then wait for the model.
    h.instant(PREDICTED, history.end).await;
    eprintln!("waiting for the model to train…");
    h.wait_model_ready().await;

    let end = history.end * 1000;
    let read = |name: &str, extra: &[(&str, &str)], span_ms: i64, step_ms: i64| {
        let mut matchers = vec![matcher(MATCH_EQ, "__name__", name)];
        matchers.extend(extra.iter().map(|(n, v)| matcher(MATCH_EQ, n, v)));
        snappy(&read_range(&matchers, end, span_ms, step_ms).encode_to_vec())
    };
    let hour = 3_600_000;
    let h1 = [("horizon", "1h")];
    let scenarios: Vec<(&str, String, Vec<Vec<u8>>)> = vec![
        (
            "raw series, 1h range (reference)",
            h.prom_url(),
            vec![read(METRIC, &[], hour, 60_000)],
        ),
        (
            "plain selector (not synthetic)",
            h.promcast_url(),
            vec![read(METRIC, &[], hour, 60_000)],
        ),
        (
            "predicted{horizon=1h}, instant",
            h.promcast_url(),
            vec![read(PREDICTED, &h1, 300_000, 0)],
        ),
        (
            "predicted{horizon=1h}, 1h range",
            h.promcast_url(),
            vec![read(PREDICTED, &h1, hour, 60_000)],
        ),
        (
            "mixed: 3 synthetic kinds + plain",
            h.promcast_url(),
            vec![
                read(PREDICTED, &h1, hour, 60_000),
                read(&format!("anomaly_score_{METRIC}"), &[], hour, 60_000),
                read(&format!("predicted_upper_{METRIC}"), &h1, 300_000, 0),
                read(METRIC, &[], hour, 60_000),
            ],
        ),
    ];
    println!(
        "\n{CLIENTS} clients, {} s per row, remote read over loopback\n",
        DURATION.as_secs()
    );
    println!(
        "| {:<34} | {:>9} | {:>8} | {:>9} | {:>9} | {:>6} | {:>14} |",
        "target", "requests", "req/s", "p50", "p99", "errors", "req/s vs ref"
    );
    println!(
        "|{:-<36}|{:->11}|{:->10}|{:->11}|{:->11}|{:->8}|{:->16}|",
        "", "", "", "", "", "", ""
    );
    let mut reference = None;
    for (what, base, bodies) in scenarios {
        let report = drive_load(&h.client, &base, bodies, CLIENTS, PER_CLIENT, DURATION).await;
        let rate = report.per_second();
        let reference = *reference.get_or_insert(rate);
        println!(
            "| {:<34} | {:>9} | {:>8.0} | {:>9.1?} | {:>9.1?} | {:>6} | {:>13.2}x |",
            what,
            report.latencies.len(),
            rate,
            report.quantile(0.5),
            report.quantile(0.99),
            report.errors.len(),
            rate / reference
        );
        if let Some(e) = report.errors.first() {
            eprintln!("  first error: {e}");
        }
    }
    h.ensure_promcast_alive();
}
