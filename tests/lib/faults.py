#!/usr/bin/env python3
"""faults.py — misbehaving peers for the fault and hostile-client suites: upstreams that
reset or half-close early, clients that reset, thousands of sockets in one process
(slowloris, floods, held connections), a rate-limited "bystander" stream, and a TLS probe.

It must never hang a test (every mode has --max-seconds and every loop is bounded), never
touch anything but loopback, and never need a third-party module. Results are printed as
key=value lines, one per field, as client.py does.
"""

import argparse
import hashlib
import os
import random
import selectors
import socket
import ssl
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream import CHUNK, data_stream  # noqa: E402  (same bytes as client.py)


def out(**kv):
    for k, v in kv.items():
        print(f"{k}={v}")
    sys.stdout.flush()


def now():
    return time.monotonic()


def listener(host, port, backlog=4096):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s


def ready(path):
    if path:
        open(path, "w").close()


def report_line(path, **kv):
    if path:
        with open(path, "a") as f:
            f.write(" ".join(f"{k}={v}" for k, v in kv.items()) + "\n")


def rst_close(s):
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    s.close()


# ---- upstreams --------------------------------------------------------------------------

def serve_threads(args, handler):
    ls = listener(args.host, args.port)
    ready(args.ready_file)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()


def mode_rst_upstream(args):
    """Send --after bytes of data, read whatever comes, then reset the connection."""
    def handle(c):
        sent = 0
        try:
            for chunk in data_stream(args.after, 3):
                c.sendall(chunk)
                sent += len(chunk)
            c.settimeout(0.05)
            try:
                for _ in range(100):
                    if not c.recv(CHUNK):
                        break
            except (socket.timeout, OSError):
                pass
        finally:
            rst_close(c)
            report_line(args.report, mode="rst", sent_bytes=sent)
    serve_threads(args, handle)


def mode_early_close_upstream(args):
    """Read only --after bytes, answer with --answer bytes and FIN at once, then go on
    reading (and hashing) everything the client still sends until its FIN."""
    def handle(c):
        rh, n = hashlib.sha256(), 0
        try:
            while n < args.after:
                b = c.recv(min(CHUNK, args.after - n))
                if not b:
                    break
                rh.update(b)
                n += len(b)
            sh = hashlib.sha256()
            sent = 0
            for chunk in data_stream(args.answer, 5):
                c.sendall(chunk)
                sh.update(chunk)
                sent += len(chunk)
            c.shutdown(socket.SHUT_WR)
            while True:
                b = c.recv(CHUNK)
                if not b:
                    break
                rh.update(b)
                n += len(b)
            report_line(args.report, mode="early_close", recv_bytes=n, recv_sha256=rh.hexdigest(),
                        sent_bytes=sent, sent_sha256=sh.hexdigest())
        except OSError as e:
            report_line(args.report, mode="early_close", error=type(e).__name__, recv_bytes=n)
        finally:
            c.close()
    serve_threads(args, handle)


def mode_echo_many(args):
    """An echo upstream for thousands of connections in one thread (selectors)."""
    ls = listener(args.host, args.port)
    ls.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    ready(args.ready_file)
    conns = 0
    end = now() + args.max_seconds
    while now() < end:
        for key, _ in sel.select(timeout=1.0):
            if key.data is None:
                for _ in range(256):
                    try:
                        c, _ = ls.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break  # out of fds: the backlog waits for us
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, "c")
                    conns += 1
                continue
            c = key.fileobj
            try:
                b = c.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                b = b""
            if not b:
                sel.unregister(c)
                c.close()
                continue
            try:
                c.sendall(b)  # small echoes only in these tests: the buffer has room
            except OSError:
                sel.unregister(c)
                c.close()


# ---- clients ------------------------------------------------------------------------------

