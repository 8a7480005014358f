//! One trait, [`BenchTable`], over every flowtable backend and every peer crate, so that each
//! benchmark does the same work on each.
//!
//! The list of tables is [`for_each_table`]: adding a backend is one line there.
//!
//! # Peers
//!
//! Every peer stores an `Arc<PeerFlow>` (an 8-byte value plus a last-seen word) and hands out
//! clones of it, as flowtable hands out handles. All use the crate's default hasher (ahash).
//! `peer-papaya` uses `ResizeMode::Blocking` (papaya's documented throughput choice): with the
//! default incremental resize, a table grown by inserts and then only read stays mid-migration, and
//! every lookup searches two tables.
//! A lookup past a flow's deadline is a miss, as in flowtable. What stands in for expiry:
//!
//! - `peer-dashmap`, `peer-papaya`, `peer-scc` have no expiry: `expire` is a full sweep
//!   (`retain`) that removes flows whose virtual deadline has passed, up to the budget. A sweep
//!   costs O(table) whatever the number of flows it removes.
//! - `peer-quick_cache` is a size-bounded cache with no time expiry: the same `retain` sweep; its
//!   capacity eviction only acts when a benchmark sets `max_flows`.
//! - `peer-moka` is built with `time_to_idle`, but moka's clock is the real one (`Instant`) and
//!   cannot follow the benchmarks' virtual clock, so its TTI is set to at least an hour of real
//!   time and never fires during a run (a shorter real TTI would evict flows by wall time, which
//!   the benchmark does not control); the TTI bookkeeping is still paid on every access. `expire`
//!   is a sweep over `iter()` that `invalidate`s flows past their virtual deadline, then
//!   `run_pending_tasks()`.
//!
//! Where flowtable refuses a new flow with `TableFull` at `max_flows`, the peers without a limit
//! (dashmap, papaya, scc) count their flows in a [`Limit`] (only when a limit is set: `len()` is
//! O(table) in scc); moka and quick_cache are given their capacity and evict instead.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flowtable::{
    CapacityPolicy, DefaultHashBuilder, FlowHandle, FlowKeyV4, FlowTable, FlowTableBuilder, GetOrInsert, TableFull,
    Timestamp,
};

/// The key every benchmark uses.
pub type Key = FlowKeyV4;
/// The value every benchmark stores: 8 bytes.
pub type Val = AtomicU64;

/// How to build a table for one benchmark.
#[derive(Copy, Clone, Debug)]
pub struct Setup {
    /// Room for this many flows up front (0: none, the table grows).
    pub capacity: usize,
    /// The most flows the table holds (`usize::MAX`: no limit).
    pub max_flows: usize,
    /// The idle timeout, on the virtual clock.
    pub timeout: Duration,
    /// At `max_flows`, evict (`CapacityPolicy::Evict`) instead of refusing. Flowtable backends
    /// only: the peers keep their own policy (moka and quick_cache evict, the maps refuse).
    pub evict: bool,
}

impl Setup {
    /// A growing table without limit.
    pub fn growing(timeout: Duration) -> Self {
        Setup { capacity: 0, max_flows: usize::MAX, timeout, evict: false }
    }
}

/// What every table in a benchmark can do.
pub trait BenchTable: Send + Sync + Sized + 'static {
    /// What a lookup returns: a flow handle or the peer's `Arc`.
    type Handle: Clone + Send + Sync + 'static;
    /// The name benchmarks print.
    fn name() -> &'static str;
    /// A new, empty table.
    fn build(setup: &Setup) -> Self;
    /// The live flow under `key` at `now`.
    fn get(&self, key: &Key, now: Timestamp) -> Option<Self::Handle>;
    /// One lookup per key into `out`.
    fn get_batch(&self, keys: &[Key], now: Timestamp, out: &mut Vec<Option<Self::Handle>>) {
        out.clear();
        out.extend(keys.iter().map(|k| self.get(k, now)));
    }
    /// The live flow under `key`, or a new one; `None` if the table is full. The bool: created.
    fn get_or_insert(&self, key: Key, now: Timestamp) -> Option<(Self::Handle, bool)>;
    /// `get_or_insert` of every key, one result per key into `out` (cleared first). Flowtable
    /// backends call their `get_or_insert_batch`; a peer has none, so this loop stands in (a
    /// refusal reports `max_flows: 0`: the adapter does not know the peer's limit).
    fn get_or_insert_batch(
        &self,
        keys: &[Key],
        now: Timestamp,
        out: &mut Vec<Result<GetOrInsert<Self::Handle>, TableFull>>,
    ) {
        out.clear();
        out.extend(keys.iter().map(|&k| {
            self.get_or_insert(k, now)
                .map(|(flow, created)| GetOrInsert { flow, created })
                .ok_or(TableFull { max_flows: 0 })
        }));
    }
    /// A packet at `now` on the flow.
    fn touch(&self, flow: &Self::Handle, now: Timestamp) -> bool;
    /// Counts a packet in the flow's value (what a pipeline does with the handle).
    fn count(flow: &Self::Handle);
    /// Removes the flow under `key`; whether there was one.
    fn remove(&self, key: &Key) -> bool;
    /// Expires up to `budget` flows whose deadline is at or before `now`; how many.
    fn expire(&self, now: Timestamp, budget: usize) -> usize;
    /// Flows in the table.
    fn len(&self) -> usize;
    /// Finishes deferred work (moka's pending tasks) before memory is measured.
    fn settle(&self) {}
}

