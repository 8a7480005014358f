//! The bench groups, and what they share.

pub mod flows;
pub mod ops;
pub mod rfc9693;

use flowtable::Timestamp;

use crate::support::workload::env_or;

/// The virtual time of the first packet.
pub const T0: Timestamp = Timestamp::from_secs(1_000_000);

/// Whether `FLOWTABLE_BENCH_LARGE` asks for the large sizes.
pub fn large() -> bool {
    env_or("FLOWTABLE_BENCH_LARGE", 0u8) != 0
}

/// Table sizes for per-operation groups: 10^3 and 10^6, plus 10^7 if large.
pub fn sizes() -> Vec<usize> {
    let mut v = vec![1_000, 1_000_000];
    if large() {
        v.push(10_000_000);
    }
    v
}
