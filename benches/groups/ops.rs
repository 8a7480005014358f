//! One operation per element, on a table of `n` flows (10^3, 10^6; 10^7 if large), keys walked in a
//! shuffled order. Operations that change the table's size are timed in rounds of `chunk` =
//! min(n/2, 65536) operations, undone between rounds (untimed), so the table stays near `n`
//! flows; for these one criterion iteration is one round (`Throughput::Elements(chunk)`, flat
//! sampling), so a round's fixed costs (an `expire` call, a peer's sweep) are always spread over
//! `chunk` operations whatever number of iterations criterion picks:
//!
//! - `get_hit`, `get_miss`: a lookup of a present / absent key;
//! - `get_batch_hit`: the same present keys through `get_batch`, [`BATCH`] keys per call;
//! - `get_or_insert_new`: a new flow (a round inserts up to `n/2` new flows, then removes them);
//! - `get_or_insert_batch_new`: the same through `get_or_insert_batch`, [`BATCH`] keys per call
//!   (backends without a batch path, and the peers, loop over single calls);
//! - `touch`: a packet on a flow through a handle held by the caller (handles are touched in
//!   passes over a shuffled list, the clock advancing 1 ms per pass, so that each touch moves the
//!   deadline by at least one tick of every backend);
//! - `remove`: removing a present flow (a round removes up to `n/2`, then inserts them back);
//! - `expire`: expiring one flow at steady size. Flow `s` is created at `s` ms with a timeout of
//!   `n` ms (whole milliseconds, so that every backend's tick, up to 1 ms, sees the same deadlines); a round advances the clock past the oldest `chunk` deadlines, expires them, and
//!   creates them again as the newest flows. For the peers `expire` is a full sweep (see
//!   `support/adapter.rs`), so its cost per flow grows with `n / chunk`.

use std::collections::VecDeque;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};
use flowtable::Timestamp;

use super::{sizes, T0};
use crate::support::adapter::{for_each_table, BenchTable, Key, Setup, Visit};
use crate::support::workload::{key_of, keys, shuffled};

/// A timeout no case outlives.
const LONG: Duration = Duration::from_secs(1_000_000);
/// Keys per call of the batch operations (as in `flowbench`).
const BATCH: usize = 32;

#[derive(Copy, Clone, PartialEq, Eq, Debug)]
enum Op {
    GetHit,
    GetMiss,
    GetBatchHit,
    GetOrInsertNew,
    GetOrInsertBatchNew,
    Touch,
    Remove,
    Expire,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::GetHit,
        Op::GetMiss,
        Op::GetBatchHit,
        Op::GetOrInsertNew,
        Op::GetOrInsertBatchNew,
        Op::Touch,
        Op::Remove,
        Op::Expire,
    ];
    fn name(self) -> &'static str {
        match self {
            Op::GetHit => "get_hit",
            Op::GetMiss => "get_miss",
            Op::GetBatchHit => "get_batch_hit",
            Op::GetOrInsertNew => "get_or_insert_new",
            Op::GetOrInsertBatchNew => "get_or_insert_batch_new",
            Op::Touch => "touch",
            Op::Remove => "remove",
            Op::Expire => "expire",
        }
    }
}

/// Registers the per-operation groups.
pub fn register_benches(c: &mut Criterion) {
    for op in Op::ALL {
        let mut group = c.benchmark_group(op.name());
        for n in sizes() {
            for_each_table(&mut OpBench { group: &mut group, op, n }, true);
        }
        group.finish();
    }
}

struct OpBench<'a, 'g> {
    group: &'a mut BenchmarkGroup<'g, WallTime>,
    op: Op,
    n: usize,
}

/// `ms` milliseconds after `T0`.
fn at(ms: u64) -> Timestamp {
    T0 + Duration::from_millis(ms)
}

/// `iters` rounds of `chunk` operations: `round(chunk)` does them and undoes them, returning the
/// time of the operations alone.
fn rounds(iters: u64, chunk: usize, mut round: impl FnMut(usize) -> Duration) -> Duration {
    (0..iters).map(|_| round(chunk)).sum()
}

