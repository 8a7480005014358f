//! Which stripe of a per-thread striped counter the calling thread writes, and a striped count.
//!
//! The first [`OWNED`] threads to ask for an index ([`thread_stripe`](super::thread_stripe), which
//! never gives one index to two threads) each own a stripe that no other thread writes: they count
//! with a load and a store instead of a read-modify-write. On x86-64 a store is an ordinary move
//! where a read-modify-write is a locked instruction, which waits for every store before it to
//! leave the store buffer (6.5 to 9 ns on the CI machine's CPU). Later threads share the other
//! [`SHARED`] stripes and keep the read-modify-writes. Loom builds run every model thread under one
//! index, so they always take the shared path (and loom checks its read-modify-writes).
#![forbid(unsafe_code)]

use super::atomic::{AtomicU64, Ordering};
use super::CachePadded;

/// Stripes owned each by one thread: those of the threads of index `0..OWNED`.
pub(crate) const OWNED: usize = 32;
/// Stripes shared by the threads of later index (`index % SHARED`; a power of two).
pub(crate) const SHARED: usize = 32;
/// Stripes of a striped counter.
pub(crate) const STRIPES: usize = OWNED + SHARED;

/// The calling thread's stripe (`< STRIPES`), and whether only this thread writes it.
#[inline]
pub(crate) fn own_stripe() -> (usize, bool) {
    let i = super::thread_stripe();
    if cfg!(not(flowtable_loom)) && i < OWNED {
        (i, true)
    } else {
        (OWNED + i % SHARED, false)
    }
}

/// Adds `d` (wrapping) to `c`, a counter in the calling thread's stripe, `owned` as
/// [`own_stripe`] said.
#[inline]
pub(crate) fn add_to(c: &AtomicU64, owned: bool, d: u64) {
    // Relaxed: a count; it publishes no data.
    if owned {
        // Only this thread writes its owned stripe, so a load and a store lose no count.
        c.store(c.load(Ordering::Relaxed).wrapping_add(d), Ordering::Relaxed);
    } else {
        c.fetch_add(d, Ordering::Relaxed);
    }
}

/// A count that many threads change: each changes its own stripe; the count is the (wrapping) sum.
/// A unit added on one thread and taken on another moves between stripes, so a single stripe means
/// nothing, and a sum taken while others count may be momentarily off.
#[derive(Debug)]
pub(crate) struct StripedCount {
    stripes: Box<[CachePadded<AtomicU64>]>,
}

impl StripedCount {
    pub(crate) fn new() -> Self {
        StripedCount { stripes: (0..STRIPES).map(|_| CachePadded::default()).collect() }
    }

    /// Adds `d` (wrapping) on the calling thread's stripe.
    #[inline]
    pub(crate) fn add(&self, d: usize) {
        let (i, owned) = own_stripe();
        add_to(&self.stripes[i].0, owned, d as u64);
    }

    /// Takes `d` (wrapping) on the calling thread's stripe.
    #[inline]
    pub(crate) fn sub(&self, d: usize) {
        let (i, owned) = own_stripe();
        add_to(&self.stripes[i].0, owned, (d as u64).wrapping_neg());
    }

    /// The wrapping sum of the stripes (modulo `usize`'s range, as counting in `usize` would be).
    pub(crate) fn sum(&self) -> usize {
        // Relaxed: counts.
        self.stripes.iter().fold(0u64, |n, s| n.wrapping_add(s.load(Ordering::Relaxed))) as usize
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::*;

    #[test]
    fn counts_of_owning_and_sharing_threads_sum_exactly() {
        // More threads than owned stripes (indices are handed out once per thread, so some of these
        // share), each adding on its stripe and taking back a unit another thread added.
        let c = StripedCount::new();
        let threads = OWNED + 16;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..1000 {
                        c.add(3);
                    }
                    c.sub(1000);
                });
            }
        });
        assert_eq!(c.sum(), threads * 2000);
        c.sub(threads * 2000);
        assert_eq!(c.sum(), 0);
        assert!(own_stripe().0 < STRIPES);
    }
}
