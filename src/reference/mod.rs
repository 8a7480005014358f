//! The reference backend: `DashMap<K, Weak<Flow>>` plus per-thread timeout queues holding the
//! `Arc`s that keep idle flows alive (the design of `design-notes/flow-table.md`, with its faults
//! fixed). Safe code only.
//!
//! - `map`: the key map of weak references;
//! - `timers`: the per-thread `priority_queue` timer queues (strong references);
//! - `record`: the flow record and its state word;
//! - `pending`: creations in flight (atomic `get_or_insert_with` with `init` outside locks);
//! - `handle`: the user's handle.
//!
//! Locks: a map shard lock (DashMap's), a timer queue lock, a pending stripe lock. None is held
//! while another is taken, except pending stripe → map shard read (in `get_or_insert_with`); no
//! strong reference to a record is dropped while any lock is held (R5), so a record's `Drop` may
//! take a map shard lock.
#![forbid(unsafe_code)]

mod evict;
mod handle;
#[cfg(not(flowtable_loom))]
mod map;
#[cfg(flowtable_loom)]
#[path = "loom_map.rs"]
mod map;
mod pending;
mod record;
mod timers;

use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use evict::EvictionQueues;
pub use handle::DashFlow;
use map::WeakMap;
use pending::{Claim, Pending};
use record::{Due, Exit, Record};
use timers::{Popped, Timers};

use crate::capacity::Occupancy;
use crate::listener::{notify_each, Listener};
use crate::stats::{Counters, Event};
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::{Arc, Weak};
use crate::{
    CapacityPolicy, Config, ConfigError, DefaultHashBuilder, ExpiryMode, FlowClass, FlowTable, GetOrInsert,
    RemovalCause, Stats, TableFull, Timestamp,
};

/// The state every handle's record can reach (through a `Weak`).
pub(crate) struct Shared<K, V, S> {
    map: WeakMap<K, Record<K, V, S>, S>,
    timers: Timers<Record<K, V, S>>,
    pending: Pending<K>,
    /// Counters, occupancy and listener: what a flow's exit needs besides the map. Every record
    /// holds these too, so that a `WhileHeld` record leaving in its `Drop` completes its exit even
    /// while the table is being dropped (finding F1).
    hooks: Arc<Hooks<K, V>>,
    /// Eviction order, with `CapacityPolicy::Evict` only.
    evict: Option<EvictionQueues<Record<K, V, S>>>,
    timeout: Duration,
    mode: ExpiryMode,
    hasher: S,
    /// How a record that leaves in its `Drop` finishes its exit (a function pointer, because `Drop`
    /// cannot carry the `Hash + Eq` bounds the map needs).
    pub(super) drop_exit: DropExit<K, V, S>,
    /// What dropping the table does (for the same reason).
    drop_table: fn(&Shared<K, V, S>),
}

/// What every exit needs, whether or not the table is still there.
pub(crate) struct Hooks<K, V> {
    counters: Counters,
    /// Flows in the table (reserved before a flow is published, released when it leaves), the
    /// limit, the policy at it, and emergency mode.
    occupancy: Occupancy,
    listener: Option<Listener<K, V>>,
}

impl<K, V> Hooks<K, V> {
    /// The part of an exit that does not need the map: room, count, listener (in that order, so
    /// the listener sees a consistent table).
    fn complete_exit(&self, rec: &Record<K, V, impl Sized>, cause: RemovalCause) {
        self.occupancy.release();
        self.counters.add(Event::Left(cause));
        notify_each(self.listener.as_ref(), [Exit(rec, cause)]);
    }
}

/// The reference backend (feature `dashmap`).
///
/// See [`FlowTable`] for the contract. Memory per flow is that of a DashMap entry (key + 8-byte
/// `Weak`), the `Arc`'d record, and a `priority_queue` entry (an index map plus a heap); see
/// `design/benchmarks.md` for measured figures.
pub struct DashFlowTable<K, V, S = DefaultHashBuilder> {
    shared: Arc<Shared<K, V, S>>,
}

type Rec<K, V, S> = Record<K, V, S>;
type DropExit<K, V, S> = fn(&Shared<K, V, S>, &Record<K, V, S>);

