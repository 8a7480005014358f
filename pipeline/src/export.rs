//! Exporting flows: one row per flow that leaves the table, written by a dedicated writer thread.
//!
//! The table's removal listener runs on whatever thread removes a flow (a worker's `expire`, or
//! the main thread's final flush). It only snapshots the flow into an [`ExportRecord`] and sends it
//! down a channel; the writer thread formats, writes and tallies. So the output needs no lock and
//! formatting costs no worker time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::mpsc::Receiver;

use flowtable::{proto, FlowKey, RemovalCause, Timestamp};

use crate::state::{FlowState, TcpState};

/// The columns, in order: the reference files' eleven, then `cause` and `tcp_state`.
pub const CSV_HEADER: &str =
    "proto,addr_a,port_a,addr_b,port_b,packets_ab,bytes_ab,packets_ba,bytes_ba,first_ts,last_ts,cause,tcp_state";

/// Output format.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    #[default]
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// A flow as exported.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct ExportRecord {
    /// IP protocol number.
    pub proto: u8,
    /// Side A: the source of the flow's first packet.
    pub a: (IpAddr, u16),
    /// Side B.
    pub b: (IpAddr, u16),
    /// Packets A→B, B→A.
    pub packets: [u64; 2],
    /// Wire bytes A→B, B→A.
    pub bytes: [u64; 2],
    /// First packet's timestamp (file order).
    pub first_ts: Timestamp,
    /// Last packet's timestamp (file order).
    pub last_ts: Timestamp,
    /// Why it left the table.
    pub cause: RemovalCause,
    /// TCP state at removal, for TCP flows.
    pub tcp_state: Option<TcpState>,
}

impl ExportRecord {
    /// Snapshots a flow leaving the table.
    pub fn new(key: &FlowKey, st: &FlowState, cause: RemovalCause) -> ExportRecord {
        let dir = st.a_dir.unwrap_or(flowtable::Direction::Forward);
        let (a, b) = key.endpoints(dir);
        ExportRecord {
            proto: key.proto(),
            a,
            b,
            packets: st.packets,
            bytes: st.bytes,
            first_ts: st.first_ts,
            last_ts: st.last_ts,
            cause,
            tcp_state: (key.proto() == proto::TCP).then_some(st.tcp),
        }
    }

    /// Total packets.
    pub fn total_packets(&self) -> u64 {
        self.packets[0] + self.packets[1]
    }

    /// Total bytes.
    pub fn total_bytes(&self) -> u64 {
        self.bytes[0] + self.bytes[1]
    }

    /// The `cause` column: `expired`, `flushed` (left at the end of the input), `evicted`, `replaced`.
    pub fn cause_name(&self) -> &'static str {
        cause_name(self.cause)
    }

    /// The row in `format` (without a newline).
    pub fn format(&self, format: Format, out: &mut String) {
        let state = self.tcp_state.map_or("", TcpState::name);
        // Writing to a String cannot fail.
        let _ = match format {
            Format::Csv => {
                // Hand-rolled: this runs once per exported flow, and core::fmt is the slow part.
                push_u64(out, u64::from(self.proto));
                out.push(',');
                push_ip(out, self.a.0);
                out.push(',');
                push_u64(out, u64::from(self.a.1));
                out.push(',');
                push_ip(out, self.b.0);
                out.push(',');
                push_u64(out, u64::from(self.b.1));
                for v in [self.packets[0], self.bytes[0], self.packets[1], self.bytes[1]] {
                    out.push(',');
                    push_u64(out, v);
                }
                for t in [self.first_ts, self.last_ts] {
                    out.push(',');
                    push_ts(out, t);
                }
                out.push(',');
                out.push_str(self.cause_name());
                out.push(',');
                out.push_str(state);
                Ok(())
            }
            Format::Jsonl => write!(
                out,
                concat!(
                    r#"{{"proto":{},"addr_a":"{}","port_a":{},"addr_b":"{}","port_b":{},"#,
                    r#""packets_ab":{},"bytes_ab":{},"packets_ba":{},"bytes_ba":{},"#,
                    r#""first_ts":"{}","last_ts":"{}","cause":"{}","tcp_state":{}}}"#
                ),
                self.proto,
                PyIp(self.a.0),
                self.a.1,
                PyIp(self.b.0),
                self.b.1,
                self.packets[0],
                self.bytes[0],
                self.packets[1],
                self.bytes[1],
                self.first_ts,
                self.last_ts,
                self.cause_name(),
                match self.tcp_state {
                    Some(s) => format!("\"{}\"", s.name()),
                    None => "null".to_owned(),
                }
            ),
        };
    }
}

