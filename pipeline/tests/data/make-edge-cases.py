#!/usr/bin/env python3
"""Writes the synthetic edge-case captures next to this script; their reference flow tables come
from tshark through ../../../../shared/traces/flows-from-tshark (tshark is the arbiter):

    ./make-edge-cases.py
    for f in edge-*.pcap edge-*.pcapng; do ../../../../shared/traces/flows-from-tshark $f > $f.flows.csv; done

edge-links.pcapng: one interface per link type (Ethernet, Linux SLL and SLL2, raw IP 101, IPv4 228,
IPv6 229, NULL little- and big-endian, LOOP, DLT 12), each with its own if_tsresol (micro, nano,
milli, 2^-20, 2^-10...), and the same UDP flow between two hosts on each, plus header edge cases
on Ethernet: IPv4 options cut by the snap length, TCP/UDP/ICMP headers cut at several lengths,
IPv6 extension header chains (hop-by-hop, routing, destination options, AH, fragments), IPv4
fragments, IPv4-mapped IPv6 addresses, QinQ and triple tags, MPLS, PPPoE, IP-in-IP, SCTP, ICMPv6
in IPv4 and a bogus IPv4 header length.
edge-be-nsec.pcap: a big-endian, nanosecond-resolution pcap with a NULL link layer.
edge-sections.pcapng: two sections, the first big-endian (raw IPv4, nanoseconds), the second
little-endian (Ethernet, microseconds): interface 0 means a different interface in each section.
"""
import struct

MAC = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"


def csum(b):
    return 0  # tshark is run with checksum validation off


