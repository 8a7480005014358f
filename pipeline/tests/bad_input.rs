//! Damaged captures: truncated at many offsets, bytes flipped at seeded-random positions, a corrupt
//! record length, unknown link types, packets cut by the snap length, garbage headers. The run must
//! never panic or hang, must count malformed packets and go on, must end a broken file's read with
//! an error naming the byte offset, and must still export every flow seen before the damage.
//!
//! The damaged copies are made in a temporary directory from real captures of the reference set.

mod common;

use std::path::PathBuf;

use common::{rows11, run, traces_dir, try_run};
use flowtable_pipeline::capture::{CaptureReader, Next};

/// A scratch directory for this test binary, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("flowpipe-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Scratch(dir)
    }
    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).expect("write temp capture");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// splitmix64: a fixed-seed generator, so every run damages the same bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn trace(name: &str) -> (PathBuf, Vec<u8>) {
    let p = traces_dir().join(name);
    let bytes = std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e} (set FLOWTABLE_TRACES)", p.display()));
    (p, bytes)
}

/// Byte offsets where records start, and the end of the last one (the reader's own framing).
fn record_boundaries(bytes: &[u8]) -> Vec<u64> {
    let mut r = CaptureReader::new(bytes).expect("intact capture");
    let mut v = vec![r.offset()];
    loop {
        match r.next_record().expect("intact capture") {
            Next::End => break,
            _ => v.push(r.offset()),
        }
    }
    v
}

/// Truncation at many offsets: the rows are exactly those of the file cut at the last whole
/// record, and a cut inside a record is an error naming that record's offset.
fn truncations(name: &str, cuts: usize) {
    let (_, bytes) = trace(name);
    let bounds = record_boundaries(&bytes);
    let scratch = Scratch::new(&format!("trunc-{name}"));
    let mut rng = Rng(0x5EED_0001);
    let mut offsets: Vec<usize> = (0..cuts).map(|_| rng.below(bytes.len())).collect();
    // The edges: inside the file header, just after it, one byte short of the end.
    offsets.extend([1, 10, bounds[0] as usize, bounds[0] as usize + 3, bytes.len() - 1]);
    for cut in offsets {
        let damaged = scratch.write("cut", &bytes[..cut]);
        let whole = bounds.iter().copied().filter(|&b| b <= cut as u64).max();
        let Some(whole) = whole else {
            // Cut inside the file header: a clean error, no panic.
            let err = try_run(&damaged, &["--no-timeouts"]).err();
            assert!(err.is_some_and(|e| e.to_string().contains("byte offset 0")), "{name} cut at {cut}");
            continue;
        };
        let (report, csv) = run(&damaged, &["--no-timeouts", "--workers", "2"]);
        if whole == cut as u64 {
            assert!(report.read_error.is_none(), "{name} cut at a record boundary {cut}: {:?}", report.read_error);
        } else {
            let e = report.read_error.as_ref().unwrap_or_else(|| panic!("{name} cut at {cut}: no error"));
            assert_eq!(e.offset, whole, "{name} cut at {cut}: {e}");
            assert!(e.to_string().contains(&format!("byte offset {whole}")), "{e}");
        }
        let clean = scratch.write("clean", &bytes[..whole as usize]);
        let (_, expected) = run(&clean, &["--no-timeouts", "--workers", "1"]);
        assert_eq!(rows11(&csv), rows11(&expected), "{name} cut at {cut}: flows before the damage");
    }
}

#[test]
fn truncated_pcap_at_many_offsets() {
    truncations("vlan-ipv6-smtp.pcap", 40);
}

#[test]
fn truncated_pcapng_at_many_offsets() {
    truncations("icmpv6-echo-fragments.pcapng", 40);
}

