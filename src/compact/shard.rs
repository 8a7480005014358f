//! One shard of the compact backend: its slot table, record arena and timers, and the operations
//! on them. Readers take no lock; writers serialise on the shard mutex. No user callback (listener,
//! value `Drop`) runs under the mutex: references that may be the last one are dropped after it
//! is released, and exits are notified after it is released (C11).
//!
//! The numbered invariants C1..C11 are stated in `design/concurrency.md` (compact section).
#![forbid(unsafe_code)]

use super::arena::{Arena, NONE};
use super::heap::{From, Timers, UNFILED};
use super::id::{self, refw, slot, timew};
use super::rc::Due;
use super::rc::{finish_dead, Creation, DeadRecord, Record, RecordRef};
use super::readers::{ReadGuard, Readers};
use super::slots::{SlotArray, Slots, SlotsW};
use crate::capacity::Occupancy;
use crate::listener::{notify_each, AsEvent, Listener, RemovalEvent};
use crate::stats::{Counters, Event};
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Arc, CachePadded, Condvar, Mutex, MutexGuard};
use crate::{FlowClass, FlowStatus, RemovalCause, Timestamp};
use std::time::Duration;

/// The distinct timeouts of a table (ms; `NEVER` for never): a record stores an 8-bit index into
/// it instead of its timeout. Append-only; entry 0 is the table's idle timeout. When all 256
/// entries are taken, a new timeout maps to the smallest entry not shorter than it (a flow may then
/// expire late, never early), or the longest entry.
pub(crate) struct Palette {
    vals: Box<[AtomicU64]>,
    len: AtomicUsize,
    lock: Mutex<()>,
}

impl Palette {
    const CAP: usize = 256;

    pub(crate) fn new(default_ms: u64) -> Self {
        let vals: Box<[AtomicU64]> = (0..Self::CAP).map(|_| AtomicU64::new(0)).collect();
        vals[0].store(default_ms, Ordering::Relaxed);
        Palette { vals, len: AtomicUsize::new(1), lock: Mutex::new(()) }
    }

    /// The timeout (ms) of index `i`.
    #[inline]
    pub(crate) fn get(&self, i: u8) -> u64 {
        // Acquire: pairs with the Release store that added the entry (before any record used it).
        self.vals[i as usize].load(Ordering::Acquire)
    }

    fn find(&self, ms: u64) -> Option<u8> {
        let n = self.len.load(Ordering::Acquire);
        (0..n).find(|&i| self.vals[i].load(Ordering::Acquire) == ms).map(|i| i as u8)
    }

    /// The index of timeout `ms`, adding it if new (takes the palette's lock only then).
    pub(crate) fn index(&self, ms: u64) -> u8 {
        if let Some(i) = self.find(ms) {
            return i;
        }
        let _g = self.lock.lock();
        if let Some(i) = self.find(ms) {
            return i;
        }
        let n = self.len.load(Ordering::Relaxed);
        if n < Self::CAP {
            // Release: a reader that sees the new length or an index sees the value.
            self.vals[n].store(ms, Ordering::Release);
            self.len.store(n + 1, Ordering::Release);
            return n as u8;
        }
        let all = (0..n).map(|i| (self.vals[i].load(Ordering::Relaxed), i));
        let at_least = all.clone().filter(|&(v, _)| v >= ms).min();
        at_least.or_else(|| all.max()).map_or(0, |(_, i)| i as u8)
    }
}

/// What all shards of a table share (kept alive by every shard, so late handle drops can use it).
pub(crate) struct Common<K, V> {
    pub(crate) listener: Option<Listener<K, V>>,
    pub(crate) counters: Counters,
    /// Flows in the table, the maximum and the emergency state.
    pub(crate) occ: Occupancy,
    pub(crate) palette: Palette,
    /// The table's idle timeout.
    pub(crate) timeout: Duration,
    /// Flows created so far (its low 6 bits are stamped into each record, see `timew::birth`).
    pub(crate) births: AtomicUsize,
    /// The lookups' read sections (C1).
    pub(crate) readers: Readers,
}

impl<K, V> Common<K, V> {
    fn reserve(&self) -> bool {
        self.occ.try_reserve()
    }
    /// Room for one flow: the room an eviction handed over, if any, else a reservation.
    fn take_room(&self, room: &mut bool) -> bool {
        std::mem::take(room) || self.reserve()
    }
    fn unreserve(&self) {
        self.occ.release();
    }
    /// The palette index of the timeout of a flow created now (shorter in emergency mode).
    fn new_tmo(&self, d: Defaults) -> u8 {
        if self.occ.in_emergency() {
            self.palette.index(id::timeout_ms(self.occ.timeout_for_new(self.timeout)))
        } else {
            d.tmo
        }
    }
}

/// Per-flow defaults of new records.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Defaults {
    /// Palette index of the table's idle timeout.
    pub(crate) tmo: u8,
    pub(crate) held: bool,
}

struct Locked {
    slots: SlotsW,
    timers: Timers,
    /// Head of the free list of records (`NONE` if empty).
    free: u32,
    /// The eviction order (tables with `CapacityPolicy::Evict` only; see [`victims`]).
    victims: victims::Victims,
    /// Records allocated since their counts were last added to `Shard::refs` (C8: counted here
    /// with a plain add, folded in every [`CREDIT_BATCH`], and subtracted from the table's count
    /// when the table lets the shard go).
    uncredited: u64,
}