def mode_bystander(args):
    """Stream checksummed data through an echo path at a steady rate until --stop-file
    appears, then half-close and check that every byte came back in order."""
    s = socket.create_connection((args.host, args.port), timeout=5)
    s.settimeout(None)
    sh, rh = hashlib.sha256(), hashlib.sha256()
    sent, got = [0], [0]
    errors = []
    rng = random.Random(11)
    end = now() + args.max_seconds

    def reader():
        try:
            while True:
                b = s.recv(CHUNK)
                if not b:
                    return
                rh.update(b)
                got[0] += len(b)
        except OSError as e:
            errors.append("recv:" + type(e).__name__)

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        while now() < end and not os.path.exists(args.stop_file):
            chunk = rng.randbytes(args.chunk)
            s.sendall(chunk)
            sh.update(chunk)
            sent[0] += len(chunk)
            time.sleep(args.interval)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        errors.append("send:" + type(e).__name__)
    th.join(max(0.1, end + 10 - now()))
    s.close()
    intact = int(not errors and sent[0] == got[0] and sh.hexdigest() == rh.hexdigest())
    out(sent_bytes=sent[0], recv_bytes=got[0], intact=intact, error=",".join(errors) or "none")


def mode_rst_client(args):
    """Send --after bytes, then reset the connection (SO_LINGER 0)."""
    s = socket.create_connection((args.host, args.port), timeout=5)
    sent = 0
    for chunk in data_stream(args.after, 9):
        s.sendall(chunk)
        sent += len(chunk)
    time.sleep(args.hold)
    rst_close(s)
    out(sent_bytes=sent)


def mode_wedge_reset(args):
    """Both peers of one relayed connection: listen as the upstream on --upstream-port,
    connect as the client to --port. The --reset side (client or upstream) writes while
    the other one reads nothing, until both sockets and tcpmapd's pipe between them are
    full, then resets (SO_LINGER 0), or with --close-how fin closes as usual (its FIN then
    waits behind the bytes). The wedged side still reads nothing for --hold seconds
    (tcpmapd can then move no byte toward it: only the reset itself can end the
    connection), then reads to its end. Writes --ready-file at the reset or close."""
    ls = listener(args.host, args.upstream_port, backlog=4)
    client = socket.create_connection((args.host, args.port), timeout=5)
    ls.settimeout(5)
    upstream, _ = ls.accept()
    ls.close()
    writer, wedged = (client, upstream) if args.reset == "client" else (upstream, client)
    writer.setblocking(False)
    sent, blocked_since, chunk = 0, None, b"w" * 65536
    deadline = now() + args.max_seconds / 2
    # full once no write went through for half a second: every buffer on the way is
    while now() < deadline and (blocked_since is None or now() - blocked_since < 0.5):
        try:
            sent += writer.send(chunk)
            blocked_since = None
        except BlockingIOError:
            blocked_since = blocked_since or now()
            time.sleep(0.02)
    if args.close_how == "fin":
        writer.close()
    else:
        rst_close(writer)
    reset_at = now()
    ready(args.ready_file)
    time.sleep(args.hold)
    wedged.settimeout(10)
    got, closed_by = 0, "timeout"
    try:
        while True:
            b = wedged.recv(1 << 20)
            if not b:
                closed_by = "eof"
                break
            got += len(b)
    except ConnectionResetError:
        closed_by = "reset"
    except socket.timeout:
        pass
    wedged.close()
    out(reset=args.reset, sent_bytes=sent, recv_bytes=got, closed_by=closed_by,
        end_ms=int((now() - reset_at) * 1000))


def client_hello(sni):
    """A plain TLS 1.2/1.3 ClientHello with SNI, as bytes (no crypto needed to dribble it)."""
    name = sni.encode()
    sni_ext = struct.pack("!HHHBH", 0, len(name) + 5, len(name) + 3, 0, len(name)) + name
    versions = struct.pack("!HHB", 43, 5, 4) + b"\x03\x04\x03\x03"
    groups = struct.pack("!HHH", 10, 4, 2) + b"\x00\x1d"
    sigalgs = struct.pack("!HHH", 13, 4, 2) + b"\x04\x03"
    exts = sni_ext + versions + groups + sigalgs
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack("!H", 4) + b"\x13\x01\xc0\x2f"
            + b"\x01\x00" + struct.pack("!H", len(exts)) + exts)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def open_many(host, port, n, deadline):
    """Open n non-blocking connections; returns (sockets, refused count)."""
    socks, refused = [], 0
    for _ in range(n):
        if now() > deadline:
            break
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect((host, port))
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            refused += 1
            s.close()
            continue
        socks.append(s)
    return socks, refused


