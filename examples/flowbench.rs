//! `flowbench`: throughput, memory and allocation figures for every flowtable backend and, with
//! `--peers`, for the peer crates, printed one measurement per line for scripts to read.
//!
//! ```text
//! cargo run --release --all-features --example flowbench -- --flows N [--threads T]
//!     [--backend NAME] [--peers] [--reps R] [--cases a,b,...]
//! ```
//!
//! # Output
//!
//! One line per measurement on stdout, always with these six fields in this order:
//!
//! ```text
//! backend=NAME case=CASE flows=N threads=T value=X unit=UNIT
//! ```
//!
//! Progress and diagnostics (hit counts, table sizes, expiries seen) go to stderr.
//!
//! | case | unit | what |
//! |---|---|---|
//! | `memory` | `bytes_per_flow` | live heap bytes of a table holding N flows (key `FlowKeyV4`, value `AtomicU64`), minus the bytes before it was built, over N; every structure of the table counted, grown to N without a capacity hint (so at its real load factor) |
//! | `memory_sized` | `bytes_per_flow` | the same for a table built with `capacity(N)` (peers: their `with_capacity(N)`), as a table with a configured maximum is deployed |
//! | `capacity_1gib` | `flows` | RFC 9693 capacity: 2^30 / `memory` |
//! | `get` | `mops` | random hits, one `get` each; T threads on one table, total rate |
//! | `get_batch` | `mops` | the same keys through `get_batch`, 32 keys per call |
//! | `insert` | `mops` | `get_or_insert_with` of N new flows into an empty table (no capacity hint), one thread |
//! | `insert_batch` | `mops` | the same N new flows through `get_or_insert_batch`, 32 keys per call (a backend without a batch path loops over `get_or_insert_with`) |
//! | `setup_rate` | `flows_per_s` | RFC 9693 setup rate: N new flows into a table built with `capacity(N)` and `max_flows(N)`, until full; one thread |
//! | `evict_rate` | `flows_per_s` | a flood at the maximum: a table built with `capacity(N)`, `max_flows(N)` and `CapacityPolicy::Evict`, filled with N flows seen 1 ms apart (untimed), then min(N, 2^18) new flows, each evicting the least recently seen; one thread. Flowtable backends only (the peers have no such policy) |
//! | `teardown_rate` | `flows_per_s` | RFC 9693 teardown rate: N flows all past their deadline, `expire` until the table is empty; one thread |
//! | `mixed` | `mops` | T threads, M = max(N, 2^21) packets each on a virtual clock of 1 µs per packet: 95% of packets revisit a known flow (`get`, then `touch` and count; `get_or_insert_with` if it expired), each thread walking its own N/T of the N flows in a shuffled order, each flow last seen one revisit interval before the run reaches it (so at 10^7 nearly every lookup misses the caches); 5% start a new flow that is never seen again; `expire` every M/64 packets, at the slowest thread's clock. The timeout is 1.25 times a known flow's revisit interval, so known flows stay while new ones go idle and expire; the idle flows of the steady state are created at staggered ages before the run, so about 5% of packets' worth of flows expire during it (stderr shows hits, creations and expiries) |
//! | `mixed_scaling` | `ratio` | with `--threads T` (T > 1): `mixed` on T threads over `mixed` on one, each repetition running the two back to back; the median of the repetitions' ratios. Skipped with one thread. Each repetition's stderr line gives the cache-line handoff time between two threads before and after the T-thread half (`benches/support/placement.rs`): on a VM, where the host placed the CPUs |
//! | `allocs_per_op_get`, `allocs_per_op_get_or_insert_existing`, `allocs_per_op_touch`, `allocs_per_op_insert_new`, `allocs_per_op_expire` | `allocs_per_op` | allocation calls per operation at N flows, one thread; `expire` at steady size (one new flow per expired one), per expired flow |
//!
//! Speed cases print the median of `--reps` repetitions (default 5); each rate is operations over
//! the wall time of the measured loop, threads started on a barrier. The repetitions of `get`,
//! `get_batch`, `insert`, `insert_batch`, `setup_rate`, `teardown_rate` and `mixed` are interleaved across the
//! tables measured: round r runs one repetition of every table, in an order that rotates from
//! round to round, so a machine whose speed drifts over the run (a virtual machine's does, by
//! 10-20% over minutes) slows every table alike and the ratios between them hold still; stderr
//! shows each round. (`get` tables are built and filled before the first round, so at 10^7 flows
//! they are all in memory at once.) Keys come from seeded
//! generators; lookups walk the keys in a shuffled order, so at 10^7 flows nearly every lookup
//! misses the caches. Peers and what stands in for their expiry: see `benches/support/adapter.rs`.
//! Memory comes from a counting `#[global_allocator]` (requested bytes; the allocator's own
//! per-chunk overhead is not included).

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use flowtable::Timestamp;
use rand::RngExt;