/// The table's count of its shard (C8). Large, so that records' counts may be added to `refs` in
/// batches of up to [`CREDIT_BATCH`] rather than with one locked instruction per allocation:
/// with at most that many allocations not yet added, `refs` stays above zero while the table
/// holds its count, whatever the frees.
pub(crate) const TABLE_COUNT: u64 = 1 << 40;
/// Allocations counted under the shard lock before they are added to `refs` in one step (a
/// handful in debug, test and loom builds, so that their tests and models go through the fold).
#[cfg(not(any(test, debug_assertions, flowtable_loom)))]
const CREDIT_BATCH: u64 = 1 << 31;
#[cfg(any(test, debug_assertions, flowtable_loom))]
const CREDIT_BATCH: u64 = 3;

/// One shard. Fields that writers change often (the lock, the record count, the search
/// statistics) each have their own cache lines, apart from the ones every lock-free lookup reads
/// (the slot array pointer and sequence, the arena directory, `common`): otherwise each creation
/// on one core would evict the lookups' lines on the other.
pub(crate) struct Shard<K, V> {
    /// [`TABLE_COUNT`] for the table, one per allocated record, less the allocations counted in
    /// `Locked::uncredited` (C8).
    pub(crate) refs: CachePadded<AtomicU64>,
    slots: Slots,
    pub(crate) arena: Arena<K, V>,
    locked: CachePadded<Mutex<Locked>>,
    /// Threads waiting for the shard lock (a scheduling hint, read Relaxed: the expiry pass gives
    /// the lock up between blocks of timer work while it is nonzero; nothing else depends on it).
    #[cfg(not(flowtable_loom))]
    waiting: CachePadded<crate::sync::atomic::AtomicU32>,
    /// Signalled when a creation finishes or is abandoned.
    created: Condvar,
    pub(crate) common: Arc<Common<K, V>>,
    search: CachePadded<SearchStats>,
    /// What an evicting table's `make_room` reads without the lock to pass over shards.
    bounds: CachePadded<Bounds>,
}

/// Lower bounds that let `make_room` (tables with `CapacityPolicy::Evict`) pass over a shard
/// without taking its lock: a shard with nothing due is not asked to reclaim, and a shard whose
/// every candidate evicts after the best one found is not asked for its victim (invariant B in
/// `design/concurrency.md`). Written under the shard lock, read Relaxed: they only decide which
/// shards to look at; what is expired or evicted is still chosen and checked under the lock.
#[derive(Default)]
struct Bounds {
    /// No timer of the shard is due before this tick (ms): raised by an expiry pass that found
    /// nothing due, lowered by every timer filed earlier.
    due: AtomicU64,
    /// Every eviction candidate of the shard has `id::order_bound(class, last seen)` at least
    /// this; 0 while the eviction queues do not describe the shard. Set from the front each time a
    /// victim is chosen, lowered by every candidate filed below it (touches only raise a
    /// candidate's order, departures only remove candidates).
    front: AtomicU64,
}

impl Bounds {
    /// Lowers `b` to `v` (shard lock held: no other writer).
    fn lower(b: &AtomicU64, v: u64) {
        if v < b.load(Ordering::Relaxed) {
            b.store(v, Ordering::Relaxed);
        }
    }
}

/// Slots visited by the writers' searches, and flows created (written under the shard lock,
/// read by `stats`). Counting creations here rather than in the table's striped `Counters` makes
/// the count a plain load and store instead of a locked instruction.
#[derive(Default)]
struct SearchStats {
    probes: AtomicU64,
    lookups: AtomicU64,
    probe_max: AtomicU64,
    created: AtomicU64,
}

/// Adds `n` to a statistic written only under the shard lock: a load and a store, not a locked
/// instruction (Relaxed: `stats` reads it without the lock and orders nothing by it).
fn add_locked(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
}

/// What a writer's search found.
enum Found<K, V> {
    /// A slot of the key whose record still has the slot's generation, with a reference to it.
    Hit { pos: usize, slot: u64, rec: RecordRef<K, V> },
    /// No such slot; `pos`/`old` is where a new slot may go (first `TOMB`, or the `EMPTY`).
    Miss { pos: usize, old: u64 },
}

/// A flow that left, with its cause, to be counted and notified after the lock.
struct Exit<'a, K, V>(&'a RecordRef<K, V>, RemovalCause, &'a Palette);

impl<K, V> AsEvent<K, V> for Exit<'_, K, V> {
    fn as_event(&self) -> RemovalEvent<'_, K, V> {
        let w = self.0.record().time_word();
        RemovalEvent {
            key: self.0.key(),
            value: self.0.value(),
            cause: self.1,
            last_seen: Timestamp::from_millis(timew::last(w)),
            deadline: id::deadline_ts(super::rc::Record::<K, V>::deadline_of(w, self.2)),
        }
    }
}

fn cause_status(c: RemovalCause) -> u64 {
    (match c {
        RemovalCause::Expired => FlowStatus::Expired,
        RemovalCause::Removed => FlowStatus::Removed,
        RemovalCause::Replaced => FlowStatus::Replaced,
        RemovalCause::Evicted => FlowStatus::Evicted,
    }) as u64
}

/// A new flow refused because the table is full, with what the caller may retry with (`None` if
/// it was consumed).
pub(crate) struct Full<T>(pub(crate) Option<T>);

/// Where a creation's value comes from: `init`, or the value an abandoned attempt already made.
pub(crate) struct Make<F, V> {
    pub(crate) init: Option<F>,
    pub(crate) ready: Option<V>,
    /// Room an eviction handed to this creation (one reserved flow of the occupancy).
    pub(crate) room: bool,
}

impl<F: FnOnce() -> V, V> Make<F, V> {
    fn value(&mut self) -> V {
        match self.ready.take() {
            Some(v) => v,
            None => (self.init.take().expect("init runs once"))(),
        }
    }
}

