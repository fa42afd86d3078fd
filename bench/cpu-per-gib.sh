#!/bin/bash
# cpu-per-gib.sh — what one GiB of cleartext bulk relay costs tcpmapd and
# systemd-socket-proxyd, in measures the machine's load moves little: CPU time of the proxy
# process (user and system), its context switches, and its system calls by kind.
#
#   bench/cpu-per-gib.sh BUILD_DIR [GIB] [ROUNDS]     (default 2 GiB, 3 rounds)
#   CPG_PEERS="tcpmap socket-proxyd" CPG_TRACE=0 ...  (peers; 0: no syscall-counting pass)
#   CPG_OLD=OLD_BUILD_DIR CPG_PEERS="tcpmap-old tcpmap socket-proxyd" ...  (before/after)
#
# Each round moves exactly GIB GiB with `iperf3 -n` through each proxy, forward (client to
# upstream) and reverse (-R), the peers in alternating order. An untraced pass gives CPU
# and context switches; a second pass under `perf stat -e 'syscalls:sys_enter_*'` gives the
# system calls (tracing costs CPU of its own, so it never shares a pass with the CPU
# count). The medians over the rounds are printed. Loopback only; every process started
# here is stopped by its PID. Nothing is asserted: this is a measuring tool.
set -euo pipefail

BUILD=${1:?usage: bench/cpu-per-gib.sh BUILD_DIR [GIB] [ROUNDS]}
GIB=${2:-2}
ROUNDS=${3:-3}
PEERS=${CPG_PEERS:-tcpmap socket-proxyd}
TRACE=${CPG_TRACE:-1}
TCPMAPD=$(realpath "$BUILD/tcpmapd")
PROXYD=/lib/systemd/systemd-socket-proxyd
[ -x "$PROXYD" ] || PROXYD=/usr/lib/systemd/systemd-socket-proxyd
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d /tmp/cpu-per-gib.XXXXXX)
CLK_TCK=$(getconf CLK_TCK)
die() { echo "cpu-per-gib: $*" >&2; exit 1; }
[ -x "$TCPMAPD" ] || die "no tcpmapd in $BUILD"
for t in iperf3 perf python3 ss systemd-socket-activate; do
	command -v $t >/dev/null || die "$t is not installed"
done

PIDS=()
alive() {
	local st
	st=$(sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1)
	[ -n "$st" ] && [ "$st" != Z ]
}
stop() { # stop PID: TERM, a bounded wait, KILL
	local i
	kill -TERM "$1" 2>/dev/null || true
	for ((i = 0; i < 30; i++)); do alive "$1" || break; sleep 0.1; done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
cleanup() {
	local p
	for p in "${PIDS[@]}"; do stop "$p"; done
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=lib/ports.sh
. "$HERE/lib/ports.sh"

UP=$(pick_port)
iperf3 -s -p "$UP" -B 127.0.0.1 </dev/null >"$WORK/iperf3.log" 2>&1 &
PIDS+=($!)
wait_listening "$UP" || die "iperf3 -s did not start"

declare -A PORT PID
for peer in $PEERS; do
	port=$(pick_port)
	case $peer in
	tcpmap | tcpmap-old)
		bin=$TCPMAPD
		[ $peer = tcpmap-old ] && bin=$(realpath "${CPG_OLD:?CPG_OLD names the old build}/tcpmapd")
		mkdir -p "$WORK/$peer/run" "$WORK/secrets"
		sed -e "s|@LISTEN@|$port|" -e "s|@TARGET@|$UP|" "$HERE/peers/tcpmap-tcp.yaml" \
			>"$WORK/$peer/tcpmap.yaml"
		"$bin" --config "$WORK/$peer/tcpmap.yaml" --secrets-dir "$WORK/secrets" \
			--runtime-dir "$WORK/$peer/run" --log-target stderr --workers 2 \
			</dev/null >"$WORK/$peer/log" 2>&1 &
		;;
	socket-proxyd)
		# without --accept it execs the proxy: the PID is socket-proxyd's
		systemd-socket-activate -l "127.0.0.1:$port" "$PROXYD" "127.0.0.1:$UP" \
			</dev/null >"$WORK/socket-proxyd.log" 2>&1 &
		;;
	*) die "unknown peer $peer" ;;
	esac
	PIDS+=($!)
	PID[$peer]=$!
	PORT[$peer]=$port
	wait_listening "$port" || die "$peer did not start"
done
sleep 0.3

