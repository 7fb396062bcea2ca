//! The kubetempura webhook function: verify, filter, normalise, enqueue.

pub mod config;