/// References taken under the shard lock that may be the last ones, to drop after it (C11). A
/// few fit inline (a writer's search meets a record of another key with the same tag now and
/// then), so the common case allocates nothing.
pub(crate) struct Deferred<K, V> {
    inline: [Option<RecordRef<K, V>>; 4],
    more: Vec<RecordRef<K, V>>,
}

impl<K, V> Deferred<K, V> {
    fn new() -> Self {
        Deferred { inline: [None, None, None, None], more: Vec::new() }
    }
    fn push(&mut self, r: RecordRef<K, V>) {
        match self.inline.iter_mut().find(|s| s.is_none()) {
            Some(s) => *s = Some(r),
            None => self.more.push(r),
        }
    }
}

/// An eviction candidate: its order key (class, last seen, birth) and its slot's identity.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Victim {
    pub(crate) order: (FlowClass, u64, u8),
    pub(crate) idx: u32,
    pub(crate) gen: u8,
}

/// What `insert` returns: the new flow and the one it replaced.
type Inserted<K, V> = (RecordRef<K, V>, Option<RecordRef<K, V>>);

/// Attempts (a `backoff` apart) before a shard-lock waiter parks.
#[cfg(not(flowtable_loom))]
const LOCK_SPINS: usize = 200;

/// How long (in `backoff` steps) an expiry pass that gave up the lock lets waiters take it before
/// it asks again.
#[cfg(not(flowtable_loom))]
const YIELD_SPINS: usize = 32;

/// One step of a shard-lock wait: 16 pause instructions (~0.4 µs on the CI VM).
#[cfg(not(flowtable_loom))]
#[inline]
fn backoff() {
    for _ in 0..16 {
        crate::sync::hint::spin_loop();
    }
}

/// Up to this many flows per expiry batch (one lock hold); a stack array, no allocation.
const BATCH: usize = 32;

mod exits;
mod victims;

impl<K, V> Shard<K, V> {
    pub(crate) fn new(slots_cap: usize, heap_cap: usize, common: Arc<Common<K, V>>) -> Self {
        let (slots, w) = Slots::new(slots_cap);
        Shard {
            refs: CachePadded(AtomicU64::new(TABLE_COUNT)),
            slots,
            arena: Arena::new(),
            locked: CachePadded(Mutex::new(Locked {
                slots: w,
                timers: Timers::with_capacity(heap_cap),
                free: NONE,
                victims: victims::Victims::new(),
                uncredited: 0,
            })),
            #[cfg(not(flowtable_loom))]
            waiting: CachePadded(crate::sync::atomic::AtomicU32::new(0)),
            created: Condvar::new(),
            common,
            search: CachePadded::default(),
            bounds: CachePadded::default(),
        }
    }

