#!/usr/bin/env bats
# systemd.bats — tcpmap the way people adopt it: the units as `make install` puts them, run by
# a real systemd (the private one of tests/lib/sandbox.sh), with socket activation, a drop-in
# that moves the port, the journal's structured access log and the hardening scores.
#
# It never boots systemd any other way than through tests/lib/sandbox.sh, and teardown_file
# always powers the sandbox off. The sandbox shares the host's network namespace: the upstream
# runs on the host's loopback, and the test connects from the host to the ports systemd opens.

load ../lib/systemd

setup_file() {
	sd_require || return 0
	sd_choose_build

	export P Q I F UP
	P=$(pick_port)
	Q=$(pick_port "$P")
	I=$(pick_port "$P" "$Q")
	F=$(pick_port "$P" "$Q" "$I")
	UP=$(pick_port "$P" "$Q" "$I" "$F")

	# The upstream: an echo server on the host's loopback, outside the sandbox. It gives up
	# by itself after 10 minutes in case teardown never comes.
	python3 - "$UP" 3>&- >"$BATS_FILE_TMPDIR/upstream.log" 2>&1 <<'EOF' &
import socket, sys, threading, time
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=128)
def echo(c):
    with c:
        c.settimeout(30)
        while True:
            b = c.recv(65536)
            if not b:
                break
            c.sendall(b)
        c.shutdown(socket.SHUT_WR)
srv.settimeout(1)
deadline = time.monotonic() + 600
while time.monotonic() < deadline:
    try:
        c, _ = srv.accept()
    except socket.timeout:
        continue
    threading.Thread(target=echo, args=(c,), daemon=True).start()
EOF
	echo $! >"$BATS_FILE_TMPDIR/upstream.pid"

	sd_start

	# The config first, so `make install` keeps it instead of writing the commented example.
	# Every listener the sockets may open needs a mapping: tcpmapd picks the mapping by the
	# socket's local port.
	sb sh -c 'umask 022; mkdir -p /etc/tcpmap; cat >/etc/tcpmap/tcpmap.yaml' <<EOF
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: sandbox-socket
spec:
  port: $P
  service: 127.0.0.1:$UP
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: sandbox-dropin
spec:
  port: $Q
  service: 127.0.0.1:$UP
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: sandbox-inetd
spec:
  port: $I
  service: 127.0.0.1:$UP
---
apiVersion: getambassador.io/v2
kind: TCPMapping
metadata:
  name: sandbox-forked
spec:
  port: $F
  service: 127.0.0.1:$UP
  per_connection_process: true
EOF
	sd_install
}

setup() { sd_skip_unavailable; }

# Each test sets up the units it uses, so none depends on what an earlier one left behind
# (a test run alone with `bats -f`, or after one that failed half-way, sees the same state).

# socket_on_p: tcpmap@P.socket enabled and listening on P, without the drop-in that moves it.
socket_on_p() {
	if sb test -e "/etc/systemd/system/tcpmap@$P.socket.d/override.conf"; then
		sb rm -f "/etc/systemd/system/tcpmap@$P.socket.d/override.conf"
		sb systemctl daemon-reload
		sb systemctl restart "tcpmap@$P.socket"
		wait_port_free "$Q"
	fi
	sb systemctl enable --now "tcpmap@$P.socket"
}

# move_socket_to_q: the drop-in `systemctl edit tcpmap@P.socket` would make, moving it to Q.
move_socket_to_q() {
	sb sh -c "mkdir -p '/etc/systemd/system/tcpmap@$P.socket.d' &&
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$Q\n' >'/etc/systemd/system/tcpmap@$P.socket.d/override.conf'"
	sb systemctl daemon-reload
	# The service Requires= its socket, so this stops it too and its copy of port P closes.
	sb systemctl restart "tcpmap@$P.socket"
}

teardown() { sd_stop_test_pids; }

teardown_file() {
	sd_stop
	if [ -f "$BATS_FILE_TMPDIR/upstream.pid" ]; then
		kill "$(cat "$BATS_FILE_TMPDIR/upstream.pid")" 2>/dev/null || true
	fi
	return 0
}

