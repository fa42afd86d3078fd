#!/usr/bin/env python3
"""report.py — turns bench/out/results.tsv into the table `make bench` prints: each value,
its ratio to direct loopback and to the best peer, and issue 6's targets as met or missed;
given bench/out/rounds.tsv too, the resume workload's values round by round.

It only reads the TSVs; it never decides anything about a run it did not see (a metric a
peer did not produce is shown as "-", and a target without its inputs as "n/a"). A resume
run whose handshakes did not resume is flagged on every row it produced, and never chosen
as the best peer: its rate is not one of resumed handshakes."""

import os
import re
import sys
from collections import OrderedDict

HIGHER_BETTER = ("gbit", "conn_per_s", "hs_per_s", "held", "resumed_pct")  # substrings of metric names
# Below this share of resumed handshakes (resumed_pct_*, the lowest round's), a resume run
# measured something else: bench/README.md, "resume".
RESUMED_PCT_MIN = 99.0
ROUND_DETAIL = ("resume",)  # workloads whose rounds are printed under their table
# Peers that tcpmap is compared against; direct is the ceiling, not a peer, and tcpmap's
# own per-connection mode is compared with socat only.
SELF = ("tcpmap", "tcpmap-inetd", "tcpmap-fork")
# Measuring devices, not peers: issue 19's io_uring prototype in its two modes (bench/uring).
PROTOTYPES = ("uring-epoll", "uring-ring", "uring-epoll-copy", "uring-ring-copy")


def higher_better(metric):
    return any(h in metric for h in HIGHER_BETTER)


def load(path):
    rows = OrderedDict()
    units = {}
    with open(path) as f:
        next(f)
        for line in f:
            w, p, m, v, u = line.rstrip("\n").split("\t")
            try:
                rows.setdefault((w, m), OrderedDict())[p] = float(v)
            except ValueError:
                continue
            units[(w, m)] = u
    return rows, units


def resume_flags(rows):
    """{(workload, peer, suffix): resumed %} for each resume run below RESUMED_PCT_MIN; the
    suffix (_tls13, _tls12) names the metrics of that run."""
    flags = {}
    for (w, m), vals in rows.items():
        if m.startswith("resumed_pct"):
            for p, v in vals.items():
                if v < RESUMED_PCT_MIN:
                    flags[(w, p, m[len("resumed_pct"):])] = v
    return flags


def flag_of(flags, w, p, m):
    sfx = re.search(r"_tls1[0-9]$", m)
    return flags.get((w, p, sfx.group(0) if sfx else ""))


def best_peer(vals, metric, exclude=SELF + PROTOTYPES + ("direct",), unfit=()):
    cands = {p: v for p, v in vals.items() if p not in exclude and p not in unfit and v > 0}
    if not cands:
        return None, None
    pick = max if higher_better(metric) else min
    p = pick(cands, key=cands.get)
    return p, cands[p]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def print_rounds(path, workload):
    """Each (peer, metric) of WORKLOAD, its value in each round, in the order run."""
    vals = OrderedDict()
    try:
        with open(path) as f:
            for line in f:
                w, p, m, v, _ = line.rstrip("\n").split("\t")
                if w == workload:
                    vals.setdefault((m, p), []).append(float(v))
    except OSError:
        return
    if not vals:
        return
    order = list(OrderedDict.fromkeys(m for m, _ in vals))  # the metrics as first recorded
    print("rounds:")
    for (m, p), vs in sorted(vals.items(), key=lambda kv: order.index(kv[0][0])):
        print("  %-16s %-22s %s" % (p, m, " ".join(fmt(v) for v in vs)))


