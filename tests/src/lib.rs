pub mod demo;
pub mod harness;
pub mod loadbench;
pub mod walkthrough;
