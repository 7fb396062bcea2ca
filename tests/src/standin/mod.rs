//! `kube-standin`: a loopback Kubernetes API server for tests and the local demo.
//!
//! No real kube-apiserver can run on the machines this project is developed and tested on,
//! so the end-to-end tests talk to this stand-in instead. It speaks the Kubernetes REST API
//! with the real API's semantics for the parts kube-rs, kubectl and the applier use:
//! discovery (built-in kinds and every applied CRD), CRUD with optimistic concurrency, label
//! and field selectors, server-side apply with field managers and conflicts, watches with
//! bookmarks and 410 Gone, owner-reference garbage collection (background, foreground,
//! orphan), finalizers, the status subresource, `Status` error bodies and Tables for
//! `kubectl get`. It is test infrastructure: no authentication, plain HTTP, loopback only,
//! state in memory. Simplifications are documented in each module ([`apply`], [`fieldset`],
//! [`registry`], [`gc`], [`watch`]).
//!
//! Tests can inject faults and read the request log, in process ([`StandIn::add_fault`],
//! [`StandIn::requests`]) or over HTTP:
//! - `POST /__standin/faults` with a [`FaultRule`] (or a list), `GET`/`DELETE /__standin/faults`;
//! - `GET`/`DELETE /__standin/requests` (the [`RequestRecord`] log);
//! - `POST /__standin/compact` drops the watch history (watches from older versions get 410).

pub mod apply;
pub mod discovery;
pub mod faults;
pub mod fieldset;
pub mod gc;
pub mod http;
pub mod openapi;
pub mod registry;
pub mod selector;
pub mod status;
pub mod store;
pub mod table;
pub mod watch;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use faults::{FaultRule, RequestRecord};

use faults::Faults;
use store::State;

/// Errors of the stand-in's own API (not the Kubernetes API it serves).
#[derive(Debug, thiserror::Error)]
pub enum StandinError {
    /// The stand-in has no authentication and must not listen beyond loopback.
    #[error("refusing to listen on non-loopback address {0}: the stand-in has no authentication")]
    NotLoopback(SocketAddr),
    /// Binding failed.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The bound address could not be read.
    #[error("cannot read the bound address")]
    LocalAddr(#[source] std::io::Error),
    /// Writing the kubeconfig failed.
    #[error("cannot write kubeconfig {path}")]
    WriteKubeconfig {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A fault rule's regex does not compile.
    #[error("invalid fault path regex {pattern:?}")]
    FaultRegex {
        /// The pattern.
        pattern: String,
        /// The cause.
        #[source]
        source: regex::Error,
    },
    /// A fault rule that neither fails nor delays.
    #[error("a fault rule needs a status or a delay_ms")]
    EmptyFault,
    /// The URL did not parse (cannot happen for a bound socket address).
    #[error("invalid server URL {0}")]
    Url(String),
}

/// Tunables.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of changes kept for watches resuming from a resourceVersion.
    pub history_limit: usize,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Number of requests kept in the request log.
    pub log_limit: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(2),
            log_limit: 100_000,
        }
    }
}

/// State shared by the server's connection tasks.
pub struct Shared {
    state: Mutex<State>,
    faults: Mutex<Faults>,
    /// The bound address.
    pub addr: SocketAddr,
    /// Tunables.
    pub options: Options,
}

impl Shared {
    /// The store, locked.
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Faults and log, locked.
    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running stand-in; it stops when dropped.
pub struct StandIn {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
    kubeconfig: Mutex<Option<PathBuf>>,
}

impl StandIn {
    /// Start serving on a loopback address (port 0 picks a free port) on the current tokio
    /// runtime.
    pub async fn start(addr: SocketAddr) -> Result<StandIn, StandinError> {
        StandIn::start_with(addr, Options::default()).await
    }

    /// Start on `127.0.0.1` with a free port.
    pub async fn start_loopback() -> Result<StandIn, StandinError> {
        StandIn::start(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start with explicit options.
    pub async fn start_with(addr: SocketAddr, options: Options) -> Result<StandIn, StandinError> {
        if !addr.ip().is_loopback() {
            return Err(StandinError::NotLoopback(addr));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StandinError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(StandinError::LocalAddr)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::new(options.history_limit)),
            faults: Mutex::new(Faults::new(options.log_limit)),
            addr: bound,
            options,
        });
        let task = tokio::spawn(http::serve(listener, shared.clone()));
        tracing::info!(addr = %bound, "kube-standin listening");
        Ok(StandIn {
            shared,
            task,
            kubeconfig: Mutex::new(None),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.shared.addr)
    }

    /// A kubeconfig pointing at this server (context `kube-standin`, namespace `default`).
    pub fn kubeconfig_yaml(&self) -> String {
        kubeconfig_yaml(&self.url())
    }

    /// Write the kubeconfig to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), StandinError> {
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| {
            StandinError::WriteKubeconfig {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// A kubeconfig file for this server in the temp directory (written on first use,
    /// removed when the stand-in is dropped).
    pub fn kubeconfig_path(&self) -> Result<PathBuf, StandinError> {
        let mut slot = self
            .kubeconfig
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        let path = std::env::temp_dir().join(format!(
            "kube-standin-{}-{}.kubeconfig",
            std::process::id(),
            self.shared.addr.port()
        ));
        self.write_kubeconfig(&path)?;
        *slot = Some(path.clone());
        Ok(path)
    }

    /// A kube-rs client configuration for this server.
    pub fn kube_config(&self) -> Result<kube::Config, StandinError> {
        let uri: ::http::Uri = self
            .url()
            .parse()
            .map_err(|_| StandinError::Url(self.url()))?;
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        Ok(config)
    }

    /// Add a fault rule.
    pub fn add_fault(&self, rule: FaultRule) -> Result<(), StandinError> {
        self.shared.faults().add(rule)
    }

    /// Remove every fault rule.
    pub fn clear_faults(&self) {
        self.shared.faults().clear();
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.faults().log()
    }

    /// Empty the request log.
    pub fn clear_requests(&self) {
        self.shared.faults().clear_log();
    }

    /// Drop the watch history: watches resuming from an earlier resourceVersion get 410.
    pub fn compact_watch_history(&self) {
        self.shared.state().compact();
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.state().resource_version()
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(p) = self
            .kubeconfig
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The kubeconfig YAML for a server URL.
pub fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kube-standin
  cluster:
    server: {url}
contexts:
- name: kube-standin
  context:
    cluster: kube-standin
    user: kube-standin
    namespace: default
current-context: kube-standin
users:
- name: kube-standin
  user: {{}}
preferences: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_non_loopback() {
        let err = StandIn::start(SocketAddr::from(([0, 0, 0, 0], 0)))
            .await
            .err();
        assert!(matches!(err, Some(StandinError::NotLoopback(_))));
    }

    #[test]
    fn kubeconfig_points_at_url() {
        let y = kubeconfig_yaml("http://127.0.0.1:1234");
        let v: serde_json::Value = serde_yaml::from_str(&y).expect("yaml");
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "http://127.0.0.1:1234"
        );
        assert_eq!(v["current-context"], "kube-standin");
    }
}
