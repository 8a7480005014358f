//! RFC 9693 (benchmarking stateful NAT64/firewall devices) figures per backend: `setup_rate`, new
//! flows per second until the table is full, and `teardown_rate`, flows expired per second. One
//! flow per element; a round fills (or empties) a whole table of `n` flows (10^3, 10^5; 10^6 if
//! large), and the other half of the round is untimed. The third figure, capacity in 1 GiB, comes
//! from measured bytes per flow: `flowbench --cases memory` prints it as `capacity_1gib`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, SamplingMode, Throughput};

use super::{large, T0};
use crate::support::adapter::{for_each_table, BenchTable, Key, Setup, Visit};
use crate::support::workload::keys;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Registers `setup_rate` and `teardown_rate`.
pub fn register_benches(c: &mut Criterion) {
    let mut sizes = vec![1_000, 100_000];
    if large() {
        sizes.push(1_000_000);
    }
    for setup in [true, false] {
        let mut group = c.benchmark_group(if setup { "setup_rate" } else { "teardown_rate" });
        group.throughput(Throughput::Elements(1));
        // Rounds rebuild whole tables untimed: keep the measured time short.
        group.sampling_mode(SamplingMode::Flat);
        group.warm_up_time(Duration::from_millis(100));
        group.measurement_time(Duration::from_millis(500));
        for &n in &sizes {
            let keys = keys(1, n);
            for_each_table(&mut Rfc { group: &mut group, n, setup, keys: &keys }, true);
        }
        group.finish();
    }
}

struct Rfc<'a, 'g> {
    group: &'a mut BenchmarkGroup<'g, WallTime>,
    n: usize,
    setup: bool,
    keys: &'a [Key],
}

impl Visit for Rfc<'_, '_> {
    fn visit<B: BenchTable>(&mut self) {
        let (n, setup, keys) = (self.n, self.setup, self.keys);
        self.group.bench_function(BenchmarkId::new(B::name(), n), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let mut left = iters;
                while left > 0 {
                    let k = left.min(n as u64) as usize;
                    left -= k as u64;
                    if setup {
                        // A table that holds exactly `k` flows, filled until full.
                        let t = B::build(&Setup { capacity: k, max_flows: k, timeout: TIMEOUT, evict: false });
                        let start = Instant::now();
                        for &key in &keys[..k] {
                            black_box(t.get_or_insert(key, T0));
                        }
                        total += start.elapsed();
                        drop(t);
                    } else {
                        let t = B::build(&Setup::growing(TIMEOUT));
                        for &key in &keys[..k] {
                            let _ = t.get_or_insert(key, T0);
                        }
                        t.settle();
                        let late = T0 + TIMEOUT + Duration::from_secs(1);
                        let start = Instant::now();
                        while t.expire(late, usize::MAX) > 0 {}
                        total += start.elapsed();
                        drop(t);
                    }
                }
                total
            });
        });
    }
}