/// Visits table types (see [`for_each_table`]).
pub trait Visit {
    /// Called once per table type.
    fn visit<B: BenchTable>(&mut self);
}

/// Calls `v` on every enabled flowtable backend, then, if `peers`, on every peer.
pub fn for_each_table<V: Visit>(v: &mut V, peers: bool) {
    #[cfg(feature = "dashmap")]
    v.visit::<Backend<flowtable::DashFlowTable<Key, Val>>>();
    // A new backend is one line here.
    #[cfg(feature = "compact")]
    v.visit::<Backend<flowtable::CompactFlowTable<Key, Val>>>();
    if peers {
        v.visit::<PeerDashMap>();
        v.visit::<PeerMoka>();
        v.visit::<PeerPapaya>();
        v.visit::<PeerScc>();
        v.visit::<PeerQuickCache>();
    }
}

// === impl Backend ===

/// A flowtable backend, through the `FlowTable` trait only.
pub struct Backend<T>(pub T);

impl<T> BenchTable for Backend<T>
where
    T: FlowTable<Key, Val, Hasher = DefaultHashBuilder> + 'static,
{
    type Handle = T::Handle;

    fn name() -> &'static str {
        T::NAME
    }
    fn build(s: &Setup) -> Self {
        let t = FlowTableBuilder::new()
            .capacity(s.capacity)
            .max_flows(s.max_flows)
            .capacity_policy(if s.evict { CapacityPolicy::Evict } else { CapacityPolicy::Reject })
            .idle_timeout(s.timeout)
            .build::<T>()
            .expect("benchmark table config");
        Backend(t)
    }
    #[inline]
    fn get(&self, key: &Key, now: Timestamp) -> Option<T::Handle> {
        self.0.get(key, now)
    }
    #[inline]
    fn get_batch(&self, keys: &[Key], now: Timestamp, out: &mut Vec<Option<T::Handle>>) {
        self.0.get_batch(keys, now, out);
    }
    #[inline]
    fn get_or_insert(&self, key: Key, now: Timestamp) -> Option<(T::Handle, bool)> {
        self.0.get_or_insert_with(key, now, || AtomicU64::new(0)).ok().map(|r| (r.flow, r.created))
    }
    fn get_or_insert_batch(
        &self,
        keys: &[Key],
        now: Timestamp,
        out: &mut Vec<Result<GetOrInsert<T::Handle>, TableFull>>,
    ) {
        self.0.get_or_insert_batch(keys, now, |_| AtomicU64::new(0), out);
    }
    #[inline]
    fn touch(&self, flow: &T::Handle, now: Timestamp) -> bool {
        flow.touch(now)
    }
    #[inline]
    fn count(flow: &T::Handle) {
        flow.fetch_add(1, Ordering::Relaxed);
    }
    fn remove(&self, key: &Key) -> bool {
        self.0.remove(key).is_some()
    }
    fn expire(&self, now: Timestamp, budget: usize) -> usize {
        self.0.expire(now, budget)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

// === impl peers ===

/// What every peer stores (behind an `Arc`): the value and the last-seen time in nanoseconds.
#[derive(Debug)]
pub struct PeerFlow {
    last_seen: AtomicU64,
    /// The flow's 8-byte value.
    pub value: AtomicU64,
}

impl PeerFlow {
    fn new(now: Timestamp) -> Arc<Self> {
        Arc::new(PeerFlow { last_seen: AtomicU64::new(now.as_nanos()), value: AtomicU64::new(0) })
    }
    #[inline]
    fn live(&self, now: Timestamp, timeout_ns: u64) -> bool {
        self.last_seen.load(Ordering::Relaxed).saturating_add(timeout_ns) > now.as_nanos()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The peer methods that do not depend on the map.
macro_rules! peer_common {
    () => {
        type Handle = Arc<PeerFlow>;
        #[inline]
        fn touch(&self, flow: &Arc<PeerFlow>, now: Timestamp) -> bool {
            flow.last_seen.fetch_max(now.as_nanos(), Ordering::Relaxed);
            true
        }
        #[inline]
        fn count(flow: &Arc<PeerFlow>) {
            flow.value.fetch_add(1, Ordering::Relaxed);
        }
    };
}

/// A `retain` predicate that removes up to `budget` flows past their deadline, counting them.
fn sweeper(
    now: Timestamp,
    timeout_ns: u64,
    budget: usize,
    removed: &Cell<usize>,
) -> impl Fn(&Arc<PeerFlow>) -> bool + '_ {
    move |f| {
        if removed.get() < budget && !f.live(now, timeout_ns) {
            removed.set(removed.get() + 1);
            false
        } else {
            true
        }
    }
}

/// A flow count for peers that have no limit of their own; free when there is no limit.
pub struct Limit {
    max: usize,
    live: std::sync::atomic::AtomicUsize,
}

impl Limit {
    fn new(max: usize) -> Self {
        Limit { max, live: std::sync::atomic::AtomicUsize::new(0) }
    }
    /// Room for one more flow (give it back with `release` if none was created).
    fn reserve(&self) -> bool {
        // Relaxed: a bound on a count, ordering nothing else.
        self.max == usize::MAX
            || self.live.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max).then_some(n + 1)).is_ok()
    }
    fn release(&self, k: usize) {
        if self.max != usize::MAX && k > 0 {
            self.live.fetch_sub(k, Ordering::Relaxed);
        }
    }
}

