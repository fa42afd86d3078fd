#!/usr/bin/env bats
# systemd-restart.bats — issue 8: live connections survive `systemctl restart` and a binary
# upgrade of tcpmap@.service, handed over through systemd's fd store, in the private systemd
# of tests/lib/sandbox.sh (systemd 252).
#
# Each connection is tests/lib/stream.py streaming checksummed bytes both ways against an echo
# upstream on the host's loopback; a test passes only when every byte came back, in order.
# It never boots systemd other than through sandbox.sh, teardown_file always powers it off
# and then checks nothing of it is left, and every process started here is stopped by PID.

load ../lib/systemd

SD_PORT_MIN=64500
SD_PORT_SPAN=1000
MID_ADOPT=$(sed -n 's/^#define TCPMAP_MID_ADOPT "\([0-9a-f]*\)"$/\1/p' "$ROOT/lib/log.h")
VERSION=$(sed -n 's/^VERSION := //p' "$ROOT/Makefile")
UPGRADE_VERSION=$VERSION-upgrade
# not systemd-upgrade.bats's directory: the two files may run at once (tests/run.sh)
UPGRADE_BUILD=build-upgrade-restart
TLS_NAME=restart.example.test

# ---- the two services ---------------------------------------------------------------

# tcpmap@PORT, moved to loopback only by a drop-in (see setup_file).
svc_clear() { echo "tcpmap@$P.service"; }
svc_tls() { echo "tcpmap@$T.service"; }

fdstore_count() { sb systemctl show -p NFileDescriptorStore --value "$1"; }

# wait_fdstore UNIT N: bounded wait (5 s) until UNIT's fd store holds N fds.
wait_fdstore() {
	local n=
	for _ in $(seq 50); do
		n=$(fdstore_count "$1")
		[ "$n" = "$2" ] && return 0
		sleep 0.1
	done
	echo "$1: NFileDescriptorStore=$n, wanted $2" >&2
	return 1
}

# setup: every test starts with both sockets listening, both services running, and a fresh
# start-rate window (systemd refuses a 6th start within 10 s; reset-failed clears the count).
setup() {
	sd_skip_unavailable
	sb systemctl reset-failed "$(svc_clear)" "$(svc_tls)" "tcpmap@$P.socket" "tcpmap@$T.socket" 2>/dev/null || true
	sb systemctl start "tcpmap@$P.socket" "tcpmap@$T.socket" "$(svc_clear)" "$(svc_tls)"
}

# A test that failed half-way may leave its streams running: stop them by PID.
teardown() { sd_stop_test_pids; }

# restart UNIT: `systemctl restart`, and a new main process that is up. Prints its PID.
restart() {
	local old new
	old=$(main_pid "$1")
	sb systemctl restart "$1" || { sb systemctl status --no-pager "$1" >&2; return 1; }
	new=$(main_pid "$1")
	if [ "$new" = 0 ] || [ "$new" = "$old" ] || [ "$(sb systemctl is-active "$1")" != active ]; then
		echo "$1: restart left MainPID=$new (was $old), $(sb systemctl is-active "$1")" >&2
		return 1
	fi
	echo "$new"
}

# ---- the journal --------------------------------------------------------------------

# ready_line UNIT PID: the MESSAGE of PID's "ready" event.
ready_line() {
	sb journalctl --no-pager -o cat -u "$1" _PID="$2" TCPMAP_EVENT=ready
}

# ---- tcpmapctl status ---------------------------------------------------------------

# breaker_active: "active" of the clear mapping's cluster (service 127.0.0.1:UP, limit 1000).
# breaker_limit: its max_connections as the table reports it.
breaker_active() {
	sb tcpmapctl status --runtime-dir /run/tcpmap --json | python3 -c '
import json, sys
svc, found = sys.argv[1] + "|", []
for c in json.load(sys.stdin)["clusters"]:
    # The key is service|tls|origination|max_connections|max_pending.
    if c["cluster"].startswith(svc) and c["cluster"].split("|")[3] == "1000":
        found.append(c["active"])
print(found[0] if len(found) == 1 else "clusters=%d" % len(found))
' "127.0.0.1:$UP"
}

