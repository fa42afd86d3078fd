#!/bin/bash
# instructions.sh BUILD... — instructions tcpmapd executes per relayed connection, counted by
# callgrind, for each build given. Instruction counts do not depend on what else the machine
# is doing, so two builds can be compared on a busy machine where wall-clock rounds cannot.
#
# For each build: tcpmapd --workers 1 under callgrind relays N short connections (1 KiB each
# way) to an echo upstream, once with N=0 and once with N (default 2000); the difference over
# N is the per-connection cost, start-up and shutdown cancelled out. Nothing is asserted.
#
#   BENCH_CONNS=2000   connections in the measured run
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
N=${BENCH_CONNS:-2000}
WORK=$(mktemp -d /tmp/tcpmap-instr.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

UP=$(free_port)
python3 "$HERE/lib/benchtool.py" echo --port "$UP" >"$WORK/echo.log" 2>&1 &
PIDS+=($!)

# one run: prints the total instruction count (Ir) of tcpmapd relaying $2 connections
run() { # BUILD CONNS
	local build=$1 n=$2 port out pid
	port=$(free_port)
	out=$WORK/cg.$RANDOM
	printf -- '---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata: {name: m}\nspec: {port: %s, address: 127.0.0.1, service: "127.0.0.1:%s"}\n' \
		"$port" "$UP" >"$WORK/c.yaml"
	# a table of its own: two builds may not share a table layout
	local run=$WORK/run.$RANDOM
	mkdir -p "$run"
	valgrind --tool=callgrind --callgrind-out-file="$out" "$build/tcpmapd" --config "$WORK/c.yaml" \
		--runtime-dir "$run" --workers 1 --log-target stderr 2>"$WORK/tcpmapd.log" &
	pid=$!
	for _ in $(seq 300); do ss -Hltn "sport = :$port" | grep -q . && break; sleep 0.1; done
	python3 - "$port" "$n" <<'EOF'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
data = b"x" * 1024
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    assert got == data, "echo mismatch"
EOF
	if ! kill -TERM "$pid" 2>/dev/null; then
		echo "tcpmapd ended early; its log:" >&2
		tail -5 "$WORK/tcpmapd.log" >&2
	fi
	wait "$pid" 2>/dev/null
	sed -n 's/^summary: //p' "$out" | awk '{print $1}'
}

printf '%-40s %14s %14s %12s\n' build "Ir(0)" "Ir($N)" "Ir/conn"
for b in "$@"; do
	case $b in /*) ;; *) b=$PWD/$b ;; esac
	i0=$(run "$b" 0)
	i1=$(run "$b" "$N")
	printf '%-40s %14s %14s %12.0f\n' "$b" "$i0" "$i1" "$(echo "($i1 - $i0) / $N" | bc -l)"
done