    /// Takes the shard lock. The holds of the packet path are short (a creation's, or one batch
    /// or a few blocks of timer work of an expiry pass), so a waiter spins (~80 µs on the CI VM)
    /// before it parks: parking and waking cost two context switches, more than such a wait.
    /// (`clear`, the snapshot of `for_each` and an eviction's rescan of a shard hold it for a
    /// pass over the shard's slots; waiters then park.) A waiter is counted in `waiting` so that
    /// an expiry pass lets it through (`yield_lock`).
    fn lock(&self) -> MutexGuard<'_, Locked> {
        #[cfg(not(flowtable_loom))]
        {
            if let Some(g) = self.locked.try_lock() {
                return g;
            }
            self.waiting.fetch_add(1, Ordering::Relaxed);
            let g = self.lock_contended();
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            g
        }
        #[cfg(flowtable_loom)]
        self.locked.lock()
    }

    #[cfg(not(flowtable_loom))]
    fn lock_contended(&self) -> MutexGuard<'_, Locked> {
        for _ in 0..LOCK_SPINS {
            backoff();
            if let Some(g) = self.locked.try_lock() {
                return g;
            }
        }
        self.locked.lock()
    }

    /// Lets the threads waiting for the shard lock through, if any, and takes it back: the lock
    /// is handed to a parked waiter directly (a fair unlock), and a spinning one is given the
    /// time to take it before this thread asks again. An expiry pass calls it between blocks of
    /// timer work, so that a long pass does not hold up the creations of the shard.
    fn yield_lock<'a>(&'a self, g: MutexGuard<'a, Locked>) -> MutexGuard<'a, Locked> {
        // Under loom the give-up is unconditional and the scheduler decides who goes next.
        #[cfg(not(flowtable_loom))]
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return g;
        }
        crate::sync::unlock_fair(g);
        #[cfg(not(flowtable_loom))]
        for _ in 0..YIELD_SPINS {
            if self.waiting.load(Ordering::Relaxed) == 0 {
                break;
            }
            backoff();
        }
        self.lock()
    }

    fn try_lock(&self) -> Option<MutexGuard<'_, Locked>> {
        self.locked.try_lock()
    }

    fn count(&self, e: Event) {
        self.common.counters.add(e);
    }

    /// Files a timer (shard lock held), lowering the shard's `due` bound to it (B; only an
    /// evicting table reads the bounds, so only an evicting table keeps them).
    fn file_timer(&self, w: &mut Locked, r: RecordRef<K, V>, d: u64, from: From) {
        w.timers.push(r, d, from);
        self.filed_at(d);
    }

    /// Lowers the `due` bound to a timer just filed at `d` (B).
    fn filed_at(&self, d: u64) {
        if self.evicting() {
            Bounds::lower(&self.bounds.due, d);
        }
    }

    /// Raises the `due` bound past `t`: an expiry pass found nothing due at `t` (B; shard lock
    /// held, evicting tables).
    fn raise_due(&self, t: u64) {
        let due = &self.bounds.due;
        due.store(t.saturating_add(1).max(due.load(Ordering::Relaxed)), Ordering::Relaxed);
    }

    /// Whether the table evicts at its maximum (`CapacityPolicy::Evict`, fixed at build time).
    fn evicting(&self) -> bool {
        self.common.occ.policy() == crate::CapacityPolicy::Evict
    }

    /// Counts and notifies the exits (no lock held). Their room was released under the shard lock
    /// by whoever made them leave (C12).
    fn finish_exits(&self, exits: &[(RecordRef<K, V>, RemovalCause)]) {
        for (_, c) in exits {
            self.count(Event::Left(*c));
        }
        let pal = &self.common.palette;
        notify_each(self.common.listener.as_ref(), exits.iter().map(|(r, c)| Exit(r, *c, pal)));
    }

    fn finish_exit(&self, r: &RecordRef<K, V>, c: RemovalCause) {
        self.count(Event::Left(c));
        notify_each(self.common.listener.as_ref(), [Exit(r, c, &self.common.palette)]);
    }

    /// Whether a slot's record still has the slot's generation (for rebuilds).
    fn alive(&self, v: u64) -> bool {
        self.arena.get(slot::idx(v)).gen() == slot::gen(v)
    }

    fn note_probe(&self, n: u64) {
        add_locked(&self.search.probes, n);
        add_locked(&self.search.lookups, 1);
        // Relaxed: a statistic, written under the shard lock only.
        if n > self.search.probe_max.load(Ordering::Relaxed) {
            self.search.probe_max.store(n, Ordering::Relaxed);
        }
    }

    /// Counts a creation (shard lock held: the only writer).
    fn note_created(&self) {
        add_locked(&self.search.created, 1);
    }

    /// Flows created in this shard.
    pub(crate) fn created(&self) -> u64 {
        self.search.created.load(Ordering::Relaxed)
    }

    /// (probes, lookups, max) of the writers' searches.
    pub(crate) fn probe_stats(&self) -> (u64, u64, u64) {
        (
            self.search.probes.load(Ordering::Relaxed),
            self.search.lookups.load(Ordering::Relaxed),
            self.search.probe_max.load(Ordering::Relaxed),
        )
    }

    /// The first `TOMB` or `EMPTY` from the home of `tag` (shard lock held).
    fn free_pos(arr: &SlotArray, tag: u32) -> (usize, u64) {
        let mut p = arr.home(tag);
        loop {
            let v = arr.get(p);
            if !slot::is_live(v) {
                return (p, v);
            }
            p = arr.next(p);
        }
    }

    /// Puts `new` into the slot table (shard lock held), at `pos` if still possible. `old` is the
    /// value expected there: `EMPTY`/`TOMB` (a new slot), or the slot of a displaced flow.
    fn place(&self, w: &mut Locked, tag: u32, mut pos: usize, mut old: u64, new: u64) {
        loop {
            if !slot::is_live(old)
                && self.slots.make_room(
                    &mut w.slots,
                    |v| self.alive(v),
                    |v| super::slots::prefetch(self.arena.addr(slot::idx(v))),
                )
            {
                self.slots.reclaim(&mut w.slots, &self.common.readers);
                (pos, old) = Self::free_pos(self.slots.array(), tag);
                continue;
            }
            if self.slots.place(&mut w.slots, pos, old, new) {
                return;
            }
            (pos, old) = Self::free_pos(self.slots.array(), tag);
        }
    }

    /// Clears the slot `v` of a flow that left (shard lock held), if it is still there.
    fn clear_slot(&self, w: &mut Locked, v: u64) {
        let arr = self.slots.array();
        let mut p = arr.home(slot::tag(v));
        for _ in 0..arr.cap() {
            let s = arr.get(p);
            if s == slot::EMPTY {
                return;
            }
            if s == v {
                self.slots.clear(&mut w.slots, p, v);
                return;
            }
            p = arr.next(p);
        }
    }

    /// Returns a dead record to the free list (its contents already dropped).
    pub(crate) fn free_record(&self, idx: u32) {
        self.free_records(&[idx]);
    }

    /// Returns dead records to the free list under one lock hold (their contents already dropped).
    fn free_records(&self, idxs: &[u32]) {
        if idxs.is_empty() {
            return;
        }
        let mut g = self.lock();
        let g = &mut *g;
        for &idx in idxs {
            self.arena.free(&mut g.free, idx);
        }
    }

    /// Drops references to records of this shard as dropping each would, but returns the records
    /// whose last reference this was to the free list under one lock hold per [`BATCH`] and drops
    /// their counts on the shard with one subtraction (C8): the caller reached `self` through the
    /// table, whose own count keeps the shard alive meanwhile. Contents (a key's or value's
    /// `Drop`) and exits (`on_dead`, which may run the listener) are finished with no lock held.
    /// Returns how many flows left the table here; the first panic of a listener or a `Drop` is
    /// put in `panic` once every record is released.
    pub(crate) fn release_all(
        &self,
        refs: impl IntoIterator<Item = RecordRef<K, V>>,
        panic: &mut Option<Box<dyn std::any::Any + Send>>,
    ) -> usize {
        let mut idxs = [0u32; BATCH];
        let (mut n, mut freed, mut left) = (0, 0, 0);
        for r in refs {
            let Some(dead) = r.release_last() else { continue };
            let f = finish_dead(dead);
            debug_assert!(std::ptr::eq(f.shard, self), "release_all: a record of another shard");
            left += usize::from(f.left);
            if let Some(p) = f.panic {
                panic.get_or_insert(p);
            }
            idxs[n] = f.idx;
            n += 1;
            if n == BATCH {
                self.free_records(&idxs);
                freed += n;
                n = 0;
            }
        }
        self.free_records(&idxs[..n]);
        freed += n;
        if freed > 0 {
            // Release (as `release_shard`): the uses of these records happen before whatever
            // release later frees the shard. Never the last count: the table holds one (C8).
            let before = self.refs.fetch_sub(freed as u64, Ordering::Release);
            debug_assert!(before > freed as u64, "C8: the table's count keeps the shard");
        }
        left
    }

    /// The exit of a record whose last reference went while it was still in the table (a
    /// `WhileHeld` flow whose timer released it): it leaves as expired, here, on this thread.
    pub(crate) fn on_dead(&self, dead: &DeadRecord<K, V>) -> bool {
        let rec = dead.record();
        if !rec.transition(timew::ACTIVE, FlowStatus::Expired as u64) {
            return false;
        }
        rec.bump_gen(); // Upholds C2: its slot is dead from now on (reaped by the next probe).
        self.slots.orphan();
        self.common.unreserve();
        self.count(Event::Left(RemovalCause::Expired));
        if let (Some(l), Some(value)) = (self.common.listener.as_ref(), dead.value()) {
            let w = rec.time_word();
            l(RemovalEvent {
                key: dead.key(),
                value,
                cause: RemovalCause::Expired,
                last_seen: Timestamp::from_millis(timew::last(w)),
                deadline: id::deadline_ts(super::rc::Record::<K, V>::deadline_of(w, &self.common.palette)),
            });
        }
        true
    }
}

