#!/usr/bin/env bats
# systemd-generator.bats — issue 16: the YAML alone decides what listens. tcpmap-generator(8)
# writes a socket unit instance for every listener of /etc/tcpmap once tcpmap.target is
# enabled, and `tcpmapctl apply` checks the config, reruns it, opens new ports, closes removed
# ones and reloads the rest without dropping a connection. All in the private systemd of
# tests/lib/sandbox.sh; the clients and the echo upstream are on the host's loopback.
#
# It never boots systemd any other way than through sandbox.sh, teardown_file powers it off,
# and every process started on the host is stopped by PID.

load ../lib/systemd

SD_PORT_MIN=6000
SD_PORT_SPAN=1000
CONF=/etc/tcpmap/tcpmap.yaml

# write_conf SPEC...: one plain mapping to the echo upstream per SPEC, "PORT" (every address)
# or "ADDRESS@PORT".
write_conf() {
	local spec addr port
	for spec in "$@"; do
		addr= port=$spec
		case $spec in *@*) addr=${spec%@*} port=${spec##*@} ;; esac
		printf -- '---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: m%s\nspec:\n  port: %s\n  service: 127.0.0.1:%s\n' \
			"$port" "$port" "$UP"
		[ -z "$addr" ] || printf '  address: "%s"\n' "$addr"
	done | sb sh -c "umask 022; mkdir -p /etc/tcpmap; cat >$CONF"
}

# The listen addresses of the active tcpmap sockets, one per line, sorted.
listening() {
	sb systemctl list-sockets --no-legend --plain 'tcpmap@*' | awk '{print $1}' | sort
}

refused() { # HOST PORT: a connection is refused
	! python3 -c 'import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)' "$1" "$2" 2>/dev/null
}

setup_file() {
	sd_require || return 0
	sd_choose_build
	: >"$BATS_FILE_TMPDIR/pids"
	export UP P1 P2 P3 P4
	UP=$(pick_port)
	P1=$(pick_port "$UP")
	P2=$(pick_port "$UP" "$P1")
	P3=$(pick_port "$UP" "$P1" "$P2")
	P4=$(pick_port "$UP" "$P1" "$P2" "$P3")
	start_echo "$UP"
	sd_start
	sd_install
	write_conf "127.0.0.1@$P1" "::1@$P2" "$P3"
}

setup() { sd_skip_unavailable; }

teardown_file() {
	sd_stop
	sd_kill_recorded
}

@test "generator: nothing is generated while tcpmap.target is not enabled" {
	sb systemctl daemon-reload
	run sb sh -c 'ls /run/systemd/generator/tcpmap.target.wants 2>/dev/null'
	echo "$output"
	[ -z "$output" ]
	[ -z "$(listening)" ]
}

@test "generator: apply makes exactly the config's three listeners listen, and each relays" {
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"3 listeners in the config, 3 opened, 0 closed"* ]]
	run listening
	echo "$output"
	[ "$output" = "$(printf '127.0.0.1:%s\n[::1]:%s\n[::]:%s' "$P1" "$P2" "$P3" | sort)" ]
	relay_roundtrip "$P1" 1001
	roundtrip_to ::1 "$P2" 1002
	relay_roundtrip "$P3" 1003
	roundtrip_to ::1 "$P3" 1004
	# review equals what was written
	run sb tcpmapctl units
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^tcpmap.target.wants/' <<<"$output")" -eq 3 ]
	[ "$(sb systemctl is-enabled tcpmap.target)" = enabled ]
}

@test "generator: an edit that drops P1 and adds P4, applied, closes P1, opens P4, and a stream on P3 runs on intact" {
	local line
	start_stream s3 --port "$P3" --connections 4 --rate 131072 --max-seconds 120
	write_conf "::1@$P2" "$P3" "$P4"
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"closed: tcpmap@127.0.0.1:$P1.socket"* ]]
	[[ "$output" == *"listening: tcpmap@$P4.socket"* ]]
	mark_stream s3
	wait_port_free "$P1"
	refused 127.0.0.1 "$P1"
	relay_roundtrip "$P4" 2001
	roundtrip_to ::1 "$P2" 2002
	sleep 1
	finish_stream_ok s3
	line=$(grep '^connections=' <<<"$output")
	[ "$(field "$line" connections)" = 4 ]
	[ "$(field "$line" intact)" = 4 ]
	# each went on relaying after the apply, through the same process: nothing was dropped
	for c in 0 1 2 3; do
		line=$(grep "^conn=$c " <<<"$output")
		[ "$(field "$line" recv_after_mark)" -gt 0 ]
	done
}

