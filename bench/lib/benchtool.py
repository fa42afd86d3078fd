#!/usr/bin/env python3
"""benchtool.py — the bench's own clients and servers, for what iperf3 and wrk cannot do:
TLS handshake loops with SNI (full, or resumed with a session ticket), TLS bulk upload, a discard sink, an echo server that holds
thousands of idle connections, and the idle-connection client.

Every subcommand is bounded in time (or, for the servers, stopped by PID by run.sh), and
touches only the loopback address it is given. It must never measure the proxy itself:
it prints plain numbers and run.sh does the accounting."""

import argparse
import os
import selectors
import socket
import ssl
import sys
import threading
import time

REQUEST_PAD = 1024


def http_request(host):
    # A GET padded to about 1 KiB with a header, so every handshake carries a small request.
    head = "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\nX-Pad: " % host
    tail = "\r\n\r\n"
    pad = max(0, REQUEST_PAD - len(head) - len(tail))
    return (head + "p" * pad + tail).encode()


TLS_VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}


def client_context(version=None):
    """TLS 1.3 or newer; with VERSION ("1.2" or "1.3"), exactly that one."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if version:
        ctx.minimum_version = ctx.maximum_version = TLS_VERSIONS[version]
    return ctx


def small_request(host, path):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host)).encode()


def read_to_close(s):
    """Every byte the server sends until it closes; returns how many."""
    got = 0
    while True:
        b = s.recv(65536)
        if not b:
            return got
        got += len(b)


def one_exchange(ctx, port, sni, req, session=None):
    """One TCP connection and one TLS handshake (offering SESSION when given), REQ sent and
    the answer read to the upstream's close. Returns (bytes answered, resumed, the session
    to offer next: the newest ticket the server sent, or SESSION when it sent none)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        # As browsers and curl do: otherwise the request, written right after the client's
        # Finished, waits for the server's delayed ACK of it (40 ms) and the loop measures
        # Nagle's algorithm instead of the handshake.
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with ctx.wrap_socket(raw, server_hostname=sni, session=session) as s:
            s.sendall(req)
            got = read_to_close(s)
            # Read after the answer, so a TLS 1.3 NewSessionTicket (sent after the
            # handshake) has been processed.
            newest = s.session
            resumed = s.session_reused
    if newest is None or not newest.has_ticket:
        newest = session
    return got, resumed, newest


def hs_loop(port, sni, deadline, out_fd):
    """One loop of full handshakes, each with one request and the whole response."""
    ctx = client_context()
    req = http_request(sni)
    ok = err = 0
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                # A fresh SSLSocket without a session: every handshake is a full one.
                with ctx.wrap_socket(raw, server_hostname=sni) as s:
                    s.sendall(req)
                    got = read_to_close(s)
                    if got >= REQUEST_PAD:
                        ok += 1
                    else:
                        err += 1
        except (OSError, ssl.SSLError):
            err += 1
    os.write(out_fd, ("%d %d\n" % (ok, err)).encode())


def run_loops(n, loop, *args):
    """Run `loop(*args, out_fd)` in n forked processes at once; each writes one line of
    integers to out_fd. Returns the columns summed over the processes."""
    r, w = os.pipe()
    pids = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                loop(*args, w)
            finally:
                os._exit(0)
        pids.append(pid)
    os.close(w)
    for pid in pids:
        os.waitpid(pid, 0)
    sums = None
    with os.fdopen(r) as f:
        for line in f:
            cols = [int(x) for x in line.split()]
            sums = cols if sums is None else [a + b for a, b in zip(sums, cols)]
    return sums


def cmd_tls_hs(a):
    deadline = time.monotonic() + a.seconds
    start = time.monotonic()
    ok, err = run_loops(a.loops, hs_loop, a.port, a.sni, deadline)
    elapsed = time.monotonic() - start
    print("%.1f %d %d" % (ok / elapsed, ok, err))


def resume_loop(port, sni, version, path, start, deadline, out_fd):
    """One full handshake to get a ticket, then, from START to DEADLINE, handshakes that
    offer it: each a new TCP connection, a small request, the small answer, the close. Each
    offers the newest ticket the server sent (RFC 8446 C.4: a TLS 1.3 client should not reuse
    one), so a server that issues a fresh ticket on every resumption pays for it, as it would
    with a real client. Counts handshakes answered and, of those, the resumed ones."""
    ctx = client_context(version)
    req = small_request(sni, path)
    ok = resumed = err = 0
    session = None
    try:
        _, _, session = one_exchange(ctx, port, sni, req)
    except (OSError, ssl.SSLError) as e:
        print("tls-resume: the first handshake failed: %s" % e, file=sys.stderr)
    if session is None:
        print("tls-resume: no session ticket from the first handshake", file=sys.stderr)
        os.write(out_fd, b"0 0 1\n")
        return
    delay = start - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    while time.monotonic() < deadline:
        try:
            got, was_resumed, session = one_exchange(ctx, port, sni, req, session)
            if got > 0:
                ok += 1
                resumed += was_resumed
            else:
                err += 1
        except (OSError, ssl.SSLError):
            err += 1
    os.write(out_fd, ("%d %d %d\n" % (ok, resumed, err)).encode())


def cmd_tls_resume(a):
    """Prints "handshakes/s answered resumed failed" over --seconds, after each loop's first
    full handshake (not counted; a short settling time is left for it before the clock)."""
    start = time.monotonic() + a.settle
    deadline = start + a.seconds
    ok, resumed, err = run_loops(a.loops, resume_loop, a.port, a.sni, a.tls, a.path, start,
                                 deadline)
    elapsed = max(time.monotonic(), deadline) - start
    print("%.1f %d %d %d" % (ok / elapsed, ok, resumed, err))


