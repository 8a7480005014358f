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
//! Stripes are chosen as for every striped counter of the crate ([`striped`]): the first threads
//! each own one, count with a load and a store and leave a section with a plain `Release` store,
//! which on x86-64 is an ordinary move where a decrement is a locked instruction; later threads
//! share the other stripes and keep the read-modify-writes (so do loom builds).
//!
//! Orderings: the increment (an RMW, or the owner's store), the array load in
//! [`Slots::array_read`](super::slots::Slots) and the writer's replacing store and stripe loads
//! are `SeqCst`, which puts each lookup's increment either before the writer's stripe load (which
//! then sees it, or its decrement) or after the replacing store (so the lookup loads the new
//! array). The decrement (an RMW, or the owner's store) is `Release` and the writer's zero-reading
//! load `SeqCst` (so `Acquire`): the lookup's accesses happen before the free.
#![forbid(unsafe_code)]

use std::marker::PhantomData;

use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::striped::{self, STRIPES};
use crate::sync::CachePadded;

// A retired array records the stripes it has seen at zero in a `u64`.
const _: () = assert!(STRIPES <= 64);

/// The read-section counters of one table.
pub(crate) struct Readers {
    stripes: Box<[CachePadded<AtomicUsize>]>,
}

/// Proof of being inside a read section; leaving it on drop. Not `Send`: an owned stripe is
/// written only by its thread, so the section is left on the thread that entered it.
pub(crate) struct ReadGuard<'a> {
    count: &'a AtomicUsize,
    owned: bool,
    _thread: PhantomData<*const ()>,
}

impl Readers {
    pub(crate) fn new() -> Self {
        Readers { stripes: (0..STRIPES).map(|_| CachePadded::default()).collect() }
    }

    /// Enters a read section on the calling thread's stripe.
    #[inline]
    pub(crate) fn enter(&self) -> ReadGuard<'_> {
        let (i, owned) = striped::own_stripe();
        let count = &self.stripes[i].0;
        if owned {
            // Only this thread writes its owned stripe, so a load and a store lose no count.
            // SeqCst: ordered before the array load as the read-modify-write was (C1).
            count.store(count.load(Ordering::Relaxed) + 1, Ordering::SeqCst);
        } else {
            count.fetch_add(1, Ordering::SeqCst);
        }
        ReadGuard { count, owned, _thread: PhantomData }
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
        if self.owned {
            // Release, as the decrement (C1); a plain store: only this thread writes the stripe.
            self.count.store(self.count.load(Ordering::Relaxed) - 1, Ordering::Release);
        } else {
            self.count.fetch_sub(1, Ordering::Release);
        }
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

    #[test]
    fn sections_on_owned_and_shared_stripes_count_alike() {
        // More threads than owned stripes: the later ones share stripes and count by RMWs.
        let r = Readers::new();
        let open = std::sync::Barrier::new(striped::OWNED + 9);
        let done = std::sync::Barrier::new(striped::OWNED + 9);
        std::thread::scope(|s| {
            for _ in 0..striped::OWNED + 8 {
                s.spawn(|| {
                    let g = r.enter();
                    let nested = r.enter();
                    drop(g);
                    open.wait();
                    done.wait();
                    drop(nested);
                });
            }
            open.wait();
            let mut seen = 0;
            assert!(!r.observe(&mut seen), "sections are open on other threads");
            done.wait();
        });
        let mut seen = 0;
        assert!(r.observe(&mut seen), "every section was left");
        assert!(r.stripes.iter().all(|s| s.load(Ordering::Relaxed) == 0));
    }
}
