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

/// A number that differs between threads (not a dense index): picks a thread's stripe of a
/// striped counter, so that threads counting the same events write different cache lines.
#[inline]
pub(crate) fn thread_stripe() -> usize {
    std::thread_local!(static HERE: u8 = const { 0 });
    // Threads' thread-local blocks lie at distinct addresses: hash this one's.
    let a = HERE.with(|h| h as *const u8 as usize);
    ((a >> 4) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(24) as usize
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
