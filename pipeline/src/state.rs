//! The per-flow value the pipeline keeps in the table, and the TCP state machine.
//!
//! # Why a per-flow mutex, not atomics
//!
//! A packet updates several fields together (side A on the first packet, counters, the last
//! timestamp, the TCP state) and the removal listener must read them as one consistent snapshot.
//! All packets of a flow go to one worker, so the lock is uncontended except at the moment a flow
//! is exported, when the exporting thread (any worker's `expire`, or the final flush) takes it once.
//! That same lock closes the race between a packet and the flow's removal: the worker takes it,
//! checks [`FlowState::exported`], and calls `touch` while holding it; the listener takes it to
//! export and sets `exported`. So a packet is either counted before the export or goes to a new
//! flow, never lost. A new flow's first packet is counted in `init`, before the flow is visible,
//! so no flow is ever exported empty.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use flowtable::{proto, Direction, FlowClass, FlowKey, Timestamp};

use crate::decode::tcp_flags::{ACK, FIN, RST, SYN};

/// The value stored in the flow table for every flow.
#[derive(Debug, Default)]
pub struct FlowValue(Mutex<FlowState>);

impl FlowValue {
    /// An empty flow (no packet yet).
    pub fn new() -> Self {
        FlowValue::default()
    }
    /// Locks the flow's state (a poisoned lock is still used: the state is plain counters).
    pub fn lock(&self) -> MutexGuard<'_, FlowState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One decoded packet, as the reader hands it to a worker.
#[derive(Copy, Clone, Debug)]
pub struct Packet {
    /// Position in the file (0-based, counting every record that is a packet).
    pub seq: u64,
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Wire length.
    pub wire_len: u32,
    /// The flow key.
    pub key: FlowKey,
    /// The table's hash of `key` (`FlowTable::hash_key`), computed once by the reader for dispatch.
    pub hash: u64,
    /// Direction relative to the key.
    pub dir: Direction,
    /// TCP flags, if a TCP header was captured.
    pub tcp_flags: Option<u8>,
}

/// Side A / side B indices into the per-direction arrays.
const AB: usize = 0;
const BA: usize = 1;

/// A flow's counters and state.
#[derive(Clone, Debug, Default)]
pub struct FlowState {
    /// Whether a packet has been counted (side A is then known).
    pub started: bool,
    /// The direction (relative to the canonical key) of the flow's first packet: side A is its source.
    pub a_dir: Option<Direction>,
    /// Packets A→B and B→A.
    pub packets: [u64; 2],
    /// Wire bytes A→B and B→A.
    pub bytes: [u64; 2],
    /// Timestamp of the first packet in file order.
    pub first_ts: Timestamp,
    /// Timestamp of the last packet in file order.
    pub last_ts: Timestamp,
    /// File-order sequence number of the last packet (per-flow order is checked against it).
    pub last_seq: u64,
    /// TCP state (only for protocol 6).
    pub tcp: TcpState,
    /// Which side sent the first FIN, in the closing states.
    fin_by: Option<usize>,
    /// Set by the removal listener: the flow has been exported and must not count more packets.
    pub exported: bool,
}

/// What one packet changed that the table must hear about.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The flow's idle timeout after this packet.
    pub timeout: Duration,
    /// The flow's eviction class after this packet.
    pub class: FlowClass,
}

impl FlowState {
    /// Counts one packet (which must be in file order for this flow) and advances the state.
    pub fn record(&mut self, p: &Packet, timeouts: &Timeouts) -> Change {
        let (seq, ts, dir, protocol) = (p.seq, p.ts, p.dir, p.key.proto());
        let a_dir = *self.a_dir.get_or_insert(dir);
        if !self.started {
            self.started = true;
            self.first_ts = ts;
        } else {
            debug_assert!(seq > self.last_seq, "packets of one flow must arrive in file order");
        }
        let side = if dir == a_dir { AB } else { BA };
        self.packets[side] += 1;
        self.bytes[side] += u64::from(p.wire_len);
        self.last_ts = ts;
        self.last_seq = seq;
        if protocol == proto::TCP {
            if let Some(f) = p.tcp_flags {
                self.tcp_step(side, f);
            }
        }
        Change { timeout: self.timeout(protocol, timeouts), class: self.class() }
    }

