//! Locating the pinned tools `make deps` installs (`.venv/bin`), overridable by environment.

use std::path::{Path, PathBuf};

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
