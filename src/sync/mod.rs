//! The one place that decides which synchronisation primitives the library uses.
//!
//! Every atomic, lock, condition variable and reference count of the crate is imported from here.
//! Normally these are `std` atomics, `std::sync::Arc`/`Weak` and `parking_lot` locks. Built with
//! `RUSTFLAGS="--cfg flowtable_loom"`, they are loom's, so that the loom models in `loom-tests/`
//! explore the real code's interleavings. A crate-specific cfg is used rather than `--cfg loom` so
//! that dependencies are not rebuilt in loom mode.
//!
//! The std side adopts the API the loom side can offer: `Mutex::lock` returns the guard directly
//! (no poisoning), `try_lock` returns an `Option`, `hint::spin_loop` yields under loom.
#![forbid(unsafe_code)]

#[cfg(not(flowtable_loom))]
mod std_impl;
#[cfg(not(flowtable_loom))]
pub(crate) use std_impl::*;

#[cfg(flowtable_loom)]
mod loom_impl;
#[cfg(flowtable_loom)]
pub(crate) use loom_impl::*;

#[cfg(flowtable_loom)]
pub mod loom_mutant;
#[cfg(flowtable_loom)]
mod loom_rc;

pub(crate) mod striped;

/// Whether the injected bug `name` is active: always `false` (const-folded) outside loom builds.
#[cfg(not(flowtable_loom))]
#[inline(always)]
#[allow(dead_code)]
pub(crate) const fn mutant(_name: &'static str) -> bool {
    false
}

/// Whether the injected bug `name` is active (selected by [`loom_mutant::set`]).
#[cfg(flowtable_loom)]
#[allow(dead_code)]
pub(crate) fn mutant(name: &'static str) -> bool {
    loom_mutant::active(name)
}

/// The calling thread's index: 0, 1, 2... in the order threads first ask for it, never the same
/// for two threads (indices of finished threads are not handed out again). Picks a thread's
/// stripe of a striped counter ([`striped`]), so that threads counting the same events write
/// different cache lines, and the first threads own theirs: that an owned stripe has one writer
/// rests on the uniqueness.
///
/// Its counter is a plain `std` atomic even in loom builds, where all model threads share one OS
/// thread and so one index: there [`striped::own_stripe`] never reports a stripe as owned.
/// (It used to hash the address of a thread-local. Two threads' addresses can hash to one
/// stripe, and as the C library hands new threads the stacks of finished ones, the same two
/// addresses come back: two workers spawned by a benchmark shared a stripe of 8 in every
/// repetition.)
#[inline]
pub(crate) fn thread_stripe() -> usize {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    std::thread_local!(static INDEX: Cell<usize> = const { Cell::new(usize::MAX) });
    INDEX.with(|i| match i.get() {
        usize::MAX => {
            // Relaxed: only uniqueness matters, which the read-modify-write gives.
            let v = NEXT.fetch_add(1, Ordering::Relaxed).min(usize::MAX - 1);
            i.set(v);
            v
        }
        v => v,
    })
}

/// Pads and aligns a value to its own cache lines (two, as adjacent-line prefetch pairs them).
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct CachePadded<T>(pub(crate) T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(all(test, not(flowtable_loom)))]
mod tests {
    use super::thread_stripe;

    #[test]
    fn live_threads_have_distinct_stable_stripe_indices() {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let b = std::sync::Arc::clone(&barrier);
                std::thread::spawn(move || {
                    let first = thread_stripe();
                    b.wait(); // all eight alive at once
                    assert_eq!(thread_stripe(), first, "a thread keeps its index");
                    first
                })
            })
            .collect();
        let mut seen: Vec<usize> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), 8, "threads alive together never share an index");
    }
}