/// `DashMap<FlowKeyV4, Arc<V>>` used directly.
pub struct PeerDashMap {
    map: dashmap::DashMap<Key, Arc<PeerFlow>, DefaultHashBuilder>,
    timeout_ns: u64,
    limit: Limit,
}

impl BenchTable for PeerDashMap {
    peer_common!();
    fn name() -> &'static str {
        "peer-dashmap"
    }
    fn build(s: &Setup) -> Self {
        let map = dashmap::DashMap::with_capacity_and_hasher(s.capacity, DefaultHashBuilder::new());
        PeerDashMap { map, timeout_ns: nanos(s.timeout), limit: Limit::new(s.max_flows) }
    }
    #[inline]
    fn get(&self, key: &Key, now: Timestamp) -> Option<Arc<PeerFlow>> {
        let f = self.map.get(key).map(|r| Arc::clone(r.value()))?;
        f.live(now, self.timeout_ns).then_some(f)
    }
    fn get_or_insert(&self, key: Key, now: Timestamp) -> Option<(Arc<PeerFlow>, bool)> {
        use dashmap::mapref::entry::Entry;
        if let Some(f) = self.get(&key, now) {
            return Some((f, false));
        }
        if !self.limit.reserve() {
            return None;
        }
        match self.map.entry(key) {
            Entry::Occupied(mut o) if !o.get().live(now, self.timeout_ns) => {
                self.limit.release(1); // a replacement: the count is unchanged
                o.insert(PeerFlow::new(now));
                Some((Arc::clone(o.get()), true))
            }
            Entry::Occupied(o) => {
                self.limit.release(1);
                Some((Arc::clone(o.get()), false))
            }
            Entry::Vacant(v) => Some((Arc::clone(v.insert(PeerFlow::new(now)).value()), true)),
        }
    }
    fn remove(&self, key: &Key) -> bool {
        let gone = self.map.remove(key).is_some();
        self.limit.release(usize::from(gone));
        gone
    }
    fn expire(&self, now: Timestamp, budget: usize) -> usize {
        let removed = Cell::new(0);
        let keep = sweeper(now, self.timeout_ns, budget, &removed);
        self.map.retain(|_, f| keep(f));
        self.limit.release(removed.get());
        removed.get()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// `moka::sync::Cache` with `time_to_idle` (see the module docs for its expiry stand-in).
pub struct PeerMoka {
    cache: moka::sync::Cache<Key, Arc<PeerFlow>, DefaultHashBuilder>,
    timeout_ns: u64,
}

impl BenchTable for PeerMoka {
    peer_common!();
    fn name() -> &'static str {
        "peer-moka"
    }
    fn build(s: &Setup) -> Self {
        // Real-clock TTI of at least an hour: it must never fire during a run (see the module docs).
        let mut b = moka::sync::Cache::builder().time_to_idle(s.timeout.max(Duration::from_secs(3600)));
        if s.capacity > 0 {
            b = b.initial_capacity(s.capacity);
        }
        if s.max_flows != usize::MAX {
            b = b.max_capacity(s.max_flows as u64);
        }
        PeerMoka { cache: b.build_with_hasher(DefaultHashBuilder::new()), timeout_ns: nanos(s.timeout) }
    }
    #[inline]
    fn get(&self, key: &Key, now: Timestamp) -> Option<Arc<PeerFlow>> {
        let f = self.cache.get(key)?;
        f.live(now, self.timeout_ns).then_some(f)
    }
    fn get_or_insert(&self, key: Key, now: Timestamp) -> Option<(Arc<PeerFlow>, bool)> {
        let e = self.cache.entry(key).or_insert_with_if(|| PeerFlow::new(now), |f| !f.live(now, self.timeout_ns));
        let fresh = e.is_fresh();
        Some((e.into_value(), fresh))
    }
    fn remove(&self, key: &Key) -> bool {
        self.cache.remove(key).is_some()
    }
    fn expire(&self, now: Timestamp, budget: usize) -> usize {
        let stale: Vec<Arc<Key>> =
            self.cache.iter().filter(|(_, f)| !f.live(now, self.timeout_ns)).map(|(k, _)| k).take(budget).collect();
        for k in &stale {
            self.cache.invalidate(&**k);
        }
        self.cache.run_pending_tasks();
        stale.len()
    }
    fn len(&self) -> usize {
        self.cache.entry_count() as usize
    }
    fn settle(&self) {
        self.cache.run_pending_tasks();
    }
}