/// Random bytes overwritten anywhere (headers, record lengths, packet data): never a panic, the
/// run finishes, and a broken read names an offset inside the file.
fn flips(name: &str, rounds: usize, seed: u64) {
    let (_, bytes) = trace(name);
    let scratch = Scratch::new(&format!("flip-{name}"));
    let mut rng = Rng(seed);
    for round in 0..rounds {
        let mut damaged = bytes.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(damaged.len());
            damaged[at] = rng.next() as u8;
        }
        let path = scratch.write("flip", &damaged);
        match try_run(&path, &["--no-timeouts", "--workers", "2"]) {
            Ok((report, csv)) => {
                if let Some(e) = &report.read_error {
                    assert!(e.offset < damaged.len() as u64, "{name} round {round}: {e}");
                }
                let rows = csv.lines().count().saturating_sub(1) as u64;
                let created = report.summary.stats.as_ref().map_or(0, |s| s.created);
                assert_eq!(
                    rows + report.summary.empty_flows,
                    created,
                    "{name} round {round}: every flow exported once"
                );
            }
            Err(e) => assert!(e.to_string().contains("byte offset 0"), "{name} round {round}: {e}"),
        }
    }
}

#[test]
fn flipped_bytes_pcap() {
    flips("vlan-ipv6-smtp.pcap", 150, 0x5EED_0002);
}

#[test]
fn flipped_bytes_pcapng() {
    flips("icmpv6-echo-fragments.pcapng", 150, 0x5EED_0003);
    flips("tls-quic-multi-if.pcapng", 20, 0x5EED_0004);
}

/// Garbage packet data inside intact framing: every packet is malformed, non-IP or a flow; none
/// panics.
#[test]
fn garbage_headers() {
    let (_, bytes) = trace("vlan-ipv6-smtp.pcap");
    let bounds = record_boundaries(&bytes);
    let mut damaged = bytes.clone();
    let mut rng = Rng(0x5EED_0005);
    for w in bounds.windows(2) {
        // Keep the 16-byte record header, scramble the frame.
        for b in &mut damaged[w[0] as usize + 16..w[1] as usize] {
            *b = rng.next() as u8;
        }
    }
    let scratch = Scratch::new("garbage");
    let (report, _) = run(&scratch.write("garbage.pcap", &damaged), &["--workers", "2"]);
    let s = &report.summary;
    assert!(report.read_error.is_none());
    assert_eq!(s.packets, 69);
    assert_eq!(s.ip_packets + s.non_ip + s.malformed, s.packets);
    // Header surgery: an IPv4 header length of 4 bytes is malformed (tshark: "bogus IP header length").
    let mut bogus = bytes.clone();
    let first_ip = bounds[0] as usize + 16 + 14;
    assert_eq!(bogus[first_ip] >> 4, 4, "the first packet is untagged IPv4");
    bogus[first_ip] = 0x41;
    let (report, _) = run(&scratch.write("bogus.pcap", &bogus), &[]);
    assert_eq!(report.summary.malformed, 1);
    assert_eq!(report.summary.ip_packets, 68);
}

