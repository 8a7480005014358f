//! The open-addressing slot table of one shard: 8-byte slots (`tag | gen | idx`, see
//! [`id::slot`](super::id::slot)), linear probing, lock-free readers, writers under the shard lock.
//!
//! - Readers load the current array and probe it; a slot whose record's generation moved on is
//!   dead and the reader reaps it on the spot (`live → TOMB` by CAS, C2).
//! - Writers (holding the shard lock, witnessed by `&mut SlotsW`) place slots into `EMPTY`/`TOMB`
//!   slots or over dead ones, clear slots to `TOMB` and turn a run of `TOMB`s that ends at an
//!   `EMPTY` back into `EMPTY`s (C3), rebuild the array in place when tombstones pile up, and grow it
//!   into a new array when live slots pass the load limit.
//! - Rebuilds and growth bump `seq`; a reader that found nothing re-checks `seq` and probes again
//!   (a seqlock on misses only, C3).
//! - An array replaced by growth is retired, and freed (`reclaim`, under the shard lock) once every
//!   read section open when it was replaced has closed ([`readers`](super::readers), C1). Lock-free
//!   readers reach the array only through [`Slots::array_read`], inside a read section.
#![allow(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

use super::id::slot::{self, EMPTY, TOMB};
use super::pages::PageArray;
use crate::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use crate::sync::CachePadded;

use super::readers::{ReadGuard, Readers};

/// Live slots may fill this fraction of an array (per mille) before it grows.
const MAX_LIVE_PERMILLE: usize = 780;
/// Live slots plus tombstones may fill this fraction before the array is rebuilt in place.
const MAX_USED_PERMILLE: usize = 840;
/// The smallest array.
const MIN_CAP: usize = 16;
/// The capacity an array grows to: twice a small one, 1.25 times one of 4,096 slots or more. A
/// large table that grew to its size then sits between 62% and 78% full instead of 39% and 78%
/// (slots are a fifth to a quarter of a flow's bytes: 10.3 to 12.8 bytes instead of up to 20.5),
/// and growth holds the old and the new array together at 2.25 times the old size instead of 3.
/// Over a table's growth it copies four times as many slots as doubling would; growth reads only
/// the slot words (see `Slots::grow`: the old array in order, the new one almost in order since
/// homes are monotonic in the tag), a few nanoseconds per slot.
fn grown_cap(cap: usize) -> usize {
    if cap < 4096 {
        cap * 2
    } else {
        cap + cap / 4
    }
}

/// Prefetches the cache line at `p` into all cache levels (a no-op off x86-64).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint; it never faults, whatever the address.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Slots ahead of the current one whose records a rebuild or growth prefetches.
const FETCH_AHEAD: usize = 16;

/// Prefetches the record of the live slot `FETCH_AHEAD` places after `i`, if any.
#[inline]
fn fetch_ahead(data: &[AtomicU64], i: usize, fetch: &dyn Fn(u64)) {
    if let Some(a) = data.get(i + FETCH_AHEAD) {
        let v = a.load(Ordering::Relaxed);
        if slot::is_live(v) {
            fetch(v);
        }
    }
}

/// One slot array. Its length is its capacity (any number, not only powers of two).
pub(crate) struct SlotArray {
    /// Huge pages for large arrays: a lookup's TLB miss then walks a shorter path, and growth
    /// takes 512 times fewer page faults ([`pages`](super::pages)).
    data: PageArray<AtomicU64>,
}

