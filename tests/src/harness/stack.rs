//! The whole local system for end-to-end tests and the demo: the SQS emulator with a FIFO queue
//! and its dead-letter queue, the Kubernetes stand-in with the CRDs and ReviewApps applied, the
//! webhook function under `cargo lambda watch`, and `kubetempura run`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_sqs::types::MessageAttributeValue;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::{Client, ResourceExt};
use kubetempura_applier::send_event::{Delivery, post};
use kubetempura_common::crd::{PR, Phase};
use kubetempura_common::event::{Normalized, PrEvent, normalize};
use serde::Deserialize;

use super::applier::ApplierProcess;
use super::lambda::WebhookFunction;
use super::sqs::{Queues, SqsEmulator};
use super::{tools, wait_for};
use crate::standin::StandIn;

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
    /// Files applied to the cluster after the CRDs (fixture CRDs, then ReviewApps).
    pub manifests: Vec<PathBuf>,
    /// Extra `kubetempura run` arguments.
    pub applier_args: Vec<String>,
    pub max_receive_count: u32,
    pub visibility_timeout_secs: u32,
    /// Use this cluster instead of starting the stand-in (a real cluster for the demo or the
    /// `KUBECONFIG`-gated suite).
    pub kubeconfig: Option<PathBuf>,
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
        }
    }
}

/// A running system. Everything stops when it is dropped.
pub struct Stack {
    pub applier: Option<ApplierProcess>,
    pub function: Option<WebhookFunction>,
    /// The stand-in, unless a real cluster was given.
    pub kube: Option<StandIn>,
    pub kubeconfig: PathBuf,
    pub client: Client,
    pub queues: Queues,
    pub sqs: SqsEmulator,
    pub options: StackOptions,
}

/// A path inside the workspace.
pub fn workspace_file(rel: &str) -> PathBuf {
    tools::workspace_root().join(rel)
}

impl Stack {
    /// Starts everything `options` asks for.
    pub async fn start(options: StackOptions) -> Self {
        let (kube, kubeconfig, client) = match &options.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                (
                    None,
                    path.clone(),
                    Client::try_from(config).expect("kube client"),
                )
            }
            None => {
                let kube = StandIn::start_loopback().await.expect("start kube-standin");
                let mut config = kube.kube_config().expect("kube config");
                config.default_retry = false;
                let client = Client::try_from(config).expect("kube client");
                let path = kube.kubeconfig_path().expect("kubeconfig");
                (Some(kube), path, client)
            }
        };
        apply_file(&client, &workspace_file("infra/crds/crds.yaml")).await;
        for m in &options.manifests {
            apply_file(&client, m).await;
        }
        let sqs = SqsEmulator::start().await;
        let queues = sqs
            .create_fifo_with_dlq(
                &options.queue,
                options.max_receive_count,
                options.visibility_timeout_secs,
            )
            .await;
        let function = if options.function {
            let mut env = sqs.env();
            env.push(("QUEUE_URL".into(), queues.url.clone()));
            env.push(("WEBHOOK_SECRET".into(), SECRET.into()));
            Some(WebhookFunction::start(&env).await)
        } else {
            None
        };
        let mut stack = Self {
            applier: None,
            function,
            kube,
            kubeconfig,
            client,
            queues,
            sqs,
            options,
        };
        if stack.options.applier {
            stack.start_applier().await;
        }
        stack
    }

    /// Starts (or restarts) the applier.
    pub async fn start_applier(&mut self) {
        let applier = ApplierProcess::start(
            &self.queues.url,
            &self.kubeconfig,
            &self.sqs.env(),
            &self.options.applier_args,
        )
        .await;
        self.applier = Some(applier);
    }

    /// The stand-in (panics when the stack runs against a real cluster).
    pub fn standin(&self) -> &StandIn {
        self.kube
            .as_ref()
            .expect("this stack runs against kube-standin")
    }

    /// The running applier.
    pub fn applier(&self) -> &ApplierProcess {
        self.applier.as_ref().expect("applier running")
    }

    /// POSTs a signed delivery to the function URL; returns the HTTP status.
    pub async fn deliver(&self, delivery: &Delivery, delivery_id: &str) -> u16 {
        let url = &self.function.as_ref().expect("function running").url;
        let (status, body) = post(
            url,
            SECRET,
            "pull_request",
            delivery_id,
            &delivery.payload().expect("payload"),
        )
        .await
        .expect("POST");
        assert!(
            (200..300).contains(&status),
            "delivery {delivery_id} answered {status}: {body}"
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

    /// Sends any body to the queue with a group and deduplication id.
    pub async fn enqueue_raw(&self, body: &str, group: &str, dedup: &str) {
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
                    .string_value("pull_request")
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
    }
}

/// The dynamic API of a kind, found through discovery.
pub async fn dynamic_api(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let (ar, caps) =
        kube::discovery::pinned_kind(client, &GroupVersionKind::gvk(group, version, kind))
            .await
            .unwrap_or_else(|e| panic!("discovery of {kind} {api_version}: {e}"));
    match (caps.scope, namespace) {
        (kube::discovery::Scope::Namespaced, Some(ns)) => {
            Api::namespaced_with(client.clone(), ns, &ar)
        }
        _ => Api::all_with(client.clone(), &ar),
    }
}

/// Server-side-applies every document of a YAML file (as `kubectl apply --server-side` would).
pub async fn apply_file(client: &Client, path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(doc)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if value.is_null() {
            continue;
        }
        let obj: DynamicObject = serde_json::from_value(value.clone())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let types = obj.types.clone().expect("apiVersion and kind");
        let ns = obj.namespace().unwrap_or_else(|| "default".into());
        let api = dynamic_api(client, &types.api_version, &types.kind, Some(&ns)).await;
        api.patch(
            &obj.name_any(),
            &PatchParams::apply("kubetempura-tests").force(),
            &Patch::Apply(&value),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "apply {} {} from {}: {e}",
                types.kind,
                obj.name_any(),
                path.display()
            )
        });
    }
}
