#!/usr/bin/env bash
# inetd-cost.sh — what a connection costs in each per-connection model under a real systemd:
# median connect-to-echo (connect, send 100 bytes, read them back, close) of sequential
# connections, through the private systemd of tests/lib/sandbox.sh. It measures:
#   tcpmap@ (threaded), tcpmap@ with per_connection_process, a bare Accept=yes /bin/cat,
#   the same with DynamicUser=yes, the same with tcpmap-inetd@.service's hardening block,
#   tcpmap-inetd@ itself, tcpmap-inetd@ with units/tcpmap-inetd-light.conf, and the dynamic
#   user's /bin/cat with each group of the hardening alone (which settings cost);
# and `systemd-analyze security --offline=true` for tcpmap-inetd@ with and without the drop-in.
#
# Bats-free and not part of `make check`: it reports, it asserts nothing. Needs root (the
# sandbox), a build (`make`), python3. Every process it starts is stopped by PID, and the
# sandbox is powered off on exit. Loopback only.
#
# Usage: bench/inetd-cost.sh [BUILD_DIR] [N]     (N sequential connections per unit, 150)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=${1:-$ROOT/build}
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
N=${2:-150}
SANDBOX=$ROOT/tests/lib/sandbox.sh
[ "$(id -u)" = 0 ] || { echo "inetd-cost: needs root (the private systemd)" >&2; exit 1; }
[ -x "$BUILD/tcpmapd" ] || { echo "inetd-cost: no $BUILD/tcpmapd: run make first" >&2; exit 1; }

