#!/usr/bin/env bats
# systemd-upgrade.bats — issue 21: neither an upgrade nor a restart of tcpmap@.service stalls
# new connections, whatever is open. One port serves a TLS-terminating mapping and a
# cleartext one (as an edge does); 20 idle TLS connections (tests/lib/tlsidle.py) and 20
# checksummed spliced streams (tests/lib/stream.py) are open when the service is reloaded
# after its binary was replaced, or restarted. The time until a new connection is answered is
# measured and printed ("answered in N ms"), in the private systemd of tests/lib/sandbox.sh.
#
# It never boots systemd other than through sandbox.sh, teardown_file always powers it off,
# and every process started here is stopped by PID.

load ../lib/systemd

SD_PORT_MIN=61100
SD_PORT_SPAN=800
MID_ADOPT=$(sed -n 's/^#define TCPMAP_MID_ADOPT "\([0-9a-f]*\)"$/\1/p' "$ROOT/lib/log.h")
VERSION=$(sed -n 's/^VERSION := //p' "$ROOT/Makefile")
UPGRADE_VERSION=$VERSION-upgrade
UPGRADE_BUILD=build-upgrade
TLS_NAME=upgrade.example.test
TLSIDLE_PY=$ROOT/tests/lib/tlsidle.py
N=20

svc() { echo "tcpmap@$P.service"; }

# count_events PID EVENT [RESULT]: how many such events the journal has (waits up to 10 s for
# at least $4 of them when given).
count_events() {
	events "$(svc)" | awk -v pid="$1" -v ev="$2" -v res="${3:-}" '
		$1 == pid && $2 == ev && (res == "" || $3 == res) { n++ }
		END { print n + 0 }'
}
wait_events() { # PID EVENT RESULT N
	local n=
	for _ in $(seq 50); do
		n=$(count_events "$1" "$2" "$3")
		[ "$n" -ge "$4" ] && return 0
		sleep 0.2
	done
	echo "$n '$2' ($3) events from PID $1, wanted $4; the journal's tail:" >&2
	sb journalctl --no-pager -n 60 -u "$(svc)" >&2
	return 1
}

# probe_during CMD...: run CMD (a systemctl action) in the background and, from the moment it
# starts, connect to the cleartext mapping every 20 ms for 1.5 s: each probe's time from its
# connect() to its echoed bytes. Prints "max_ms=M probes=K failed=F", the figure this file
# reports. Fails when CMD fails.
probe_during() {
	local pid rc
	"$@" &
	pid=$!
	python3 - "$P" <<'EOF'
import socket, sys, time
port, worst, n, failed = int(sys.argv[1]), 0.0, 0, 0
end = time.monotonic() + 1.5
while time.monotonic() < end:
    t = time.monotonic()
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"probe")
        got = b""
        while len(got) < 5:
            b = s.recv(5)
            if not b:
                break
            got += b
        s.close()
        if got != b"probe":
            failed += 1
    except OSError:
        failed += 1
    worst = max(worst, (time.monotonic() - t) * 1000)
    n += 1
    time.sleep(0.02)
print("max_ms=%.1f probes=%d failed=%d" % (worst, n, failed))
EOF
	wait "$pid"
	rc=$?
	return "$rc"
}

start_tls_idle() { # NAME [CONNECTIONS]
	local d=$BATS_TEST_TMPDIR
	python3 "$TLSIDLE_PY" --port "$P" --sni "$TLS_NAME" --cafile "$PKI/ca.crt" \
		--connections "${2:-$N}" --ready-file "$d/$1.ready" --check-file "$d/$1.check" \
		--max-seconds 120 >"$d/$1.out" 2>&1 3>&- &
	echo $! >"$d/$1.pid"
	echo $! >>"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 200); do
		[ -e "$d/$1.ready" ] && return 0
		sleep 0.1
	done
	cat "$d/$1.out" >&2
	return 1
}

# check_tls_idle NAME: have every idle TLS connection report; prints the report.
check_tls_idle() {
	local d=$BATS_TEST_TMPDIR pid
	pid=$(cat "$d/$1.pid")
	touch "$d/$1.check"
	for _ in $(seq 300); do
		stream_running "$pid" || break
		sleep 0.1
	done
	cat "$d/$1.out"
}

setup() {
	sd_skip_unavailable
	sb systemctl reset-failed "$(svc)" "tcpmap@$P.socket" 2>/dev/null || true
	sb install -m755 "$SB_BUILD/tcpmapd" /usr/sbin/tcpmapd
	sb install -m644 "$SB_BUILD/tcpmap-tls.so" /usr/lib/tcpmap/tcpmap-tls.so
	sb systemctl start "tcpmap@$P.socket" "$(svc)"
}

teardown() { sd_stop_test_pids; }

setup_file() {
	sd_require || return 0
	sd_choose_build
	: >"$BATS_FILE_TMPDIR/pids"
	export P UP UP2 PKI=$BATS_FILE_TMPDIR/pki
	P=$(pick_port)
	UP=$(pick_port "$P")
	UP2=$(pick_port "$P" "$UP")
	start_echo "$UP"
	start_echo "$UP2"
	sd_make_server_pki "$PKI" tcpmap-upgrade-ca "$TLS_NAME"
	# the second build, as a package upgrade brings
	make -C "$ROOT" -s SAN=0 BUILD="$UPGRADE_BUILD" VERSION="$UPGRADE_VERSION" \
		"$UPGRADE_BUILD/tcpmapd" "$UPGRADE_BUILD/tcpmap-tls.so" >&2

	sd_start
	sd_install_secret upgradesecret
	# No drain_timeout_ms: the defaults are what is tested.
	sb sh -c 'umask 022; mkdir -p /etc/tcpmap; cat >/etc/tcpmap/tcpmap.yaml' <<-EOF
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TLSContext
		metadata:
		  name: upgrade-tls
		spec:
		  hosts:
		  - $TLS_NAME
		  secret: upgradesecret
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: upgrade-tls
		spec:
		  port: $P
		  address: 127.0.0.1
		  host: $TLS_NAME
		  service: 127.0.0.1:$UP2
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: upgrade-clear
		spec:
		  port: $P
		  address: 127.0.0.1
		  service: 127.0.0.1:$UP
	EOF
	sb sh -c "mkdir -p '/etc/systemd/system/tcpmap@$P.socket.d' &&
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$P\n' >'/etc/systemd/system/tcpmap@$P.socket.d/loopback.conf'"
	sd_install
	sb systemctl daemon-reload
}