@test "systemd: systemd-analyze verify prints nothing for the four units and the target" {
	local man=--man=yes f
	# Without the man pages installed, verify reports each Documentation= line; those belong
	# to the man page work, not to the units.
	for f in tcpmapd.8 tcpmap-units.7 tcpmap.yaml.5; do
		[ -e "$ROOT/man/$f" ] || man=--man=no
	done
	# Templates are checked as instances: a template's own %i would not parse as an address.
	run sb systemd-analyze verify "$man" "$UNITDIR/tcpmap@$P.socket" "$UNITDIR/tcpmap@$P.service" \
		"$UNITDIR/tcpmap-inetd@$I.socket" "$UNITDIR/tcpmap-inetd@1.service" "$UNITDIR/tcpmap.target"
	echo "$output"
	[ "$status" -eq 0 ]
	[ -z "$output" ]
}

@test "systemd: systemd-analyze security rates both services at 2.0 or better" {
	local a b
	a=$(exposure "$UNITDIR/tcpmap@$P.service")
	b=$(exposure "$UNITDIR/tcpmap-inetd@1.service")
	echo "tcpmap@$P.service: '$a'  tcpmap-inetd@1.service: '$b'"
	# numbers, compared as numbers: an empty or odd score is a failure, never a pass
	[[ "$a" =~ ^[0-9]+(\.[0-9]+)?$ ]]
	[[ "$b" =~ ^[0-9]+(\.[0-9]+)?$ ]]
	awk -v a="$a" -v b="$b" 'BEGIN { exit !(a + 0 <= 2.0) }'
	awk -v a="$a" -v b="$b" 'BEGIN { exit !(b + 0 <= 2.0) }'
}

@test "systemd: enable --now tcpmap@PORT.socket relays, and status shows the STATUS line" {
	socket_on_p
	relay_roundtrip "$P" 100000
	run sb systemctl status --no-pager "tcpmap@$P.service"
	echo "$output"
	[[ "$output" == *"Active: active (running)"* ]]
	echo "$output" | grep -q '^ *Status: "'
	# Socket activation reached a hardened, unprivileged process.
	[ "$(sb systemctl show -p DynamicUser --value "tcpmap@$P.service")" = yes ]
	[ "$(sb systemctl is-enabled "tcpmap@$P.socket")" = enabled ]
}

@test "systemd: journalctl -u 'tcpmap@*' shows the access-log entry with TCPMAP_BYTES_IN" {
	socket_on_p
	relay_roundtrip "$P" 123457
	run wait_close_event 'tcpmap@*' 123457
	echo "$output"
	[ "$status" -eq 0 ]
	# PID UNIT BYTES_IN BYTES_OUT RESULT MESSAGE_ID: the echo sends every byte back.
	read -r _ unit bin bout result mid <<<"$output"
	[ "$unit" = "tcpmap@$P.service" ]
	[ "$bin" = 123457 ]
	[ "$bout" = 123457 ]
	[ "$result" = ok ]
	[ "$mid" = "$MID_CLOSE" ]
}

@test "systemd: a drop-in made as systemctl edit makes it moves the port" {
	socket_on_p
	relay_roundtrip "$P" 10
	port_is_free "$Q"
	move_socket_to_q
	relay_roundtrip "$Q" 4096
	port_is_free "$P"
	run relay_roundtrip "$P" 10
	[ "$status" -ne 0 ]
	run wait_close_event 'tcpmap@*' 4096
	[ "$status" -eq 0 ]
	# what the drop-in test leaves is the state the target test sets up for itself
}

@test "systemd: tcpmap-inetd@PORT.socket serves one process per connection, each in the journal" {
	local n
	sb systemctl enable --now "tcpmap-inetd@$I.socket"
	for n in 2001 2002 2003; do
		relay_roundtrip "$I" "$n"
	done
	for n in 2001 2002 2003; do
		wait_close_event 'tcpmap-inetd@*' "$n" >/dev/null
	done
	run close_events 'tcpmap-inetd@*'
	echo "$output"
	# One process and one service instance per connection.
	[ "$(echo "$output" | awk '$3 ~ /^200[123]$/ { print $1 }' | sort -u | wc -l)" -eq 3 ]
	[ "$(echo "$output" | awk '$3 ~ /^200[123]$/ { print $2 }' | sort -u | wc -l)" -eq 3 ]
	echo "$output" | awk '$3 ~ /^200[123]$/' | grep -q "tcpmap-inetd@[0-9]*-127.0.0.1:$I-127.0.0.1:[0-9]*.service"
}

