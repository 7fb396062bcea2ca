//! The whole local system for end-to-end tests and the demo: the SQS emulator with a FIFO queue
//! and its dead-letter queue (or an SNS FIFO topic and a queue per applier), a real Kubernetes control plane (see [`super::controlplane`]) with
//! the CRDs, infra/'s RBAC and the test's manifests applied in a namespace of the test's own,
//! the webhook function under `cargo lambda watch`, and `kubetempura run` under the identity
//! infra/ gives it, reaching the API server through a fault-injecting proxy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject};
use kube::{Client, ResourceExt};
use kubetempura_applier::send_event::{CheckDelivery, Delivery, post};
use kubetempura_common::check::CheckEvent;
use kubetempura_common::crd::{PR, Phase};
use kubetempura_common::event::{Normalized, PrEvent, normalize};

use super::applier::ApplierProcess;
use super::controlplane::Cluster;
use super::fanout::Fanout;
use super::faultproxy::FaultProxy;
use super::install::{
    Identity, RBAC_KINDS, SERVICE_ACCOUNT, create_namespace, install, token_kubeconfig,
};
use super::kubeapi::{apply_file, dynamic_api, read_documents};
use super::lambda::WebhookFunction;
use super::sqs::{Queues, SqsEmulator};
use super::{tools, wait_for};

/// The webhook secret of the local system.
pub const SECRET: &str = "kubetempura-local-secret";

/// What to start.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Queue name (`<name>.fifo`, DLQ `<name>-dlq.fifo`).
    pub queue: String,
    /// Start the webhook function (otherwise tests send to the queue directly).
    pub function: bool,
    /// Start the applier.
    pub applier: bool,
    /// Files applied to the cluster after the CRDs (fixture CRDs, then ReviewApps); namespaced
    /// objects go to the test's namespace.
    pub manifests: Vec<PathBuf>,
    /// Extra `kubetempura run` arguments.
    pub applier_args: Vec<String>,
    pub max_receive_count: u32,
    pub visibility_timeout_secs: u32,
    /// Use this cluster instead of the control plane (a real cluster for the demo or the
    /// `KUBETEMPURA_E2E_KUBECONFIG`-gated suite).
    pub kubeconfig: Option<PathBuf>,
    /// The infra/ kustomization whose RBAC the applier runs under.
    pub install: PathBuf,
    /// Namespaces the install names (the per-namespace overlay's `team-a` …) mapped to
    /// namespaces of the test; `{ns}` in a value is the test's namespace.
    pub install_namespaces: BTreeMap<String, String>,
    /// The test's namespace (default: a fresh `kt-…` name).
    pub namespace: Option<String>,
    /// Create a feedback queue (`<queue>-feedback.fifo`, with its DLQ) and pass it to the
    /// applier as `--feedback-queue-url`.
    pub feedback: bool,
    /// Appliers fed through an SNS FIFO topic (`<queue>.fifo`), by name => the filter policy
    /// of its queue's subscription (see [`super::fanout`]). When not empty, the function
    /// publishes to the topic (`TOPIC_ARN`) instead of sending to the queue (`QUEUE_URL`).
    pub fanout: BTreeMap<String, Option<serde_json::Value>>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            queue: "kubetempura-events".into(),
            function: true,
            applier: true,
            manifests: Vec::new(),
            applier_args: vec![
                "--retry-base-seconds".into(),
                "1".into(),
                "--retry-max-seconds".into(),
                "4".into(),
            ],
            max_receive_count: 5,
            visibility_timeout_secs: 30,
            kubeconfig: None,
            install: workspace_file("infra/base"),
            install_namespaces: BTreeMap::new(),
            namespace: None,
            feedback: false,
            fanout: BTreeMap::new(),
        }
    }
}

/// An applier started beside the stack's own (see [`Stack::start_extra_applier`]).
pub struct ExtraApplier {
    pub process: ApplierProcess,
    /// The proxy between it and the API server.
    pub proxy: FaultProxy,
    _dir: tempfile::TempDir,
}

