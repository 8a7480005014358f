//! `Stats::memory_bytes` tells the truth: checked against a counting global allocator.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::*;
use flowtable::{FlowTable, FlowTableBuilder};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's obligations for `alloc` are passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` was allocated by `System` with layout `l` (every allocation goes through `alloc`).
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static A: Counting = Counting;

backend_tests!(memory_estimate_is_close_to_allocated_bytes);

/// The allocation counter is process-wide: the backends' instances of the test take turns.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn memory_estimate_is_close_to_allocated_bytes<B: Backend>() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let before = LIVE.load(Ordering::Relaxed);
    let t = FlowTableBuilder::new().shards(8).idle_timeout(secs(60)).build::<T<B>>().unwrap();
    let n = 200_000u32;
    for i in 0..n {
        drop(t.get_or_insert_with(key(i), ms(0), || u64::from(i)).unwrap());
    }
    let allocated = (LIVE.load(Ordering::Relaxed) - before) as f64;
    let reported = t.stats().memory_bytes as f64;
    let ratio = reported / allocated;
    eprintln!(
        "{}: allocated {allocated} B, reported {reported} B ({:.1} B/flow), ratio {ratio:.3}",
        T::<B>::NAME,
        reported / f64::from(n)
    );
    assert!((0.8..=1.2).contains(&ratio), "memory_bytes is off by more than 20%: ratio {ratio:.3}");
}
