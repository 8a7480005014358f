//! The end-of-run summary printed on stderr.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use flowtable::{proto, FlowKey, Stats};

use crate::export::{ExportTotals, PyIp};
use crate::pipeline::ReadCounts;
use crate::state::FlowValue;

/// Counters of one run.
#[derive(Debug)]
pub struct Summary {
    /// The capture read.
    pub input: PathBuf,
    /// The table backend (`FlowTable::NAME`).
    pub backend: &'static str,
    /// Worker threads (0 for `--parse-only`).
    pub workers: usize,
    /// Packet records read.
    pub packets: u64,
    /// Their wire bytes.
    pub bytes: u64,
    /// Packets with an IP header (counted into flows).
    pub ip_packets: u64,
    /// Well-formed packets without an IP header.
    pub non_ip: u64,
    /// Packets whose headers could not be decoded (skipped).
    pub malformed: u64,
    /// IP packets with a header cut short (still counted into a flow, as tshark does).
    pub truncated: u64,
    /// Packets that could not be counted into a flow (table full).
    pub untracked: u64,
    /// Flows that left the table before their first packet was counted (not exported).
    pub empty_flows: u64,
    /// The table's counters at the end (after the final flush).
    pub stats: Option<Stats>,
    /// Flows still in the table at the end of the input (flushed).
    pub live_at_end: usize,
    /// Most flows in the table at once (sampled after every batch).
    pub peak_live: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// What the writer exported.
    pub export: Option<ExportTotals>,
    /// Wall time of the packet phase (read, decode, workers, expiry) and of the end (final flush
    /// and the writer draining the export).
    pub phases: Option<(Duration, Duration)>,
    /// The table's memory at the end of the packet phase (`Stats::memory_bytes`), and the live flows
    /// then (flows only leave by expiry before that point, so with few expiries this is the peak).
    pub table_memory: Option<(usize, usize)>,
}

impl Summary {
    pub(crate) fn new(
        input: PathBuf,
        backend: &'static str,
        workers: usize,
        c: &ReadCounts,
        elapsed: Duration,
    ) -> Summary {
        Summary {
            input,
            backend,
            workers,
            packets: c.packets,
            bytes: c.bytes,
            ip_packets: c.ip_packets,
            non_ip: c.non_ip,
            malformed: c.malformed,
            truncated: c.truncated,
            untracked: 0,
            empty_flows: 0,
            stats: None,
            live_at_end: 0,
            peak_live: 0,
            elapsed,
            export: None,
            phases: None,
            table_memory: None,
        }
    }

    /// Packets per second of wall time.
    pub fn packets_per_sec(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

fn proto_name(p: u8) -> String {
    match p {
        proto::TCP => "tcp".into(),
        proto::UDP => "udp".into(),
        proto::ICMP => "icmp".into(),
        proto::ICMPV6 => "icmpv6".into(),
        proto::SCTP => "sctp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        n => format!("proto {n}"),
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "flowpipe summary: {}", self.input.display())?;
        writeln!(f, "  backend            {}", self.backend)?;
        writeln!(f, "  workers            {}", self.workers)?;
        writeln!(f, "  packets            {} ({} bytes on the wire)", self.packets, self.bytes)?;
        writeln!(
            f,
            "  ip / non-ip        {} / {}   malformed (skipped) {}   truncated headers {}",
            self.ip_packets, self.non_ip, self.malformed, self.truncated
        )?;
        writeln!(
            f,
            "  time               {:.6} s   {:.0} packets/s",
            self.elapsed.as_secs_f64(),
            self.packets_per_sec()
        )?;
        if let Some((packets, flush)) = self.phases {
            writeln!(
                f,
                "  phases             packets {:.6} s ({:.0} packets/s), final flush + export {:.6} s",
                packets.as_secs_f64(),
                self.packets as f64 / packets.as_secs_f64().max(1e-9),
                flush.as_secs_f64()
            )?;
        }
        let Some(st) = &self.stats else { return Ok(()) };
        writeln!(
            f,
            "  flows              created {}   expired {}   evicted {}   flushed at end {}   rejected (full) {}",
            st.created, st.expired, st.evicted, st.removed, st.rejected_full
        )?;
        if st.evicted > 0 || st.reclaimed_expired > 0 {
            writeln!(
                f,
                "  evicted by class   embryonic {}   closing {}   established {}   (expired reclaimed at capacity {})",
                st.evicted_embryonic, st.evicted_closing, st.evicted_established, st.reclaimed_expired
            )?;
        }
        writeln!(f, "  untracked packets  {}   empty flows {}", self.untracked, self.empty_flows)?;
        writeln!(f, "  peak live flows    {}", self.peak_live)?;
        let per_flow = std::mem::size_of::<FlowKey>() + std::mem::size_of::<FlowValue>();
        match self.table_memory {
            Some((bytes, live)) if live > 0 => writeln!(
                f,
                "  table memory       {:.2} MiB at the end of the packets, {} B per live flow ({live} live; \
                 key+value alone: {per_flow} B)",
                bytes as f64 / (1024.0 * 1024.0),
                bytes / live
            )?,
            Some((bytes, _)) => writeln!(
                f,
                "  table memory       {:.2} MiB at the end of the packets (no flow live then)",
                bytes as f64 / (1024.0 * 1024.0)
            )?,
            None => {}
        }
        let Some(ex) = &self.export else { return Ok(()) };
        let causes: Vec<String> = ex.by_cause.iter().map(|(c, n)| format!("{c} {n}")).collect();
        writeln!(f, "  exported rows      {}   ({})", ex.rows, causes.join(", "))?;
        if let Some(e) = &ex.write_error {
            writeln!(f, "  OUTPUT ERROR       {e} (rows after it were not written)")?;
        }
        writeln!(f, "  per protocol       {:>10} {:>10} {:>14}", "flows", "packets", "bytes")?;
        for (p, t) in &ex.by_proto {
            writeln!(f, "    {:<16} {:>10} {:>10} {:>14}", proto_name(*p), t.flows, t.packets, t.bytes)?;
        }
        writeln!(f, "  largest flows (by bytes)")?;
        for r in &ex.largest {
            writeln!(
                f,
                "    {:<6} {}:{} -> {}:{}   {} packets  {} bytes",
                proto_name(r.proto),
                PyIp(r.a.0),
                r.a.1,
                PyIp(r.b.0),
                r.b.1,
                r.total_packets(),
                r.total_bytes()
            )?;
        }
        Ok(())
    }
}
