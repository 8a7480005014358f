"""Tiny servers and clients for the demo capture. Every socket operation has a timeout."""
import socket, struct, sys, threading, time, urllib.request

LINGER0 = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


def dual_stack(kind, port):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", port))
    return s


def no_df(s, family):
    # let the kernel fragment datagrams larger than the MTU
    if family == socket.AF_INET:
        s.setsockopt(socket.IPPROTO_IP, 10, 0)      # IP_MTU_DISCOVER = IP_PMTUDISC_DONT
    else:
        s.setsockopt(socket.IPPROTO_IPV6, 23, 0)    # IPV6_MTU_DISCOVER = IPV6_PMTUDISC_DONT


def udp_echo_server(port, lifetime):
    s = dual_stack(socket.SOCK_DGRAM, port)
    no_df(s, socket.AF_INET6)
    try:
        s.setsockopt(socket.IPPROTO_IP, 10, 0)
    except OSError:
        pass
    s.settimeout(1.0)
    end = time.time() + lifetime
    while time.time() < end:
        try:
            data, peer = s.recvfrom(65535)
        except socket.timeout:
            continue
        s.sendto(data, peer)


def reset_server(port, lifetime):
    """Per connection: read a request line; 'server-abort' -> send 6 KB of a promised 64 KB, then
    close with SO_LINGER 0 (RST); otherwise keep sending slowly until the client resets."""
    s = dual_stack(socket.SOCK_STREAM, port)
    s.listen(8)
    s.settimeout(1.0)
    end = time.time() + lifetime
    while time.time() < end:
        try:
            c, _ = s.accept()
        except socket.timeout:
            continue
        c.settimeout(3.0)
        try:
            req = c.recv(1024)
            if b"server-abort" in req:
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 65536\r\n\r\n")
                c.sendall(b"x" * 3000)
                time.sleep(0.05)
                c.sendall(b"y" * 3000)
                time.sleep(0.05)
            else:
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 65536\r\n\r\n")
                for _ in range(10):
                    c.sendall(b"z" * 1000)
                    time.sleep(0.1)
        except OSError:
            pass
        finally:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            c.close()


def serve(lifetime):
    t = [threading.Thread(target=udp_echo_server, args=(7777, lifetime), daemon=True),
         threading.Thread(target=reset_server, args=(8081, lifetime), daemon=True)]
    for x in t:
        x.start()
    for x in t:
        x.join()


def family_of(host):
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def http_get(host, names):
    h = "[%s]" % host if ":" in host else host
    for n in names:
        with urllib.request.urlopen("http://%s:8080/%s" % (h, n), timeout=5) as r:
            body = r.read()
        print("GET", h, n, len(body), "bytes")


def refused(host, port):
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        print("UNEXPECTED: connected to", host, port)
    except ConnectionRefusedError:
        print("refused", host, port)
    finally:
        s.close()


def reset(host, who):
    s = socket.socket(family_of(host), socket.SOCK_STREAM)
    s.settimeout(3)
    s.connect((host, 8081))
    s.sendall(b"GET /%s HTTP/1.0\r\n\r\n" % who.encode())
    got = 0
    try:
        if who == "server-abort":
            while True:
                d = s.recv(4096)
                if not d:
                    break
                got += len(d)
            print("UNEXPECTED: clean close after", got)
        else:
            while got < 2500:
                d = s.recv(4096)
                if not d:
                    break
                got += len(d)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER0)
            print("client abort after", got, "bytes", host)
    except ConnectionResetError:
        print("reset by server after", got, "bytes", host)
    finally:
        s.close()


def udp(host, sizes, port=7777):
    fam = family_of(host)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    no_df(s, fam)
    s.settimeout(2)
    s.connect((host, port))  # connected, so an ICMP port unreachable surfaces as ECONNREFUSED
    for n in sizes:
        s.send(bytes(i % 256 for i in range(n)))
        try:
            d = s.recv(65535)
            print("udp", host, port, "sent", n, "got", len(d))
        except (socket.timeout, ConnectionRefusedError) as e:
            print("udp", host, port, "sent", n, "no reply:", type(e).__name__)
        time.sleep(0.05)
    s.close()


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve(float(args[0]))
    elif cmd == "http":
        http_get(args[0], args[1:])
    elif cmd == "refused":
        refused(args[0], int(args[1]))
    elif cmd == "reset":
        reset(args[0], args[1])
    elif cmd == "udp":
        udp(args[0], [int(x) for x in args[1:]])
    elif cmd == "udp-closed":
        udp(args[0], [int(x) for x in args[1:]], port=9)
    else:
        sys.exit("unknown command " + cmd)