/// A running system. Everything stops when it is dropped.
pub struct Stack {
    pub applier: Option<ApplierProcess>,
    pub function: Option<WebhookFunction>,
    /// The cluster (the shared control plane, one of this process, or a real cluster).
    pub cluster: Cluster,
    /// The test's namespace: ReviewApps and their environments live here.
    pub ns: String,
    /// The admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// An admin client (the applier has its own identity, [`Stack::identity`]).
    pub client: Client,
    /// The fault-injecting proxy between the applier and the API server.
    pub proxy: FaultProxy,
    /// The applier's ServiceAccount token from the installed infra/.
    pub identity: Identity,
    /// The applier's kubeconfig (its token, the proxy's URL).
    pub applier_kubeconfig: PathBuf,
    pub queues: Queues,
    /// The feedback queue, when the options ask for one.
    pub feedback_queues: Option<Queues>,
    /// The topic and the appliers' queues, when the options ask for them.
    pub fanout: Option<Fanout>,
    pub sqs: SqsEmulator,
    pub options: StackOptions,
    _dir: tempfile::TempDir,
}

/// A path inside the workspace.
pub fn workspace_file(rel: &str) -> PathBuf {
    tools::workspace_root().join(rel)
}

/// A fresh namespace name for one test: `kt-` and 10 random hex digits.
pub fn unique_namespace() -> String {
    let n: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default()
        ^ (u64::from(std::process::id()) << 40);
    format!("kt-{:010x}", n & 0xff_ffff_ffff)
}

impl Stack {
    /// Starts everything `options` asks for.
    pub async fn start(options: StackOptions) -> Self {
        let cluster = Cluster::connect(options.kubeconfig.as_deref()).await;
        let client = cluster.client.clone();
        let ns = options.namespace.clone().unwrap_or_else(unique_namespace);
        create_namespace(&client, &ns).await;
        apply_crds(&client, &workspace_file("infra/crds/crds.yaml")).await;
        let namespaces = options
            .install_namespaces
            .iter()
            .map(|(k, v)| (k.clone(), v.replace("{ns}", &ns)))
            .collect();
        let identity = install(&client, &options.install, &ns, &namespaces, RBAC_KINDS).await;
        for m in &options.manifests {
            apply_crds(&client, m).await;
            apply_file(&client, m, Some(&ns)).await;
        }
        let proxy = FaultProxy::start(&cluster.server, &cluster.ca_pem).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let applier_kubeconfig = dir.path().join("applier.kubeconfig");
        std::fs::write(
            &applier_kubeconfig,
            token_kubeconfig(&proxy.url(), &[], &identity.token, &ns),
        )
        .expect("write the applier's kubeconfig");
        let sqs = SqsEmulator::start().await;
        let queues = sqs
            .create_fifo_with_dlq(
                &options.queue,
                options.max_receive_count,
                options.visibility_timeout_secs,
            )
            .await;
        let feedback_queues = if options.feedback {
            Some(
                sqs.create_fifo_with_dlq(
                    &format!("{}-feedback", options.queue),
                    options.max_receive_count,
                    options.visibility_timeout_secs,
                )
                .await,
            )
        } else {
            None
        };
        let fanout = if options.fanout.is_empty() {
            None
        } else {
            Some(
                sqs.create_fanout(
                    &options.queue,
                    &options.fanout,
                    options.max_receive_count,
                    options.visibility_timeout_secs,
                )
                .await,
            )
        };
        let function = if options.function {
            let mut env = sqs.env();
            env.push(match &fanout {
                Some(f) => ("TOPIC_ARN".into(), f.topic_arn.clone()),
                None => ("QUEUE_URL".into(), queues.url.clone()),
            });
            env.push(("WEBHOOK_SECRET".into(), SECRET.into()));
            Some(WebhookFunction::start(&env).await)
        } else {
            None
        };
        let mut stack = Self {
            applier: None,
            function,
            kubeconfig: cluster.kubeconfig.clone(),
            cluster,
            ns,
            client,
            proxy,
            identity,
            applier_kubeconfig,
            queues,
            feedback_queues,
            fanout,
            sqs,
            options,
            _dir: dir,
        };
        if stack.options.applier {
            stack.start_applier().await;
        }
        stack
    }