impl SlotArray {
    fn new(cap: usize) -> Box<SlotArray> {
        Box::new(SlotArray { data: PageArray::new(cap.max(MIN_CAP), |_| AtomicU64::new(EMPTY)) })
    }
    #[inline]
    pub(crate) fn cap(&self) -> usize {
        self.data.len()
    }
    /// The slot at `pos`. Acquire: pairs with the Release store that published it, so the record
    /// initialisation before it is visible (C5).
    #[inline]
    pub(crate) fn get(&self, pos: usize) -> u64 {
        self.data[pos].load(Ordering::Acquire)
    }
    #[inline]
    pub(crate) fn next(&self, pos: usize) -> usize {
        if pos + 1 == self.data.len() {
            0
        } else {
            pos + 1
        }
    }
    #[inline]
    pub(crate) fn home(&self, tag: u32) -> usize {
        slot::home(tag, self.data.len())
    }
    /// The address of a slot, for prefetching.
    #[inline]
    pub(crate) fn addr(&self, pos: usize) -> *const u8 {
        (&self.data[pos] as *const AtomicU64).cast()
    }
    /// Prefetches the cache line after the one holding slot `pos` when `pos` is among the last
    /// two slots of its line: at the load factors tables run at (0.62 to 0.78) a probe often
    /// reads a slot or two past its home (`get_batch`, which prefetches before it probes; a single
    /// lookup gained nothing measurable from it).
    #[inline]
    pub(crate) fn prefetch_run(&self, pos: usize) {
        let a = self.addr(pos) as usize;
        if a % 64 >= 48 && pos + 2 < self.data.len() {
            prefetch((a + 64 - a % 64) as *const u8);
        }
    }
    /// First `EMPTY` at or after the home of `tag`.
    fn first_empty(&self, tag: u32) -> usize {
        let mut p = self.home(tag);
        while self.data[p].load(Ordering::Relaxed) != EMPTY {
            p = self.next(p);
        }
        p
    }
}

/// An array replaced by growth, and the read-section stripes seen at zero since.
struct Retired {
    /// Boxed: readers hold `&SlotArray`s, so the header must not move either.
    arr: Box<SlotArray>,
    seen: u64,
}

/// The shard's slot table.
pub(crate) struct Slots {
    /// The current array; every array ever stored here stays allocated until `Slots` drops (C1).
    current: AtomicPtr<SlotArray>,
    /// Even when no rebuild runs; bumped around rebuilds and after growth (C3).
    seq: AtomicU64,
    /// The current array's first slot and capacity, copied here for [`Slots::prefetch_home`],
    /// which reads them outside any read section: only a prefetch address is made from them, so
    /// a stale or mixed pair (during growth) costs a useless prefetch, never a wrong read.
    hint_base: AtomicUsize,
    hint_cap: AtomicUsize,
    /// Counters written without the shard lock, on their own cache lines (readers that reap
    /// write them, readers that probe read `current`).
    lockless: CachePadded<Lockless>,
}

/// See [`Slots::lockless`].
struct Lockless {
    /// Tombstones made by readers' reaping, folded into [`SlotsW::tombs`] by writers.
    reaped: AtomicUsize,
    /// Flows that left without the shard lock (so without clearing their slot) since the array
    /// was last grown or rebuilt: an upper bound on the dead slots it holds, read by growth.
    orphaned: AtomicUsize,
}

/// The writers' part of the slot table, kept inside the shard lock.
pub(crate) struct SlotsW {
    /// Arrays replaced by growth, kept until no read section that may probe them is open (C1).
    retired: Vec<Retired>,
    /// Live slots (placed and not yet cleared; dead ones count until reaped).
    pub(crate) live: usize,
    /// Tombstones.
    pub(crate) tombs: usize,
}

impl Slots {
    pub(crate) fn new(cap: usize) -> (Slots, SlotsW) {
        let arr = SlotArray::new(cap);
        let (base, cap) = (arr.addr(0) as usize, arr.cap());
        let arr = Box::into_raw(arr);
        (
            Slots {
                current: AtomicPtr::new(arr),
                seq: AtomicU64::new(0),
                hint_base: AtomicUsize::new(base),
                hint_cap: AtomicUsize::new(cap),
                lockless: CachePadded(Lockless { reaped: AtomicUsize::new(0), orphaned: AtomicUsize::new(0) }),
            },
            SlotsW { retired: Vec::new(), live: 0, tombs: 0 },
        )
    }

    /// The slot count that holds `n` live slots within the load limit.
    pub(crate) fn cap_for(n: usize) -> usize {
        (n.saturating_mul(1000) / MAX_LIVE_PERMILLE + 1).max(MIN_CAP)
    }

