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
	# a v1 memory cgroup made by mem_cgroup lives in the host's tree: empty it, remove it
	if [ -s "$BATS_FILE_TMPDIR/memdirs" ]; then
		sb systemctl stop 'tcpmap*' || true
		mem_cgroup_remove
	fi
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

# hold PORT N NAME [SNI]: N idle connections, each with one round trip (over TLS, sending
# SNI, when given), held until NAME.stop appears; prints "opened=K refused=R" to NAME.out
# once all were tried. Recorded by PID.
hold() {
	python3 - "$@" >"$BATS_TEST_TMPDIR/$3.out" 2>&1 3>&- <<'PY' &
import os, socket, ssl, sys, time
port, n, name = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sni = sys.argv[4] if len(sys.argv) > 4 else None
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
d = os.environ["BATS_TEST_TMPDIR"]
held, refused = [], 0
for i in range(n):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        if sni:
            s = ctx.wrap_socket(s, server_hostname=sni)
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

# mem_cgroup UNIT: make MEMDIR the memory cgroup whose usage and limit tcpmapd reads.
# On cgroup v2 that is the unit's own (systemctl set-property MemoryMax= sets it). On a
# cgroup v1 host the sandbox's systemd does not drive the memory controller (MemoryMax= does
# nothing there), so the main process is moved into a v1 memory cgroup of its own below the
# one it is in, as systemd would place it on a v1 host it manages; tcpmapd finds its new
# cgroup at its next tick. MEMDIR is empty on v2.
mem_cgroup() {
	local pid cg
	MEMDIR=
	[ "$(mem_current "$1")" = "[not set]" ] || return 0
	pid=$(sb systemctl show -p MainPID --value "$1")
	cg=$(sb awk -F: '$2 ~ /(^|,)memory(,|$)/ { print $3 }' "/proc/$pid/cgroup")
	[ -n "$cg" ] && sb test -d /sys/fs/cgroup/memory || return 1
	MEMDIR=/sys/fs/cgroup/memory${cg%/}/tcpmap-test-$pid
	sb mkdir "$MEMDIR"
	echo "$MEMDIR" >>"$BATS_FILE_TMPDIR/memdirs"
	# take what it holds already along, so usage is the process's from the start
	sb sh -c "echo 3 >$MEMDIR/memory.move_charge_at_immigrate" 2>/dev/null || true
	sb sh -c "echo $pid >$MEMDIR/cgroup.procs"
}
mem_usage() { # UNIT
	if [ -n "$MEMDIR" ]; then sb cat "$MEMDIR/memory.usage_in_bytes"; else mem_current "$1"; fi
}
mem_set_max() { # UNIT BYTES
	if [ -n "$MEMDIR" ]; then
		sb sh -c "echo $2 >$MEMDIR/memory.limit_in_bytes"
	else
		sb systemctl set-property --runtime "$1" MemoryMax="$2"
	fi
}
# mem_cgroup_remove: the v1 cgroups made here, once their processes are gone.
mem_cgroup_remove() {
	local d
	[ -f "$BATS_FILE_TMPDIR/memdirs" ] || return 0
	for d in $(cat "$BATS_FILE_TMPDIR/memdirs"); do
		for _ in $(seq 50); do sb rmdir "$d" 2>/dev/null && break; sleep 0.1; done
	done
	: >"$BATS_FILE_TMPDIR/memdirs"
}

# measure UNIT PORT LABEL [SNI]: bytes per idle connection over 1000 of them, by RSS and by
# the memory cgroup's usage; sets PER (the cgroup's figure, at least 1).
measure() {
	local before after cg_before cg_after
	sleep 1.2
	before=$(rss_bytes "$1")
	cg_before=$(mem_usage "$1")
	hold "$2" 1000 "probe-$3" ${4:+"$4"}
	grep -q "opened=1000 " "$BATS_TEST_TMPDIR/probe-$3.out"
	sleep 1.2
	after=$(rss_bytes "$1")
	cg_after=$(mem_usage "$1")
	touch "$BATS_TEST_TMPDIR/probe-$3.stop"
	PER=$(((cg_after - cg_before) / 1000))
	[ "$PER" -ge 1 ] || PER=1
	echo "# $3: $(((after - before) / 1000)) bytes of RSS and $PER of the memory cgroup per idle connection (1000 held; cgroup $([ -n "$MEMDIR" ] && echo v1 || echo v2))" >&3
}

@test "systemd-operator: under MemoryMax= tcpmapd sheds new connections before the limit instead of being OOM-killed (defect 11)" {
	local p svc max pid
	p=$(pick_port)
	svc=tcpmap@$p.service
	mapping "$p" | put_conf
	sb systemctl start "tcpmap@$p.socket"
	sb systemctl set-property --runtime "$svc" MemoryAccounting=yes
	relay_roundtrip "$p" 100
	mem_cgroup "$svc" || skip "no memory cgroup controller in the sandbox"
	measure "$svc" "$p" cleartext
	sleep 1.5
	# shedding starts at 90%: let it start about 1500 connections from now, leaving the last
	# tenth of the limit (some 170 connections' worth) for those let in before it notices
	max=$((($(mem_usage "$svc") + 1500 * PER) * 10 / 9))
	mem_set_max "$svc" "$max"
	pid=$(sb systemctl show -p MainPID --value "$svc")
	hold "$p" 4000 flood
	cat "$BATS_TEST_TMPDIR/flood.out"
	local opened refused
	opened=$(sed -n 's/.*opened=\([0-9]*\).*/\1/p' "$BATS_TEST_TMPDIR/flood.out")
	refused=$(sed -n 's/.*refused=\([0-9]*\).*/\1/p' "$BATS_TEST_TMPDIR/flood.out")
	echo "# limit $max bytes: $opened held, $refused shed, usage now $(mem_usage "$svc")" >&3
	[ "$refused" -gt 0 ]
	[ "$opened" -gt 100 ]
	# not killed: the same process serves on, and says why it refused
	[ "$(sb systemctl show -p MainPID --value "$svc")" = "$pid" ]
	sb journalctl --no-pager -u "$svc" | grep -q "refusing new connections (result shed)"
	touch "$BATS_TEST_TMPDIR/flood.stop"
	sleep 2
	relay_roundtrip "$p" 1000
	sb systemctl stop "tcpmap@$p.socket" "$svc"
	mem_cgroup_remove
}

@test "systemd-operator: bytes per idle TLS-terminated connection, for sizing MemoryMax= (tcpmapd(8), MEMORY)" {
	local p svc
	p=$(pick_port)
	svc=tcpmap@$p.service
	sb sh -c 'umask 022; mkdir -p /etc/tcpmap/secrets/memtls && cd /etc/tcpmap/secrets/memtls &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-subj /CN=mem.example -addext subjectAltName=DNS:mem.example \
			-keyout tls.key -out tls.crt' 2>/dev/null
	{
		printf -- '---\napiVersion: getambassador.io/v3alpha1\nkind: TLSContext\nmetadata:\n  name: memtls\nspec:\n  hosts: [mem.example]\n  secret: memtls\n'
		mapping "$p" "host: mem.example"
	} | put_conf
	# the key reaches the service as tcpmap-units(7) says: a credential for this instance
	sb sh -c "mkdir -p '/etc/systemd/system/$svc.d' &&
		printf '[Service]\nLoadCredential=memtls.crt:/etc/tcpmap/secrets/memtls/tls.crt\nLoadCredential=memtls.key:/etc/tcpmap/secrets/memtls/tls.key\n' >'/etc/systemd/system/$svc.d/creds.conf' &&
		systemctl daemon-reload"
	sb systemctl start "tcpmap@$p.socket"
	sb systemctl set-property --runtime "$svc" MemoryAccounting=yes
	hold "$p" 1 warm mem.example
	cat "$BATS_TEST_TMPDIR/warm.out"
	grep -q "opened=1 " "$BATS_TEST_TMPDIR/warm.out"
	touch "$BATS_TEST_TMPDIR/warm.stop"
	mem_cgroup "$svc" || skip "no memory cgroup controller in the sandbox"
	measure "$svc" "$p" tls mem.example
	sb systemctl stop "tcpmap@$p.socket" "$svc"
	mem_cgroup_remove
	reset_units
}

@test "systemd-operator: tcpmapctl reload checks first, reloads every running instance, and exits 1 when one rejected the config" {
	reset_units
	local a b out
	a=$(pick_port) && b=$(pick_port "$a")
	{ mapping "$a"; mapping "$b"; } | put_conf
	sb systemctl start "tcpmap@$a.socket" "tcpmap@$b.socket"
	sb systemctl start "tcpmap@$a.service" "tcpmap@$b.service"
	run sb tcpmapctl reload
	echo "$output"
	[ "$status" -eq 0 ]
	grep -Eq "^reloaded: tcpmap@$a.service: config generation 2$" <<<"$output"
	grep -Eq "^reloaded: tcpmap@$b.service: config generation 2$" <<<"$output"

	# a config with errors is not sent to anyone
	{ mapping "$a" "weight: 150"; mapping "$b"; } | put_conf
	run sb tcpmapctl reload
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"nothing was reloaded"* ]]
	[[ "$(sb systemctl show -p StatusText --value "tcpmap@$a.service")" == *"config generation 2" ]]

	# a config check passes as root, but A's dynamic user cannot read its secret (no
	# credential): A rejects it, where `systemctl reload` would have said nothing; B, which
	# does not serve that listener, takes it
	sb sh -c 'umask 022; mkdir -p /etc/tcpmap/secrets && umask 077 && mkdir -p /etc/tcpmap/secrets/rk &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-subj /CN=rk.example -keyout /etc/tcpmap/secrets/rk/tls.key -out /etc/tcpmap/secrets/rk/tls.crt' 2>/dev/null
	{
		printf -- '---\napiVersion: getambassador.io/v3alpha1\nkind: TLSContext\nmetadata:\n  name: rk\nspec:\n  hosts: [rk.example]\n  secret: rk\n'
		mapping "$a" "host: rk.example"
		mapping "$b"
	} | put_conf
	sb tcpmapctl check
	run sb systemctl reload "tcpmap@$a.service"
	[ "$status" -eq 0 ] # what tcpmapctl reload is for
	run sb tcpmapctl reload
	echo "$output"
	[ "$status" -eq 1 ]
	grep -Eq "^rejected: tcpmap@$a.service keeps config generation 2 " <<<"$output"
	grep -Eq "^reloaded: tcpmap@$b.service: config generation 3$" <<<"$output"
	# only the units named
	run sb tcpmapctl reload "tcpmap@$b.service"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c . <<<"$output")" -eq 1 ]
	sb rm -rf /etc/tcpmap/secrets/rk
	reset_units
}