impl<K, V, S> Shared<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// The live, visible flow under `key`, reaping a dead weak entry if it finds one. Never drops a
    /// strong reference under a lock (the map returns a `Weak` copy).
    fn lookup(&self, key: &K, now: Timestamp) -> Option<Arc<Rec<K, V, S>>> {
        let weak = self.map.get(key)?;
        match weak.upgrade() {
            Some(rec) if rec.is_visible(now) => Some(rec),
            Some(_) => None,
            None => {
                self.map.remove_if_dead(key);
                None
            }
        }
    }

    /// Takes room for a new flow; at the maximum, evicts under `CapacityPolicy::Evict`.
    fn reserve(&self, now: Timestamp) -> bool {
        // Set once a victim was won by another exit (remove, expiry): that exit releases its room a
        // moment later, so an empty eviction round then means "wait", not "full" (loom finding F2).
        let mut exit_in_flight = false;
        for _ in 0..64 {
            if self.hooks.occupancy.try_reserve() {
                return true;
            }
            if self.hooks.occupancy.policy() == CapacityPolicy::Reject {
                return false;
            }
            match self.evict_one(now) {
                // The victim's room passed straight to this caller: no other thread can take it.
                Room::Transferred => return true,
                Room::Freed => exit_in_flight = true,
                Room::None if exit_in_flight => {}
                // No victim: the last one may have just left through another exit, whose room is
                // already back (`finish_exit` releases it before detaching): one more try.
                Room::None => return self.hooks.occupancy.try_reserve(),
            }
            crate::sync::thread::yield_now();
        }
        false
    }

    fn unreserve(&self) {
        self.hooks.occupancy.release();
    }

    /// Makes room for one flow: a flow already past its deadline leaves as expired, else the least
    /// recently seen flow of the lowest eviction class leaves as evicted, its room going to the caller.
    fn evict_one(&self, now: Timestamp) -> Room {
        let t = &self.timers;
        let (n, home) = (t.len(), t.home());
        if self.expire_queues((0..n).map(|i| ((home + i) & (n - 1), false)), now, &Budget::new(1)) == 1 {
            self.hooks.counters.add(Event::Reclaimed);
            return Room::Freed;
        }
        let Some(queues) = &self.evict else { return Room::None };
        let mut discard = Vec::new();
        let mut room = Room::None;
        if let Some((rec, class)) = queues.pop_victim(&mut discard) {
            if rec.try_leave(RemovalCause::Evicted) {
                let timer = self.detach(&rec, true, false);
                self.hooks.counters.add(Event::Left(RemovalCause::Evicted));
                self.hooks.counters.add(Event::Evicted(class));
                self.notify(&rec, RemovalCause::Evicted);
                discard.extend(timer);
                room = Room::Transferred;
            } else {
                room = Room::Freed; // another exit (remove, expiry) won the victim and frees its room
            }
            discard.push(rec);
        } else if discard.iter().any(|r| r.status() != crate::FlowStatus::Active) {
            // No victim, but entries of flows that already left were met: their exits are in
            // flight and give their room back (loom model `evict_vs_remove`).
            room = Room::Freed;
        }
        drop(discard); // outside every lock (R5)
        room
    }

    fn new_record(this: &Arc<Self>, key: K, value: V, now: Timestamp) -> Arc<Rec<K, V, S>> {
        // (`this`, not `self: &Arc<Self>`: the loom build's `Arc` cannot be a method receiver.)
        let queue = this.timers.home();
        let timeout = this.hooks.occupancy.timeout_for_new(this.timeout);
        let hooks = Arc::clone(&this.hooks);
        Arc::new(Record::new(key, value, now, timeout, this.mode, queue, Arc::downgrade(this), hooks))
    }

    /// Files a new record's timer (and eviction entry) and counts it.
    fn publish(&self, rec: &Arc<Rec<K, V, S>>) {
        self.timers.push(rec.queue, Arc::clone(rec), rec.deadline_ns());
        if let Some(q) = &self.evict {
            q.file(rec.queue % q.len(), rec.class(), rec);
        }
        self.hooks.counters.add(Event::Created);
    }

    /// Moves a record to its new eviction class's queue.
    fn reclassed(&self, rec: &Arc<Rec<K, V, S>>, from: FlowClass) {
        if let Some(q) = &self.evict {
            drop(q.reclass(rec.queue % q.len(), from, rec));
        }
    }

    /// Finishes the exit of a record that this caller moved out of `Active` (it won `try_leave` or
    /// `try_expire`): map entry (by identity), timer, count. The caller notifies the listener and
    /// drops the returned timer `Arc` outside every lock.
    /// `in_map`: the map entry may still refer to `rec`; `timer_popped`: the expiry pass already
    /// took its timer out of the queue.
    fn finish_exit(
        &self,
        rec: &Arc<Rec<K, V, S>>,
        cause: RemovalCause,
        in_map: bool,
        timer_popped: bool,
    ) -> Option<Arc<Rec<K, V, S>>> {
        // The room goes back before the record is detached: a creator that finds no victim left in
        // the eviction queues then finds the room instead (loom model `evict_vs_remove`).
        self.unreserve();
        let timer = self.detach(rec, in_map, timer_popped);
        self.hooks.counters.add(Event::Left(cause));
        timer
    }

    /// Takes a record that left out of the map (by identity), its timer queue and its eviction
    /// queue; returns the timer's `Arc` for the caller to drop outside locks.
    fn detach(&self, rec: &Arc<Rec<K, V, S>>, in_map: bool, timer_popped: bool) -> Option<Arc<Rec<K, V, S>>> {
        if in_map {
            self.map.remove_if_same(&rec.key, Arc::as_ptr(rec));
        }
        let timer = if timer_popped { None } else { self.timers.remove(rec.queue, rec) };
        if let Some(q) = &self.evict {
            drop(q.unfile(rec.queue % q.len(), rec));
        }
        timer
    }

    fn notify(&self, rec: &Rec<K, V, S>, cause: RemovalCause) {
        notify_each(self.hooks.listener.as_ref(), [Exit(rec, cause)]);
    }

    /// The map part of a `WhileHeld` record's exit in its `Drop` (see [`Shared::drop_exit`]); the
    /// record completes the rest through its own [`Hooks`].
    fn drop_exit_impl(&self, rec: &Rec<K, V, S>) {
        self.map.remove_if_same(&rec.key, rec as *const _);
    }

    /// One expiry pass over the given timer queues (`(index, wait for its lock)`), drawing on a
    /// budget that parallel passes may share.
    fn expire_queues(&self, queues: impl Iterator<Item = (usize, bool)>, now: Timestamp, budget: &Budget) -> usize {
        let now_ns = now.as_nanos();
        let mut expired: Vec<Arc<Rec<K, V, S>>> = Vec::new();
        let mut released: Vec<Arc<Rec<K, V, S>>> = Vec::new();
        let mut popped = Popped { due: Vec::new() };
        'queues: for (q, wait) in queues {
            let Some(mut pq) = self.timers.lock(q, wait) else { continue };
            // Each popped timer is handled at most once per pass: a re-filed one is due later.
            loop {
                let want = budget.claim(EXPIRE_BATCH);
                if want == 0 {
                    break 'queues;
                }
                popped.due.clear();
                Timers::pop_due(&mut pq, now_ns, want, &mut popped);
                let mut used = 0;
                let empty = popped.due.is_empty();
                for rec in popped.due.drain(..) {
                    match rec.try_expire(now) {
                        Due::Moved(deadline) => Timers::refile(&mut pq, rec, deadline),
                        Due::Expired => {
                            expired.push(rec);
                            used += 1;
                        }
                        Due::Stale | Due::Release => released.push(rec),
                    }
                }
                budget.give_back(want - used);
                if empty {
                    break;
                }
            }
        }
        // Outside every queue lock: map entries, counters, listener, then the Arcs go (R5).
        for rec in &expired {
            let timer = self.finish_exit(rec, RemovalCause::Expired, true, true);
            debug_assert!(timer.is_none());
        }
        let mut n = expired.len();
        notify_each(self.hooks.listener.as_ref(), expired.iter().map(|r| Exit(r, RemovalCause::Expired)));
        drop(expired);
        for rec in released {
            // A released WhileHeld record must hold no strong reference of the table's: its
            // eviction entry goes too (it stays evictable only while some handle keeps it here).
            if let Some(q) = &self.evict {
                if rec.status() == crate::FlowStatus::Active {
                    drop(q.unfile(rec.queue % q.len(), &rec));
                }
            }
            // A WhileHeld record whose last handle is gone leaves here, in its `Drop`; `try_unwrap`
            // succeeds exactly when this was the last strong reference, so the count is exact.
            if let Ok(rec) = Arc::try_unwrap(rec) {
                n += usize::from(rec.status() == crate::FlowStatus::Active);
            }
        }
        n
    }

    fn remove_flow(&self, key: &K) -> Option<Arc<Rec<K, V, S>>> {
        let weak = self.map.get(key)?;
        let Some(rec) = weak.upgrade() else {
            self.map.remove_if_dead(key);
            return None;
        };
        // `remove` takes no time: it removes the active flow even if its deadline has passed and
        // no expiry pass has reached it yet.
        if !rec.try_leave(RemovalCause::Removed) {
            return None;
        }
        let timer = self.finish_exit(&rec, RemovalCause::Removed, true, false);
        self.notify(&rec, RemovalCause::Removed);
        drop(timer);
        Some(rec)
    }

    /// Removes every flow in the map (cause `Removed`).
    fn clear_all(&self) -> usize {
        let mut n = 0;
        for weak in self.map.snapshot() {
            let Some(rec) = weak.upgrade() else { continue };
            if rec.try_leave(RemovalCause::Removed) {
                let timer = self.finish_exit(&rec, RemovalCause::Removed, true, false);
                self.notify(&rec, RemovalCause::Removed);
                drop(timer);
                n += 1;
            }
        }
        n
    }

    /// Dropping the table: every flow leaves (cause `Removed`), every timer is released.
    fn drop_table_impl(&self) {
        self.clear_all();
        drop(self.timers.drain_all());
    }
}

