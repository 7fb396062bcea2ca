//! One webhook, many appliers (terraform/fanout.tf) on the emulator: an SNS FIFO topic the
//! webhook function publishes to (`TOPIC_ARN`), and per applier a FIFO queue and dead-letter
//! queue tagged `kubetempura:applier=<name>`, subscribed with raw message delivery and the filter
//! policy terraform/modules/appliers computes for that applier's entry (read from
//! tests/fixtures/fanout/appliers.json, which terraform/tests/test_appliers.py checks against the
//! module).

use std::collections::BTreeMap;
use std::path::Path;

use aws_sdk_sqs::types::QueueAttributeName;

use super::install::create_namespace;
use super::kubeapi::apply_file;
use super::sqs::{Queues, SqsEmulator};
use super::stack::{ExtraApplier, Stack, workspace_file};

/// Applier name => the filter policy of its subscription (`None`: every event), as the module
/// computes it for the fixture's entries.
pub fn terraform_filter_policies() -> BTreeMap<String, Option<serde_json::Value>> {
    let path = workspace_file("tests/fixtures/fanout/appliers.json");
    let text = std::fs::read_to_string(&path).expect("read the fan-out fixture");
    let doc: serde_json::Value = serde_json::from_str(&text).expect("fan-out fixture JSON");
    doc["appliers"]
        .as_object()
        .expect("the fixture's appliers")
        .iter()
        .map(|(name, a)| {
            let policy = a["filter_policy"].clone();
            (name.clone(), (!policy.is_null()).then_some(policy))
        })
        .collect()
}

/// The topic and each applier's queues.
#[derive(Debug, Clone)]
pub struct Fanout {
    pub topic_arn: String,
    /// Applier name => its queue and dead-letter queue.
    pub queues: BTreeMap<String, Queues>,
}

impl Fanout {
    /// The queues of applier `name`.
    pub fn queues(&self, name: &str) -> &Queues {
        self.queues
            .get(name)
            .unwrap_or_else(|| panic!("no fan-out applier {name:?}"))
    }
}

impl SqsEmulator {
    /// Creates the FIFO topic `<name>.fifo` and, per applier, the queues `<name>-<applier>.fifo`
    /// and `<name>-<applier>-dlq.fifo` subscribed as terraform/fanout.tf subscribes them.
    pub async fn create_fanout(
        &self,
        name: &str,
        appliers: &BTreeMap<String, Option<serde_json::Value>>,
        max_receive_count: u32,
        visibility_timeout_secs: u32,
    ) -> Fanout {
        let topic_arn = self
            .sns
            .create_topic()
            .name(format!("{name}.fifo"))
            .attributes("FifoTopic", "true")
            .attributes("ContentBasedDeduplication", "false")
            .send()
            .await
            .expect("create the FIFO topic")
            .topic_arn
            .expect("topic ARN");
        let mut queues = BTreeMap::new();
        for (applier, policy) in appliers {
            let q = self
                .create_fifo_with_dlq(
                    &format!("{name}-{applier}"),
                    max_receive_count,
                    visibility_timeout_secs,
                )
                .await;
            self.tag_and_subscribe(&topic_arn, applier, &q, policy.as_ref())
                .await;
            queues.insert(applier.clone(), q);
        }
        Fanout { topic_arn, queues }
    }

    async fn tag_and_subscribe(
        &self,
        topic_arn: &str,
        applier: &str,
        q: &Queues,
        policy: Option<&serde_json::Value>,
    ) {
        for url in [&q.url, &q.dlq_url] {
            self.client
                .tag_queue()
                .queue_url(url)
                .tags("kubetempura:applier", applier)
                .tags("kubetempura:fanout", "true")
                .send()
                .await
                .expect("tag the applier's queue");
        }
        // The queue policy fanout.tf sets (the emulator enforces it only with AUTH=true).
        let queue_policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": q.arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
            }],
        });
        self.client
            .set_queue_attributes()
            .queue_url(&q.url)
            .attributes(QueueAttributeName::Policy, queue_policy.to_string())
            .send()
            .await
            .expect("set the applier's queue policy");
        let mut subscribe = self
            .sns
            .subscribe()
            .topic_arn(topic_arn)
            .protocol("sqs")
            .endpoint(&q.arn)
            .return_subscription_arn(true)
            .attributes("RawMessageDelivery", "true");
        if let Some(policy) = policy {
            subscribe = subscribe
                .attributes("FilterPolicyScope", "MessageAttributes")
                .attributes("FilterPolicy", policy.to_string());
        }
        subscribe
            .send()
            .await
            .expect("subscribe the applier's queue");
    }
}

impl Stack {
    /// Starts the applier reading the fan-out queue of `applier` (a name of the options'
    /// `fanout`) as `--cluster-name cluster_name`, watching `namespace`, with the options'
    /// applier arguments.
    pub async fn start_fanout_applier(
        &self,
        applier: &str,
        namespace: &str,
        cluster_name: &str,
    ) -> ExtraApplier {
        let queues = self
            .fanout
            .as_ref()
            .expect("a stack started with fan-out appliers")
            .queues(applier);
        let mut args = self.options.applier_args.clone();
        args.extend(["--namespace", namespace, "--cluster-name", cluster_name].map(str::to_owned));
        self.start_extra_applier(&queues.url, &args).await
    }

    /// Creates the namespace `name` with the namespaced objects of `manifests` in it (another
    /// cluster's namespace on the same control plane).
    pub async fn create_namespace_with(&self, name: &str, manifests: &[&Path]) {
        create_namespace(&self.client, name).await;
        for manifest in manifests {
            apply_file(&self.client, manifest, Some(name)).await;
        }
    }
}
