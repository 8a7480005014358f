#!/usr/bin/env bash
# make-demo-capture.sh - record flowtable's own small demo packet capture from real traffic.
#
# WHAT IT MAKES
#   OUTDIR/demo.pcapng            a pcapng (Ethernet link type) recorded with dumpcap on a veth whose
#                                 frames carry 802.1Q VLAN 42 tags, holding real traffic made by the
#                                 kernel, ping and small python3 programs in three private network
#                                 namespaces: TCP (HTTP downloads, IPv4 and IPv6), refused TCP
#                                 connections (RST), TCP connections reset mid-stream (SO_LINGER 0, by
#                                 the server and by the client), UDP request/response (IPv4, IPv6), UDP
#                                 to a closed port (ICMP / ICMPv6 port unreachable), ICMP and ICMPv6
#                                 echo, IPv4 and IPv6 fragments (UDP datagrams and pings larger than
#                                 the MTU), plus whatever ARP / IPv6 neighbour discovery / MLD the
#                                 kernel sends on its own.
#   OUTDIR/demo.pcapng.flows.csv  its reference flow table, made by flows-from-tshark (tshark's
#                                 dissection is the reference; that script's docstring defines a flow).
#
# TOPOLOGY (namespaces, links and addresses are all created here and deleted on exit)
#
#   [ftdemo-client]               [ftdemo-router]                    [ftdemo-server]
#    ftc0  10.77.1.1/24   ==VLAN 42==  ftr0  10.77.1.2/24
#          fd77:1::1/64                      fd77:1::2/64
#                                      ftr1  10.77.2.1/24   ========   fts0  10.77.2.2/24
#                                            fd77:2::1/64                    fd77:2::2/64
#
#   Both links are veth pairs. The router forwards IPv4 and IPv6; the client reaches the server only
#   through it, so every client<->server packet crosses the VLAN link. dumpcap captures on ftr0 in the
#   router namespace, which sees both directions of that link with their tags. The veth pairs are
#   created directly inside the namespaces, so their names cannot clash with the host's interfaces.
#
#   How the VLAN tags are made: the usual way is a VLAN sub-interface (ip link add ... type vlan),
#   but that needs the kernel's 8021q module, which the machine this was first made on does not have
#   (CONFIG_VLAN_8021Q unset). So the script tags with the kernel's own VLAN helpers from two tiny
#   eBPF tc programs (scripts/demo-capture/vlan_bpf.py, loaded with the bpf() syscall, no compiler):
#   on each end of the link, egress calls bpf_skb_vlan_push(0x8100, 42) and ingress calls
#   bpf_skb_vlan_pop for VLAN 42. With tx-vlan offload off the kernel writes the 802.1Q header into
#   the frame bytes before the veth sends it, which is what a VLAN sub-interface on a veth produces.
#   Checksum, segmentation and receive offloads are off too, so the capture holds wire-sized frames
#   (at most 1518 bytes) with correct checksums.
#
#   All generated traffic is addressed only to the addresses above, inside these namespaces. Every
#   traffic step runs under timeout; servers live at most SERVER_LIFETIME seconds; on any exit the
#   script kills what it started, deletes the namespaces and unmounts its bpf filesystem.
#
# REQUIREMENTS
#   Linux >= 4.4 with network namespaces, veth, clsact (sch_ingress), cls_bpf and the bpf filesystem;
#   x86_64 or aarch64; root. Debian packages: iproute2 (ip, ss, tc), tshark (brings dumpcap via
#   wireshark-common), iputils-ping, ethtool, python3, coreutils (timeout). Missing packages are
#   installed with apt-get when it is available; otherwise the script stops and names the package.
#
# HOW TO RUN
#   sudo scripts/make-demo-capture.sh [OUTDIR]          # OUTDIR defaults to data/ under the repo root
#   The path of flows-from-tshark comes from the environment variable FLOWS_FROM_TSHARK; its default
#   is ../shared/traces/flows-from-tshark relative to the repository root.
#   Takes about 15 s. Rerunning overwrites the two files; a new run differs in timestamps, MAC
#   addresses, ephemeral ports, ICMP identifiers and the kernel's own ND/MLD packets, not in the kinds
#   of traffic. At the end the script checks with tshark that every kind is present.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$HERE/.." && pwd)"
OUTDIR="${1:-$REPO_ROOT/data}"
FLOWS_FROM_TSHARK="${FLOWS_FROM_TSHARK:-$REPO_ROOT/../shared/traces/flows-from-tshark}"