def main():
    tsv, meta = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None
    rounds = sys.argv[3] if len(sys.argv) > 3 else None
    rows, units = load(tsv)
    flags = resume_flags(rows)
    if meta:
        with open(meta) as f:
            print(f.read().rstrip())
    print()
    print("Ratios: x direct = value / direct loopback; x best = value / the best other peer")
    print("(haproxy, haproxy-splice, nginx, socket-proxyd, socat, stunnel) for that metric.")
    print("For time, CPU and memory metrics lower is better, so x best < 1 is a win there.")
    workload = None

    def end_workload():
        if workload in ROUND_DETAIL and rounds:
            print_rounds(rounds, workload)

    for (w, m), vals in rows.items():
        if w != workload:
            end_workload()
            workload = w
            print("\n## %s" % w)
            print("%-16s %-22s %12s %-7s %9s %9s" % ("peer", "metric", "value", "unit", "x direct", "x best"))
        unfit = [p for p in vals if flag_of(flags, w, p, m) is not None]
        direct = vals.get("direct") if "direct" not in unfit else None
        bp, bv = best_peer(vals, m, unfit=unfit)
        for p, v in vals.items():
            xd = v / direct if direct else None
            xb = v / bv if bv else None
            mark = " *" if p == bp else ""
            low = flag_of(flags, w, p, m)
            if low is not None:
                mark += "  ! only %s %% resumed" % fmt(low)
            print("%-16s %-22s %12s %-7s %9s %9s%s" % (p, m, fmt(v), units[(w, m)],
                                                    fmt(xd) if p != "direct" else "",
                                                    fmt(xb), mark))
    end_workload()
    print("\n(* = the best peer for that metric)")
    if flags:
        print("(! = fewer than %.0f %% of that run's handshakes resumed in its worst round: its"
              % RESUMED_PCT_MIN)
        print(" rates are not of resumed handshakes, and it is never the best peer)")
    targets(rows)


def get(rows, w, m, p):
    return rows.get((w, m), {}).get(p)


