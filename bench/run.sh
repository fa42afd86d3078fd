#!/usr/bin/env bash
# run.sh — `make bench`: tcpmap against direct loopback, haproxy, nginx stream,
# systemd-socket-proxyd, socat and stunnel, the same workloads through each, one after
# another, in one run. Writes bench/out/results.tsv and prints the table (bench/lib/report.py).
#
# It must never touch anything but loopback, never leave a process behind (each one it
# starts is stopped by PID), and never run unbounded: every workload has a fixed duration
# and every wait a bounded count. It asserts nothing about timing: numbers are reported,
# not judged, and it is not part of `make check`.
#
# Usage: bench/run.sh BUILD_DIR
#   BENCH_QUICK=1              ~3-minute smoke run (shorter workloads, 1000 idle connections)
#   BENCH_ONLY=bulk,connrate   a subset of: bulk connrate tls resume idle sni start
#   BENCH_PEERS=tcpmap,haproxy a subset of peers (direct is always kept for the ratios);
#                              uring-epoll, uring-ring, uring-epoll-copy and uring-ring-copy
#                              (bulk and connrate) only when named
#   BENCH_IDLE_N=5000          idle connections held per peer
#   BENCH_ROUNDS=5             rounds of connrate, tls, resume, sni and start
#   BENCH_RESUME_TLS="1.3 1.2" the TLS versions of resume, each a run of its own per round
#   BENCH_BULK_ROUNDS=3        rounds of bulk
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${1:-build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
TCPMAPD=$BUILD/tcpmapd
OUT=${BENCH_OUT:-$HERE/out} # BENCH_OUT: compare.sh keeps each run apart
WORK=$OUT/work
TSV=$OUT/results.tsv
ROUNDS_TSV=$OUT/rounds.tsv # workloads run in rounds: one row per round
META=$OUT/meta.txt
TOOL=$HERE/lib/benchtool.py
PEERS_DIR=$HERE/peers
PROXYD=/lib/systemd/systemd-socket-proxyd
[ -x "$PROXYD" ] || PROXYD=/usr/lib/systemd/systemd-socket-proxyd

QUICK=${BENCH_QUICK:-0}
ONLY=${BENCH_ONLY:-bulk,connrate,tls,resume,idle,sni,start}
PEERS_ONLY=${BENCH_PEERS:-}
# connrate, tls, resume, sni and start run in ROUNDS rounds (bulk, the longest, in
# BULK_ROUNDS), the peers in a rotated order each round, and report each metric's median over
# the rounds (resume's resumed_pct_*: the lowest round's): this
# machine's speed drifts (bench/README.md), a peer always measured last would carry the drift
# at the end alone, and one bulk stream's speed hangs on where the scheduler puts its three
# processes.
if [ "$QUICK" = 1 ]; then
	T_BULK=2 T_WRK=2 T_TLS=2 IDLE_N=${BENCH_IDLE_N:-1000} IDLE_MAX=0 SPAWN_N=50 ROUNDS=1
	BULK_ROUNDS=1
else
	T_BULK=3 T_WRK=3 T_TLS=3 IDLE_N=${BENCH_IDLE_N:-5000} IDLE_MAX=9000 SPAWN_N=100 ROUNDS=5
	BULK_ROUNDS=3
fi
ROUNDS=${BENCH_ROUNDS:-$ROUNDS}
RESUME_TLS=${BENCH_RESUME_TLS:-1.3 1.2}
BULK_ROUNDS=${BENCH_BULK_ROUNDS:-$BULK_ROUNDS}
CLK_TCK=$(getconf CLK_TCK)

ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ -x "$TCPMAPD" ] || die "no tcpmapd at $TCPMAPD (run make first)"
for t in iperf3 wrk haproxy nginx python3 openssl ss; do
	command -v "$t" >/dev/null || die "$t is not installed (see bench/README.md)"
done

rm -rf "$WORK"
mkdir -p "$WORK" "$OUT"
printf 'workload\tpeer\tmetric\tvalue\tunit\n' >"$TSV"
: >"$ROUNDS_TSV"
: >"$META"