impl<K, V, S> DashFlowTable<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    /// Timer entries filed over all queues (stale ones included), for tests and diagnostics.
    pub fn timer_entries(&self) -> usize {
        self.shared.timers.total()
    }

    /// Map entries, dead weak references included, for tests and diagnostics.
    pub fn map_entries(&self) -> usize {
        self.shared.map.entries()
    }

    /// Publishes `rec` under `key` unless a visible flow is there. Returns the flow that is there
    /// after the call and the flow it displaced (an invisible or dead one), if any.
    fn publish_new(&self, rec: Arc<Rec<K, V, S>>, now: Timestamp, replace: bool) -> Published<K, V, S> {
        let sh = &self.shared;
        let weak = Arc::downgrade(&rec);
        let outcome = sh.map.compute(rec.key.clone(), |slot| {
            let old = slot.as_ref().and_then(Weak::upgrade);
            match old {
                Some(o) if !replace && o.is_visible(now) => Published::Existing(o),
                other => {
                    *slot = Some(weak);
                    Published::Placed(other)
                }
            }
        });
        match outcome {
            Published::Existing(o) => Published::Existing(o),
            Published::Placed(displaced) => {
                sh.publish(&rec);
                Published::Placed(displaced)
            }
        }
    }

    /// The exit of a flow displaced from the map by a new one (the map entry is already gone).
    fn displace(&self, old: &Arc<Rec<K, V, S>>, now: Timestamp, cause: RemovalCause) -> bool {
        let sh = &self.shared;
        // A displaced flow that was past its deadline leaves as expired, whatever displaced it.
        let cause = if old.is_visible(now) || old.status() != crate::FlowStatus::Active {
            cause
        } else {
            RemovalCause::Expired
        };
        if !old.try_leave(cause) {
            return false;
        }
        let timer = sh.finish_exit(old, cause, false, false);
        sh.notify(old, cause);
        drop(timer);
        cause == RemovalCause::Replaced
    }
}