breaker_limit() {
	sb tcpmapctl status --runtime-dir /run/tcpmap --json | python3 -c '
import json, sys
svc = sys.argv[1] + "|"
print(*[c["max_connections"] for c in json.load(sys.stdin)["clusters"]
        if c["cluster"].startswith(svc) and c["cluster"].split("|")[3] == "1000"])
' "127.0.0.1:$UP"
}

# wait_breaker_active N: bounded wait (5 s) for exactly N.
wait_breaker_active() {
	local a=
	for _ in $(seq 50); do
		a=$(breaker_active)
		[ "$a" = "$1" ] && return 0
		sleep 0.1
	done
	echo "breaker active=$a, wanted $1" >&2
	sb tcpmapctl status --runtime-dir /run/tcpmap >&2
	return 1
}

# The same count from outside lib/breaker.c, as status.bats does: the clients' connections to
# tcpmapd's port P, and the connections the echo upstream on UP (the clear mapping's only
# service) has accepted and not closed.
clients_on() { ss -Htn state established "( dport = :$1 )" 2>/dev/null | wc -l; }
accepted_on() { ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l; }

# wait_counted_everywhere N: bounded wait (5 s) until the breaker table, the clients and the
# upstream all count N for the clear mapping.
wait_counted_everywhere() {
	local c u
	wait_breaker_active "$1"
	for _ in $(seq 50); do
		c=$(clients_on "$P")
		u=$(accepted_on "$UP")
		[ "$c" = "$1" ] && [ "$u" = "$1" ] && return 0
		sleep 0.1
	done
	echo "breaker active=$(breaker_active), clients connected to $P: $c, upstream $UP accepted: $u; wanted $1" >&2
	return 1
}


# ---- setup --------------------------------------------------------------------------

setup_file() {
	sd_require || return 0
	sd_choose_build
	: >"$BATS_FILE_TMPDIR/pids"
	export P T L UP UP2 PKI=$BATS_FILE_TMPDIR/pki
	P=$(pick_port)
	T=$(pick_port "$P")
	L=$(pick_port "$P" "$T")
	UP=$(pick_port "$P" "$T" "$L")
	UP2=$(pick_port "$P" "$T" "$L" "$UP")
	start_echo "$UP"
	start_echo "$UP2"
	sd_make_server_pki "$PKI" tcpmap-restart-ca "$TLS_NAME"

	sd_start
	# The secret root-only, handed in with LoadCredential= to the TLS port's instance alone,
	# as tcpmap-units(7) says. (This once failed with EACCES: not on the credential, which the
	# service reads fine, but in the cleartext ports' instances, which read every secret of
	# the config then and were given none. An instance now loads only its listeners' secrets.)
	sb sh -c 'umask 022; mkdir -p /etc/tcpmap && umask 077 && mkdir -p /etc/tcpmap/secrets/restartsecret'
	sb sh -c 'umask 077; cat >/etc/tcpmap/secrets/restartsecret/tls.crt' <"$PKI/server.crt"
	sb sh -c 'umask 077; cat >/etc/tcpmap/secrets/restartsecret/tls.key' <"$PKI/server.key"
	sb sh -c "mkdir -p '/etc/systemd/system/tcpmap@$T.service.d' &&
		printf '[Service]\nLoadCredential=restartsecret.crt:/etc/tcpmap/secrets/restartsecret/tls.crt\nLoadCredential=restartsecret.key:/etc/tcpmap/secrets/restartsecret/tls.key\n' \
			>'/etc/systemd/system/tcpmap@$T.service.d/creds.conf'"
	sb sh -c 'umask 022; mkdir -p /etc/tcpmap; cat >/etc/tcpmap/tcpmap.yaml' <<-EOF
		---
		apiVersion: getambassador.io/v3alpha1
		kind: Module
		metadata:
		  name: ambassador
		spec:
		  config:
		    drain_timeout_ms: 2000
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: restart-clear
		spec:
		  port: $P
		  address: 127.0.0.1
		  service: 127.0.0.1:$UP
		  circuit_breakers:
		  - max_connections: 1000
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TLSContext
		metadata:
		  name: restart-tls
		spec:
		  hosts:
		  - $TLS_NAME
		  secret: restartsecret
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: restart-tls
		spec:
		  port: $T
		  address: 127.0.0.1
		  host: $TLS_NAME
		  service: 127.0.0.1:$UP2
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: restart-address
		spec:
		  port: $L
		  address: 127.0.0.1
		  service: 127.0.0.1:$UP2
	EOF
	# Loopback only: a drop-in as `systemctl edit tcpmap@PORT.socket` makes it.
	for p in "$P" "$T"; do
		sb sh -c "mkdir -p '/etc/systemd/system/tcpmap@$p.socket.d' &&
			printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$p\n' >'/etc/systemd/system/tcpmap@$p.socket.d/loopback.conf'"
	done
	sd_install
	sb systemctl daemon-reload
	sb systemctl start "tcpmap@$P.socket" "tcpmap@$T.socket"
	sb systemctl start "$(svc_clear)" "$(svc_tls)" || {
		sb journalctl --no-pager -n 60 -u 'tcpmap@*' >&2
		return 1
	}
}