#[path = "../benches/support/alloc.rs"]
mod alloc;
#[path = "../benches/support/mod.rs"]
mod support;

use support::adapter::{for_each_table, BenchTable, Key, Setup, Visit};
use support::placement;
use support::workload::{key_of, keys, median, rng, run_threads, shuffled};

/// Lookups per thread per repetition: the table size, but at least this many.
const MIN_OPS: usize = 1 << 21;
/// Keys per `get_batch` call.
const BATCH: usize = 32;
/// The timeout of flows that must not expire during a case.
const LONG: Duration = Duration::from_secs(1_000_000);
/// The virtual time of the first packet.
const T0: Timestamp = Timestamp::from_secs(1_000_000);

const CASES: &[&str] = &[
    "memory",
    "memory_sized",
    "get",
    "get_batch",
    "insert",
    "insert_batch",
    "setup_rate",
    "evict_rate",
    "teardown_rate",
    "mixed",
    "mixed_scaling",
    "allocs_per_op",
];

struct Opts {
    flows: usize,
    threads: usize,
    backend: Option<String>,
    peers: bool,
    reps: usize,
    cases: Vec<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: flowbench --flows N [--threads T] [--backend NAME] [--peers] [--reps R] [--cases a,b,...]\n\
         cases: {}",
        CASES.join(",")
    );
    std::process::exit(2)
}

/// A count such as `100000`, `1e6` or `1_000_000`.
fn parse_count(s: &str) -> usize {
    let s = s.replace('_', "");
    s.parse::<usize>()
        .ok()
        .or_else(|| s.parse::<f64>().ok().filter(|f| *f >= 1.0).map(|f| f as usize))
        .unwrap_or_else(|| usage())
}

fn parse_args() -> Opts {
    let mut o = Opts { flows: 0, threads: 1, backend: None, peers: false, reps: 5, cases: Vec::new() };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--flows" => o.flows = parse_count(&val()),
            "--threads" => o.threads = parse_count(&val()),
            "--backend" => o.backend = Some(val()),
            "--peers" => o.peers = true,
            "--reps" => o.reps = parse_count(&val()),
            "--cases" => o.cases = val().split(',').map(str::to_owned).collect(),
            _ => usage(),
        }
    }
    if o.flows == 0 || o.threads == 0 || o.cases.iter().any(|c| !CASES.contains(&c.as_str())) {
        usage();
    }
    if o.cases.is_empty() {
        o.cases = CASES.iter().map(|c| c.to_string()).collect();
    }
    o
}

fn emit(backend: &str, case: &str, flows: usize, threads: usize, value: f64, unit: &str) {
    let v = match unit {
        "bytes_per_flow" => format!("{value:.1}"),
        "flows_per_s" | "flows" => format!("{value:.0}"),
        _ => format!("{value:.3}"),
    };
    println!("backend={backend} case={case} flows={flows} threads={threads} value={v} unit={unit}");
}

fn us(n: usize) -> Duration {
    Duration::from_micros(n as u64)
}

fn fill<B: BenchTable>(t: &B, keys: &[Key], now: Timestamp) {
    for &k in keys {
        let _ = black_box(t.get_or_insert(k, now));
    }
}

