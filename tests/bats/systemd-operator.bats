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

setup_file() { sd_setup_installed; }

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

# hold PORT N NAME: N idle connections, each with one round trip, held until NAME.stop
# appears; prints "opened=K refused=R" to NAME.out once all were tried. Recorded by PID.
hold() {
	python3 - "$@" >"$BATS_TEST_TMPDIR/$3.out" 2>&1 3>&- <<'PY' &
import os, socket, sys, time
port, n, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
d = os.environ["BATS_TEST_TMPDIR"]
held, refused = [], 0
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"x")
        if s.recv(1) != b"x":
            raise OSError("no echo")
        held.append(s)
    except OSError:
        refused += 1
print(f"opened={len(held)} refused={refused}", flush=True)
open(f"{d}/{name}.ready", "w").close()
deadline = time.monotonic() + 120
while not os.path.exists(f"{d}/{name}.stop") and time.monotonic() < deadline:
    time.sleep(0.1)
PY
	echo $! >>"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 600); do [ -e "$BATS_TEST_TMPDIR/$3.ready" ] && return 0; sleep 0.1; done
	return 1
}
mem_current() { sb systemctl show -p MemoryCurrent --value "$1"; }
rss_bytes() { # UNIT: the main process's resident set, in bytes
	local pid kb
	pid=$(sb systemctl show -p MainPID --value "$1")
	kb=$(sb ps -o rss= -p "$pid" | tr -d ' ')
	echo $((kb * 1024))
}

@test "systemd-operator: under MemoryMax= tcpmapd sheds new connections before the limit instead of being OOM-killed (defect 11)" {
	local p svc before after per max pid
	p=$(pick_port)
	svc=tcpmap@$p.service
	mapping "$p" | put_conf
	sb systemctl start "tcpmap@$p.socket"
	sb systemctl set-property --runtime "$svc" MemoryAccounting=yes
	relay_roundtrip "$p" 100
	sleep 1.2
	before=$(rss_bytes "$svc")
	hold "$p" 1000 probe
	sleep 1.2
	after=$(rss_bytes "$svc")
	echo "# cleartext, RSS: $before bytes idle, $after with 1000 idle connections: $(((after - before) / 1000)) bytes per connection" >&3
	touch "$BATS_TEST_TMPDIR/probe.stop"
	# MemoryMax= needs the cgroup v2 memory controller, which a cgroup v1 host does not give
	# the sandbox: the measurement above stands, the shedding cannot be shown here.
	[ "$(mem_current "$svc")" != "[not set]" ] || skip "no cgroup v2 memory controller in the sandbox (measured RSS only)"
	before=$(mem_current "$svc")
	per=$(((after - before) / 1000 + 1))
	sleep 1.5
	# room for about 400 more than what is in use now
	max=$(($(mem_current "$svc") + 400 * per))
	sb systemctl set-property --runtime "$svc" MemoryMax="$max"
	pid=$(sb systemctl show -p MainPID --value "$svc")
	hold "$p" 1500 flood
	cat "$BATS_TEST_TMPDIR/flood.out"
	local opened refused
	opened=$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' "$BATS_TEST_TMPDIR/flood.out")
	refused=$(sed -n 's/.*refused=\([0-9]*\).*/\1/p' "$BATS_TEST_TMPDIR/flood.out")
	echo "# MemoryMax=$max: $opened held, $refused shed" >&3
	[ "$refused" -gt 0 ]
	[ "$opened" -gt 100 ]
	# not killed: the same process serves on, and says why it refused
	[ "$(sb systemctl show -p MainPID --value "$svc")" = "$pid" ]
	sb journalctl --no-pager -u "$svc" | grep -q "refusing new connections (result shed)"
	touch "$BATS_TEST_TMPDIR/flood.stop"
	sleep 2
	relay_roundtrip "$p" 1000
}