impl<K: Eq + Clone, V> Shard<K, V> {
    /// The live, visible flow of `key` at tick `now`. Lock-free (C2, C3, C7).
    #[inline]
    pub(crate) fn lookup(&self, key: &K, hash: u64, now: u64) -> Option<RecordRef<K, V>> {
        self.slots.prefetch_home(slot::tag_of(hash));
        let g = self.common.readers.enter();
        self.lookup_in(key, hash, now, &g)
    }

    /// `lookup` inside the caller's read section (C1).
    #[inline]
    pub(crate) fn lookup_in(&self, key: &K, hash: u64, now: u64, g: &ReadGuard<'_>) -> Option<RecordRef<K, V>> {
        let tag = slot::tag_of(hash);
        loop {
            let seq = self.slots.read_begin();
            let arr = self.slots.array_read(g);
            let mut p = arr.home(tag);
            for _ in 0..arr.cap() {
                let v = arr.get(p);
                if v == slot::EMPTY {
                    break;
                }
                if v != slot::TOMB && slot::tag(v) == tag {
                    match self.arena.try_ref(slot::idx(v), slot::gen(v)) {
                        // The key is compared only once the reference pins the record (C2).
                        Some(r) if r.key() == key => return r.record().visible(now, &self.common.palette).then_some(r),
                        Some(_) => {}
                        None => self.slots.reap(arr, p, v),
                    }
                }
                p = arr.next(p);
            }
            if !self.slots.read_retry(seq) {
                return None;
            }
        }
    }

    /// The writers' search (shard lock held). References to other keys' records that it took
    /// go to `defer` (one may be the last; it is dropped after the lock).
    fn find(&self, key: &K, hash: u64, defer: &mut Deferred<K, V>) -> Found<K, V> {
        let tag = slot::tag_of(hash);
        let arr = self.slots.array();
        let mut p = arr.home(tag);
        let mut reuse = None;
        let mut n = 0;
        let result = loop {
            n += 1;
            let v = arr.get(p);
            if v == slot::EMPTY {
                let (pos, old) = reuse.unwrap_or((p, slot::EMPTY));
                break Found::Miss { pos, old };
            }
            if v == slot::TOMB {
                reuse.get_or_insert((p, slot::TOMB));
            } else if slot::tag(v) == tag {
                match self.arena.try_ref(slot::idx(v), slot::gen(v)) {
                    Some(r) if r.key() == key => break Found::Hit { pos: p, slot: v, rec: r },
                    Some(r) => defer.push(r),
                    None => {
                        self.slots.reap(arr, p, v);
                        if arr.get(p) == slot::TOMB {
                            reuse.get_or_insert((p, slot::TOMB));
                        }
                    }
                }
            }
            p = arr.next(p);
            if n > arr.cap() as u64 {
                unreachable!("C3: a slot array always keeps an EMPTY slot");
            }
        };
        self.note_probe(n);
        result
    }

    /// Allocates and initialises a `PENDING` record of `key`, files its timer and counts its
    /// creation (shard lock held, count reserved). The timer is filed before the value exists: the
    /// expiry pass files a creation's timer again rather than expiring it (C13), and a creation
    /// that is cancelled notes its entry as departed ([`Shard::cancelled`]).
    fn alloc(&self, w: &mut Locked, key: K, now: Timestamp, d: Defaults) -> Option<Creation<K, V>> {
        let idx = self.arena.alloc(&mut w.free)?;
        // Upholds C8: the allocated record counts, added to `refs` in batches (`TABLE_COUNT`).
        w.uncredited += 1;
        if w.uncredited == CREDIT_BATCH {
            self.refs.fetch_add(std::mem::take(&mut w.uncredited), Ordering::Relaxed);
        }
        // Relaxed: a tie-breaker for eviction order, nothing is published by it. Only an evicting
        // table reads it, so only an evicting table pays for the shared counter.
        let birth = if self.evicting() { self.common.births.fetch_add(1, Ordering::Relaxed) as u8 } else { 0 };
        let time = timew::new(id::ms_ceil(now), birth, timew::PENDING, d.held, self.common.new_tmo(d));
        let deadline = Record::<K, V>::deadline_of(time, &self.common.palette);
        let k = w.timers.key(deadline);
        // The record comes with the count of its heap entry, filed right after (C9).
        let c = self.arena.create(idx, key, time, k);
        w.timers.push_created(idx, k);
        self.filed_at(deadline);
        self.note_created();
        Some(c)
    }