NS_C=ftdemo-client
NS_R=ftdemo-router
NS_S=ftdemo-server
VLAN=42

log() { printf '[make-demo-capture] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, packet capture): sudo $0 ${1:-}"

# ---------------------------------------------------------------- requirements
# command -> Debian package
declare -A PKG=([ip]=iproute2 [ss]=iproute2 [tc]=iproute2 [tshark]=tshark [dumpcap]=tshark [ping]=iputils-ping
                [ethtool]=ethtool [python3]=python3 [timeout]=coreutils)
missing=()
for cmd in "${!PKG[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${PKG[$cmd]}")
done
if ((${#missing[@]})); then
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    if command -v apt-get >/dev/null 2>&1; then
        log "installing missing packages: ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        die "missing commands; install these packages: ${missing[*]}"
    fi
fi
for cmd in "${!PKG[@]}"; do
    command -v "$cmd" >/dev/null 2>&1 || die "'$cmd' not found; install the Debian package ${PKG[$cmd]}"
done
[[ -r "$FLOWS_FROM_TSHARK" ]] || die "flows-from-tshark not found at $FLOWS_FROM_TSHARK (set FLOWS_FROM_TSHARK)"
PY="$(command -v python3)"

# ---------------------------------------------------------------- cleanup on any exit
ns_exists() { ip netns list | awk '{print $1}' | grep -qxF "$1"; }
WORK="$(mktemp -d /tmp/make-demo-capture.XXXXXX)"
PIDS=()
cleanup() {
    local rc=$? pid ns
    set +e
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    # anything still running inside our own namespaces was started by this script
    for ns in "$NS_C" "$NS_R" "$NS_S"; do
        if ns_exists "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null; done
        fi
    done
    sleep 0.5
    for ns in "$NS_C" "$NS_R" "$NS_S"; do
        if ns_exists "$ns"; then
            for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
            ip netns del "$ns" 2>/dev/null
        fi
    done
    if [[ -n "${BPFFS_MOUNTED:-}" ]]; then umount "$WORK/bpffs" 2>/dev/null; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- VLAN tagging programs
# load the two eBPF programs and pin them in a private bpf filesystem, where tc picks them up
mkdir -p "$WORK/bpffs"
mount -t bpf bpf "$WORK/bpffs" || die "cannot mount a bpf filesystem (kernel without CONFIG_BPF_SYSCALL?)"
BPFFS_MOUNTED=1
"$PY" "$HERE/demo-capture/vlan_bpf.py" "$VLAN" "$WORK/bpffs" ||
    die "cannot load the VLAN tagging eBPF programs"

# ---------------------------------------------------------------- namespaces and links
in_c() { ip netns exec "$NS_C" "$@"; }
in_r() { ip netns exec "$NS_R" "$@"; }
in_s() { ip netns exec "$NS_S" "$@"; }

for ns in "$NS_C" "$NS_R" "$NS_S"; do
    if ns_exists "$ns"; then
        log "deleting stale namespace $ns"
        for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
        ip netns del "$ns"
    fi
    ip netns add "$ns"
    ip netns exec "$ns" ip link set lo up
    # no duplicate address detection: addresses are usable at once
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
done

# veth pairs are created directly inside the namespaces (no names in the host namespace)
ip link add ftc0 netns "$NS_C" type veth peer name ftr0 netns "$NS_R"
ip link add ftr1 netns "$NS_R" type veth peer name fts0 netns "$NS_S"

# wire-sized frames, real checksums, in-band VLAN tags: no offloads
for l in "$NS_C ftc0" "$NS_R ftr0" "$NS_R ftr1" "$NS_S fts0"; do
    read -r ns dev <<<"$l"
    ip netns exec "$ns" ethtool -K "$dev" tx off rx off tso off gso off gro off >/dev/null 2>&1 ||
        ip netns exec "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null 2>&1 || true
    ip netns exec "$ns" ethtool -K "$dev" txvlan off rxvlan off >/dev/null 2>&1 || true
done

# 802.1Q VLAN 42 on the client-router link: tag on egress, untag on ingress, at both ends
for l in "$NS_C ftc0" "$NS_R ftr0"; do
    read -r ns dev <<<"$l"
    ip netns exec "$ns" tc qdisc add dev "$dev" clsact
    ip netns exec "$ns" tc filter add dev "$dev" egress bpf object-pinned "$WORK/bpffs/vlan_push" da
    ip netns exec "$ns" tc filter add dev "$dev" ingress bpf object-pinned "$WORK/bpffs/vlan_pop" da
done

in_c ip addr add 10.77.1.1/24 dev ftc0
in_c ip -6 addr add fd77:1::1/64 dev ftc0 nodad
in_r ip addr add 10.77.1.2/24 dev ftr0
in_r ip -6 addr add fd77:1::2/64 dev ftr0 nodad
in_r ip addr add 10.77.2.1/24 dev ftr1
in_r ip -6 addr add fd77:2::1/64 dev ftr1 nodad
in_s ip addr add 10.77.2.2/24 dev fts0
in_s ip -6 addr add fd77:2::2/64 dev fts0 nodad

# everything up except the client's end of the VLAN link: that one goes up once the capture runs,
# so the capture also holds what the kernel sends by itself when a link comes up (ARP, IPv6
# neighbour discovery, router solicitations, MLDv2 reports with a hop-by-hop options header)
for l in "$NS_R ftr0" "$NS_R ftr1" "$NS_S fts0"; do
    read -r ns dev <<<"$l"
    ip netns exec "$ns" ip link set "$dev" up
done
in_r sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
in_s ip route add default via 10.77.2.1 dev fts0
in_s ip -6 route add default via fd77:2::1 dev fts0

# ---------------------------------------------------------------- traffic programs
mkdir -p "$WORK/www"
# deterministic file contents of a few KB
"$PY" - "$WORK/www" <<'EOF'
import sys, os
d = sys.argv[1]
for name, size in (("small.txt", 1200), ("medium.bin", 8 * 1024), ("large.bin", 24 * 1024)):
    with open(os.path.join(d, name), "wb") as f:
        f.write(bytes((i * 7 + len(name)) % 251 for i in range(size)))
EOF

# ---------------------------------------------------------------- servers
SERVER_LIFETIME=60
timeout $((SERVER_LIFETIME + 5)) ip netns exec "$NS_S" \
    "$PY" -m http.server 8080 --bind :: --directory "$WORK/www" >"$WORK/http.log" 2>&1 &
PIDS+=($!)
timeout $((SERVER_LIFETIME + 5)) ip netns exec "$NS_S" \
    "$PY" "$HERE/demo-capture/traffic.py" serve "$SERVER_LIFETIME" >"$WORK/serve.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1 50); do
    in_s ss -Hltn 'sport = :8080' | grep -q . && in_s ss -Hltn 'sport = :8081' | grep -q . &&
        in_s ss -Hlun 'sport = :7777' | grep -q . && break
    sleep 0.1
done
in_s ss -Hltn 'sport = :8080' | grep -q . || die "http server did not start: $(cat "$WORK/http.log")"
in_s ss -Hlun 'sport = :7777' | grep -q . || die "udp echo server did not start: $(cat "$WORK/serve.log")"

# ---------------------------------------------------------------- capture
CAP="$WORK/demo.pcapng"
timeout 120 ip netns exec "$NS_R" dumpcap -q -i ftr0 -s 0 -w "$CAP" >"$WORK/dumpcap.log" 2>&1 &
DUMPCAP_PID=$!
PIDS+=("$DUMPCAP_PID")
for _ in $(seq 1 50); do
    [[ -s "$CAP" ]] && break
    sleep 0.1
done
[[ -s "$CAP" ]] || die "dumpcap did not start: $(cat "$WORK/dumpcap.log")"
sleep 0.5

# ---------------------------------------------------------------- client link up
in_c ip link set ftc0 up
for _ in $(seq 1 50); do
    [[ "$(in_r cat /sys/class/net/ftr0/carrier 2>/dev/null)" == 1 ]] && break
    sleep 0.1
done
in_c ip route add default via 10.77.1.2 dev ftc0
in_c ip -6 route add default via fd77:1::2 dev ftc0
# wait (bounded) until no IPv6 address is tentative any more
for _ in $(seq 1 50); do
    t=""
    for ns in "$NS_C" "$NS_R" "$NS_S"; do t+="$(ip netns exec "$ns" ip -6 addr show tentative)"; done
    [[ -z "$t" ]] && break
    sleep 0.1
done
sleep 1

# ---------------------------------------------------------------- traffic, each step bounded
T="$HERE/demo-capture/traffic.py"
run_c() { timeout 15 ip netns exec "$NS_C" "$@"; }
step() { log "traffic: $1"; }

step "ICMP echo over IPv4 and ICMPv6 echo over IPv6 (client -> server, VLAN 42)"
run_c ping -q -c 3 -i 0.2 -W 2 10.77.2.2 >/dev/null
run_c ping -6 -q -c 3 -i 0.2 -W 2 fd77:2::2 >/dev/null
step "HTTP downloads over TCP, IPv4 and IPv6"
run_c "$PY" "$T" http 10.77.2.2 small.txt medium.bin large.bin
run_c "$PY" "$T" http fd77:2::2 small.txt medium.bin large.bin
step "refused TCP connections (closed port -> RST)"
run_c "$PY" "$T" refused 10.77.2.2 9
run_c "$PY" "$T" refused fd77:2::2 9
step "TCP connections reset mid-stream (SO_LINGER 0) by the server and by the client"
run_c "$PY" "$T" reset 10.77.2.2 server-abort
run_c "$PY" "$T" reset fd77:2::2 server-abort
run_c "$PY" "$T" reset 10.77.2.2 client-abort
run_c "$PY" "$T" reset fd77:2::2 client-abort
step "UDP request/response, IPv4 and IPv6 (small datagrams)"
run_c "$PY" "$T" udp 10.77.2.2 64 200 512
run_c "$PY" "$T" udp fd77:2::2 64 200 512
step "fragmented UDP: 3000-byte datagrams over a 1500-byte MTU, echoed back, IPv4 and IPv6"
run_c "$PY" "$T" udp 10.77.2.2 3000 3000
run_c "$PY" "$T" udp fd77:2::2 3000 3000
step "UDP to a closed port (ICMP / ICMPv6 port unreachable)"
run_c "$PY" "$T" udp-closed 10.77.2.2 32
run_c "$PY" "$T" udp-closed fd77:2::2 32
step "fragmented ICMP echo: 2000-byte payloads, IPv4 and IPv6"
run_c ping -q -c 2 -i 0.2 -W 2 -s 2000 10.77.2.2 >/dev/null
run_c ping -6 -q -c 2 -i 0.2 -W 2 -s 2000 fd77:2::2 >/dev/null

sleep 1
kill -TERM "$DUMPCAP_PID"   # timeout passes it on; dumpcap flushes and exits
wait "$DUMPCAP_PID" || true
[[ -s "$CAP" ]] || die "empty capture"

# ---------------------------------------------------------------- outputs
mkdir -p "$OUTDIR"
cp "$CAP" "$OUTDIR/demo.pcapng"
log "flows: $FLOWS_FROM_TSHARK $OUTDIR/demo.pcapng > $OUTDIR/demo.pcapng.flows.csv"
"$PY" "$FLOWS_FROM_TSHARK" "$OUTDIR/demo.pcapng" >"$OUTDIR/demo.pcapng.flows.csv"

chmod 644 "$OUTDIR/demo.pcapng" "$OUTDIR/demo.pcapng.flows.csv"

# every kind of traffic must be there (tshark with its default settings)
count() { tshark -n -r "$OUTDIR/demo.pcapng" -Y "$1" 2>/dev/null | wc -l; }
log "wrote $OUTDIR/demo.pcapng ($(stat -c %s "$OUTDIR/demo.pcapng") bytes, $(count frame) packets," \
    "$(($(wc -l <"$OUTDIR/demo.pcapng.flows.csv") - 1)) flows)"
for f in vlan "ip.flags.mf==1 || ip.frag_offset>0" ipv6.fraghdr "tcp.flags.reset==1" \
    "icmp.type==8" "icmp.type==0" "icmpv6.type==128" "icmpv6.type==129" "icmp.type==3" "icmpv6.type==1" \
    "tcp.flags.syn==1 && tcp.flags.ack==0" "udp.port==7777" ipv6.hopopts; do
    n=$(count "$f")
    log "check: $(printf '%-40s' "$f") $n frames"
    [[ $n -gt 0 ]] || die "no frames match '$f'"
done