/// `papaya::HashMap` (lock-free; one `pin()` per operation).
pub struct PeerPapaya {
    map: papaya::HashMap<Key, Arc<PeerFlow>, DefaultHashBuilder>,
    timeout_ns: u64,
    limit: Limit,
}

impl BenchTable for PeerPapaya {
    peer_common!();
    fn name() -> &'static str {
        "peer-papaya"
    }
    fn build(s: &Setup) -> Self {
        let map = papaya::HashMap::builder()
            .capacity(s.capacity)
            .hasher(DefaultHashBuilder::new())
            .resize_mode(papaya::ResizeMode::Blocking)
            .build();
        PeerPapaya { map, timeout_ns: nanos(s.timeout), limit: Limit::new(s.max_flows) }
    }
    #[inline]
    fn get(&self, key: &Key, now: Timestamp) -> Option<Arc<PeerFlow>> {
        let m = self.map.pin();
        let f = m.get(key)?;
        f.live(now, self.timeout_ns).then(|| Arc::clone(f))
    }
    fn get_or_insert(&self, key: Key, now: Timestamp) -> Option<(Arc<PeerFlow>, bool)> {
        let m = self.map.pin();
        if let Some(f) = m.get(&key) {
            if f.live(now, self.timeout_ns) {
                return Some((Arc::clone(f), false));
            }
            // Past its deadline: replace it (as flowtable would after expiry).
            let new = PeerFlow::new(now);
            m.insert(key, Arc::clone(&new));
            return Some((new, true));
        }
        if !self.limit.reserve() {
            return None;
        }
        let created = Cell::new(false);
        let f = m.get_or_insert_with(key, || {
            created.set(true);
            PeerFlow::new(now)
        });
        if !created.get() {
            self.limit.release(1);
        }
        Some((Arc::clone(f), created.get()))
    }
    fn remove(&self, key: &Key) -> bool {
        let gone = self.map.pin().remove(key).is_some();
        self.limit.release(usize::from(gone));
        gone
    }
    fn expire(&self, now: Timestamp, budget: usize) -> usize {
        let removed = Cell::new(0);
        let keep = sweeper(now, self.timeout_ns, budget, &removed);
        self.map.pin().retain(|_, f| keep(f));
        self.limit.release(removed.get());
        removed.get()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// `scc::HashMap`.
pub struct PeerScc {
    map: scc::HashMap<Key, Arc<PeerFlow>, DefaultHashBuilder>,
    timeout_ns: u64,
    limit: Limit,
}

impl BenchTable for PeerScc {
    peer_common!();
    fn name() -> &'static str {
        "peer-scc"
    }
    fn build(s: &Setup) -> Self {
        let map = scc::HashMap::with_capacity_and_hasher(s.capacity, DefaultHashBuilder::new());
        PeerScc { map, timeout_ns: nanos(s.timeout), limit: Limit::new(s.max_flows) }
    }
    #[inline]
    fn get(&self, key: &Key, now: Timestamp) -> Option<Arc<PeerFlow>> {
        let f = self.map.read(key, |_, f| Arc::clone(f))?;
        f.live(now, self.timeout_ns).then_some(f)
    }
    fn get_or_insert(&self, key: Key, now: Timestamp) -> Option<(Arc<PeerFlow>, bool)> {
        use scc::hash_map::Entry;
        if let Some(f) = self.get(&key, now) {
            return Some((f, false));
        }
        if !self.limit.reserve() {
            return None;
        }
        match self.map.entry(key) {
            Entry::Occupied(mut o) if !o.get().live(now, self.timeout_ns) => {
                self.limit.release(1); // a replacement: the count is unchanged
                o.insert(PeerFlow::new(now));
                Some((Arc::clone(o.get()), true))
            }
            Entry::Occupied(o) => {
                self.limit.release(1);
                Some((Arc::clone(o.get()), false))
            }
            Entry::Vacant(v) => Some((Arc::clone(v.insert_entry(PeerFlow::new(now)).get()), true)),
        }
    }
    fn remove(&self, key: &Key) -> bool {
        let gone = self.map.remove(key).is_some();
        self.limit.release(usize::from(gone));
        gone
    }
    fn expire(&self, now: Timestamp, budget: usize) -> usize {
        let removed = Cell::new(0);
        let keep = sweeper(now, self.timeout_ns, budget, &removed);
        self.map.retain(|_, f| keep(f));
        self.limit.release(removed.get());
        removed.get()
    }
    fn len(&self) -> usize {
        self.map.len()
    }
}