def targets(rows):
    print("\n## issue 6 targets (tcpmap threaded unless said)")
    out = []

    def check(name, ok, detail):
        state = "n/a" if ok is None else ("MET" if ok else "MISSED")
        out.append((name, state, detail))

    def ratio_target(name, w, m, want, peer="tcpmap", exclude=SELF + PROTOTYPES + ("direct",)):
        vals = rows.get((w, m), {})
        v = vals.get(peer)
        bp, bv = best_peer(vals, m, exclude)
        if v is None or bv is None:
            check(name, None, "no data")
            return None, None
        r = v / bv
        check(name, r >= want, "%s / %s = %s / %s = %.2f (want >= %.2f)" % (peer, bp, fmt(v), fmt(bv), r, want))
        return bp, bv

    for d in ("fwd", "rev"):
        bp, _ = ratio_target("bulk Gbit/s %s >= 1.05 x best" % d, "bulk", "gbit_" + d, 1.05)
        if bp:
            c = get(rows, "bulk", "cpu_ms_per_gib_" + d, "tcpmap")
            cb = get(rows, "bulk", "cpu_ms_per_gib_" + d, bp)
            if c is not None and cb:
                check("bulk CPU/GiB %s <= %s's" % (d, bp), c <= cb, "%s vs %s ms/GiB" % (fmt(c), fmt(cb)))
    bp, _ = ratio_target("conn/s >= 1.10 x best", "connrate", "conn_per_s", 1.10)
    if bp:
        c = get(rows, "connrate", "p99_ms", "tcpmap")
        cb = get(rows, "connrate", "p99_ms", bp)
        if c is not None and cb:
            check("connrate p99 <= %s's" % bp, c <= cb, "%s vs %s ms" % (fmt(c), fmt(cb)))
    ratio_target("TLS handshakes/s >= 1.05 x best", "tls", "hs_per_s", 1.05)
    v, d = get(rows, "tls", "hs_per_s", "tcpmap"), get(rows, "tls", "hs_per_s", "direct")
    if v is not None and d:
        check("TLS handshakes/s >= 0.9 x direct", v / d >= 0.9, "%s / %s = %.2f" % (fmt(v), fmt(d), v / d))
    ratio_target("TLS bulk Gbit/s >= 1.05 x best", "tls", "bulk_gbit", 1.05)
    rss = get(rows, "idle", "rss_kib_per_conn", "tcpmap")
    if rss is not None:
        check("idle userspace <= 1 KiB/conn", rss <= 1.0, "%s KiB" % fmt(rss))
    k, kh = get(rows, "idle", "kernel_kib_per_conn", "tcpmap"), get(rows, "idle", "kernel_kib_per_conn", "haproxy")
    if k is not None and kh is not None:
        check("idle kernel <= haproxy's", k <= kh, "%s vs %s KiB" % (fmt(k), fmt(kh)))
    held = get(rows, "idle", "held_of_9000", "tcpmap")
    if held is not None:
        check("9000 connections held", held >= 9000, "%d held" % held)
    ratio_target("per-connection conn/s >= 1.5 x socat", "connrate", "conn_per_s", 1.5,
                 peer="tcpmap-inetd", exclude=tuple(p for p in rows.get(("connrate", "conn_per_s"), {})
                                                    if p != "socat"))
    c = get(rows, "connrate", "cpu_us_per_conn", "tcpmap-inetd")
    if c is not None:
        check("per-connection process <= 2 ms", c <= 2000,
              "%s us CPU per connection (process start, config load and relay; upper bound)" % fmt(c))
    st = get(rows, "start", "spawn_us", "tcpmapd-inetd")
    if st is not None:
        check("one process start + config load <= 2 ms", st <= 2000,
              "%s us wall, tcpmapd --inetd from exec to exit, config load included (median)" % fmt(st))
    socat = get(rows, "connrate", "conn_per_s", "socat")
    # What no design that execs per connection can beat, whatever it does after exec: any
    # program at all, then any program on tcpmapd's run-time libraries (docs/ARCHITECTURE.md,
    # 'Why the TLS module is loaded lazily').
    for peer, what in (("noop-static", "exec floor"), ("noop-libs", "libsystemd+libyaml floor")):
        floor = get(rows, "start", "spawn_us", peer)
        if floor and socat:
            ceiling = 1e6 / floor
            check("%s vs 1.5 x socat" % what, ceiling >= 1.5 * socat,
                  "%s's fork+exec takes %s us: at most %s starts/s, against %s conn/s wanted"
                  % (peer, fmt(floor), fmt(ceiling), fmt(1.5 * socat)))
    ratio_target("SNI routing handshakes/s >= best", "sni", "hs_per_s", 1.0)
    # Issue 20: per_connection_process (tcpmap-fork) against socat's fork mode and against
    # tcpmap threaded, and what stands in the way of the second.
    fork, thr = get(rows, "connrate", "conn_per_s", "tcpmap-fork"), get(rows, "connrate", "conn_per_s", "tcpmap")
    if fork is not None and socat:
        check("per_connection_process conn/s >= 1.5 x socat", fork >= 1.5 * socat,
              "%s / %s = %.2f" % (fmt(fork), fmt(socat), fork / socat))
    if fork is not None and thr:
        check("per_connection_process conn/s >= 0.7 x threaded", fork >= 0.7 * thr,
              "%s / %s = %.2f" % (fmt(fork), fmt(thr), fork / thr))
    # connrate is CPU-bound on every core: a connection costs the box the clients' and the
    # upstream's CPU (direct's cores / rate) plus the proxy's. 0.7 x threaded leaves the
    # proxy this much per connection; a process per connection does at least what a threaded
    # connection does (accept, route, connect, relay) and pays the fork floor on top.
    direct, floor = get(rows, "connrate", "conn_per_s", "direct"), get(rows, "start", "cpu_us", "fork-only")
    thrcpu = get(rows, "connrate", "cpu_us_per_conn", "tcpmap")
    cores = os.cpu_count() or 1
    if thr and direct and floor is not None and thrcpu is not None:
        budget = cores * 1e6 * (1 / (0.7 * thr) - 1 / direct)
        forkcpu = get(rows, "connrate", "cpu_us_per_conn", "tcpmap-fork")
        check("fork floor + threaded conn within 0.7 x threaded's budget", floor + thrcpu <= budget,
              "fork+exit+wait %s us CPU + a threaded connection's %s = %s us, against %s us a "
              "connection may cost the proxy (%d cores); per_connection_process costs %s"
              % (fmt(floor), fmt(thrcpu), fmt(floor + thrcpu), fmt(budget), cores,
                 fmt(forkcpu) if forkcpu is not None else "-"))
    w = max([len(n) for n, _, _ in out] + [10])
    for name, state, detail in out:
        print("%-*s  %-6s  %s" % (w, name, state, detail))


if __name__ == "__main__":
    main()
