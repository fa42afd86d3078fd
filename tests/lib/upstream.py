#!/usr/bin/env python3
"""upstream.py — small upstream servers for the bats tests, one behaviour per mode.

Modes: echo, sink, source N, banner TEXT, halfclose, hold, blackhole.
It must never outlive a failed test (--max-seconds bounds its whole life), never bind
anything but the address it is given (loopback only in the tests), and never need a
third-party module.

Each finished connection appends one line to --report (if given), so a test can compare
what the upstream really saw with what the client sent:
    mode=sink peer=IP:PORT recv_bytes=N recv_sha256=HEX sent_bytes=N sent_sha256=HEX
"""

import argparse
import hashlib
import os
import random
import socket
import sys
import threading
import time

CHUNK = 1 << 20


def data_stream(total, seed):
    """Deterministic pseudo-random bytes in 1 MiB chunks: the same (total, seed) always
    yields the same bytes, in client.py and here."""
    rng = random.Random(seed)
    left = total
    while left > 0:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n


class Report:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def write(self, **fields):
        if not self.path:
            return
        line = " ".join(f"{k}={v}" for k, v in fields.items()) + "\n"
        with self.lock, open(self.path, "a") as f:
            f.write(line)


def peer_name(conn):
    try:
        h, p = conn.getpeername()[:2]
        return f"[{h}]:{p}" if ":" in h else f"{h}:{p}"
    except OSError:
        return "?"


def read_all(conn, digest):
    """Read to EOF, hashing; returns the byte count."""
    n = 0
    while True:
        b = conn.recv(CHUNK)
        if not b:
            return n
        digest.update(b)
        n += len(b)


def send_stream(conn, total, seed, digest):
    n = 0
    for chunk in data_stream(total, seed):
        conn.sendall(chunk)
        digest.update(chunk)
        n += len(chunk)
    return n


def serve_echo(conn, args, report, peer):
    rh, n = hashlib.sha256(), 0
    while True:
        b = conn.recv(CHUNK)
        if not b:
            break
        rh.update(b)
        n += len(b)
        conn.sendall(b)
    # half-close aware: everything read has been echoed, now pass the FIN on
    conn.shutdown(socket.SHUT_WR)
    report.write(mode="echo", peer=peer, recv_bytes=n, recv_sha256=rh.hexdigest(),
                 sent_bytes=n, sent_sha256=rh.hexdigest())


def serve_sink(conn, args, report, peer):
    rh = hashlib.sha256()
    n = read_all(conn, rh)
    answer = rh.hexdigest()
    conn.sendall((answer + "\n").encode())
    report.write(mode="sink", peer=peer, recv_bytes=n, recv_sha256=answer)


def serve_source(conn, args, report, peer):
    sh = hashlib.sha256()
    n = send_stream(conn, args.arg_int, args.seed, sh)
    conn.shutdown(socket.SHUT_WR)
    report.write(mode="source", peer=peer, sent_bytes=n, sent_sha256=sh.hexdigest())


def serve_banner(conn, args, report, peer):
    text = args.arg.encode()
    conn.sendall(text)
    conn.shutdown(socket.SHUT_WR)
    report.write(mode="banner", peer=peer, sent_bytes=len(text))


def serve_halfclose(conn, args, report, peer):
    rh, sh = hashlib.sha256(), hashlib.sha256()
    n_in = read_all(conn, rh)  # everything until the client's FIN ...
    n_out = send_stream(conn, args.bytes, args.seed, sh)  # ... and only then the answer
    conn.shutdown(socket.SHUT_WR)
    report.write(mode="halfclose", peer=peer, recv_bytes=n_in,
                 recv_sha256=rh.hexdigest(), sent_bytes=n_out, sent_sha256=sh.hexdigest())


def serve_hold(conn, args, report, peer):
    rh = hashlib.sha256()
    n = read_all(conn, rh)
    report.write(mode="hold", peer=peer, recv_bytes=n)


MODES = {
    "echo": serve_echo,
    "sink": serve_sink,
    "source": serve_source,
    "banner": serve_banner,
    "halfclose": serve_halfclose,
    "hold": serve_hold,
}


def handle(conn, args, report):
    peer = peer_name(conn)  # before the peer can go away
    try:
        MODES[args.mode](conn, args, report, peer)
    except OSError as e:
        report.write(mode=args.mode, peer=peer, error=type(e).__name__)
    finally:
        conn.close()


def make_listener(host, port, backlog):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        # an IPv6-only upstream must really be IPv6-only
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    s.bind((host, port))
    s.listen(backlog)
    return s, family


def make_blackhole(host, port):
    """A listener whose accept queue is full and never drained: the kernel then drops
    every further SYN, which is a black hole that never leaves loopback."""
    s, family = make_listener(host, port, 0)
    fillers = []
    for _ in range(16):  # bounded: a few fillers are enough with backlog 0
        c = socket.socket(family, socket.SOCK_STREAM)
        c.setblocking(False)
        try:
            c.connect((host, port))
        except (BlockingIOError, InterruptedError):
            pass
        fillers.append(c)
        time.sleep(0.02)
        probe = socket.socket(family, socket.SOCK_STREAM)
        probe.settimeout(0.3)
        try:
            probe.connect((host, port))
            fillers.append(probe)  # accepted into the queue: keep filling
        except socket.timeout:
            probe.close()
            return s, fillers
        except OSError:
            probe.close()
    raise SystemExit("upstream.py: could not fill the accept queue for a black hole")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=sorted(MODES) + ["blackhole"])
    p.add_argument("arg", nargs="?", default="", help="N for source, TEXT for banner")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pidfile")
    p.add_argument("--ready-file")
    p.add_argument("--report", help="append one line per finished connection")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--bytes", type=int, default=1 << 20, help="halfclose answer size")
    p.add_argument("--max-seconds", type=float, default=120.0)
    args = p.parse_args()
    if args.mode == "source":
        args.arg_int = int(args.arg)

    # The hard bound on our life, whatever the test does or fails to do.
    t = threading.Timer(args.max_seconds, lambda: os._exit(3))
    t.daemon = True
    t.start()

    if args.pidfile:
        with open(args.pidfile, "w") as f:
            f.write(f"{os.getpid()}\n")

    if args.mode == "blackhole":
        lsock, fillers = make_blackhole(args.host, args.port)
    else:
        lsock, _ = make_listener(args.host, args.port, 512)
    if args.ready_file:
        open(args.ready_file, "w").close()
    if args.mode == "blackhole":
        time.sleep(args.max_seconds)
        return

    report = Report(args.report)
    while True:
        conn, _ = lsock.accept()
        threading.Thread(target=handle, args=(conn, args, report), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
