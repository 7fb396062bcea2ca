pub mod demo;
pub mod harness;
pub mod loadbench;
pub mod standin;
pub mod walkthrough;
