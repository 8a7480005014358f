//! Packet decoding: from a link-layer frame to the flow it belongs to.
//!
//! The flow definition is the one of `shared/traces/flows-from-tshark` (tshark is the arbiter):
//!
//! - the OUTERMOST IPv4/IPv6 header decides (tunnels fold into their outer flow);
//! - the protocol is that header's protocol; for IPv6 it is the Next Header of the last
//!   hop-by-hop / routing / fragment / destination-options header (AH, ESP and the rest are
//!   protocols of their own, as in Wireshark);
//! - TCP, UDP and SCTP ports when the L4 header is present in the packet: not for non-first
//!   fragments, and not when fewer than 4 bytes of it were captured;
//! - ICMP echo request/reply (types 8/0) and ICMPv6 echo (128/129) use the echo identifier as both
//!   ports; everything else uses 0 and 0.
//!
//! etherparse parses the link layer (Ethernet II, 802.1Q, QinQ), the IPv4 header with its options
//! and the fixed IPv6 header. What etherparse rejects but tshark still dissects is handled here:
//! a first fragment's L4 header (etherparse stops at fragmented payloads), a cut L4 header (ports
//! need only its first 4 bytes, an echo identifier bytes 4..6), Wireshark's IPv6 protocol rule and
//! its reading of a zero IPv6 payload length. Every such rule was checked against tshark on the
//! synthetic captures in `tests/data/` (made by `tests/data/make-edge-cases.py`).

use std::net::{IpAddr, Ipv6Addr};

use etherparse::{EtherType, Ethernet2HeaderSlice, Ipv4HeaderSlice, Ipv6HeaderSlice, SingleVlanHeaderSlice};
use flowtable::{proto, Direction, FlowKey, Zone};
use pcap_file::DataLink;

/// The link layers the pipeline decodes.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum LinkType {
    /// Ethernet II (DLT 1), with any 802.1Q / 802.1ad tags.
    Ethernet,
    /// Linux cooked capture v1 (DLT 113).
    LinuxSll,
    /// Linux cooked capture v2 (DLT 276).
    LinuxSll2,
    /// Raw IP, version from the first nibble (DLT 101, and the DLT_RAW values 12 and 14).
    RawIp,
    /// Raw IPv4 (DLT 228).
    Ipv4,
    /// Raw IPv6 (DLT 229).
    Ipv6,
    /// BSD loopback (DLT 0): a 4-byte address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback (DLT 108): a 4-byte address family in network byte order.
    Loop,
    /// Anything else: its packets are counted as malformed and skipped.
    Unsupported(u32),
}

impl From<DataLink> for LinkType {
    fn from(d: DataLink) -> LinkType {
        match d {
            DataLink::ETHERNET => LinkType::Ethernet,
            DataLink::LINUX_SLL => LinkType::LinuxSll,
            DataLink::LINUX_SLL2 => LinkType::LinuxSll2,
            // pcap-file has no names for DLT 12 and 14 (DLT_RAW on most systems / on some BSDs).
            DataLink::RAW | DataLink::Unknown(12) | DataLink::Unknown(14) => LinkType::RawIp,
            DataLink::IPV4 => LinkType::Ipv4,
            DataLink::IPV6 => LinkType::Ipv6,
            DataLink::NULL => LinkType::Null,
            DataLink::LOOP => LinkType::Loop,
            other => LinkType::Unsupported(u32::from(other)),
        }
    }
}

/// What a packet contributes to its flow.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct FlowPacket {
    /// The canonical key.
    pub key: FlowKey,
    /// The packet's direction relative to the key.
    pub dir: Direction,
    /// TCP flags, when a TCP header with its flags byte was captured.
    pub tcp_flags: Option<u8>,
    /// Some header was cut short (the packet still makes a flow, as it does in tshark).
    pub truncated: bool,
}

/// The result of decoding one frame.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    /// An IP packet and its flow.
    Flow(FlowPacket),
    /// A well-formed frame without an IP header (ARP, LLDP, ...): not a flow.
    NotIp,
    /// A frame whose headers cannot be decoded far enough to make a flow.
    Malformed(&'static str),
}

/// TCP flag bits (byte 13 of the TCP header).
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_VLAN: [u16; 3] = [0x8100, 0x88A8, 0x9100];
const ETH_MPLS: [u16; 2] = [0x8847, 0x8848];
const ETH_PPPOE_SESSION: u16 = 0x8864;
/// The most tags we follow before giving up on a frame.
const MAX_TAGS: usize = 8;