struct Runner<'a> {
    o: &'a Opts,
    /// The table's keys (stream 1), made once.
    keys: Vec<Key>,
    /// The same keys in a shuffled order: the lookup sequence.
    order: Vec<Key>,
}

/// Runs one case that is measured backend by backend (memory, allocations, `mixed_scaling`).
struct OneCase<'r, 'a> {
    runner: &'r Runner<'a>,
    case: &'r str,
}

impl Visit for OneCase<'_, '_> {
    fn visit<B: BenchTable>(&mut self) {
        let r = self.runner;
        if r.o.backend.as_deref().is_some_and(|b| b != B::name()) {
            return;
        }
        eprintln!("# {} {} flows={}", B::name(), self.case, r.o.flows);
        match self.case {
            "memory" => r.memory::<B>(),
            "memory_sized" => r.memory_sized::<B>(),
            "mixed_scaling" => r.mixed_scaling::<B>(),
            "allocs_per_op" => r.allocs_per_op::<B>(),
            _ => unreachable!("an interleaved case"),
        }
    }
}

/// The cases whose repetitions are interleaved across tables (see [`Runner::interleave`]).
const INTERLEAVED: &[&str] =
    &["get", "get_batch", "insert", "insert_batch", "setup_rate", "evict_rate", "teardown_rate", "mixed"];

/// One table's repetitions of one case: `run(rep)` measures one.
struct Reps<'r> {
    name: &'static str,
    case: &'static str,
    threads: usize,
    unit: &'static str,
    run: Box<dyn FnMut(usize) -> f64 + 'r>,
}

/// Collects every selected table's [`Reps`] of one case.
struct Collect<'r, 'a> {
    runner: &'r Runner<'a>,
    case: &'r str,
    out: Vec<Reps<'r>>,
}

impl<'r> Visit for Collect<'r, '_> {
    fn visit<B: BenchTable>(&mut self) {
        let r = self.runner;
        if r.o.backend.as_deref().is_some_and(|b| b != B::name()) {
            return;
        }
        eprintln!("# {} {} flows={}: setting up", B::name(), self.case, r.o.flows);
        let reps = match self.case {
            "get" | "get_batch" => r.get::<B>(self.case == "get_batch"),
            "insert" | "insert_batch" => r.insert::<B>(self.case == "insert_batch"),
            "setup_rate" => r.setup_rate::<B>(),
            "evict_rate" if B::name().starts_with("peer-") => return,
            "evict_rate" => r.evict_rate::<B>(),
            "teardown_rate" => r.teardown_rate::<B>(),
            "mixed" => r.mixed::<B>(),
            _ => unreachable!("not an interleaved case"),
        };
        self.out.push(reps);
    }
}

