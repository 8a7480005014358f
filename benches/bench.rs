//! Criterion benches: every flowtable backend and the peer crates in the same groups.
//!
//! ```text
//! cargo bench --all-features --bench bench                 # 10^3 and 10^6 flows (~10 min on 2 cores)
//! FLOWTABLE_BENCH_LARGE=1 cargo bench --all-features --bench bench   # adds 10^7 flows
//! cargo bench --all-features --bench bench -- get_hit      # one group
//! ```
//!
//! Groups (one module each, `register_benches`):
//! - [`groups::ops`]: `get_hit`, `get_miss`, `get_or_insert_new`, `touch`, `remove`, `expire`,
//!   one operation per element;
//! - [`groups::flows`]: `flow_workload`, Zipf-skewed packets with new flows and idle timeouts on a
//!   virtual clock, 1 and 2 threads, packets per element;
//! - [`groups::rfc9693`]: `setup_rate` and `teardown_rate` (flows per element). The third RFC 9693
//!   figure, capacity in 1 GiB, is a memory measurement: `flowbench --cases memory`.
//!
//! Knobs (environment): `FLOWTABLE_BENCH_LARGE=1` adds 10^7 flows to `ops` and `flows` (10^6 to
//! `rfc9693`); `FLOWTABLE_BENCH_ZIPF` (default 1.1) is the Zipf exponent; `FLOWTABLE_BENCH_NEW`
//! (default 0.05) the share of packets that start a new flow; `FLOWTABLE_BENCH_TIMEOUT_US`
//! (default 100000) the idle timeout in virtual microseconds (one packet per thread per µs);
//! `FLOWTABLE_BENCH_EXPIRE_EVERY_US` (default a tenth of the timeout) how often each thread calls
//! `expire` in the flow workload.
//!
//! Peers and what stands in for their expiry: `benches/support/adapter.rs`.

use std::time::Duration;

use criterion::Criterion;

mod groups;
mod support;

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    groups::ops::register_benches(&mut c);
    groups::flows::register_benches(&mut c);
    groups::rfc9693::register_benches(&mut c);
    c.final_summary();
}
