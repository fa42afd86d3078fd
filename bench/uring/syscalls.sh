#!/usr/bin/env bash
# syscalls.sh — issue 19: system calls and context switches per connection and per GiB of
# tcpmapd (--workers 2) and of bench/uring's uring-relay in each mode, counted with
# `perf stat -p` on the relay's PID (all its threads, io_uring's io-wq workers among them).
# A count does not drift with the machine's load as CPU time does. Loopback only; every
# process started here is stopped by PID; nothing is asserted.
#
# Usage: bench/uring/syscalls.sh BUILD_DIR [ROUNDS]   (default 1 round)
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BENCH=$(cd "$HERE/.." && pwd)
BUILD=$(cd "${1:-build}" && pwd)
ROUNDS=${2:-1}
WORK=$BENCH/out/uring/syscalls
RELAY=$BENCH/out/uring/uring-relay
PEERS=${SC_PEERS:-tcpmap uring-epoll uring-ring uring-link uring-epoll-copy uring-ring-copy}
. "$BENCH/lib/ports.sh"

die() { echo "syscalls: $*" >&2; exit 1; }
for t in perf wrk iperf3 nginx python3 ss; do command -v $t >/dev/null || die "$t missing"; done
make -s -C "$HERE" OUT="$BENCH/out/uring" || die "bench/uring does not build (liburing-dev?)"
rm -rf "$WORK" && mkdir -p "$WORK"
ulimit -n 20000 2>/dev/null || true

PIDS=()
cleanup() { local p; for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; }
trap cleanup EXIT

UP_HTTP=$(pick_port) UP_IPERF=$(pick_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<CONF
worker_processes 2;
worker_rlimit_nofile 20000;
pid $WORK/nginx/nginx.pid;
error_log stderr error;
events { worker_connections 20000; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	server { listen 127.0.0.1:$UP_HTTP backlog=4096; location / { return 200 "$(head -c 1024 /dev/zero | tr '\0' b)"; } }
}
CONF
nginx -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" -e stderr -g 'daemon off;' </dev/null >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
iperf3 -s -p "$UP_IPERF" -B 127.0.0.1 </dev/null >"$WORK/iperf3.log" 2>&1 &
PIDS+=($!)
wait_listening "$UP_HTTP" && wait_listening "$UP_IPERF" || die "upstreams did not start"

EVENTS=(-e context-switches)
for s in io_uring_enter splice recvfrom sendto epoll_wait epoll_pwait epoll_ctl accept4 socket connect \
	setsockopt getsockopt shutdown close pipe2 fcntl read write futex; do
	EVENTS+=(-e "syscalls:sys_enter_$s")
done

start() { # PEER LISTEN TARGET: prints the PID
	local dir=$WORK/$1-$2
	mkdir -p "$dir/run"
	case $1 in
	tcpmap)
		sed -e "s|@LISTEN@|$2|" -e "s|@TARGET@|$3|" "$BENCH/peers/tcpmap-tcp.yaml" >"$dir/t.yaml"
		"$BUILD/tcpmapd" --config "$dir/t.yaml" --runtime-dir "$dir/run" --log-target stderr \
			--workers 2 </dev/null >"$dir/log" 2>&1 &
		;;
	uring-epoll) "$RELAY" --mode epoll "$2" "$3" </dev/null >"$dir/log" 2>&1 & ;;
	uring-ring) "$RELAY" --mode uring "$2" "$3" </dev/null >"$dir/log" 2>&1 & ;;
	uring-link) "$RELAY" --mode uring --link "$2" "$3" </dev/null >"$dir/log" 2>&1 & ;;
	uring-epoll-copy) "$RELAY" --mode epoll --copy "$2" "$3" </dev/null >"$dir/log" 2>&1 & ;;
	uring-ring-copy) "$RELAY" --mode uring --copy "$2" "$3" </dev/null >"$dir/log" 2>&1 & ;;
	esac
	echo $!
}

