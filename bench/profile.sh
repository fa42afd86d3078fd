#!/usr/bin/env bash
# profile.sh — callgrind instruction counts for tcpmapd, to explain what bench/run.sh shows.
# callgrind's counts repeat exactly from run to run, unlike the timings of a busy machine.
#
#   bench/profile.sh BUILD_DIR inetd   one per-connection process: start, config load, one
#                                      relayed byte each way, exit
#   bench/profile.sh BUILD_DIR tls     threaded tcpmapd terminating N TLS handshakes
#   bench/profile.sh BUILD_DIR connrate threaded tcpmapd relaying N short connections
#
# Loopback only; everything it starts is stopped by PID; every wait is bounded. It never
# runs under `make check`. Output: bench/out/callgrind.* and a summary on stdout.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${1:?usage: profile.sh BUILD_DIR inetd|tls|connrate}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
WHAT=${2:-inetd}
N=${PROFILE_N:-200}
TCPMAPD=$BUILD/tcpmapd
TOOL=$HERE/lib/benchtool.py
W=$HERE/out/profile
rm -rf "$W"
mkdir -p "$W/run" "$W/secrets/bench"
command -v valgrind >/dev/null || { echo "valgrind is not installed" >&2; exit 1; }

PIDS=()
cleanup() {
	local p i
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
		for ((i = 0; i < 50; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}
trap cleanup EXIT
# shellcheck source=lib/ports.sh
. "$HERE/lib/ports.sh"
fill() { sed -e "s|@LISTEN@|$2|g" -e "s|@TARGET@|$3|g" "$HERE/peers/tcpmap-$1.yaml" >"$W/tcpmap.yaml"; }
CG=(valgrind --tool=callgrind --callgrind-out-file="$W/callgrind.out.%p")

ECHO=$(pick_port)
python3 "$TOOL" echo --port "$ECHO" </dev/null >/dev/null 2>&1 &
PIDS+=($!)
wait_listening "$ECHO" 300

case $WHAT in
inetd)
	P=$(pick_port)
	fill tcp "$P" "$ECHO"
	# socat hands the accepted socket to one tcpmapd as stdin, as inetd would.
	socat "TCP-LISTEN:$P,bind=127.0.0.1,reuseaddr" \
		"EXEC:${CG[*]} $TCPMAPD --config $W/tcpmap.yaml --runtime-dir $W/run --log-target stderr --inetd,nofork" \
		</dev/null >"$W/log" 2>&1 &
	PIDS+=($!)
	wait_listening "$P" 300
	python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
s.sendall(b"x"); assert s.recv(1) == b"x"; s.close()' "$P"
	wait "${PIDS[-1]}"
	;;
tls | connrate)
	P=$(pick_port)
	if [ "$WHAT" = tls ]; then
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
			-keyout "$W/secrets/bench/tls.key" -out "$W/secrets/bench/tls.crt" 2>/dev/null
		fill tls "$P" "$ECHO"
	else
		fill tcp "$P" "$ECHO"
	fi
	"${CG[@]}" "$TCPMAPD" --config "$W/tcpmap.yaml" --secrets-dir "$W/secrets" --runtime-dir "$W/run" \
		--log-target stderr --workers 1 </dev/null >"$W/log" 2>&1 &
	PIDS+=($!)
	wait_listening "$P" 300
	python3 - "$P" "$N" "$WHAT" <<'EOF'
import socket, ssl, sys
port, n, what = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
for _ in range(n):
    raw = socket.create_connection(("127.0.0.1", port), timeout=60)
    s = ctx.wrap_socket(raw, server_hostname="bench.local") if what == "tls" else raw
    s.sendall(b"x" * 1024)
    got = 0
    while got < 1024:
        b = s.recv(4096)
        if not b:
            break
        got += len(b)
    s.close()
EOF
	kill -TERM "${PIDS[-1]}"
	wait "${PIDS[-1]}"
	;;
*)
	echo "usage: profile.sh BUILD_DIR inetd|tls|connrate" >&2
	exit 2
	;;
esac

out=$(ls -t "$W"/callgrind.out.* | head -1)
total=$(callgrind_annotate "$out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
echo "callgrind: $out"
echo "instructions (Ir): $total$([ "$WHAT" != inetd ] && echo " for $N connections, $((total / N)) per connection")"
echo "--- top functions, inclusive ---"
callgrind_annotate --inclusive=yes "$out" 2>/dev/null | sed -n '/^Ir/,$p' | head -40