    /// Files a record just made active in its eviction queue, in an evicting table (shard lock
    /// held; its timer was filed when it was allocated).
    fn activate(&self, w: &mut Locked, r: &RecordRef<K, V>) {
        if self.evicting() {
            self.file_victim(w, r);
        }
    }

    /// Makes a creation's record active once its value is written, and wakes the callers waiting
    /// for it. One CAS on the time word and no lock, unless a waiter flagged the record `WAITED`
    /// (the lock is then taken to notify it) or the table evicts (the eviction entry is filed in
    /// the same hold as the CAS). `Err` with the creation back if an `insert` cancelled it (C13).
    fn activate_created(&self, c: Creation<K, V>) -> Result<RecordRef<K, V>, Creation<K, V>> {
        let to_active = |w| timew::creating(timew::status(w)).then(|| timew::with_status(w, timew::ACTIVE));
        if self.evicting() {
            let mut g = self.lock();
            if c.handle().record().update_time(to_active).is_err() {
                return Err(c); // the canceller notified the waiters
            }
            let r = c.into_ref();
            self.activate(&mut g, &r);
            self.created.notify_all();
            return Ok(r);
        }
        let Ok(old) = c.handle().record().update_time(to_active) else { return Err(c) };
        let r = c.into_ref();
        if timew::status(old) == timew::WAITED {
            // The waiter flagged the record under the lock and released it only by waiting, so
            // once we hold the lock it waits, and this wakes it (C13).
            let _g = self.lock();
            self.created.notify_all();
        }
        Ok(r)
    }

    /// A creation in flight was cancelled (its `init` panicked, or `insert` took the key; shard
    /// lock held, status just moved to `CANCELLED`): its slot dies, its heap entry stays until its
    /// deadline or a purge (a departed flow's entry, C9), and it is not counted as created.
    fn cancelled(&self, w: &mut Locked, r: &Record<K, V>, out: &mut Vec<RecordRef<K, V>>) {
        r.bump_gen(); // Upholds C2.
        w.timers.note_left(&self.arena, out);
        let c = &self.search.created;
        c.store(c.load(Ordering::Relaxed).wrapping_sub(1), Ordering::Relaxed); // only writer: the lock holder
        self.created.notify_all();
    }

    /// Files `r` in the eviction queue of its current class (shard lock held; evicting tables).
    fn file_victim(&self, w: &mut Locked, r: &RecordRef<K, V>) {
        let t = r.record().time_word();
        let c = victims::Cand { last: timew::last(t), birth: timew::birth(t), idx: r.index(), gen: r.record().gen() };
        w.victims.file(id::class(t), c, w.slots.live);
        // Upholds B: a filed candidate may be the new front; queues dropped describe nothing.
        let b = if w.victims.built() { id::order_bound(id::class(t), c.last) } else { 0 };
        Bounds::lower(&self.bounds.front, b);
    }

    /// `set_class` on a flow of this shard: one CAS on the time word. An evicting table does it
    /// under the shard lock and files the flow in its new class's eviction queue in the same hold
    /// (its entry in the old class's queue goes stale), so an eviction never sees it in neither.
    pub(crate) fn set_class(&self, r: &RecordRef<K, V>, class: FlowClass) {
        let set = |w| Some(timew::with_class(w, class as u8));
        if !self.evicting() {
            let _ = r.record().update_time(set);
            return;
        }
        if id::class(r.record().time_word()) == class {
            return; // nothing to re-file (a class only changes through here, under the lock)
        }
        let mut g = self.lock();
        let old = r.record().update_time(set);
        let filed = r.record().filed() != UNFILED;
        if old.is_ok_and(|w| id::class(w) != class && timew::status(w) == timew::ACTIVE) && filed {
            self.file_victim(&mut g, r);
        }
    }

