#!/usr/bin/env python3
"""probe.py — how long new connections wait while a command (a reload, a restart, a package
upgrade) runs: the figure issue 21 asks for. tests/lib/systemd.bash's probe_during drives it.

    probe.py --port P [--host H] --control-dir D [--interval-ms 10] [--min-seconds 1.5]

It connects to an echoing mapping on HOST:PORT back to back (one probe every --interval-ms),
each probe timed from its connect() to its echoed bytes. After 0.5 s of probing it creates
D/ready, so the probing runs already when the command starts (a prober started with the
command, as an interpreter starts, misses its first hundred milliseconds). The caller
creates D/started just before the command and D/done after it; probing goes on until D/done
is there, --min-seconds have passed since D/started, and 0.5 s more. Last it prints:

    max_ms=M worst_at_ms=W p50_ms=X before_max_ms=B probes=K failed=F

max_ms is the worst probe started after D/started, worst_at_ms when it started (ms after
D/started), p50_ms their median, before_max_ms the worst before D/started (what the loaded
machine costs anyway), probes and failed count the probes after it. D/trace has every probe:
its start (CLOCK_MONOTONIC, as journalctl -o short-monotonic shows it), ms and whether it
was answered.
It only ever talks to the given address, and gives up after --max-seconds.
"""
import argparse
import os
import socket
import sys
import time


def probe(host, port):
    """ms from connect() to the echo of 5 bytes, and whether the echo came."""
    t = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=10) as s:
            s.sendall(b"probe")
            got = b""
            while len(got) < 5:
                b = s.recv(5 - len(got))
                if not b:
                    break
                got += b
        ok = got == b"probe"
    except OSError:
        ok = False
    return (time.monotonic() - t) * 1000, ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--control-dir", required=True)
    ap.add_argument("--interval-ms", type=float, default=10)
    ap.add_argument("--min-seconds", type=float, default=1.5)
    ap.add_argument("--max-seconds", type=float, default=600)
    a = ap.parse_args()
    ready, started_file, done_file = (
        os.path.join(a.control_dir, n) for n in ("ready", "started", "done")
    )

    before, during, failed = [], [], 0
    worst_at = 0.0
    trace = open(os.path.join(a.control_dir, "trace"), "w")
    t0 = time.monotonic()
    started = done = None
    while time.monotonic() < t0 + a.max_seconds:
        now = time.monotonic()
        if not os.path.exists(ready) and now >= t0 + 0.5:
            open(ready, "w").close()
        if started is None and os.path.exists(started_file):
            started = now
        if started is not None and done is None and os.path.exists(done_file):
            done = now
        if done is not None and now >= max(done + 0.5, started + a.min_seconds):
            break
        t = time.monotonic()
        ms, ok = probe(a.host, a.port)
        trace.write("%.6f %.1f %d\n" % (t, ms, ok))
        if started is not None and ms > max(during, default=-1):
            worst_at = (t - started) * 1000
        if started is None:
            before.append(ms)
        else:
            during.append(ms)
            failed += not ok
        time.sleep(a.interval_ms / 1000)

    trace.close()
    p50 = sorted(during)[len(during) // 2] if during else 0
    print(
        "max_ms=%.1f worst_at_ms=%.0f p50_ms=%.1f before_max_ms=%.1f probes=%d failed=%d"
        % (max(during, default=0), worst_at, p50, max(before, default=0), len(during), failed)
    )
    return 0 if done is not None else 1


if __name__ == "__main__":
    sys.exit(main())
