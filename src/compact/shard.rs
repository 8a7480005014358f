//! One shard of the compact backend: its slot table, record arena and timers, and the operations
//! on them. Readers take no lock; writers serialise on the shard mutex. No user callback (listener,
//! value `Drop`) runs under the mutex: references that may be the last one are dropped after it
//! is released, and exits are notified after it is released (C11).
//!
//! The numbered invariants C1..C11 are stated in `design/concurrency.md` (compact section).
#![forbid(unsafe_code)]

use super::arena::{Arena, NONE};
use super::heap::{From, Timers};
use super::id::{self, slot, timew};
use super::rc::Due;
use super::rc::{Creation, DeadRecord, RecordRef};
use super::slots::{SlotArray, Slots, SlotsW};
use crate::listener::{notify_each, AsEvent, Listener, RemovalEvent};
use crate::stats::{Counters, Event};
use crate::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use crate::sync::{Arc, Condvar, Mutex, MutexGuard};
use crate::{FlowStatus, RemovalCause, TableFull, Timestamp};

/// What all shards of a table share (kept alive by every shard, so late handle drops can use it).
pub(crate) struct Common<K, V> {
    pub(crate) listener: Option<Listener<K, V>>,
    pub(crate) counters: Counters,
    /// Flows in the table (reserved before a flow is published, released when it leaves).
    pub(crate) live: AtomicUsize,
    pub(crate) max_flows: usize,
    /// The latest `now` seen by a writer (ns): the reference that expands `u32` ticks.
    pub(crate) clock: AtomicU64,
}

impl<K, V> Common<K, V> {
    fn reserve(&self) -> bool {
        // Relaxed: the count bounds memory; it orders nothing else.
        self.live.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| (n < self.max_flows).then_some(n + 1)).is_ok()
    }
    fn force_reserve(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }
    fn unreserve(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
    pub(crate) fn observe(&self, now: Timestamp) {
        let n = now.as_nanos();
        // Relaxed: a hint for expanding ticks; only ever moves forward.
        if n > self.clock.load(Ordering::Relaxed) {
            self.clock.fetch_max(n, Ordering::Relaxed);
        }
    }
    pub(crate) fn clock(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }
}

/// Per-flow defaults of new records.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Defaults {
    pub(crate) timeout: u32,
    pub(crate) held: bool,
}

struct Locked {
    slots: SlotsW,
    timers: Timers,
    /// Head of the free list of records (`NONE` if empty).
    free: u32,
}

/// One shard.
pub(crate) struct Shard<K, V> {
    /// One count for the table, one per allocated record (C8).
    pub(crate) refs: AtomicUsize,
    slots: Slots,
    pub(crate) arena: Arena<K, V>,
    locked: Mutex<Locked>,
    /// Signalled when a creation finishes or is abandoned.
    created: Condvar,
    pub(crate) common: Arc<Common<K, V>>,
    index: usize,
    probes: AtomicU64,
    lookups: AtomicU64,
    probe_max: AtomicU64,
}

/// What a writer's search found.
enum Found<K, V> {
    /// A slot of the key whose record still has the slot's generation, with a reference to it.
    Hit { pos: usize, slot: u64, rec: RecordRef<K, V> },
    /// No such slot; `pos`/`old` is where a new slot may go (first `TOMB`, or the `EMPTY`).
    Miss { pos: usize, old: u64 },
}

/// A flow that left, with its cause, to be counted and notified after the lock.
struct Exit<'a, K, V>(&'a RecordRef<K, V>, RemovalCause, u64);