/// What an eviction attempt did about room for a new flow.
enum Room {
    /// A victim left and its room is the caller's (the count was not released).
    Transferred,
    /// Room was or is being freed; the caller must still take it.
    Freed,
    /// Nothing could go.
    None,
}

/// How many timers an expiry pass pops at a time before drawing on its budget again.
const EXPIRE_BATCH: usize = 64;

/// An expiry budget that several passes (rayon tasks) can draw on.
struct Budget(AtomicUsize);

impl Budget {
    fn new(n: usize) -> Self {
        Budget(AtomicUsize::new(n))
    }
    /// Takes up to `max` from the budget; returns what it got.
    fn claim(&self, max: usize) -> usize {
        // Relaxed: the budget bounds work; it publishes nothing.
        match self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| Some(b - b.min(max))) {
            Ok(b) | Err(b) => b.min(max),
        }
    }
    fn give_back(&self, n: usize) {
        if n > 0 {
            self.0.fetch_add(n, Ordering::Relaxed);
        }
    }
}

enum Published<K, V, S> {
    Existing(Arc<Rec<K, V, S>>),
    Placed(Option<Arc<Rec<K, V, S>>>),
}

/// Releases a creation claim when dropped, so that an `init` panic leaves no registration, no
/// reserved count and no waiter blocked.
struct ClaimGuard<'a, K: Eq, V, S> {
    shared: &'a Shared<K, V, S>,
    hash: u64,
    waiter: Arc<pending::Waiter>,
    reserved: bool,
}

