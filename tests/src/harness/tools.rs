//! Locating the pinned tools `make deps` installs (`.venv/bin`), overridable by environment.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Finds `name`: the environment variable `env_var` if set, else `<workspace>/.venv/bin/name`,
/// else `PATH`. Panics with the fix when it is nowhere: tests never skip silently.
pub fn tool(name: &str, env_var: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env_var) {
        return PathBuf::from(p);
    }
    let venv = workspace_root().join(".venv/bin").join(name);
    if venv.is_file() {
        return venv;
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{name} not found (looked at ${env_var}, .venv/bin and PATH): run `make deps` to install the pinned test tools"
    );
}

/// `ministack`, the SQS emulator.
pub fn ministack() -> PathBuf {
    tool("ministack", "MINISTACK")
}

/// `cargo-lambda`, the Lambda runtime emulator.
pub fn cargo_lambda() -> PathBuf {
    tool("cargo-lambda", "CARGO_LAMBDA")
}

/// `kubectl`.
pub fn kubectl() -> PathBuf {
    tool("kubectl", "KUBECTL")
}

/// Removes from `cmd`'s environment the variables cargo sets for the test binary itself. They
/// would reach a `cargo build` the command runs and change build scripts' fingerprints (ring's
/// tracks `CARGO_MANIFEST_DIR`): every start would then rebuild the function's dependencies,
/// and every plain `cargo build` again.
pub fn without_cargo_env(cmd: &mut Command) -> &mut Command {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        let set_by_cargo = [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_PRIMARY_",
        ];
        if set_by_cargo.iter().any(|p| k.starts_with(p)) {
            cmd.env_remove(k.as_ref());
        }
    }
    cmd
}

/// `cargo` in the workspace, for a build from a test ([`without_cargo_env`]).
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(workspace_root());
    without_cargo_env(&mut cmd);
    cmd
}

/// Builds the binary `bin` of `package` (dev profile) and returns its path, read from cargo's
/// own report, so `CARGO_TARGET_DIR` and the profile directory need no guessing.
///
/// # Panics
/// When the build fails (its diagnostics are on stderr).
pub fn built_binary(package: &str, bin: &str) -> PathBuf {
    let out = cargo()
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
        ])
        .args(["-p", package, "--bin", bin])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("running cargo build");
    assert!(
        out.status.success(),
        "cargo build -p {package} --bin {bin} failed"
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == bin)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo build reported no executable for {bin}"))
}
