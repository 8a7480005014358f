//! The timeout heap of one shard: a radix heap ([`radix`]) of record indices keyed by the deadline
//! each record is *filed* under (stored in the record's reference word, so an entry is 4 bytes),
//! beside a small binary heap for deadlines brought forward.
//!
//! The heap holds the table's strong reference to each record in it (C9). Deadlines are lazy: a
//! touch only moves the record's last-seen time; when the filed deadline comes due the expiry pass
//! finds the moved deadline and files the record again. Removals are lazy too: a removed flow's
//! entry stays until its filed deadline, then releases the reference (see `design/memory.md` for
//! why the record has no room for a heap position), unless the entries of flows that left come to
//! be a third of the heap: then one pass takes them all out ([`Timers::note_left`]), so that a
//! table whose flows mostly leave long before their timeout (`remove`, replacement, eviction)
//! keeps at most half as many records of departed flows as it has live ones. A deadline brought
//! *forward* (`set_timeout` with a shorter timeout) gets an extra entry in the shard's side heap,
//! whose 8-byte entries carry their own deadline.
//!
//! All operations run under the shard lock. Keys are `u32` milliseconds after the shard's heap
//! epoch (deadlines before it are 0, beyond the window saturate, never is `u32::MAX`); when `now`
//! leaves the window the epoch moves and every key is recomputed from its record (C10).
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

mod radix;

use super::arena::Arena;
use super::id::{timew, NEVER};
use super::rc::{Record, RecordRef};

/// A min-heap of `T`s, ordered by a key the caller computes from an entry.
#[derive(Debug, Default)]
pub(crate) struct Heap<T> {
    items: Vec<T>,
}

#[inline]
fn earlier(a: u32, b: u32) -> bool {
    a < b
}

/// The key of a deadline that does not fit the window (never due before the epoch moves).
const SATURATED: u32 = u32::MAX - 2;
/// The `filed` value of a record in no main heap (a `WhileHeld` flow its timer released).
pub(crate) const UNFILED: u32 = u32::MAX - 1;
/// The key of the never-deadline.
const NEVER_KEY: u32 = u32::MAX;
/// The epoch moves when `now` is this far from it.
const WINDOW: u64 = 1 << 31;

impl<T: Copy> Heap<T> {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Heap { items: Vec::with_capacity(n) }
    }

    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    /// Bytes held (the vector's capacity).
    pub(crate) fn memory(&self) -> usize {
        self.items.capacity() * std::mem::size_of::<T>()
    }

    /// The earliest entry.
    pub(crate) fn peek(&self) -> Option<T> {
        self.items.first().copied()
    }

    pub(crate) fn push(&mut self, item: T, key: impl Fn(T) -> u32) {
        self.items.push(item);
        let mut i = self.items.len() - 1;
        let k = key(item);
        while i > 0 {
            let parent = (i - 1) / 2;
            if !earlier(k, key(self.items[parent])) {
                break;
            }
            self.items[i] = self.items[parent];
            i = parent;
        }
        self.items[i] = item;
    }

    /// Removes and returns the earliest entry.
    pub(crate) fn pop(&mut self, key: impl Fn(T) -> u32) -> Option<T> {
        let top = self.peek()?;
        let last = self.items.pop().expect("non-empty");
        if self.items.is_empty() {
            return Some(top);
        }
        self.sift_down(0, last, &key);
        Some(top)
    }

    /// Places `item` at position `i` or below, moving earlier children up (the one sift-down of
    /// `pop` and `heapify`).
    fn sift_down(&mut self, mut i: usize, item: T, key: &impl Fn(T) -> u32) {
        let n = self.items.len();
        let k = key(item);
        loop {
            let l = 2 * i + 1;
            if l >= n {
                break;
            }
            let r = l + 1;
            let c = if r < n && earlier(key(self.items[r]), key(self.items[l])) { r } else { l };
            if !earlier(key(self.items[c]), k) {
                break;
            }
            self.items[i] = self.items[c];
            i = c;
        }
        self.items[i] = item;
    }

    /// Removes the entries `pred` selects (O(n), then a rebuild); returns them.
    fn remove_where(&mut self, pred: impl Fn(T) -> bool, key: impl Fn(T) -> u32, out: &mut Vec<T>) {
        let before = out.len();
        self.items.retain(|&e| {
            if pred(e) {
                out.push(e);
                false
            } else {
                true
            }
        });
        if out.len() != before {
            self.heapify(key);
        }
    }

    /// Restores the heap order after keys changed (Floyd's bottom-up build).
    fn heapify(&mut self, key: impl Fn(T) -> u32) {
        let n = self.items.len();
        for start in (0..n / 2).rev() {
            let item = self.items[start];
            self.sift_down(start, item, &key);
        }
    }

    /// Takes every entry out (for `clear` and drop).
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, T> {
        self.items.drain(..)
    }

    /// Asserts the heap order (C10).
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn validate(&self, key: impl Fn(T) -> u32) {
        for i in 1..self.items.len() {
            let p = (i - 1) / 2;
            assert!(!earlier(key(self.items[i]), key(self.items[p])), "C10: heap order broken at {i}");
        }
    }
}