# systemd stops a socket whose connections come faster than TriggerLimitBurst= (200 for
# Accept=yes) in TriggerLimitIntervalSec= (2 s), and it stays down until someone starts it
# again: one client's burst would close the port for everyone.
@test "systemd: a burst of 220 connections does not stop tcpmap-inetd@PORT.socket by its trigger limit" {
	local state n accepted before
	sb systemctl enable --now "tcpmap-inetd@$I.socket"
	before=$(sb systemctl show -p NAccepted --value "tcpmap-inetd@$I.socket")
	python3 - "$I" <<'PY'
import socket, sys
done = 0
for _ in range(220):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()
        done += 1
    except OSError:
        pass
print(f"{done} of 220 connected")
PY
	# systemd takes them from the backlog one by one: wait until it has all 220, or the
	# socket has stopped listening
	for _ in $(seq 300); do
		accepted=$(($(sb systemctl show -p NAccepted --value "tcpmap-inetd@$I.socket") - before))
		state=$(sb systemctl show -p ActiveState --value "tcpmap-inetd@$I.socket")
		[ "$accepted" -ge 220 ] || [ "$state" != active ] && break
		sleep 0.1
	done
	# and every instance started for the burst ends by itself (its client is gone)
	for _ in $(seq 300); do
		n=$(sb systemctl list-units --no-legend --state=active,activating "tcpmap-inetd@*.service" | wc -l)
		[ "$n" -eq 0 ] && break
		sleep 0.1
	done
	state=$(sb systemctl show -p ActiveState --value "tcpmap-inetd@$I.socket")/$(sb systemctl show -p Result --value "tcpmap-inetd@$I.socket")
	echo "socket: $state after $accepted accepted; instances left: $n"
	[ "$state" = active/success ] && [ "$accepted" -ge 220 ]
	relay_roundtrip "$I" 2004
	sb journalctl -u "tcpmap-inetd@$I.socket" --no-pager | grep -i 'trigger limit' && return 1
	return 0
}

# tcpmap-units(7), COST: the light drop-in's recipe, as an operator follows it.
@test "systemd: tcpmap-units(7)'s light drop-in recipe applies to tcpmap-inetd@ and it still relays" {
	local recipe
	recipe=$(sb man -P cat tcpmap-units 2>/dev/null | sed -n '/^ *mkdir -p \/etc\/systemd\/system\/tcpmap-inetd@/,/daemon-reload/p')
	echo "$recipe"
	[ "$(echo "$recipe" | wc -l)" -eq 4 ]
	sb sh -ec "$recipe"
	sb systemctl enable --now "tcpmap-inetd@$I.socket"
	relay_roundtrip "$I" 2005
	run wait_close_event 'tcpmap-inetd@*' 2005
	echo "$output"
	[ "$status" -eq 0 ]
	local unit
	read -r _ unit _ <<<"$output"
	# the instance that relayed ran under the drop-in, and kept the rest of the sandbox
	[ "$(sb systemctl show -p ProtectKernelTunables --value "$unit")" = no ]
	[ "$(sb systemctl show -p DynamicUser --value "$unit")" = yes ]
	sb systemctl show -p SystemCallFilter --value "$unit" | grep -q .
	sb rm -r /etc/systemd/system/tcpmap-inetd@.service.d
	sb systemctl daemon-reload
}

@test "systemd: per_connection_process under tcpmap@: each relay is a child of the installed static spawner, in the unit's cgroup and journal" {
	local svc="tcpmap@$F.service" main spawner relay pid unit result held=$BATS_TEST_TMPDIR/held
	sb systemctl enable --now "tcpmap@$F.socket"
	relay_roundtrip "$F" 3001
	# one connection held open (echoed once, then idle until the file $held.stop appears, 20 s
	# at most), so its relay can be looked at
	python3 - "$F" "$held" 3>&- <<'PY' &
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"held\n")
assert s.recv(16) == b"held\n"
open(sys.argv[2] + ".ready", "w").close()
end = time.monotonic() + 20
while time.monotonic() < end and not os.path.exists(sys.argv[2] + ".stop"):
    time.sleep(0.1)