    /// `get_or_insert_with` on this shard (see the trait). `init` runs with no lock held.
    pub(crate) fn get_or_insert<F: FnOnce() -> V>(
        &self,
        key: K,
        hash: u64,
        now: Timestamp,
        d: Defaults,
        make: &mut Make<F, V>,
    ) -> Result<(RecordRef<K, V>, bool), Full<K>> {
        let t = id::ms_floor(now);
        let tag = slot::tag_of(hash);
        let mut key = Some(key);
        loop {
            let k = key.as_ref().expect("key kept until the record takes it");
            if let Some(r) = self.lookup(k, hash, t) {
                return Ok((r, false));
            }
            let mut defer = Deferred::new();
            let mut displaced = None;
            let mut g = self.lock();
            let (pos, old) = match self.find(k, hash, &mut defer) {
                Found::Miss { pos, old } => (pos, old),
                Found::Hit { pos, slot: v, rec } => {
                    let s = timew::status(rec.record().time_word());
                    if timew::creating(s) && !crate::sync::mutant("compact_pending_ignored") {
                        // Another caller runs `init` for this key: flag the record (its creator
                        // activates it without the lock, and takes the lock to wake us only if it
                        // sees the flag), wait, then look again. If the status moved on first,
                        // look again at once (C13). Our reference is not the last (the creator
                        // holds one until it finishes).
                        let flag =
                            |w| (timew::status(w) == timew::PENDING).then(|| timew::with_status(w, timew::WAITED));
                        let flagged = s == timew::WAITED
                            || crate::sync::mutant("compact_waiter_unflagged")
                            || match rec.record().update_time(flag) {
                                Ok(_) => true,
                                Err(w) => timew::status(w) == timew::WAITED,
                            };
                        defer.push(rec);
                        let g = if flagged { self.created.wait(g) } else { g };
                        drop(g);
                        drop(defer);
                        continue;
                    }
                    if rec.record().visible(t, &self.common.palette) {
                        drop(g);
                        return Ok((rec, false));
                    }
                    if s == timew::ACTIVE {
                        // Room first: at the maximum the invisible flow stays as it is.
                        if !self.common.take_room(&mut make.room) {
                            drop(g);
                            drop(rec);
                            drop(defer);
                            return Err(Full(key.take()));
                        }
                        match rec.record().leave_if_due(t, &self.common.palette) {
                            Ok(()) => {
                                rec.record().bump_gen(); // Upholds C2.
                                self.common.unreserve(); // Upholds C12.
                                g.timers.note_left(&self.arena, &mut defer.more);
                                displaced = Some(rec);
                            }
                            Err(true) => {
                                drop(g);
                                self.common.unreserve();
                                return Ok((rec, false));
                            }
                            Err(false) => {
                                make.room = true; // kept for the creation below
                                defer.push(rec);
                            }
                        }
                    } else {
                        defer.push(rec);
                    }
                    (pos, v)
                }
            };
            let reserved = displaced.is_some() || self.common.take_room(&mut make.room);
            let created = if reserved { self.alloc(&mut g, key.take().expect("key"), now, d) } else { None };
            let Some(mut c) = created else {
                if reserved {
                    self.common.unreserve();
                }
                if displaced.is_some() {
                    self.clear_slot(&mut g, old);
                }
                drop(g);
                if let Some(r) = displaced {
                    self.finish_exit(&r, RemovalCause::Expired);
                }
                return Err(Full(if reserved { None } else { key.take() }));
            };
            let new = slot::pack(tag, c.handle().record().gen(), c.handle().index());
            self.place(&mut g, tag, pos, old, new);
            drop(g);
            if let Some(r) = displaced.take() {
                self.finish_exit(&r, RemovalCause::Expired);
            }
            drop(defer);

            // `init` runs outside every lock; a panic cancels the creation (the guard).
            let mut guard = Cancel { shard: self, creation: Some(c), slot: new };
            let value = make.value();
            c = guard.creation.take().expect("creation");
            drop(guard);
            c.write_value(value);

            let mut c = match self.activate_created(c) {
                Ok(r) => return Ok((r, true)),
                Err(c) => c,
            };
            // `insert` took the key while `init` ran: its flow stands; ours never was one. Look
            // again; if that flow is already gone, create again with the value `init` made.
            self.common.unreserve();
            key = Some(c.handle().key().clone());
            make.ready = c.take_back();
            drop(c);
        }
    }

    /// `insert` on this shard: returns the new flow and the one it replaced.
    pub(crate) fn insert(
        &self,
        key: K,
        hash: u64,
        value: V,
        now: Timestamp,
        d: Defaults,
        room: &mut bool,
    ) -> Result<Inserted<K, V>, Full<(K, V)>> {
        let t = id::ms_floor(now);
        let tag = slot::tag_of(hash);
        let mut defer = Deferred::new();
        let mut left: Option<(RecordRef<K, V>, RemovalCause)> = None;
        let mut g = self.lock();
        let (pos, old) = match self.find(&key, hash, &mut defer) {
            Found::Miss { pos, old } => (pos, old),
            Found::Hit { pos, slot: v, rec } => {
                let r = rec.record();
                loop {
                    let s = timew::status(r.time_word());
                    if timew::creating(s) {
                        // A creation in flight: cancel it; its creator finds our flow.
                        if r.transition(s, timew::CANCELLED) {
                            self.cancelled(&mut g, r, &mut defer.more);
                            defer.push(rec);
                            break;
                        }
                        continue;
                    }
                    if s != timew::ACTIVE {
                        defer.push(rec);
                        break;
                    }
                    if r.visible(t, &self.common.palette) {
                        if r.transition(timew::ACTIVE, cause_status(RemovalCause::Replaced)) {
                            r.bump_gen(); // Upholds C2.
                            g.timers.note_left(&self.arena, &mut defer.more);
                            // The replaced flow's room passes to the new one (C12).
                            left = Some((rec, RemovalCause::Replaced));
                            break;
                        }
                    } else {
                        // Room first: at the maximum the invisible flow stays as it is.
                        if !self.common.take_room(room) {
                            defer.push(rec);
                            break;
                        }
                        if r.leave_if_due(t, &self.common.palette).is_ok() {
                            r.bump_gen(); // Upholds C2.
                            self.common.unreserve(); // Upholds C12.
                            g.timers.note_left(&self.arena, &mut defer.more);
                            left = Some((rec, RemovalCause::Expired));
                            break;
                        }
                        *room = true; // kept for the next attempt
                    }
                }
                (pos, v)
            }
        };
        if left.is_none() && !self.common.take_room(room) {
            drop(g);
            drop(defer);
            return Err(Full(Some((key, value))));
        }
        let Some(mut c) = self.alloc(&mut g, key, now, d) else {
            self.common.unreserve();
            if let Some((r, _)) = &left {
                let v = slot::pack(tag, r.record().gen().wrapping_sub(1), r.index());
                self.clear_slot(&mut g, v);
            }
            drop(g);
            if let Some((r, c)) = left {
                self.finish_exit(&r, c);
            }
            return Err(Full(None));
        };
        c.write_value(value);
        let ok = c.handle().record().transition(timew::PENDING, timew::ACTIVE);
        debug_assert!(ok);
        let r = c.into_ref();
        let new = slot::pack(tag, r.record().gen(), r.index());
        self.place(&mut g, tag, pos, old, new);
        self.activate(&mut g, &r);
        drop(g);
        drop(defer);
        let replaced = match left {
            Some((old, cause)) => {
                self.finish_exit(&old, cause);
                (cause == RemovalCause::Replaced).then_some(old)
            }
            None => None,
        };
        Ok((r, replaced))
    }

