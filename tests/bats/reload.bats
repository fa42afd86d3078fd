#!/usr/bin/env bats
# reload.bats — SIGHUP reloads the config: a broken config is rejected with its line
# number and the old one keeps serving; a good one takes over for new connections. SIGUSR2, the
# re-exec for people without systemd (tcpmapd(8)), moves a live connection to the new image.

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

@test "SIGUSR2 without systemd re-executes in place: a live connection moves to the new image intact, which then serves" {
	local port up conf=$BATS_TEST_TMPDIR/reload.yaml new i client_addr
	port=$(pick_port)
	up=$(pick_port)
	start_upstream 127.0.0.1 "$up" echo
	write_mapping "$conf" reexec "$port" "127.0.0.1:$up"
	start_tcpmapd "$conf"
	# a connection that drips a byte every 100 ms for 2 s across the re-exec
	client 127.0.0.1 "$port" --idle-ms 2000 --drip-ms 100 --timeout 10 >"$BATS_TEST_TMPDIR/live.out" &
	local live=$!
	record_pid "$live"
	for ((i = 0; i < 50; i++)); do
		[ -n "$(ss -Htn state established "dport = :$up")" ] && break
		sleep 0.1
	done
	[ -n "$(ss -Htn state established "dport = :$up")" ]
	# tcpmapd(8): "For running tcpmapd without systemd: kill -USR2 PID."
	kill -USR2 "$TCPMAPD_PID"
	wait_for_log 'event=reexec new_pid='
	new=$(sed -n 's/.*event=reexec new_pid=\([0-9]*\).*/\1/p' "$TCPMAPD_LOG" | head -n 1)
	# the new image is the caller's to stop now: teardown stops it by PID
	record_pid "$new"
	[ "$new" != "$TCPMAPD_PID" ]
	pid_alive "$new"
	grep -q 'event=handover mapping=reexec' "$TCPMAPD_LOG"
	grep -q 'event=adopt mapping=reexec' "$TCPMAPD_LOG"
	# the old image had nothing left to drain, so it is gone
	wait_pid_exit "$TCPMAPD_PID" 50
	# the new image accepts
	run client 127.0.0.1 "$port" --send 4096 --timeout 10
	echo "$output"
	[ "$(kv recv_bytes)" -eq 4096 ]
	# the live connection went on through the new image with every byte echoed
	wait_pid_exit "$live" 50
	run cat "$BATS_TEST_TMPDIR/live.out"
	echo "$output"
	[ "$(kv closed_by)" = open ]
	# the echo of the last drip may land after the client stopped reading
	[ "$(kv recv_bytes)" -ge $(($(kv sent_bytes) - 1)) ]
	# the new image relayed it to the end: its close entry counts every byte sent
	client_addr=$(sed -n 's/.*event=handover mapping=reexec client=\([^ ]*\) .*/\1/p' "$TCPMAPD_LOG")
	wait_for_log "event=close mapping=reexec client=$client_addr .* bytes_in=$(kv sent_bytes) .*result=ok"
	note "SIGUSR2: pid $TCPMAPD_PID -> $new; the live connection ($(kv sent_bytes) bytes dripped) was handed over and echoed intact"
}