impl Runner<'_> {
    fn n(&self) -> usize {
        self.o.flows
    }

    /// The median of the repetitions; every repetition's value goes to stderr, so that a noisy
    /// run shows in the log.
    fn reps(&self, mut f: impl FnMut(usize) -> f64) -> f64 {
        let mut v: Vec<f64> = (0..self.o.reps.max(1)).map(&mut f).collect();
        let each: Vec<String> = v.iter().map(|x| format!("{x:.4e}")).collect();
        eprintln!("#   repetitions: {}", each.join(" "));
        median(&mut v)
    }

    /// Runs the tables' repetitions of one case in rounds, one repetition of every table per
    /// round (the order rotating from round to round), and prints each table's median. A virtual
    /// machine's speed drifts over seconds to minutes; measured this way, every table sees the
    /// same drift, so the ratios between tables hold still where table-by-table runs minutes apart
    /// did not. Each round's values go to stderr.
    fn interleave(&self, mut tables: Vec<Reps<'_>>) {
        let k = tables.len();
        let mut vals: Vec<Vec<f64>> = vec![Vec::new(); k];
        for rep in 0..self.o.reps.max(1) {
            let mut line = Vec::new();
            for j in 0..k {
                let i = (j + rep) % k;
                let v = (tables[i].run)(rep);
                vals[i].push(v);
                line.push(format!("{} {v:.4e}", tables[i].name));
            }
            eprintln!("#   round {rep}: {}", line.join(", "));
        }
        for (t, v) in tables.iter().zip(&mut vals) {
            let each: Vec<String> = v.iter().map(|x| format!("{x:.4e}")).collect();
            eprintln!("#   {} {} repetitions: {}", t.name, t.case, each.join(" "));
            emit(t.name, t.case, self.n(), t.threads, median(v), t.unit);
        }
    }

    fn memory<B: BenchTable>(&self) {
        self.memory_with::<B>(&Setup::growing(LONG), "memory", Some("capacity_1gib"));
    }

    fn memory_sized<B: BenchTable>(&self) {
        let n = self.n();
        self.memory_with::<B>(
            &Setup { capacity: n, max_flows: usize::MAX, timeout: LONG, evict: false },
            "memory_sized",
            None,
        );
    }

    fn memory_with<B: BenchTable>(&self, setup: &Setup, case: &str, capacity_case: Option<&str>) {
        let n = self.n();
        let before = alloc::live_bytes();
        let t = B::build(setup);
        fill(&t, &self.keys, T0);
        t.settle();
        let bytes = alloc::live_bytes() - before;
        let len = t.len();
        if len != n {
            eprintln!("# warning: {} holds {len} flows, expected {n}", B::name());
        }
        let per_flow = bytes as f64 / n as f64;
        emit(B::name(), case, n, 1, per_flow, "bytes_per_flow");
        if let Some(c) = capacity_case {
            emit(B::name(), c, n, 1, (1u64 << 30) as f64 / per_flow, "flows");
        }
        drop(t);
    }

    /// `get` / `get_batch`: the table is built and filled here, once; each repetition looks up.
    fn get<B: BenchTable>(&self, batch: bool) -> Reps<'_> {
        let (n, threads) = (self.n(), self.o.threads);
        let t = B::build(&Setup::growing(LONG));
        fill(&t, &self.keys, T0);
        let ops = n.max(MIN_OPS).div_ceil(BATCH) * BATCH;
        let order = &self.order;
        let run = move |_| {
            let (wall, hits) = run_threads(threads, |ti| {
                // Each thread walks the same shuffled sequence from its own starting point.
                let mut pos = ti * n / threads;
                let mut hits = 0usize;
                if batch {
                    let mut out = Vec::with_capacity(BATCH);
                    for _ in 0..ops / BATCH {
                        if pos + BATCH > n {
                            pos = 0;
                        }
                        t.get_batch(&order[pos..(pos + BATCH).min(n)], T0, &mut out);
                        hits += out.iter().filter(|h| h.is_some()).count();
                        pos += BATCH;
                    }
                } else {
                    for _ in 0..ops {
                        if pos == n {
                            pos = 0;
                        }
                        hits += usize::from(black_box(t.get(&order[pos], T0)).is_some());
                        pos += 1;
                    }
                }
                hits
            });
            let done = if batch && n < BATCH { ops / BATCH * n } else { ops } * threads;
            let hits: usize = hits.iter().sum();
            if hits != done {
                eprintln!("# warning: {hits} hits of {done} lookups");
            }
            done as f64 / wall.as_secs_f64() / 1e6
        };
        let case = if batch { "get_batch" } else { "get" };
        Reps { name: B::name(), case, threads, unit: "mops", run: Box::new(run) }
    }

    /// `insert` / `insert_batch`: N new flows into an empty table grown without a hint.
    fn insert<B: BenchTable>(&self, batch: bool) -> Reps<'_> {
        let n = self.n();
        let run = move |_| {
            let t = B::build(&Setup::growing(LONG));
            let mut out = Vec::with_capacity(BATCH);
            let start = Instant::now();
            if batch {
                for chunk in self.order.chunks(BATCH) {
                    t.get_or_insert_batch(chunk, T0, &mut out);
                    black_box(&out);
                }
            } else {
                fill(&t, &self.order, T0);
            }
            let wall = start.elapsed();
            drop(out);
            t.settle();
            if t.len() != n {
                eprintln!("# warning: {} holds {} flows after {n} inserts", B::name(), t.len());
            }
            n as f64 / wall.as_secs_f64() / 1e6
        };
        let case = if batch { "insert_batch" } else { "insert" };
        Reps { name: B::name(), case, threads: 1, unit: "mops", run: Box::new(run) }
    }

    fn setup_rate<B: BenchTable>(&self) -> Reps<'_> {
        let n = self.n();
        let run = move |_| {
            let t = B::build(&Setup { capacity: n, max_flows: n, timeout: LONG, evict: false });
            let start = Instant::now();
            let mut made = 0usize;
            for &k in &self.order {
                made += usize::from(t.get_or_insert(k, T0).is_some_and(|(_, created)| created));
            }
            let wall = start.elapsed();
            if made != n {
                eprintln!("# warning: {made} of {n} flows set up");
            }
            made as f64 / wall.as_secs_f64()
        };
        Reps { name: B::name(), case: "setup_rate", threads: 1, unit: "flows_per_s", run: Box::new(run) }
    }

    /// `evict_rate`: new flows into a full evicting table.
    fn evict_rate<B: BenchTable>(&self) -> Reps<'_> {
        let n = self.n();
        let m = n.min(1 << 18);
        let fresh: Vec<Key> = (0..m as u64).map(|i| key_of(5, i)).collect();
        let run = move |_| {
            let t = B::build(&Setup { capacity: n, max_flows: n, timeout: LONG, evict: true });
            for (i, &k) in self.order.iter().enumerate() {
                let _ = t.get_or_insert(k, T0 + Duration::from_millis(i as u64));
            }
            let now = T0 + Duration::from_millis(n as u64);
            let start = Instant::now();
            let mut made = 0usize;
            for &k in &fresh {
                made += usize::from(t.get_or_insert(k, now).is_some_and(|(_, created)| created));
            }
            let wall = start.elapsed();
            if made != m || t.len() != n {
                eprintln!("# warning: {made} of {m} flows made, {} held of {n}", t.len());
            }
            made as f64 / wall.as_secs_f64()
        };
        Reps { name: B::name(), case: "evict_rate", threads: 1, unit: "flows_per_s", run: Box::new(run) }
    }

    fn teardown_rate<B: BenchTable>(&self) -> Reps<'_> {
        let n = self.n();
        let timeout = Duration::from_secs(60);
        let run = move |_| {
            let t = B::build(&Setup::growing(timeout));
            fill(&t, &self.order, T0);
            t.settle();
            let late = T0 + timeout + Duration::from_secs(1);
            let start = Instant::now();
            let mut gone = 0;
            loop {
                let c = t.expire(late, usize::MAX);
                gone += c;
                if c == 0 {
                    break;
                }
            }
            let wall = start.elapsed();
            if gone != n {
                eprintln!("# warning: {gone} of {n} flows torn down");
            }
            gone as f64 / wall.as_secs_f64()
        };
        Reps { name: B::name(), case: "teardown_rate", threads: 1, unit: "flows_per_s", run: Box::new(run) }
    }

    fn mixed<B: BenchTable>(&self) -> Reps<'_> {
        let threads = self.o.threads;
        let run = move |rep| self.mixed_once::<B>(threads, rep);
        Reps { name: B::name(), case: "mixed", threads, unit: "mops", run: Box::new(run) }
    }

    /// The scaling of `mixed`: each repetition runs it on one thread and then on T, back to back,
    /// and the median of the repetitions' ratios is printed (a noisy machine moves both runs of a
    /// pair alike, runs minutes apart less so).
    fn mixed_scaling<B: BenchTable>(&self) {
        let threads = self.o.threads;
        if threads < 2 {
            eprintln!("#   mixed_scaling needs --threads T with T > 1: skipped");
            return;
        }
        let ratio = self.reps(|rep| {
            let one = self.mixed_once::<B>(1, rep);
            let before = placement::handoff_ns();
            let many = self.mixed_once::<B>(threads, rep);
            let after = placement::handoff_ns();
            eprintln!(
                "#   rep {rep}: {one:.3} Mops on 1 thread, {many:.3} on {threads} ({:.2}x; cache-line handoff {} before, {} after)",
                many / one,
                placement::describe(before),
                placement::describe(after)
            );
            many / one
        });
        emit(B::name(), "mixed_scaling", self.n(), threads, ratio, "ratio");
    }

    /// One repetition of `mixed` on `threads` threads; returns Mops.
    fn mixed_once<B: BenchTable>(&self, threads: usize, rep: usize) -> f64 {
        let n = self.n();
        let ops = n.max(MIN_OPS);
        // Thread `ti` walks its own share of the N known flows (in the shuffled order), so a known
        // flow comes back every `share / 0.95` packets; the timeout is 1.25 times that, so known
        // flows stay, and the flows started during the run (never seen again) expire after it.
        let share = n / threads;
        let timeout_us = share * 125 / 95 + 1024;
        let timeout = us(timeout_us);
        let expire_every = (ops / 64).max(1024);
        // 5% of packets start a new flow.
        let new_below = u32::MAX / 20;
        // The idle flows of the steady state (5% of each thread's packets over one timeout),
        // created at staggered ages before the run so that they expire during it.
        let idle = threads * timeout_us / 20;
        let order = &self.order;
        // Each thread's clock is its own packet count; expiry runs at the slowest thread's clock
        // (published every 1024 packets), so a thread that runs ahead does not expire the flows of
        // one that lags (whose revisits are late in wall time, not in its own packet time).
        let clocks: Vec<Clock> = (0..threads).map(|_| Clock::default()).collect();
        let slowest = || clocks.iter().map(|c| c.0.load(Relaxed)).min().unwrap_or(0) as usize;
        {
            clocks.iter().for_each(|c| c.0.store(0, Relaxed));
            let t = B::build(&Setup::growing(timeout));
            // Steady state from the first packet: each known flow was last seen one revisit
            // interval before the run reaches it, so the timers of known flows come due (and are
            // filed again) at an even rate, as they do in a long run.
            for p in 0..share {
                for ti in 0..threads {
                    let ago = (share - p) * 100 / 95;
                    let _ = t.get_or_insert(order[ti * share + p], T0 - us(ago));
                }
            }
            for i in 0..idle {
                let _ = t.get_or_insert(key_of(900 + rep as u64, i as u64), T0 - timeout + us(i * timeout_us / idle));
            }
            let (wall, per_thread) = run_threads(threads, |ti| {
                let mut r = rng((rep * 64 + ti) as u64);
                let stream = 1000 + (rep * 64 + ti) as u64;
                let mine = &order[ti * share..(ti + 1) * share];
                let (mut pos, mut fresh) = (0, 0u64);
                let (mut hits, mut expired, mut created) = (0usize, 0usize, 0usize);
                for i in 0..ops {
                    let now = T0 + us(i);
                    if i % 1024 == 0 {
                        clocks[ti].0.store(i as u64, Relaxed);
                    }
                    if r.random::<u32>() < new_below {
                        fresh += 1;
                        if let Some((f, c)) = t.get_or_insert(key_of(stream, fresh), now) {
                            B::count(&f);
                            created += usize::from(c);
                        }
                    } else {
                        if pos == share {
                            pos = 0;
                        }
                        let k = &mine[pos];
                        pos += 1;
                        match t.get(k, now) {
                            Some(f) => {
                                B::count(&f);
                                t.touch(&f, now);
                                hits += 1;
                            }
                            None => {
                                if let Some((f, c)) = t.get_or_insert(*k, now) {
                                    B::count(&f);
                                    created += usize::from(c);
                                }
                            }
                        }
                    }
                    if i % expire_every == expire_every - 1 {
                        expired += t.expire(T0 + us(slowest()), usize::MAX);
                    }
                }
                clocks[ti].0.store(u64::MAX, Relaxed); // done: no longer holds expiry back
                (hits, expired, created)
            });
            let hits: usize = per_thread.iter().map(|p| p.0).sum();
            let expired: usize = per_thread.iter().map(|p| p.1).sum();
            let created: usize = per_thread.iter().map(|p| p.2).sum();
            t.settle();
            let total = ops * threads;
            eprintln!(
                "#   rep {rep}: {total} packets: {hits} hits, {created} created, {expired} expired, final size {}",
                t.len()
            );
            let rate = total as f64 / wall.as_secs_f64() / 1e6;
            drop(t);
            rate
        }
    }

    fn allocs_per_op<B: BenchTable>(&self) {
        let n = self.n();
        let k = n.min(100_000);
        let name = B::name();
        let per = |ops: usize, f: &mut dyn FnMut()| {
            let a = alloc::allocs();
            f();
            (alloc::allocs() - a) as f64 / ops as f64
        };
        let emit_op = |op: &str, v: f64| emit(name, &format!("allocs_per_op_{op}"), n, 1, v, "allocs_per_op");

        let t = B::build(&Setup::growing(LONG));
        fill(&t, &self.keys, T0);
        let sample = &self.order[..k];
        let mut handles = Vec::with_capacity(k);
        emit_op("get", per(k, &mut || handles.extend(sample.iter().filter_map(|key| t.get(key, T0)))));
        emit_op(
            "get_or_insert_existing",
            per(k, &mut || {
                for &key in sample {
                    black_box(t.get_or_insert(key, T0));
                }
            }),
        );
        let later = T0 + Duration::from_secs(1);
        emit_op(
            "touch",
            per(handles.len(), &mut || {
                for h in &handles {
                    black_box(t.touch(h, later));
                }
            }),
        );
        drop(handles);
        let fresh = keys(2, k);
        emit_op("insert_new", per(k, &mut || fill(&t, &fresh, later)));
        drop(t);

        // Expiry at steady size: flow i is created at T0 + i ms with a timeout of n ms (whole
        // milliseconds: every backend's tick); each step adds one flow and, every `chunk` steps,
        // expires the `chunk` flows now due.
        let ms = |i: usize| Duration::from_millis(i as u64);
        let t = B::build(&Setup::growing(ms(n)));
        for (i, &key) in self.keys.iter().enumerate() {
            let _ = t.get_or_insert(key, T0 + ms(i));
        }
        let steps = n.min(10_000);
        let chunk = 1000.min(steps);
        let (mut allocs, mut expired) = (0u64, 0usize);
        for j in 0..steps {
            let now = T0 + ms(n + j);
            let _ = t.get_or_insert(key_of(3, j as u64), now);
            if j % chunk == chunk - 1 {
                let a = alloc::allocs();
                expired += t.expire(now, usize::MAX);
                allocs += alloc::allocs() - a;
            }
        }
        eprintln!("#   expire: {expired} flows expired in {steps} steps, size {}", t.len());
        emit_op("expire", allocs as f64 / expired.max(1) as f64);
    }
}