@test "generator: a broken config changes nothing; the sockets stay and the journal says why" {
	local cursor before
	before=$(listening)
	cursor=$(journal_cursor)
	sb sh -c "printf -- '---\nkind: TCPMapping\napiVersion: getambassador.io/v3alpha1\nmetadata: {name: broken}\nspec: {port: notaport, service: x}\n' >>$CONF"
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"nothing was changed"* ]]
	# systemd reruns the generator on its own too: it writes nothing and says why
	sb systemctl daemon-reload
	run sb sh -c 'ls /run/systemd/generator/tcpmap.target.wants 2>/dev/null'
	[ -z "$output" ]
	[ "$(listening)" = "$before" ]
	relay_roundtrip "$P4" 3001
	run journal_after "$cursor"
	[[ "$output" == *"no socket units generated"* ]]
	write_conf "::1@$P2" "$P3" "$P4"
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"3 listeners in the config, 0 opened, 0 closed"* ]]
}

# write_models THREADED_PORT... -- PER_CONNECTION_PORT...: a v2 mapping (the extension's
# document version) to the echo upstream per port, every address; those after "--" say
# per_connection_unit: true.
write_models() {
	local port unit=
	for port in "$@"; do
		[ "$port" = -- ] && { unit=1; continue; }
		printf -- '---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: m%s\nspec:\n  port: %s\n  service: 127.0.0.1:%s\n' \
			"$port" "$port" "$UP"
		[ -z "$unit" ] || printf '  per_connection_unit: true\n'
	done | sb sh -c "umask 022; cat >$CONF"
}

# close_mappings UNITGLOB CURSOR: "UNIT MAPPING BYTES_IN" of each close event after CURSOR.
close_mappings() {
	journal_after "$2" | python3 -c '
import fnmatch, json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("TCPMAP_EVENT") == "close" and fnmatch.fnmatch(e.get("_SYSTEMD_UNIT", ""), sys.argv[1]):
        print(e.get("_SYSTEMD_UNIT"), e.get("TCPMAP_MAPPING"), e.get("TCPMAP_BYTES_IN"))
' "$1"
}

# warnings_of UNIT CURSOR: the messages UNIT logged at warning or worse after CURSOR.
warnings_of() {
	journal_after "$2" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("_SYSTEMD_UNIT") == sys.argv[1] and int(e.get("PRIORITY", 6)) <= 4:
        print(e.get("MESSAGE"))
' "$1"
}

# wait_close UNITGLOB CURSOR BYTES_IN: the close event with BYTES_IN, within 15 s (systemd
# starts a tcpmap-inetd@ unit in 40 ms when idle, seconds on a loaded 2-core machine).
wait_close() {
	local ev
	for _ in $(seq 150); do
		ev=$(close_mappings "$1" "$2" | awk -v n="$3" '$3 == n' | tail -1)
		[ -n "$ev" ] && { echo "$ev"; return 0; }
		sleep 0.1
	done
	echo "no close event of $1 with TCPMAP_BYTES_IN=$3 in 15 s" >&2
	return 1
}

