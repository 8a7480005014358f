//! `flow_workload`: what a packet pipeline does, one packet per element per thread.
//!
//! A universe of `n` flows (10^3, 10^6; 10^7 if large) is in the table at the start. Each worker
//! thread replays its own seeded trace of 2^20 packets, cycled:
//!
//! - with probability `FLOWTABLE_BENCH_NEW` (default 0.05) a packet starts a brand-new flow
//!   (`get_or_insert_with` of a key never seen before);
//! - otherwise it belongs to a universe flow drawn from a Zipf distribution (exponent
//!   `FLOWTABLE_BENCH_ZIPF`, default 1.1): `get`, then count the packet in the value and `touch`;
//!   if the flow has expired, `get_or_insert_with` creates it again.
//!
//! Each thread's virtual clock advances 1 µs per packet; flows idle for `FLOWTABLE_BENCH_TIMEOUT_US`
//! (default 100 000) expire; every thread calls `expire` every `FLOWTABLE_BENCH_EXPIRE_EVERY_US`
//! (default a tenth of the timeout). For the peers `expire` is a full sweep of the table (see
//! `support/adapter.rs`), so at 10^6 flows their figures are dominated by that sweep: that is the
//! cost of expiring with these maps at this lateness (at most one interval late). The clock and the table carry over from one criterion
//! sample to the next, so the run reaches a steady state where unpopular flows and new flows
//! really expire. 1 and 2 threads, started on a barrier; throughput counts the packets of all
//! threads.
//!
//! With `FLOWTABLE_BENCH_PLACEMENT=1`, each 2-thread sample first times a cache-line handoff
//! between two threads (`support::placement`) and prints it to stderr beside the sample's rate:
//! on a virtual machine the 2-thread figure depends on where the host placed the two CPUs.

use std::sync::Arc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};

use super::{sizes, T0};
use crate::support::adapter::{for_each_table, BenchTable, Key, Setup, Visit};
use crate::support::placement;
use crate::support::workload::{env_or, key_of, keys, rng, run_threads, Zipf};

/// Packets per thread trace.
const TRACE: usize = 1 << 20;
/// A trace entry that starts a new flow.
const NEW: u32 = u32::MAX;

/// The workload of one size, shared by every table.
struct Workload {
    universe: Vec<Key>,
    /// One trace per thread: universe indices, or `NEW`.
    traces: Vec<Vec<u32>>,
    timeout_us: u64,
    expire_every_us: u64,
}

impl Workload {
    fn new(n: usize, threads: usize) -> Self {
        let s = env_or("FLOWTABLE_BENCH_ZIPF", 1.1f64);
        let p_new = env_or("FLOWTABLE_BENCH_NEW", 0.05f64);
        let timeout_us = env_or("FLOWTABLE_BENCH_TIMEOUT_US", 100_000u64).max(10);
        let zipf = Zipf::new(n, s);
        let traces = (0..threads)
            .map(|t| {
                let mut r = rng(100 + t as u64);
                (0..TRACE)
                    .map(|_| {
                        use rand::RngExt;
                        if r.random::<f64>() < p_new {
                            NEW
                        } else {
                            zipf.sample(&mut r) as u32
                        }
                    })
                    .collect()
            })
            .collect();
        let expire_every_us = env_or("FLOWTABLE_BENCH_EXPIRE_EVERY_US", timeout_us / 10).max(1);
        Workload { universe: keys(1, n), traces, timeout_us, expire_every_us }
    }
}

/// Registers the `flow_workload` group.
pub fn register_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("flow_workload");
    for n in sizes() {
        // Made on first use, so that a filtered-out size generates nothing.
        let mut workload: Option<Arc<Workload>> = None;
        for threads in [1, 2] {
            group.throughput(Throughput::Elements(threads as u64));
            for_each_table(&mut FlowBench { group: &mut group, n, threads, workload: &mut workload }, true);
        }
    }
    group.finish();
}

struct FlowBench<'a, 'g> {
    group: &'a mut BenchmarkGroup<'g, WallTime>,
    n: usize,
    threads: usize,
    workload: &'a mut Option<Arc<Workload>>,
}

/// One table's run: carried over from sample to sample.
struct Run<B> {
    table: B,
    /// The virtual time, in µs after `T0`, that the next packet of each thread starts from.
    clock_us: u64,
    /// Position in each thread's trace, and each thread's count of new flows.
    pos: Vec<usize>,
    fresh: Vec<u64>,
}

impl Visit for FlowBench<'_, '_> {
    fn visit<B: BenchTable>(&mut self) {
        let (n, threads) = (self.n, self.threads);
        let slot = &mut *self.workload;
        let mut run: Option<Run<B>> = None;
        let id = BenchmarkId::new(B::name(), format!("{n}/t{threads}"));
        let show_placement = env_or("FLOWTABLE_BENCH_PLACEMENT", 0u8) == 1;
        self.group.bench_function(id, |b| {
            let w = slot.get_or_insert_with(|| Arc::new(Workload::new(n, 2))).clone();
            let run = run.get_or_insert_with(|| {
                let table = B::build(&Setup::growing(Duration::from_micros(w.timeout_us)));
                for &k in &w.universe {
                    let _ = table.get_or_insert(k, T0);
                }
                Run { table, clock_us: 0, pos: vec![0; threads], fresh: vec![0; threads] }
            });
            b.iter_custom(|iters| {
                let (t, w, base) = (&run.table, &*w, run.clock_us);
                let (pos, fresh) = (&run.pos, &run.fresh);
                let expire_every = w.expire_every_us;
                // Where the host put the two threads (see `support::placement`), if asked.
                let placed = (threads == 2 && show_placement).then(placement::handoff_ns);
                let (wall, ends) = run_threads(threads, |ti| {
                    let trace = &w.traces[ti];
                    let (mut p, mut f) = (pos[ti], fresh[ti]);
                    let stream = 10 + ti as u64;
                    for i in 0..iters {
                        let now = T0 + Duration::from_micros(base + i);
                        let idx = trace[p];
                        p = if p + 1 == trace.len() { 0 } else { p + 1 };
                        if idx == NEW {
                            f += 1;
                            if let Some((h, _)) = t.get_or_insert(key_of(stream, f), now) {
                                B::count(&h);
                            }
                        } else {
                            let k = &w.universe[idx as usize];
                            match t.get(k, now) {
                                Some(h) => {
                                    B::count(&h);
                                    t.touch(&h, now);
                                }
                                None => {
                                    if let Some((h, _)) = t.get_or_insert(*k, now) {
                                        B::count(&h);
                                    }
                                }
                            }
                        }
                        if (base + i) % expire_every == 0 {
                            t.expire(now, usize::MAX);
                        }
                    }
                    (p, f)
                });
                for (ti, (p, f)) in ends.into_iter().enumerate() {
                    run.pos[ti] = p;
                    run.fresh[ti] = f;
                }
                run.clock_us += iters;
                // Samples under 10 ms (criterion's first, a few iterations) time the threads' start.
                if let Some(ns) = placed.filter(|_| wall >= Duration::from_millis(10)) {
                    let rate = (iters * threads as u64) as f64 / wall.as_secs_f64() / 1e6;
                    eprintln!("{}/{n}/t{threads}: {rate:.2} Mpkt/s, handoff {}", B::name(), placement::describe(ns));
                }
                wall
            });
        });
    }
}
