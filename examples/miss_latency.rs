//! The latency of one dependent memory access over a working set of a given size: a pointer chase
//! through a random cyclic permutation of cache lines (Sattolo's algorithm), so that every load's
//! address comes from the previous load and neither the prefetchers nor out-of-order execution can
//! overlap two of them. It is the floor under a random lookup in a table larger than the caches
//! (`design/benchmarks.md`, "What limits the numbers"). Prints one machine-readable line per size:
//!
//! ```text
//! cargo run --release --example miss_latency -- [MIB ...]
//! case=dependent_miss mib=M value=X unit=ns
//! ```
//!
//! Defaults: 1, 16, 128 and 512 MiB, each the median of 5 chases of 2^22 steps. Nothing is asserted
//! (timings are the machine's).

use std::time::Instant;

/// One cache line: the index of the next line in the cycle, and padding.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line {
    next: usize,
    _pad: [usize; 7],
}

/// xorshift64*: a seeded generator, enough to shuffle.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64) as usize
    }
}

/// Lines in one cycle through all of them, in a random order (Sattolo: a single cycle).
fn cycle(lines: usize, rng: &mut Rng) -> Vec<Line> {
    let mut perm: Vec<usize> = (0..lines).collect();
    for i in (1..lines).rev() {
        let j = rng.below(i);
        perm.swap(i, j);
    }
    let mut v = vec![Line { next: 0, _pad: [0; 7] }; lines];
    for (i, l) in v.iter_mut().enumerate() {
        l.next = perm[i];
    }
    v
}

/// Nanoseconds per step of a chase of `steps` steps through `v`.
fn chase(v: &[Line], steps: usize) -> f64 {
    let mut p = 0;
    let start = Instant::now();
    for _ in 0..steps {
        p = std::hint::black_box(v[p].next);
    }
    let ns = start.elapsed().as_nanos() as f64;
    std::hint::black_box(p);
    ns / steps as f64
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1, 16, 128, 512]
    } else {
        match args.iter().map(|a| a.parse()).collect::<Result<Vec<usize>, _>>() {
            Ok(v) if v.iter().all(|&m| m > 0) => v,
            _ => {
                eprintln!("usage: miss_latency [MIB ...]   (positive sizes in MiB)");
                std::process::exit(2);
            }
        }
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for mib in sizes {
        let lines = mib * (1 << 20) / 64;
        let v = cycle(lines, &mut rng);
        let steps = 1 << 22;
        chase(&v, steps.min(lines)); // warm the page tables and caches that can hold it
        let mut runs: Vec<f64> = (0..5).map(|_| chase(&v, steps)).collect();
        runs.sort_by(f64::total_cmp);
        eprintln!("# {mib} MiB: {runs:.1?} ns per step");
        println!("case=dependent_miss mib={mib} value={:.1} unit=ns", runs[2]);
    }
}