def cmd_tls_bulk(a):
    ctx = client_context()
    buf = b"\0" * (256 * 1024)
    sent = 0
    with socket.create_connection(("127.0.0.1", a.port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=a.sni) as s:
            start = time.monotonic()
            deadline = start + a.seconds
            while time.monotonic() < deadline:
                s.sendall(buf)
                sent += len(buf)
            elapsed = time.monotonic() - start
    print("%.3f %d" % (sent * 8 / elapsed / 1e9, sent))


def cmd_sink(a):
    """Discards whatever each connection sends; one thread per connection."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(128)

    def drain(c):
        mv = memoryview(bytearray(1 << 20))
        with c:
            while c.recv_into(mv):
                pass

    while True:
        c, _ = ls.accept()
        threading.Thread(target=drain, args=(c,), daemon=True).start()


def cmd_echo(a):
    """Echoes bytes back on any number of connections; one epoll loop, no per-connection
    state beyond the socket, so it can hold tens of thousands."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(4096)
    ls.setblocking(False)
    sel = selectors.EpollSelector()
    sel.register(ls, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                for _ in range(64):
                    try:
                        c, _ = ls.accept()
                    except BlockingIOError:
                        break
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, 1)
                continue
            c = key.fileobj
            try:
                b = c.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                b = b""
            if not b:
                sel.unregister(c)
                c.close()
                continue
            try:
                c.send(b)
            except OSError:
                pass


def cmd_idle(a):
    """Opens COUNT connections, each confirmed with one byte each way, prints "held N",
    then waits for a line (or EOF) on stdin and closes them all."""
    held = []
    deadline = time.monotonic() + a.seconds
    failed = 0
    for i in range(a.count):
        if time.monotonic() > deadline:
            break
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=5)
            s.sendall(b"x")
            if s.recv(1) != b"x":
                raise OSError("no echo")
            held.append(s)
        except OSError as e:
            failed += 1
            if failed == 1:
                print("idle: connection %d failed: %s" % (i, e), file=sys.stderr)
            if failed > 50:
                break
    print("held %d" % len(held), flush=True)
    sys.stdin.readline()
    for s in held:
        s.close()


def cmd_spawn(a):
    """Starts ARGV N times, one after another (posix_spawn, then wait), and prints the
    median and mean wall time of one start-to-exit in microseconds. The processes are ones
    that exit by themselves (a no-op, --version, one connection under --inetd).

    With --stdin-tcp PORT, each process gets as stdin a TCP connection accepted on
    127.0.0.1:PORT, as inetd (or systemd's Accept=yes) would hand it; the client end is
    closed at once, so the process sees a client that is already gone."""
    times = []
    devnull = os.open(os.devnull, os.O_RDWR)
    ls = None
    if a.stdin_tcp:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", a.stdin_tcp))
        ls.listen(16)
    deadline = time.monotonic() + a.seconds
    for _ in range(a.n):
        if time.monotonic() > deadline:
            break
        conn = None
        stdin = devnull
        if ls:
            c = socket.create_connection(("127.0.0.1", a.stdin_tcp), timeout=5)
            conn, _ = ls.accept()
            c.close()
            stdin = conn.fileno()
        acts = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2)]
        t = time.monotonic()
        pid = os.posix_spawn(a.argv[0], a.argv, os.environ, file_actions=acts)
        _, status = os.waitpid(pid, 0)
        times.append(time.monotonic() - t)
        if conn:
            conn.close()
        if status != 0:
            print("spawn: %s exited with status %d" % (a.argv[0], status), file=sys.stderr)
            sys.exit(1)
    times.sort()
    print("%.1f %.1f %d" % (times[len(times) // 2] * 1e6, sum(times) / len(times) * 1e6, len(times)))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("tls-hs")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--sni", default="bench.local")
    s.add_argument("--seconds", type=float, default=5)
    s.add_argument("--loops", type=int, default=2)
    s.set_defaults(fn=cmd_tls_hs)
    s = sub.add_parser("tls-resume")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--sni", default="bench.local")
    s.add_argument("--tls", choices=sorted(TLS_VERSIONS), default="1.3")
    s.add_argument("--path", default="/r")
    s.add_argument("--seconds", type=float, default=5)
    s.add_argument("--settle", type=float, default=0.5)
    s.add_argument("--loops", type=int, default=2)
    s.set_defaults(fn=cmd_tls_resume)
    s = sub.add_parser("tls-bulk")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--sni", default="bench.local")
    s.add_argument("--seconds", type=float, default=5)
    s.set_defaults(fn=cmd_tls_bulk)
    s = sub.add_parser("sink")
    s.add_argument("--port", type=int, required=True)
    s.set_defaults(fn=cmd_sink)
    s = sub.add_parser("echo")
    s.add_argument("--port", type=int, required=True)
    s.set_defaults(fn=cmd_echo)
    s = sub.add_parser("idle")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--count", type=int, default=5000)
    s.add_argument("--seconds", type=float, default=60)
    s.set_defaults(fn=cmd_idle)
    s = sub.add_parser("spawn")
    s.add_argument("--n", type=int, default=200)
    s.add_argument("--seconds", type=float, default=30)
    s.add_argument("--stdin-tcp", type=int, default=0)
    s.add_argument("argv", nargs="+")
    s.set_defaults(fn=cmd_spawn)
    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
