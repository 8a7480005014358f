//! Code shared by the criterion benches (`benches/bench.rs`) and the `flowbench` example
//! (which includes this directory with `#[path]`): the adapters that put every backend and every
//! peer crate behind one trait, and the workload generators.
#![allow(dead_code)] // each binary uses a different part

pub mod adapter;
pub mod placement;
pub mod workload;
