//! A counting global allocator: live bytes and allocation calls, striped per thread so that
//! counting does not make threads share one cache line on every allocation.
//!
//! Bytes are the sizes *requested* from the allocator (`Layout::size`); the allocator's own
//! per-chunk overhead and fragmentation are not included. `realloc` counts as one allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

const STRIPES: usize = 16;

#[repr(align(128))]
struct Stripe {
    bytes: AtomicI64,
    allocs: AtomicU64,
}

static STRIPE: [Stripe; STRIPES] = [const { Stripe { bytes: AtomicI64::new(0), allocs: AtomicU64::new(0) } }; STRIPES];
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and no destructor: reading it never allocates and works until the thread ends.
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

fn stripe() -> &'static Stripe {
    let i = INDEX
        .try_with(|c| {
            let mut i = c.get();
            if i == usize::MAX {
                i = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
                c.set(i);
            }
            i
        })
        .unwrap_or(0);
    &STRIPE[i]
}

// Relaxed everywhere: the counters order nothing; readers sum them after the measured code ran
// on this thread or after joining the threads that ran it.
fn on_alloc(size: usize) {
    let s = stripe();
    s.bytes.fetch_add(size as i64, Ordering::Relaxed);
    s.allocs.fetch_add(1, Ordering::Relaxed);
}

fn on_free(size: usize) {
    stripe().bytes.fetch_sub(size as i64, Ordering::Relaxed);
}

/// The system allocator, counted.
pub struct Counting;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees are ours; the counting around it neither allocates nor touches the memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract (non-zero size), which is
        // `System::alloc`'s.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    // SAFETY: (the method's contract) forwarded unchanged to `System::alloc_zeroed`; see the block below.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`: the same contract as `System::alloc_zeroed`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            on_alloc(layout.size());
        }
        p
    }

    // SAFETY: (the method's contract) forwarded unchanged to `System::dealloc`; see the block below.
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` came from this allocator (hence from `System`, as
        // every method forwards there) with this `layout`.
        unsafe { System.dealloc(ptr, layout) };
        on_free(layout.size());
    }

    // SAFETY: (the method's contract) forwarded unchanged to `System::realloc`; see the block below.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from this allocator (so from `System`) with
        // `layout`, and that `new_size` is valid for it: `System::realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            on_free(layout.size());
            on_alloc(new_size);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes allocated and not yet freed, by every thread.
pub fn live_bytes() -> i64 {
    STRIPE.iter().map(|s| s.bytes.load(Ordering::Relaxed)).sum()
}

/// Allocation calls (`alloc`, `alloc_zeroed`, `realloc`) so far, by every thread.
pub fn allocs() -> u64 {
    STRIPE.iter().map(|s| s.allocs.load(Ordering::Relaxed)).sum()
}
