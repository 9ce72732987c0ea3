//! Child processes of the tests: each owned by a guard that kills and reaps
//! it on drop (also when an assertion panics), its output in a log file
//! whose tail goes into failure messages; among them the promcast binary
//! under test, started on a free loopback port and waited for until healthy.
//!
//! Installed binaries (Prometheus, promtool, Chromium) are required: a
//! missing one fails the test (it never skips), so CI cannot go green
//! without having exercised the real thing.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::http::get_status;

/// A child process that is killed and reaped when dropped, so a panicking
/// test never leaves Prometheus or promcast behind. Its stdout and stderr go
/// to `log`, whose tail goes into failure messages.
pub struct ChildGuard {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl ChildGuard {
    /// Starts `cmd` as `name`, without stdin, its output going to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Self {
        let stdout = fs::File::create(log)
            .unwrap_or_else(|e| panic!("create log file {}: {e}", log.display()));
        let stderr = stdout.try_clone().expect("clone log file handle");
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", cmd.get_program()));
        Self {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        }
    }

    /// The exit status if the process has ended.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A "--- log (tail) ---" section for failure messages.
pub fn log_section(process: &ChildGuard) -> String {
    format!(
        "\n--- {} log {} (tail) ---\n{}",
        process.name,
        process.log.display(),
        tail_of_file(&process.log, 6000)
    )
}

/// The last `max_bytes` of a file, lossily decoded.
pub fn tail_of_file(path: &Path, max_bytes: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max_bytes);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// Fails with an install hint: the real binaries are part of the test.
#[allow(dead_code)] // the protocol suite runs no installed binary
pub fn require_binary(path: &str) {
    assert!(
        Path::new(path).is_file(),
        "{path} is missing: the end-to-end test needs Debian's Prometheus 2.42 and promtool \
         (apt-get install -y --no-install-recommends prometheus)"
    );
}

/// A command-line tool that `tests/tools/setup` installs into
/// target/test-tools (moto, the schema validators): its absence fails the
/// test, as a missing Prometheus does, rather than skipping the check.
#[allow(dead_code)] // suites without Python tools
pub fn test_tool(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/test-tools/bin")
        .join(name);
    assert!(
        path.is_file(),
        "{} is missing: run tests/tools/setup (it installs the pinned Python tools the tests use)",
        path.display()
    );
    path
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// Starts the promcast binary built by cargo for this test on `port`, with
/// `config_text` as its configuration and `dir` for its files, reading from
/// the upstream at `upstream_url` or, when that is `None`, from its embedded
/// demo; its output goes to `log`.
#[allow(dead_code)] // the replicas suite passes arguments
pub fn spawn_promcast(
    dir: &Path,
    port: u16,
    upstream_url: Option<&str>,
    config_text: &str,
    log: &Path,
) -> ChildGuard {
    spawn_promcast_with(dir, port, upstream_url, config_text, log, &[])
}

/// [`spawn_promcast`] with more command-line arguments.
#[allow(dead_code)] // most suites pass no arguments
pub fn spawn_promcast_with(
    dir: &Path,
    port: u16,
    upstream_url: Option<&str>,
    config_text: &str,
    log: &Path,
    args: &[String],
) -> ChildGuard {
    let config = dir.join("promcast.yml");
    fs::write(&config, config_text).expect("write promcast config");
    let models = dir.join("models");
    fs::create_dir_all(&models).expect("create model directory");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_promcast"));
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--model.dir={}", models.display()))
        .arg("--log.level=info");
    if let Some(url) = upstream_url {
        cmd.arg(format!("--upstream.url={url}"));
    }
    cmd.args(args);
    ChildGuard::spawn("promcast", cmd, log)
}

/// Polls `/-/healthy` until 200; fails early if the process exits.
pub async fn wait_healthy(client: &reqwest::Client, base: &str, process: &mut ChildGuard) {
    let url = format!("{base}/-/healthy");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get_status(client, &url).await == Some(200) {
            return;
        }
        if let Some(status) = process.exited() {
            panic!(
                "{} exited during start-up ({status}){}",
                process.name,
                log_section(process)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{} not healthy within 60 s{}",
            process.name,
            log_section(process)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
