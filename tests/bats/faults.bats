#!/usr/bin/env bats
# faults.bats — upstream and client faults (issue 7): the upstream refuses, black-holes,
# resets mid-stream or half-closes early; the client resets mid-stream or vanishes without a
# FIN. For each: the targeted connection ends promptly and is logged, tcpmapd stays up and
# serves the next connection, and a bystander stream on another mapping loses no byte.

load ../lib/common
load ../lib/faults

setup() {
	common_setup
	BPORT=$(pick_port) # the bystander's mapping, toward an echo upstream
	FPORT=$(pick_port) # the mapping whose peer misbehaves
	ECHO_UP=$(pick_port)
	FAULT_UP=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/faults.yaml
	start_upstream 127.0.0.1 "$ECHO_UP" echo
	write_mapping "$CONF" bystander "$BPORT" "127.0.0.1:$ECHO_UP"
}
teardown() { common_teardown; }

# start_with_fault [SPEC_LINE...]: the fault mapping toward FAULT_UP, tcpmapd, bystander.
start_with_fault() {
	write_mapping "$CONF" fault "$FPORT" "127.0.0.1:$FAULT_UP" "$@"
	start_tcpmapd "$CONF"
	start_bystander "$BPORT"
}

# After every fault: tcpmapd alive, the bystander intact, and a fresh connection served.
after_fault() {
	pid_alive "$TCPMAPD_PID"
	finish_bystander
	served_ok "$BPORT"
	pid_alive "$TCPMAPD_PID"
}