impl<K: Eq, V, S> Drop for ClaimGuard<'_, K, V, S> {
    fn drop(&mut self) {
        if self.reserved {
            self.shared.hooks.occupancy.release();
        }
        self.shared.pending.release(self.hash, &self.waiter);
    }
}

impl<K, V, S> FlowTable<K, V> for DashFlowTable<K, V, S>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Send + Sync + 'static,
    S: BuildHasher + Clone + Send + Sync + 'static,
{
    type Handle = DashFlow<K, V, S>;
    type Hasher = S;
    const NAME: &'static str = "dashmap";
    const TICK: Duration = Duration::from_micros(1);
    const MAX_TIMEOUT: Duration = Duration::from_nanos(u64::MAX);

    fn with_config(config: Config<K, V, S>) -> Result<Self, ConfigError> {
        let shards = config.shards;
        let queues = std::thread::available_parallelism().map_or(4, |n| n.get()) * 2;
        let shared = Shared {
            map: WeakMap::new(config.capacity, shards, config.hasher.clone()),
            timers: Timers::new(queues),
            pending: Pending::new(shards),
            hooks: Arc::new(Hooks {
                counters: Counters::new(),
                occupancy: Occupancy::new(config.max_flows, config.capacity_policy, config.emergency),
                listener: config.listener,
            }),
            evict: (config.capacity_policy == CapacityPolicy::Evict).then(|| EvictionQueues::new(queues)),
            timeout: config.idle_timeout,
            mode: config.expiry_mode,
            hasher: config.hasher,
            drop_exit: Shared::drop_exit_impl,
            drop_table: Shared::drop_table_impl,
        };
        Ok(DashFlowTable { shared: Arc::new(shared) })
    }

    fn hash_key(&self, key: &K) -> u64 {
        self.shared.hasher.hash_one(key)
    }

    fn get_hashed(&self, key: &K, hash: u64, now: Timestamp) -> Option<Self::Handle> {
        debug_assert_eq!(hash, self.hash_key(key), "get_hashed: hash is not the table's hash of the key");
        self.shared.lookup(key, now).map(DashFlow)
    }

    fn get_or_insert_with_hashed<F: FnOnce() -> V>(
        &self,
        key: K,
        hash: u64,
        now: Timestamp,
        init: F,
    ) -> Result<GetOrInsert<Self::Handle>, TableFull> {
        debug_assert_eq!(
            hash,
            self.hash_key(&key),
            "get_or_insert_with_hashed: hash is not the table's hash of the key"
        );
        let sh = &self.shared;
        let waiter = loop {
            if let Some(rec) = sh.lookup(&key, now) {
                return Ok(GetOrInsert { flow: DashFlow(rec), created: false });
            }
            let claim = {
                let mut stripe = sh.pending.lock(hash);
                // Re-check under the stripe lock: a creator may have published meanwhile. A found
                // flow's strong reference leaves this block, so it is dropped after the lock (R5).
                // (Mutant `init_no_recheck` skips it.)
                let found = if crate::sync::mutant("init_no_recheck") { None } else { sh.lookup(&key, now) };
                match found {
                    Some(rec) => Err(rec),
                    None => Ok(Pending::claim(&mut stripe, &key, || key.clone())),
                }
            };
            match claim {
                Err(rec) => return Ok(GetOrInsert { flow: DashFlow(rec), created: false }),
                Ok(Claim::Wait(w)) => w.wait(),
                Ok(Claim::Create(w)) => break w,
            }
        };
        let mut guard = ClaimGuard { shared: sh, hash, waiter, reserved: false };
        if !sh.reserve(now) {
            sh.hooks.counters.add(Event::RejectedFull);
            return Err(TableFull { max_flows: sh.hooks.occupancy.max() });
        }
        guard.reserved = true;
        let value = init(); // no lock held; a panic here runs the guard
        let rec = Shared::new_record(sh, key, value, now);
        match self.publish_new(Arc::clone(&rec), now, false) {
            Published::Existing(other) => {
                // `insert` put a flow here while `init` ran: that flow stands, ours is discarded
                // (it never entered the table, so it must not leave it in its `Drop`).
                drop(guard);
                rec.try_leave(RemovalCause::Removed);
                drop(rec);
                Ok(GetOrInsert { flow: DashFlow(other), created: false })
            }
            Published::Placed(displaced) => {
                guard.reserved = false; // the count now belongs to the published flow
                drop(guard);
                if let Some(old) = displaced {
                    self.displace(&old, now, RemovalCause::Expired);
                }
                Ok(GetOrInsert { flow: DashFlow(rec), created: true })
            }
        }
    }

    fn insert(&self, key: K, value: V, now: Timestamp) -> Result<(Self::Handle, Option<Self::Handle>), TableFull> {
        let sh = &self.shared;
        if sh.lookup(&key, now).is_some() {
            // A replacement does not grow the table: allowed at the maximum, never evicts.
            sh.hooks.occupancy.force_reserve();
        } else if !sh.reserve(now) {
            sh.hooks.counters.add(Event::RejectedFull);
            return Err(TableFull { max_flows: sh.hooks.occupancy.max() });
        }
        let rec = Shared::new_record(sh, key, value, now);
        let Published::Placed(displaced) = self.publish_new(Arc::clone(&rec), now, true) else {
            unreachable!("insert always places its flow")
        };
        let replaced = displaced.filter(|old| self.displace(old, now, RemovalCause::Replaced)).map(DashFlow);
        Ok((DashFlow(rec), replaced))
    }

    fn remove(&self, key: &K) -> Option<Self::Handle> {
        self.shared.remove_flow(key).map(DashFlow)
    }

    fn expire(&self, now: Timestamp, budget: usize) -> usize {
        let t = &self.shared.timers;
        let (n, home) = (t.len(), t.home());
        self.shared.expire_queues((0..n).map(|i| ((home + i) & (n - 1), i == 0)), now, &Budget::new(budget))
    }

    fn clear(&self) -> usize {
        self.shared.clear_all()
    }

    fn len(&self) -> usize {
        self.shared.hooks.occupancy.live()
    }

    fn stats(&self) -> Stats {
        let sh = &self.shared;
        let mut s = sh.hooks.counters.snapshot(self.len());
        s.emergency = sh.hooks.occupancy.in_emergency();
        // Each record is one `Arc` allocation: two counts and the record.
        let records = s.live * (std::mem::size_of::<Rec<K, V, S>>() + 16);
        s.memory_bytes = sh.map.bytes() + sh.timers.bytes() + sh.evict.as_ref().map_or(0, |e| e.bytes()) + records;
        s
    }

    fn for_each<F: FnMut(&Self::Handle)>(&self, now: Timestamp, mut f: F) {
        for weak in self.shared.map.snapshot() {
            if let Some(rec) = weak.upgrade().filter(|r| r.is_visible(now)) {
                f(&DashFlow(rec));
            }
        }
    }

    #[cfg(feature = "rayon")]
    fn par_expire(&self, now: Timestamp, budget: usize) -> usize {
        use rayon::prelude::*;
        let shared_budget = Budget::new(budget);
        (0..self.shared.timers.len())
            .into_par_iter()
            .map(|q| self.shared.expire_queues(std::iter::once((q, true)), now, &shared_budget))
            .sum()
    }

    #[cfg(feature = "rayon")]
    fn par_for_each<F: Fn(&Self::Handle) + Send + Sync>(&self, now: Timestamp, f: F) {
        use rayon::prelude::*;
        self.shared.map.snapshot().into_par_iter().for_each(|weak| {
            if let Some(rec) = weak.upgrade().filter(|r| r.is_visible(now)) {
                f(&DashFlow(rec));
            }
        });
    }
}

impl<K, V, S> std::fmt::Debug for DashFlowTable<K, V, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DashFlowTable")
            .field("occupancy", &self.shared.hooks.occupancy)
            .field("timeout", &self.shared.timeout)
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

impl<K, V, S> Drop for DashFlowTable<K, V, S> {
    fn drop(&mut self) {
        (self.shared.drop_table)(&self.shared);
    }
}
