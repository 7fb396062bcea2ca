//! Pure logic shared by the kubetempura webhook function and the in-cluster applier.
//!
//! Nothing in this crate performs network I/O: it holds the queue message model and its
//! normalisation from GitHub deliveries ([`event`]), the outbound environment state
//! ([`feedback`]), webhook signature verification
//! ([`signature`]), template rendering ([`render`]), the object policy ([`policy`]), the
//! custom resource types ([`crd`]) and naming rules ([`naming`]).

pub mod check;
pub mod crd;
pub mod event;
pub mod feedback;
pub mod naming;
pub mod policy;
pub mod render;
pub mod signature;
#[cfg(feature = "testing")]
pub mod testing;

/// The API group of kubetempura's custom resources (unchanged from the original KubeTempura).
pub const API_GROUP: &str = "kubetempura.mercari.com";
/// The API version of kubetempura's custom resources.
pub const API_VERSION: &str = "v1";
/// The value of `app.kubernetes.io/managed-by` on every object the applier creates.
pub const MANAGER_NAME: &str = "kubetempura";