@test "upstream refuses: 20 clients closed at once, logged connect_failed" {
	# FAULT_UP: nothing listens there
	start_with_fault
	local i worst=0 t
	for ((i = 0; i < 20; i++)); do
		run client 127.0.0.1 "$FPORT" --send 1024 --timeout 5
		[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
		[ "$(kv recv_bytes)" = 0 ]
		t=$(kv eof_ms)
		[ "$t" -lt 1000 ]
		((t > worst)) && worst=$t
	done
	wait_for_count 'event=close mapping=fault .*result=connect_failed' 20
	note "upstream refuses: 20 connections, each closed within $worst ms, result=connect_failed"
	after_fault
}

@test "upstream black-holes: closed after connect_timeout_ms 500, logged connect_timeout" {
	start_upstream 127.0.0.1 "$FAULT_UP" blackhole
	start_with_fault "connect_timeout_ms: 500"
	local i t worst=0 best=99999
	for ((i = 0; i < 3; i++)); do
		run client 127.0.0.1 "$FPORT" --send 1024 --timeout 10
		echo "$output"
		[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
		t=$(kv eof_ms)
		[ "$t" -ge 400 ]
		[ "$t" -le 2000 ]
		((t > worst)) && worst=$t
		((t < best)) && best=$t
	done
	wait_for_count 'event=close mapping=fault .*result=connect_timeout' 3
	note "upstream black hole: 3 connections closed after $best-$worst ms (timeout 500 ms), result=connect_timeout"
	after_fault
}

@test "upstream resets mid-stream after 1 MiB: the client is closed promptly" {
	start_fault "$FAULT_UP" rst-upstream --after $MiB
	start_with_fault
	run client 127.0.0.1 "$FPORT" --send $((64 * MiB)) --timeout 20
	echo "$output"
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	[ "$(kv recv_bytes)" -le "$MiB" ]
	# the upstream spends at most ~5 s reading before its RST; then the client must go at once
	[ "$(kv elapsed_ms)" -lt 8000 ]
	wait_for_log 'event=close mapping=fault '
	note "upstream RST after 1 MiB: client got $(kv recv_bytes) bytes, closed_by=$(kv closed_by) after $(kv elapsed_ms) ms, sent $(kv sent_bytes)"
	after_fault
}

@test "upstream half-closes early: the client gets the whole answer and can still send 16 MiB" {
	start_fault "$FAULT_UP" early-close-upstream --after 65536 --answer $MiB
	start_with_fault
	local expect_sha
	expect_sha=$(python3 -c "
import hashlib, sys
sys.path.insert(0, '$TESTLIB')
from upstream import data_stream
h = hashlib.sha256()
for c in data_stream($MiB, 5): h.update(c)
print(h.hexdigest())")
	run client 127.0.0.1 "$FPORT" --send $((16 * MiB)) --timeout 30
	echo "$output"
	[ "$(kv closed_by)" = eof ]
	[ "$(kv recv_bytes)" = "$MiB" ]
	[ "$(kv recv_sha256)" = "$expect_sha" ]
	[ "$(kv sent_bytes)" = $((16 * MiB)) ]
	local rep
	rep=$(fault_report "$FAULT_UP")
	for ((i = 0; i < 50; i++)); do [ -s "$rep" ] && break; sleep 0.1; done
	cat "$rep"
	grep -q "recv_bytes=$((16 * MiB)) recv_sha256=$(kv sent_sha256)" "$rep"
	wait_for_log 'event=close mapping=fault .*result=ok'
	note "upstream FIN after 64 KiB: client got 1 MiB intact and still sent 16 MiB, all received upstream"
	after_fault
}

@test "client resets mid-stream after 1 MiB: the upstream side is closed and logged" {
	start_upstream 127.0.0.1 "$FAULT_UP" hold
	start_with_fault
	run faults rst-client --port "$FPORT" --after $MiB --hold 0.3
	echo "$output"
	[ "$status" -eq 0 ]
	wait_for_log 'event=close mapping=fault '
	wait_for_report "$FAULT_UP"
	cat "$(upstream_report "$FAULT_UP")"
	note "client RST after 1 MiB: upstream saw $(report_kv "$FAULT_UP" recv_bytes) bytes then its close; $(grep 'event=close mapping=fault ' "$TCPMAPD_LOG" | grep -oE 'result=[a-z_]+')"
	after_fault
}

WEDGE_SPEC=() # mapping lines for wedge_start's start_with_fault
# wedge_start ARGS...: start_with_fault, then faults.py wedge-reset ARGS in the background
# (output in $BATS_TEST_TMPDIR/wedge.out, its PID in WEDGE_PID); waits (bounded, 30 s) until
# it has filled the buffers and acted.
wedge_start() {
	local rf=$BATS_TEST_TMPDIR/wedge.ready i
	start_with_fault "${WEDGE_SPEC[@]}"
	python3 "$FAULTS_PY" wedge-reset --port "$FPORT" --upstream-port "$FAULT_UP" \
		--ready-file "$rf" --max-seconds 60 "$@" >"$BATS_TEST_TMPDIR/wedge.out" 2>&1 3>&- &
	WEDGE_PID=$!
	record_pid "$WEDGE_PID"
	for ((i = 0; i < 300; i++)); do
		[ -e "$rf" ] || ! pid_alive "$WEDGE_PID" && break
		sleep 0.1
	done
	[ -e "$rf" ]
}

# wedge_reset SIDE: SIDE (client or upstream) fills every buffer toward a peer that reads
# nothing, then resets; that peer goes on reading nothing for 3 s. tcpmapd then has no
# byte it can move: only the reset can end the connection, at once, with its close logged
# and its breaker slot given back; the wedged peer then reads everything up to its end.
wedge_reset() {
	local side=$1 out=$BATS_TEST_TMPDIR/wedge.out i
	wedge_start --reset "$side" --hold 3
	local pid=$WEDGE_PID
	# at most 2 s after the reset, while the wedged peer still reads nothing
	for ((i = 0; i < 20; i++)); do
		[ "$(log_count 'event=close mapping=fault ')" -ge 1 ] && break
		sleep 0.1
	done
	cat "$TCPMAPD_LOG"
	[ "$(log_count 'event=close mapping=fault ')" -eq 1 ]
	local active
	active=$("$TCPMAPCTL" status --runtime-dir "$RUN_DIR" --json | python3 -c "
import json, sys
print(sum(c['active'] for c in json.load(sys.stdin)['clusters'] if c['service'] == '127.0.0.1:$FAULT_UP'))")
	[ "$active" = 0 ]
	wait_pid_exit "$pid" 150
	cat "$out"
	output=$(cat "$out")
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	[ "$(kv recv_bytes)" -le "$(kv sent_bytes)" ]
	note "$side reset behind full pipes: closed and logged within 2 s, slot released; the wedged peer got $(kv recv_bytes) of $(kv sent_bytes) bytes, then $(kv closed_by)"
	after_fault
}

@test "client resets while the upstream reads nothing: the connection ends at once" {
	wedge_reset client
}

@test "upstream resets while the client reads nothing: the connection ends at once" {
	wedge_reset upstream
}

@test "upstream resets while the client reads nothing, through a per_connection_process relay: it ends at once" {
	WEDGE_SPEC=("per_connection_process: true")
	wedge_reset upstream
}

@test "client closes while the upstream reads nothing: its FIN follows every byte once the upstream reads" {
	local out=$BATS_TEST_TMPDIR/wedge.out
	wedge_start --reset client --close-how fin --hold 2
	local pid=$WEDGE_PID
	# a half-close, not an end: the upstream may still answer, so nothing is closed yet
	sleep 1
	[ "$(log_count 'event=close mapping=fault ')" -eq 0 ]
	wait_pid_exit "$pid" 150
	cat "$out"
	output=$(cat "$out")
	[ "$(kv closed_by)" = eof ]
	[ "$(kv recv_bytes)" = "$(kv sent_bytes)" ]
	# the upstream closed in turn: the connection ends, logged, its slot given back
	wait_for_log 'event=close mapping=fault .*result=ok'
	note "client FIN behind full pipes: the upstream got all $(kv sent_bytes) bytes, then EOF, $(kv end_ms) ms after the close"
	after_fault
}

@test "client vanishes without FIN (SIGSTOPped): idle_timeout_ms 1000 reaps it" {
	start_upstream 127.0.0.1 "$FAULT_UP" hold
	start_with_fault "idle_timeout_ms: 1000"
	python3 "$CLIENT_PY" 127.0.0.1 "$FPORT" --idle-ms 15000 --timeout 20 \
		>"$BATS_TEST_TMPDIR/vanish.out" 2>&1 3>&- &
	local cpid=$! t0 i
	record_pid "$cpid"
	# freeze it only once its connection is up
	for ((i = 0; i < 50; i++)); do
		[ -n "$(ss -Htn state established "( dport = :$FPORT )")" ] && break
		sleep 0.1
	done
	[ -n "$(ss -Htn state established "( dport = :$FPORT )")" ]
	kill -STOP "$cpid"
	t0=$(date +%s%N)
	wait_for_log 'event=close mapping=fault .*result=idle_timeout'
	local ms=$((($(date +%s%N) - t0) / 1000000))
	kill -CONT "$cpid"
	wait_pid_exit "$cpid" 30
	cat "$BATS_TEST_TMPDIR/vanish.out"
	# once it runs again the client finds its connection closed
	grep -qE 'closed_by=(eof|reset)' "$BATS_TEST_TMPDIR/vanish.out"
	[ "$ms" -le 3000 ]
	note "stopped client reaped by the idle timeout $ms ms after it froze (timeout 1000 ms)"
	after_fault
}