def mode_slowloris(args):
    """--conns connections, each sending a ClientHello one byte per --interval seconds.
    Prints how many the server closed and when (seconds after the first byte)."""
    hello = client_hello(args.sni)
    deadline = now() + args.max_seconds
    socks, refused = open_many(args.host, args.port, args.conns, deadline)
    t0 = now()
    sel = selectors.DefaultSelector()
    state = {}
    for s in socks:
        sel.register(s, selectors.EVENT_READ, None)
        state[s] = {"pos": 0, "closed_at": None, "connected": True}
    ready(args.ready_file)
    next_drip = t0
    open_left = len(socks)
    for _ in range(1000000):
        t = now()
        if t > deadline or open_left == 0:
            break
        if t >= next_drip:
            for s, st in state.items():
                if st["closed_at"] is None and st["pos"] < len(hello):
                    try:
                        if s.send(hello[st["pos"]:st["pos"] + 1]) == 1:
                            st["pos"] += 1
                    except (BlockingIOError, InterruptedError):
                        pass
                    except OSError:
                        st["closed_at"] = t - t0
                        sel.unregister(s)
                        open_left -= 1
            next_drip += args.interval
        for key, _ in sel.select(timeout=max(0.0, min(next_drip, deadline) - now())):
            s = key.fileobj
            try:
                b = s.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                b = b""
            if not b:
                state[s]["closed_at"] = now() - t0
                sel.unregister(s)
                open_left -= 1
    closed = [st["closed_at"] for st in state.values() if st["closed_at"] is not None]
    max_pos = max((st["pos"] for st in state.values()), default=0)
    out(conns=len(socks), refused=refused, closed=len(closed), still_open=open_left,
        first_close_s=f"{min(closed):.2f}" if closed else "none",
        last_close_s=f"{max(closed):.2f}" if closed else "none",
        max_bytes_sent=max_pos, hello_len=len(hello))
    for s in socks:
        s.close()


def mode_flood(args):
    """--conns connection attempts to an echo path; each sends one byte and waits for the
    echo. After --hold seconds (or when every connection has an outcome) count outcomes:
    served (echo came back), closed (EOF or reset before an echo), refused, pending."""
    deadline = now() + args.max_seconds
    t0 = now()
    socks, refused = open_many(args.host, args.port, args.conns, deadline)
    sel = selectors.DefaultSelector()
    outcome = {}
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE | selectors.EVENT_READ, "new")
        outcome[s] = "pending"
    ready(args.ready_file)
    hold_end = t0 + args.hold
    undecided = len(socks)
    for _ in range(1000000):
        t = now()
        if t > deadline or t > hold_end:
            break
        if undecided == 0 and not os.path.exists(args.stop_file or "/nonexistent"):
            # everyone has an outcome; keep the served ones open until the hold ends
            time.sleep(min(0.05, max(0.0, hold_end - t)))
            continue
        for key, ev in sel.select(timeout=0.1):
            s = key.fileobj
            if key.data == "new" and ev & selectors.EVENT_WRITE:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    outcome[s] = "refused"
                    sel.unregister(s)
                    undecided -= 1
                    continue
                try:
                    s.send(b"x")
                except OSError:
                    outcome[s] = "closed"
                    sel.unregister(s)
                    undecided -= 1
                    continue
                sel.modify(s, selectors.EVENT_READ, "sent")
                continue
            try:
                b = s.recv(16)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionRefusedError:
                b, outcome[s] = None, "refused"
            except OSError:
                b = b""
            if b:
                outcome[s] = "served"
            elif outcome[s] == "pending":
                outcome[s] = "closed"
            sel.unregister(s)
            undecided -= 1
    counts = {"served": 0, "closed": 0, "refused": refused, "pending": 0}
    for o in outcome.values():
        counts[o] += 1
    out(attempts=args.conns, elapsed_s=f"{now() - t0:.2f}", **counts)
    for s in socks:
        s.close()