teardown_file() {
	local leftover=0
	sd_stop
	sd_kill_recorded
	# Nothing of the sandbox may outlive the file: no state, no listener, no process.
	[ ! -e "$BATS_FILE_TMPDIR/sandbox" ] || { echo "sandbox state left behind" >&2; leftover=1; }
	for p in ${P:-} ${T:-} ${L:-}; do
		wait_port_free "$p" || { echo "port $p still listening" >&2; leftover=1; }
	done
	sd_recorded_gone || leftover=1
	return "$leftover"
}

# ---- the tests ----------------------------------------------------------------------

@test "restart: one stream survives systemctl restart with no byte lost, handed over and adopted" {
	local svc old new line
	svc=$(svc_clear)
	old=$(main_pid "$svc")
	start_stream one --port "$P" --connections 1 --rate 262144 --max-seconds 120
	sleep 1
	new=$(restart "$svc")
	mark_stream one
	sleep 1
	finish_stream_ok one
	line=$(grep '^conn=0 ' <<<"$output")
	[ "$(field "$line" intact)" = 1 ]
	[ "$(field "$line" sent_sha256)" = "$(field "$line" recv_sha256)" ]
	# It went on relaying through the new process, not just drained.
	[ "$(field "$line" recv_after_mark)" -gt 0 ]
	wait_unit_events "$svc" "$old" handover "" 1
	wait_unit_events "$svc" "$new" adopt "" 1 "$MID_ADOPT"
	# The new process removed what it adopted from the store.
	wait_fdstore "$svc" 0
}

@test "restart: one stream survives an upgrade that swaps the binary between two builds" {
	local svc old up down line
	svc=$(svc_clear)
	make -C "$ROOT" -s SAN=0 BUILD="$UPGRADE_BUILD" VERSION="$UPGRADE_VERSION" \
		"$UPGRADE_BUILD/tcpmapd" "$UPGRADE_BUILD/tcpmap-tls.so" >&2
	[ "$("$ROOT/$UPGRADE_BUILD/tcpmapd" --version)" = "tcpmapd $UPGRADE_VERSION" ]
	old=$(main_pid "$svc")
	start_stream up --port "$P" --connections 1 --rate 262144 --max-seconds 120
	sleep 1
	# as a package upgrade does: the binary and its TLS module together (the config has a
	# TLSContext, and a module from another version is refused)
	sb install -m755 "$ROOT/$UPGRADE_BUILD/tcpmapd" /usr/sbin/tcpmapd
	sb install -m644 "$ROOT/$UPGRADE_BUILD/tcpmap-tls.so" /usr/lib/tcpmap/tcpmap-tls.so
	up=$(restart "$svc")
	mark_stream up
	sleep 1
	# ... and back down to the build the suite installed.
	sb install -m755 "$SB_BUILD/tcpmapd" /usr/sbin/tcpmapd
	sb install -m644 "$SB_BUILD/tcpmap-tls.so" /usr/lib/tcpmap/tcpmap-tls.so
	down=$(restart "$svc")
	sleep 1
	finish_stream_ok up
	line=$(grep '^conn=0 ' <<<"$output")
	[ "$(field "$line" sent_sha256)" = "$(field "$line" recv_sha256)" ]
	[ "$(field "$line" recv_after_mark)" -gt 0 ]
	run ready_line "$svc" "$up"
	echo "upgraded ($up): $output"
	[[ "$output" == "tcpmapd $UPGRADE_VERSION ready"* ]]
	run ready_line "$svc" "$down"
	echo "downgraded ($down): $output"
	[[ "$output" == "tcpmapd $VERSION ready"* ]]
	wait_unit_events "$svc" "$old" handover "" 1
	wait_unit_events "$svc" "$up" adopt "" 1 "$MID_ADOPT"
	wait_unit_events "$svc" "$up" handover "" 1
	wait_unit_events "$svc" "$down" adopt "" 1 "$MID_ADOPT"
	wait_fdstore "$svc" 0
}