/// Decodes one frame of link type `link`.
pub fn decode(link: LinkType, frame: &[u8]) -> Decoded {
    match link {
        LinkType::Ethernet => decode_ethernet(frame),
        LinkType::LinuxSll => match frame.get(14..16) {
            Some(p) => decode_ether_type(u16::from_be_bytes([p[0], p[1]]), &frame[16..]),
            None => Decoded::Malformed("truncated Linux cooked header"),
        },
        LinkType::LinuxSll2 => match frame.get(..2) {
            Some(p) if frame.len() >= 20 => decode_ether_type(u16::from_be_bytes([p[0], p[1]]), &frame[20..]),
            _ => Decoded::Malformed("truncated Linux cooked v2 header"),
        },
        LinkType::RawIp => decode_ip_by_version(frame),
        LinkType::Ipv4 => decode_ipv4(frame),
        LinkType::Ipv6 => decode_ipv6(frame),
        LinkType::Null | LinkType::Loop => {
            let Some(h) = frame.get(..4) else { return Decoded::Malformed("truncated loopback header") };
            let raw = [h[0], h[1], h[2], h[3]];
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(raw)
            } else {
                // Host byte order of the capturing machine: a family fits in the low 16 bits, so
                // a value with high bits set was written in the other byte order (as Wireshark).
                let v = u32::from_le_bytes(raw);
                if v & 0xFFFF_0000 != 0 {
                    v.swap_bytes()
                } else {
                    v
                }
            };
            match family {
                2 => decode_ipv4(&frame[4..]),
                // AF_INET6 on Linux, NetBSD/OpenBSD, FreeBSD, Darwin.
                10 | 24 | 28 | 30 => decode_ipv6(&frame[4..]),
                _ => Decoded::NotIp,
            }
        }
        LinkType::Unsupported(_) => Decoded::Malformed("unsupported link type"),
    }
}

fn decode_ethernet(frame: &[u8]) -> Decoded {
    match Ethernet2HeaderSlice::from_slice(frame) {
        Ok(eth) => decode_ether_type(eth.ether_type().0, &frame[eth.slice().len()..]),
        Err(_) => Decoded::Malformed("truncated Ethernet header"),
    }
}

/// Follows VLAN tags (802.1Q, 802.1ad, QinQ), MPLS labels and PPPoE sessions down to an IP header.
fn decode_ether_type(mut ether_type: u16, mut payload: &[u8]) -> Decoded {
    for _ in 0..MAX_TAGS {
        if ETH_VLAN.contains(&ether_type) {
            match SingleVlanHeaderSlice::from_slice(payload) {
                Ok(vlan) => {
                    ether_type = vlan.ether_type().0;
                    payload = &payload[vlan.slice().len()..];
                }
                Err(_) => return Decoded::Malformed("truncated VLAN tag"),
            }
        } else if ETH_MPLS.contains(&ether_type) {
            // Labels down to the bottom of the stack, then IP by its version nibble (as Wireshark).
            loop {
                let Some(label) = payload.get(..4) else { return Decoded::Malformed("truncated MPLS label") };
                payload = &payload[4..];
                if label[2] & 1 == 1 {
                    break;
                }
            }
            return match payload.first().map(|b| b >> 4) {
                Some(4) => decode_ipv4(payload),
                Some(6) => decode_ipv6(payload),
                _ => Decoded::NotIp,
            };
        } else if ether_type == ETH_PPPOE_SESSION {
            let Some(h) = payload.get(..8) else { return Decoded::Malformed("truncated PPPoE header") };
            let ppp = u16::from_be_bytes([h[6], h[7]]);
            return match ppp {
                0x0021 => decode_ipv4(&payload[8..]),
                0x0057 => decode_ipv6(&payload[8..]),
                _ => Decoded::NotIp,
            };
        } else {
            return match EtherType(ether_type) {
                EtherType(ETH_IPV4) => decode_ipv4(payload),
                EtherType(ETH_IPV6) => decode_ipv6(payload),
                _ => Decoded::NotIp,
            };
        }
    }
    Decoded::Malformed("too many VLAN/MPLS tags")
}

fn decode_ip_by_version(packet: &[u8]) -> Decoded {
    match packet.first().map(|b| b >> 4) {
        Some(4) => decode_ipv4(packet),
        Some(6) => decode_ipv6(packet),
        Some(_) => Decoded::Malformed("raw IP packet of unknown version"),
        None => Decoded::Malformed("empty raw IP packet"),
    }
}