def mode_hold(args):
    """Open --conns connections to an echo path, check each one echoes a byte, write
    --ready-file, hold them until --stop-file appears, then close them all."""
    deadline = now() + args.max_seconds
    socks, refused = open_many(args.host, args.port, args.conns, deadline)
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE, "new")
    echoed, failed = 0, 0
    left = len(socks)
    for _ in range(10000000):
        if left == 0 or now() > deadline:
            break
        for key, ev in sel.select(timeout=0.5):
            s = key.fileobj
            if key.data == "new":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed += 1
                    left -= 1
                    sel.unregister(s)
                    continue
                try:
                    s.send(b"h")
                    sel.modify(s, selectors.EVENT_READ, "sent")
                except OSError:
                    failed += 1
                    left -= 1
                    sel.unregister(s)
                continue
            try:
                b = s.recv(16)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                b = b""
            if b == b"h":
                echoed += 1
            else:
                failed += 1
            left -= 1
            sel.unregister(s)
    out(conns=len(socks), refused=refused, echoed=echoed, failed=failed)
    ready(args.ready_file)
    while now() < deadline and not os.path.exists(args.stop_file):
        time.sleep(0.05)
    for s in socks:
        s.close()
    out(released=len(socks))


def mode_tls_probe(args):
    """--count TLS connections with SNI, each sending a line and reading its echo; prints
    the worst and median latency of the whole exchange."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    lat, fails = [], 0
    end = now() + args.max_seconds
    for i in range(args.count):
        if now() > end:
            break
        t = now()
        try:
            with socket.create_connection((args.host, args.port), timeout=5) as raw:
                with ctx.wrap_socket(raw, server_hostname=args.sni) as s:
                    msg = f"probe {i}\n".encode()
                    s.sendall(msg)
                    got = b""
                    while len(got) < len(msg):
                        b = s.recv(64)
                        if not b:
                            break
                        got += b
                    if got != msg:
                        raise OSError("echo mismatch")
            lat.append((now() - t) * 1000)
        except (OSError, ssl.SSLError):
            fails += 1
        time.sleep(args.interval)
    lat.sort()
    out(probes=len(lat) + fails, ok=len(lat), failed=fails,
        max_ms=int(lat[-1]) if lat else "none", median_ms=int(lat[len(lat) // 2]) if lat else "none")


MODES = {
    "rst-upstream": mode_rst_upstream,
    "early-close-upstream": mode_early_close_upstream,
    "echo-many": mode_echo_many,
    "bystander": mode_bystander,
    "rst-client": mode_rst_client,
    "slowloris": mode_slowloris,
    "flood": mode_flood,
    "hold": mode_hold,
    "tls-probe": mode_tls_probe,
    "wedge-reset": mode_wedge_reset,
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=sorted(MODES))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--upstream-port", type=int, default=0, help="wedge-reset's upstream")
    p.add_argument("--reset", choices=["client", "upstream"], default="client",
                   help="wedge-reset: the side that resets")
    p.add_argument("--close-how", choices=["rst", "fin"], default="rst",
                   help="wedge-reset: how the writing side closes")
    p.add_argument("--ready-file")
    p.add_argument("--stop-file", default="")
    p.add_argument("--report")
    p.add_argument("--after", type=int, default=1 << 20, help="bytes before the fault")
    p.add_argument("--answer", type=int, default=1 << 20, help="early-close answer size")
    p.add_argument("--hold", type=float, default=0.0, help="seconds to hold")
    p.add_argument("--conns", type=int, default=1)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--chunk", type=int, default=16384)
    p.add_argument("--sni", default="localhost")
    p.add_argument("--max-seconds", type=float, default=60.0)
    args = p.parse_args()
    # the hard bound on our life, whatever the test does
    t = threading.Timer(args.max_seconds + 15, lambda: os._exit(3))
    t.daemon = True
    t.start()
    MODES[args.mode](args)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(0)
