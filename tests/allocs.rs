//! Zero heap allocations per `get`, `get_batch`, `get_or_insert_with`, `get_or_insert_batch`,
//! `touch` and `expire` once a compact table is at its steady size (a counting global allocator;
//! counts only the test thread).
#![cfg(feature = "compact")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use flowtable::{proto, CompactFlowTable, FlowHandle, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone};

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to `System`; the bookkeeping touches only const-initialised thread-locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: the caller's obligations are passed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.with(|a| a.set(a.get() + 1));
        }
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` on this thread.
fn allocs_in(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

fn key(i: u32) -> FlowKeyV4 {
    FlowKeyV4::new(proto::TCP, (0x0a00_0000 | i).into(), 1000, [192, 0, 2, 1].into(), 443, Zone::DEFAULT).0
}

#[test]
fn steady_state_operations_do_not_allocate() {
    const N: u32 = 20_000;
    let t: CompactFlowTable<FlowKeyV4, u64> = FlowTableBuilder::new()
        .shards(8)
        .capacity(2 * N as usize) // headroom: per-shard counts vary as keys change
        .idle_timeout(Duration::from_secs(10))
        .listener(|_ev| {})
        .build()
        .unwrap();
    let ms = Timestamp::from_millis;
    // Fill, then churn once through a full generation so that the free lists, slot arrays and heaps
    // reach their steady size.
    for i in 0..N {
        t.get_or_insert_with(key(i), ms(0), || u64::from(i)).unwrap();
    }
    assert_eq!(t.expire(ms(10_000), usize::MAX), N as usize);
    for i in 0..N {
        t.get_or_insert_with(key(N + i), ms(10_000), || u64::from(i)).unwrap();
    }
    let keys: Vec<FlowKeyV4> = (N..N + 64).map(key).collect();
    let mut out = Vec::with_capacity(keys.len());
    let now = ms(15_000);

    let n = allocs_in(|| {
        for i in N..2 * N {
            let h = t.get(&key(i), now).expect("live");
            assert!(h.touch(now));
        }
    });
    assert_eq!(n, 0, "get + touch allocated");

    let n = allocs_in(|| {
        for _ in 0..100 {
            t.get_batch(&keys, now, &mut out);
        }
    });
    assert_eq!(n, 0, "get_batch allocated");
    out.clear();

    let n = allocs_in(|| {
        for i in N..2 * N {
            assert!(!t.get_or_insert_with(key(i), now, || 0).unwrap().created);
        }
    });
    assert_eq!(n, 0, "get_or_insert_with (existing) allocated");

    let mut made = Vec::with_capacity(keys.len());
    let n = allocs_in(|| {
        for _ in 0..100 {
            t.get_or_insert_batch(&keys, now, |_| 0, &mut made);
            assert!(made.iter().all(|r| r.as_ref().is_ok_and(|g| !g.created)));
        }
    });
    assert_eq!(n, 0, "get_or_insert_batch (existing) allocated");
    made.clear();
    let mut fresh = Vec::with_capacity(N as usize);

    // Churn: expire half, create as many new flows (records, slots and timers are reused).
    let n = allocs_in(|| {
        for round in 0..4u32 {
            let at = ms(25_000 + u64::from(round) * 10_000);
            let gone = t.expire(at, usize::MAX);
            assert!(gone > 0);
            // Half the new flows one call each, half in batches.
            let half = gone as u32 / 2;
            for i in 0..half {
                let k = key(4 * N + round * N + i);
                assert!(t.get_or_insert_with(k, at, || 7).unwrap().created);
            }
            fresh.clear();
            fresh.extend((half..gone as u32).map(|i| key(4 * N + round * N + i)));
            for chunk in fresh.chunks(64) {
                t.get_or_insert_batch(chunk, at, |_| 7, &mut made);
                assert!(made.iter().all(|r| r.as_ref().is_ok_and(|g| g.created)));
            }
        }
    });
    assert_eq!(n, 0, "expire + get_or_insert_with / get_or_insert_batch (new) allocated");
    t.debug_validate();
}