    /// Deletes the test's namespaces (for runs against a real cluster, which outlives them).
    pub async fn delete_namespaces(&self) {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        for name in [self.ns.clone(), self.identity.namespace.clone()] {
            let _ = api.delete(&name, &DeleteParams::background()).await;
        }
    }

    /// `kubetempura run`'s arguments: the test's namespace (unless the options name the watched
    /// namespace themselves), then the options' arguments.
    pub fn applier_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if !self.options.applier_args.iter().any(|a| a == "--namespace") {
            args.extend(["--namespace".to_owned(), self.ns.clone()]);
        }
        if let Some(q) = &self.feedback_queues {
            args.extend(["--feedback-queue-url".to_owned(), q.url.clone()]);
        }
        args.extend(self.options.applier_args.iter().cloned());
        args
    }

    /// `kubetempura run`'s environment: the SQS emulator's, and what infra/'s Deployment sets
    /// from the downward API — the applier's namespace (`<ns>-system`, where its ServiceAccount
    /// lives) and ServiceAccount — so the applier refuses what it refuses in production.
    pub fn applier_env(&self) -> Vec<(String, String)> {
        let mut env = self.sqs.env();
        env.push(("POD_NAMESPACE".into(), self.identity.namespace.clone()));
        env.push(("SERVICE_ACCOUNT_NAME".into(), SERVICE_ACCOUNT.into()));
        env
    }

    /// Starts (or restarts) the applier.
    pub async fn start_applier(&mut self) {
        let applier = ApplierProcess::start(
            &self.queues.url,
            &self.applier_kubeconfig,
            &self.applier_env(),
            &self.applier_args(),
        )
        .await;
        self.applier = Some(applier);
    }

    /// Starts another applier (as a second replica, or one with other flags) with the same
    /// identity, through a fault proxy of its own, consuming `queue_url`, watching the test's
    /// namespace unless `args` name one.
    pub async fn start_extra_applier(&self, queue_url: &str, args: &[String]) -> ExtraApplier {
        let proxy = FaultProxy::start(&self.cluster.server, &self.cluster.ca_pem).await;
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("applier.kubeconfig");
        std::fs::write(
            &kubeconfig,
            token_kubeconfig(&proxy.url(), &[], &self.identity.token, &self.ns),
        )
        .expect("write the extra applier's kubeconfig");
        let mut all_args = Vec::new();
        if !args.iter().any(|a| a == "--namespace") {
            all_args.extend(["--namespace".to_owned(), self.ns.clone()]);
        }
        all_args.extend(args.iter().cloned());
        let process =
            ApplierProcess::start(queue_url, &kubeconfig, &self.applier_env(), &all_args).await;
        ExtraApplier {
            process,
            proxy,
            _dir: dir,
        }
    }

    /// Runs an applier with this stack's arguments and `extra` ones, expecting it to exit on its
    /// own within `timeout` (a refused configuration): its exit status and output.
    pub fn run_applier_to_exit(
        &self,
        extra: &[&str],
        timeout: Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        let mut args = self.applier_args();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        ApplierProcess::run_to_exit(
            &self.queues.url,
            &self.applier_kubeconfig,
            &self.applier_env(),
            &args,
            timeout,
        )
    }

    /// The running applier.
    pub fn applier(&self) -> &ApplierProcess {
        self.applier.as_ref().expect("applier running")
    }

    /// POSTs a signed delivery to the function URL; returns the HTTP status.
    pub async fn deliver(&self, delivery: &Delivery, delivery_id: &str) -> u16 {
        let body = delivery.payload().expect("payload");
        self.post_signed("pull_request", delivery_id, &body).await
    }

    /// POSTs a signed check result delivery (`check_run`, `check_suite`, `workflow_run` or
    /// `status`) to the function URL; returns the HTTP status.
    pub async fn deliver_check(&self, delivery: &CheckDelivery, delivery_id: &str) -> u16 {
        let body = delivery.payload().expect("payload");
        self.post_signed(delivery.event(), delivery_id, &body).await
    }

    async fn post_signed(&self, event: &str, delivery_id: &str, body: &[u8]) -> u16 {
        let url = &self.function.as_ref().expect("function running").url;
        let (status, reply) = post(url, SECRET, event, delivery_id, body)
            .await
            .expect("POST");
        assert!(
            (200..300).contains(&status),
            "{event} delivery {delivery_id} answered {status}: {reply}"
        );
        status
    }

    /// Sends the event of a delivery straight to the queue (as the function would).
    pub async fn enqueue(&self, delivery: &Delivery, delivery_id: &str) -> PrEvent {
        let event = event_of(delivery, delivery_id);
        self.enqueue_raw(&event.to_json(), &event.message_group_id(), delivery_id)
            .await;
        event
    }

    /// Sends the check events of a check result delivery straight to the queue, each in its
    /// group with its deduplication id (as the function would).
    pub async fn enqueue_check(
        &self,
        delivery: &CheckDelivery,
        delivery_id: &str,
    ) -> Vec<CheckEvent> {
        let checks = checks_of(delivery, delivery_id);
        for check in &checks {
            self.send_to_queue(
                &check.to_json(),
                &check.message_group_id(),
                &check.delivery_id,
                &check.event,
            )
            .await;
        }
        checks
    }

    /// Sends any body to the queue with a group and deduplication id (as a `pull_request`
    /// message).
    pub async fn enqueue_raw(&self, body: &str, group: &str, dedup: &str) {
        self.send_to_queue(body, group, dedup, "pull_request").await;
    }

    async fn send_to_queue(&self, body: &str, group: &str, dedup: &str, event: &str) {
        self.sqs
            .client
            .send_message()
            .queue_url(&self.queues.url)
            .message_body(body)
            .message_group_id(group)
            .message_deduplication_id(dedup)
            .message_attributes(
                "event",
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(event)
                    .build()
                    .expect("attribute"),
            )
            .send()
            .await
            .expect("send to queue");
    }

    /// A dynamic API for a kind in a namespace.
    pub async fn api(&self, api_version: &str, kind: &str, namespace: &str) -> Api<DynamicObject> {
        dynamic_api(&self.client, api_version, kind, Some(namespace)).await
    }

    /// Waits until `check` holds for the object (or its absence).
    pub async fn wait_object<F>(
        &self,
        what: &str,
        api_version: &str,
        kind: &str,
        namespace: &str,
        name: &str,
        check: F,
    ) -> Option<DynamicObject>
    where
        F: Fn(Option<&DynamicObject>) -> bool,
    {
        let api = self.api(api_version, kind, namespace).await;
        wait_for(what, Duration::from_secs(60), || {
            let api = api.clone();
            let check = &check;
            async move {
                let obj = api.get_opt(name).await.ok()?;
                check(obj.as_ref()).then_some(obj)
            }
        })
        .await
    }

    /// Waits until a Deployment's first container runs `image`.
    pub async fn wait_deployment_image(
        &self,
        namespace: &str,
        name: &str,
        image: &str,
    ) -> DynamicObject {
        self.wait_object(
            &format!("Deployment {namespace}/{name} with image {image}"),
            "apps/v1",
            "Deployment",
            namespace,
            name,
            |o| {
                o.is_some_and(|o| {
                    o.data["spec"]["template"]["spec"]["containers"][0]["image"] == image
                })
            },
        )
        .await
        .expect("deployment")
    }

    /// Waits until an object is gone.
    pub async fn wait_gone(&self, api_version: &str, kind: &str, namespace: &str, name: &str) {
        self.wait_object(
            &format!("{kind} {namespace}/{name} to be deleted"),
            api_version,
            kind,
            namespace,
            name,
            |o| o.is_none(),
        )
        .await;
    }

    /// Sets a Deployment's status as its controller would with `available` of its replicas
    /// available (all updated) at its current generation: the control plane runs no
    /// Deployment controller and no kubelet.
    pub async fn set_deployment_available(&self, name: &str, available: i32) {
        let api: Api<k8s_openapi::api::apps::v1::Deployment> =
            Api::namespaced(self.client.clone(), &self.ns);
        let d = api.get(name).await.expect("get the Deployment");
        let replicas = d.spec.replicas.unwrap_or(1);
        let status = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "status": {
                "observedGeneration": d.metadata.generation,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": available,
                "availableReplicas": available,
            },
        });
        api.patch_status(
            name,
            &kube::api::PatchParams::apply("deployment-controller").force(),
            &kube::api::Patch::Apply(&status),
        )
        .await
        .expect("set the Deployment's status");
    }

    /// Waits until the applier recorded on the `PR` object `name` that it sent the feedback
    /// `state` (`deploying`, `ready` …) about `commit`: the event is then on the feedback queue.
    pub async fn wait_feedback_sent(&self, name: &str, state: &str, commit: &str) -> PR {
        let api: Api<PR> = Api::namespaced(self.client.clone(), &self.ns);
        wait_for(
            &format!("feedback {state} of {commit} sent for {name}"),
            Duration::from_secs(60),
            || async {
                api.get_opt(name).await.ok().flatten().filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.feedback.as_ref())
                        .is_some_and(|f| f.state == state && f.commit == commit)
                })
            },
        )
        .await
    }

    /// Waits until a `PR` object reaches `phase`.
    pub async fn wait_pr_phase(&self, namespace: &str, name: &str, phase: Phase) -> PR {
        let api: Api<PR> = Api::namespaced(self.client.clone(), namespace);
        wait_for(
            &format!("PR {namespace}/{name} in phase {phase:?}"),
            Duration::from_secs(60),
            || {
                let api = api.clone();
                async move {
                    api.get_opt(name)
                        .await
                        .ok()
                        .flatten()
                        .filter(|p| p.status.as_ref().and_then(|s| s.phase) == Some(phase))
                }
            },
        )
        .await
    }

    /// Waits until the queue holds no message, visible or in flight.
    pub async fn wait_queue_drained(&self) {
        wait_for("the queue to drain", Duration::from_secs(90), || async {
            (self.sqs.depth(&self.queues.url).await == (0, 0)).then_some(())
        })
        .await;
    }

    /// Names of the objects of a kind in a namespace, sorted.
    pub async fn names(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .list(api_version, kind, namespace)
            .await
            .iter()
            .map(ResourceExt::name_any)
            .collect();
        names.sort();
        names
    }

    /// The objects of a kind in a namespace.
    pub async fn list(&self, api_version: &str, kind: &str, namespace: &str) -> Vec<DynamicObject> {
        let api = self.api(api_version, kind, namespace).await;
        api.list(&Default::default()).await.expect("list").items
    }
}

