//! Loom models of flowtable's public API, written once, generic over the backend.
//!
//! Built only with `RUSTFLAGS="--cfg flowtable_loom"` (see `scripts/loom.sh`); otherwise this crate
//! and its tests compile to nothing. Each model in `models` states the invariant it checks (R1..R6
//! of `design/concurrency.md`); `tests/loom_<backend>.rs` instantiates every model for one backend,
//! and `scripts/loom.sh` runs them all, then each with the injected bug that must make it fail.
#![cfg(flowtable_loom)]

pub mod models;

use std::time::{Duration, Instant};

use flowtable::{DefaultHashBuilder, ExpiryMode, FlowTable, FlowTableBuilder, RemovalCause, Timestamp};
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::{Arc, Mutex};

/// Preemption bound when `LOOM_MAX_PREEMPTIONS` is not set (the argument for 2 is in
/// `design/concurrency.md`, "Loom models").
pub const DEFAULT_PREEMPTIONS: usize = 2;

/// Branches per execution when `LOOM_MAX_BRANCHES` is not set.
pub const DEFAULT_MAX_BRANCHES: usize = 100_000;

/// Runs `f` as a loom model named `name`. If `FLOWTABLE_LOOM_MUTANT` names a mutant (see
/// `flowtable::sync::loom_mutant::MUTANTS`), that bug is injected into the library first.
pub fn run_model<F>(name: &str, f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mutant = flowtable::sync::loom_mutant::set_from_env();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(DEFAULT_PREEMPTIONS);
    }
    if std::env::var_os("LOOM_MAX_BRANCHES").is_none() {
        // Loom's default (1,000 branches per execution) is too few for building a table whose
        // constructor initialises many atomics (the compact backend's slot tables); a spin loop
        // that never makes progress still fails, only later.
        builder.max_branches = DEFAULT_MAX_BRANCHES;
    }
    eprintln!("model {name}: preemption bound {:?}, mutant {:?}", builder.preemption_bound, mutant);
    let start = Instant::now();
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = std::sync::Arc::clone(&runs);
    builder.check(move || {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f()
    });
    let runs = runs.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("model {name}: {runs} executions explored in {:.2?}", start.elapsed());
}

/// A backend's table over the models' key and value types.
pub trait Table: FlowTable<u64, Val, Hasher = DefaultHashBuilder> + Send + Sync + 'static {}
impl<T> Table for T where T: FlowTable<u64, Val, Hasher = DefaultHashBuilder> + Send + Sync + 'static {}

/// The models' flow value: an id, and a drop counter shared with the model's [`Ctx`].
pub struct Val {
    pub id: u32,
    drops: Arc<AtomicUsize>,
}

impl Drop for Val {
    fn drop(&mut self) {
        // Release/Acquire: the model reads the count after joining, or on the dropping thread.
        self.drops.fetch_add(1, Ordering::Release);
    }
}

/// One removal notification: flow id and cause.
pub type Event = (u32, RemovalCause);

/// One model execution's observers: values made, values dropped, listener calls.
#[derive(Clone)]
pub struct Ctx {
    made: Arc<AtomicUsize>,
    drops: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Event>>>,
}

/// The models' idle timeout.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Creation time of the models' first flow.
pub const T0: Timestamp = Timestamp::from_secs(100);
/// Before the first flow's deadline (`T0 + TIMEOUT`).
pub const T_MID: Timestamp = Timestamp::from_secs(105);
/// After the first flow's deadline, before `T_MID + TIMEOUT`.
pub const T_LATE: Timestamp = Timestamp::from_secs(112);

impl Ctx {
    pub fn new() -> Self {
        Ctx {
            made: Arc::new(AtomicUsize::new(0)),
            drops: Arc::new(AtomicUsize::new(0)),
            log: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// A new flow value (counts as one `init` call).
    pub fn val(&self, id: u32) -> Val {
        self.made.fetch_add(1, Ordering::Relaxed);
        Val { id, drops: Arc::clone(&self.drops) }
    }

    /// Values made so far (`init` calls).
    pub fn made(&self) -> usize {
        self.made.load(Ordering::Relaxed)
    }

    /// Values dropped so far.
    pub fn drops(&self) -> usize {
        self.drops.load(Ordering::Acquire)
    }

    /// Listener calls so far, in order.
    pub fn events(&self) -> Vec<Event> {
        self.log.lock().unwrap().clone()
    }

    /// A builder for a small table (one shard, the models' timeout, `mode`) whose listener logs to
    /// this context.
    pub fn builder(&self, mode: ExpiryMode) -> FlowTableBuilder<u64, Val> {
        let log = Arc::clone(&self.log);
        FlowTableBuilder::<u64, Val>::new()
            .shards(1)
            .idle_timeout(TIMEOUT)
            .expiry_mode(mode)
            .listener(move |ev| log.lock().unwrap().push((ev.value.id, ev.cause)))
    }

    /// The table of [`Ctx::builder`].
    pub fn table<T: Table>(&self, mode: ExpiryMode) -> T {
        self.builder(mode).build::<T>().expect("valid config")
    }

    /// Drops the table and checks the end state every model shares: every value made was dropped
    /// exactly once (no leak, no double drop) and no flow was notified twice (R3).
    pub fn finish<T: Table>(&self, table: T) {
        drop(table);
        let events = self.events();
        for (i, (id, _)) in events.iter().enumerate() {
            assert!(!events[..i].iter().any(|(other, _)| other == id), "flow {id} notified twice: {events:?}");
        }
        assert_eq!(self.drops(), self.made(), "values dropped != values made (events {events:?})");
    }
}

impl Default for Ctx {
    fn default() -> Self {
        Self::new()
    }
}