fn decode_ipv4(packet: &[u8]) -> Decoded {
    // A header cut anywhere, options included, gives tshark no addresses: no flow.
    let Ok(h) = Ipv4HeaderSlice::from_slice(packet) else { return Decoded::Malformed("bad or truncated IPv4 header") };
    let hlen = h.slice().len();
    let total = usize::from(h.total_len());
    if total != 0 && total < hlen {
        // Wireshark: "Bogus IP length", no addresses (a zero length is TSO: the frame is used).
        return Decoded::Malformed("IPv4 total length below header length");
    }
    let end = if total == 0 { packet.len() } else { total.min(packet.len()) };
    let (src, dst, protocol) = (h.source_addr(), h.destination_addr(), h.protocol().0);
    let (frag_offset, l4) = (h.fragments_offset().value(), &packet[hlen..end]);
    let mut truncated = false;
    let (sport, dport, tcp_flags) = if frag_offset == 0 {
        let (s, d, f, cut) = l4_ports(protocol, l4);
        truncated |= cut;
        (s, d, f)
    } else {
        (0, 0, None)
    };
    flow(protocol, IpAddr::V4(src), sport, IpAddr::V4(dst), dport, tcp_flags, truncated)
}

fn decode_ipv6(packet: &[u8]) -> Decoded {
    let Ok(h) = Ipv6HeaderSlice::from_slice(packet) else { return Decoded::Malformed("truncated IPv6 header") };
    let rest = &packet[40..];
    let payload_len = usize::from(h.payload_length());
    // A zero payload length means an empty payload to tshark 4.0, even with a hop-by-hop jumbo
    // payload option: the protocol is then the fixed header's Next Header, without ports.
    let mut p = &rest[..payload_len.min(rest.len())];
    let mut protocol = h.next_header().0;
    let mut l4_present = true;
    let mut truncated = false;
    // Wireshark's rule: hop-by-hop (0), routing (43), fragment (44) and destination options (60)
    // belong to the IPv6 header; the protocol is the Next Header of the last of them.
    for _ in 0..16 {
        match protocol {
            0 | 43 | 60 => {
                let Some(&[next, len]) = p.get(..2) else {
                    l4_present = false;
                    truncated = true;
                    break;
                };
                let ext_len = (usize::from(len) + 1) * 8;
                protocol = next;
                match p.get(ext_len..) {
                    Some(r) => p = r,
                    None => {
                        l4_present = false;
                        truncated = true;
                        break;
                    }
                }
            }
            44 => {
                let Some(f) = p.get(..8) else {
                    // The Next Header byte alone still names the protocol.
                    if let Some(&next) = p.first() {
                        protocol = next;
                    }
                    l4_present = false;
                    truncated = true;
                    break;
                };
                protocol = f[0];
                let offset = u16::from_be_bytes([f[2], f[3]]) >> 3;
                p = &p[8..];
                if offset != 0 {
                    // A non-first fragment: its payload is data, not headers.
                    l4_present = false;
                    break;
                }
            }
            _ => break,
        }
    }
    let (sport, dport, tcp_flags) = if l4_present {
        let (s, d, f, cut) = l4_ports(protocol, p);
        truncated |= cut;
        (s, d, f)
    } else {
        (0, 0, None)
    };
    let src = Ipv6Addr::from(h.source());
    let dst = Ipv6Addr::from(h.destination());
    flow(protocol, IpAddr::V6(src), sport, IpAddr::V6(dst), dport, tcp_flags, truncated)
}

/// Ports (or the echo identifier) and TCP flags from the start of an L4 header, and whether the
/// header was cut short. Ports need only the header's first 4 bytes, as in tshark.
fn l4_ports(protocol: u8, l4: &[u8]) -> (u16, u16, Option<u8>, bool) {
    let be16 = |at: usize| l4.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    match protocol {
        proto::TCP | proto::UDP | proto::SCTP => {
            let min = match protocol {
                proto::TCP => 20,
                proto::UDP => 8,
                _ => 12,
            };
            let cut = l4.len() < min;
            match (be16(0), be16(2)) {
                (Some(s), Some(d)) => {
                    let flags = if protocol == proto::TCP { l4.get(13).copied() } else { None };
                    (s, d, flags, cut)
                }
                _ => (0, 0, None, cut),
            }
        }
        proto::ICMP | proto::ICMPV6 => {
            let echo: &[u8] = if protocol == proto::ICMP { &[0, 8] } else { &[128, 129] };
            match l4.first() {
                // The identifier needs bytes 4..6 only (tshark, checked on cut packets).
                Some(t) if echo.contains(t) => match be16(4) {
                    Some(ident) => (ident, ident, None, l4.len() < 8),
                    None => (0, 0, None, true),
                },
                Some(_) => (0, 0, None, false),
                None => (0, 0, None, true),
            }
        }
        _ => (0, 0, None, false),
    }
}

