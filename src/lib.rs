//! promcast: a Prometheus remote-read sidecar that serves LSTM forecasts
//! (`predicted_<m>`), prediction intervals (`predicted_lower_/upper_<m>`)
//! and anomaly scores (`anomaly_score_<m>`) as synthetic series, computed
//! on demand from the source metric's history.
//!
//! The data path reads top to bottom: [`server`] decodes a request
//! ([`remote`]), resolves synthetic names ([`series`], [`labels`]) and
//! hands them to [`forecast::select`], which fetches history
//! ([`upstream`]) and runs the family's predictor ([`forecast`],
//! [`model`]); [`server`] encodes the answer ([`remote`] again). The
//! terminal commands ([`commands`]) stand on [`forecast::select`] too.
//!
//! No unsafe code here: the one unsafe call (a CPU-feature-checked SIMD
//! kernel) lives, documented, in the `lstm-cpu` crate.

#![forbid(unsafe_code)]

pub mod app;
pub mod calendar;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod duration;
pub mod eval;
pub mod forecast;
pub mod labels;
mod lock;
pub mod model;
pub mod remote;
pub mod series;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod upstream;

/// Prometheus remote-read protobuf messages, generated from `proto/`.
#[allow(missing_docs, clippy::all)]
pub mod prompb {
    include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
}
