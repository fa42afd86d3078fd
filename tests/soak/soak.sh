#!/bin/bash
# soak.sh — an hour (SOAK_SECONDS) of everything at once under a real systemd (issue 18).
#
#   SOAK_SECONDS=3600 [SOAK_SEED=N] [SOAK_OUT=DIR] [SOAK_FAULTS=F1,F2] tests/soak/soak.sh [BUILD]
#
# Boots the private systemd of tests/lib/sandbox.sh, installs BUILD (default build/) into it
# with `make install` as a user would, writes /etc/tcpmap/tcpmap.yaml and the TLS secret,
# enables one threaded socket per listener (`systemctl enable --now tcpmap@ADDR:PORT.socket`)
# and one per-connection socket (tcpmap-inetd@ADDR:PORT.socket), then hands over to
# tests/soak/soak.py: the upstreams, the load generators (cleartext streams, short
# request/response, TLS termination, termination plus origination, SNI passthrough, PROXY
# protocol, per-connection), the seeded faults and every check. Its report is DIR/summary.txt
# (also printed), DIR/samples.tsv (RSS, fds, threads per tcpmapd, breaker slots, journal
# errors over time), DIR/samples.png (the same, plotted) and DIR/connections.tsv; with
# DIR/diag.txt (also printed) when a connection hung: its sockets, the epoll registrations
# and thread stacks of its tcpmapd. SOAK_FAULTS injects only the faults it names (soak.py's
# FAULTS), to chase one that failed; SOAK_SEED replays a run's order of faults.
#
# Exit status: 0 when nothing was lost, nothing grew and every check passed; 1 on any
# violation; 77 when no private systemd can run here (not root, no overlayfs, ...).
#
# It must never outlive itself: the sandbox is powered off and soak.py stopped by PID on any
# exit, every wait is bounded, and it binds and connects on loopback only.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${1:-${BUILD:-build}}
SOAK_SECONDS=${SOAK_SECONDS:-3600}
SOAK_SEED=${SOAK_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
SOAK_OUT=${SOAK_OUT:-$ROOT/$BUILD/soak}
# systemd.bash keeps its files (pids, the sandbox state) in the bats file's temp dir.
export BATS_FILE_TMPDIR=$SOAK_OUT/tmp BATS_TEST_TMPDIR=$SOAK_OUT/tmp
export TCPMAP_ROOT=$ROOT TCPMAPD=$ROOT/$BUILD/tcpmapd
# Clear of the other suites' ranges (tests/bats/*.bats) and below the ephemeral range.
SD_PORT_MIN=${SOAK_PORT_MIN:-12000}
SD_PORT_SPAN=1000
# shellcheck source=../lib/systemd.bash
. "$ROOT/tests/lib/systemd.bash"

SOAK_PID=
cleanup() {
	local rc=$?
	if [ -n "$SOAK_PID" ] && kill -0 "$SOAK_PID" 2>/dev/null; then
		kill "$SOAK_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$SOAK_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$SOAK_PID" 2>/dev/null || true
	fi
	sd_stop
	sd_kill_recorded
	exit "$rc"
}

if ! sd_require; then
	echo "soak: skipped: $SD_SKIP"
	exit 77
fi
# only what an earlier run wrote there: SOAK_OUT may be any directory
rm -rf "$SOAK_OUT/pki" "$SOAK_OUT/tmp" "$SOAK_OUT/summary.txt" "$SOAK_OUT/samples.tsv" \
	"$SOAK_OUT/samples.png" "$SOAK_OUT/connections.tsv"
mkdir -p "$BATS_FILE_TMPDIR"
: >"$BATS_FILE_TMPDIR/pids"
trap cleanup EXIT
trap 'exit 143' TERM INT
sd_choose_build

# ---- ports and the PKI --------------------------------------------------------------------
PORTS=()
for name in C T X F I A B E S P U; do
	p=$(pick_port "${PORTS[@]}") || { echo "soak: no free port" >&2; exit 1; }
	PORTS+=("$p")
	printf -v "PORT_$name" %s "$p"
done

PKI=$SOAK_OUT/pki
mkdir -p "$PKI"
pki_cert() { # NAME CN SAN...: a leaf certificate NAME signed by the soak CA
	local name=$1 cn=$2 san
	shift 2
	san=$(printf 'DNS:%s,' "$@")
	printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "${san%,}" >"$PKI/$name.ext"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/$name.key" \
		-out "$PKI/$name.csr" -subj "/CN=$cn" 2>/dev/null
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 2 -out "$PKI/$name.crt" -extfile "$PKI/$name.ext" 2>/dev/null
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout "$PKI/ca.key" \
	-out "$PKI/ca.crt" -days 2 -subj "/CN=tcpmap-soak-ca" 2>/dev/null
pki_cert server term.soak.test term.soak.test orig.soak.test
pki_cert upstream pass.soak.test pass.soak.test upstream.soak.test

# ---- boot, install, configure, enable -------------------------------------------------------
echo "soak: booting the private systemd and installing $BUILD"
sd_start
sd_install
sb sh -c 'umask 022; mkdir -p /etc/tcpmap/secrets/soaksecret'
sb sh -c 'umask 022; cat >/etc/tcpmap/secrets/soaksecret/tls.crt' <"$PKI/server.crt"
sb sh -c 'umask 022; cat >/etc/tcpmap/secrets/soaksecret/tls.key' <"$PKI/server.key"

SOAK_ARGS=(--sandbox "$ROOT/tests/lib/sandbox.sh" --state "$SB_STATE" --out "$SOAK_OUT"
	--seconds "$SOAK_SECONDS" --seed "$SOAK_SEED" --faults "${SOAK_FAULTS:-}" --cafile "$PKI/ca.crt"
	--upstream-cert "$PKI/upstream.crt" --upstream-key "$PKI/upstream.key"
	--mid-close "$MID_CLOSE" --pipe-pool-max "$(sed -n 's/^#define PIPE_POOL_MAX \([0-9]*\).*/\1/p' "$ROOT/lib/relay.c")"
	--ports "C=$PORT_C,T=$PORT_T,X=$PORT_X,F=$PORT_F,I=$PORT_I,A=$PORT_A,B=$PORT_B,E=$PORT_E,S=$PORT_S,P=$PORT_P,U=$PORT_U")
python3 "$ROOT/tests/soak/soak.py" "${SOAK_ARGS[@]}" --write-config | sb sh -c 'umask 022; cat >/etc/tcpmap/tcpmap.yaml'
sb tcpmapctl check >&2 || { echo "soak: the config does not check" >&2; exit 1; }
sb systemctl daemon-reload
for u in "tcpmap@127.0.0.1:$PORT_C.socket" "tcpmap@127.0.0.1:$PORT_T.socket" "tcpmap@127.0.0.1:$PORT_X.socket" \
	"tcpmap@127.0.0.1:$PORT_F.socket" "tcpmap-inetd@127.0.0.1:$PORT_I.socket"; do
	sb systemctl enable --now "$u" >/dev/null 2>&1 || {
		echo "soak: systemctl enable --now $u failed" >&2
		sb systemctl status --no-pager "$u" >&2 || true
		exit 1
	}
done

# ---- the soak itself ------------------------------------------------------------------------
python3 "$ROOT/tests/soak/soak.py" "${SOAK_ARGS[@]}" 3>&- &
SOAK_PID=$!
echo "$SOAK_PID" >>"$BATS_FILE_TMPDIR/pids"
rc=0
wait "$SOAK_PID" || rc=$?
SOAK_PID=
exit "$rc"
