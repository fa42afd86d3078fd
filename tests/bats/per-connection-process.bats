#!/usr/bin/env bats
# per-connection-process.bats — `per_connection_process: true`: the threaded dispatcher
# accepts, routes, admits and connects, then forks one relay process per connection.
# Shown here: a kill -9 of one relay leaves 20 other checksummed streams intact; no two
# connections share a PID (access-log pid=); a relay holds no fd of any other connection
# (the test-only TCPMAP_TEST_FD_REPORT listing of its /proc/self/fd); breaker limits hold
# across the relays; a relay SIGTERMed (as systemd's stop does to the whole cgroup) logs
# `shutdown`; and mappings that share a listener must agree on the setting.

load ../lib/common
load ../lib/breakers

STREAM_PY=$TCPMAP_ROOT/tests/lib/stream.py

setup() {
	breakers_setup
	FD_REPORT=$BATS_TEST_TMPDIR/fd-report
	mkdir -p "$FD_REPORT"
	PORT=$(pick_port)
	UP=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/fork.yaml
}

# Relays outlive nothing: each is stopped by PID before the clients and upstreams go.
teardown() {
	local pid
	[ -z "${STOPPED_SPAWNER:-}" ] || kill -CONT "$STOPPED_SPAWNER" 2>/dev/null || true
	for pid in $(relay_pids); do
		stop_pid "$pid" || true
	done
	breakers_teardown
}

# Live (non-zombie) relay processes of the tcpmapd under test: its children and its relay
# spawner's (tcpmap-spawner) named tcpmap-relay; the spawner's standby children are not.
spawner_pids() {
	[ -n "${TCPMAPD_PID:-}" ] || return 0
	pgrep -P "$TCPMAPD_PID" -x tcpmap-spawner 2>/dev/null || true
}
relay_pids() {
	local pid parents
	[ -n "${TCPMAPD_PID:-}" ] || return 0
	parents=$(echo "$TCPMAPD_PID" $(spawner_pids) | tr ' ' ,)
	for pid in $(pgrep -P "$parents" -x tcpmap-relay 2>/dev/null); do
		[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] && echo "$pid"
	done
	return 0
}

# wait_relays N: bounded wait (5 s) until tcpmapd has exactly N live relay processes.
relay_count() { relay_pids | wc -l; }
wait_relays() {
	wait_count -eq "$1" 50 relay_count && return 0
	echo "tcpmapd $TCPMAPD_PID has $WAIT_COUNT_LAST relay processes, wanted $1" >&2
	return 1
}

# wait_ready FILE TENTHS: bounded wait until stream.py's --ready-file exists.
ready_now() { [ -e "$1" ] && echo 1 || echo 0; }
wait_ready() { wait_count -eq 1 "$2" ready_now "$1"; }

# Relays tcpmapd forked itself, not its spawner.
own_relay_count() { pgrep -P "$TCPMAPD_PID" -x tcpmap-relay | wc -l; }

# start_forked [SPEC_LINE...]: an echo upstream and tcpmapd with one forking mapping.
start_forked() {
	start_upstream 127.0.0.1 "$UP" echo
	write_mapping "$CONF" forked "$PORT" "127.0.0.1:$UP" "per_connection_process: true" "$@"
	TCPMAP_TEST_FD_REPORT=$FD_REPORT start_tcpmapd "$CONF"
}