/// The shard's timers: the main heap (one entry per filed record, keyed by the record's `filed`
/// field) and the side heap (entries `key << 32 | idx` for deadlines brought forward).
/// Every entry owns one strong count of its record (C9).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    main: radix::Radix,
    side: Heap<u64>,
    /// Keys count milliseconds from here.
    epoch: u64,
    /// Flows that left the table while their entries stayed filed, as noted by [`Timers::note_left`]
    /// since the last purge, less the stale entries popped since (an estimate: a flow with a
    /// side entry too counts once).
    left: usize,
}

/// The fewest noted departures that start a purge: a shard holds about max(this, half its live
/// entries) records of departed flows at most.
const PURGE_MIN: usize = 64;

/// What [`Timers::pop_due`] found.
pub(crate) enum Popped<K, V> {
    /// A due timer, with the count its entry owned, and the heap it came from.
    Timer(RecordRef<K, V>, From),
    /// No timer is due.
    Nothing,
    /// The pass's redistribution work ran out before a due timer was found (some may remain).
    Later,
}

/// Which heap a popped entry came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum From {
    Main,
    Side,
}

impl Timers {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Timers { main: radix::Radix::with_capacity(n), side: Heap::with_capacity(0), epoch: 0, left: 0 }
    }

    /// Entries in both heaps.
    pub(crate) fn len(&self) -> usize {
        self.main.len() + self.side.len()
    }

    /// Notes that a filed flow left the table (under the shard lock, by the writer that made it
    /// leave). Once such flows may be a third of the entries, takes out every entry whose record
    /// left, with its count, into `out`, which the caller drops after releasing the lock (C9: the
    /// counts are released as the expiry pass would release them at their deadlines, only
    /// sooner). Amortised O(1) per departure: a purge scans the heap only after at least a third
    /// of its entries were noted (three entries per departure).
    pub(crate) fn note_left<K, V>(&mut self, arena: &Arena<K, V>, out: &mut Vec<RecordRef<K, V>>) {
        self.left += 1;
        if self.left >= PURGE_MIN && self.left * 3 >= self.len() {
            self.purge_left(arena, out);
        }
    }

    /// The expiry pass popped an entry whose flow had left (one fewer to purge).
    pub(crate) fn popped_stale(&mut self) {
        self.left = self.left.saturating_sub(1);
    }

    /// Takes out every entry whose record left the table, with its count (see `note_left`).
    fn purge_left<K, V>(&mut self, arena: &Arena<K, V>, out: &mut Vec<RecordRef<K, V>>) {
        // A filed record is active, being created, or has left; it cannot be reused while an entry
        // holds it (C9).
        let gone = |i: u32| {
            let s = timew::status(arena.get(i).time_word());
            s != timew::ACTIVE && !timew::creating(s)
        };
        let mut main = Vec::new();
        self.main.remove_where(gone, |i| arena.get(i).filed(), &mut main);
        let mut side = Vec::new();
        if self.side.len() > 0 {
            self.side.remove_where(|e| gone(e as u32), side_key, &mut side);
        }
        out.reserve(main.len() + side.len());
        out.extend(main.into_iter().map(|i| adopt(arena, i)));
        out.extend(side.into_iter().map(|e| adopt(arena, e as u32)));
        self.left = 0;
    }

    /// The key of deadline `d` (ms).
    pub(crate) fn key(&self, d: u64) -> u32 {
        if d == NEVER {
            NEVER_KEY
        } else if d <= self.epoch {
            0
        } else {
            (d - self.epoch).min(u64::from(SATURATED)) as u32
        }
    }

    /// Files `r` (its count moves into the heap) under deadline `d` in the heap `from`.
    pub(crate) fn push<K, V>(&mut self, r: RecordRef<K, V>, d: u64, from: From) {
        let idx = r.index();
        let k = self.key(d);
        match from {
            From::Main => {
                r.record().set_filed(k);
                let _ = r.into_raw(); // Upholds C9: the entry owns the count.
                self.main.push(idx, k);
            }
            From::Side => {
                let _ = r.into_raw(); // Upholds C9.
                self.side.push(u64::from(k) << 32 | u64::from(idx), side_key);
            }
        }
    }

    /// Files the main-heap entry of record `idx`, just created with the entry's count and
    /// `filed == k` already in its reference word (`Arena::create`, same hold of the lock).
    pub(crate) fn push_created(&mut self, idx: u32, k: u32) {
        self.main.push(idx, k); // Upholds C9: the entry owns the count `Arena::create` took for it.
    }

    /// Moves the epoch if `now` (ms) left the window, recomputing every key from its record's
    /// deadline (`deadline`), which is never earlier than the key it replaces (C10).
    pub(crate) fn rebase<K, V>(&mut self, arena: &Arena<K, V>, now: u64, deadline: impl Fn(&Record<K, V>) -> u64) {
        if now == u64::MAX || (now >= self.epoch && now - self.epoch < WINDOW) {
            return;
        }
        self.epoch = now.saturating_sub(WINDOW / 2);
        self.main.for_each(|i| {
            let rec = arena.get(i);
            rec.set_filed(self.key(deadline(rec)));
        });
        let keys: Vec<u32> = self.side.items.iter().map(|&e| self.key(deadline(arena.get(e as u32)))).collect();
        for (e, k) in self.side.items.iter_mut().zip(keys) {
            *e = u64::from(k) << 32 | (*e & 0xFFFF_FFFF);
        }
        self.main.rebuild(|i| arena.get(i).filed());
        self.side.heapify(side_key);
    }

    /// Pops the earliest entry due at `now` (ms; its key is not after `now`), with its count.
    /// `work` bounds the blocks of a radix redistribution this pass may move (see
    /// [`radix::Radix::pop_due`]); `Popped::Later` when it ran out first.
    pub(crate) fn pop_due<K, V>(&mut self, arena: &Arena<K, V>, now: u64, work: &mut usize) -> Popped<K, V> {
        let now_key = if now == u64::MAX {
            NEVER_KEY
        } else if now < self.epoch {
            return Popped::Nothing;
        } else {
            (now - self.epoch).min(u64::from(SATURATED) - 1) as u32
        };
        let s = self.side.peek().map(side_key).filter(|&k| k <= now_key);
        let side_first = s.is_some_and(|sk| self.main.peek_key().map_or(true, |mk| sk < mk));
        let (idx, from) = if side_first {
            (self.side.pop(side_key).expect("peeked") as u32, From::Side)
        } else {
            match self.main.pop_due(now_key, |i| arena.get(i).filed(), |i| arena.addr(i), work) {
                radix::Pop::Item(i) => (i, From::Main),
                p => {
                    if s.is_some() {
                        (self.side.pop(side_key).expect("peeked") as u32, From::Side)
                    } else if p == radix::Pop::Later {
                        return Popped::Later;
                    } else {
                        return Popped::Nothing;
                    }
                }
            }
        };
        Popped::Timer(adopt(arena, idx), from)
    }

    /// Takes out every other entry of record `idx`, with their counts: when a `WhileHeld` flow is
    /// released by one of its timers, the table gives up every reference it holds (C9). O(n) in
    /// the heaps' size; only `WhileHeld` flows with a shortened timeout have a second entry.
    pub(crate) fn take_others<K, V>(
        &mut self,
        arena: &Arena<K, V>,
        idx: u32,
        from: From,
        out: &mut Vec<RecordRef<K, V>>,
    ) {
        if from == From::Main && self.side.len() == 0 {
            return; // the common case: one entry per record, and it was just popped
        }
        let mut main = Vec::new();
        if from == From::Side {
            self.main.remove_where(|i| i == idx, |i| arena.get(i).filed(), &mut main);
        }
        let mut side = Vec::new();
        self.side.remove_where(|e| e as u32 == idx, side_key, &mut side);
        out.extend(main.into_iter().map(|i| adopt(arena, i)));
        out.extend(side.into_iter().map(|e| adopt(arena, e as u32)));
    }

    /// Takes every entry out, with its count.
    pub(crate) fn drain_into<K, V>(&mut self, arena: &Arena<K, V>, out: &mut Vec<RecordRef<K, V>>) {
        self.left = 0;
        self.main.drain(|i| out.push(adopt(arena, i)));
        out.extend(self.side.drain().map(|e| adopt(arena, e as u32)));
    }

    /// Bytes held.
    pub(crate) fn memory(&self) -> usize {
        self.main.memory() + self.side.memory()
    }

    /// Asserts C10 on both heaps.
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn validate<K, V>(&self, arena: &Arena<K, V>) {
        self.main.validate(|i| arena.get(i).filed());
        self.side.validate(side_key);
    }
}

fn side_key(e: u64) -> u32 {
    (e >> 32) as u32
}

/// The count an entry for `idx` owned, as a reference.
fn adopt<K, V>(arena: &Arena<K, V>, idx: u32) -> RecordRef<K, V> {
    let rec = arena.get(idx);
    // SAFETY: every heap entry owns one count of its record, moved in by `push` (C9); the entry
    // was just removed, so the count moves to the new ref exactly once.
    unsafe { RecordRef::adopt(rec) }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn pops_in_order() {
        let keys: Vec<u32> = (0..1000u32).map(|i| i.wrapping_mul(7919) % 1000).collect();
        let mut h = Heap::with_capacity(0);
        for (i, _) in keys.iter().enumerate() {
            h.push(i as u32, |j| keys[j as usize]);
            h.validate(|j| keys[j as usize]);
        }
        let mut last = None;
        h.heapify(|j| keys[j as usize]);
        h.validate(|j| keys[j as usize]);
        while let Some(i) = h.pop(|j| keys[j as usize]) {
            let k = keys[i as usize];
            if let Some(l) = last {
                assert!(!earlier(k, l));
            }
            last = Some(k);
        }
    }
}