    /// Whether both directions have been seen.
    pub fn replied(&self) -> bool {
        self.packets[AB] > 0 && self.packets[BA] > 0
    }

    /// A simplified Linux conntrack TCP tracker (no window checks).
    fn tcp_step(&mut self, side: usize, f: u8) {
        use TcpState::*;
        let other = 1 - side;
        self.tcp = if f & RST != 0 {
            Close
        } else if f & SYN != 0 && f & ACK == 0 {
            match self.tcp {
                // A new SYN on a closed or time-wait 5-tuple reopens it (same flow record).
                None | SynSent | TimeWait | Close => SynSent,
                s => s,
            }
        } else if f & SYN != 0 {
            match self.tcp {
                SynSent | None if side == BA => SynRecv,
                s => s,
            }
        } else if f & FIN != 0 {
            match self.tcp {
                FinWait | CloseWait if self.fin_by == Some(other) => LastAck,
                // After both FINs, or after a RST, a (retransmitted) FIN changes nothing (conntrack).
                LastAck | TimeWait | Close => self.tcp,
                _ => {
                    self.fin_by = Some(side);
                    FinWait
                }
            }
        } else if f & ACK != 0 {
            match self.tcp {
                SynRecv if side == AB => Established,
                // Picked up in the middle of a connection (conntrack's loose mode).
                None => Established,
                FinWait if self.fin_by == Some(other) => CloseWait,
                LastAck if self.fin_by == Some(side) => TimeWait,
                s => s,
            }
        } else {
            self.tcp
        };
    }

    /// The idle timeout for the flow's current state.
    pub fn timeout(&self, protocol: u8, t: &Timeouts) -> Duration {
        match protocol {
            proto::TCP => match self.tcp {
                TcpState::None => t.generic,
                TcpState::SynSent => t.tcp_syn_sent,
                TcpState::SynRecv => t.tcp_syn_recv,
                TcpState::Established => t.tcp_established,
                TcpState::FinWait => t.tcp_fin_wait,
                TcpState::CloseWait => t.tcp_close_wait,
                TcpState::LastAck => t.tcp_last_ack,
                TcpState::TimeWait => t.tcp_time_wait,
                TcpState::Close => t.tcp_close,
            },
            proto::UDP if self.replied() => t.udp_stream,
            proto::UDP => t.udp,
            proto::ICMP | proto::ICMPV6 => t.icmp,
            _ => t.generic,
        }
    }

    /// The eviction class: embryonic until both directions are seen, closing once TCP tears down.
    pub fn class(&self) -> FlowClass {
        match self.tcp {
            TcpState::FinWait | TcpState::CloseWait | TcpState::LastAck | TcpState::TimeWait | TcpState::Close => {
                FlowClass::Closing
            }
            _ if self.replied() => FlowClass::Established,
            _ => FlowClass::Embryonic,
        }
    }
}

/// TCP connection states (a subset of conntrack's).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum TcpState {
    /// No TCP header seen yet (or not TCP).
    #[default]
    None,
    /// SYN sent by side A.
    SynSent,
    /// SYN+ACK answered.
    SynRecv,
    /// Handshake done (or picked up mid-stream).
    Established,
    /// One side sent FIN.
    FinWait,
    /// The other side acknowledged the FIN.
    CloseWait,
    /// Both sides sent FIN.
    LastAck,
    /// The last FIN was acknowledged.
    TimeWait,
    /// Reset.
    Close,
}

impl TcpState {
    /// The name printed in the `tcp_state` column.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
        }
    }
}

/// Idle timeouts per protocol and TCP state (defaults: Linux conntrack's).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP SYN sent.
    pub tcp_syn_sent: Duration,
    /// TCP SYN received.
    pub tcp_syn_recv: Duration,
    /// TCP established.
    pub tcp_established: Duration,
    /// TCP FIN wait.
    pub tcp_fin_wait: Duration,
    /// TCP close wait.
    pub tcp_close_wait: Duration,
    /// TCP last ACK.
    pub tcp_last_ack: Duration,
    /// TCP time wait.
    pub tcp_time_wait: Duration,
    /// TCP closed by RST.
    pub tcp_close: Duration,
    /// UDP seen in one direction only.
    pub udp: Duration,
    /// UDP seen in both directions.
    pub udp_stream: Duration,
    /// ICMP and ICMPv6.
    pub icmp: Duration,
    /// Every other protocol, and TCP flows without a TCP header (non-first fragments).
    pub generic: Duration,
}