/// The event the webhook function would enqueue for a delivery (panics if it would be ignored).
pub fn event_of(delivery: &Delivery, delivery_id: &str) -> PrEvent {
    let body = delivery.payload().expect("payload");
    match normalize("pull_request", delivery_id, &body, chrono::Utc::now()).expect("normalise") {
        Normalized::Event(event) => *event,
        Normalized::Ignored(reason) => panic!("delivery {delivery_id} would be ignored: {reason}"),
        Normalized::Checks(checks) => panic!("delivery {delivery_id} gave checks: {checks:?}"),
    }
}

/// The check events the webhook function would enqueue for a check result delivery (panics if
/// it would be ignored).
pub fn checks_of(delivery: &CheckDelivery, delivery_id: &str) -> Vec<CheckEvent> {
    let body = delivery.payload().expect("payload");
    match normalize(delivery.event(), delivery_id, &body, chrono::Utc::now()).expect("normalise") {
        Normalized::Checks(checks) => checks,
        other => panic!("check delivery {delivery_id} did not give checks: {other:?}"),
    }
}

/// Applies the CustomResourceDefinitions of a file and waits until each is established, so
/// that its kind is served before anything of that kind is applied.
pub async fn apply_crds(client: &Client, path: &Path) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for doc in read_documents(path) {
        if doc["kind"] != "CustomResourceDefinition" {
            continue;
        }
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        super::kubeapi::apply_value(client, &doc, None)
            .await
            .unwrap_or_else(|e| panic!("apply CRD {name} from {}: {e}", path.display()));
        wait_for(
            &format!("CRD {name} to be established"),
            Duration::from_secs(30),
            || {
                let api = api.clone();
                let name = name.clone();
                async move {
                    let crd = api.get(&name).await.ok()?;
                    let established = crd
                        .status?
                        .conditions?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True");
                    established.then_some(())
                }
            },
        )
        .await;
    }
}