@test "per_connection_process: a kill -9 of one relay leaves 20 other checksummed streams intact" {
	start_forked
	local out=$BATS_TEST_TMPDIR/stream.out ready=$BATS_TEST_TMPDIR/ready stop=$BATS_TEST_TMPDIR/stop
	python3 "$STREAM_PY" --port "$PORT" --connections 21 --rate 65536 --ready-file "$ready" \
		--stop-file "$stop" --max-seconds 60 >"$out" 2>&1 3>&- </dev/null &
	local stream=$!
	record_pid "$stream"
	wait_ready "$ready" 100
	wait_relays 21
	local victim
	victim=$(relay_pids | head -n 1)
	kill -9 "$victim"
	wait_for_log "event=relay_died relay_pid=$victim how=\"?signal KILL"
	wait_relays 20
	sleep 1 # the 20 others keep streaming after the death
	touch "$stop"
	wait "$stream" || true
	cat "$out"
	grep -q '^connections=21 intact=20 ' "$out"
	[ "$(grep -c 'intact=1' "$out")" -eq 20 ]
	# every other relay logged its own ok close; the killed one logged nothing
	wait_for_log 'event=close .*mapping=forked .*result=ok .*pid=' 20
	[ "$(log_count "event=close .* pid=$victim ")" -eq 0 ]
	# the dead relay's breaker slot came back: nothing is counted once all are gone
	wait_counted "$PORT" "$UP" 0
	note "relay $victim killed: 20 of 21 streams intact, its slot reclaimed"
}

@test "per_connection_process: no two connections share a PID, and none is tcpmapd's" {
	start_forked
	local n
	for n in 1 2 3 4 5; do
		run client 127.0.0.1 "$PORT" --send 100 --timeout 5
		[ "$(kv recv_bytes)" -eq 100 ]
	done
	for n in 1 2 3 4 5; do hold_connection "$PORT" 20; done
	wait_relays 5
	stop_all_holds
	wait_for_log 'event=close .*mapping=forked .*pid=' 10
	local pids
	pids=$(grep -E 'event=close .*mapping=forked' "$TCPMAPD_LOG" | sed -nE 's/.* pid=([0-9]+) .*/\1/p')
	echo "$pids"
	[ "$(wc -l <<<"$pids")" -eq 10 ]
	[ "$(sort -u <<<"$pids" | wc -l)" -eq 10 ]
	! grep -qx "$TCPMAPD_PID" <<<"$pids"
	note "10 connections, 10 distinct relay PIDs"
}

