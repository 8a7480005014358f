"""Load two tiny eBPF tc programs (802.1Q push / pop) with the bpf() syscall and pin them."""
import ctypes, os, struct, sys

NR_BPF = {"x86_64": 321, "aarch64": 280}[os.uname().machine]
BPF_PROG_LOAD, BPF_OBJ_PIN = 5, 6
BPF_PROG_TYPE_SCHED_CLS = 3
FUNC_SKB_VLAN_PUSH, FUNC_SKB_VLAN_POP = 18, 19
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def insn(code, dst=0, src=0, off=0, imm=0):
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, 128)
    r = libc.syscall(NR_BPF, cmd, buf, 128)
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return r


def load(name, prog):
    log = ctypes.create_string_buffer(65536)
    lic = ctypes.create_string_buffer(b"GPL")
    code = ctypes.create_string_buffer(prog, len(prog))
    attr = struct.pack("<IIQQIIQII16s", BPF_PROG_TYPE_SCHED_CLS, len(prog) // 8, ctypes.addressof(code),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log), 0, 0, name.encode())
    try:
        return bpf(BPF_PROG_LOAD, attr)
    except OSError:
        sys.stderr.write(log.value.decode(errors="replace"))
        raise


def pin(fd, path):
    p = ctypes.create_string_buffer(path.encode())
    bpf(BPF_OBJ_PIN, struct.pack("<QII", ctypes.addressof(p), fd, 0))


def main(vid, pin_dir):
    vid = int(vid)
    tpid_be = 0x0081  # htons(ETH_P_8021Q), as the helper wants it, on this little-endian machine
    assert sys.byteorder == "little"
    push = b"".join([
        insn(0xb7, dst=2, imm=tpid_be),             # r2 = htons(0x8100)
        insn(0xb7, dst=3, imm=vid),                 # r3 = VLAN id (PCP 0, DEI 0)
        insn(0x85, imm=FUNC_SKB_VLAN_PUSH),         # bpf_skb_vlan_push(skb, r2, r3)
        insn(0xb7, dst=0, imm=0),                   # r0 = TC_ACT_OK
        insn(0x95),                                 # exit
    ])
    pop = b"".join([
        insn(0xbf, dst=6, src=1),                   # r6 = skb
        insn(0x61, dst=2, src=1, off=24),           # r2 = skb->vlan_tci
        insn(0x57, dst=2, imm=0x0fff),              # r2 &= VID mask
        insn(0x55, dst=2, off=2, imm=vid),          # if r2 != vid goto out
        insn(0xbf, dst=1, src=6),                   # r1 = skb
        insn(0x85, imm=FUNC_SKB_VLAN_POP),          # bpf_skb_vlan_pop(skb)
        insn(0xb7, dst=0, imm=0),                   # out: r0 = TC_ACT_OK
        insn(0x95),                                 # exit
    ])
    pin(load("vlan_push", push), os.path.join(pin_dir, "vlan_push"))
    pin(load("vlan_pop", pop), os.path.join(pin_dir, "vlan_pop"))


if __name__ == "__main__":
    main(*sys.argv[1:])
