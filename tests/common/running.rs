//! The whole scenario started in one call: history back-filled, Prometheus
//! and promcast up, over plain HTTP or secured on every hop.

use std::path::{Path, PathBuf};

use super::harness::{Harness, two_ports};
use super::process::require_binary;
use super::prometheus::{PROMETHEUS_BIN, PROMTOOL_BIN};
use super::scenario::{History, backfill_history};
use super::secrets::Secrets;

impl Harness {
    /// A harness whose Prometheus and promcast both serve HTTPS and require
    /// credentials of each other (and of this test's client).
    fn secured(dir: PathBuf, prom_port: u16, promcast_port: u16) -> Self {
        let secrets = Secrets::generate(&dir);
        Self::with_secrets(dir, prom_port, promcast_port, Some(secrets))
    }

    /// Back-fills [`History::ending_now`] under `dir`, then starts
    /// Prometheus and promcast on it (secured or not) and waits until both
    /// are ready.
    pub async fn running(dir: &Path, secured: bool) -> (Self, History) {
        require_binary(PROMETHEUS_BIN);
        require_binary(PROMTOOL_BIN);
        let (history, tsdb) = backfill_history(dir);
        let (prom_port, promcast_port) = two_ports();
        let dir = dir.to_path_buf();
        let mut h = if secured {
            Self::secured(dir, prom_port, promcast_port)
        } else {
            Self::new(dir, prom_port, promcast_port)
        };
        h.start_prometheus(&tsdb);
        h.wait_prometheus_ready().await;
        h.start_promcast();
        h.wait_promcast_up().await;
        (h, history)
    }
}
