//! A promcast of its own, without Prometheus, for the suites that talk to
//! it directly.

use super::http::http_client;
use super::process::{ChildGuard, free_port, spawn_promcast, wait_healthy};

/// A promcast of its own, in a temporary directory, already healthy.
pub struct Standalone {
    /// Keeps the temporary directory (config, models, log) alive.
    pub _dir: tempfile::TempDir,
    pub promcast: ChildGuard,
    pub client: reqwest::Client,
    pub base: String,
}

impl Standalone {
    /// Starts promcast with `config` on a free port (never the upstream's),
    /// reading from `upstream_port` or, when `None`, its embedded demo.
    pub async fn start(upstream_port: Option<u16>, config: &str) -> Self {
        let dir = tempfile::tempdir().expect("create temporary directory");
        let mut port = free_port();
        while Some(port) == upstream_port {
            port = free_port();
        }
        let log = dir.path().join("promcast.log");
        let upstream = upstream_port.map(|p| format!("http://127.0.0.1:{p}"));
        let mut promcast = spawn_promcast(dir.path(), port, upstream.as_deref(), config, &log);
        let client = http_client();
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&client, &base, &mut promcast).await;
        Self {
            _dir: dir,
            promcast,
            client,
            base,
        }
    }
}
