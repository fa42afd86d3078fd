#!/usr/bin/env bats
# hostile-clients.bats — slowloris and fd exhaustion (issue 7). 1000 connections that dribble
# a ClientHello a byte a second are reaped by the preread timeout while a normal TLS client
# is served with bounded latency; 1000 connection attempts against a tcpmapd limited to 256
# fds are shed (closed, not left hanging), logged, cost little CPU, and tcpmapd recovers.
# A bystander stream on another mapping loses no byte in either.

load ../lib/common
load ../lib/faults

setup() {
	common_setup
	BPORT=$(pick_port)
	PORT=$(pick_port)
	ECHO_UP=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/hostile.yaml
	write_mapping "$CONF" bystander "$BPORT" "127.0.0.1:$ECHO_UP"
}
teardown() { common_teardown; }

@test "slowloris: 1000 connections dribbling a ClientHello are reaped by the 2 s preread timeout" {
	ulimit -n 20000
	local secrets=$BATS_TEST_TMPDIR/secrets
	make_cert "$secrets" slowcert slow.test
	start_fault "$ECHO_UP" echo-many
	write_module_config "$CONF" "preread_timeout_ms: 2000"
	write_tls_context_doc "$CONF" slow-context slowcert slow.test
	write_mapping "$CONF" slow "$PORT" "127.0.0.1:$ECHO_UP" "host: slow.test"
	TCPMAPD_ARGS=(--secrets-dir "$secrets")
	start_tcpmapd "$CONF"
	start_bystander "$BPORT"

	python3 "$FAULTS_PY" slowloris --port "$PORT" --conns 1000 --interval 1 --sni slow.test \
		--ready-file "$BATS_TEST_TMPDIR/loris.ready" --max-seconds 10 \
		>"$BATS_TEST_TMPDIR/loris.out" 2>&1 3>&- &
	local lpid=$! i
	record_pid "$lpid"
	for ((i = 0; i < 50; i++)); do [ -e "$BATS_TEST_TMPDIR/loris.ready" ] && break; sleep 0.1; done
	[ -e "$BATS_TEST_TMPDIR/loris.ready" ]
	# a normal TLS client, through the same port, while the 1000 hang on
	run faults tls-probe --port "$PORT" --sni slow.test --count 10 --interval 0.2 --max-seconds 15
	echo "$output"
	[ "$status" -eq 0 ]
	local probe=$output
	wait_pid_exit "$lpid" 150
	cat "$BATS_TEST_TMPDIR/loris.out"
	local lo=$BATS_TEST_TMPDIR/loris.out
	get() { sed -n "s/^$1=//p" "$lo"; }
	[ "$(get conns)" = 1000 ]
	[ "$(get closed)" = 1000 ]
	[ "$(get still_open)" = 0 ]
	# reaped at the timeout, not before and not much after
	awk -v t="$(get first_close_s)" 'BEGIN { exit !(t >= 1.5) }'
	awk -v t="$(get last_close_s)" 'BEGIN { exit !(t <= 4.0) }'
	wait_for_count 'result=preread_timeout' 1000 50
	[ "$(sed -n 's/^ok=//p' <<<"$probe")" = 10 ]
	local worst
	worst=$(sed -n 's/^max_ms=//p' <<<"$probe")
	[ "$worst" -lt 1000 ]
	note "slowloris: 1000 connections, $(get max_bytes_sent) of $(get hello_len) hello bytes sent each, closed after $(get first_close_s)-$(get last_close_s) s, $(log_count 'result=preread_timeout') logged preread_timeout"
	note "meanwhile 10 TLS clients served: median $(sed -n 's/^median_ms=//p' <<<"$probe") ms, worst $worst ms"
	pid_alive "$TCPMAPD_PID"
	finish_bystander
	run faults tls-probe --port "$PORT" --sni slow.test --count 1
	[ "$status" -eq 0 ]
	[ "$(sed -n 's/^ok=//p' <<<"$output")" = 1 ]
}