@test "restart: 100 live connections survive 10 restarts in a row" {
	local svc pids=() i pid prev ev active=
	svc=$(svc_clear)
	pids+=("$(main_pid "$svc")")
	# 16 KiB/s each way per connection: modest, but always some bytes in flight.
	start_stream hundred --port "$P" --connections 100 --rate 16384 --max-seconds 240
	wait_counted_everywhere 100
	for i in $(seq 10); do
		pid=$(restart "$svc")
		pids+=("$pid")
		# Over 2 s apart: systemd allows 5 starts in 10 s (StartLimitBurst=), and a refused
		# start would fail the unit and flush the store with every connection in it.
		sleep 2.1
	done
	mark_stream hundred
	sleep 1
	# Exactly the 100 are counted, under the last process (asserted last, so a miscount
	# does not hide whether the bytes made it).
	for _ in $(seq 50); do
		active=$(breaker_active)
		[ "$active" = 100 ] && break
		sleep 0.1
	done
	wait_fdstore "$svc" 0
	finish_stream_ok hundred
	[ "$(grep -c '^conn=.* intact=1 ' <<<"$output")" -eq 100 ]
	[ "$(grep -c '^conn=.* recv_after_mark=0 ' <<<"$output")" -eq 0 ]
	grep -q '^connections=100 intact=100 ' <<<"$output"
	# Every process handed all 100 on, and every successor adopted all 100.
	wait_unit_events "$svc" "${pids[10]}" adopt "" 100 "$MID_ADOPT"
	ev=$(events "$svc")
	for i in $(seq 10); do
		prev=${pids[i - 1]}
		pid=${pids[i]}
		echo "restart $i: $prev handed over $(count_event_lines "$ev" "$prev" handover), $pid adopted $(count_event_lines "$ev" "$pid" adopt "" "$MID_ADOPT")"
		[ "$(count_event_lines "$ev" "$prev" handover)" -eq 100 ]
		[ "$(count_event_lines "$ev" "$pid" adopt "" "$MID_ADOPT")" -eq 100 ]
	done
	echo "breaker active with the 100 open, after the restarts: $active"
	[ "$active" = 100 ]
	wait_counted_everywhere 0
}

@test "restart: breaker counts in tcpmapctl status are exact across restarts and after close" {
	local svc i
	svc=$(svc_clear)
	wait_counted_everywhere 0
	start_stream breakers --port "$P" --connections 100 --rate 8192 --max-seconds 120
	wait_counted_everywhere 100
	# Steady before any restart: longer than the 1 s reaper period of every tcpmapd sharing
	# the table (the TLS instance's too), and no live slot may be taken for a dead one's.
	sleep 1.5
	[ "$(breaker_active)" = 100 ]
	[ "$(clients_on "$P")" = 100 ]
	[ "$(accepted_on "$UP")" = 100 ]
	[ "$(breaker_limit)" = 1000 ]
	for i in 1 2 3; do
		restart "$svc" >/dev/null
		# Re-taken under the new PID, and the old process's slots not counted twice; the
		# same 100 connections on the clients' and the upstream's side, none reopened.
		wait_counted_everywhere 100
		sleep 0.3
		[ "$(breaker_active)" = 100 ]
		[ "$(clients_on "$P")" = 100 ]
		[ "$(accepted_on "$UP")" = 100 ]
		# ... under the configured limit.
		[ "$(breaker_limit)" = 1000 ]
	done
	finish_stream_ok breakers
	wait_counted_everywhere 0
	[ "$(breaker_limit)" = 1000 ]
}