# count PEER WORKLOAD PID UNITS OUTFILE: perf's counts divided by UNITS, one row per event
count() {
	python3 - "$@" <<'PY'
import sys
peer, w, units, path = sys.argv[1], sys.argv[2], float(sys.argv[4]), sys.argv[5]
rows, total = [], 0.0
for line in open(path):
    f = line.strip().split(",")
    if len(f) < 3 or not f[0].replace(".", "").isdigit():
        continue
    name = f[2].replace("syscalls:sys_enter_", "")
    v = float(f[0]) / units
    if name != "context-switches":
        total += v
    if v:
        rows.append((name, v))
rows.append(("syscalls_total", total))
for name, v in rows:
    print("%s\t%s\t%s\t%.2f" % (peer, w, name, v))
PY
}

# perf_start PEER WORKLOAD UPSTREAM_PORT: start PEER in front of UPSTREAM_PORT and perf stat
# on it; sets PORT, PID and PERF_PID.
perf_start() {
	PORT=$(pick_port)
	PID=$(start "$1" "$PORT" "$3")
	PIDS+=("$PID")
	wait_listening "$PORT" || die "$1 did not start"
	sleep 0.3
	perf stat -x, -o "$WORK/perf.$1.$2" -p "$PID" "${EVENTS[@]}" >/dev/null 2>&1 &
	PERF_PID=$!
	sleep 0.5
}

# perf_stop PEER WORKLOAD UNITS: end perf, add its counts per UNITS to the table, stop PEER.
perf_stop() {
	sleep 0.3
	kill -INT "$PERF_PID"
	wait "$PERF_PID"
	count "$1" "$2" "$PID" "$3" "$WORK/perf.$1.$2" >>"$WORK/counts.tsv"
}

printf 'peer\tworkload\tcounter\tper_unit\n' >"$WORK/counts.tsv"
for ((r = 0; r < ROUNDS; r++)); do
	for peer in $PEERS; do
		# connrate: per connection, wrk as in run.sh
		perf_start "$peer" conn "$UP_HTTP"
		out=$(wrk -t2 -c50 -d3s -H 'Connection: close' "http://127.0.0.1:$PORT/" 2>&1)
		reqs=$(awk '/requests in/ {print $1}' <<<"$out")
		perf_stop "$peer" conn "${reqs:-1}"
		echo "round $((r + 1)) $peer: $reqs connections, $(awk '/^Requests/ {print $2}' <<<"$out") conn/s (under perf)" >&2
		kill "$PID"
		wait "$PID" 2>/dev/null

		# bulk: per GiB, 2 GiB forward
		perf_start "$peer" bulk "$UP_IPERF"
		bytes=$(iperf3 -c 127.0.0.1 -p "$PORT" -n 2G -J 2>/dev/null |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])')
		perf_stop "$peer" bulk "$(python3 -c "print(${bytes:-0} / 2**30 or 1)")"
		echo "round $((r + 1)) $peer: threads at the end of bulk: $(awk '/^Threads/ {print $2}' /proc/$PID/status)" >&2
		kill "$PID"
		wait "$PID" 2>/dev/null
	done
done

# one table: counter x peer, per connection (conn) and per GiB (bulk), mean over rounds
python3 - "$WORK/counts.tsv" "$PEERS" <<'PY'
import sys
from collections import OrderedDict, defaultdict
peers = sys.argv[2].split()
vals = defaultdict(list)
names = OrderedDict()
for line in list(open(sys.argv[1]))[1:]:
    p, w, c, v = line.rstrip("\n").split("\t")
    vals[(w, c, p)].append(float(v))
    names[(w, c)] = 1
print("%-6s %-18s" % ("per", "counter") + "".join("%13s" % p for p in peers))
for (w, c) in names:
    cells = []
    for p in peers:
        v = vals.get((w, c, p))
        cells.append("%13.2f" % (sum(v) / len(v)) if v else "%13s" % "-")
    print("%-6s %-18s" % ("conn" if w == "conn" else "GiB", c) + "".join(cells))
PY