    /// The current array, for a writer holding the shard lock (which excludes `reclaim`); the
    /// reference must not be kept past the lock.
    #[inline]
    pub(crate) fn array(&self) -> &SlotArray {
        // SeqCst (a plain load on x86-64): the ordering the read-section protocol relies on
        // (see `readers`); it includes Acquire, pairing with the store of a grown array.
        let p = self.current.load(Ordering::SeqCst);
        // SAFETY: `p` came from `Box::into_raw`; an array is freed only by `reclaim` (under the
        // shard lock, after a grace period) or in `Slots::drop` (C1). Callers hold the shard lock
        // or a read guard, and the borrow ends before they release it.
        unsafe { &*p }
    }

    /// The current array, for a lock-free reader inside a read section; valid as long as the
    /// section (C1).
    #[inline]
    pub(crate) fn array_read<'g>(&'g self, _in: &'g ReadGuard<'_>) -> &'g SlotArray {
        self.array()
    }

    /// Prefetches the home slot of `tag` before a lookup enters its read section, so that the
    /// slot's miss overlaps the section's entry (a full fence) instead of following it. Reads no
    /// slot: the address comes from the hint fields, which may be stale (see there).
    #[inline]
    pub(crate) fn prefetch_home(&self, tag: u32) {
        #[cfg(not(flowtable_loom))]
        {
            // Relaxed: a hint; nothing is read through the address but a prefetch.
            let base = self.hint_base.load(Ordering::Relaxed);
            let cap = self.hint_cap.load(Ordering::Relaxed);
            prefetch(base.wrapping_add(slot::home(tag, cap) * 8) as *const u8);
        }
        #[cfg(flowtable_loom)]
        let _ = tag;
    }

    /// Frees the retired arrays that no open read section may still probe (C1). Shard lock held.
    pub(crate) fn reclaim(&self, w: &mut SlotsW, readers: &Readers) {
        w.retired.retain_mut(|r| !readers.observe(&mut r.seen));
    }

    /// The sequence number a reader takes before probing (C3).
    #[inline]
    pub(crate) fn read_begin(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Whether a probe that began at `seq` and found nothing must be redone (C3).
    #[inline]
    pub(crate) fn read_retry(&self, seq: u64) -> bool {
        // The probe's slot loads are Acquire, so this re-read of `seq` cannot move before them.
        seq & 1 == 1 || self.seq.load(Ordering::Relaxed) != seq
    }

    /// Reaps the dead slot `old` at `pos` (a reader's or a writer's find found its record's
    /// generation moved on). Losing the race to anyone is fine.
    pub(crate) fn reap(&self, arr: &SlotArray, pos: usize, old: u64) {
        // Relaxed: the slot word is the only data; nothing else is published by a tombstone.
        if arr.data[pos].compare_exchange(old, TOMB, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.lockless.reaped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Notes that a flow left without the shard lock: its slot stays, dead, until a probe reaps
    /// it or the array is grown or rebuilt.
    pub(crate) fn orphan(&self) {
        // Relaxed: a hint for growth; a count lost to a racing reset only makes growth skip the
        // check that would have dropped that one dead slot (it is reaped later instead).
        self.lockless.orphaned.fetch_add(1, Ordering::Relaxed);
    }

    fn fold(&self, w: &mut SlotsW) {
        // A load first: the swap is a locked instruction, and readers rarely reap.
        if self.lockless.reaped.load(Ordering::Relaxed) == 0 {
            return;
        }
        let r = self.lockless.reaped.swap(0, Ordering::Relaxed);
        w.tombs += r;
        w.live = w.live.saturating_sub(r);
    }

    /// Puts `new` at `pos`, which a writer's find chose: an `EMPTY`, a `TOMB`, or a slot whose
    /// value is `old` (a dead slot or the slot of the flow being displaced). Returns `false` if a
    /// reader changed `pos` meanwhile (the caller finds again).
    pub(crate) fn place(&self, w: &mut SlotsW, pos: usize, old: u64, new: u64) -> bool {
        self.fold(w);
        let arr = self.array();
        if !slot::is_live(old) {
            // An `EMPTY` or `TOMB` changes only under the shard lock (a reader's only write is
            // the reaping CAS of a live-looking slot, C2), so it is still `old` and a store does
            // what the CAS below would.
            debug_assert_eq!(arr.data[pos].load(Ordering::Relaxed), old);
            // Release: publishes the record initialised before (C5).
            arr.data[pos].store(new, Ordering::Release);
            w.live += 1;
            if old == TOMB {
                w.tombs = w.tombs.saturating_sub(1);
            }
            return true;
        }
        // A dead slot that a reader may reap meanwhile. Release: publishes the record initialised
        // before (C5). The slot stays counted as live.
        arr.data[pos].compare_exchange(old, new, Ordering::Release, Ordering::Relaxed).is_ok()
    }

    /// Clears the slot `old` at `pos` (the flow left the table), then turns the run of tombstones
    /// that ends at an `EMPTY` into `EMPTY`s (C3).
    pub(crate) fn clear(&self, w: &mut SlotsW, pos: usize, old: u64) {
        self.fold(w);
        let arr = self.array();
        // Relaxed: a tombstone publishes nothing.
        if arr.data[pos].compare_exchange(old, TOMB, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            w.live = w.live.saturating_sub(1);
            w.tombs += 1;
        }
        if arr.data[arr.next(pos)].load(Ordering::Relaxed) != EMPTY {
            return;
        }
        // Upholds C3: no live slot's probe path crosses an EMPTY, so a TOMB just before an EMPTY
        // is on no live slot's path either. Readers never write TOMB or EMPTY; we hold the lock.
        let mut p = pos;
        let mut n = 0;
        while n < arr.cap() && arr.data[p].load(Ordering::Relaxed) == TOMB {
            arr.data[p].store(EMPTY, Ordering::Relaxed);
            w.tombs = w.tombs.saturating_sub(1);
            n += 1;
            p = if p == 0 { arr.cap() - 1 } else { p - 1 };
        }
    }

    /// Makes room for one more slot before a writer places into an `EMPTY`: rebuilds in place if
    /// tombstones crowd the array, grows it if live slots would pass the load limit. `alive`
    /// tells whether a live-looking slot's record still has the slot's generation.
    /// Returns whether the array changed (positions found before are stale).
    /// `fetch` prefetches what `alive` reads for a slot (the rebuild and the growth run it a few
    /// slots ahead, so that their record reads overlap instead of queueing one DRAM miss each).
    pub(crate) fn make_room(&self, w: &mut SlotsW, alive: impl Fn(u64) -> bool, fetch: impl Fn(u64)) -> bool {
        self.fold(w);
        let cap = self.array().cap();
        if (w.live + 1) * 1000 > cap * MAX_LIVE_PERMILLE {
            self.grow(w, &alive, &fetch);
            true
        } else if (w.live + w.tombs + 1) * 1000 > cap * MAX_USED_PERMILLE {
            self.rebuild(w, &alive, &fetch);
            true
        } else {
            false
        }
    }

    /// Rebuilds the current array in place: tombstones and dead slots become `EMPTY`, live slots
    /// move to the first `EMPTY` from their home. Readers that miss meanwhile retry (C3).
    fn rebuild(&self, w: &mut SlotsW, alive: &dyn Fn(u64) -> bool, fetch: &dyn Fn(u64)) {
        let arr = self.array();
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s + 1, Ordering::Relaxed);
        // Release fence: a reader that sees any store below also sees `seq` odd (C3).
        fence(Ordering::Release);
        let mut live = 0;
        let mut start = None;
        for (p, a) in arr.data.iter().enumerate() {
            fetch_ahead(&arr.data, p, fetch);
            let v = a.load(Ordering::Relaxed);
            if v == EMPTY {
                start.get_or_insert(p);
            } else if v == TOMB || !alive(v) {
                a.store(EMPTY, Ordering::Relaxed);
            } else {
                live += 1;
            }
        }
        // Start after an EMPTY that was EMPTY before this rebuild: by C3 no live slot's path crosses
        // it, so in this order every slot moves only towards its home, and a position cleared later
        // lies on no path of a slot placed earlier. (A TOMB made EMPTY above may lie on such paths;
        // starting there was the bug the churn test's `debug_validate` caught.)
        if let Some(start) = start {
            let cap = arr.cap();
            for i in 1..=cap {
                let p = (start + i) % cap;
                let v = arr.data[p].load(Ordering::Relaxed);
                if slot::is_live(v) {
                    arr.data[p].store(EMPTY, Ordering::Relaxed);
                    let q = arr.first_empty(slot::tag(v));
                    arr.data[q].store(v, Ordering::Relaxed);
                }
            }
        }
        w.live = live;
        w.tombs = 0;
        self.lockless.orphaned.store(0, Ordering::Relaxed);
        // Release: the rebuilt array is visible to a reader that sees the even `seq`.
        self.seq.store(s + 2, Ordering::Release);
    }

    /// Moves the live slots into an array [`grown_cap`] slots long and publishes it (C1, C3).
    ///
    /// Writers clear the slots of flows that leave under the lock, so dead slots are only those of
    /// flows that left without it (counted in `orphaned`) and not yet reaped. Unless those may be
    /// many (over 1/16 of the array), growth copies every live-looking slot without reading its
    /// record: that read is a DRAM miss per slot on a large table, and a dead slot copied stays a
    /// weak reference that the next probe reaps (C2).
    fn grow(&self, w: &mut SlotsW, alive: &dyn Fn(u64) -> bool, fetch: &dyn Fn(u64)) {
        let old_ptr = self.current.load(Ordering::Relaxed);
        let old = self.array();
        let new = SlotArray::new(grown_cap(old.cap()));
        let check = self.lockless.orphaned.swap(0, Ordering::Relaxed) * 16 > old.cap();
        let mut live = 0;
        for (i, a) in old.data.iter().enumerate() {
            let v = a.load(Ordering::Relaxed);
            if slot::is_live(v) && (!check || alive(v)) {
                let q = new.first_empty(slot::tag(v));
                new.data[q].store(v, Ordering::Relaxed);
                live += 1;
            }
            if check {
                fetch_ahead(&old.data, i, fetch);
            }
        }
        w.live = live;
        w.tombs = 0;
        // Relaxed: hints for `prefetch_home` only.
        self.hint_base.store(new.addr(0) as usize, Ordering::Relaxed);
        self.hint_cap.store(new.cap(), Ordering::Relaxed);
        // SeqCst (includes Release: readers that load the new pointer see its contents): the
        // read-section protocol orders it against the readers' entries (see `readers`).
        self.current.store(Box::into_raw(new), Ordering::SeqCst);
        // SAFETY: `old_ptr` came from `Box::into_raw` and is no longer current; ownership moves to
        // `retired`, which keeps it allocated until `reclaim` sees no read section that may probe
        // it (C1).
        w.retired.push(Retired { arr: unsafe { Box::from_raw(old_ptr) }, seen: 0 });
        // Release: a reader that sees the new `seq` sees the new pointer (C3).
        self.seq.fetch_add(2, Ordering::Release);
        self.lockless.reaped.store(0, Ordering::Relaxed);
    }

    /// Bytes held: the current array and the retired ones.
    pub(crate) fn memory(&self, w: &SlotsW) -> usize {
        let cur = self.array().cap() * 8;
        cur + w.retired.iter().map(|r| r.arr.cap() * 8).sum::<usize>()
    }

    /// Asserts C1-C3 over the current array (under the shard lock).
    #[cfg(any(test, debug_assertions))]
    pub(crate) fn validate(&self, w: &SlotsW) {
        let arr = self.array();
        let live = arr.data.iter().filter(|a| slot::is_live(a.load(Ordering::Relaxed))).count();
        assert!(live <= arr.cap());
        assert!(w.live + self.lockless.reaped.load(Ordering::Relaxed) >= live || w.live <= live, "live count drifted");
        // C3: every live slot is reachable from its home without crossing an EMPTY.
        for (p, a) in arr.data.iter().enumerate() {
            let v = a.load(Ordering::Relaxed);
            if slot::is_live(v) {
                let mut q = arr.home(slot::tag(v));
                while q != p {
                    assert_ne!(arr.data[q].load(Ordering::Relaxed), EMPTY, "C3: slot at {p} unreachable");
                    q = arr.next(q);
                }
            }
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        // Acquire: pairs with the last publication (`&mut self` already excludes readers).
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: `p` came from `Box::into_raw` and is freed only here (C1); `&mut self` means no
        // reader is left.
        drop(unsafe { Box::from_raw(p) });
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    fn put(s: &Slots, w: &mut SlotsW, tag: u32, idx: u32) -> usize {
        s.make_room(w, |_| true, |_| {});
        let arr = s.array();
        let mut p = arr.home(tag);
        loop {
            let v = arr.get(p);
            if v == EMPTY || v == TOMB {
                assert!(s.place(w, p, v, slot::pack(tag, 0, idx)));
                return p;
            }
            p = arr.next(p);
        }
    }

    fn find(s: &Slots, tag: u32, idx: u32) -> Option<usize> {
        let arr = s.array();
        let mut p = arr.home(tag);
        for _ in 0..arr.cap() {
            let v = arr.get(p);
            if v == EMPTY {
                return None;
            }
            if slot::is_live(v) && slot::idx(v) == idx {
                return Some(p);
            }
            p = arr.next(p);
        }
        None
    }

    /// Growth reads no record unless flows left without the lock: dead slots it copies stay weak
    /// references (still found as slots, reaped later); once enough orphans were noted it checks
    /// every slot and drops the dead ones.
    #[test]
    fn growth_checks_liveness_only_after_orphaned_exits() {
        use std::cell::Cell;
        for orphans in [0usize, 4, 64] {
            let (s, mut w) = Slots::new(16);
            for i in 0..12u32 {
                put(&s, &mut w, i << 20, i);
            }
            // Flows 0..4 left without the lock: their slots are dead, still in the array.
            for _ in 0..orphans {
                s.orphan();
            }
            let reads = Cell::new(0);
            let alive = |v: u64| {
                reads.set(reads.get() + 1);
                slot::idx(v) >= 4
            };
            while s.array().cap() == 16 {
                s.make_room(&mut w, alive, |_| {});
            }
            let kept = (0..4).filter(|&i| find(&s, i << 20, i).is_some()).count();
            // Over 1/16 of the 16-slot array (more than one orphan) makes growth check.
            if orphans > 1 {
                assert_eq!((reads.get(), kept, w.live), (12, 0, 8), "{orphans} orphans");
            } else {
                assert_eq!((reads.get(), kept, w.live), (0, 4, 12), "{orphans} orphans");
            }
            assert!((4..12).all(|i| find(&s, i << 20, i).is_some()));
            s.validate(&w);
        }
    }

    /// Regression: an in-place rebuild that started after a tombstone it had just cleared (not after
    /// a slot that was already `EMPTY`) could strand a slot whose path crossed that tombstone
    /// (found by `debug_validate` in the churn stress test under ASan's debug build).
    #[test]
    fn rebuilds_keep_every_path_intact_across_the_wrap() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _round in 0..300 {
            let (s, mut w) = Slots::new(16);
            let mut present: Vec<(u32, u32)> = Vec::new();
            for i in 0..400u32 {
                if present.len() < 11 && rnd() % 3 != 0 {
                    // Homes clustered at the end of the array, so that runs wrap around.
                    let tag = ((1 << 28) - 1 - (rnd() % (1 << 26)) as u32) & ((1 << 28) - 1);
                    put(&s, &mut w, tag, i);
                    present.push((tag, i));
                } else if !present.is_empty() {
                    let (tag, j) = present.swap_remove((rnd() as usize) % present.len());
                    let p = find(&s, tag, j).expect("present");
                    s.clear(&mut w, p, slot::pack(tag, 0, j));
                }
                s.validate(&w);
                for &(tag, j) in &present {
                    assert!(find(&s, tag, j).is_some());
                }
            }
        }
    }

    #[test]
    fn churn_keeps_everything_reachable() {
        let (s, mut w) = Slots::new(16);
        let tag = |i: u32| (i.wrapping_mul(2_654_435_761) >> 4) & ((1 << 28) - 1);
        let mut present = std::collections::VecDeque::new();
        for i in 0..20_000u32 {
            put(&s, &mut w, tag(i), i);
            present.push_back(i);
            if present.len() > 500 {
                let j = present.pop_front().unwrap();
                let p = find(&s, tag(j), j).expect("present");
                s.clear(&mut w, p, slot::pack(tag(j), 0, j));
            }
            if i % 997 == 0 {
                s.validate(&w);
            }
        }
        for &j in &present {
            assert!(find(&s, tag(j), j).is_some());
        }
        assert_eq!(w.live, present.len());
        assert!(s.array().cap() <= 4096, "grew to {}", s.array().cap());
    }
}
