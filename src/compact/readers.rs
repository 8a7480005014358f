//! Read sections of lock-free lookups, so that a slot array replaced by growth can be freed once
//! no lookup can still be probing it (C1).
//!
//! A lookup enters a section (one atomic increment of the calling thread's stripe) before it loads
//! the shard's current array and leaves it (one decrement) after its last access to the array. A
//! writer that replaced an array (under the shard lock) frees it only after it has seen every
//! stripe at zero at some moment *after* the replacement: a lookup that entered before the
//! replacement is then finished, and one that enters after it loads the new array. Stripes are
//! per thread (by the thread's index), on their own cache lines, so concurrent lookups write
//! different lines.
//!
//! Orderings: the increment, the array load in [`Slots::array_read`](super::slots::Slots) and the
//! writer's replacing store and stripe loads are `SeqCst`, which puts each lookup's increment
//! either before the writer's stripe load (which then sees it, or its decrement) or after the
//! replacing store (so the lookup loads the new array). The decrement is `Release` and the
//! writer's zero-reading load `SeqCst` (so `Acquire`): the lookup's accesses happen before the
//! free.
#![forbid(unsafe_code)]

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::CachePadded;

/// Stripes of a table (at most 64: a retired array records which it has seen at zero in a `u64`).
const STRIPES: usize = 32;

/// The read-section counters of one table.
pub(crate) struct Readers {
    stripes: Box<[CachePadded<AtomicUsize>]>,
}

/// Proof of being inside a read section; leaving it on drop.
pub(crate) struct ReadGuard<'a> {
    count: &'a AtomicUsize,
}

impl Readers {
    pub(crate) fn new() -> Self {
        Readers { stripes: (0..STRIPES).map(|_| CachePadded::default()).collect() }
    }

    /// Enters a read section on the calling thread's stripe.
    #[inline]
    pub(crate) fn enter(&self) -> ReadGuard<'_> {
        let count = &self.stripes[crate::sync::thread_stripe() % STRIPES].0;
        count.fetch_add(1, Ordering::SeqCst);
        ReadGuard { count }
    }

    /// Marks in `seen` the stripes that are at zero now; returns whether all have been seen.
    pub(crate) fn observe(&self, seen: &mut u64) -> bool {
        for (i, s) in self.stripes.iter().enumerate() {
            if *seen & (1 << i) == 0 && s.load(Ordering::SeqCst) == 0 {
                *seen |= 1 << i;
            }
        }
        *seen == ALL_SEEN
    }
}

/// `seen` when every stripe has been seen at zero.
const ALL_SEEN: u64 = if STRIPES == 64 { u64::MAX } else { (1 << STRIPES) - 1 };

impl Drop for ReadGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn a_grace_period_waits_for_sections_entered_before_it() {
        let r = Readers::new();
        let g = r.enter();
        let mut seen = 0;
        assert!(!r.observe(&mut seen), "a section is open");
        assert_eq!(seen.count_ones() as usize, STRIPES - 1);
        drop(g);
        assert!(r.observe(&mut seen));
        // Nested sections on one thread.
        let (a, b) = (r.enter(), r.enter());
        let mut seen = 0;
        drop(a);
        assert!(!r.observe(&mut seen));
        drop(b);
        assert!(r.observe(&mut seen));
    }
}