impl Visit for OpBench<'_, '_> {
    fn visit<B: BenchTable>(&mut self) {
        let (op, n) = (self.op, self.n);
        let chunk = (n / 2).clamp(1, 1 << 16);
        // Built on first use, so that filtered-out benches build nothing.
        let mut state: Option<(B, Vec<Key>)> = None;
        let mut build = move || {
            let keys = keys(1, n);
            let t = B::build(&Setup::growing(if op == Op::Expire { Duration::from_millis(n as u64) } else { LONG }));
            for (s, &k) in keys.iter().enumerate() {
                let now = if op == Op::Expire { at(s as u64) } else { T0 };
                let _ = t.get_or_insert(k, now);
            }
            (t, keys)
        };
        let id = BenchmarkId::new(B::name(), n);
        if matches!(op, Op::GetOrInsertNew | Op::GetOrInsertBatchNew | Op::Remove | Op::Expire) {
            self.group.throughput(Throughput::Elements(chunk as u64));
            self.group.sampling_mode(SamplingMode::Flat);
        } else if op == Op::GetBatchHit {
            // One iteration: one call of `BATCH` keys.
            self.group.throughput(Throughput::Elements(BATCH as u64));
            self.group.sampling_mode(SamplingMode::Auto);
        } else {
            self.group.throughput(Throughput::Elements(1));
            self.group.sampling_mode(SamplingMode::Auto);
        }
        match op {
            Op::GetHit | Op::GetMiss => {
                let mut order = Vec::new();
                self.group.bench_function(id, |b| {
                    let (t, keys) = state.get_or_insert_with(&mut build);
                    if order.is_empty() {
                        order = if op == Op::GetHit { shuffled(keys, 7) } else { crate::support::workload::keys(2, n) };
                    }
                    let mut pos = 0;
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            if pos == order.len() {
                                pos = 0;
                            }
                            black_box(t.get(&order[pos], T0));
                            pos += 1;
                        }
                        start.elapsed()
                    });
                });
            }
            Op::GetBatchHit => {
                let mut order = Vec::new();
                self.group.bench_function(id, |b| {
                    let (t, keys) = state.get_or_insert_with(&mut build);
                    if order.is_empty() {
                        order = shuffled(keys, 7);
                    }
                    let mut out = Vec::with_capacity(BATCH);
                    let mut pos = 0;
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            if pos + BATCH > order.len() {
                                pos = 0;
                            }
                            t.get_batch(&order[pos..(pos + BATCH).min(order.len())], T0, &mut out);
                            black_box(&out);
                            pos += BATCH;
                        }
                        start.elapsed()
                    });
                });
            }
            Op::GetOrInsertNew | Op::GetOrInsertBatchNew => {
                let batched = op == Op::GetOrInsertBatchNew;
                let mut fresh = 0u64;
                self.group.bench_function(id, |b| {
                    let (t, _) = state.get_or_insert_with(&mut build);
                    b.iter_custom(|iters| {
                        let mut batch = Vec::with_capacity(chunk);
                        let mut out = Vec::with_capacity(BATCH);
                        rounds(iters, chunk, |k| {
                            batch.clear();
                            batch.extend((0..k as u64).map(|i| key_of(2, fresh + i)));
                            fresh += k as u64;
                            let start = Instant::now();
                            if batched {
                                for keys in batch.chunks(BATCH) {
                                    t.get_or_insert_batch(keys, T0, &mut out);
                                    black_box(&out);
                                }
                                out.clear();
                            } else {
                                for &key in &batch {
                                    black_box(t.get_or_insert(key, T0));
                                }
                            }
                            let took = start.elapsed();
                            for key in &batch {
                                t.remove(key);
                            }
                            took
                        })
                    });
                });
            }
            Op::Touch => {
                let mut handles = Vec::new();
                let mut clock = 1u64;
                self.group.bench_function(id, |b| {
                    let (t, keys) = state.get_or_insert_with(&mut build);
                    if handles.is_empty() {
                        handles = shuffled(keys, 7).iter().filter_map(|k| t.get(k, T0)).collect();
                    }
                    let mut pos = 0;
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        for _ in 0..iters {
                            if pos == handles.len() {
                                pos = 0;
                                clock += 1;
                            }
                            black_box(t.touch(&handles[pos], at(clock)));
                            pos += 1;
                        }
                        start.elapsed()
                    });
                });
            }
            Op::Remove => {
                let mut pos = 0;
                self.group.bench_function(id, |b| {
                    let (t, keys) = state.get_or_insert_with(&mut build);
                    let order = shuffled(keys, 7);
                    b.iter_custom(|iters| {
                        rounds(iters, chunk, |k| {
                            if pos + k > order.len() {
                                pos = 0;
                            }
                            let batch = &order[pos..pos + k];
                            pos += k;
                            let start = Instant::now();
                            for key in batch {
                                black_box(t.remove(key));
                            }
                            let took = start.elapsed();
                            for &key in batch {
                                let _ = t.get_or_insert(key, T0);
                            }
                            took
                        })
                    });
                });
            }
            Op::Expire => {
                // Flow `s` (creation time `s` µs) for s in lo..lo+n is in the table, oldest first.
                let mut fifo: VecDeque<Key> = VecDeque::new();
                let mut lo = 0u64;
                self.group.bench_function(id, |b| {
                    let (t, keys) = state.get_or_insert_with(&mut build);
                    if fifo.is_empty() {
                        fifo.extend(keys.iter().copied());
                    }
                    b.iter_custom(|iters| {
                        rounds(iters, chunk, |k| {
                            // The deadlines of flows lo..lo+k are lo+n .. lo+k-1+n.
                            let now = at(lo + k as u64 - 1 + n as u64);
                            let start = Instant::now();
                            let got = black_box(t.expire(now, usize::MAX));
                            let took = start.elapsed();
                            assert_eq!(got, k, "{}: expire takes exactly the due flows", B::name());
                            // Created again as the newest flows, at their own creation times (which
                            // may be before `now`: time going backwards is allowed).
                            for j in 0..k as u64 {
                                let key = fifo.pop_front().expect("n flows");
                                let _ = t.get_or_insert(key, at(lo + n as u64 + j));
                                fifo.push_back(key);
                            }
                            lo += k as u64;
                            took
                        })
                    });
                });
            }
        }
    }
}