    /// `remove` on this shard.
    pub(crate) fn remove(&self, key: &K, hash: u64) -> Option<RecordRef<K, V>> {
        let mut defer = Deferred::new();
        let mut g = self.lock();
        let found = self.find(key, hash, &mut defer);
        let out = match found {
            Found::Hit { pos, slot: v, rec } => {
                if rec.record().transition(timew::ACTIVE, cause_status(RemovalCause::Removed)) {
                    rec.record().bump_gen(); // Upholds C2.
                    self.common.unreserve(); // Upholds C12.
                    self.slots.clear(&mut g.slots, pos, v);
                    g.timers.note_left(&self.arena, &mut defer.more);
                    Some(rec)
                } else {
                    defer.push(rec);
                    None
                }
            }
            Found::Miss { .. } => None,
        };
        drop(g);
        drop(defer);
        if let Some(r) = &out {
            self.finish_exit(r, RemovalCause::Removed);
        }
        out
    }
}

/// Slots of a probe run that `get_batch` looks through for the record to prefetch.
const PREFETCH_RUN: usize = 6;

impl<K, V> Shard<K, V> {
    /// The address of the home slot of `hash` (for prefetching).
    #[inline]
    pub(crate) fn home_addr(&self, hash: u64, g: &ReadGuard<'_>) -> *const u8 {
        let arr = self.slots.array_read(g);
        let home = arr.home(slot::tag_of(hash));
        arr.prefetch_run(home);
        arr.addr(home)
    }

    /// The address of the record named by the first slot with the tag of `hash` among the first
    /// few of its probe run (a key sits a slot or two past its home at usual load factors).
    #[inline]
    pub(crate) fn home_record_addr(&self, hash: u64, g: &ReadGuard<'_>) -> Option<*const u8> {
        let arr = self.slots.array_read(g);
        let tag = slot::tag_of(hash);
        let mut p = arr.home(tag);
        for _ in 0..PREFETCH_RUN {
            let v = arr.get(p);
            if v == slot::EMPTY {
                return None;
            }
            if slot::is_live(v) && slot::tag(v) == tag {
                return Some(self.arena.addr(slot::idx(v)));
            }
            p = arr.next(p);
        }
        None
    }

    /// The table is being dropped: every flow leaves (cause `Removed`), every timer is released.
    pub(crate) fn drop_table(&self) {
        self.clear();
    }

    /// Files an extra timer for a flow whose deadline moved forward (`set_timeout` shorter).
    pub(crate) fn advance(&self, r: &RecordRef<K, V>) {
        let mut g = self.lock();
        let w = r.record().time_word();
        if timew::status(w) != timew::ACTIVE {
            return;
        }
        let d = super::rc::Record::<K, V>::deadline_of(w, &self.common.palette);
        let filed = r.record().filed();
        // A flow its timer already released (`WhileHeld`) gets no timer again.
        if filed != UNFILED && g.timers.key(d) < filed {
            self.file_timer(&mut g, r.clone(), d, From::Side);
        }
    }

    /// Bytes held by the shard's structures.
    pub(crate) fn memory(&self) -> usize {
        let g = self.lock();
        self.slots.memory(&g.slots) + self.arena.memory() + g.timers.memory() + g.victims.memory()
    }

    /// Asserts the shard's invariants (lock taken here).
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn validate(&self) {
        let g = self.lock();
        self.slots.validate(&g.slots);
        g.timers.validate(&self.arena);
        let free = self.arena.validate(g.free);
        let allocated = self.arena.len() as usize - free;
        // C8: the table's count plus one per allocated record, less those not yet added (a
        // record just put back on the free list may still hold its count for a moment, so `>=`).
        let refs = self.refs.load(Ordering::Relaxed) + g.uncredited;
        assert!(refs >= TABLE_COUNT + allocated as u64, "C8: shard count below its records");
    }

    /// The table lets the shard go: the count it drops is [`TABLE_COUNT`] less the allocations
    /// never added to `refs` (none are made after this; C8).
    pub(crate) fn table_count(&self) -> u64 {
        let mut g = self.lock();
        TABLE_COUNT - std::mem::take(&mut g.uncredited)
    }
}

/// Cancels a creation whose `init` panicked (armed while `init` runs).
struct Cancel<'a, K: Eq + Clone, V> {
    shard: &'a Shard<K, V>,
    creation: Option<Creation<K, V>>,
    slot: u64,
}

impl<K: Eq + Clone, V> Drop for Cancel<'_, K, V> {
    fn drop(&mut self) {
        let Some(c) = self.creation.take() else { return };
        let sh = self.shard;
        let mut more = Vec::new();
        let mut g = sh.lock();
        let cancel = |w| timew::creating(timew::status(w)).then(|| timew::with_status(w, timew::CANCELLED));
        if c.handle().record().update_time(cancel).is_ok() {
            sh.cancelled(&mut g, c.handle().record(), &mut more);
            sh.clear_slot(&mut g, self.slot);
        }
        drop(g);
        drop(more);
        sh.common.unreserve();
        drop(c);
    }
}
