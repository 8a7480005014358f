//! # flowtable
//!
//! A concurrent, sharded flow table for packet pipelines: a map from a network flow key (a 5-tuple
//! with a zone) to a shared flow record with a per-flow idle timeout. Worker threads look a flow up
//! for every packet, attach the returned handle to the packet's metadata, and let idle flows expire.
//!
//! ## Quick start
//!
//! ```
//! use flowtable::{DefaultFlowTable, FlowHandle, FlowKeyV4, FlowTable, FlowTableBuilder, RemovalCause, Timestamp, Zone, proto};
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::{Arc, Mutex};
//! use std::time::Duration;
//!
//! let exported = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&exported);
//! let table: DefaultFlowTable<FlowKeyV4, AtomicU64> = FlowTableBuilder::<FlowKeyV4, AtomicU64>::new()
//!     .idle_timeout(Duration::from_secs(30))
//!     .max_flows(1_000_000)
//!     .listener(move |ev| sink.lock().unwrap().push((*ev.key, ev.value.load(Ordering::Relaxed), ev.cause)))
//!     .build()?;
//!
//! // Per packet: find or create the flow, count the packet, keep the handle with the packet.
//! let (key, _direction) = FlowKeyV4::new(proto::TCP, [192, 0, 2, 1].into(), 40000, [198, 51, 100, 7].into(), 443, Zone::DEFAULT);
//! let now = Timestamp::from_secs(1_700_000_000);
//! let flow = table.get_or_insert_with(key, now, || AtomicU64::new(0))?.flow;
//! flow.fetch_add(1, Ordering::Relaxed);
//! flow.touch(now);
//!
//! // Between batches: let idle flows go (any thread may do this).
//! table.expire(now + Duration::from_secs(31), 1024);
//! assert_eq!(*exported.lock().unwrap(), vec![(key, 1, RemovalCause::Expired)]);
//! assert_eq!(flow.load(Ordering::Relaxed), 1); // the handle still reads the expired flow
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Guarantees
//!
//! The contract is stated once, in [`table`]: visibility at `now`, atomic per-key
//! creation with `init` outside locks, removal by identity, touch-versus-expiry atomicity,
//! exactly-once removal notification, handles that outlive the table, expiry from any thread.
//!
//! ## Backends and features
//!
//! | feature | backend | what it costs |
//! |---|---|---|
//! | `dashmap` (default) | [`DashFlowTable`]: `DashMap<K, Weak<Flow>>` + per-thread `priority_queue` timers | dashmap and priority-queue as dependencies |
//! | `compact` | [`CompactFlowTable`]: per-shard slot tables over slab arenas, timeout heaps, lock-free lookups, one-word handles (~55 B/flow for a `FlowKeyV4` and an 8-byte value) | `libc` on Linux for its huge-page hint (already in the tree through parking_lot); `unsafe` code confined to `src/compact/{slots,arena,rc,heap,pages}.rs` |
//! | `rayon` | `par_expire` / `par_for_each` on every backend | rayon as a dependency |
//!
//! [`DefaultFlowTable`] names the backend the enabled features pick. The design, the concurrency
//! protocol with its numbered invariants, and measured results are in [`design`].
//!
// The backends' names link to their types when their feature is built, else to the table above.
#![cfg_attr(feature = "dashmap", doc = "[`DashFlowTable`]: crate::DashFlowTable")]
#![cfg_attr(not(feature = "dashmap"), doc = "[`DashFlowTable`]: #backends-and-features")]
#![cfg_attr(feature = "compact", doc = "[`CompactFlowTable`]: crate::CompactFlowTable")]
#![cfg_attr(not(feature = "compact"), doc = "[`CompactFlowTable`]: #backends-and-features")]
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(not(any(feature = "dashmap", feature = "compact")))]
compile_error!("flowtable needs a backend: enable the `dashmap` feature (the default) or the `compact` feature");

mod builder;
mod capacity;
pub mod design;
mod flow;
pub mod hash;
mod key;
mod listener;
mod stats;
#[cfg(not(flowtable_loom))]
mod sync;
/// Public only in loom builds, for `sync::loom_mutant` (the loom models' bug switch).
#[cfg(flowtable_loom)]
#[doc(hidden)]
pub mod sync;
pub mod table;
mod time;

#[cfg(feature = "dashmap")]
pub mod reference;

#[cfg(feature = "compact")]
pub mod compact;

pub use builder::{default_shards, Config, ConfigError, FlowTableBuilder, MAX_SHARDS};
pub use capacity::{CapacityPolicy, Emergency};
#[cfg(feature = "compact")]
pub use compact::{CompactFlow, CompactFlowTable};
pub use flow::{ExpiryMode, FlowClass, FlowStatus};
pub use hash::DefaultHashBuilder;
pub use key::{proto, Direction, FlowKey, FlowKeyV4, FlowKeyV6, KeyError, Zone};
pub use listener::{Listener, RemovalCause, RemovalEvent};
#[cfg(feature = "dashmap")]
pub use reference::{DashFlow, DashFlowTable};
pub use stats::Stats;
pub use table::{FlowHandle, FlowTable, GetOrInsert, TableFull};
pub use time::{MonotonicClock, Timestamp};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The table of the backend the enabled features pick: compact when its feature is on.
#[cfg(feature = "compact")]
pub type DefaultFlowTable<K, V, S = DefaultHashBuilder> = CompactFlowTable<K, V, S>;
/// The table of the backend the enabled features pick: compact when its feature is on.
#[cfg(all(feature = "dashmap", not(feature = "compact")))]
pub type DefaultFlowTable<K, V, S = DefaultHashBuilder> = DashFlowTable<K, V, S>;
