//! Every cross-process end-to-end suite, in one test binary: one link instead of one per suite
//! (each would hold its own copy of kube, the AWS SDK and the harness: about 85 MB apiece in a
//! dev build). A suite is a module named as its file; run one with a filter on its path:
//!
//! ```sh
//! cargo nextest run -p kubetempura-tests walkthrough_e2e::
//! ```
//!
//! nextest still runs every test in a process of its own.

mod guarantees_support;

mod applier_outcomes_e2e;
mod controlplane_e2e;
mod fanout_e2e;
mod github_standin;
mod guarantees_close;
mod guarantees_concurrency;
mod guarantees_crash;
mod guarantees_failures;
mod guarantees_order;
mod guarantees_ownership;
mod guarantees_resync;
mod guarantees_retention;
mod guarantees_templates;
mod guarantees_waits;
mod harness;
mod infra_examples;
mod lambda_runtime_e2e;
mod lifecycle_e2e;
mod manual_environments;
mod migration_e2e;
mod notifier_e2e;
mod policy_e2e;
mod rbac_e2e;
mod reconcile_inprocess;
mod rollout_e2e;
mod tenancy_e2e;
mod walkthrough_e2e;
mod webhook_e2e;