teardown_file() {
	local leftover=0
	sd_stop
	sd_kill_recorded
	[ ! -e "$BATS_FILE_TMPDIR/sandbox" ] || { echo "sandbox state left behind" >&2; leftover=1; }
	[ -z "${P:-}" ] || wait_port_free "$P" || { echo "port $P still listening" >&2; leftover=1; }
	sd_recorded_gone || leftover=1
	return "$leftover"
}

@test "upgrade: systemctl reload after replacing the binary re-executes it; new connections, streams and TLS connections go on" {
	local old new line report t0 t1
	old=$(main_pid "$(svc)")
	start_tls_idle tls
	start_tls_idle later 5
	start_stream streams --port "$P" --connections "$N" --rate 32768 --max-seconds 120
	sb install -m755 "$ROOT/$UPGRADE_BUILD/tcpmapd" /usr/sbin/tcpmapd
	sb install -m644 "$ROOT/$UPGRADE_BUILD/tcpmap-tls.so" /usr/lib/tcpmap/tcpmap-tls.so
	run probe_during sb systemctl reload "$(svc)"
	echo "reload with $N idle TLS + $N streams: new connections answered in $output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" failed=0" ]]
	[ "$(sed -n 's/^max_ms=\([0-9]*\).*/\1/p' <<<"$output")" -lt 1000 ]
	mark_stream streams
	# The new image is the main process, and it is the upgraded build.
	new=$(main_pid "$(svc)")
	echo "MainPID: $old -> $new"
	[ "$new" != "$old" ] && [ "$new" != 0 ]
	[ "$(sb systemctl is-active "$(svc)")" = active ]
	sb systemctl status --no-pager "$(svc)" | grep -q "Main PID: $new "
	run sb journalctl --no-pager -o cat -u "$(svc)" _PID="$new" TCPMAP_EVENT=ready
	echo "$output"
	[[ "$output" == "tcpmapd $UPGRADE_VERSION ready"* ]]
	# One handover and one adopt per spliced connection; the old image drains its TLS ones.
	wait_events "$old" handover - "$N"
	wait_events "$new" adopt - "$N"
	[ "$(count_events "$old" handover)" -eq "$N" ]
	[ "$(count_events "$new" adopt)" -eq "$N" ]
	[ "$(count_events "$old" reexec)" -eq 1 ]
	sleep 1
	finish_stream_ok streams
	[ "$(grep -c '^conn=.* intact=1 ' <<<"$output")" -eq "$N" ]
	[ "$(grep -c '^conn=.* recv_after_mark=0 ' <<<"$output")" -eq 0 ]
	# Every TLS connection still works, served by the old image's drain.
	report=$(check_tls_idle tls)
	echo "$report"
	[ "$(tail -n 1 <<<"$report")" = "alive=$N" ]
	# A stop stops both images promptly: the draining one closes what it still has.
	t0=$(date +%s.%N)
	sb systemctl stop "$(svc)"
	t1=$(date +%s.%N)
	echo "stop with the old image draining 5 TLS connections took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }') s"
	awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a < 1) }'
	wait_events "$old" close shutdown 5
	[ "$(sb systemctl show -p Result --value "$(svc)")" = success ]
	report=$(check_tls_idle later)
	echo "$report"
	[ "$(grep -c '^conn=.* alive$' <<<"$report")" -eq 0 ]
}

@test "upgrade: systemctl restart with idle TLS connections and streams open answers new connections at once" {
	local old new report t0 t1
	old=$(main_pid "$(svc)")
	start_tls_idle tls
	start_stream streams --port "$P" --connections "$N" --rate 32768 --max-seconds 120
	t0=$(date +%s.%N)
	run probe_during sb systemctl restart "$(svc)"
	t1=$(date +%s.%N)
	echo "restart with $N idle TLS + $N streams: new connections answered in $output; systemctl restart took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s (with the 1.5 s of probing)"
	[ "$status" -eq 0 ]
	[[ "$output" == *" failed=0" ]]
	[ "$(sed -n 's/^max_ms=\([0-9]*\).*/\1/p' <<<"$output")" -lt 1000 ]
	mark_stream streams
	new=$(main_pid "$(svc)")
	[ "$new" != "$old" ] && [ "$new" != 0 ]
	wait_events "$old" handover - "$N"
	wait_events "$new" adopt - "$N"
	# Each TLS connection was closed by the stop, with its result logged.
	wait_events "$old" close shutdown "$N"
	report=$(check_tls_idle tls)
	echo "$report"
	[ "$(grep -c '^conn=.* alive$' <<<"$report")" -eq 0 ]
	sleep 1
	finish_stream_ok streams
	[ "$(grep -c '^conn=.* intact=1 ' <<<"$output")" -eq "$N" ]
	[ "$(grep -c '^conn=.* recv_after_mark=0 ' <<<"$output")" -eq 0 ]
}
