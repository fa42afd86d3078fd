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
N=20

svc() { echo "tcpmap@$P.service"; }

# count_events PID EVENT [RESULT], wait_events PID EVENT RESULT N: this unit's events
# (tests/lib/systemd.bash).
count_events() { unit_event_count "$(svc)" "$@"; }
wait_events() { wait_unit_events "$(svc)" "$@"; }

# start_tls_idle_here NAME [CONNECTIONS]: idle TLS connections to the TLS mapping.
start_tls_idle_here() { start_tls_idle "$1" "$P" "$TLS_NAME" "$PKI/ca.crt" "${2:-$N}"; }

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
	start_tls_idle_here tls
	start_tls_idle_here later 5
	start_stream streams --port "$P" --connections "$N" --rate 32768 --max-seconds 120
	sb install -m755 "$ROOT/$UPGRADE_BUILD/tcpmapd" /usr/sbin/tcpmapd
	sb install -m644 "$ROOT/$UPGRADE_BUILD/tcpmap-tls.so" /usr/lib/tcpmap/tcpmap-tls.so
	run probe_during "$P" sb systemctl reload "$(svc)"
	echo "reload with $N idle TLS + $N streams: new connections answered in $output"
	[ "$status" -eq 0 ]
	[[ "$output" == *" failed=0" ]]
	# Nobody accepts only for the hand-over (6-22 ms measured, tcpmapd(8) RE-EXEC), but a
	# probe on a loaded two-CPU machine takes up to 540 ms without any reload
	# (before_max_ms): the bound is what such a machine holds, the figure is printed.
	[ "$(probe_max_ms "$output")" -lt 1000 ]
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
	# One handover and one adopt per spliced connection (each stream's, and a probe's that
	# was relaying when the old image stopped accepting); the old image drains its TLS ones.
	wait_events "$old" handover - "$N"
	wait_events "$new" adopt - "$N"
	[ "$(count_events "$old" reexec)" -eq 1 ]
	# The window in which nobody accepts, from the journal's own clock: from the old image's
	# first handover (its workers have stopped accepting) to the new image's ready (it
	# accepts). Issue 21 asks for a new connection answered within 100 ms of a reload; this
	# window is all of a reload that holds new connections up (the old image accepts until
	# then), whatever a loaded machine does to a probe's own timing.
	local gap_ms
	gap_ms=$(sb journalctl --no-pager -o json -u "$(svc)" | python3 -c '
import json, sys
old, new = sys.argv[1], sys.argv[2]
first_handover = ready = None
for line in sys.stdin:
    e = json.loads(line)
    t = int(e["__MONOTONIC_TIMESTAMP"])
    if e.get("_PID") == old and e.get("TCPMAP_EVENT") == "handover" and first_handover is None:
        first_handover = t
    if e.get("_PID") == new and e.get("TCPMAP_EVENT") == "ready":
        ready = t
print(f"{(ready - first_handover) / 1000:.1f}")
' "$old" "$new")
	echo "no acceptor for $gap_ms ms (old image's first handover to the new image's ready)"
	awk -v g="$gap_ms" 'BEGIN { exit !(g >= 0 && g < 100) }'
	sleep 1
	finish_stream_ok streams
	[ "$(grep -c '^conn=.* intact=1 ' <<<"$output")" -eq "$N" ]
	[ "$(grep -c '^conn=.* recv_after_mark=0 ' <<<"$output")" -eq 0 ]
	run moved_once "$(svc)" "$old" "$new" "$output"
	echo "$output"
	[ "$status" -eq 0 ]
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
	start_tls_idle_here tls
	start_stream streams --port "$P" --connections "$N" --rate 32768 --max-seconds 120
	t0=$(date +%s.%N)
	run probe_during "$P" sb systemctl restart "$(svc)"
	t1=$(date +%s.%N)
	echo "restart with $N idle TLS + $N streams: new connections answered in $output; systemctl restart took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s (with the 1.5 s of probing)"
	[ "$status" -eq 0 ]
	[[ "$output" == *" failed=0" ]]
	[ "$(probe_max_ms "$output")" -lt 1000 ]
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
	run moved_once "$(svc)" "$old" "$new" "$output"
	echo "$output"
	[ "$status" -eq 0 ]
}
