//! Where the host put our two threads: the one-way latency of handing a cache line from one
//! thread to the other.
//!
//! On a virtual machine the guest's CPUs are host threads that the host scheduler places and moves
//! at will: two guest CPUs may be the two hardware threads of one core (they share its L1 and L2),
//! two cores that share an L3, or two cores on different dies, whose cache lines cross the
//! package's interconnect. A workload whose threads write the same lines (hot flows, shard locks)
//! scales very differently in each placement, and a guest cannot see which it has except by
//! timing it. On the machine these benches were written on, one handoff took about 14 ns, 34 ns
//! or 170 ns (by their latencies, likely those three placements), and a placement held for
//! seconds at a time.

use std::hint::spin_loop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::workload::{median, run_threads};

/// Round trips per measurement.
const TRIPS: u64 = 20_000;
/// Give up after this long (two spinning threads on one CPU hand off once per time slice).
const LIMIT: Duration = Duration::from_millis(200);

/// The median one-way handoff latency in ns between two threads started together, over three
/// measurements of `TRIPS` round trips each; `None` if they could not hand off `TRIPS` times
/// within `LIMIT` (the two threads shared one CPU).
pub fn handoff_ns() -> Option<f64> {
    let mut v: Vec<f64> = (0..3).filter_map(|_| once()).collect();
    if v.len() < 3 {
        return None;
    }
    Some(median(&mut v))
}

fn once() -> Option<f64> {
    let ball = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let (wall, done) = run_threads(2, |me| {
        // Player `me` owns the even (0) or odd (1) values and passes the ball on.
        let mut v = me as u64;
        let mut spins = 0u32;
        while v < 2 * TRIPS {
            while ball.load(Ordering::Acquire) != v {
                spin_loop();
                spins = spins.wrapping_add(1);
                if spins % 4096 == 0 && (stop.load(Ordering::Relaxed) || start.elapsed() > LIMIT) {
                    stop.store(true, Ordering::Relaxed);
                    return false;
                }
            }
            ball.store(v + 1, Ordering::Release);
            v += 2;
        }
        true
    });
    done.into_iter().all(|d| d).then(|| wall.as_secs_f64() * 1e9 / (2 * TRIPS) as f64)
}

/// `handoff_ns` as text for a progress line: `"34 ns"` or `"shared CPU"`.
pub fn describe(ns: Option<f64>) -> String {
    ns.map_or_else(|| "shared CPU".to_owned(), |ns| format!("{ns:.0} ns"))
}