@test "restart: a TLS-terminated connection drains, is closed with drain_timeout, and TLS works after" {
	local svc old new t0 t1 line closed ev
	svc=$(svc_tls)
	old=$(main_pid "$svc")
	start_stream tls --port "$T" --tls --sni "$TLS_NAME" --cafile "$PKI/ca.crt" \
		--connections 1 --rate 65536 --allow-close --max-seconds 60
	sleep 0.5
	mark_stream tls
	t0=$(date +%s.%N)
	new=$(restart "$svc")
	t1=$(date +%s.%N)
	echo "restart took $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') s"
	# The old process waited out config.drain_timeout_ms (2000) before it exited.
	awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a >= 1.8) }'
	run finish_stream tls 150
	echo "$output"
	line=$(grep '^conn=0 ' <<<"$output")
	# Closed by the relay, after relaying on during the drain, with a correct head of the stream.
	[ "$(field "$line" intact)" = 1 ]
	closed=$(field "$line" closed_by)
	[ "$closed" = eof ] || [ "$closed" = reset ]
	[ "$(field "$line" recv_after_mark)" -gt 0 ]
	awk -v a="$t0" -v c="$(field "$line" closed_at)" 'BEGIN { exit !(c - a >= 1.8 && c - a < 10) }'
	# Not handed over: it ended in the old process, with the result logged.
	ev=$(events "$svc")
	echo "$ev" | awk -v pid="$old" '$1 == pid'
	[ "$(count_event_lines "$ev" "$old" handover)" -eq 0 ]
	[ "$(count_event_lines "$ev" "$new" adopt)" -eq 0 ]
	awk -v pid="$old" '$1 == pid && $2 == "close" && $3 == "drain_timeout"' <<<"$ev" | grep -q .
	# A new TLS connection goes through the new process.
	run python3 "$STREAM_PY" --port "$T" --tls --sni "$TLS_NAME" --cafile "$PKI/ca.crt" \
		--connections 1 --duration 1 --rate 65536 --max-seconds 30 3>&-
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[-1]}" = OK ]
	wait_unit_events "$svc" "$new" close "" 1
}

# resume_start NAME TLS: tests/lib/resume.py against the TLS port, holding its session until
# resume_round NAME lets it connect again; waits for its first (full) handshake.
resume_start() {
	local d=$BATS_TEST_TMPDIR pid
	python3 "$ROOT/tests/lib/resume.py" --port "$T" --sni "$TLS_NAME" --ca "$PKI/ca.crt" \
		--tls "$2" --send "hello-$1" --round-file "$d/$1.round" >"$d/$1.out" 2>&1 3>&- </dev/null &
	pid=$!
	echo "$pid" >"$d/$1.pid"
	echo "$pid" >>"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 100); do
		grep -q '^first ' "$d/$1.out" && break
		sleep 0.1
	done
	grep "^first reused=0 .*ticket=1 banner=hello-$1" "$d/$1.out" || { cat "$d/$1.out" >&2; return 1; }
}

resume_round() {
	local d=$BATS_TEST_TMPDIR
	echo "$T" >"$d/$1.round.tmp" && mv "$d/$1.round.tmp" "$d/$1.round.1"
	for _ in $(seq 100); do
		grep -q '^round 1 ' "$d/$1.out" && break
		sleep 0.1
	done
	grep '^round 1 ' "$d/$1.out"
}

@test "restart: a TLS session ticket issued before systemctl restart resumes after it (TLS 1.3 and 1.2)" {
	local svc keys
	svc=$(svc_tls)
	resume_start r13 1.3
	resume_start r12 1.2
	restart "$svc" >/dev/null
	run resume_round r13
	echo "$output"
	[ "$output" = "round 1 reused=1 version=TLSv1.3 banner=hello-r13" ]
	run resume_round r12
	echo "$output"
	[ "$output" = "round 1 reused=1 version=TLSv1.2 banner=hello-r12" ]
	# the keys are in the preserved runtime directory, the service user's alone
	keys=$(sb stat -L -c '%a %U' /run/tcpmap/tls-ticket-keys)
	echo "tls-ticket-keys: $keys"
	[ "${keys%% *}" = 600 ]
}