s.close()
PY
	echo $! >"$BATS_TEST_TMPDIR/held.pid"
	for _ in $(seq 100); do [ -e "$held.ready" ] && break; sleep 0.1; done
	[ -e "$held.ready" ]
	main=$(sb systemctl show -p MainPID --value "$svc")
	spawner=$(sb pgrep -P "$main" -x tcpmap-spawner)
	relay=$(sb pgrep -P "$spawner" -x tcpmap-relay | head -1)
	echo "main $main, spawner $spawner ($(sb readlink "/proc/$spawner/exe")), relay $relay"
	# the spawner is the installed static executable, not tcpmapd's image again
	[ "$(sb readlink "/proc/$spawner/exe")" = /usr/lib/tcpmap/tcpmap-spawner ]
	! sb grep -q 'libc\.so' "/proc/$spawner/maps"
	# the relay runs in the service's sandbox and cgroup, as the dynamic user
	[ -n "$relay" ]
	sb grep -q "/system-tcpmap.slice/tcpmap@$F.service" "/proc/$relay/cgroup"
	[ "$(sb stat -c %u "/proc/$relay")" = "$(sb stat -c %u "/proc/$main")" ]
	[ "$(sb stat -c %u "/proc/$relay")" != 0 ]
	touch "$held.stop"
	# each connection's close entry comes from its relay, under the unit
	run wait_close_event 'tcpmap@*' 3001
	echo "$output"
	[ "$status" -eq 0 ]
	read -r pid unit _ _ result _ <<<"$output"
	[ "$unit" = "$svc" ] && [ "$result" = ok ] && [ "$pid" != "$main" ]
	run wait_close_event 'tcpmap@*' 5
	echo "$output"
	[ "$status" -eq 0 ]
	read -r pid unit _ _ result _ <<<"$output"
	[ "$unit" = "$svc" ] && [ "$result" = ok ] && [ "$pid" = "$relay" ]
	# 100 more, back to back: each relay exits the moment its connection is over, and
	# journalctl -u must still find every one's entry (log_flush: journald reads the
	# sender's unit from /proc, gone once the spawner reaps it)
	python3 - "$F" <<'PY'
import socket, sys
for _ in range(100):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
    s.sendall(b"1234567")
    s.shutdown(socket.SHUT_WR)
    got = b""
    while len(got) < 8:
        b = s.recv(16)
        if not b:
            break
        got += b
    assert got == b"1234567", got
    s.close()
PY
	local n=0
	for _ in $(seq 100); do
		n=$(close_events "$svc" | awk '$3 == 7' | wc -l)
		[ "$n" -ge 100 ] && break
		sleep 0.2
	done
	echo "# per_connection_process under $svc: spawner $spawner is /usr/lib/tcpmap/tcpmap-spawner (static), relay $relay logged its close under the unit; $n of 100 quick connections' entries under journalctl -u" >&3
	[ "$n" -eq 100 ]
}

@test "systemd: tcpmap.target stops every tcpmap socket and enable --now tcpmap.target brings them back" {
	# Both sockets enabled, P's moved to Q by the drop-in: enabling links them into
	# tcpmap.target.wants/ and starts the target with them (their Wants=).
	socket_on_p
	move_socket_to_q
	sb systemctl enable --now "tcpmap-inetd@$I.socket"
	relay_roundtrip "$Q" 2999
	[ "$(sb systemctl is-active tcpmap.target)" = active ]
	sb systemctl stop tcpmap.target
	wait_port_free "$Q"
	wait_port_free "$I"
	[ "$(sb systemctl is-active "tcpmap@$P.service")" != active ]
	sb systemctl enable --now tcpmap.target
	relay_roundtrip "$Q" 3000
	relay_roundtrip "$I" 3001
}