@test "generator: per_connection_unit picks tcpmap-inetd@ per listener, and an apply moves a port between the models" {
	local Q1 Q2 cursor ev1 ev2 ev
	Q1=$(pick_port "$UP" "$P1" "$P2" "$P3" "$P4")
	Q2=$(pick_port "$UP" "$P1" "$P2" "$P3" "$P4" "$Q1")
	write_models "$Q1" -- "$Q2"
	run sb tcpmapctl units
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"tcpmap.target.wants/tcpmap@$Q1.socket -> "*"/tcpmap@.socket"* ]]
	[[ "$output" == *"tcpmap.target.wants/tcpmap-inetd@$Q2.socket -> "*"/tcpmap-inetd@.socket"*"a unit per connection"* ]]
	cursor=$(journal_cursor)
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"listening: tcpmap@$Q1.socket"* ]]
	[[ "$output" == *"listening: tcpmap-inetd@$Q2.socket"* ]]
	[[ "$output" == *"2 listeners in the config, 2 opened"* ]]
	run sb systemctl list-sockets --no-legend --plain 'tcpmap*'
	echo "$output"
	[ "$(awk '{print $1, $2}' <<<"$output" | sort)" = "$(printf '[::]:%s tcpmap-inetd@%s.socket\n[::]:%s tcpmap@%s.socket' "$Q2" "$Q2" "$Q1" "$Q1" | sort)" ]
	[ "$(sb systemctl show -p Accept --value "tcpmap-inetd@$Q2.socket")" = yes ]
	[ "$(sb systemctl show -p Accept --value "tcpmap@$Q1.socket")" = no ]
	relay_roundtrip "$Q1" 4001
	relay_roundtrip "$Q2" 4002
	roundtrip_to ::1 "$Q2" 4003
	# the threaded port in its one service; each connection of the other in a unit of its own,
	# which routed its own listener's mapping
	ev=$(wait_close 'tcpmap@*' "$cursor" 4001)
	[ "$ev" = "tcpmap@$Q1.service m$Q1 4001" ]
	ev1=$(wait_close 'tcpmap-inetd@*' "$cursor" 4002)
	ev2=$(wait_close 'tcpmap-inetd@*' "$cursor" 4003)
	echo "$ev1 / $ev2"
	[[ "$ev1" == "tcpmap-inetd@"*"-127.0.0.1:$Q2-127.0.0.1:"*".service m$Q2 4002" ]]
	[[ "$ev2" == "tcpmap-inetd@"*":$Q2-"*".service m$Q2 4003" ]]
	[ "${ev1%% *}" != "${ev2%% *}" ]
	# the threaded service knows Q2 is served elsewhere and says nothing of it
	run warnings_of "tcpmap@$Q1.service" "$cursor"
	echo "$output"
	[[ "$output" != *"$Q2"* ]]

	# flip Q2 to the threaded model: its inetd socket closes first, then tcpmap@Q2 binds
	write_models "$Q1" "$Q2"
	cursor=$(journal_cursor)
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"closed: tcpmap-inetd@$Q2.socket"* ]]
	[[ "$output" == *"listening: tcpmap@$Q2.socket"* ]]
	[[ "$output" == *"2 listeners in the config, 1 opened, 1 closed"* ]]
	[[ "$output" != *failed* ]]
	run sb systemctl list-sockets --no-legend --plain 'tcpmap*'
	echo "$output"
	[ "$(awk '{print $2}' <<<"$output" | sort)" = "$(printf 'tcpmap@%s.socket\ntcpmap@%s.socket' "$Q1" "$Q2" | sort)" ]
	[ "$(sb systemctl is-active "tcpmap-inetd@$Q2.socket")" != active ]
	relay_roundtrip "$Q2" 4004
	ev=$(wait_close 'tcpmap@*' "$cursor" 4004)
	[ "$ev" = "tcpmap@$Q2.service m$Q2 4004" ]
	relay_roundtrip "$Q1" 4005

	# and back: the running tcpmap@Q2 socket and service close before tcpmap-inetd@Q2 binds
	write_models "$Q1" -- "$Q2"
	cursor=$(journal_cursor)
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"closed: tcpmap@$Q2.socket"* ]]
	[[ "$output" == *"listening: tcpmap-inetd@$Q2.socket"* ]]
	[[ "$output" != *failed* ]]
	[ "$(sb systemctl is-active "tcpmap@$Q2.service")" != active ]
	relay_roundtrip "$Q2" 4006
	ev=$(wait_close 'tcpmap-inetd@*' "$cursor" 4006)
	[[ "$ev" == "tcpmap-inetd@"*":$Q2-"*".service m$Q2 4006" ]]
	relay_roundtrip "$Q1" 4007
}

@test "generator: mappings of one listener that disagree on per_connection_unit change nothing" {
	local before
	before=$(sb systemctl list-sockets --no-legend --plain 'tcpmap*' | awk '{print $2}' | sort)
	sb sh -c "printf -- '---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: other}\nspec: {port: $P1, service: 127.0.0.1:$UP, per_connection_unit: true}\n---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: again}\nspec: {port: $P1, service: 127.0.0.1:$UP}\n' >>$CONF"
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"per_connection_unit: differs from mapping \"other\""* ]]
	[[ "$output" == *"nothing was changed"* ]]
	[ "$(sb systemctl list-sockets --no-legend --plain 'tcpmap*' | awk '{print $2}' | sort)" = "$before" ]
}

@test "generator: tcpmap-units(7)'s process-model recipe gives tcpmap-inetd@PORT.socket, and it relays" {
	local recipe Q
	recipe=$(man_recipe tcpmap-units.7 process-model)
	echo "$recipe"
	[[ "$recipe" == *"per_connection_unit: true"* ]]
	Q=$(pick_port "$UP" "$P1" "$P2" "$P3" "$P4")
	# the page's YAML as written, with this test's port and echo upstream for 2222 and upstream:22
	sed -e "s/port: 2222/port: $Q/" -e "s/service: upstream:22/service: 127.0.0.1:$UP/" <<<"$recipe" |
		sb sh -c "umask 022; cat >$CONF"
	run sb tcpmapctl apply
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"listening: tcpmap-inetd@$Q.socket"* ]]
	[ "$(sb systemctl show -p Accept --value "tcpmap-inetd@$Q.socket")" = yes ]
	[ "$(listening)" = "" ]
	relay_roundtrip "$Q" 4101
}