WORK=$(mktemp -d /tmp/inetd-cost.XXXXXX)
SB_STATE=$WORK/sandbox
UP_PID=
cleanup() {
	[ -n "$UP_PID" ] && kill "$UP_PID" 2>/dev/null
	"$SANDBOX" stop "$SB_STATE" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT
sb() { "$SANDBOX" exec "$SB_STATE" "$@"; }

# Ports below the kernel's ephemeral range, away from the bats suites' (30000-32699, 63000+).
BASE=29400
P_UP=$BASE P_THREAD=$((BASE + 1)) P_FORK=$((BASE + 2)) P_CAT=$((BASE + 3)) P_DYN=$((BASE + 4))
P_HARD=$((BASE + 5)) P_INETD=$((BASE + 6)) P_LIGHT=$((BASE + 7))

python3 "$ROOT/tests/lib/upstream.py" echo --host 127.0.0.1 --port "$P_UP" --max-seconds 900 \
	--ready-file "$WORK/up.ready" >"$WORK/up.log" 2>&1 </dev/null &
UP_PID=$!

"$SANDBOX" start "$SB_STATE" "$ROOT" >/dev/null
sb make -C "$ROOT" -s -o all SAN=0 BUILD="$BUILD" PREFIX=/usr DESTDIR= install >/dev/null
UNITDIR=$(sb pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)

# Every mapping in one config, each port its own listener with its own process model.
mapping() { # NAME PORT [SPEC_LINE]
	printf -- '---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: %s\nspec:\n  address: 127.0.0.1\n  port: %s\n  service: 127.0.0.1:%s\n' "$1" "$2" "$P_UP"
	[ -n "${3:-}" ] && echo "  $3"
	return 0
}
{
	mapping threaded "$P_THREAD"
	mapping forked "$P_FORK" "per_connection_process: true"
	mapping inetd "$P_INETD"
	mapping light "$P_LIGHT"
} >"$WORK/tcpmap.yaml"
sb sh -c "mkdir -p /etc/tcpmap && rm -f /etc/tcpmap/*.yaml && cat >/etc/tcpmap/tcpmap.yaml" <"$WORK/tcpmap.yaml"

# The hardening block of tcpmap-inetd@.service: from CapabilityBoundingSet= to the last
# SystemCallErrorNumber=, as installed.
hardening=$(sed -n '/^CapabilityBoundingSet=/,/^SystemCallErrorNumber=/p' "$ROOT/units/tcpmap-inetd@.service")

# cat_units NAME PORT EXTRA: an Accept=yes socket with /bin/cat behind it.
cat_units() {
	sb sh -c "cat >$UNITDIR/$1.socket" <<-EOS
		[Socket]
		ListenStream=127.0.0.1:$2
		Accept=yes
		MaxConnections=1024
		TriggerLimitIntervalSec=0
	EOS
	sb sh -c "cat >$UNITDIR/$1@.service" <<-EOS
		[Unit]
		CollectMode=inactive-or-failed
		[Service]
		ExecStart=/bin/cat
		StandardInput=socket
		StandardOutput=socket
		$3
	EOS
}
cat_units cost-cat "$P_CAT" ""
cat_units cost-dyn "$P_DYN" "DynamicUser=yes"
cat_units cost-hard "$P_HARD" "DynamicUser=yes
$hardening"
# The hardening's groups one at a time on the dynamic user's /bin/cat, to see which costs.
seccomp=$(grep -E '^(SystemCall|RestrictAddressFamilies|MemoryDenyWriteExecute|LockPersonality|RestrictNamespaces|RestrictRealtime|RestrictSUIDSGID)' <<<"$hardening")
GROUPS_ROWS=()
group() { # NAME SETTINGS
	local port=$((BASE + 10 + ${#GROUPS_ROWS[@]}))
	cat_units "cost-g${#GROUPS_ROWS[@]}" "$port" "DynamicUser=yes
$2"
	GROUPS_ROWS+=("Accept=yes /bin/cat, DynamicUser=yes, + $1:$port")
}
group "ProtectKernelTunables=yes" "ProtectKernelTunables=yes"
group "PrivateDevices=yes" "PrivateDevices=yes"
group "ProtectControlGroups=yes" "ProtectControlGroups=yes"
group "ProtectProc=invisible" "ProtectProc=invisible"
group "ProtectSystem=strict, ProtectHome, PrivateTmp" "ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes"
group "every seccomp setting" "$seccomp"
group "PrivateUsers=yes" "PrivateUsers=yes"
# tcpmap-inetd@ under the light drop-in, as a template of its own: an Accept=yes service's
# instance is named for the connection (N-LOCAL-REMOTE), not for the socket's instance, so
# only a drop-in for the whole template reaches it, and that would reach the row above too.
sb sh -c "sed 's|^ListenStream=.*|ListenStream=127.0.0.1:$P_LIGHT|' $UNITDIR/tcpmap-inetd@.socket >$UNITDIR/cost-light.socket"
sb cp "$UNITDIR/tcpmap-inetd@.service" "$UNITDIR/cost-light@.service"
sb mkdir -p "$UNITDIR/cost-light@.service.d"
sb sh -c "cat >$UNITDIR/cost-light@.service.d/light.conf" <"$ROOT/units/tcpmap-inetd-light.conf"
sb systemctl daemon-reload
sb systemctl start "tcpmap@127.0.0.1:$P_THREAD.socket" "tcpmap@127.0.0.1:$P_FORK.socket" \
	"tcpmap-inetd@127.0.0.1:$P_INETD.socket" cost-light.socket cost-cat.socket cost-dyn.socket cost-hard.socket \
	$(for i in "${!GROUPS_ROWS[@]}"; do echo "cost-g$i.socket"; done)

# median_ms PORT: N sequential connect-send-100-read-100-close, the median in ms.
median_ms() {
	python3 - "$1" "$N" <<-'EOP'
		import socket, statistics, sys, time
		port, n = int(sys.argv[1]), int(sys.argv[2])
		payload = b"x" * 100
		times = []
		for _ in range(n):
		    t0 = time.perf_counter()
		    got = b""
		    try:
		        s = socket.create_connection(("127.0.0.1", port), timeout=10)
		        s.sendall(payload)
		        while len(got) < len(payload):
		            chunk = s.recv(4096)
		            if not chunk:
		                break
		            got += chunk
		        s.close()
		    except OSError:
		        pass  # counted as not ok: the column after the median says how many were
		    if got == payload:
		        times.append((time.perf_counter() - t0) * 1000)
		print(f"{statistics.median(times):.2f} {len(times)}" if times else "- 0")
	EOP
}

for f in "$WORK/up.ready"; do for _ in $(seq 50); do [ -e "$f" ] && break; sleep 0.1; done; done
echo "# median connect-to-echo, $N sequential connections of 100 bytes each; load: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-80s %10s %6s\n' unit median_ms ok
for row in "tcpmap@ (threaded, Accept=no):$P_THREAD" \
	"tcpmap@ with per_connection_process: true:$P_FORK" \
	"Accept=yes /bin/cat:$P_CAT" \
	"Accept=yes /bin/cat, DynamicUser=yes:$P_DYN" \
	"Accept=yes /bin/cat, tcpmap-inetd@'s hardening:$P_HARD" \
	"tcpmap-inetd@:$P_INETD" \
	"tcpmap-inetd@ with tcpmap-inetd-light.conf:$P_LIGHT" "${GROUPS_ROWS[@]}"; do
	median_ms "${row##*:}" >/dev/null 2>&1 || true # warm-up: first start loads the config
	read -r ms ok < <(median_ms "${row##*:}")
	printf '%-80s %10s %6s\n' "${row%:*}" "$ms" "$ok"
done

exposure() { # UNIT [DROPIN]
	sb systemd-analyze security --offline=true --no-pager "$@" 2>&1 |
		sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) \(.*\)/\1 \2/p'
}
# the unit with the drop-in's section appended: a later assignment wins, as a drop-in's does
sb sh -c "cp $UNITDIR/tcpmap-inetd@.service /tmp/tcpmap-inetd-light@.service &&
	cat >>/tmp/tcpmap-inetd-light@.service" <"$ROOT/units/tcpmap-inetd-light.conf"
echo "# systemd-analyze security --offline=true"
echo "tcpmap-inetd@.service: $(exposure "$UNITDIR/tcpmap-inetd@.service")"
echo "tcpmap-inetd@.service + tcpmap-inetd-light.conf: $(exposure /tmp/tcpmap-inetd-light@.service)"
