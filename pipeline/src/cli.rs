//! Command-line options (clap derive): `flowpipe --help` prints these doc comments.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args as ClapArgs, Parser};

use crate::export::Format;
use crate::state::Timeouts;

/// The bundled capture used when no input is given, relative to the workspace root.
pub const DEFAULT_INPUT: &str = "data/demo.pcapng";

/// flowpipe: reads a pcap or pcapng capture, tracks its bidirectional flows in a concurrent
/// flowtable with per-flow idle timeouts, and exports every flow when it leaves the table.
///
/// A reader thread decodes packets (Ethernet, 802.1Q/QinQ, Linux cooked v1/v2, raw IP, loopback;
/// IPv4 and IPv6 with options, extension headers and fragments) and hands them in batches to the
/// workers, by a hash of the flow key so both directions of a flow reach the same worker. Flows are
/// keyed by the outermost IP header, exactly as the reference script `flows-from-tshark`.
/// Columns: proto,addr_a,port_a,addr_b,port_b,packets_ab,bytes_ab,packets_ba,bytes_ba,first_ts,
/// last_ts,cause,tcp_state. A summary goes to stderr at the end.
#[derive(Parser, Debug, Clone)]
#[command(name = "flowpipe", version, verbatim_doc_comment)]
pub struct Args {
    /// Capture file to read (pcap or pcapng). Default: `data/demo.pcapng` in the workspace root.
    pub input: Option<PathBuf>,

    /// Worker threads that update the flow table (default: the number of cores).
    #[arg(short, long, value_parser = clap::value_parser!(u16).range(1..))]
    pub workers: Option<u16>,

    /// Output format of the exported flows.
    #[arg(short, long, value_enum, default_value_t = Format::Csv)]
    pub format: Format,

    /// Write the exported flows to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// Disable idle timeouts (every flow lives until the end of the input and is exported then,
    /// with cause `flushed`): the export then equals tshark's flow table row for row.
    #[arg(long)]
    pub no_timeouts: bool,

    /// Only read and decode the capture (no flow table, no export): measures the parser alone.
    #[arg(long)]
    pub parse_only: bool,

    /// No progress bar (it is also hidden when stderr is not a terminal) and no summary.
    #[arg(short, long)]
    pub quiet: bool,

    /// Packets per batch handed from the reader to a worker.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub batch: u32,

    /// Most flows one worker expires between two batches.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub expire_budget: u32,

    /// Most flows in the table at once (default: unlimited); packets of refused new flows are
    /// counted as untracked.
    #[arg(long)]
    pub max_flows: Option<usize>,

    /// At --max-flows, evict a flow to make room for a new one instead of refusing it: a flow past
    /// its deadline first, then the least recently seen embryonic, closing, established flow
    /// (conntrack's early drop). Evicted flows are exported with cause `evicted`.
    #[arg(long, requires = "max_flows")]
    pub evict: bool,

    /// Shards of the flow table, a power of two (default: the library's, 4 per core).
    #[arg(long)]
    pub shards: Option<usize>,

    /// Idle timeouts, in seconds (defaults: Linux conntrack's).
    #[command(flatten)]
    pub timeouts: TimeoutArgs,
}

/// Idle timeouts in seconds, per protocol and TCP state.
#[derive(ClapArgs, Debug, Clone)]
pub struct TimeoutArgs {
    /// TCP after a SYN, before the answer (s).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub tcp_syn_sent: u64,
    /// TCP after the SYN+ACK (s).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub tcp_syn_recv: u64,
    /// TCP established (s).
    #[arg(long, default_value_t = 432_000, value_name = "SECS")]
    pub tcp_established: u64,
    /// TCP after the first FIN (s).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub tcp_fin_wait: u64,
    /// TCP after the first FIN was acknowledged (s).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub tcp_close_wait: u64,
    /// TCP after both FINs (s).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub tcp_last_ack: u64,
    /// TCP after the last FIN was acknowledged (s).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub tcp_time_wait: u64,
    /// TCP after a RST (s).
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub tcp_close: u64,
    /// UDP seen in one direction only (s).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub udp: u64,
    /// UDP seen in both directions (s).
    #[arg(long, default_value_t = 120, value_name = "SECS")]
    pub udp_stream: u64,
    /// ICMP and ICMPv6 (s).
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub icmp: u64,
    /// Every other protocol, and TCP packets without a TCP header (s).
    #[arg(long, default_value_t = 600, value_name = "SECS")]
    pub generic: u64,
}

impl Args {
    /// The timeouts these options select (`--no-timeouts` overrides every one).
    pub fn timeouts(&self) -> Timeouts {
        if self.no_timeouts {
            return Timeouts::none();
        }
        let t = &self.timeouts;
        // A zero timeout is not allowed by the table: use the smallest one instead.
        let s = |v: u64| Duration::from_secs(v).max(Duration::from_micros(1));
        Timeouts {
            tcp_syn_sent: s(t.tcp_syn_sent),
            tcp_syn_recv: s(t.tcp_syn_recv),
            tcp_established: s(t.tcp_established),
            tcp_fin_wait: s(t.tcp_fin_wait),
            tcp_close_wait: s(t.tcp_close_wait),
            tcp_last_ack: s(t.tcp_last_ack),
            tcp_time_wait: s(t.tcp_time_wait),
            tcp_close: s(t.tcp_close),
            udp: s(t.udp),
            udp_stream: s(t.udp_stream),
            icmp: s(t.icmp),
            generic: s(t.generic),
        }
    }

    /// The worker count: `--workers` or the number of cores.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Args::command().debug_assert();
        let a = Args::parse_from(["flowpipe", "x.pcap", "--no-timeouts", "-w", "3"]);
        assert_eq!(a.worker_count(), 3);
        assert_eq!(a.timeouts(), Timeouts::none());
        let d = Args::parse_from(["flowpipe"]);
        assert_eq!(d.timeouts(), Timeouts::default());
    }
}