@test "per_connection_process: a relay holds no fd of any other connection" {
	start_forked
	local n
	for n in 1 2 3 4 5 6; do hold_connection "$PORT" 20; done
	wait_relays 6
	local f sockets=() bad=0
	for f in "$FD_REPORT"/*; do
		cat "$f"
		# its client and its upstream socket, and no pipe, epoll, eventfd or listener
		[ "$(grep -c 'socket:' "$f")" -eq 2 ] || bad=1
		grep -qE 'pipe:|anon_inode' "$f" && bad=1
		mapfile -t -O "${#sockets[@]}" sockets < <(sed -nE 's/.*(socket:\[[0-9]+\])/\1/p' "$f")
	done
	[ "$(ls "$FD_REPORT" | wc -l)" -eq 6 ]
	[ "$bad" -eq 0 ]
	# twelve sockets, no two relays sharing one
	[ "${#sockets[@]}" -eq 12 ]
	[ "$(printf '%s\n' "${sockets[@]}" | sort -u | wc -l)" -eq 12 ]
	# and tcpmapd itself no longer holds them
	for f in "${sockets[@]}"; do
		! ls -l "/proc/$TCPMAPD_PID/fd" 2>/dev/null | grep -qF "$f"
	done
	stop_all_holds
	note "6 relays: 2 sockets each, 12 distinct, none shared with tcpmapd or each other"
}

@test "per_connection_process: max_connections 3 holds across relays: of 6 clients, 3 refused" {
	local lines
	mapfile -t lines < <(breaker_lines max_connections 3)
	start_forked "${lines[@]}"
	local n
	for n in 1 2 3; do hold_connection "$PORT" 20; done
	wait_relays 3
	wait_counted "$PORT" "$UP" 3
	for n in 1 2 3; do
		run client 127.0.0.1 "$PORT" --idle-ms 2000 --timeout 5
		[[ "$(kv closed_by)" =~ ^(eof|reset)$ ]]
		[ "$(kv recv_bytes)" -eq 0 ]
	done
	wait_for_log 'event=close .*result=breaker_overflow' 3
	[ "$(established_to "$UP")" -eq 3 ]
	wait_relays 3
	[ "$(json_cluster "$(status_flat)" "127.0.0.1:$UP" overflows)" -eq 3 ]
	stop_all_holds
	wait_counted "$PORT" "$UP" 0
	note "3 relays admitted, 3 clients refused by the shared table"
}

@test "per_connection_process: a relay told to stop ends its connection with shutdown" {
	start_forked
	hold_connection "$PORT" 20
	wait_relays 1
	local relay
	relay=$(relay_pids)
	kill -TERM "$relay"
	wait_for_log "event=close .*result=shutdown pid=$relay "
	wait_relays 0
	wait_counted "$PORT" "$UP" 0
	pid_alive "$TCPMAPD_PID"
	note "SIGTERM to relay $relay: result=shutdown, logged by the relay itself"
}

@test "per_connection_process: a spawned relay closes a silent connection after idle_timeout_ms" {
	start_forked 'idle_timeout_ms: "500"'
	wait_for_log 'event=relay_spawner_started'
	run client 127.0.0.1 "$PORT" --idle-ms 3000 --timeout 10
	echo "$output"
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	local t
	t=$(kv eof_ms)
	[ "$t" -ge 400 ]
	[ "$t" -le 1500 ]
	wait_for_log 'event=close .*mapping=forked .*result=idle_timeout pid='
	wait_counted "$PORT" "$UP" 0
	note "idle_timeout_ms 500 in a spawned relay: closed after $t ms"
}

@test "per_connection_process: a relay told to stop with drain_timeout_ms drains, then ends with drain_timeout" {
	start_upstream 127.0.0.1 "$UP" echo
	cat >"$CONF" <<-EOF
		---
		apiVersion: getambassador.io/v3alpha1
		kind: Module
		metadata:
		  name: ambassador
		spec:
		  config:
		    drain_timeout_ms: 1000
	EOF
	write_mapping "$CONF" forked "$PORT" "127.0.0.1:$UP" "per_connection_process: true"
	start_tcpmapd "$CONF"
	wait_for_log 'event=relay_spawner_started'
	hold_connection "$PORT" 20
	wait_relays 1
	local relay
	relay=$(relay_pids)
	kill -TERM "$relay"
	sleep 0.5
	# still draining: alive, nothing logged yet
	pid_alive "$relay"
	[ "$(log_count "event=close .* pid=$relay ")" -eq 0 ]
	wait_for_log "event=close .*result=drain_timeout pid=$relay "
	wait_relays 0
	wait_counted "$PORT" "$UP" 0
	note "SIGTERM to relay $relay with drain_timeout_ms 1000: result=drain_timeout"
}

@test "per_connection_process: relays are the relay spawner's children, not forks of tcpmapd" {
	start_forked
	wait_for_log 'event=relay_spawner_started'
	local spawner n pid
	spawner=$(spawner_pids)
	[ -n "$spawner" ]
	for n in 1 2 3; do hold_connection "$PORT" 20; done
	wait_relays 3
	for pid in $(relay_pids); do
		[ "$(awk '{print $4}' "/proc/$pid/stat")" = "$spawner" ]
	done
	# tcpmapd forked none of them: its one child is the spawner
	[ "$(pgrep -P "$TCPMAPD_PID" | tr '\n' ' ')" = "$spawner " ]
	stop_all_holds
	wait_relays 0
	wait_counted "$PORT" "$UP" 0
	note "3 relays, each a child of spawner $spawner"
}

@test "per_connection_process: a kill -9 of the relay spawner ends no connection, and it comes back" {
	start_forked
	wait_for_log 'event=relay_spawner_started'
	local spawner relay again
	spawner=$(spawner_pids)
	hold_connection "$PORT" 30
	wait_relays 1
	relay=$(relay_pids)
	kill -9 "$spawner"
	wait_for_log "event=relay_spawner_died spawner_pid=$spawner how=\"?signal KILL"
	# its relay goes on (now init's child: stopped here by PID), and tcpmapd still serves
	pid_alive "$relay"
	run client 127.0.0.1 "$PORT" --send 100 --timeout 5
	[ "$(kv recv_bytes)" -eq 100 ]
	wait_for_log 'event=relay_spawner_started' 2
	again=$(spawner_pids)
	[ -n "$again" ] && [ "$again" != "$spawner" ]
	run client 127.0.0.1 "$PORT" --send 100 --timeout 5
	[ "$(kv recv_bytes)" -eq 100 ]
	pid_alive "$relay"
	stop_all_holds
	wait_pid_exit "$relay" 50
	wait_for_log 'event=close .*mapping=forked .*result=ok .*pid=' 3
	[ "$(log_count "event=close .*result=ok pid=$relay ")" -eq 1 ]
	wait_counted "$PORT" "$UP" 0
	note "spawner $spawner killed: relay $relay went on, spawner $again took over"
}

# A wedged spawner must cost latency, never a connection: its channel holds what the kernel
# buffers (about 90 orders here), and tcpmapd forks the relays of the connections past that itself.
@test "per_connection_process: with the spawner stopped, connections past its full channel are forked by tcpmapd; no byte is lost" {
	start_forked
	wait_for_log 'event=relay_spawner_started'
	local spawner out=$BATS_TEST_TMPDIR/stream.out ready=$BATS_TEST_TMPDIR/ready
	local stop=$BATS_TEST_TMPDIR/stop stream own
	spawner=$(spawner_pids)
	[ -n "$spawner" ]
	STOPPED_SPAWNER=$spawner
	kill -STOP "$spawner"
	python3 "$STREAM_PY" --port "$PORT" --connections 150 --rate 16384 --ready-file "$ready" \
		--stop-file "$stop" --max-seconds 90 >"$out" 2>&1 3>&- </dev/null &
	stream=$!
	record_pid "$stream"
	# the spawner's 2 standbys take 2 orders and the channel queues the next ones; the rest
	# are tcpmapd's own children
	wait_count -ge 40 150 own_relay_count
	[ ! -e "$ready" ] # the queued connections have had no echo yet
	kill -CONT "$spawner"
	STOPPED_SPAWNER=
	wait_ready "$ready" 300
	wait_relays 150
	local by_spawner
	by_spawner=$(pgrep -P "$spawner" -x tcpmap-relay | wc -l)
	own=$(own_relay_count)
	[ "$by_spawner" -ge 40 ] && [ $((by_spawner + own)) -eq 150 ]
	touch "$stop"
	wait "$stream" || true
	tail -n 2 "$out"
	grep -q '^connections=150 intact=150 ' "$out"
	wait_relays 0
	wait_counted "$PORT" "$UP" 0
	note "spawner stopped: $own relays forked by tcpmapd, $by_spawner by the spawner once resumed; 150 of 150 streams intact"
}

@test "per_connection_process: mappings on one listener must agree, the error names both" {
	write_mapping "$CONF" first "$PORT" "127.0.0.1:$UP" "host: a.example" "tls_passthrough: true" \
		"per_connection_process: true"
	write_mapping "$CONF" second "$PORT" "127.0.0.1:$UP" "host: b.example" "tls_passthrough: true"
	run "$TCPMAPCTL" check "$CONF"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *'per_connection_process: differs from mapping "first"'* ]]
	[[ "$output" == *second* ]]
	# on other listeners, each decides for itself
	: >"$CONF"
	write_mapping "$CONF" first "$PORT" "127.0.0.1:$UP" "per_connection_process: true"
	write_mapping "$CONF" second "$UP" "127.0.0.1:$PORT"
	run "$TCPMAPCTL" check "$CONF"
	echo "$output"
	[ "$status" -eq 0 ]
}
