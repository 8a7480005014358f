//! An expiry storm: N flows all due in the same millisecond, drained by `expire(now, budget)` calls
//! as a worker would between packet batches. Prints the per-call times (worst, median) for each
//! enabled backend, one machine-readable line per figure, in flowbench's form:
//!
//! ```text
//! cargo run --release --all-features --example expiry_storm -- [FLOWS] [BUDGET]
//! backend=NAME case=expire_storm_worst_call flows=N threads=1 value=X unit=us
//! ```
//!
//! Defaults: 1,000,000 flows, a budget of 1,000 per call. The worst call is what bounds a worker's
//! pause; nothing here is asserted (timings are the machine's).

use std::time::{Duration, Instant};

use flowtable::{proto, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone};

fn key(i: u32) -> FlowKeyV4 {
    FlowKeyV4::new(proto::UDP, i.into(), (i >> 16) as u16, [192, 0, 2, 1].into(), 53, Zone::DEFAULT).0
}

fn storm<T: FlowTable<FlowKeyV4, u64, Hasher = flowtable::DefaultHashBuilder>>(flows: u32, budget: usize) {
    let t: T = FlowTableBuilder::new()
        .capacity(flows as usize)
        .idle_timeout(Duration::from_secs(30))
        .build()
        .expect("valid configuration");
    let t0 = Timestamp::from_secs(1_000);
    for i in 0..flows {
        drop(t.get_or_insert_with(key(i), t0, || u64::from(i)).expect("not full"));
    }
    let due = t0 + Duration::from_secs(30);
    let mut calls = Vec::new();
    let start = Instant::now();
    loop {
        let c = Instant::now();
        let n = t.expire(due, budget);
        calls.push(c.elapsed());
        assert!(n <= budget);
        if n == 0 {
            break;
        }
    }
    let total = start.elapsed();
    assert!(t.is_empty());
    calls.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let name = T::NAME;
    let line = |case: &str, v: f64, unit: &str| {
        println!("backend={name} case={case} flows={flows} threads=1 value={v:.1} unit={unit}");
    };
    line("expire_storm_worst_call", us(calls[calls.len() - 1]), "us");
    line("expire_storm_median_call", us(calls[calls.len() / 2]), "us");
    line("expire_storm_rate", f64::from(flows) / total.as_secs_f64(), "flows_per_s");
    eprintln!("{name}: {} calls of budget {budget}, total {total:?}", calls.len());
}

fn main() {
    let mut args = std::env::args().skip(1);
    let flows: u32 = args.next().map_or(1_000_000, |a| a.parse().expect("FLOWS: a number"));
    let budget: usize = args.next().map_or(1_000, |a| a.parse().expect("BUDGET: a number"));
    #[cfg(feature = "dashmap")]
    storm::<flowtable::DashFlowTable<FlowKeyV4, u64>>(flows, budget);
    #[cfg(feature = "compact")]
    storm::<flowtable::CompactFlowTable<FlowKeyV4, u64>>(flows, budget);
}
