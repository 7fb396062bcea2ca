pub mod demo;
pub mod harness;
pub mod standin;
pub mod walkthrough;
