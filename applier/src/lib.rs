//! The kubetempura applier and its command-line tool.
//!
//! `kubetempura run` long-polls the SQS queue and applies rendered ReviewApps; `kubetempura
//! render` and `kubetempura crd` work offline.

pub mod cli;
pub mod kube_client;
pub mod render_cmd;
