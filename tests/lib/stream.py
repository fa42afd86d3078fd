#!/usr/bin/env python3
"""stream.py — long-lived connections for the restart tests: N connections through the
relay, each streaming deterministic bytes both ways against an echo upstream, checked in
order as they come back.

It runs until --duration has passed or --stop-file appears, then stops sending, waits for
every outstanding byte to come back, half-closes, waits for the echo's EOF and reports. It
must never hang a test: --max-seconds bounds its whole life, and every loop is bounded by
count or time. It only connects where it is told (loopback in the tests).

Output (one line per connection, then a summary):
    conn=I sent_bytes=N sent_sha256=HEX recv_bytes=N recv_sha256=HEX recv_after_mark=N
        closed_by=eof|reset|open|error|mismatch closed_at=EPOCH intact=0|1 error=TEXT
    connections=N intact=M sent_total=N recv_total=N
    OK | FAIL
A connection is intact when everything it received equals everything it sent, in order,
and, unless --allow-close, the relay did not end it early.
"""

import argparse
import hashlib
import os
import random
import selectors
import socket
import ssl
import sys
import threading
import time

CHUNK = 4096
WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Conn:
    def __init__(self, index, sock, seed):
        self.index = index
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.client = f"{host}:{port}"  # as tcpmapd's journal names the client
        self.rng = random.Random(seed)
        self.sent_hash = hashlib.sha256()
        self.recv_hash = hashlib.sha256()
        self.sent = 0
        self.recv = 0
        self.recv_at_mark = None
        # Sent and not yet echoed back: what the next received bytes must equal.
        self.expect = bytearray()
        self.unsent = b""
        self.closed_by = "open"  # eof, reset, error, mismatch or client (we ended it)
        self.closed_at = 0.0
        self.error = ""
        self.half_closed = False
        self.done = False

    def end(self, how, error=""):
        self.closed_by = how
        self.closed_at = time.time()
        self.error = self.error or error
        self.done = True

    def verdict(self, allow_close):
        complete = (self.closed_by in ("eof", "client") and self.half_closed and not self.error
                    and not self.expect and not self.unsent and self.recv == self.sent
                    and self.recv_hash.hexdigest() == self.sent_hash.hexdigest())
        # Every received byte was compared with what was sent as it arrived, so a connection
        # the relay ended without a mismatch got back a correct head of what it sent.
        head = self.closed_by in ("eof", "reset", "client", "open") and not self.error.startswith(
            ("mismatch", "recv:", "send:"))
        return complete or (allow_close and head)

    def line(self, allow_close):
        intact = self.verdict(allow_close)
        after = self.recv - self.recv_at_mark if self.recv_at_mark is not None else 0
        fields = [
            f"conn={self.index}", f"sent_bytes={self.sent}",
            f"sent_sha256={self.sent_hash.hexdigest()}", f"recv_bytes={self.recv}",
            f"recv_sha256={self.recv_hash.hexdigest()}", f"recv_after_mark={after}",
            f"closed_by={self.closed_by}", f"closed_at={self.closed_at:.3f}",
            f"intact={int(intact)}", f"error={self.error or '-'}", f"client={self.client}",
        ]
        return " ".join(fields), intact


def connect(args, index, deadline):
    s = socket.create_connection((args.host, args.port), timeout=max(0.1, deadline - time.monotonic()))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.tls:
        ctx = ssl.create_default_context(cafile=args.cafile)
        if not args.cafile:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        s = ctx.wrap_socket(s, server_hostname=args.sni)  # handshake, under the timeout
    s.setblocking(False)
    return Conn(index, s, args.seed * 100003 + index)


def on_readable(c):
    # TLS may hold decrypted bytes past what select sees: read until it would block.
    for _ in range(64):
        try:
            b = c.sock.recv(65536)
        except WOULD_BLOCK:
            return
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            b = b""
        except ConnectionResetError:
            c.end("reset", "" if c.half_closed and not c.expect else "reset")
            return
        except OSError as e:
            c.end("error", f"recv:{type(e).__name__}")
            return
        if not b:
            early = not c.half_closed or c.expect or c.unsent
            c.end("eof", f"early_eof,missing={len(c.expect)}" if early else "")
            return
        if bytes(c.expect[:len(b)]) != b:
            c.end("mismatch", f"mismatch_at={c.recv}")
            return
        del c.expect[:len(b)]
        c.recv_hash.update(b)
        c.recv += len(b)


