#!/bin/bash
# tls-syscalls.sh — the system calls tcpmapd makes per terminated TLS handshake, counted with
# `strace -c`, which the machine's load moves little (the handshake rate it also prints is
# slowed by strace and by the load, and says nothing).
#
#   bench/tls-syscalls.sh BUILD_DIR [SECONDS]     (default 6 s)
#
# tcpmapd (--workers 1) terminates TLS 1.3 for bench/peers/tcpmap-tls.yaml in front of
# benchtool.py's echo server; two Python client processes loop over full handshakes, each
# with one 1 KiB echo, for SECONDS under `strace -c -f -p`. Printed: calls and errors (EAGAIN
# reads, the ENOTCONN shutdown of a client that is gone, the non-blocking connect) per
# handshake. Loopback only; every process started here is stopped by its PID. Nothing is
# asserted: this is a measuring tool.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:?usage: tls-syscalls.sh BUILD_DIR [SECONDS]}
case $BUILD in /*) ;; *) BUILD=$HERE/../$BUILD ;; esac
SECS=${2:-6}
W=$HERE/out/tls-syscalls
rm -rf "$W"
mkdir -p "$W/run" "$W/secrets/bench"
command -v strace >/dev/null || { echo "strace is not installed" >&2; exit 1; }
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do
		kill -TERM "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
}
trap cleanup EXIT
# shellcheck source=lib/ports.sh
. "$HERE/lib/ports.sh"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
	-subj /CN=bench.local -addext subjectAltName=DNS:bench.local \
	-keyout "$W/secrets/bench/tls.key" -out "$W/secrets/bench/tls.crt" 2>/dev/null
ECHO=$(pick_port)
P=$(pick_port)
python3 "$HERE/lib/benchtool.py" echo --port "$ECHO" </dev/null >/dev/null 2>&1 &
PIDS+=($!)
wait_listening "$ECHO" 300 || exit 1
sed -e "s|@LISTEN@|$P|g" -e "s|@TARGET@|$ECHO|g" "$HERE/peers/tcpmap-tls.yaml" >"$W/tcpmap.yaml"
"$BUILD/tcpmapd" --config "$W/tcpmap.yaml" --secrets-dir "$W/secrets" --runtime-dir "$W/run" \
	--log-target stderr --workers 1 </dev/null >"$W/log" 2>&1 &
TP=$!
PIDS+=("$TP")
wait_listening "$P" 300 || exit 1
strace -c -f -o "$W/strace.txt" -p "$TP" 2>/dev/null &
SP=$!
sleep 0.5
timeout $((SECS + 30)) python3 - "$P" "$SECS" "$W" >"$W/clients.txt" <<'PY'
import os, socket, ssl, sys, time
port, secs, out = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
kids = []
for k in range(2):
    pid = os.fork()
    if pid == 0:
        n, end = 0, time.time() + secs
        while time.time() < end:
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="bench.local")
            s.sendall(b"x" * 1024)
            got = 0
            while got < 1024:
                b = s.recv(4096)
                if not b:
                    break
                got += len(b)
            s.close()
            n += 1
        with open(f"{out}/n{k}", "w") as f:
            f.write(str(n))
        os._exit(0)
    kids.append(pid)
for pid in kids:
    os.waitpid(pid, 0)
print(sum(int(open(f"{out}/n{k}").read()) for k in range(2)))
PY
kill -INT "$SP"
wait "$SP" 2>/dev/null
N=$(cat "$W/clients.txt")
echo "$N handshakes in $SECS s (under strace); per handshake:"
awk -v n="$N" 'NF >= 5 && $1 ~ /^[0-9.]+$/ {
	calls = $4; errs = (NF == 6) ? $5 : 0
	if (calls / n >= 0.1 || $NF == "total")
		printf "  %-14s %6.2f calls %6.2f errors\n", $NF, calls / n, errs / n
}' "$W/strace.txt"
