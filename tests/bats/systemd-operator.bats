#!/usr/bin/env bats
# systemd-operator.bats — issue 23, what an operator hits following the docs, in the private
# systemd of tests/lib/sandbox.sh: `systemctl stop` logs every live connection, a port never
# goes down because of another port's credential, listener warnings point at the instance
# that has the problem, memory limits shed before the kernel kills, and a rejected reload is
# seen by `tcpmapctl reload`.
#
# It never boots systemd any other way than through tests/lib/sandbox.sh, and teardown_file
# always powers the sandbox off. Every process it starts on the host is stopped by its PID.
# The sandbox shares the host's network namespace: clients and upstreams are on loopback.

load ../lib/systemd

SD_PORT_MIN=8000
SD_PORT_SPAN=1000
CONF=/etc/tcpmap/tcpmap.yaml

# mapping PORT [SPEC_LINE...]: one plain TCPMapping document to the echo upstream.
mapping() {
	local p=$1 line
	shift
	printf -- '---\napiVersion: getambassador.io/v3alpha1\nkind: TCPMapping\nmetadata:\n  name: m%s\nspec:\n  port: %s\n  service: 127.0.0.1:%s\n' "$p" "$p" "$UP"
	for line in "$@"; do echo "  $line"; done
}

# put_conf: stdin becomes the sandbox's config.
put_conf() { sb sh -c "umask 022; mkdir -p /etc/tcpmap; cat >$CONF"; }

reset_units() {
	sb systemctl stop 'tcpmap*' || true
	sb systemctl reset-failed 'tcpmap*' || true
	sb sh -c 'rm -rf /etc/systemd/system/tcpmap*.d /run/systemd/system/tcpmap*.d'
	sb systemctl daemon-reload
}

# json_events UNIT CURSOR EVENT: "RESULT BYTES_IN BYTES_OUT" per EVENT entry after CURSOR.
json_events() {
	journal_after "$2" -u "$1" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("TCPMAP_EVENT") == sys.argv[1]:
        print(e.get("TCPMAP_RESULT"), e.get("TCPMAP_BYTES_IN"), e.get("TCPMAP_BYTES_OUT"))
' "$3"
}

# active_total: the sum of "active" over every cluster of the breaker table.
active_total() {
	sb tcpmapctl status --json | python3 -c '
import json, sys
print(sum(c["active"] for c in json.load(sys.stdin)["clusters"]))'
}

setup_file() {
	sd_require || return 0
	sd_choose_build
	export UP
	UP=$(pick_port)
	: >"$BATS_FILE_TMPDIR/pids"
	start_echo "$UP"
	sd_start
	sd_install
}

setup() { sd_skip_unavailable; }

teardown() {
	[ -z "${SD_SKIP:-}" ] || return 0
	reset_units
}

teardown_file() {
	sd_stop
	sd_kill_recorded
}

@test "systemd-operator: systemctl stop logs a close with result and bytes for every live spliced connection (defect 5)" {
	local p svc cursor
	p=$(pick_port)
	svc=tcpmap@$p.service
	mapping "$p" | put_conf
	sb systemctl start "tcpmap@$p.socket"
	relay_roundtrip "$p" 1000 # starts the service
	start_stream live --port "$p" --connections 5 --rate 16384 --allow-close --max-seconds 60
	[ "$(active_total)" -ge 5 ]
	cursor=$(journal_cursor)
	sb systemctl stop "$svc" 2>/dev/null
	run json_events "$svc" "$cursor" close
	echo "$output"
	sb journalctl --no-pager -u "$svc" -n 30
	[ "${#lines[@]}" -eq 5 ]
	[ "$(grep -c '^shutdown [1-9][0-9]* [1-9][0-9]*$' <<<"$output")" -eq 5 ]
	# nothing went to the fd store, and no slot is left held
	[ "$(sb systemctl show -p NFileDescriptorStore --value "$svc")" = 0 ]
	[ "$(active_total)" = 0 ]
	run finish_stream live 200
	echo "$output"
	# a restart still hands them over: no close, the same connections go on
	start_stream again --port "$p" --connections 3 --rate 16384 --max-seconds 60
	cursor=$(journal_cursor)
	sb systemctl restart "$svc"
	[ -z "$(json_events "$svc" "$cursor" close)" ]
	[ "$(journal_after "$cursor" -u "$svc" | grep -c '"TCPMAP_EVENT":"adopt"')" -eq 3 ]
	finish_stream_ok again
}

@test "systemd-operator: a reload warns only about the instance's own socket that lost its mapping (defect 4)" {
	local a b cursor st
	a=$(pick_port) && b=$(pick_port "$a")
	{ mapping "$a"; mapping "$b"; } | put_conf
	sb systemctl start "tcpmap@$a.socket" "tcpmap@$b.socket"
	relay_roundtrip "$a" 100
	relay_roundtrip "$b" 100
	# both mapped: A's reload has nothing to say about B's port
	cursor=$(journal_cursor)
	sb systemctl reload "tcpmap@$a.service"
	sleep 0.5
	run journal_after "$cursor" -u "tcpmap@$a.service"
	echo "$output"
	[[ "$output" != *"has no listening socket"* ]]
	[[ "$output" != *"has no mapping"* ]]
	# A's mapping removed: A's reload says its own socket will close every connection
	mapping "$b" | put_conf
	cursor=$(journal_cursor)
	sb systemctl reload "tcpmap@$a.service"
	for _ in $(seq 30); do
		journal_after "$cursor" -u "tcpmap@$a.service" | grep -q "has no mapping" && break
		sleep 0.1
	done
	journal_after "$cursor" -u "tcpmap@$a.service" | grep -q "socket \[\?[0-9a-f:.]*\]\?:$a has no mapping in config generation 3"
	st=$(sb systemctl show -p StatusText --value "tcpmap@$a.service")
	echo "$st"
	[[ "$st" == *"1 socket without a mapping"* ]]
	# B's reload of the same config has nothing to warn about
	cursor=$(journal_cursor)
	sb systemctl reload "tcpmap@$b.service"
	sleep 0.5
	! journal_after "$cursor" -u "tcpmap@$b.service" | grep -q "has no mapping\|has no listening socket"
	# and a fresh start of A says it too, in the log and in STATUS=
	sb systemctl restart "tcpmap@$a.service"
	st=$(sb systemctl show -p StatusText --value "tcpmap@$a.service")
	echo "$st"
	[[ "$st" == *"1 socket without a mapping"* ]]
}
