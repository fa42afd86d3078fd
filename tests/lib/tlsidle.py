#!/usr/bin/env python3
"""tlsidle.py — idle TLS connections for the restart and upgrade tests: N connections through
tcpmapd's TLS termination, each checked with one echo round trip, then left idle. When the
--check-file appears, each connection tries one more round trip and reports what happened:
"alive" (echoed), "close_notify" (the peer closed TLS cleanly), "eof" (closed without
close_notify) or "reset". One line per connection, then a summary line. Bounded by
--max-seconds; it only ever talks to the given loopback port."""
import argparse
import os
import select
import socket
import ssl
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--sni", required=True)
    ap.add_argument("--cafile", required=True)
    ap.add_argument("--connections", type=int, default=20)
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--check-file", required=True)
    ap.add_argument("--max-seconds", type=float, default=120)
    a = ap.parse_args()
    deadline = time.monotonic() + a.max_seconds
    ctx = ssl.create_default_context(cafile=a.cafile)
    conns = []
    for i in range(a.connections):
        raw = socket.create_connection((a.host, a.port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname=a.sni, suppress_ragged_eofs=False)
        s.sendall(b"hello %d\n" % i)
        got = b""
        while len(got) < len(b"hello %d\n" % i):
            got += s.recv(100)
        conns.append(s)
    open(a.ready_file, "w").close()
    while not os.path.exists(a.check_file):
        if time.monotonic() > deadline:
            print("timed out waiting for the check file")
            return 1
        time.sleep(0.05)
    counts = {}
    for i, s in enumerate(conns):
        msg = b"still there %d\n" % i
        try:
            s.settimeout(5)
            # a connection closed meanwhile has its close (alert, FIN) waiting: read it
            # before writing, so that our write cannot turn it into a reset
            if select.select([s], [], [], 0)[0]:
                b = s.recv(100)
                counts_what = "close_notify" if not b else "unexpected_data"
                raise StopIteration(counts_what)
            s.sendall(msg)
            got = b""
            while len(got) < len(msg):
                b = s.recv(100)
                if not b:
                    break
                got += b
            what = "alive" if got == msg else "close_notify"
        except StopIteration as e:
            what = e.args[0]
        except ssl.SSLZeroReturnError:
            what = "close_notify"
        except (ssl.SSLEOFError, BrokenPipeError):
            what = "eof"
        except ConnectionResetError:
            what = "reset"
        except (ssl.SSLError, OSError) as e:
            what = "error:" + type(e).__name__
        counts[what] = counts.get(what, 0) + 1
        print("conn=%d %s" % (i, what))
        try:
            s.close()
        except OSError:
            pass
    print(" ".join("%s=%d" % kv for kv in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