/// Appends `v` in decimal.
fn push_u64(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(char::from(b));
    }
}

/// Appends a timestamp as `seconds.nanoseconds` with 9 fractional digits (tshark's `frame.time_epoch`).
fn push_ts(out: &mut String, t: Timestamp) {
    let ns = t.as_nanos();
    push_u64(out, ns / 1_000_000_000);
    out.push('.');
    let frac = ns % 1_000_000_000;
    let mut d = 100_000_000;
    while d > 0 {
        out.push(char::from(b'0' + ((frac / d) % 10) as u8));
        d /= 10;
    }
}

/// Appends an address as [`PyIp`] prints it.
fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_u64(out, u64::from(o));
            }
        }
        IpAddr::V6(_) => {
            let _ = write!(out, "{}", PyIp(ip));
        }
    }
}

/// The `cause` column's word for a removal cause.
pub fn cause_name(cause: RemovalCause) -> &'static str {
    match cause {
        RemovalCause::Expired => "expired",
        // The pipeline removes flows only in the final flush (`clear`).
        RemovalCause::Removed => "flushed",
        RemovalCause::Evicted => "evicted",
        RemovalCause::Replaced => "replaced",
    }
}

/// An address printed as Python's `ipaddress` prints it (what the reference files contain):
/// IPv4 dotted quad; IPv6 in RFC 5952 form, lowercase, the longest run (first on a tie) of two or
/// more zero groups compressed, and no dotted-quad tail (Python 3.11 prints `::ffff:102:304`,
/// where Rust prints `::ffff:1.2.3.4`).
pub struct PyIp(pub IpAddr);

impl std::fmt::Display for PyIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => fmt_ipv6(a, f),
        }
    }
}

fn fmt_ipv6(a: Ipv6Addr, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    let g = a.segments();
    let (mut best_start, mut best_len) = (0, 0);
    let mut i = 0;
    while i < 8 {
        if g[i] == 0 {
            let start = i;
            while i < 8 && g[i] == 0 {
                i += 1;
            }
            if i - start > best_len {
                (best_start, best_len) = (start, i - start);
            }
        } else {
            i += 1;
        }
    }
    if best_len < 2 {
        best_len = 0;
    }
    let mut i = 0;
    while i < 8 {
        if best_len > 0 && i == best_start {
            f.write_str(if i == 0 { "::" } else { ":" })?;
            i += best_len;
            continue;
        }
        write!(f, "{:x}", g[i])?;
        if i < 7 {
            f.write_str(":")?;
        }
        i += 1;
    }
    Ok(())
}

/// Per-protocol totals of exported flows.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct ProtoTotals {
    /// Flows.
    pub flows: u64,
    /// Packets.
    pub packets: u64,
    /// Wire bytes.
    pub bytes: u64,
}

/// What the writer thread wrote and tallied.
#[derive(Debug, Default)]
pub struct ExportTotals {
    /// Rows written (flows exported).
    pub rows: u64,
    /// Rows by cause name.
    pub by_cause: BTreeMap<&'static str, u64>,
    /// Totals by IP protocol number.
    pub by_proto: BTreeMap<u8, ProtoTotals>,
    /// The largest flows by bytes, largest first.
    pub largest: Vec<ExportRecord>,
    /// The first error writing the output, if any (rows after it are counted, not written).
    pub write_error: Option<io::Error>,
}

