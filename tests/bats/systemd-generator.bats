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
