//! `kubetempura run` as a separate process, pointed at a kubeconfig and the SQS emulator.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::process::ChildGuard;
use super::{free_port, wait_for};

/// The `kubetempura` binary built beside the test binaries (override with `KUBETEMPURA_BIN`).
pub fn kubetempura_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBETEMPURA_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    // Beside a binary (target/<profile>/kubetempura-demo) or one level up from a test
    // (target/<profile>/deps/<test>).
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("kubetempura"))
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("kubetempura not found at {candidates:?}: build it with `cargo build -p kubetempura-applier` (make test and make demo do)")
    })
}

/// A running applier.
pub struct ApplierProcess {
    process: ChildGuard,
    /// `http://127.0.0.1:<port>` of /healthz, /readyz and /metrics.
    pub metrics_url: String,
}

impl ApplierProcess {
    /// Starts `kubetempura run` with `env` (kubeconfig, AWS) and extra `args`, and waits until
    /// `/readyz` answers 200.
    pub async fn start(
        queue_url: &str,
        kubeconfig: &Path,
        env: &[(String, String)],
        args: &[String],
    ) -> Self {
        let port = free_port();
        let cmd = run_command(queue_url, kubeconfig, env, args, port);
        let mut process = ChildGuard::spawn("kubetempura-run", cmd);
        let metrics_url = format!("http://127.0.0.1:{port}");
        let ready = format!("{metrics_url}/readyz");
        let client = super::http();
        wait_for(
            "the applier to become ready",
            Duration::from_secs(60),
            || {
                let req = client.get(&ready).timeout(Duration::from_secs(2));
                async move {
                    req.send()
                        .await
                        .ok()
                        .filter(|r| r.status().is_success())
                        .map(|_| ())
                }
            },
        )
        .await;
        process.assert_running();
        Self {
            process,
            metrics_url,
        }
    }

    /// Runs `kubetempura run` like [`Self::start`] for an applier expected to exit on its own
    /// (a refused configuration): its exit status (`None` if still running after `timeout`,
    /// then stopped) and everything it printed.
    pub fn run_to_exit(
        queue_url: &str,
        kubeconfig: &Path,
        env: &[(String, String)],
        args: &[String],
        timeout: Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        let cmd = run_command(queue_url, kubeconfig, env, args, free_port());
        let mut process = ChildGuard::spawn("kubetempura-run", cmd);
        let status = process.wait_timeout(timeout);
        (status, process.output())
    }

    /// Everything the applier logged so far.
    pub fn output(&self) -> String {
        self.process.output()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Sends a signal (SIGKILL for crash tests, SIGTERM for graceful stop).
    pub fn signal(&self, signal: Signal) {
        self.process.signal(signal);
    }

    /// Waits for the process to exit; its exit status, or `None` after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        self.process.wait_timeout(timeout)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        super::http()
            .get(format!("{}/metrics", self.metrics_url))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// The value of one metric sample (`name{labels}` exactly as exposed), 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        parse_metric(&self.metrics().await, sample)
    }
}

/// `kubetempura run` against `queue_url` with `env` (kubeconfig, AWS) and extra `args`, serving
/// its probes and metrics on `port`.
fn run_command(
    queue_url: &str,
    kubeconfig: &Path,
    env: &[(String, String)],
    args: &[String],
    port: u16,
) -> Command {
    let mut cmd = Command::new(kubetempura_bin());
    cmd.arg("run")
        .arg("--queue-url")
        .arg(queue_url)
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env(
            "RUST_LOG",
            std::env::var("KUBETEMPURA_TEST_LOG").unwrap_or_else(|_| "info".into()),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Reads one sample from Prometheus text.
pub fn parse_metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(sample)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Sends SIGTERM and waits; panics unless it exits 0 within `timeout`.
pub fn stop_gracefully(applier: &mut ApplierProcess, timeout: Duration) {
    applier.signal(Signal::SIGTERM);
    let status = applier.wait_exit(timeout).unwrap_or_else(|| {
        panic!(
            "applier did not exit within {timeout:?} of SIGTERM:\n{}",
            applier.output()
        )
    });
    assert!(
        status.success(),
        "applier exited with {status}:\n{}",
        applier.output()
    );
}
