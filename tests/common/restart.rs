//! A clean restart of promcast: SIGTERM, then a new process on the same
//! port and model directory, which must reload its persisted models.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::harness::Harness;
use super::process::ChildGuard;

/// A restarted promcast must serve its persisted model this fast.
pub const RELOAD_DEADLINE: Duration = Duration::from_secs(10);

impl ChildGuard {
    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub fn terminate(&mut self, grace: Duration) {
        if self.exited().is_some() {
            return; // already reaped: its pid may belong to someone else now
        }
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if signalled {
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if self.exited().is_some() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Harness {
    /// Stops promcast with SIGTERM (a clean shutdown) and starts it again on
    /// the same port with the same model directory.
    pub async fn restart_promcast(&mut self) {
        let mut old = self.promcast.take().expect("promcast running");
        old.terminate(Duration::from_secs(20));
        self.old_promcast_logs.push(old.log.clone());
        drop(old);
        self.start_promcast();
        self.wait_promcast_up().await;
    }
}