fn flow(
    protocol: u8,
    src: IpAddr,
    sport: u16,
    dst: IpAddr,
    dport: u16,
    tcp_flags: Option<u8>,
    truncated: bool,
) -> Decoded {
    match FlowKey::new(protocol, src, sport, dst, dport, Zone::DEFAULT) {
        Ok((key, dir)) => Decoded::Flow(FlowPacket { key, dir, tcp_flags, truncated }),
        // Unreachable: both addresses come from one header, so they share a family.
        Err(_) => Decoded::Malformed("mixed address families"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ether_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    fn ipv4(protocol: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let total = (20 + l4.len()) as u16;
        let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        h[2..4].copy_from_slice(&total.to_be_bytes());
        h[6..8].copy_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(l4);
        h
    }

    fn ports(d: Decoded) -> (u8, u16, u16) {
        match d {
            Decoded::Flow(f) => {
                let ((_, a), (_, b)) = f.key.endpoints(f.dir);
                (f.key.proto(), a, b)
            }
            other => panic!("not a flow: {other:?}"),
        }
    }

    #[test]
    fn udp_ports_and_fragments() {
        let udp = [0x13, 0x88, 0x00, 0x35, 0, 8, 0, 0];
        assert_eq!(ports(decode(LinkType::Ethernet, &eth(0x0800, &ipv4(17, 0, &udp)))), (17, 5000, 53));
        // First fragment (MF set, offset 0): ports. Non-first: none.
        assert_eq!(ports(decode(LinkType::Ethernet, &eth(0x0800, &ipv4(17, 0x2000, &udp)))), (17, 5000, 53));
        assert_eq!(ports(decode(LinkType::Ethernet, &eth(0x0800, &ipv4(17, 0x0010, &udp)))), (17, 0, 0));
        // A cut UDP header still has its ports.
        assert_eq!(ports(decode(LinkType::RawIp, &ipv4(17, 0, &udp[..4]))), (17, 5000, 53));
        assert_eq!(ports(decode(LinkType::RawIp, &ipv4(17, 0, &udp[..3]))), (17, 0, 0));
    }

    #[test]
    fn icmp_echo_uses_identifier() {
        let echo = [8, 0, 0, 0, 0x12, 0x34, 0, 1];
        assert_eq!(ports(decode(LinkType::Ipv4, &ipv4(1, 0, &echo))), (1, 0x1234, 0x1234));
        let unreach = [3, 3, 0, 0, 0, 0, 0, 0];
        assert_eq!(ports(decode(LinkType::Ipv4, &ipv4(1, 0, &unreach))), (1, 0, 0));
    }

    #[test]
    fn qinq_and_garbage() {
        let udp = [0, 1, 0, 2, 0, 8, 0, 0];
        let mut tags = vec![0, 100, 0x81, 0x00, 0, 200, 0x08, 0x00];
        tags.extend_from_slice(&ipv4(17, 0, &udp));
        assert_eq!(ports(decode(LinkType::Ethernet, &eth(0x88A8, &tags))), (17, 1, 2));
        assert_eq!(decode(LinkType::Ethernet, &eth(0x0806, &[0; 28])), Decoded::NotIp);
        assert!(matches!(decode(LinkType::Ethernet, &[1, 2, 3]), Decoded::Malformed(_)));
        assert!(matches!(decode(LinkType::Ethernet, &eth(0x0800, &[0x45, 0, 0])), Decoded::Malformed(_)));
        assert!(matches!(decode(LinkType::Unsupported(999), &[0; 64]), Decoded::Malformed(_)));
        // An IPv4 header cut inside its options makes no flow (tshark shows no addresses).
        let mut opts = ipv4(6, 0, &[0; 20]);
        opts[0] = 0x46;
        assert!(matches!(decode(LinkType::RawIp, &opts[..22]), Decoded::Malformed(_)));
    }

    #[test]
    fn ipv6_protocol_is_after_the_fragment_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        // Fragment header: next 58, offset 0, M=1; then an echo request with identifier 59968.
        p.extend_from_slice(&[58, 0, 0, 1, 0, 0, 0, 7]);
        p.extend_from_slice(&[128, 0, 0, 0, 0xEA, 0x40, 0, 1]);
        assert_eq!(ports(decode(LinkType::Ipv6, &p)), (58, 59968, 59968));
        // The same with a non-zero fragment offset: protocol 58, no identifier.
        p[40 + 2..40 + 4].copy_from_slice(&(185u16 << 3).to_be_bytes());
        assert_eq!(ports(decode(LinkType::Ipv6, &p)), (58, 0, 0));
    }
}