def ipv4(src, dst, proto, payload, opts=b"", frag=0, total=None, vhl=None, ident=1):
    hl = 20 + len(opts)
    tl = hl + len(payload) if total is None else total
    v = (0x40 | (hl // 4)) if vhl is None else vhl
    h = struct.pack("!BBHHHBBH4s4s", v, 0, tl, ident, frag, 64, proto, 0, bytes(src), bytes(dst)) + opts
    return h + payload


def ipv6(src, dst, nh, payload, plen=None):
    pl = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 0x60000000, pl, nh, 64, bytes(src), bytes(dst)) + payload


def udp(sp, dp, data=b"hello"):
    return struct.pack("!HHHH", sp, dp, 8 + len(data), 0) + data


def tcp(sp, dp, flags=0x02, data=b""):
    return struct.pack("!HHIIBBHHH", sp, dp, 1, 0, 0x50, flags, 65535, 0, 0) + data


def icmp(t, ident, seq=1, data=b"ping"):
    return struct.pack("!BBHHH", t, 0, 0, ident, seq) + data


def eth(et, payload):
    return MAC + struct.pack("!H", et) + payload


A4, B4 = [10, 0, 0, 1], [10, 0, 0, 2]
C4, D4 = [192, 168, 7, 1], [192, 168, 7, 2]
A6 = [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [1]
B6 = [0x20, 0x01, 0x0D, 0xB8] + [0] * 11 + [2]
M6 = [0] * 10 + [0xFF, 0xFF, 1, 2, 3, 4]  # ::ffff:1.2.3.4
C6 = [0] * 12 + [5, 6, 7, 8]  # ::5.6.7.8 (IPv4-compatible)
Z6 = [0x20, 0x01, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0]  # 2001:0:0:1::1:0:0 -> 2001::1:0:0:1:0:0


def ext(nh, body6):
    """A generic extension header (hop-by-hop, routing, dest options) of 8 bytes."""
    return bytes([nh, 0]) + body6


def frag6(nh, offset, more, ident=7):
    return struct.pack("!BBHI", nh, 0, (offset << 3) | (1 if more else 0), ident)


def ah(nh):
    return bytes([nh, 1, 0, 0]) + struct.pack("!II", 0x100, 1) + b"\x00" * 4  # 12 bytes: len=1 -> (1+2)*4


# ---------------------------------------------------------------- pcapng writer
def opt(code, value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * pad


def block(btype, body):
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def shb():
    return block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(link, tsresol, snaplen=0):
    opts = opt(9, bytes([tsresol])) + opt(0, b"") if tsresol is not None else b""
    return block(1, struct.pack("<HHI", link, 0, snaplen) + opts)


def epb(iface, ticks, data, orig=None):
    orig = len(data) if orig is None else orig
    pad = (4 - len(data) % 4) % 4
    body = struct.pack("<IIIII", iface, ticks >> 32, ticks & 0xFFFFFFFF, len(data), orig) + data + b"\x00" * pad
    return block(6, body)


def sll(proto, payload):
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x00\x11\x22\x33\x44\x55\x00\x00", proto) + payload


def sll2(proto, payload):
    return struct.pack("!HHIHBB8s", proto, 0, 3, 1, 0, 6, b"\x00\x11\x22\x33\x44\x55\x00\x00") + payload


def main():
    base = 1_700_000_000
    # (link type, tsresol byte, units per second)
    ifaces = [
        (1, 6, 10**6),  # 0 Ethernet, microseconds
        (113, 9, 10**9),  # 1 SLL, nanoseconds
        (276, 3, 10**3),  # 2 SLL2, milliseconds
        (101, 0x80 | 20, 2**20),  # 3 raw IP, 2^-20 s
        (228, None, 10**6),  # 4 IPv4, default resolution
        (229, 0x80 | 10, 2**10),  # 5 IPv6, 2^-10 s
        (0, 6, 10**6),  # 6 NULL (little-endian family)
        (0, 6, 10**6),  # 7 NULL (big-endian family)
        (108, 6, 10**6),  # 8 LOOP
        (12, 7, 10**7),  # 9 DLT_RAW 12, 100 ns
    ]
    out = bytearray(shb())
    for link, res, _ in ifaces:
        out += idb(link, res)
    n = [0]

    def pkt(iface, data, orig=None, frac=None):
        n[0] += 1
        ups = ifaces[iface][2]
        t = base + n[0]
        f = frac if frac is not None else (n[0] * 7919) % ups
        out.extend(epb(iface, t * ups + f, data, orig))

    u4 = ipv4(A4, B4, 17, udp(1000 + 0, 53))
    pkt(0, eth(0x0800, u4))
    pkt(1, sll(0x0800, ipv4(A4, B4, 17, udp(1001, 53))))
    pkt(1, sll(0x86DD, ipv6(B6, A6, 17, udp(53, 1001))))
    pkt(2, sll2(0x0800, ipv4(B4, A4, 17, udp(53, 1002))))
    pkt(2, sll2(0x8100, struct.pack("!HH", 5, 0x0800) + ipv4(A4, B4, 17, udp(1002, 53))))
    pkt(3, ipv4(A4, B4, 17, udp(1003, 53)))
    pkt(3, ipv6(A6, B6, 17, udp(1003, 53)))
    pkt(4, ipv4(A4, B4, 6, tcp(1004, 80)))
    pkt(5, ipv6(A6, B6, 6, tcp(1005, 80)))
    pkt(6, struct.pack("<I", 2) + ipv4(A4, B4, 17, udp(1006, 53)))
    pkt(6, struct.pack("<I", 30) + ipv6(A6, B6, 17, udp(1006, 53)))
    pkt(7, struct.pack(">I", 2) + ipv4(A4, B4, 17, udp(1007, 53)))
    pkt(7, struct.pack(">I", 24) + ipv6(A6, B6, 17, udp(1007, 53)))
    pkt(8, struct.pack(">I", 2) + ipv4(A4, B4, 17, udp(1008, 53)))
    pkt(9, ipv4(A4, B4, 17, udp(1009, 53)))
    pkt(0, eth(0x0800, u4), frac=999_999)  # last microsecond of a second

    E = lambda et, p: pkt(0, eth(et, p))  # noqa: E731
    # IPv4 options, whole and cut by the snap length inside the options.
    opts = b"\x01\x01\x01\x00" + b"\x07\x07\x04" + b"\x00" * 5  # NOP NOP NOP EOL, record route
    full = eth(0x0800, ipv4(C4, D4, 6, tcp(2000, 443), opts=opts))
    pkt(0, full)
    pkt(0, full[:14 + 22], orig=len(full))  # IPv4 header cut in its options
    pkt(0, full[:14 + 19], orig=len(full))  # IPv4 header cut before the destination
    # TCP / UDP / ICMP headers cut at several lengths.
    t = eth(0x0800, ipv4(C4, D4, 6, tcp(2001, 443, 0x12)))
    for cut in (1, 3, 4, 13, 14):
        pkt(0, t[:34 + cut], orig=len(t))
    u = eth(0x0800, ipv4(C4, D4, 17, udp(2002, 53)))
    for cut in (2, 4, 7):
        pkt(0, u[:34 + cut], orig=len(u))
    i = eth(0x0800, ipv4(C4, D4, 1, icmp(8, 0x4242)))
    for cut in (1, 4, 5, 6, 7, 8):
        pkt(0, i[:34 + cut], orig=len(i))
    E(0x0800, ipv4(D4, C4, 1, icmp(0, 0x4242)))
    E(0x0800, ipv4(C4, D4, 1, icmp(3, 0) + ipv4(D4, C4, 17, udp(53, 2002))))  # port unreachable
    E(0x0800, ipv4(C4, D4, 1, icmp(13, 0x4343)))  # timestamp request: no identifier rule
    # IPv4 fragments: first fragment keeps ports, later ones do not.
    E(0x0800, ipv4(C4, D4, 17, udp(2003, 53, b"x" * 32), frag=0x2000, ident=9))
    E(0x0800, ipv4(C4, D4, 17, b"y" * 24, frag=0x0005, ident=9))
    E(0x0800, ipv4(C4, D4, 6, tcp(2004, 80), frag=0x2000, ident=10))
    # Bogus IPv4 header lengths and total lengths.
    E(0x0800, ipv4(C4, D4, 17, udp(2005, 53), vhl=0x44))
    E(0x0800, ipv4(C4, D4, 17, udp(2006, 53), total=10))
    E(0x0800, ipv4(C4, D4, 17, udp(2007, 53), total=0))
    E(0x0800, ipv4(C4, D4, 17, udp(2008, 53), total=2000))  # longer than the frame
    # IP in IP, GRE, SCTP, ICMPv6 carried by IPv4, ICMP carried by IPv6.
    E(0x0800, ipv4(C4, D4, 4, ipv4(A4, B4, 17, udp(1, 2))))
    E(0x0800, ipv4(C4, D4, 47, b"\x00\x00\x08\x00" + ipv4(A4, B4, 17, udp(3, 4))))
    E(0x0800, ipv4(C4, D4, 132, struct.pack("!HHII", 2009, 38412, 0, 0)))
    E(0x0800, ipv4(C4, D4, 58, icmp(128, 0x5151)))
    E(0x86DD, ipv6(A6, B6, 1, icmp(8, 0x5252)))
    # IPv6 extension header chains.
    E(0x86DD, ipv6(A6, B6, 0, ext(60, b"\x01\x04\x00\x00\x00\x00") + ext(6, b"\x01\x04\x00\x00\x00\x00") + tcp(3000, 22)))
    E(0x86DD, ipv6(A6, B6, 43, bytes([17, 0, 0, 0, 0, 0, 0, 0]) + udp(3001, 53)))
    E(0x86DD, ipv6(A6, B6, 51, ah(6) + tcp(3002, 22)))
    E(0x86DD, ipv6(A6, B6, 0, ext(51, b"\x01\x04\x00\x00\x00\x00") + ah(17) + udp(3003, 53)))
    E(0x86DD, ipv6(A6, B6, 44, frag6(17, 0, True) + udp(3004, 53, b"z" * 16)))
    E(0x86DD, ipv6(A6, B6, 44, frag6(17, 3, False) + b"z" * 8))
    E(0x86DD, ipv6(A6, B6, 44, frag6(60, 0, True) + ext(58, b"\x01\x04\x00\x00\x00\x00") + icmp(128, 0x6161)))
    E(0x86DD, ipv6(A6, B6, 59, b""))  # no next header
    E(0x86DD, ipv6(A6, B6, 50, b"\x00\x00\x01\x00" * 4))  # ESP
    hbh = eth(0x86DD, ipv6(A6, B6, 0, ext(6, b"\x01\x04\x00\x00\x00\x00") + tcp(3005, 22)))
    pkt(0, hbh[:14 + 40 + 1], orig=len(hbh))  # cut inside the hop-by-hop header
    pkt(0, hbh[:14 + 40 + 9], orig=len(hbh))  # cut one byte into TCP
    pkt(0, hbh[:14 + 30], orig=len(hbh))  # cut inside the IPv6 header
    E(0x86DD, ipv6(A6, B6, 17, udp(3006, 53), plen=0))  # zero payload length
    E(0x86DD, ipv6(A6, B6, 0, ext(17, b"\x01\x04\x00\x00\x00\x00") + udp(3007, 53), plen=0))  # and hop-by-hop
    jumbo = bytes([17, 0, 0xC2, 4]) + struct.pack("!I", 8 + 8 + 5)  # hop-by-hop with a jumbo payload option
    E(0x86DD, ipv6(A6, B6, 0, jumbo + udp(3008, 53), plen=0))
    # Address forms.
    E(0x86DD, ipv6(M6, C6, 17, udp(4000, 4001)))
    E(0x86DD, ipv6(Z6, A6, 17, udp(4002, 4003)))
    # Tags: 802.1ad + 802.1Q (QinQ), three tags, MPLS (two labels), PPPoE session.
    E(0x88A8, struct.pack("!HHHH", 100, 0x8100, 200, 0x0800) + ipv4(C4, D4, 17, udp(5000, 2152)))
    E(0x8100, struct.pack("!HHHHHH", 1, 0x8100, 2, 0x8100, 3, 0x86DD) + ipv6(A6, B6, 17, udp(5001, 53)))
    E(0x8847, struct.pack("!II", 0x00010000, 0x00020100 | 64) + ipv4(C4, D4, 17, udp(5002, 53)))
    E(0x8864, struct.pack("!BBHHH", 0x11, 0, 1, 2 + len(ipv4(C4, D4, 17, udp(5003, 53))), 0x0021) + ipv4(C4, D4, 17, udp(5003, 53)))
    # Not IP: ARP, an 802.3 length frame, IPv4 ethertype with a version-5 header.
    E(0x0806, b"\x00\x01\x08\x00\x06\x04\x00\x01" + b"\x00" * 20)
    E(0x0800, ipv4(C4, D4, 17, udp(5004, 53), vhl=0x55))
    # Loopback to the same endpoint (side A = side B), and a reversed first packet.
    E(0x0800, ipv4(C4, C4, 17, udp(6000, 6000)))
    E(0x0800, ipv4(D4, C4, 6, tcp(80, 6001, 0x12)))
    E(0x0800, ipv4(C4, D4, 6, tcp(6001, 80, 0x10)))
    with open("edge-links.pcapng", "wb") as f:
        f.write(out)

    # Big-endian nanosecond pcap, NULL link layer in big-endian host order.
    p = bytearray(struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 0))
    for k, (fam, ip) in enumerate([(2, ipv4(A4, B4, 17, udp(7000, 53))), (28, ipv6(B6, A6, 17, udp(53, 7000))),
                                   (2, ipv4(B4, A4, 17, udp(53, 7000)))]):
        data = struct.pack(">I", fam) + ip
        p += struct.pack(">IIII", base + k, 123_456_789 + k, len(data), len(data)) + data
    with open("edge-be-nsec.pcap", "wb") as f:
        f.write(p)

    # Two sections of opposite byte order; interface numbering restarts in each.
    def blk(e, btype, body):
        n = 12 + len(body)
        return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)

    def sec(e, link, res, packets):
        b = blk(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))
        b += blk(e, 1, struct.pack(e + "HHI", link, 0, 0) + struct.pack(e + "HH", 9, 1) + bytes([res, 0, 0, 0])
                 + struct.pack(e + "HH", 0, 0))
        for ticks, data in packets:
            pad = (4 - len(data) % 4) % 4
            b += blk(e, 6, struct.pack(e + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(data), len(data))
                     + data + b"\x00" * pad)
        return b

    s1 = sec(">", 101, 9, [((base + 1) * 10**9 + 1, ipv4(A4, B4, 17, udp(8000, 53))),
                           ((base + 2) * 10**9 + 2, ipv4(B4, A4, 17, udp(53, 8000)))])
    s2 = sec("<", 1, 6, [((base + 3) * 10**6 + 3, eth(0x0800, ipv4(A4, B4, 17, udp(8000, 53)))),
                         ((base + 4) * 10**6 + 4, eth(0x86DD, ipv6(A6, B6, 6, tcp(8001, 443))))])
    with open("edge-sections.pcapng", "wb") as f:
        f.write(s1 + s2)


if __name__ == "__main__":
    main()
