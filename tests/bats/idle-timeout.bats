#!/usr/bin/env bats
# idle-timeout.bats — idle_timeout_ms: a silent connection is closed after the timeout,
# any byte resets it, and without the setting nothing is ever closed for being idle.

load ../lib/common

setup() {
	common_setup
	PORT=$(pick_port)
	UP=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/idle.yaml
	# hold: the upstream reads and never answers, so only the client's bytes can count
	start_upstream 127.0.0.1 "$UP" hold
}
teardown() { common_teardown; }

@test "idle timeout 500 ms closes a silent connection between 0.4 s and 1.5 s" {
	# the string form, as Emissary's CRD types the field
	write_mapping "$CONF" idle "$PORT" "127.0.0.1:$UP" 'idle_timeout_ms: "500"'
	start_tcpmapd "$CONF"
	run client 127.0.0.1 "$PORT" --idle-ms 3000 --timeout 10
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	local t
	t=$(kv eof_ms)
	[ "$t" -ge 400 ]
	[ "$t" -le 1500 ]
	wait_for_log "event=close .*mapping=idle .*result=idle_timeout"
	note "idle_timeout_ms \"500\": closed after $t ms, logged result=idle_timeout"
}

@test "idle timeout: a byte every 200 ms keeps the connection open for 2 s" {
	write_mapping "$CONF" chatty "$PORT" "127.0.0.1:$UP" 'idle_timeout_ms: 500'
	start_tcpmapd "$CONF"
	run client 127.0.0.1 "$PORT" --idle-ms 2000 --drip-ms 200 --timeout 10
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv closed_by)" = open ]
	[ "$(kv sent_bytes)" -ge 8 ]
	# every dripped byte really went through to the upstream
	wait_for_report "$UP"
	[ "$(report_kv "$UP" recv_bytes)" -eq "$(kv sent_bytes)" ]
	note "chatty connection open after $(kv elapsed_ms) ms with $(kv sent_bytes) bytes sent"
}

@test "no idle_timeout_ms: a silent connection stays open for 2 s" {
	write_mapping "$CONF" forever "$PORT" "127.0.0.1:$UP"
	start_tcpmapd "$CONF"
	run client 127.0.0.1 "$PORT" --idle-ms 2000 --timeout 10
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv closed_by)" = open ]
	[ "$(log_count 'result=idle_timeout')" -eq 0 ]
	note "silent connection still open after $(kv elapsed_ms) ms"
}
