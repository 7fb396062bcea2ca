//! The kubetempura applier and its command-line tool.
//!
//! `kubetempura run` long-polls the SQS queue and applies rendered ReviewApps; `kubetempura
//! render` and `kubetempura crd` work offline.

pub mod cache;
pub mod cli;
pub mod consumer;
pub mod deadlines;
pub mod feedback;
pub mod kube_client;
pub mod kubeapi;
pub mod ledger;
pub mod metrics;
pub mod pr_objects;
pub mod reconcile;
pub mod render_cmd;
pub mod rollout;
pub mod run;
pub mod send_event;
pub mod tenancy;
