//! The benchmark adapters (`benches/support/adapter.rs`) do the same work on every table: one
//! seeded single-thread workload of lookups, touches, new flows, removals and expiry passes on a
//! virtual clock gives the same counts on every backend and every peer. No timings.

use std::time::Duration;

use flowtable::Timestamp;
use rand::RngExt;

#[path = "../benches/support/mod.rs"]
mod support;

use support::adapter::{for_each_table, BenchTable, Setup, Visit};
use support::workload::{key_of, keys, rng};

/// What one table did with the workload.
#[derive(Debug, PartialEq, Eq)]
struct Counts {
    hits: usize,
    touched: usize,
    created: usize,
    removed: usize,
    expired: usize,
    len: usize,
    flushed: usize,
}

fn workload<B: BenchTable>() -> Counts {
    const N: usize = 500;
    const OPS: u64 = 20_000;
    // Whole milliseconds: every backend's tick (up to 1 ms) sees the same deadlines.
    let at = |ms: u64| Timestamp::from_secs(1_000) + Duration::from_millis(ms);
    let t = B::build(&Setup::growing(Duration::from_millis(2_000)));
    let universe = keys(1, N);
    let mut r = rng(42);
    let mut c = Counts { hits: 0, touched: 0, created: 0, removed: 0, expired: 0, len: 0, flushed: 0 };
    let mut fresh = 0;
    for i in 0..OPS {
        let now = at(i);
        let roll = r.random_range(0..100u32);
        if roll < 10 {
            fresh += 1;
            let (_, created) = t.get_or_insert(key_of(2, fresh), now).expect("no limit");
            c.created += usize::from(created);
        } else if roll < 12 {
            c.removed += usize::from(t.remove(&universe[r.random_range(0..N)]));
        } else {
            let k = &universe[r.random_range(0..N)];
            match t.get(k, now) {
                Some(f) => {
                    c.hits += 1;
                    c.touched += usize::from(t.touch(&f, now));
                }
                None => {
                    let (_, created) = t.get_or_insert(*k, now).expect("no limit");
                    c.created += usize::from(created);
                }
            }
        }
        if i % 100 == 99 {
            c.expired += t.expire(now, usize::MAX);
        }
    }
    t.settle();
    c.len = t.len();
    c.flushed = t.expire(at(OPS + 10_000), usize::MAX);
    t.settle();
    assert_eq!(t.len(), 0, "{}: a late expiry pass empties the table", B::name());
    c
}

struct Compare(Vec<(&'static str, Counts)>);

impl Visit for Compare {
    fn visit<B: BenchTable>(&mut self) {
        self.0.push((B::name(), workload::<B>()));
    }
}

#[test]
fn every_table_does_the_same_work() {
    let mut all = Compare(Vec::new());
    for_each_table(&mut all, true);
    let (first, expected) = &all.0[0];
    assert!(expected.expired > 0 && expected.created > N_MIN && expected.hits > 0, "{first}: {expected:?}");
    for (name, counts) in &all.0[1..] {
        assert_eq!(counts, expected, "{name} differs from {first}");
    }
}

/// The workload must exercise expiry and creation, not only hits.
const N_MIN: usize = 1_000;
