//! Workload generators: seeded keys, a Zipf sampler, environment knobs, barrier-started threads.

use std::net::Ipv4Addr;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use flowtable::{proto, Zone};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

use super::adapter::Key;

/// SplitMix64's finaliser: a bijection on `u64`, so distinct inputs give distinct outputs.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Key number `i` of key stream `stream`: random-looking addresses and ports, TCP or UDP.
/// Distinct `(stream, i)` give distinct keys except with negligible probability (the 64 mixed
/// bits pick both addresses; only the canonical swap of two endpoints could collide).
pub fn key_of(stream: u64, i: u64) -> Key {
    let a = mix(stream.wrapping_mul(0x1000_0000_01b3) ^ i);
    let b = mix(a ^ 0x5bd1_e995);
    let src = Ipv4Addr::from((a >> 32) as u32);
    let dst = Ipv4Addr::from(a as u32);
    let p = if b & 1 == 0 { proto::TCP } else { proto::UDP };
    Key::new(p, src, (b >> 16) as u16, dst, (b >> 32) as u16, Zone::DEFAULT).0
}

/// `n` keys of stream `stream`.
pub fn keys(stream: u64, n: usize) -> Vec<Key> {
    (0..n as u64).map(|i| key_of(stream, i)).collect()
}

/// A seeded small RNG.
pub fn rng(seed: u64) -> SmallRng {
    SmallRng::seed_from_u64(seed)
}

/// `keys` in a random order (seeded).
pub fn shuffled(keys: &[Key], seed: u64) -> Vec<Key> {
    let mut v = keys.to_vec();
    v.shuffle(&mut rng(seed));
    v
}

/// Zipf-distributed ranks `0..n` (rank 0 the most popular): P(r) ∝ 1 / (r + 1)^s.
/// Sampled by inverting the cumulative distribution (binary search over `n` floats).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// The distribution over `n` ranks with exponent `s`.
    pub fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|r| {
                acc += (r as f64).powf(-s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf { cdf }
    }
    /// One rank.
    pub fn sample(&self, rng: &mut SmallRng) -> usize {
        let u: f64 = rng.random();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// An environment knob, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `f(thread_index)` on `threads` threads started together on a barrier; returns the wall
/// time from the barrier to the last thread's end, and each thread's result.
///
/// The threads read the clock themselves, as they leave the barrier and as they finish: the
/// calling thread may not run again until they are done when they take every CPU (two threads on
/// a 2-CPU machine), so a clock read by it after the barrier can start the measurement late.
pub fn run_threads<R: Send>(threads: usize, f: impl Fn(usize) -> R + Sync) -> (Duration, Vec<R>) {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let r = f(t);
                    (start, Instant::now(), r)
                })
            })
            .collect();
        let ran: Vec<_> = handles.into_iter().map(|h| h.join().expect("benchmark thread panicked")).collect();
        let start = ran.iter().map(|r| r.0).min().expect("at least one thread");
        let end = ran.iter().map(|r| r.1).max().expect("at least one thread");
        (end - start, ran.into_iter().map(|r| r.2).collect())
    })
}

/// The median of `v` (sorted in place); 0 if empty.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}