/// The timeout used for everything with `--no-timeouts`: 100 years.
pub const NO_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 86_400);

impl Timeouts {
    /// Every timeout set to [`NO_TIMEOUT`].
    pub fn none() -> Timeouts {
        let n = NO_TIMEOUT;
        Timeouts {
            tcp_syn_sent: n,
            tcp_syn_recv: n,
            tcp_established: n,
            tcp_fin_wait: n,
            tcp_close_wait: n,
            tcp_last_ack: n,
            tcp_time_wait: n,
            tcp_close: n,
            udp: n,
            udp_stream: n,
            icmp: n,
            generic: n,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        let s = Duration::from_secs;
        Timeouts {
            tcp_syn_sent: s(120),
            tcp_syn_recv: s(60),
            tcp_established: s(432_000),
            tcp_fin_wait: s(120),
            tcp_close_wait: s(60),
            tcp_last_ack: s(30),
            tcp_time_wait: s(120),
            tcp_close: s(10),
            udp: s(30),
            udp_stream: s(120),
            icmp: s(30),
            generic: s(600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::{Forward as F, Reverse as R};

    fn pkt(seq: u64, dir: Direction, protocol: u8, tcp_flags: Option<u8>) -> Packet {
        let a = std::net::IpAddr::from([10, 0, 0, 1]);
        let b = std::net::IpAddr::from([10, 0, 0, 2]);
        let (key, _) = FlowKey::new(protocol, a, 1, b, 2, flowtable::Zone::DEFAULT).expect("same family");
        Packet { seq, ts: Timestamp::from_secs(seq), wire_len: 60, key, hash: 0, dir, tcp_flags }
    }

    #[test]
    fn handshake_and_teardown() {
        let t = Timeouts::default();
        let mut s = FlowState::default();
        let mut seq = 0;
        let mut step = |s: &mut FlowState, dir, flags| {
            seq += 1;
            s.record(&pkt(seq, dir, proto::TCP, Some(flags)), &t)
        };
        assert_eq!(step(&mut s, R, SYN).timeout, t.tcp_syn_sent);
        assert_eq!(s.tcp, TcpState::SynSent);
        assert_eq!(s.class(), FlowClass::Embryonic);
        step(&mut s, F, SYN | ACK);
        assert_eq!(s.tcp, TcpState::SynRecv);
        let c = step(&mut s, R, ACK);
        assert_eq!((s.tcp, c.class), (TcpState::Established, FlowClass::Established));
        step(&mut s, R, FIN | ACK);
        assert_eq!(s.tcp, TcpState::FinWait);
        step(&mut s, F, ACK);
        assert_eq!(s.tcp, TcpState::CloseWait);
        step(&mut s, F, FIN | ACK);
        assert_eq!(s.tcp, TcpState::LastAck);
        let c = step(&mut s, R, ACK);
        assert_eq!((s.tcp, c.timeout, c.class), (TcpState::TimeWait, t.tcp_time_wait, FlowClass::Closing));
        assert_eq!((s.a_dir, s.packets), (Some(R), [4, 3]));
        step(&mut s, F, RST);
        assert_eq!(s.tcp, TcpState::Close);
        // Origin: vlan-ipv6-smtp.pcap frame 69, a FIN after the RST, re-opened the teardown.
        step(&mut s, F, FIN | ACK);
        assert_eq!(s.tcp, TcpState::Close);
    }

    #[test]
    fn udp_stream_after_reply() {
        let t = Timeouts::default();
        let mut s = FlowState::default();
        assert_eq!(s.record(&pkt(1, F, proto::UDP, None), &t).timeout, t.udp);
        assert_eq!(s.record(&pkt(2, R, proto::UDP, None), &t).timeout, t.udp_stream);
        assert_eq!(s.first_ts, Timestamp::from_secs(1));
        assert_eq!(s.bytes, [60, 60]);
    }
}
