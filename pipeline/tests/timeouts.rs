//! Runs with idle timeouts on: flows expire and are split, but every packet is still counted once.
//! Re-aggregated per 5-tuple, the rows must sum to the reference's packets and bytes, whatever the
//! worker count, and every flow that was created is exported exactly once.

mod common;

use std::collections::BTreeMap;

use common::{run, traces_dir};

/// Unordered 5-tuple → (packets, bytes) summed over rows.
fn per_tuple(csv_rows: impl Iterator<Item = String>) -> BTreeMap<String, (u64, u64)> {
    let mut m = BTreeMap::new();
    for row in csv_rows {
        let c: Vec<&str> = row.split(',').collect();
        let mut ends = [format!("{}:{}", c[1], c[2]), format!("{}:{}", c[3], c[4])];
        ends.sort();
        let e: &mut (u64, u64) = m.entry(format!("{} {} {}", c[0], ends[0], ends[1])).or_default();
        let n = |i: usize| c[i].parse::<u64>().unwrap_or(u64::MAX);
        e.0 += n(5) + n(7);
        e.1 += n(6) + n(8);
    }
    m
}

const SHORT: &[&str] = &[
    "--tcp-syn-sent",
    "1",
    "--tcp-syn-recv",
    "1",
    "--tcp-established",
    "2",
    "--tcp-fin-wait",
    "1",
    "--tcp-close-wait",
    "1",
    "--tcp-last-ack",
    "1",
    "--tcp-time-wait",
    "1",
    "--tcp-close",
    "1",
    "--udp",
    "1",
    "--udp-stream",
    "2",
    "--icmp",
    "1",
    "--generic",
    "1",
];

#[test]
fn split_flows_still_count_every_packet_once() {
    for name in ["ftp-bruteforce.pcap", "dns-amplification-fragmented.pcap", "tls-quic-multi-if.pcapng"] {
        let capture = traces_dir().join(name);
        let reference = std::fs::read_to_string(capture.with_file_name(format!("{name}.flows.csv")))
            .unwrap_or_else(|e| panic!("{name}: {e} (set FLOWTABLE_TRACES)"));
        let expected = per_tuple(reference.lines().skip(1).map(str::to_owned));
        for workers in ["1", "3"] {
            let mut opts = SHORT.to_vec();
            opts.extend(["--workers", workers, "--batch", "16"]);
            let (report, csv) = run(&capture, &opts);
            let s = &report.summary;
            let stats = s.stats.as_ref().expect("a table ran");
            let rows = csv.lines().count() as u64 - 1;
            assert!(stats.expired > 0, "{name}: short timeouts expire flows");
            assert_eq!(rows + s.empty_flows, stats.created, "{name}: each flow exported once");
            assert_eq!(s.untracked, 0);
            assert!(rows > expected.len() as u64, "{name}: flows were split by expiry");
            let got = per_tuple(csv.lines().skip(1).map(|l| l.split(',').take(11).collect::<Vec<_>>().join(",")));
            assert_eq!(got, expected, "{name} with {workers} workers: per-tuple totals");
        }
    }
}

/// A TCP connection's state shows in the export, and a flow with a reply is no longer unreplied.
#[test]
fn tcp_states_are_exported() {
    let capture = traces_dir().join("vlan-ipv6-smtp.pcap");
    let (_, csv) = run(&capture, &["--workers", "1"]);
    let states: Vec<&str> = csv.lines().skip(1).map(|l| l.rsplit(',').next().unwrap_or("")).collect();
    assert_eq!(states.len(), 2);
    // Both SMTP sessions end with a RST or a full FIN teardown.
    assert!(states.iter().all(|s| ["CLOSE", "TIME_WAIT", "LAST_ACK"].contains(s)), "{states:?}");
}

/// A table capped at 500 flows under the SYN flood: with `--evict` every packet is still counted
/// (evicted flows are exported, the new one takes their place); without it the excess is refused.
#[test]
fn capacity_evict_and_reject() {
    let capture = traces_dir().join("syn-flood-spoofed.pcap");
    let (report, csv) = run(&capture, &["--no-timeouts", "--max-flows", "500", "--evict", "--workers", "2"]);
    let s = &report.summary;
    let st = s.stats.as_ref().expect("a table ran");
    assert!(st.evicted > 30_000, "{st:?}");
    assert_eq!(st.evicted_embryonic, st.evicted, "a one-way SYN flood is all embryonic");
    assert_eq!((s.untracked, s.empty_flows), (0, 0));
    assert!(s.peak_live <= 500);
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len() as u64, st.created);
    assert!(rows.iter().filter(|r| r.contains(",evicted,")).count() as u64 == st.evicted);
    let reference =
        std::fs::read_to_string(capture.with_file_name("syn-flood-spoofed.pcap.flows.csv")).expect("reference");
    let expected = per_tuple(reference.lines().skip(1).map(str::to_owned));
    let got = per_tuple(rows.iter().map(|l| l.split(',').take(11).collect::<Vec<_>>().join(",")));
    assert_eq!(got, expected);

    let (report, csv) = run(&capture, &["--no-timeouts", "--max-flows", "500", "--workers", "2"]);
    let st = report.summary.stats.as_ref().expect("a table ran");
    assert_eq!((st.created, st.evicted), (500, 0));
    assert_eq!(report.summary.untracked, st.rejected_full);
    assert_eq!(csv.lines().count(), 501);
}

/// With timeouts on, the export (every column, causes and TCP states included) does not depend on
/// the worker count or the batch size: workers expire at a common watermark, not at their own
/// batch's time. Origin: with per-worker batch times, 3 workers split flows of
/// web-ipv4-ipv6.pcap that 1 worker kept whole (a worker ahead in time expired flows whose next
/// packets were still queued for another worker).
///
/// ftp-bruteforce.pcap is left out: after its 44 s step back it replays sessions with identical
/// timestamps, and whether the first copy has expired when the replay arrives depends on when
/// expiry ran, whatever the worker count (1 worker with batches of 16 and of 256 differ too).
#[test]
fn timeouts_export_does_not_depend_on_worker_count() {
    let captures = common::captures_in(&traces_dir());
    assert!(!captures.is_empty());
    for capture in captures.iter().filter(|c| !c.ends_with("ftp-bruteforce.pcap")) {
        for timeouts in [&[][..], SHORT] {
            let sorted = |workers: &str, batch: &str| {
                let mut opts = timeouts.to_vec();
                opts.extend(["--workers", workers, "--batch", batch]);
                let (_, csv) = run(capture, &opts);
                let mut rows: Vec<String> = csv.lines().map(str::to_owned).collect();
                rows.sort();
                rows
            };
            let one = sorted("1", "256");
            assert_eq!(one, sorted("3", "16"), "{} (short timeouts: {})", capture.display(), !timeouts.is_empty());
        }
    }
}