/// A thread's published virtual clock (packets), on its own cache lines.
#[derive(Default)]
#[repr(align(128))]
struct Clock(AtomicU64);

/// The names of every table `flowbench` knows.
fn all_names() -> Vec<&'static str> {
    struct Names(Vec<&'static str>);
    impl Visit for Names {
        fn visit<B: BenchTable>(&mut self) {
            self.0.push(B::name());
        }
    }
    let mut names = Names(Vec::new());
    for_each_table(&mut names, true);
    names.0
}

fn main() {
    let o = parse_args();
    if let Some(b) = &o.backend {
        if !all_names().contains(&b.as_str()) {
            eprintln!("unknown backend {b}; known: {}", all_names().join(", "));
            std::process::exit(2);
        }
    }
    let keys = keys(1, o.flows);
    let order = shuffled(&keys, 7);
    let runner = Runner { o: &o, keys, order };
    // A peer named with --backend runs without --peers.
    let peers = o.peers || o.backend.as_deref().is_some_and(|b| b.starts_with("peer-"));
    for case in &o.cases {
        if INTERLEAVED.contains(&case.as_str()) {
            let mut c = Collect { runner: &runner, case, out: Vec::new() };
            for_each_table(&mut c, peers);
            let tables = c.out;
            runner.interleave(tables);
        } else {
            for_each_table(&mut OneCase { runner: &runner, case }, peers);
        }
    }
}