type QcCache = quick_cache::sync::Cache<
    Key,
    Arc<PeerFlow>,
    quick_cache::UnitWeighter,
    DefaultHashBuilder,
    quick_cache::sync::DefaultLifecycle<Key, Arc<PeerFlow>>,
>;

/// `quick_cache::sync::Cache` (size-bounded; see the module docs for its expiry stand-in).
pub struct PeerQuickCache {
    cache: QcCache,
    timeout_ns: u64,
}

impl BenchTable for PeerQuickCache {
    peer_common!();
    fn name() -> &'static str {
        "peer-quick_cache"
    }
    fn build(s: &Setup) -> Self {
        // Without a limit the weight capacity is effectively unbounded; quick_cache allocates lazily.
        let weight = if s.max_flows == usize::MAX { u64::MAX / 4 } else { s.max_flows as u64 };
        let items = if s.capacity > 0 { s.capacity } else { s.max_flows.min(1 << 16) };
        let cache =
            QcCache::with(items, weight, quick_cache::UnitWeighter, DefaultHashBuilder::new(), Default::default());
        PeerQuickCache { cache, timeout_ns: nanos(s.timeout) }
    }
    #[inline]
    fn get(&self, key: &Key, now: Timestamp) -> Option<Arc<PeerFlow>> {
        let f = self.cache.get(key)?;
        f.live(now, self.timeout_ns).then_some(f)
    }
    fn get_or_insert(&self, key: Key, now: Timestamp) -> Option<(Arc<PeerFlow>, bool)> {
        if let Some(f) = self.cache.get(&key) {
            if f.live(now, self.timeout_ns) {
                return Some((f, false));
            }
            let new = PeerFlow::new(now);
            self.cache.insert(key, Arc::clone(&new));
            return Some((new, true));
        }
        let created = Cell::new(false);
        let f = self
            .cache
            .get_or_insert_with(&key, || {
                created.set(true);
                Ok::<_, std::convert::Infallible>(PeerFlow::new(now))
            })
            .unwrap_or_else(|e| match e {});
        Some((f, created.get()))
    }
    fn remove(&self, key: &Key) -> bool {
        self.cache.remove(key).is_some()
    }
    fn expire(&self, now: Timestamp, budget: usize) -> usize {
        let removed = Cell::new(0);
        let keep = sweeper(now, self.timeout_ns, budget, &removed);
        self.cache.retain(|_, f| keep(f));
        removed.get()
    }
    fn len(&self) -> usize {
        self.cache.len()
    }
}