impl<K, V> AsEvent<K, V> for Exit<'_, K, V> {
    fn as_event(&self) -> RemovalEvent<'_, K, V> {
        let w = self.0.record().time_word();
        RemovalEvent {
            key: self.0.key(),
            value: self.0.value(),
            cause: self.1,
            last_seen: id::expand(timew::last(w), self.2),
            deadline: id::expand(timew::deadline(w), self.2),
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

/// Up to this many flows per expiry batch (one lock hold); a stack array, no allocation.
const BATCH: usize = 32;

impl<K, V> Shard<K, V> {
    pub(crate) fn new(index: usize, slots_cap: usize, heap_cap: usize, common: Arc<Common<K, V>>) -> Self {
        let (slots, w) = Slots::new(slots_cap);
        Shard {
            refs: AtomicUsize::new(1),
            slots,
            arena: Arena::new(),
            locked: Mutex::new(Locked { slots: w, timers: Timers::with_capacity(heap_cap), free: NONE }),
            created: Condvar::new(),
            common,
            index,
            probes: AtomicU64::new(0),
            lookups: AtomicU64::new(0),
            probe_max: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        self.locked.lock()
    }

    fn count(&self, e: Event) {
        self.common.counters.add(self.index, e);
    }

    /// Counts, un-reserves and notifies the exits (no lock held).
    fn finish_exits(&self, exits: &[(RecordRef<K, V>, RemovalCause)]) {
        for (_, c) in exits {
            self.common.unreserve();
            self.count(Event::Left(*c));
        }
        let clock = self.common.clock();
        notify_each(self.common.listener.as_ref(), exits.iter().map(|(r, c)| Exit(r, *c, clock)));
    }

    fn finish_exit(&self, r: &RecordRef<K, V>, c: RemovalCause) {
        self.common.unreserve();
        self.count(Event::Left(c));
        notify_each(self.common.listener.as_ref(), [Exit(r, c, self.common.clock())]);
    }

    /// Whether a slot's record still has the slot's generation (for rebuilds).
    fn alive(&self, v: u64) -> bool {
        self.arena.get(slot::idx(v)).gen() == slot::gen(v)
    }

    fn note_probe(&self, n: u64) {
        // Relaxed: statistics, written under the shard lock only.
        self.probes.store(self.probes.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        self.lookups.store(self.lookups.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if n > self.probe_max.load(Ordering::Relaxed) {
            self.probe_max.store(n, Ordering::Relaxed);
        }
    }

    /// (probes, lookups, max) of the writers' searches.
    pub(crate) fn probe_stats(&self) -> (u64, u64, u64) {
        (self.probes.load(Ordering::Relaxed), self.lookups.load(Ordering::Relaxed), self.probe_max.load(Ordering::Relaxed))
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
            if !slot::is_live(old) && self.slots.make_room(&mut w.slots, |v| self.alive(v)) {
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
        let mut g = self.lock();
        let g = &mut *g;
        self.arena.free(&mut g.free, idx);
    }

    /// The exit of a record whose last reference went while it was still in the table (a
    /// `WhileHeld` flow whose timer released it): it leaves as expired, here, on this thread.
    pub(crate) fn on_dead(&self, dead: &DeadRecord<K, V>) {
        let rec = dead.record();
        if !rec.transition(timew::ACTIVE, FlowStatus::Expired as u64) {
            return;
        }
        rec.bump_gen(); // Upholds C2: its slot is dead from now on (reaped by the next probe).
        self.common.unreserve();
        self.count(Event::Left(RemovalCause::Expired));
        if let (Some(l), Some(value)) = (self.common.listener.as_ref(), dead.value()) {
            let w = rec.time_word();
            let clock = self.common.clock();
            l(RemovalEvent {
                key: dead.key(),
                value,
                cause: RemovalCause::Expired,
                last_seen: id::expand(timew::last(w), clock),
                deadline: id::expand(timew::deadline(w), clock),
            });
        }
    }
}

impl<K: Eq + Clone, V> Shard<K, V> {
    /// The live, visible flow of `key` at tick `now`. Lock-free (C2, C3, C7).
    #[inline]
    pub(crate) fn lookup(&self, key: &K, hash: u64, now: u32) -> Option<RecordRef<K, V>> {
        let tag = slot::tag_of(hash);
        loop {
            let seq = self.slots.read_begin();
            let arr = self.slots.array();
            let mut p = arr.home(tag);
            for _ in 0..arr.cap() {
                let v = arr.get(p);
                if v == slot::EMPTY {
                    break;
                }
                if v != slot::TOMB && slot::tag(v) == tag {
                    match self.arena.try_ref(slot::idx(v), slot::gen(v)) {
                        // The key is compared only once the reference pins the record (C2).
                        Some(r) if r.key() == key => return r.record().visible(now).then_some(r),
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
    fn find(&self, key: &K, hash: u64, defer: &mut Vec<RecordRef<K, V>>) -> Found<K, V> {
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

    /// Allocates and initialises a `PENDING` record of `key` (shard lock held, count reserved).
    fn alloc(&self, w: &mut Locked, key: K, now: Timestamp, d: Defaults) -> Option<Creation<K, V>> {
        let idx = self.arena.alloc(&mut w.free)?;
        self.refs.fetch_add(1, Ordering::Relaxed); // Upholds C8: the allocated record counts.
        let time = timew::new(id::tick_ceil(now), timew::PENDING, d.held, d.timeout);
        Some(self.arena.create(idx, key, time))
    }

    /// Files an active record's timer and counts its creation (shard lock held).
    fn activate(&self, w: &mut Locked, r: &RecordRef<K, V>) {
        let deadline = timew::deadline(r.record().time_word());
        w.timers.push(&self.arena, r.clone(), deadline, From::Main);
        self.count(Event::Created);
    }

    /// `get_or_insert_with` on this shard (see the trait). `init` runs with no lock held.
    pub(crate) fn get_or_insert<F: FnOnce() -> V>(
        &self,
        key: K,
        hash: u64,
        now: Timestamp,
        d: Defaults,
        init: F,
    ) -> Result<(RecordRef<K, V>, bool), TableFull> {
        let t = id::tick_floor(now);
        let tag = slot::tag_of(hash);
        let mut init = Some(init);
        let mut ready: Option<V> = None;
        let mut key = Some(key);
        loop {
            let k = key.as_ref().expect("key kept until the record takes it");
            if let Some(r) = self.lookup(k, hash, t) {
                return Ok((r, false));
            }
            let mut defer = Vec::new();
            let mut displaced = None;
            let mut g = self.lock();
            let (pos, old) = match self.find(k, hash, &mut defer) {
                Found::Miss { pos, old } => (pos, old),
                Found::Hit { pos, slot: v, rec } => {
                    let s = timew::status(rec.record().time_word());
                    if s == timew::PENDING {
                        // Another caller runs `init` for this key: wait for it, then look again.
                        // Our reference is not the last (the creator holds one until it finishes,
                        // which needs the lock).
                        defer.push(rec);
                        let g = self.created.wait(g);
                        drop(g);
                        drop(defer);
                        continue;
                    }
                    if rec.record().visible(t) {
                        drop(g);
                        return Ok((rec, false));
                    }
                    if s == timew::ACTIVE {
                        match rec.record().leave_if_due(t) {
                            Ok(()) => {
                                rec.record().bump_gen(); // Upholds C2.
                                displaced = Some(rec);
                            }
                            Err(true) => {
                                drop(g);
                                return Ok((rec, false));
                            }
                            Err(false) => defer.push(rec),
                        }
                    } else {
                        defer.push(rec);
                    }
                    (pos, v)
                }
            };
            let reserved = if displaced.is_some() {
                self.common.force_reserve();
                true
            } else {
                self.common.reserve()
            };
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
                self.count(Event::RejectedFull);
                return Err(TableFull { max_flows: self.common.max_flows });
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
            let value = match ready.take() {
                Some(v) => v,
                None => (init.take().expect("init runs once"))(),
            };
            c = guard.creation.take().expect("creation");
            drop(guard);
            c.write_value(value);

            let mut g = self.lock();
            if c.handle().record().transition(timew::PENDING, timew::ACTIVE) {
                let r = c.into_ref();
                self.activate(&mut g, &r);
                self.created.notify_all();
                drop(g);
                return Ok((r, true));
            }
            // `insert` took the key while `init` ran: its flow stands; ours never was one. Look
            // again; if that flow is already gone, create again with the value `init` made.
            drop(g);
            self.common.unreserve();
            key = Some(c.handle().key().clone());
            ready = c.take_back();
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
    ) -> Result<(RecordRef<K, V>, Option<RecordRef<K, V>>), TableFull> {
        let t = id::tick_floor(now);
        let tag = slot::tag_of(hash);
        let mut defer = Vec::new();
        let mut left: Option<(RecordRef<K, V>, RemovalCause)> = None;
        let mut g = self.lock();
        let (pos, old) = match self.find(&key, hash, &mut defer) {
            Found::Miss { pos, old } => (pos, old),
            Found::Hit { pos, slot: v, rec } => {
                let r = rec.record();
                loop {
                    let s = timew::status(r.time_word());
                    if s == timew::PENDING {
                        // A creation in flight: cancel it; its creator finds our flow.
                        if r.transition(timew::PENDING, timew::CANCELLED) {
                            r.bump_gen(); // Upholds C2.
                            self.created.notify_all();
                            defer.push(rec);
                            break;
                        }
                        continue;
                    }
                    if s != timew::ACTIVE {
                        defer.push(rec);
                        break;
                    }
                    if r.visible(t) {
                        if r.transition(timew::ACTIVE, cause_status(RemovalCause::Replaced)) {
                            r.bump_gen(); // Upholds C2.
                            left = Some((rec, RemovalCause::Replaced));
                            break;
                        }
                    } else if r.leave_if_due(t).is_ok() {
                        r.bump_gen(); // Upholds C2.
                        left = Some((rec, RemovalCause::Expired));
                        break;
                    }
                }
                (pos, v)
            }
        };
        if left.is_some() {
            self.common.force_reserve();
        } else if !self.common.reserve() {
            drop(g);
            self.count(Event::RejectedFull);
            return Err(TableFull { max_flows: self.common.max_flows });
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
            self.count(Event::RejectedFull);
            return Err(TableFull { max_flows: self.common.max_flows });
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
        let mut defer = Vec::new();
        let mut g = self.lock();
        let found = self.find(key, hash, &mut defer);
        let out = match found {
            Found::Hit { pos, slot: v, rec } => {
                if rec.record().transition(timew::ACTIVE, cause_status(RemovalCause::Removed)) {
                    rec.record().bump_gen(); // Upholds C2.
                    self.slots.clear(&mut g.slots, pos, v);
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

impl<K, V> Shard<K, V> {
    /// The address of the home slot of `hash` (for prefetching).
    #[inline]
    pub(crate) fn home_addr(&self, hash: u64) -> *const u8 {
        let arr = self.slots.array();
        arr.addr(arr.home(slot::tag_of(hash)))
    }

    /// The address of the record the home slot of `hash` names, if its tag matches.
    #[inline]
    pub(crate) fn home_record_addr(&self, hash: u64) -> Option<*const u8> {
        let arr = self.slots.array();
        let tag = slot::tag_of(hash);
        let v = arr.get(arr.home(tag));
        (slot::is_live(v) && slot::tag(v) == tag).then(|| self.arena.addr(slot::idx(v)))
    }

    /// The table is being dropped: every flow leaves (cause `Removed`), every timer is released.
    pub(crate) fn drop_table(&self) {
        self.clear();
    }

    /// One expiry pass over this shard, up to `budget` flows. `hash` recomputes a key's hash
    /// (outside the lock) to clear expired flows' slots.
    pub(crate) fn expire(&self, now: Timestamp, budget: usize, hash: &dyn Fn(&K) -> u64) -> usize {
        let t = id::tick_floor(now);
        let mut total = 0;
        while total < budget {
            let mut expired: [Option<RecordRef<K, V>>; BATCH] = std::array::from_fn(|_| None);
            let mut released: [Option<RecordRef<K, V>>; BATCH] = std::array::from_fn(|_| None);
            let (mut ne, mut nr) = (0, 0);
            let want = (budget - total).min(BATCH);
            {
                let mut g = self.lock();
                let g = &mut *g;
                while ne < want && nr < BATCH {
                    let Some((r, from)) = g.timers.pop_due(&self.arena, t) else { break };
                    match r.record().try_expire(t) {
                        Due::Moved(d) => g.timers.push(&self.arena, r, d, from),
                        Due::Stale | Due::Release => {
                            released[nr] = Some(r);
                            nr += 1;
                        }
                        Due::Expired => {
                            r.record().bump_gen(); // Upholds C2.
                            expired[ne] = Some(r);
                            ne += 1;
                        }
                    }
                }
            }
            if ne == 0 && nr == 0 {
                break;
            }
            if ne > 0 {
                let mut slots = [0u64; BATCH];
                for (i, r) in expired[..ne].iter().enumerate() {
                    let r = r.as_ref().expect("filled");
                    let gen = r.record().gen().wrapping_sub(1);
                    slots[i] = slot::pack(slot::tag_of(hash(r.key())), gen, r.index());
                }
                let mut g = self.lock();
                for v in &slots[..ne] {
                    self.clear_slot(&mut g, *v);
                }
            }
            let clock = self.common.clock();
            for r in expired[..ne].iter().flatten() {
                let _ = r;
                self.common.unreserve();
                self.count(Event::Left(RemovalCause::Expired));
            }
            notify_each(
                self.common.listener.as_ref(),
                expired[..ne].iter().flatten().map(|r| Exit(r, RemovalCause::Expired, clock)),
            );
            total += ne;
            drop(expired);
            drop(released); // a `WhileHeld` flow whose last handle is gone leaves here (`on_dead`)
            if ne < want && nr < BATCH {
                break;
            }
        }
        total
    }

    /// Removes every flow of the shard (cause `Removed`) and releases every timer; returns how
    /// many flows left.
    pub(crate) fn clear(&self) -> usize {
        let mut removed = Vec::new();
        let mut other = Vec::new();
        {
            let mut g = self.lock();
            let g = &mut *g;
            let arr = self.slots.array();
            for p in 0..arr.cap() {
                let v = arr.get(p);
                if !slot::is_live(v) {
                    continue;
                }
                let Some(r) = self.arena.try_ref(slot::idx(v), slot::gen(v)) else { continue };
                if r.record().transition(timew::ACTIVE, cause_status(RemovalCause::Removed)) {
                    r.record().bump_gen(); // Upholds C2.
                    self.slots.clear(&mut g.slots, p, v);
                    removed.push((r, RemovalCause::Removed));
                } else {
                    other.push(r);
                }
            }
            g.timers.drain_into(&self.arena, &mut other);
        }
        self.finish_exits(&removed);
        let n = removed.len();
        drop(removed);
        drop(other);
        n
    }

    /// The flows visible at tick `now`, collected under the lock (called back after it).
    pub(crate) fn collect(&self, now: u32, out: &mut Vec<RecordRef<K, V>>, defer: &mut Vec<RecordRef<K, V>>) {
        let _g = self.lock();
        let arr = self.slots.array();
        for p in 0..arr.cap() {
            let v = arr.get(p);
            if !slot::is_live(v) {
                continue;
            }
            if let Some(r) = self.arena.try_ref(slot::idx(v), slot::gen(v)) {
                if r.record().visible(now) {
                    out.push(r);
                } else {
                    defer.push(r);
                }
            }
        }
    }

    /// Files an extra timer for a flow whose deadline moved forward (`set_timeout` shorter).
    pub(crate) fn advance(&self, r: &RecordRef<K, V>) {
        let mut g = self.lock();
        let w = r.record().time_word();
        if timew::status(w) != timew::ACTIVE {
            return;
        }
        let d = timew::deadline(w);
        if id::after(r.record().filed(), d) {
            g.timers.push(&self.arena, r.clone(), d, From::Side);
        }
    }

    /// Bytes held by the shard's structures.
    pub(crate) fn memory(&self) -> usize {
        let g = self.lock();
        self.slots.memory(&g.slots) + self.arena.memory() + g.timers.memory()
    }

    /// Asserts the shard's invariants (lock taken here).
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn validate(&self) {
        let g = self.lock();
        self.slots.validate(&g.slots);
        g.timers.validate(&self.arena);
        assert!(g.timers.len() <= self.arena.len() as usize * 2 + 1);
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
        let mut g = sh.lock();
        if c.handle().record().transition(timew::PENDING, timew::CANCELLED) {
            c.handle().record().bump_gen(); // Upholds C2.
            sh.clear_slot(&mut g, self.slot);
        }
        sh.created.notify_all();
        drop(g);
        sh.common.unreserve();
        drop(c);
    }
}