@test "fd exhaustion: ulimit -n 256, 1000 attempts are shed, logged, cheap, and tcpmapd recovers" {
	ulimit -n 20000
	start_fault "$ECHO_UP" echo-many
	write_mapping "$CONF" flood "$PORT" "127.0.0.1:$ECHO_UP"
	TCPMAPD_WRAP=(prlimit --nofile=256:256 --)
	start_tcpmapd "$CONF"
	[ "$(awk '/Max open files/ {print $4}' "/proc/$TCPMAPD_PID/limits")" = 256 ]
	start_bystander "$BPORT"
	local fds_before
	fds_before=$(fd_count "$TCPMAPD_PID")

	python3 "$FAULTS_PY" flood --port "$PORT" --conns 1000 --hold 8 \
		--ready-file "$BATS_TEST_TMPDIR/flood.ready" --max-seconds 12 \
		>"$BATS_TEST_TMPDIR/flood.out" 2>&1 3>&- &
	local fpid=$! i
	record_pid "$fpid"
	for ((i = 0; i < 50; i++)); do [ -e "$BATS_TEST_TMPDIR/flood.ready" ] && break; sleep 0.1; done
	[ -e "$BATS_TEST_TMPDIR/flood.ready" ]
	sleep 1
	# saturated: every fd in use while the flood holds its connections
	local fds cpu
	fds=$(fd_count "$TCPMAPD_PID")
	cpu=$(cpu_percent "$TCPMAPD_PID" 2)
	note "saturated: $fds of 256 fds open (from $fds_before before the flood), tcpmapd used $cpu% of one core over 2 s"
	# saturated means near the limit: a flood that never reached it sheds nothing
	[ "$fds" -ge 200 ]
	wait_pid_exit "$fpid" 150
	cat "$BATS_TEST_TMPDIR/flood.out"
	local fo=$BATS_TEST_TMPDIR/flood.out
	get() { sed -n "s/^$1=//p" "$fo"; }
	note "1000 attempts: $(get served) served, $(get closed) closed, $(get refused) refused, $(get pending) left hanging after $(get elapsed_s) s"
	note "log: $(log_count 'event=shed') event=shed lines, $(log_count 'event=close mapping=flood .*result=connect_failed') connect_failed closes"
	[ "$cpu" -lt 50 ]
	[ $(($(get served) + $(get closed) + $(get refused) + $(get pending))) -eq 1000 ]
	[ "$(get served)" -gt 0 ]
	[ "$(log_count 'event=shed')" -ge 1 ]
	# recovered: the flood is gone, fds come back within 5 s to near what they were before
	# (a few pipes the pool keeps may stay), and new connections work again, every one
	pid_alive "$TCPMAPD_PID"
	wait_fds_at_most "$TCPMAPD_PID" $((fds_before + 16)) 50
	local fds_after
	fds_after=$(fd_count "$TCPMAPD_PID")
	finish_bystander
	for ((i = 0; i < 5; i++)); do
		served_ok "$PORT"
	done
	pid_alive "$TCPMAPD_PID"
	note "recovered: $fds_after fds open (bound $((fds_before + 16))), then 5 connections each echoed 64 KiB intact"
	# shed means closed or refused within the hold, never left waiting in the backlog
	[ "$(get pending)" -eq 0 ]
}

@test "out of fds with nothing to shed: accepting pauses, and resumes when fds come back" {
	[ "${TCPMAP_SAN:-0}" = 0 ] || skip "an LD_PRELOAD shim cannot come before the sanitizer runtime"
	local so=$BATS_TEST_TMPDIR/fdshortage.so flag=$BATS_TEST_TMPDIR/fd-shortage i cpid
	cc -shared -fPIC -o "$so" "$TCPMAP_ROOT/tests/lib/fdshortage.c" -ldl
	start_fault "$ECHO_UP" echo-many
	write_mapping "$CONF" flood "$PORT" "127.0.0.1:$ECHO_UP"
	TCPMAPD_WRAP=(env LD_PRELOAD="$so" TCPMAP_TEST_FD_SHORTAGE="$flag")
	TCPMAPD_ARGS=(--workers 1)
	start_tcpmapd "$CONF"
	served_ok "$PORT"
	# short of fds: accept() fails and the reserve fd cannot be taken back, so the worker
	# pauses accepting; a client arriving meanwhile waits in the backlog
	touch "$flag"
	python3 "$CLIENT_PY" 127.0.0.1 "$PORT" --send 65536 --timeout 10 \
		>"$BATS_TEST_TMPDIR/waiting.out" 2>&1 3>&- &
	cpid=$!
	record_pid "$cpid"
	# the client's connect, whenever a loaded machine gets it there, meets the shortage
	wait_for_log 'event=shed'
	# fds are back: the paused worker accepts again, the waiting client first
	rm -f "$flag"
	wait_pid_exit "$cpid" 150
	cat "$BATS_TEST_TMPDIR/waiting.out"
	[ "$(sed -n 's/^recv_bytes=//p' "$BATS_TEST_TMPDIR/waiting.out")" = 65536 ]
	for ((i = 0; i < 3; i++)); do
		served_ok "$PORT"
	done
	pid_alive "$TCPMAPD_PID"
	note "paused while short of fds; the client that waited was served, then 3 more"
}
