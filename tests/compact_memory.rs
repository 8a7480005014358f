//! Bytes per live flow of the compact backend at 10 million flows (`FlowKeyV4` key, 8-byte
//! value): every structure counted (`memory_bytes`: slot arrays at their real load factor, record
//! chunks, heaps, shard headers), and the process's resident-set growth as a cross-check.
//!
//! `cargo test --release --features compact --test compact_memory -- --ignored --nocapture`
#![cfg(feature = "compact")]

use std::time::{Duration, Instant};

use flowtable::{proto, CompactFlowTable, FlowKeyV4, FlowTable, FlowTableBuilder, Timestamp, Zone};

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
