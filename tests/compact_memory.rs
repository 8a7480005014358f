//! Bytes per live flow of the compact backend at 10 million flows (`FlowKeyV4` key, 8-byte
//! value): every structure counted (`memory_bytes`: slot arrays at their real load factor, record
//! chunks, heaps, shard headers), and the process's resident-set growth as a cross-check.
//!
//! `cargo test --release --features compact --test compact_memory -- --ignored --nocapture`
#![cfg(feature = "compact")]

use std::time::{Duration, Instant};

use flowtable::{proto, CapacityPolicy, CompactFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone};

fn rss_bytes() -> usize {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace().nth(1).and_then(|v| v.parse::<usize>().ok()).unwrap_or(0) * 4096
}

fn key(i: u32) -> FlowKeyV4 {
    FlowKeyV4::new(proto::TCP, i.into(), (i >> 16) as u16, [192, 0, 2, 1].into(), 443, Zone::DEFAULT).0
}

fn measure(n: u32, shards: usize) -> (f64, f64) {
    let before = rss_bytes();
    let t: CompactFlowTable<FlowKeyV4, u64> = FlowTableBuilder::new()
        .shards(shards)
        .max_flows(n as usize)
        .idle_timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let start = Instant::now();
    for i in 0..n {
        assert!(t.get_or_insert_with(key(i), Timestamp::from_secs(1), || u64::from(i)).unwrap().created);
    }
    let elapsed = start.elapsed();
    assert_eq!(t.len(), n as usize);
    let counted = t.memory_bytes() as f64 / f64::from(n);
    let rss = (rss_bytes() - before) as f64 / f64::from(n);
    eprintln!(
        "{n} flows, {shards} shards: {counted:.2} B/flow counted, {rss:.2} B/flow RSS growth ({:.0} ns/insert)",
        elapsed.as_nanos() as f64 / f64::from(n)
    );
    (counted, rss)
}

#[test]
fn small_table_accounting() {
    let (counted, _) = measure(200_000, 4);
    assert!(counted <= 56.0, "{counted} B/flow");
}

#[test]
#[ignore]
fn ten_million_flows_fit_in_56_bytes_each() {
    let (counted, rss) = measure(10_000_000, 16);
    assert!(counted <= 56.0, "{counted} B/flow counted");
    assert!(rss <= 56.0 * 1.02, "{rss} B/flow resident");
}

/// Bytes per flow of a full table of `n` flows (seen 1 ms apart) before and after a flood of `n`
/// new flows, with the given capacity policy.
fn flood(n: u32, policy: CapacityPolicy) -> (f64, f64) {
    let t: CompactFlowTable<FlowKeyV4, u64> = FlowTableBuilder::new()
        .max_flows(n as usize)
        .capacity(n as usize)
        .capacity_policy(policy)
        .idle_timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    let at = |i: u32| Timestamp::from_millis(1_000 + u64::from(i));
    for i in 0..n {
        assert!(t.get_or_insert_with(key(i), at(i), || 0).unwrap().created);
    }
    let full = t.memory_bytes() as f64 / f64::from(n);
    for i in n..2 * n {
        let _ = t.get_or_insert_with(key(i), at(i), || 0);
    }
    assert_eq!(t.len(), n as usize);
    let after = t.memory_bytes() as f64 / f64::from(n);
    eprintln!("{n} flows, {policy:?}: {full:.1} B/flow full, {after:.1} B/flow after a flood of {n} new flows");
    (full, after)
}

/// An evicting table pays for its eviction queues and for evicted records that wait for the heap's
/// purge; a refusing one for nothing. (`design/memory.md` quotes the 10^6 figures:
/// `cargo test --release --features compact --test compact_memory -- --ignored --nocapture`.)
#[test]
fn an_evicting_table_after_a_flood() {
    let (full, after) = flood(100_000, CapacityPolicy::Reject);
    assert_eq!(full, after, "refused flows cost nothing");
    let (full_e, after_e) = flood(100_000, CapacityPolicy::Evict);
    // Up to the per-table hash seed's effect on the shards' sizes: the queues are built by the
    // first eviction, not before.
    assert!((full - full_e).abs() < 1.0, "{full} vs {full_e} B/flow full");
    assert!(after_e < 1.6 * full, "{after_e} B/flow after the flood");
}

#[test]
#[ignore]
fn an_evicting_table_after_a_flood_of_a_million() {
    flood(1_000_000, CapacityPolicy::Reject);
    let (full, after) = flood(1_000_000, CapacityPolicy::Evict);
    assert!(after < 1.6 * full, "{after} B/flow after the flood");
}