/// A corrupt record length ends the read at that record, with its offset; earlier flows are out.
#[test]
fn corrupt_record_length() {
    let (_, bytes) = trace("vlan-ipv6-smtp.pcap");
    let bounds = record_boundaries(&bytes);
    let scratch = Scratch::new("reclen");
    for k in [0usize, 1, 30, 68] {
        let at = bounds[k] as usize;
        let mut damaged = bytes.clone();
        damaged[at + 8..at + 12].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes()); // incl_len
        let (report, csv) = run(&scratch.write("len.pcap", &damaged), &["--no-timeouts"]);
        let e = report.read_error.as_ref().expect("a corrupt length ends the read");
        assert_eq!(e.offset, bounds[k]);
        assert!(e.to_string().contains(&format!("byte offset {}", bounds[k])) && e.message.contains("length"), "{e}");
        assert_eq!(report.summary.packets, k as u64);
        let (_, expected) = run(&scratch.write("clean.pcap", &bytes[..at]), &["--no-timeouts"]);
        assert_eq!(rows11(&csv), rows11(&expected));
    }
    // A snaplen of 4 GiB in the file header does not make a 4 GiB record length plausible.
    let mut huge = bytes.clone();
    huge[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    huge[bounds[2] as usize + 8..bounds[2] as usize + 12].copy_from_slice(&0xF000_0000u32.to_le_bytes());
    let (report, _) = run(&scratch.write("snaplen.pcap", &huge), &["--no-timeouts"]);
    assert_eq!(report.read_error.as_ref().map(|e| e.offset), Some(bounds[2]));
    assert_eq!(report.summary.packets, 2);
    // pcapng: a block length that is not a multiple of 4, and one past the end of the file.
    let (_, ng) = trace("icmpv6-echo-fragments.pcapng");
    let nb = record_boundaries(&ng);
    for (k, len) in [(3usize, 0x0000_0101u32), (5, 0x00F0_0000)] {
        let at = nb[k] as usize;
        let mut damaged = ng.clone();
        damaged[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        let (report, _) = run(&scratch.write("len.pcapng", &damaged), &["--no-timeouts"]);
        let e = report.read_error.as_ref().expect("a corrupt block length ends the read");
        assert_eq!(e.offset, nb[k], "{e}");
    }
}

/// An unknown link type: its packets are malformed and skipped, the others still make flows.
#[test]
fn unknown_link_type() {
    let scratch = Scratch::new("linktype");
    let (_, mut pcap) = trace("vlan-ipv6-smtp.pcap");
    pcap[20..24].copy_from_slice(&0xFFFFu32.to_le_bytes());
    let (report, csv) = run(&scratch.write("unknown.pcap", &pcap), &[]);
    assert!(report.read_error.is_none());
    assert_eq!((report.summary.malformed, report.summary.packets), (69, 69));
    assert_eq!(rows11(&csv).len(), 0);

    // pcapng with 22 interfaces: break the link type of the first interface only.
    let (path, mut ng) = trace("tls-quic-multi-if.pcapng");
    let idb = record_boundaries(&ng)[0] as usize;
    assert_eq!(ng[idb..idb + 4], [1, 0, 0, 0], "an interface block follows the section header");
    assert_eq!(u16::from_le_bytes([ng[idb + 8], ng[idb + 9]]), 1, "Ethernet");
    ng[idb + 8..idb + 10].copy_from_slice(&0xFFFEu16.to_le_bytes());
    let (report, csv) = run(&scratch.write("unknown.pcapng", &ng), &["--no-timeouts"]);
    let (intact, all) = run(&path, &["--no-timeouts"]);
    assert!(report.read_error.is_none());
    assert!(report.summary.malformed > 0, "packets of the broken interface are malformed");
    assert_eq!(report.summary.malformed + report.summary.ip_packets, intact.summary.ip_packets);
    let (some, all) = (rows11(&csv), rows11(&all));
    assert!(!some.is_empty() && some.len() < all.len());
}

/// Packets cut by the snap length to 64 bytes still have their addresses and ports (the deepest
/// header needed is Ethernet + 802.1Q + IPv6 + 4 bytes of TCP = 62): the rows, which count wire
/// lengths, equal tshark's for the uncut file.
#[test]
fn snaplen_cut_packets() {
    let (path, bytes) = trace("vlan-ipv6-smtp.pcap");
    let bounds = record_boundaries(&bytes);
    let mut cut = bytes[..24].to_vec();
    cut[16..20].copy_from_slice(&64u32.to_le_bytes()); // snaplen
    for w in bounds.windows(2) {
        let rec = &bytes[w[0] as usize..w[1] as usize];
        let incl = u32::from_le_bytes([rec[8], rec[9], rec[10], rec[11]]).min(64);
        cut.extend_from_slice(&rec[..8]);
        cut.extend_from_slice(&incl.to_le_bytes());
        cut.extend_from_slice(&rec[12..16]);
        cut.extend_from_slice(&rec[16..16 + incl as usize]);
    }
    let scratch = Scratch::new("snaplen");
    let (report, csv) = run(&scratch.write("cut.pcap", &cut), &["--no-timeouts", "--workers", "3"]);
    assert!(report.read_error.is_none());
    assert_eq!(report.summary.malformed, 0);
    assert!(report.summary.truncated > 0);
    let reference = std::fs::read_to_string(path.with_file_name("vlan-ipv6-smtp.pcap.flows.csv")).expect("reference");
    let mut expected: Vec<String> = reference.lines().skip(1).map(str::to_owned).collect();
    expected.sort();
    assert_eq!(rows11(&csv), expected);
}
