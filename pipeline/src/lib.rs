//! # flowtable-pipeline
//!
//! `flowpipe`, the crate's main job end to end: a multi-threaded packet pipeline that reads a pcap
//! or pcapng capture, tracks its bidirectional flows in a shared [`flowtable::FlowTable`] with
//! per-flow idle timeouts (a small TCP state machine picks them), and exports every flow exactly
//! once, when it leaves the table, as CSV or JSON lines. With `--no-timeouts` the export equals
//! the reference flow tables computed by tshark (`shared/traces/*.flows.csv`) row for row; the
//! tests in `tests/tshark_equivalence.rs` check that on every capture.
//!
//! The pipeline is generic over the table backend: [`run`] takes any
//! `T: FlowTable<FlowKey, FlowValue>`; the binary picks [`DefaultTable`] (the `dashmap` feature).
//!
//! Modules, in the order data flows:
//! - [`capture`]: pcap/pcapng records with byte offsets for every error;
//! - [`decode`]: link layer to flow key (the flow definition lives there);
//! - [`pipeline`]: reader, workers, table, final flush;
//! - [`state`]: the per-flow value, TCP state machine and timeouts;
//! - [`export`]: the writer thread and the row formats;
//! - [`summary`]: the counters printed at the end.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
pub mod cli;
pub mod decode;
pub mod export;
pub mod pipeline;
pub mod state;
pub mod summary;

pub use cli::Args;
pub use pipeline::{run, run_cli, run_to_memory, Report, RunError};
pub use state::FlowValue;

/// The table backend the enabled features pick (flowtable's `DefaultFlowTable`: `compact` when that
/// feature is on, else `dashmap`).
pub type DefaultTable = flowtable::DefaultFlowTable<flowtable::FlowKey, FlowValue>;

#[cfg(not(any(feature = "dashmap", feature = "compact")))]
compile_error!("flowtable-pipeline needs a table backend: enable `dashmap` (the default) or `compact`");
