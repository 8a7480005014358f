//! The timeout heap of one shard: a binary min-heap of record indices keyed by the deadline each
//! record is *filed* under (stored in the record's reference word, so an entry is 4 bytes).
//!
//! The heap holds the table's strong reference to each record in it (C9). Deadlines are lazy: a
//! touch only moves the record's last-seen time; when the filed deadline comes due the expiry pass
//! finds the moved deadline and files the record again. Removals are lazy too: a removed flow's
//! entry stays until its filed deadline, then releases the reference (see `design/memory.md` for
//! why the record has no room for a heap position). A deadline brought *forward* (`set_timeout`
//! with a shorter timeout) gets an extra entry in the shard's side heap, whose 8-byte entries carry
//! their own deadline.
//!
//! All operations run under the shard lock. Keys are `u32` ticks compared wraparound-safely.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use super::arena::Arena;
use super::id::after;
use super::rc::RecordRef;

/// A min-heap of `T`s, ordered by a key the caller computes from an entry.
#[derive(Debug, Default)]
pub(crate) struct Heap<T> {
    items: Vec<T>,
}

#[inline]
fn earlier(a: u32, b: u32) -> bool {
    after(b, a)
}

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
        let n = self.items.len();
        if n == 0 {
            return Some(top);
        }
        let k = key(last);
        let mut i = 0;
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
        self.items[i] = last;
        Some(top)
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
/// field) and the side heap (entries `deadline << 32 | idx` for deadlines brought forward).
/// Every entry owns one strong count of its record (C9).
#[derive(Debug, Default)]
pub(crate) struct Timers {
    main: Heap<u32>,
    side: Heap<u64>,
}

/// Which heap a popped entry came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum From {
    Main,
    Side,
}

impl Timers {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Timers { main: Heap::with_capacity(n), side: Heap::with_capacity(0) }
    }

    /// Files `r` (its count moves into the heap) under `deadline` in the heap it `from`.
    pub(crate) fn push<K, V>(&mut self, arena: &Arena<K, V>, r: RecordRef<K, V>, deadline: u32, from: From) {
        let idx = r.index();
        match from {
            From::Main => {
                r.record().set_filed(deadline);
                let _ = r.into_raw(); // Upholds C9: the entry owns the count.
                self.main.push(idx, |i| arena.get(i).filed());
            }
            From::Side => {
                let _ = r.into_raw(); // Upholds C9.
                self.side.push(u64::from(deadline) << 32 | u64::from(idx), side_key);
            }
        }
    }

    /// Pops the earliest entry due at tick `now` (its deadline is not after `now`), with its count.
    pub(crate) fn pop_due<K, V>(&mut self, arena: &Arena<K, V>, now: u32) -> Option<(RecordRef<K, V>, From)> {
        let m = self.main.peek().map(|i| arena.get(i).filed()).filter(|&k| !after(k, now));
        let s = self.side.peek().map(side_key).filter(|&k| !after(k, now));
        let (idx, from) = match (m, s) {
            (None, None) => return None,
            (Some(a), Some(b)) if after(a, b) => (self.side.pop(side_key)? as u32, From::Side),
            (Some(_), _) => (self.main.pop(|i| arena.get(i).filed())?, From::Main),
            (None, Some(_)) => (self.side.pop(side_key)? as u32, From::Side),
        };
        Some((adopt(arena, idx), from))
    }

    /// Takes every entry out, with its count.
    pub(crate) fn drain_into<K, V>(&mut self, arena: &Arena<K, V>, out: &mut Vec<RecordRef<K, V>>) {
        out.extend(self.main.drain().map(|i| adopt(arena, i)));
        out.extend(self.side.drain().map(|e| adopt(arena, e as u32)));
    }

    /// Entries in both heaps.
    pub(crate) fn len(&self) -> usize {
        self.main.len() + self.side.len()
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
    fn pops_in_order_across_wrap() {
        let base = u32::MAX - 500;
        let keys: Vec<u32> = (0..1000u32).map(|i| base.wrapping_add(i.wrapping_mul(7919) % 1000)).collect();
        let mut h = Heap::with_capacity(0);
        for (i, _) in keys.iter().enumerate() {
            h.push(i as u32, |j| keys[j as usize]);
            h.validate(|j| keys[j as usize]);
        }
        let mut last = None;
        while let Some(i) = h.pop(|j| keys[j as usize]) {
            let k = keys[i as usize];
            if let Some(l) = last {
                assert!(!earlier(k, l));
            }
            last = Some(k);
        }
    }
}
