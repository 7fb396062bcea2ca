//! The real Kubernetes control plane the end-to-end tests run against: `kube-controlplane`
//! (etcd, kube-apiserver with RBAC, kube-controller-manager's garbage collector, namespace and
//! serviceaccount controllers), built from the Kubernetes Go modules by `make controlplane`.
//!
//! `make test` starts one for the whole run and names its kubeconfig in
//! `KUBETEMPURA_TEST_KUBECONFIG`; every test then works in namespaces of its own. Without that
//! variable (a single test run by hand with `cargo nextest run …`), [`Cluster::connect`] starts a
//! private control plane for the test process, which costs a few seconds more.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::process::ChildGuard;
use super::{tools, wait_for};

/// The variable naming a running control plane's admin kubeconfig (set by `make test`).
pub const SHARED_KUBECONFIG_ENV: &str = "KUBETEMPURA_TEST_KUBECONFIG";

/// `tests/controlplane/bin/kube-controlplane`, or `$KUBE_CONTROLPLANE`.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("KUBE_CONTROLPLANE") {
        return PathBuf::from(p);
    }
    let p = tools::workspace_root().join("tests/controlplane/bin/kube-controlplane");
    assert!(
        p.is_file(),
        "{} not found: build it with `make controlplane` (make test does)",
        p.display()
    );
    p
}

/// A `kube-controlplane` process started by this test process.
pub struct ControlPlane {
    process: ChildGuard,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts one and waits until its kubeconfig is written (the API server answered /readyz).
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut cmd = Command::new(binary());
        cmd.arg("--kubeconfig").arg(&kubeconfig);
        let mut process = ChildGuard::spawn("kube-controlplane", cmd);
        wait_for(
            "kube-controlplane to write its kubeconfig",
            Duration::from_secs(120),
            || {
                process.assert_running();
                let ready = kubeconfig.is_file();
                async move { ready.then_some(()) }
            },
        )
        .await;
        Self { process, dir }
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    /// Everything it logged.
    pub fn output(&self) -> String {
        self.process.output()
    }
}

/// The cluster a test runs against, as its administrator.
pub struct Cluster {
    /// The control plane this process started, if it did.
    pub owned: Option<ControlPlane>,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// The API server's URL.
    pub server: String,
    /// PEM of the CA that signed the API server's certificate (empty: the system's roots).
    pub ca_pem: Vec<u8>,
    /// An admin client.
    pub client: Client,
}

impl Cluster {
    /// The cluster of `kubeconfig` if given, else the shared control plane of `make test`, else
    /// a control plane started for this process.
    pub async fn connect(kubeconfig: Option<&Path>) -> Self {
        let shared = std::env::var_os(SHARED_KUBECONFIG_ENV).map(PathBuf::from);
        let (owned, path) = match kubeconfig.map(Path::to_path_buf).or(shared) {
            Some(p) => (None, p),
            None => {
                let cp = ControlPlane::start().await;
                let p = cp.kubeconfig();
                (Some(cp), p)
            }
        };
        let kc = Kubeconfig::read_from(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (server, ca_pem) = server_and_ca(&kc, &path);
        let mut config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // Tests see every error as it happens; a retrying client would hide the faults they
        // inject.
        config.default_retry = false;
        super::install_crypto_provider();
        let client = Client::try_from(config).expect("kube client");
        Self {
            owned,
            kubeconfig: path,
            server,
            ca_pem,
            client,
        }
    }
}

/// The current context's server URL and CA bundle.
fn server_and_ca(kc: &Kubeconfig, path: &Path) -> (String, Vec<u8>) {
    let context = kc
        .current_context
        .as_deref()
        .and_then(|name| kc.contexts.iter().find(|c| c.name == name))
        .and_then(|c| c.context.as_ref())
        .unwrap_or_else(|| panic!("{}: no current context", path.display()));
    let cluster = kc
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .unwrap_or_else(|| panic!("{}: no cluster {}", path.display(), context.cluster));
    let server = cluster.server.clone().expect("cluster server");
    let ca = if let Some(data) = &cluster.certificate_authority_data {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_else(|e| panic!("{}: certificate-authority-data: {e}", path.display()))
    } else if let Some(file) = &cluster.certificate_authority {
        std::fs::read(file).unwrap_or_else(|e| panic!("{file}: {e}"))
    } else {
        Vec::new()
    };
    (server, ca)
}
