//! The webhook function under the Lambda runtime emulator (`cargo lambda watch`, pinned in
//! tools/requirements.txt), served as a function URL on 127.0.0.1 with the real lambda_http
//! event plumbing (headers, base64 bodies).

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use super::process::ChildGuard;
use super::{free_port, tools, wait_for};

/// A running function.
pub struct WebhookFunction {
    process: ChildGuard,
    /// `http://127.0.0.1:<port>/lambda-url/webhook`.
    pub url: String,
    _env_file: tempfile::NamedTempFile,
}

/// `cargo lambda watch` serving one binary of the workspace on a free loopback port.
pub(crate) struct Watch {
    pub process: ChildGuard,
    pub port: u16,
    pub env_file: tempfile::NamedTempFile,
}

/// Starts `cargo lambda watch` for the binary `bin` with `env` (in the emulator's environment
/// and its `--env-file`, which the function process is given). The function is built and
/// started on the first invoke.
pub(crate) fn watch(bin: &str, env: &[(String, String)]) -> Watch {
    let port = free_port();
    let mut env_file = tempfile::NamedTempFile::new().expect("env file");
    for (k, v) in env {
        // Double-quoted with escapes, so a value may hold line breaks (a PEM), quotes or `$`.
        let quoted = v
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('$', "\\$")
            .replace('\n', "\\n");
        writeln!(env_file, "{k}=\"{quoted}\"").expect("write env file");
    }
    let mut cmd = Command::new(tools::cargo_lambda());
    cmd.current_dir(tools::workspace_root())
        .args([
            "lambda",
            "watch",
            "--ignore-changes",
            "--quiet",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .args(["--bin", bin, "--env-file"])
        .arg(env_file.path());
    // The emulator runs `cargo build` itself.
    tools::without_cargo_env(&mut cmd);
    for (k, v) in env {
        cmd.env(k, v);
    }
    Watch {
        process: ChildGuard::spawn(&format!("cargo-lambda-watch-{bin}"), cmd),
        port,
        env_file,
    }
}

impl WebhookFunction {
    /// Starts `cargo lambda watch` for the `webhook` binary with `env` and waits until the
    /// function answers (an unsigned request gets the function's own 401).
    pub async fn start(env: &[(String, String)]) -> Self {
        let Watch {
            mut process,
            port,
            env_file,
        } = watch("webhook", env);
        let url = format!("http://127.0.0.1:{port}/lambda-url/webhook");
        let client = super::http();
        wait_for(
            "the webhook function under cargo lambda watch",
            Duration::from_secs(300),
            // A short timeout: an invoke sent while the function is still starting can be lost
            // by the emulator; the next attempt then reaches the running function.
            || {
                let req = client.post(&url).body("{}").timeout(Duration::from_secs(5));
                async move {
                    req.send()
                        .await
                        .ok()
                        .filter(|r| r.status() == reqwest::StatusCode::UNAUTHORIZED)
                        .map(|_| ())
                }
            },
        )
        .await;
        process.assert_running();
        Self {
            process,
            url,
            _env_file: env_file,
        }
    }

    /// Everything the emulator and the function printed so far.
    pub fn output(&self) -> String {
        self.process.output()
    }
}