@test "restart: systemctl stop leaves no stored fds, and the next start adopts nothing" {
	local svc old new
	svc=$(svc_clear)
	old=$(main_pid "$svc")
	start_stream stop --port "$P" --connections 5 --rate 16384 --allow-close --max-seconds 60
	sb systemctl stop "$svc"
	[ "$(sb systemctl is-active "$svc")" != active ]
	# Whatever the old process pushed into the store was flushed with it.
	[ "$(fdstore_count "$svc")" = 0 ]
	# With their fds gone, the connections end; each got back a correct head of its stream.
	run finish_stream stop 200
	echo "$output"
	[ "$(grep -c '^conn=.* intact=1 ' <<<"$output")" -eq 5 ]
	[ "$(grep -c '^conn=.* closed_by=\(eof\|reset\) ' <<<"$output")" -eq 5 ]
	# Their breaker slots went with them: counted by no one, though nothing was adopted. (The
	# TLS instance still runs, and its reaper frees the slots of processes that are gone.)
	wait_counted_everywhere 0
	# The socket stayed; a new connection starts a fresh process with an empty store.
	relay_roundtrip "$P" 100000
	new=$(main_pid "$svc")
	[ -n "$new" ]
	[ "$new" != 0 ]
	[ "$new" != "$old" ]
	[ "$(fdstore_count "$svc")" = 0 ]
	[ "$(count_event_lines "$(events "$svc")" "$new" adopt)" -eq 0 ]
	wait_breaker_active 0
	# And a stop of everything leaves nothing stored anywhere.
	sb systemctl stop "tcpmap@$P.socket" "tcpmap@$T.socket"
	[ "$(fdstore_count "$svc")" = 0 ]
	[ "$(fdstore_count "$(svc_tls)")" = 0 ]
	wait_port_free "$P"
	wait_port_free "$T"
}

@test "restart: an address instance tcpmap@127.0.0.1:PORT.socket starts and its stream survives a restart" {
	# tcpmap@.socket documents this form. Its fd name is the unit name, which holds a ':',
	# the separator of $LISTEN_FDNAMES; finding stored fds by name must still work.
	local svc="tcpmap@127.0.0.1:$L.service"
	sb systemctl start "tcpmap@127.0.0.1:$L.socket" || {
		sb journalctl --no-pager -n 20 -u "tcpmap@127.0.0.1:$L.socket"
		ss -Htanp "( sport = :$L )"
		false
	}
	sb systemctl start "$svc" || {
		sb journalctl --no-pager -n 20 -u "$svc"
		false
	}
	start_stream address --port "$L" --connections 1 --rate 65536 --max-seconds 60
	restart "$svc" >/dev/null
	mark_stream address
	sleep 1
	run finish_stream address
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^conn=0 .* recv_after_mark=0 ' <<<"$output")" -eq 0 ]
	wait_fdstore "$svc" 0
	sb systemctl stop "tcpmap@127.0.0.1:$L.socket" "$svc"
	wait_port_free "$L"
}

@test "restart: a restart systemd refuses (start limit) drops the stored connections and their breaker counts" {
	local svc i
	svc=$(svc_clear)
	start_stream refused --port "$P" --connections 20 --rate 16384 --allow-close --max-seconds 60
	wait_counted_everywhere 20
	# The 6th start within 10 s is refused; the unit fails and systemd flushes its store.
	for i in $(seq 8); do
		sb systemctl restart "$svc" 2>/dev/null || break
	done
	echo "restarts before the refusal: $((i - 1))"
	[ "$(sb systemctl show -p Result --value "$svc")" = start-limit-hit ]
	[ "$(fdstore_count "$svc")" = 0 ]
	run finish_stream refused 200
	echo "$output"
	[ "$(grep -c '^conn=.* closed_by=\(eof\|reset\) ' <<<"$output")" -eq 20 ]
	# No process holds them any more, so no one may count them (the TLS instance's reaper
	# runs), and neither the clients nor the upstream have any left.
	wait_counted_everywhere 0
}
