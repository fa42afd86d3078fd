#!/usr/bin/env python3
"""client.py — the bats tests' TCP client: sends deterministic bytes, reads everything,
and prints what it sent and got as key=value lines for the tests to compare.

It must never hang a test: every connect, send and receive runs under a deadline
(--timeout), and every loop is bounded by count or time.

Output (one field per line):
    sent_bytes=N sent_sha256=HEX recv_bytes=N recv_sha256=HEX [recv_text=...]
    closed_by=eof|reset|open|timeout eof_ms=N|none elapsed_ms=N
--parallel K prints `conn=I intact=0|1 ...` per connection and `intact=M` in all;
--repeat K prints `banner=TEXT count=N` per distinct answer.
"""

import argparse
import hashlib
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from upstream import CHUNK, data_stream  # noqa: E402  (same bytes on both sides)


def now_ms():
    return time.monotonic() * 1000.0


def connect(host, port, timeout):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def one_connection(args, seed, deadline):
    """Send args.send bytes (or a file) while reading everything that comes back."""
    res = {"sent_bytes": 0, "sent_sha256": "", "recv_bytes": 0, "recv_sha256": "",
           "closed_by": "timeout", "eof_ms": "none", "error": ""}
    start = now_ms()
    try:
        s = connect(args.host, args.port, max(0.1, deadline - time.monotonic()))
    except OSError as e:
        res["error"] = f"connect:{type(e).__name__}"
        res["closed_by"] = "connect_failed"
        return res
    t0 = now_ms()
    sh, rh = hashlib.sha256(), hashlib.sha256()
    sent = [0]
    send_err = []

    def sender():
        try:
            if args.send_file:
                with open(args.send_file, "rb") as f:
                    while time.monotonic() < deadline:
                        b = f.read(CHUNK)
                        if not b:
                            break
                        s.sendall(b)
                        sh.update(b)
                        sent[0] += len(b)
            else:
                for chunk in data_stream(args.send, seed):
                    if time.monotonic() >= deadline:
                        break
                    s.sendall(chunk)
                    sh.update(chunk)
                    sent[0] += len(chunk)
            if not args.no_shutdown:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            send_err.append(type(e).__name__)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    text = bytearray()
    n = 0
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            b = s.recv(CHUNK)
            if not b:
                res["closed_by"] = "eof"
                res["eof_ms"] = int(now_ms() - t0)
                break
            rh.update(b)
            n += len(b)
            if args.text and len(text) < 4096:
                text += b[: 4096 - len(text)]
    except socket.timeout:
        pass
    except ConnectionResetError:
        res["closed_by"] = "reset"
        res["eof_ms"] = int(now_ms() - t0)
    except OSError as e:
        res["error"] = f"recv:{type(e).__name__}"
    th.join(max(0.0, deadline - time.monotonic()))
    s.close()
    res.update(sent_bytes=sent[0], sent_sha256=sh.hexdigest(), recv_bytes=n,
               recv_sha256=rh.hexdigest(), elapsed_ms=int(now_ms() - start))
    if send_err and not res["error"]:
        res["error"] = "send:" + send_err[0]
    if args.text:
        res["recv_text"] = text.decode(errors="replace").strip()
    return res


def idle_connection(args, deadline):
    """Stay connected for --idle-ms (sending one byte every --drip-ms if asked) and say
    whether and when the peer closed."""
    res = {"closed_by": "open", "eof_ms": "none", "sent_bytes": 0, "recv_bytes": 0}
    s = connect(args.host, args.port, max(0.1, deadline - time.monotonic()))
    t0 = now_ms()
    end = t0 + args.idle_ms
    next_drip = t0 + args.drip_ms if args.drip_ms else None
    s.setblocking(False)
    for _ in range(100000):  # bounded; each pass waits or reads
        t = now_ms()
        if t >= end or time.monotonic() >= deadline:
            break
        wake = end if next_drip is None else min(end, next_drip)
        r, _, _ = select.select([s], [], [], max(0.0, (wake - t) / 1000.0))
        if r:
            try:
                b = s.recv(CHUNK)
            except ConnectionResetError:
                res["closed_by"], res["eof_ms"] = "reset", int(now_ms() - t0)
                break
            except BlockingIOError:
                continue
            if not b:
                res["closed_by"], res["eof_ms"] = "eof", int(now_ms() - t0)
                break
            res["recv_bytes"] += len(b)
        if next_drip is not None and now_ms() >= next_drip:
            try:
                s.send(b".")
                res["sent_bytes"] += 1
            except OSError:
                res["closed_by"], res["eof_ms"] = "reset", int(now_ms() - t0)
                break
            next_drip += args.drip_ms
    res["elapsed_ms"] = int(now_ms() - t0)
    s.close()
    return res


def print_result(res, prefix=""):
    for k, v in res.items():
        if k == "error" and not v:
            continue
        print(f"{prefix}{k}={v}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--send", type=int, default=0, help="bytes of deterministic data to send")
    p.add_argument("--send-file")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-shutdown", action="store_true", help="keep the write side open")
    p.add_argument("--text", action="store_true", help="also print what came back as text")
    p.add_argument("--timeout", type=float, default=30.0, help="deadline for everything, s")
    p.add_argument("--idle-ms", type=int, help="stay connected this long and watch for EOF")
    p.add_argument("--drip-ms", type=int, default=0, help="with --idle-ms: send a byte this often")
    p.add_argument("--parallel", type=int, default=0, help="K concurrent connections, echo check")
    p.add_argument("--repeat", type=int, default=0, help="K sequential connections, count answers")
    args = p.parse_args()
    deadline = time.monotonic() + args.timeout

    if args.idle_ms is not None:
        print_result(idle_connection(args, deadline))
        return 0

    if args.parallel:
        results = [None] * args.parallel

        def run(i):
            results[i] = one_connection(args, args.seed + i, deadline)

        threads = [threading.Thread(target=run, args=(i,), daemon=True)
                   for i in range(args.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        intact = 0
        for i, r in enumerate(results):
            if r is None:
                print(f"conn={i} intact=0 error=unfinished")
                continue
            ok = (r["closed_by"] == "eof" and not r["error"] and r["sent_bytes"] == args.send
                  and r["recv_bytes"] == r["sent_bytes"] and r["recv_sha256"] == r["sent_sha256"])
            intact += ok
            print(f"conn={i} intact={int(ok)} sent_bytes={r['sent_bytes']} "
                  f"recv_bytes={r['recv_bytes']} closed_by={r['closed_by']} {r['error']}")
        print(f"intact={intact}")
        return 0

    if args.repeat:
        args.text = True
        counts, failures = {}, 0
        for _ in range(args.repeat):
            if time.monotonic() >= deadline:
                break
            r = one_connection(args, args.seed, deadline)
            if r["closed_by"] != "eof" or r["error"]:
                failures += 1
                continue
            counts[r["recv_text"]] = counts.get(r["recv_text"], 0) + 1
        for text in sorted(counts):
            print(f"banner={text} count={counts[text]}")
        print(f"failures={failures}")
        return 0

    print_result(one_connection(args, args.seed, deadline))
    return 0


if __name__ == "__main__":
    sys.exit(main())