/// How many of the largest flows the summary lists.
pub const TOP_N: usize = 10;

/// The writer thread's body: writes every record from `rx` until all senders are gone.
pub fn write_all(rx: Receiver<ExportRecord>, out: Box<dyn Write + Send>, format: Format) -> ExportTotals {
    // Files and stdout are unbuffered or line-buffered: one write per row would be one syscall.
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut totals = ExportTotals::default();
    let mut out_ok = true;
    let check = |r: io::Result<()>, totals: &mut ExportTotals, ok: &mut bool| {
        if let Err(e) = r {
            if *ok {
                totals.write_error = Some(e);
            }
            *ok = false;
        }
    };
    if format == Format::Csv {
        let r = writeln!(out, "{CSV_HEADER}");
        check(r, &mut totals, &mut out_ok);
    }
    let mut line = String::with_capacity(160);
    for rec in rx {
        totals.rows += 1;
        *totals.by_cause.entry(rec.cause_name()).or_default() += 1;
        let p = totals.by_proto.entry(rec.proto).or_default();
        p.flows += 1;
        p.packets += rec.total_packets();
        p.bytes += rec.total_bytes();
        let pos = totals.largest.partition_point(|r| r.total_bytes() >= rec.total_bytes());
        if pos < TOP_N {
            totals.largest.insert(pos, rec);
            totals.largest.truncate(TOP_N);
        }
        if out_ok {
            line.clear();
            rec.format(format, &mut line);
            line.push('\n');
            let r = out.write_all(line.as_bytes());
            check(r, &mut totals, &mut out_ok);
        }
    }
    if out_ok {
        let r = out.flush();
        check(r, &mut totals, &mut out_ok);
    }
    totals
}

#[cfg(test)]
mod tests {
    use super::*;

    fn py(s: &str) -> String {
        PyIp(s.parse().expect("address")).to_string()
    }

    #[test]
    fn addresses_print_like_python_ipaddress() {
        assert_eq!(py("2001:db8:1:2::1003"), "2001:db8:1:2::1003");
        assert_eq!(py("fe80::20c:29ff:fe1f:a755"), "fe80::20c:29ff:fe1f:a755");
        assert_eq!(py("::"), "::");
        assert_eq!(py("::1"), "::1");
        assert_eq!(py("1::"), "1::");
        assert_eq!(py("::ffff:1.2.3.4"), "::ffff:102:304");
        assert_eq!(py("::1.2.3.4"), "::102:304");
        assert_eq!(py("1:0:1:0:0:1:0:0"), "1:0:1::1:0:0");
        assert_eq!(py("1:0:0:1:0:0:1:1"), "1::1:0:0:1:1");
        assert_eq!(py("1:2:3:4:5:6:0:8"), "1:2:3:4:5:6:0:8");
        assert_eq!(py("2003:DE:2016:120::A08:53"), "2003:de:2016:120::a08:53");
        assert_eq!(py("10.0.0.1"), "10.0.0.1");
    }

    #[test]
    fn csv_row_matches_the_reference_format() {
        let rec = ExportRecord {
            proto: 6,
            a: ("10.0.0.1".parse().expect("ip"), 0),
            b: ("::ffff:1.2.3.4".parse().expect("ip"), 65535),
            packets: [1, 0],
            bytes: [60, u64::MAX],
            first_ts: Timestamp::from_secs_nanos(1_619_605_821, 437_184_000),
            last_ts: Timestamp::from_secs_nanos(0, 5),
            cause: RemovalCause::Removed,
            tcp_state: Some(TcpState::SynSent),
        };
        let mut s = String::new();
        rec.format(Format::Csv, &mut s);
        assert_eq!(
            s,
            "6,10.0.0.1,0,::ffff:102:304,65535,1,60,0,18446744073709551615,1619605821.437184000,0.000000005,flushed,SYN_SENT"
        );
        assert_eq!(s.split(',').count(), CSV_HEADER.split(',').count());
    }
}
