#!/usr/bin/env bats
# reload.bats — SIGHUP reloads the config: a broken config is rejected with its line
# number and the old one keeps serving; a good one takes over for new connections.

load ../lib/common

setup() { common_setup; }
teardown() { common_teardown; }

@test "SIGHUP with a broken config keeps serving; a fixed config then takes over" {
	local port up_a up_b conf=$BATS_TEST_TMPDIR/reload.yaml
	port=$(pick_port)
	up_a=$(pick_port)
	up_b=$(pick_port)
	start_upstream 127.0.0.1 "$up_a" banner first-upstream
	start_upstream 127.0.0.1 "$up_b" banner second-upstream
	write_mapping "$conf" reload "$port" "127.0.0.1:$up_a"
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --text --timeout 10
	echo "$output"
	[ "$(kv recv_text)" = first-upstream ]

	# invalid YAML: the flow sequence opened on the last line is never closed, so libyaml
	# reports it where the file ends
	cat >"$conf" <<-YAML
		---
		apiVersion: getambassador.io/v2
		kind: TCPMapping
		metadata:
		  name: reload
		spec:
		  port: $port
		  address: 127.0.0.1
		  service: [127.0.0.1:$up_b
		YAML
	local configs
	configs=$(log_count 'event=config ')
	kill -HUP "$TCPMAPD_PID"
	wait_for_log 'level=err event=config_rejected'
	grep -E 'level=err event=config_rejected' "$TCPMAPD_LOG"
	# the rejection names the file and a line
	grep -E 'level=err event=config_rejected.*reload\.yaml:[0-9]+' "$TCPMAPD_LOG"
	pid_alive "$TCPMAPD_PID"
	run client 127.0.0.1 "$port" --text --timeout 10
	echo "$output"
	[ "$(kv recv_text)" = first-upstream ]
	note "broken config rejected: $(grep -oE 'reload\.yaml:[0-9]+(:[0-9]+)?' "$TCPMAPD_LOG" | head -n 1); old config still serves"

	: >"$conf"
	write_mapping "$conf" reload "$port" "127.0.0.1:$up_b"
	kill -HUP "$TCPMAPD_PID"
	wait_for_log 'event=config ' $((configs + 1))
	run client 127.0.0.1 "$port" --text --timeout 10
	echo "$output"
	[ "$(kv recv_text)" = second-upstream ]
	note "fixed config loaded on SIGHUP; new connections reach the new upstream"
}

@test "SIGHUP leaves a live connection untouched" {
	local port up_a up_b conf=$BATS_TEST_TMPDIR/reload.yaml
	port=$(pick_port)
	up_a=$(pick_port)
	up_b=$(pick_port)
	start_upstream 127.0.0.1 "$up_a" hold
	start_upstream 127.0.0.1 "$up_b" banner second-upstream
	write_mapping "$conf" reload "$port" "127.0.0.1:$up_a"
	start_tcpmapd "$conf"
	# a connection that drips a byte every 100 ms for 1.5 s across the reload
	client 127.0.0.1 "$port" --idle-ms 1500 --drip-ms 100 --timeout 10 >"$BATS_TEST_TMPDIR/live.out" &
	local live=$!
	record_pid "$live"
	# the live connection must reach the old upstream before the reload
	local i
	for ((i = 0; i < 50; i++)); do
		[ -n "$(ss -Htn state established "dport = :$up_a")" ] && break
		sleep 0.1
	done
	[ -n "$(ss -Htn state established "dport = :$up_a")" ]
	local configs
	configs=$(log_count 'event=config ')
	: >"$conf"
	write_mapping "$conf" reload "$port" "127.0.0.1:$up_b"
	kill -HUP "$TCPMAPD_PID"
	wait_for_log 'event=config ' $((configs + 1))
	run client 127.0.0.1 "$port" --text --timeout 10
	[ "$(kv recv_text)" = second-upstream ]
	wait_pid_exit "$live" 50
	run cat "$BATS_TEST_TMPDIR/live.out"
	echo "$output"
	[ "$(kv closed_by)" = open ]
	# every byte of the live connection reached the old upstream
	wait_for_report "$up_a"
	[ "$(report_kv "$up_a" recv_bytes)" -eq "$(kv sent_bytes)" ]
	note "live connection kept its upstream across SIGHUP ($(kv sent_bytes) bytes dripped)"
}