# utime stime (ticks) and voluntary nonvoluntary context switches over all threads
sample() {
	local p=$1 t v=0 n=0 a b
	read -r a b < <(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12, $13}')
	for t in /proc/"$p"/task/*/status; do
		v=$((v + $(awk '/^voluntary_ctxt_switches/ {print $2}' "$t" 2>/dev/null || echo 0)))
		n=$((n + $(awk '/^nonvoluntary_ctxt_switches/ {print $2}' "$t" 2>/dev/null || echo 0)))
	done
	echo "$a $b $v $n"
}

# transfer PEER DIR: moves GIB GiB; prints the bytes received. `iperf3 -s` serves one test
# at a time and may still be closing the last one ("the server is busy"): a few tries.
transfer() {
	local flag="" try bytes
	[ "$2" = rev ] && flag=-R
	for try in 1 2 3; do
		bytes=$(iperf3 -c 127.0.0.1 -p "${PORT[$1]}" -n "${GIB}G" $flag -J 2>/dev/null |
			python3 -c 'import json,sys; print(json.load(sys.stdin)["end"]["sum_received"]["bytes"])' \
				2>/dev/null) && { echo "$bytes"; return 0; }
		sleep 1
	done
	die "iperf3 through $1 ($2) failed 3 times"
}

ROWS=$WORK/rows.tsv
: >"$ROWS"
row() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$ROWS"; }

measure_cpu() { # PEER DIR
	local s0 s1 bytes
	s0=$(sample "${PID[$1]}")
	bytes=$(transfer "$1" "$2")
	sleep 0.2
	s1=$(sample "${PID[$1]}")
	python3 - "$1" "$2" "$bytes" "$CLK_TCK" "$s0" "$s1" >>"$ROWS" <<'EOF'
import sys
peer, d, nbytes, tck = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
a = [int(x) for x in sys.argv[5].split()]
b = [int(x) for x in sys.argv[6].split()]
gib = nbytes / 2**30
dl = [y - x for x, y in zip(a, b)]
for name, v in (("gib", gib), ("user_ms", dl[0] * 1000 / tck / gib),
                ("sys_ms", dl[1] * 1000 / tck / gib), ("cpu_ms", (dl[0] + dl[1]) * 1000 / tck / gib),
                ("ctxsw_vol", dl[2] / gib), ("ctxsw_invol", dl[3] / gib)):
    print("%s\t%s\t%s\t%.6g" % (peer, d, name, v))
EOF
}

# The calls a relay makes, or could: all ~350 tracepoints at once take perf 15 s to open.
SYSCALL_EVENTS=()
for s in splice read write recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_pwait2 \
	epoll_ctl poll ppoll timerfd_settime timerfd_gettime clock_gettime gettid getpid futex \
	close openat newfstatat fcntl pipe2 shutdown accept4 connect socket ioctl getsockopt \
	setsockopt madvise mmap munmap; do
	SYSCALL_EVENTS+=(-e "syscalls:sys_enter_$s")
done

measure_syscalls() { # PEER DIR
	local out=$WORK/perf.$1.$2 ppid bytes
	perf stat -x, -o "$out" -p "${PID[$1]}" "${SYSCALL_EVENTS[@]}" \
		-e syscalls:sys_exit_splice --filter 'ret == -11' >/dev/null 2>&1 &
	ppid=$!
	sleep 0.3
	bytes=$(transfer "$1" "$2")
	kill -INT "$ppid"
	wait "$ppid" || true
	python3 - "$1" "$2" "$bytes" "$out" >>"$ROWS" <<'EOF'
import sys
peer, d, nbytes, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
gib = nbytes / 2**30
counts = {}
for line in open(path):
    f = line.strip().split(",")
    if len(f) < 3 or not f[0].replace(".", "").isdigit():
        continue
    ev = f[2]
    name = ev.replace("syscalls:sys_enter_", "sc_")
    if ev == "syscalls:sys_exit_splice":
        name = "splice_eagain"
    counts[name] = counts.get(name, 0) + float(f[0])
total = sum(v for k, v in counts.items() if k.startswith("sc_"))
for k, v in counts.items():
    if v:
        print("%s\t%s\t%s\t%.6g" % (peer, d, k, v / gib))
print("%s\t%s\t%s\t%.6g" % (peer, d, "sc_total", total / gib))
splices = counts.get("sc_splice", 0) - counts.get("splice_eagain", 0)
if splices:
    # each byte is spliced twice: socket -> pipe, pipe -> socket
    print("%s\t%s\t%s\t%.6g" % (peer, d, "kib_per_splice", 2 * nbytes / splices / 1024))
EOF
}

set -- $PEERS
for ((r = 0; r < ROUNDS; r++)); do
	order="$*"
	((r % 2)) && order=$(echo "$*" | tr ' ' '\n' | tac | tr '\n' ' ')
	for peer in $order; do
		for d in fwd rev; do
			echo "round $((r + 1)): $peer $d" >&2
			measure_cpu "$peer" "$d"
			[ "$TRACE" = 1 ] && measure_syscalls "$peer" "$d"
		done
	done
done

python3 - "$ROWS" "$PEERS" <<'EOF'
import statistics, sys
from collections import OrderedDict
rows, peers = sys.argv[1], sys.argv[2].split()
vals = OrderedDict()
for line in open(rows):
    p, d, m, v = line.rstrip("\n").split("\t")
    vals.setdefault(m, {}).setdefault((p, d), []).append(float(v))
cols = [(p, d) for p in peers for d in ("fwd", "rev")]
first = ["gib", "cpu_ms", "user_ms", "sys_ms", "ctxsw_vol", "ctxsw_invol", "sc_total",
         "kib_per_splice", "splice_eagain"]
metrics = [m for m in first if m in vals] + sorted(m for m in vals if m not in first)
print("per GiB moved, median of rounds (all rounds: min..max)")
print("%-24s" % "metric" + "".join("%22s" % ("%s %s" % c) for c in cols))
for m in metrics:
    cells = []
    for c in cols:
        vs = vals[m].get(c, [])
        if not vs:
            cells.append("%22s" % "-")
            continue
        med = statistics.median(vs)
        cells.append("%22s" % ("%.4g (%.3g..%.3g)" % (med, min(vs), max(vs)) if len(vs) > 1 else "%.4g" % med))
    print("%-24s" % m + "".join(cells))
EOF
