#!/usr/bin/env bash
# scrape.sh — the cost of one Prometheus scrape of tcpmap (issue 17): one
# `tcpmapctl metrics --http` process, as tcpmap-metrics@.service runs it per connection,
# answering one GET /metrics from stdin, against the breaker table of a tcpmapd that runs a
# generated config of about 1000 mappings (each its own cluster). Prints wall time and CPU
# (user + system) per scrape, process start to exit, and the answer's size.
#
# It never touches anything but loopback, stops the tcpmapd it starts by PID, and asserts
# nothing about timing: numbers are reported, not judged. Not part of `make check`.
#
# Usage: bench/scrape.sh [BUILD_DIR]   (SCRAPE_MAPPINGS=1000, SCRAPE_ROUNDS=50)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
MAPPINGS=${SCRAPE_MAPPINGS:-1000}
ROUNDS=${SCRAPE_ROUNDS:-50}
WORK=$(mktemp -d /tmp/tcpmap-scrape.XXXXXX)
TCPMAPD_PID=

cleanup() {
	if [ -n "$TCPMAPD_PID" ]; then
		kill "$TCPMAPD_PID" 2>/dev/null || true
		wait "$TCPMAPD_PID" 2>/dev/null || true
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT

# listeners of 20 mappings (a catch-all and a host group of 10 each; a group holds at most
# 32): MAPPINGS mappings in all, each to its own upstream, so each its own cluster
python3 "$ROOT/tests/lib/genscale.py" "$WORK/scale.yaml" --ports-file "$WORK/ports" \
	--listeners $((MAPPINGS / 20)) --per-group 10
mkdir -p "$WORK/run"
"$BUILD/tcpmapd" --config "$WORK/scale.yaml" --runtime-dir "$WORK/run" --log-target stderr \
	--workers 1 </dev/null >"$WORK/tcpmapd.log" 2>&1 &
TCPMAPD_PID=$!
for _ in $(seq 100); do
	[ -e "$WORK/run/breakers" ] && grep -q 'event=ready' "$WORK/tcpmapd.log" && break
	sleep 0.1
done
grep -q 'event=ready' "$WORK/tcpmapd.log" || { cat "$WORK/tcpmapd.log" >&2; exit 1; }

python3 - "$BUILD/tcpmapctl" "$WORK/run" "$ROUNDS" <<'PY'
import os, resource, statistics, subprocess, sys, time
ctl, run, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
request = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9465\r\nAccept: text/plain;version=0.0.4\r\n\r\n"
walls, cpus, size, lines = [], [], 0, 0
for i in range(rounds + 2):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run([ctl, "metrics", "--http", "--runtime-dir", run], input=request,
                       stdout=subprocess.PIPE, check=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if i < 2:
        continue  # warm the page cache
    walls.append(wall * 1000)
    cpus.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
    size = len(p.stdout)
    lines = p.stdout.count(b"\n")
    assert p.stdout.startswith(b"HTTP/1.1 200 OK"), p.stdout[:100]
clusters = sum(1 for l in p.stdout.split(b"\n") if l.startswith(b"tcpmap_connections_active{"))
walls.sort()
print(f"scrape: {clusters} clusters, answer {size} bytes in {lines} lines, {rounds} scrapes")
print(f"scrape: wall median {statistics.median(walls):.1f} ms, p90 {walls[int(len(walls) * 0.9) - 1]:.1f} ms; "
      f"CPU (user+sys) mean {statistics.mean(cpus):.1f} ms")
PY