# ---- processes: everything started here is recorded and stopped by PID ------------------

ALL_PIDS=()
# shellcheck source=../tests/lib/pids.bash
. "$ROOT/tests/lib/pids.bash"
children_of() { pgrep -P "$1" 2>/dev/null || true; }

# alive PID: running and not a zombie waiting for us to reap it.
alive() {
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ]
}

# stop_tree PID: SIGTERM, a bounded wait, then SIGKILL for whatever of its tree is left
# (per-connection children, nginx workers).
stop_tree() {
	local pid=$1 c i
	# gone, or its PID reused by a process of another session (tests/lib/pids.bash)
	pid_ours "$pid" && alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for ((i = 0; i < 30; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	for c in $(children_of "$pid"); do kill -KILL "$c" 2>/dev/null; done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

cleanup() {
	local p
	stop_peer
	for p in "${ALL_PIDS[@]}"; do stop_tree "$p"; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/ports.sh
. "$HERE/lib/ports.sh"

fill() { # fill TEMPLATE OUTFILE KEY=VALUE...
	local tmpl=$1 out=$2 args=() kv
	shift 2
	for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
	sed "${args[@]}" "$tmpl" >"$out"
}

# result WORKLOAD PEER METRIC VALUE UNIT: into the TSV, or, during rounds, into the
# rounds' TSV, whose medians go to the TSV afterwards (medians).
IN_ROUNDS=0
result() {
	printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$([ "$IN_ROUNDS" = 1 ] && echo "$ROUNDS_TSV" || echo "$TSV")"
	printf '  %-9s %-16s %-22s %12s %s\n' "$@" >&2
}

# medians WORKLOAD: each (peer, metric) of WORKLOAD in the rounds' TSV, its median to the TSV;
# for resumed_pct_* the lowest round's, so a round that did not resume is never hidden by the
# others (report.py flags the peer).
medians() {
	python3 - "$1" "$ROUNDS_TSV" >>"$TSV" <<'EOF'
import statistics, sys
from collections import OrderedDict
w, path = sys.argv[1], sys.argv[2]
vals, units = OrderedDict(), {}
with open(path) as f:
    for line in f:
        ww, p, m, v, u = line.rstrip("\n").split("\t")
        if ww == w:
            vals.setdefault((p, m), []).append(float(v))
            units[(p, m)] = u
for (p, m), vs in vals.items():
    v = min(vs) if m.startswith("resumed_pct") else statistics.median(vs)
    print("%s\t%s\t%s\t%s\t%s" % (w, p, m, round(v, 2), units[(p, m)]))
EOF
}

# ---- fixtures: certificate, upstreams ----------------------------------------------------

SECRETS=$WORK/secrets
mkdir -p "$SECRETS/bench"
CRT=$SECRETS/bench/tls.crt
KEY=$SECRETS/bench/tls.key
PEM=$WORK/bench.pem
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
	-keyout "$KEY" -out "$CRT" 2>/dev/null || die "openssl could not make the certificate"
cat "$CRT" "$KEY" >"$PEM"

# The resume workload's ticket keys, one set per run, each peer's in its own format:
# haproxy three base64 lines of 80 bytes (AES-256; it wants at least three), nginx 80 raw
# bytes, stunnel a hex AES key and a hex HMAC key. tcpmapd makes its own in --runtime-dir.
TICKETS=$WORK/tickets
mkdir -p "$TICKETS"
for i in 1 2 3; do openssl rand 80 | base64 -w0 && echo; done >"$TICKETS/haproxy.keys"
openssl rand 80 >"$TICKETS/nginx.key"
TICKET_AES=$(openssl rand -hex 32) TICKET_MAC=$(openssl rand -hex 32)
chmod 600 "$TICKETS"/*

UP_HTTP=$(pick_port) UP_HTTPS=$(pick_port)
mkdir -p "$WORK/upstream"
fill "$PEERS_DIR/nginx-upstream.conf" "$WORK/upstream/nginx.conf" DIR="$WORK/upstream" \
	HTTP="$UP_HTTP" HTTPS="$UP_HTTPS" CRT="$CRT" KEY="$KEY" \
	BODY="$(head -c 1024 /dev/zero | tr '\0' b)"
nginx -p "$WORK/upstream" -c "$WORK/upstream/nginx.conf" -e stderr -g 'daemon off;' \
	</dev/null >"$WORK/upstream/log" 2>&1 &
ALL_PIDS+=($!)
wait_listening "$UP_HTTP" && wait_listening "$UP_HTTPS" || {
	cat "$WORK/upstream/log" >&2
	die "upstream nginx did not start"
}

UP_IPERF=$(pick_port)
iperf3 -s -p "$UP_IPERF" -B 127.0.0.1 </dev/null >"$WORK/iperf3.log" 2>&1 &
ALL_PIDS+=($!)
UP_SINK=$(pick_port)
python3 "$TOOL" sink --port "$UP_SINK" </dev/null >"$WORK/sink.log" 2>&1 &
ALL_PIDS+=($!)
UP_ECHO=$(pick_port)
python3 "$TOOL" echo --port "$UP_ECHO" </dev/null >"$WORK/echo.log" 2>&1 &
ALL_PIDS+=($!)
for p in "$UP_IPERF" "$UP_SINK" "$UP_ECHO"; do wait_listening "$p" || die "an upstream did not start on $p"; done

# ---- peers ------------------------------------------------------------------------------

PEER_PID=""
PEER_LOG=""

# start_peer NAME KIND LISTEN TARGET: KIND is tcp, tls, resume or sni. Sets PEER_PID (the
# process whose tree is measured and stopped). "direct" starts nothing: LISTEN is TARGET.
start_peer() {
	local name=$1 kind=$2 listen=$3 target=$4 dir
	dir=$WORK/$name-$kind-$listen
	mkdir -p "$dir"
	PEER_LOG=$dir/log
	PEER_PID=""
	case $name in
	direct) return 0 ;;
	haproxy | haproxy-splice)
		local splice=""
		[ "$name" = haproxy-splice ] && splice="option splice-auto"
		fill "$PEERS_DIR/haproxy-$kind.cfg" "$dir/haproxy.cfg" LISTEN="$listen" \
			TARGET="$target" PEM="$PEM" SPLICE="$splice" TICKETS="$TICKETS/haproxy.keys"
		haproxy -db -f "$dir/haproxy.cfg" </dev/null >"$PEER_LOG" 2>&1 &
		;;
	nginx)
		local tmpl=stream
		[ "$kind" != tcp ] && tmpl=$kind
		fill "$PEERS_DIR/nginx-$tmpl.conf" "$dir/nginx.conf" LISTEN="$listen" \
			TARGET="$target" CRT="$CRT" KEY="$KEY" DIR="$dir" TICKETS="$TICKETS/nginx.key"
		nginx -p "$dir" -c "$dir/nginx.conf" -e stderr -g 'daemon off;' </dev/null >"$PEER_LOG" 2>&1 &
		;;
	stunnel)
		local conf=$PEERS_DIR/stunnel-$kind.conf
		[ -f "$conf" ] || conf=$PEERS_DIR/stunnel.conf
		fill "$conf" "$dir/stunnel.conf" LISTEN="$listen" TARGET="$target" \
			CRT="$CRT" KEY="$KEY" DIR="$dir" TICKET_AES="$TICKET_AES" TICKET_MAC="$TICKET_MAC"
		stunnel "$dir/stunnel.conf" </dev/null >"$PEER_LOG" 2>&1 &
		;;
	socket-proxyd)
		systemd-socket-activate -l "127.0.0.1:$listen" "$PROXYD" --connections-max=20000 \
			"127.0.0.1:$target" </dev/null >"$PEER_LOG" 2>&1 &
		;;
	socat)
		socat "TCP-LISTEN:$listen,bind=127.0.0.1,reuseaddr,fork,backlog=1024" \
			"TCP:127.0.0.1:$target" </dev/null >"$PEER_LOG" 2>&1 &
		;;
	uring-epoll | uring-ring | uring-epoll-copy | uring-ring-copy)
		# issue 19's measuring device (bench/uring/README.md), built on first use
		local relay=$OUT/uring/uring-relay
		if ! make -s -C "$HERE/uring" OUT="$OUT/uring" >"$dir/build.log" 2>&1; then
			note "$name: bench/uring does not build (liburing-dev missing? scripts/deps.sh bench): skipped"
			return 1
		fi
		local args=(--mode epoll)
		case $name in uring-ring*) args=(--mode uring) ;; esac
		case $name in *-copy) args+=(--copy) ;; esac
		"$relay" "${args[@]}" --workers 2 "$listen" "$target" </dev/null >"$PEER_LOG" 2>&1 &
		;;
	tcpmap | tcpmap-inetd | tcpmap-fork)
		mkdir -p "$dir/run"
		fill "$PEERS_DIR/tcpmap-$kind.yaml" "$dir/tcpmap.yaml" LISTEN="$listen" TARGET="$target"
		# the third process model: the threaded dispatcher forks a relay per connection
		[ "$name" = tcpmap-fork ] && echo "  per_connection_process: true" >>"$dir/tcpmap.yaml"
		if [ "$name" != tcpmap-inetd ]; then
			"$TCPMAPD" --config "$dir/tcpmap.yaml" --secrets-dir "$SECRETS" --runtime-dir "$dir/run" \
				--log-target stderr --workers 2 </dev/null >"$PEER_LOG" 2>&1 &
		else
			systemd-socket-activate --accept -l "127.0.0.1:$listen" "$TCPMAPD" \
				--config "$dir/tcpmap.yaml" --secrets-dir "$SECRETS" --runtime-dir "$dir/run" \
				--log-target stderr </dev/null >"$PEER_LOG" 2>&1 &
		fi
		;;
	*) die "unknown peer $name" ;;
	esac
	PEER_PID=$!
	ALL_PIDS+=("$PEER_PID")
	if ! wait_listening "$listen" || ! kill -0 "$PEER_PID" 2>/dev/null; then
		note "$name ($kind) did not start; its log:"
		sed 's/^/    /' "$PEER_LOG" >&2
		stop_peer
		return 1
	fi
	sleep 0.3 # let nginx's workers and tcpmapd's threads come up after the listen
	return 0
}

stop_peer() {
	[ -n "${PEER_PID:-}" ] && stop_tree "$PEER_PID"
	PEER_PID=""
}

# The peer's process tree: the root and its live descendants (nginx workers, per-connection
# children). Per-connection children that have exited are in the root's cutime/cstime.
peer_pids() {
	local p=$1 c
	echo "$p"
	for c in $(children_of "$p"); do peer_pids "$c"; done
}

# peer_cpu_ticks: utime+stime+cutime+cstime summed over the peer's tree.
peer_cpu_ticks() {
	[ -n "$PEER_PID" ] || { echo 0; return; }
	local sum=0 p v
	for p in $(peer_pids "$PEER_PID"); do
		# fields after "(comm)": state is $1, utime is $12 .. cstime $15
		v=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12+$13+$14+$15}')
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

peer_rss_kib() {
	[ -n "$PEER_PID" ] || { echo 0; return; }
	local sum=0 p v
	for p in $(peer_pids "$PEER_PID"); do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}

kernel_kib() {
	awk '/^(Slab|KernelStack|PageTables):/ {s += $2} END {print s}' /proc/meminfo
}

calc() { python3 -c "print($1)"; }

want() { [[ ",$ONLY," == *",$1,"* ]]; }
peer_wanted() {
	[ "$1" = direct ] && return 0
	# the io_uring prototype's two modes are a measuring device, run only when asked for
	case $1 in uring-*) [[ ",$PEERS_ONLY," == *",$1,"* ]]; return ;; esac
	[ -z "$PEERS_ONLY" ] && return 0
	[[ ",$PEERS_ONLY," == *",$1,"* ]]
}
has_stunnel() { command -v stunnel >/dev/null; }

# ---- workloads ----------------------------------------------------------------------------

bulk() {
	local peer=$1 port c0 c1 json gbit bytes dir flag
	echo "== bulk: $peer" >&2
	port=$UP_IPERF
	if [ "$peer" != direct ]; then
		port=$(pick_port)
		start_peer "$peer" tcp "$port" "$UP_IPERF" || return 0
	fi
	for dir in fwd rev; do
		flag=""
		[ $dir = rev ] && flag=-R
		c0=$(peer_cpu_ticks)
		json=$(timeout $((T_BULK + 20)) iperf3 -c 127.0.0.1 -p "$port" -t "$T_BULK" $flag -J 2>/dev/null)
		sleep 0.2
		c1=$(peer_cpu_ticks)
		read -r gbit bytes < <(python3 -c '
import json, sys
try:
    e = json.loads(sys.stdin.read())["end"]["sum_received"]
    print("%.2f %d" % (e["bits_per_second"] / 1e9, e["bytes"]))
except Exception:
    print("0 0")' <<<"$json")
		if [ "$bytes" = 0 ]; then
			note "iperf3 through $peer ($dir) failed"
			continue
		fi
		result bulk "$peer" "gbit_$dir" "$gbit" Gbit/s
		[ "$peer" != direct ] &&
			result bulk "$peer" "cpu_ms_per_gib_$dir" \
				"$(calc "round(($c1 - $c0) * 1000 / $CLK_TCK / ($bytes / 2**30), 1)")" ms/GiB
	done
	stop_peer
}

connrate() {
	local peer=$1 port c0 c1 out rps p99 reqs errs
	echo "== connrate: $peer" >&2
	port=$UP_HTTP
	if [ "$peer" != direct ]; then
		port=$(pick_port)
		start_peer "$peer" tcp "$port" "$UP_HTTP" || return 0
	fi
	c0=$(peer_cpu_ticks)
	out=$(timeout $((T_WRK + 20)) wrk -t2 -c50 -d"${T_WRK}s" --latency -H 'Connection: close' \
		"http://127.0.0.1:$port/" 2>&1)
	sleep 0.5 # per-connection children finish and are reaped into cutime
	c1=$(peer_cpu_ticks)
	echo "$out" >"$WORK/wrk-$peer.txt"
	rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
	reqs=$(awk '/requests in/ {print $1}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
	if [ -z "$rps" ] || [ -z "$reqs" ] || [ "$reqs" = 0 ]; then
		note "wrk through $peer failed: $out"
		stop_peer
		return 0
	fi
	[ -n "$errs" ] && note "wrk through $peer: $errs"
	# p99 comes as 6.61ms, 1.02s or 850.00us
	p99=$(python3 -c '
import re, sys
m = re.match(r"([0-9.]+)(us|ms|s)$", sys.argv[1])
print(round(float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)], 2) if m else 0)' "$p99")
	result connrate "$peer" conn_per_s "$(calc "round($rps)")" conn/s
	result connrate "$peer" p99_ms "$p99" ms
	[ "$peer" != direct ] &&
		result connrate "$peer" cpu_us_per_conn "$(calc "round(($c1 - $c0) * 1e6 / $CLK_TCK / $reqs, 1)")" us
	stop_peer
}

# handshakes WORKLOAD PEER TARGET: the tls-hs loops through PEER's WORKLOAD config toward
# TARGET (direct: the upstream's own TLS port), recording hs/s and CPU per handshake, then
# the peer is stopped. Returns 1 when the peer did not start.
handshakes() {
	local w=$1 peer=$2 target=$3 port c0 c1 rate ok err
	echo "== $w: $peer" >&2
	if [ "$peer" = direct ]; then
		port=$UP_HTTPS
	else
		port=$(pick_port)
		start_peer "$peer" "$w" "$port" "$target" || return 1
	fi
	c0=$(peer_cpu_ticks)
	read -r rate ok err < <(timeout $((T_TLS + 30)) python3 "$TOOL" tls-hs --port "$port" --seconds "$T_TLS" --loops 2)
	c1=$(peer_cpu_ticks)
	[ "${err:-0}" != 0 ] && note "$w through $peer: $err failed handshakes or requests"
	result "$w" "$peer" hs_per_s "${rate:-0}" hs/s
	[ "$peer" != direct ] && [ "${ok:-0}" -gt 0 ] &&
		result "$w" "$peer" cpu_us_per_hs "$(calc "round(($c1 - $c0) * 1e6 / $CLK_TCK / $ok, 1)")" us
	stop_peer
}

tls() {
	local peer=$1 port gbit bytes
	handshakes tls "$peer" "$UP_HTTP" || return 0
	[ "$peer" = direct ] && return 0 # the upstream nginx has no upload sink

	port=$(pick_port)
	start_peer "$peer" tls "$port" "$UP_SINK" || return 0
	read -r gbit bytes < <(timeout $((T_TLS + 30)) python3 "$TOOL" tls-bulk --port "$port" --seconds "$T_TLS")
	result tls "$peer" bulk_gbit "${gbit:-0}" Gbit/s
	stop_peer
}

idle() {
	local peer=$1 n=${2:-$IDLE_N} tag=${3:-} port r0 r1 k0 k1 held line
	echo "== idle: $peer ($n connections)" >&2
	port=$UP_ECHO
	if [ "$peer" != direct ]; then
		port=$(pick_port)
		start_peer "$peer" tcp "$port" "$UP_ECHO" || return 0
	fi
	sleep 0.5
	r0=$(peer_rss_kib)
	k0=$(kernel_kib)
	coproc IDLE { exec python3 "$TOOL" idle --port "$port" --count "$n" --seconds 90; }
	local idle_pid=$IDLE_PID
	ALL_PIDS+=("$idle_pid")
	held=0
	if read -r -t 120 line <&"${IDLE[0]}"; then held=${line#held }; fi
	sleep 1 # let the proxy settle its buffers
	r1=$(peer_rss_kib)
	k1=$(kernel_kib)
	echo >&"${IDLE[1]}" 2>/dev/null
	if [ -z "$tag" ]; then
		result idle "$peer" held "$held" conns
		if [ "$held" -gt 0 ]; then
			[ "$peer" != direct ] && result idle "$peer" rss_kib_per_conn "$(calc "round(($r1 - $r0) / $held, 2)")" KiB
			result idle "$peer" kernel_kib_per_conn "$(calc "round(($k1 - $k0) / $held, 2)")" KiB
		fi
	else
		result idle "$peer" "held_of_$n" "$held" conns
	fi
	stop_tree "$idle_pid"
	stop_peer
	sleep 1 # closed sockets leave TIME_WAIT and slab behind; let the next baseline settle
}

sni() { handshakes sni "$1" "$UP_HTTPS" || true; }

# resume PEER: TLS termination as in tls, but with session tickets under keys set in the
# peer's config (peers/*-resume.*; tcpmapd's own shared keys). For each version in
# RESUME_TLS (first 1.3 or 1.2 alternately by round), on the same peer process:
# `benchtool.py tls-resume`, 2 loops, each one full handshake and then new TCP connections
# resuming with the ticket, a small request and answer each. Records hs/s, CPU per handshake
# and the share of handshakes that did resume: a run below 99 % is noted here and flagged in
# the table (report.py), never counted as if it had resumed.
resume() {
	local peer=$1 port versions=() v tag c0 c1 rate ok resumed err pct
	echo "== resume: $peer" >&2
	if [ "$peer" = direct ]; then
		port=$UP_HTTPS
	else
		port=$(pick_port)
		start_peer "$peer" resume "$port" "$UP_HTTP" || return 0
	fi
	read -ra versions <<<"$RESUME_TLS"
	if ((r % 2)); then # the round's number, from the main loop
		local reversed=()
		for v in "${versions[@]}"; do reversed=("$v" "${reversed[@]}"); done
		versions=("${reversed[@]}")
	fi
	for v in "${versions[@]}"; do
		tag=tls${v/./}
		rate=0 ok=0 resumed=0 err=0
		c0=$(peer_cpu_ticks)
		read -r rate ok resumed err < <(timeout $((T_TLS + 30)) python3 "$TOOL" tls-resume \
			--port "$port" --tls "$v" --seconds "$T_TLS" --loops 2)
		c1=$(peer_cpu_ticks)
		[ "${err:-0}" != 0 ] && note "resume through $peer (TLS $v): $err failed handshakes or requests"
		pct=0
		[ "${ok:-0}" -gt 0 ] && pct=$(calc "round(${resumed:-0} * 100 / $ok, 1)")
		python3 -c "import sys; sys.exit(0 if $pct >= 99 else 1)" ||
			note "resume through $peer (TLS $v): only $pct % of ${ok:-0} handshakes resumed"
		result resume "$peer" "hs_per_s_$tag" "${rate:-0}" hs/s
		result resume "$peer" "resumed_pct_$tag" "$pct" %
		[ "$peer" != direct ] && [ "${ok:-0}" -gt 0 ] &&
			result resume "$peer" "cpu_us_per_hs_$tag" "$(calc "round(($c1 - $c0) * 1e6 / $CLK_TCK / $ok, 1)")" us
	done
	stop_peer
}

# The two no-ops, built on their first round.
build_noop() {
	printf 'int main(void) { return 0; }\n' >"$WORK/noop.c"
	case $1 in
	noop-static)
		cc -O2 -static -o "$WORK/$1" "$WORK/noop.c" 2>/dev/null && return 0
		note "no static libc: skipping the fork+exec floor"
		;;
	noop-libs)
		cc -O2 -o "$WORK/$1" "$WORK/noop.c" -Wl,--no-as-needed -lsystemd -lyaml 2>/dev/null &&
			return 0
		note "cannot link a no-op with libsystemd and libyaml: skipping that floor"
		;;
	fork-only)
		cc -O2 -static -o "$WORK/$1" "$HERE/lib/forkfloor.c" 2>/dev/null && return 0
		note "no static libc: skipping the fork floor"
		;;
	esac
	return 1
}

# What one per-connection process costs, apart: the floor of any fork+exec (a static
# no-op); the floor of any program on tcpmapd's run-time libraries (a no-op linked with
# libsystemd and libyaml: their loading and relocation, page faults mostly; why those two,
# and OpenSSL only in a module: docs/ARCHITECTURE.md, 'Why the TLS module is loaded
# lazily'); tcpmapd's libraries (--version); and one whole tcpmapd --inetd: libraries,
# config load, breaker table, the connection handed in on stdin (its client already gone,
# its upstream refusing), the log line and exit. Wall time per start-to-exit, median of N.
start() {
	local peer=$1 argv=() extra=() med mean n
	echo "== start: $peer" >&2
	case $peer in
	noop-static | noop-libs)
		[ -x "$WORK/$peer" ] || build_noop "$peer" || return 0
		argv=("$WORK/$peer")
		;;
	fork-only)
		# fork+exit+wait, no exec: CPU per process, what per_connection_process pays at
		# least for each connection (bench/lib/report.py sets it against its budget)
		[ -x "$WORK/$peer" ] || build_noop "$peer" || return 0
		local cpu wall
		read -r cpu wall _ < <("$WORK/$peer" $((SPAWN_N * 20)))
		[ -n "${cpu:-}" ] || { note "start: fork-only did not run"; return 0; }
		result start "$peer" cpu_us "$cpu" us
		result start "$peer" wall_us "$wall" us
		return 0
		;;
	tcpmapd-version) argv=("$TCPMAPD" --version) ;;
	tcpmapd-inetd)
		local port closed
		port=$(pick_port) && closed=$(pick_port)
		mkdir -p "$WORK/start-run"
		fill "$PEERS_DIR/tcpmap-tcp.yaml" "$WORK/start.yaml" LISTEN="$port" TARGET="$closed"
		argv=("$TCPMAPD" --inetd --config "$WORK/start.yaml" --runtime-dir "$WORK/start-run"
			--log-target stderr)
		extra=(--stdin-tcp "$port")
		;;
	esac
	read -r med mean n < <(timeout 120 python3 "$TOOL" spawn --n "$SPAWN_N" "${extra[@]}" -- "${argv[@]}")
	[ -n "${med:-}" ] || { note "start: $peer did not run"; return 0; }
	result start "$peer" spawn_us "$med" us
}

# ---- the run ------------------------------------------------------------------------------

{
	echo "date: $(date -u +%FT%TZ)"
	echo "host: $(uname -srm), nproc $(nproc)"
	echo "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "tcpmapd: $("$TCPMAPD" --version 2>/dev/null) ($TCPMAPD)"
	echo "peers: $(haproxy -v 2>/dev/null | head -1 | cut -d' ' -f1-3); $(nginx -v 2>&1); $(iperf3 --version 2>/dev/null | head -1 | cut -d' ' -f1-2); $(wrk --version 2>&1 | head -1 | cut -d' ' -f1-2)$(has_stunnel && echo "; $(stunnel -version 2>&1 | grep -m1 -o 'stunnel [0-9.]*')")"
	echo "mode: $([ "$QUICK" = 1 ] && echo quick || echo full); workloads: $ONLY"
} >>"$META"
sed 's/^/bench: /' "$META" >&2

START=$SECONDS
TCP_PEERS="direct haproxy haproxy-splice nginx socket-proxyd socat tcpmap tcpmap-fork tcpmap-inetd"
BULK_CONN_PEERS="$TCP_PEERS uring-epoll uring-ring uring-epoll-copy uring-ring-copy"
TLS_PEERS="direct haproxy nginx $(has_stunnel && echo stunnel) tcpmap"
RESUME_PEERS=$TLS_PEERS
IDLE_PEERS="direct haproxy haproxy-splice nginx socket-proxyd tcpmap"
SNI_PEERS="direct haproxy nginx tcpmap"
START_PEERS="noop-static noop-libs fork-only tcpmapd-version tcpmapd-inetd"

for w in bulk connrate tls resume idle sni start; do
	want $w || continue
	case $w in
	bulk | connrate) list=$BULK_CONN_PEERS ;;
	tls) list=$TLS_PEERS ;;
	resume) list=$RESUME_PEERS ;;
	idle) list=$IDLE_PEERS ;;
	sni) list=$SNI_PEERS ;;
	start) list=$START_PEERS ;;
	esac
	rounds=1
	case $w in
	connrate | tls | resume | sni | start) rounds=$ROUNDS ;;
	bulk) rounds=$BULK_ROUNDS ;;
	esac
	[ "$rounds" -gt 1 ] && IN_ROUNDS=1
	read -ra peers <<<"$list"
	for ((r = 0; r < rounds; r++)); do
		[ "$rounds" -gt 1 ] && note "$w: round $((r + 1)) of $rounds"
		for ((i = 0; i < ${#peers[@]}; i++)); do
			p=${peers[$(((i + r) % ${#peers[@]}))]}
			[ $w = start ] || peer_wanted "$p" || continue
			$w "$p"
		done
	done
	if [ "$IN_ROUNDS" = 1 ]; then
		IN_ROUNDS=0
		medians $w
	fi
	# Issue 6 asks for 9 000 held connections under the 20 000 open-file limit.
	if [ $w = idle ] && [ "$IDLE_MAX" -gt "$IDLE_N" ] && peer_wanted tcpmap; then
		idle tcpmap "$IDLE_MAX" max
	fi
done

echo "load at end: $(cut -d' ' -f1-3 /proc/loadavg); bench took $((SECONDS - START)) s" >>"$META"
python3 "$HERE/lib/report.py" "$TSV" "$META" "$ROUNDS_TSV" | tee "$OUT/report.txt"
