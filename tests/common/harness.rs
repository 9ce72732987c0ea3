//! Prometheus and promcast as one scenario: both on loopback ports, started
//! from configurations the test writes and waited for, with the tails of
//! their logs appended to every failure message.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use promcast::calendar::now_ms;

use super::http::{get_status, http_client};
use super::process::{
    ChildGuard, free_port, log_section, spawn_promcast, tail_of_file, wait_healthy,
};
use super::secrets::Secrets;

/// Owns the two servers of the scenario and knows how to query them; every
/// failure message ends with the tails of their logs (see `diag`).
pub struct Harness {
    pub client: reqwest::Client,
    pub dir: PathBuf,
    pub prom_port: u16,
    pub promcast_port: u16,
    pub prometheus: Option<ChildGuard>,
    pub promcast: Option<ChildGuard>,
    /// Logs of promcast processes that were stopped (restart test).
    pub old_promcast_logs: Vec<PathBuf>,
    pub promcast_starts: u32,
    /// TLS and credentials on every hop, when the scenario is secured.
    pub secrets: Option<Secrets>,
}

impl Harness {
    /// A harness over plain HTTP, with its files under `dir`; nothing started.
    pub fn new(dir: PathBuf, prom_port: u16, promcast_port: u16) -> Self {
        Self::with_secrets(dir, prom_port, promcast_port, None)
    }

    /// A harness with `secrets` on every hop (HTTPS and credentials), or
    /// plain HTTP without them; nothing started.
    pub fn with_secrets(
        dir: PathBuf,
        prom_port: u16,
        promcast_port: u16,
        secrets: Option<Secrets>,
    ) -> Self {
        Self {
            client: match &secrets {
                Some(s) => s.client(),
                None => http_client(),
            },
            secrets,
            dir,
            prom_port,
            promcast_port,
            prometheus: None,
            promcast: None,
            old_promcast_logs: Vec::new(),
            promcast_starts: 0,
        }
    }

    /// "https" when secured, else "http".
    pub fn scheme(&self) -> &'static str {
        if self.secrets.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Prometheus's base URL.
    pub fn prom_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.prom_port)
    }

    /// promcast's base URL.
    pub fn promcast_url(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.promcast_port)
    }

    /// Log tails of every process of the scenario, for failure messages.
    pub fn diag(&self) -> String {
        let mut out = String::new();
        for log in &self.old_promcast_logs {
            out.push_str(&format!(
                "\n--- {} (stopped process) ---\n{}",
                log.display(),
                tail_of_file(log, 3000)
            ));
        }
        if let Some(promcast) = &self.promcast {
            out.push_str(&log_section(promcast));
        }
        if let Some(prometheus) = &self.prometheus {
            out.push_str(&format!(
                "\n--- {} (tail) ---\n{}",
                prometheus.log.display(),
                tail_of_file(&prometheus.log, 3000)
            ));
        }
        out
    }

    /// Starts promcast with the configuration `config`, reading from this
    /// harness's Prometheus.
    pub fn start_promcast_with(&mut self, config: &str) {
        self.promcast_starts += 1;
        let log = self
            .dir
            .join(format!("promcast-{}.log", self.promcast_starts));
        self.promcast = Some(spawn_promcast(
            &self.dir,
            self.promcast_port,
            Some(&self.prom_url()),
            config,
            &log,
        ));
    }

    /// Waits for `/-/healthy`, then `/-/ready` (config loaded, upstream
    /// answered), so the first forecast query does not race the start-up.
    pub async fn wait_promcast_up(&mut self) {
        let base = self.promcast_url();
        let promcast = self.promcast.as_mut().expect("promcast started");
        wait_healthy(&self.client, &base, promcast).await;
        let url = format!("{base}/-/ready");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = get_status(&self.client, &url).await;
            if status == Some(200) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "promcast not ready within 60 s (last /-/ready: {status:?}){}",
                self.diag()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Fails at once, with promcast's log, if promcast has died.
    pub fn ensure_promcast_alive(&mut self) {
        if let Some(status) = self.promcast.as_mut().and_then(ChildGuard::exited) {
            panic!("promcast exited unexpectedly ({status}){}", self.diag());
        }
    }

    /// Prometheus scrapes promcast: `up{job="promcast"}` becomes 1.
    pub async fn wait_promcast_scraped(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let answer = self.instant("up{job=\"promcast\"}", now_ms() / 1000).await;
            if answer
                .series
                .iter()
                .any(|s| s.points.iter().any(|p| p.1 == "1"))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "up{{job=\"promcast\"}} did not become 1 within 60 s: {:?}{}",
                answer.series,
                self.diag()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Two different free ports: Prometheus's and promcast's.
pub fn two_ports() -> (u16, u16) {
    let first = free_port();
    let mut second = free_port();
    while second == first {
        second = free_port();
    }
    (first, second)
}
