//! A counting global allocator: live bytes and allocation calls, kept per thread so that counting
//! neither makes threads share a cache line nor costs a locked instruction per allocation.
//!
//! The first [`OWNED`] threads that allocate each own a counter that only they write, with a
//! plain load and store: a locked read-modify-write is a full barrier on x86, and one per
//! allocation would slow the allocation-heavy side of a speed comparison (the dashmap backend
//! allocates per flow, the compact backend does not). Later threads share [`SHARED`] counters
//! through `fetch_add`.
//!
//! Bytes are the sizes *requested* from the allocator (`Layout::size`); the allocator's own
//! per-chunk overhead and fragmentation are not included. `realloc` counts as one allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

/// Counters owned by one thread each (written without a locked instruction).
const OWNED: usize = 256;
/// Counters shared by the threads beyond the first [`OWNED`] (written with `fetch_add`).
const SHARED: usize = 16;

#[repr(align(128))]
struct Stripe {
    bytes: AtomicI64,
    allocs: AtomicU64,
}

static STRIPE: [Stripe; OWNED + SHARED] =
    [const { Stripe { bytes: AtomicI64::new(0), allocs: AtomicU64::new(0) } }; OWNED + SHARED];
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // `const` and no destructor: reading it never allocates and works until the thread ends.
    static INDEX: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// This thread's counter and whether it owns it. A thread whose thread-locals are already gone
/// (allocating in a destructor at exit) counts in a shared one.
fn stripe() -> (&'static Stripe, bool) {
    let i = INDEX
        .try_with(|c| {
            let mut i = c.get();
            if i == usize::MAX {
                i = NEXT.fetch_add(1, Ordering::Relaxed);
                c.set(i);
            }
            i
        })
        .unwrap_or(usize::MAX);
    if i < OWNED {
        (&STRIPE[i], true)
    } else {
        (&STRIPE[OWNED + i % SHARED], false)
    }
}

// Relaxed everywhere: the counters order nothing; readers sum them after the measured code ran
// on this thread or after joining the threads that ran it. An owned counter has one writer, so
// its load and store lose no update; readers may see it at any moment, never torn.
fn add(s: &Stripe, owned: bool, bytes: i64, allocs: u64) {
    if owned {
        s.bytes.store(s.bytes.load(Ordering::Relaxed) + bytes, Ordering::Relaxed);
        if allocs != 0 {
            s.allocs.store(s.allocs.load(Ordering::Relaxed) + allocs, Ordering::Relaxed);
        }
    } else {
        s.bytes.fetch_add(bytes, Ordering::Relaxed);
        if allocs != 0 {
            s.allocs.fetch_add(allocs, Ordering::Relaxed);
        }
    }
}

fn on_alloc(size: usize) {
    let (s, owned) = stripe();
    add(s, owned, size as i64, 1);
}

fn on_free(size: usize) {
    let (s, owned) = stripe();
    add(s, owned, -(size as i64), 0);
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
            let (s, owned) = stripe();
            add(s, owned, new_size as i64 - layout.size() as i64, 1);
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