def on_writable(c):
    try:
        n = c.sock.send(c.unsent)
    except WOULD_BLOCK:
        return
    except (ConnectionResetError, BrokenPipeError, ssl.SSLEOFError):
        # SSLEOFError: the relay closed the TCP connection without a close_notify while we
        # were writing, which is how a drain timeout ends a TLS connection: an abrupt close.
        c.end("reset", "reset")
        return
    except OSError as e:
        c.end("error", f"send:{type(e).__name__}")
        return
    chunk = c.unsent[:n]
    c.unsent = c.unsent[n:]
    c.sent_hash.update(chunk)
    c.sent += n
    c.expect += chunk


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--connections", type=int, default=1)
    p.add_argument("--rate", type=int, default=65536, help="bytes per second per connection")
    p.add_argument("--window", type=int, default=1 << 20,
                   help="most bytes a connection has sent and not yet got back")
    p.add_argument("--duration", type=float, default=0, help="seconds; 0: until --stop-file")
    p.add_argument("--stop-file", help="stop sending when this file appears")
    p.add_argument("--mark-file", help="when this file appears, note each connection's recv count")
    p.add_argument("--ready-file", help="created once every connection has had bytes echoed")
    p.add_argument("--drain-seconds", type=float, default=30,
                   help="after stopping, how long to wait for the echo of what was sent")
    p.add_argument("--max-seconds", type=float, default=300)
    p.add_argument("--allow-close", action="store_true",
                   help="the relay may end a connection; intact then means a correct prefix")
    p.add_argument("--tls", action="store_true")
    p.add_argument("--sni")
    p.add_argument("--cafile")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()

    # The hard bound on our life, whatever the relay or the test does.
    killer = threading.Timer(args.max_seconds + 5, lambda: os._exit(3))
    killer.daemon = True
    killer.start()

    start = time.monotonic()
    hard_deadline = start + args.max_seconds
    conns = []
    for i in range(args.connections):
        try:
            conns.append(connect(args, i, min(hard_deadline, time.monotonic() + 10)))
        except (OSError, ssl.SSLError) as e:
            print(f"conn={i} connect failed: {type(e).__name__}: {e}")
            print("FAIL", flush=True)
            for c in conns:
                c.sock.close()
            return 1

    sel = selectors.DefaultSelector()
    for c in conns:
        sel.register(c.sock, selectors.EVENT_READ, c)

    began = time.monotonic()
    stop_at = began + args.duration if args.duration > 0 else None
    stopping_since = None
    ready = False
    mark = False
    last_file_check = 0.0
    while True:
        now = time.monotonic()
        if now >= hard_deadline:
            break
        if now - last_file_check >= 0.1:
            last_file_check = now
            if stopping_since is None and args.stop_file and os.path.exists(args.stop_file):
                stopping_since = now
            if not mark and args.mark_file and os.path.exists(args.mark_file):
                mark = True
                for c in conns:
                    c.recv_at_mark = c.recv
        if stopping_since is None and stop_at is not None and now >= stop_at:
            stopping_since = now
        if stopping_since is not None and now - stopping_since > args.drain_seconds:
            break
        live = [c for c in conns if not c.done]
        if not live:
            break
        if not ready and args.ready_file and all(c.recv > 0 for c in conns):
            ready = True
            open(args.ready_file, "w").close()

        for c in live:
            want = selectors.EVENT_READ
            if stopping_since is None:
                # Pace: never ahead of rate * time, never more than a window in flight.
                allowed = int(args.rate * (now - began)) + CHUNK - c.sent
                room = args.window - len(c.expect)
                if not c.unsent and allowed > 0 and room > 0:
                    c.unsent = c.rng.randbytes(min(CHUNK, allowed, room))
            elif not c.half_closed and not c.unsent and not c.expect:
                c.half_closed = True
                if args.tls:
                    # A TLS half-close (close_notify) would end our reading too: everything
                    # came back, so the client ends it.
                    c.end("client")
                    continue
                # Everything echoed: pass our FIN on and wait for the echo's.
                try:
                    c.sock.shutdown(socket.SHUT_WR)
                except OSError as e:
                    c.end("error", f"shutdown:{type(e).__name__}")
                    continue
            if c.unsent:
                want |= selectors.EVENT_WRITE
            sel.modify(c.sock, want, c)

        for key, events in sel.select(timeout=0.05):
            c = key.data
            if c.done:
                continue
            if events & selectors.EVENT_READ:
                on_readable(c)
            if not c.done and events & selectors.EVENT_WRITE and c.unsent:
                on_writable(c)
        for c in conns:
            if c.done:
                try:
                    sel.unregister(c.sock)
                except (KeyError, ValueError):
                    pass
                if args.tls:
                    c.sock.close()  # nothing more to read; do not keep the peer waiting

    ok, n_intact, sent_total, recv_total = True, 0, 0, 0
    for c in conns:
        if not c.done:
            # Out of time: say what was still owed.
            c.error = f"missing={len(c.expect)}" if c.expect else "no_eof" if c.half_closed else "deadline"
        line, intact = c.line(args.allow_close)
        print(line)
        n_intact += intact
        ok = ok and intact
        sent_total += c.sent
        recv_total += c.recv
        try:
            c.sock.close()
        except OSError:
            pass
    print(f"connections={len(conns)} intact={n_intact} sent_total={sent_total} recv_total={recv_total}"
          f" elapsed_s={time.monotonic() - start:.1f}")
    print("OK" if ok else "FAIL", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
