#!/usr/bin/env bats
# socket-activate.bats — tcpmapd under systemd-socket-activate: Accept=no hands it the
# listening socket (one process serves many connections); Accept=yes (--accept) starts
# one tcpmapd per connection with the connected socket. Both relay byte-exactly.

load ../lib/common

setup() {
	common_setup
	command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate not installed"
	PORT=$(pick_port)
	UP=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/activate.yaml
	EXTRA_ARGS=()
	start_upstream 127.0.0.1 "$UP" echo
	write_mapping "$CONF" activated "$PORT" "127.0.0.1:$UP"
}
teardown() { common_teardown; }

# start_socket_activate [SOCKET_ACTIVATE_OPTION...]: systemd-socket-activate owns
# 127.0.0.1:PORT and starts tcpmapd with LISTEN_FDS, as the socket units do. EXTRA_ARGS
# adds tcpmapd options.
start_socket_activate() {
	local env_args
	mapfile -t env_args < <(socket_activate_env)
	TCPMAPD_LOG=$BATS_TEST_TMPDIR/tcpmapd-activate.log
	systemd-socket-activate "$@" --listen="127.0.0.1:$PORT" "${env_args[@]}" \
		"$TCPMAPD" --config "$CONF" --runtime-dir "$RUN_DIR" --log-target stderr --workers 2 \
		"${EXTRA_ARGS[@]}" </dev/null >"$TCPMAPD_LOG" 2>&1 3>&- &
	TCPMAPD_PID=$!
	record_pid "$TCPMAPD_PID"
	wait_listening "$PORT"
}

@test "socket activation, Accept=no: one tcpmapd serves many connections byte-exactly" {
	start_socket_activate
	local i
	for ((i = 0; i < 3; i++)); do
		run client 127.0.0.1 "$PORT" --send "$MiB" --seed "$i" --timeout 20
		echo "$output"
		[ "$(kv closed_by)" = eof ]
		[ "$(kv recv_bytes)" -eq "$MiB" ]
		[ "$(kv recv_sha256)" = "$(kv sent_sha256)" ]
	done
	run client 127.0.0.1 "$PORT" --send "$MiB" --parallel 10 --timeout 30
	echo "$output"
	[ "$(kv intact)" -eq 10 ]
	# systemd-socket-activate exec()s tcpmapd in its own PID; that one process did all
	[ "$(cat "/proc/$TCPMAPD_PID/comm")" = tcpmapd ]
	[ "$(log_count '^Execing ')" -eq 1 ]
	[ "$(log_count '^Spawned ')" -eq 0 ]
	wait_for_log "event=close .*mapping=activated .*bytes_in=$MiB bytes_out=$MiB .*result=ok" 13
	note "Accept=no: 13 connections of 1 MiB echoed intact by one tcpmapd (pid $TCPMAPD_PID)"
}

@test "socket activation, Accept=yes: one tcpmapd per connection, byte-exactly" {
	start_socket_activate --accept
	local i
	for ((i = 0; i < 3; i++)); do
		run client 127.0.0.1 "$PORT" --send "$MiB" --seed "$i" --timeout 20
		echo "$output"
		[ "$(kv closed_by)" = eof ]
		[ "$(kv recv_bytes)" -eq "$MiB" ]
		[ "$(kv recv_sha256)" = "$(kv sent_sha256)" ]
	done
	wait_for_log "event=close .*mapping=activated .*bytes_in=$MiB bytes_out=$MiB .*result=ok" 3
	# the listener is still systemd-socket-activate's; each tcpmapd handled one fd and left
	[ "$(cat "/proc/$TCPMAPD_PID/comm")" != tcpmapd ]
	# and every per-connection tcpmapd has exited (bounded wait)
	local i
	for ((i = 0; i < 30; i++)); do
		[ -z "$(ps --ppid "$TCPMAPD_PID" -o stat=,comm= | grep -v '^Z' | grep tcpmapd)" ] && break
		sleep 0.1
	done
	[ -z "$(ps --ppid "$TCPMAPD_PID" -o stat=,comm= | grep -v '^Z' | grep tcpmapd)" ]
	# three processes, three different PIDs, each exited 0 after its one connection
	[ "$(sed -nE 's/^Spawned .* as PID ([0-9]+)\.$/\1/p' "$TCPMAPD_LOG" | sort -u | wc -l)" -eq 3 ]
	wait_for_log '^Child [0-9]+ died with code 0$' 3
	[ "$(log_count '^Child [0-9]+ died')" -eq 3 ]
	note "Accept=yes: 3 connections of 1 MiB, each in its own tcpmapd (exit 0), all echoed intact"
}

@test "socket activation, --inetd: the connection on stdin is relayed byte-exactly" {
	EXTRA_ARGS=(--inetd)
	start_socket_activate --accept --inetd
	run client 127.0.0.1 "$PORT" --send "$MiB" --timeout 20
	echo "$output"
	[ "$(kv closed_by)" = eof ]
	[ "$(kv recv_bytes)" -eq "$MiB" ]
	[ "$(kv recv_sha256)" = "$(kv sent_sha256)" ]
	wait_for_log "event=close .*mapping=activated .*bytes_in=$MiB bytes_out=$MiB .*result=ok"
	wait_for_log '^Child [0-9]+ died with code 0$'
	note "--inetd: 1 MiB echoed intact through the socket on stdin"
}
