#!/usr/bin/env bats
# metrics.bats — `tcpmapctl metrics` and `tcpmapctl top` against traffic the test just sent
# through a tcpmapd in the background (issue 17): the exposition's numbers, promtool's lint,
# OpenMetrics, the one-request HTTP handler (200, 404, 405, 400, a silent client), and top
# under tmux with its screen captured while the numbers move.
#
# The Prometheus server and the socket-activated units are in metrics-prometheus.bats.

load ../lib/common
load ../lib/breakers

setup() { breakers_setup; }
teardown() {
	[ -n "${TMUX_SOCKET:-}" ] && tmux -S "$TMUX_SOCKET" kill-server 2>/dev/null
	breakers_teardown
}

# One mapping to an echo upstream with max_connections 1 ("m-echo"), one to a port nobody
# listens on ("m-dead").
make_metrics_config() {
	CONF=$BATS_TEST_TMPDIR/metrics.yaml
	ECHO_PORT=$(pick_port)
	DEAD_PORT=$(pick_port)
	UP=$(pick_port)
	UP_DEAD=$(pick_port)
	start_upstream 127.0.0.1 "$UP" echo
	local lines
	mapfile -t lines < <(breaker_lines max_connections 1)
	write_mapping "$CONF" m-echo "$ECHO_PORT" "127.0.0.1:$UP" "${lines[@]}"
	write_mapping "$CONF" m-dead "$DEAD_PORT" "127.0.0.1:$UP_DEAD"
}

metrics() { "$TCPMAPCTL" metrics --runtime-dir "$RUN_DIR" "$@"; }

# sample TEXT NAME LABELS...: the value of the one sample of NAME whose labels include every
# `k="v"` given.
sample() {
	local text=$1 name=$2
	shift 2
	awk -v name="$name" -v want="$*" '
		BEGIN { n = split(want, w, " ") }
		{
			split($0, p, "{")
			if (p[1] != name) next
			for (i = 1; i <= n; i++) if (index($0, w[i]) == 0) next
			print $NF
		}' <<<"$text"
}

@test "metrics: the exposition counts the traffic sent, by result, with bytes and a histogram" {
	make_metrics_config
	start_tcpmapd "$CONF"
	local i sent=0 n=4
	for ((i = 1; i <= n; i++)); do
		run client 127.0.0.1 "$ECHO_PORT" --send "$((i * 1000))" --timeout 10
		sent=$((sent + $(kv sent_bytes)))
	done
	hold_connection "$ECHO_PORT"
	wait_established "$UP" 1
	for ((i = 0; i < 3; i++)); do
		run client 127.0.0.1 "$ECHO_PORT" --idle-ms 2000 --timeout 5
	done
	stop_all_holds
	for ((i = 0; i < 2; i++)); do
		run client 127.0.0.1 "$DEAD_PORT" --send 10 --timeout 5
	done
	# an unknown host on a port with no SNI routing cannot happen here; count what did
	wait_for_log 'event=close ' $((n + 1 + 3 + 2))
	local text cl="service=\"127.0.0.1:$UP\""
	text=$(metrics)
	echo "$text"
	[ "$(sample "$text" tcpmap_connections_total "$cl" 'result="ok"')" -eq $((n + 1)) ]
	[ "$(sample "$text" tcpmap_connections_total "$cl" 'result="breaker_overflow"')" -eq 3 ]
	[ "$(sample "$text" tcpmap_breaker_overflows_total "$cl")" -eq 3 ]
	[ "$(sample "$text" tcpmap_upstream_sent_bytes_total "$cl")" -eq "$sent" ]
	[ "$(sample "$text" tcpmap_upstream_received_bytes_total "$cl")" -eq "$sent" ]
	[ "$(sample "$text" tcpmap_breaker_max_connections "$cl")" -eq 1 ]
	[ "$(sample "$text" tcpmap_connections_active "$cl")" -eq 0 ]
	# the histogram counts every ended connection, cumulatively, +Inf last
	[ "$(sample "$text" tcpmap_connection_duration_seconds_count "$cl")" -eq $((n + 1 + 3)) ]
	[ "$(sample "$text" tcpmap_connection_duration_seconds_bucket "$cl" 'le="+Inf"')" -eq $((n + 1 + 3)) ]
	local prev=0 v
	for v in $(sample "$text" tcpmap_connection_duration_seconds_bucket "$cl"); do
		[ "$v" -ge "$prev" ]
		prev=$v
	done
	local dl="service=\"127.0.0.1:$UP_DEAD\""
	[ "$(sample "$text" tcpmap_connections_total "$dl" 'result="connect_failed"')" -eq 2 ]
	[ "$(sample "$text" tcpmap_upstream_connect_failures_total "$dl")" -eq 2 ]
	grep -q '^tcpmap_build_info{version="[^"]*".*} 1$' <<<"$text"
	# the running tcpmapd and its config: generation 1, loaded a moment ago
	[ "$(sample "$text" tcpmap_config_generation "pid=\"$TCPMAPD_PID\"")" = 1 ]
	local loaded
	loaded=$(sample "$text" tcpmap_config_load_timestamp_seconds "pid=\"$TCPMAPD_PID\"")
	[ "${loaded%.*}" -le "$(date +%s)" ] && [ "${loaded%.*}" -ge $(($(date +%s) - 120)) ]
	kill -HUP "$TCPMAPD_PID"
	wait_for_log 'config reloaded' 1
	[ "$(sample "$(metrics)" tcpmap_config_generation "pid=\"$TCPMAPD_PID\"")" = 2 ]

	# promtool's lint has nothing to say
	if command -v promtool >/dev/null; then
		run promtool check metrics <<<"$text"
		echo "promtool: $output"
		[ "$status" -eq 0 ]
		[ -z "$output" ]
	else
		note "promtool not installed: lint skipped"
	fi
	# OpenMetrics: counter families without _total, samples with, and # EOF last
	text=$(metrics --openmetrics)
	grep -qx '# TYPE tcpmap_connections counter' <<<"$text"
	grep -q '^tcpmap_connections_total{' <<<"$text"
	[ "$(tail -n 1 <<<"$text")" = "# EOF" ]
	note "metrics: $((n + 1)) ok, 3 overflows, 2 connect failures, $sent bytes each way: the exposition agrees; promtool silent"
}

# http REQUEST: what `tcpmapctl metrics --http` answers to REQUEST on stdin.
http() { printf "$1" | "$TCPMAPCTL" metrics --http --runtime-dir "$RUN_DIR"; }

@test "metrics --http: 200 by Accept:, 404, 405, 400, and a silent client is let go" {
	make_metrics_config
	start_tcpmapd "$CONF"
	run http 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'
	[ "$status" -eq 0 ]
	[ "${lines[0]}" = $'HTTP/1.1 200 OK\r' ]
	grep -q $'^Content-Type: text/plain; version=0.0.4; charset=utf-8\r$' <<<"$output"
	grep -q '^tcpmap_connections_active{' <<<"$output"
	run http 'GET /metrics?x=1 HTTP/1.0\r\nAccept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5\r\n\r\n'
	grep -q $'^Content-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r$' <<<"$output"
	[ "${lines[-1]}" = "# EOF" ]
	run http 'GET / HTTP/1.1\r\n\r\n'
	[ "${lines[0]}" = $'HTTP/1.1 404 Not Found\r' ]
	run http 'POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n'
	[ "${lines[0]}" = $'HTTP/1.1 405 Method Not Allowed\r' ]
	grep -q $'^Allow: GET, HEAD\r$' <<<"$output"
	run http 'HEAD /metrics HTTP/1.1\r\n\r\n'
	[ "${lines[0]}" = $'HTTP/1.1 200 OK\r' ]
	! grep -q '^tcpmap_' <<<"$output"
	run http '\x16\x03\x01\x00\xa5garbage\r\n\r\n'
	[ "${lines[0]}" = $'HTTP/1.1 400 Bad Request\r' ]
	# 9 KiB of header: over the bound
	run bash -c "{ printf 'GET /metrics HTTP/1.1\r\nX: '; head -c 9216 /dev/zero | tr '\0' a; } | '$TCPMAPCTL' metrics --http --runtime-dir '$RUN_DIR'"
	[ "${lines[0]}" = $'HTTP/1.1 431 Request Header Fields Too Large\r' ]
	# a client that sends nothing and keeps its side open for 9 s: let go after 5 s, no
	# answer, no error. Timed inside the pipeline: the pipeline itself lasts as long as sleep.
	run bash -c "sleep 9 | { t0=\$(date +%s%N); '$TCPMAPCTL' metrics --http --runtime-dir '$RUN_DIR'
		echo \"rc=\$? ms=\$(( (\$(date +%s%N) - t0) / 1000000 ))\"; }"
	note "silent scrape client: $output (let go after 5 s; its input stays open 9 s)"
	[[ "$output" =~ ^rc=0\ ms=([0-9]+)$ ]]
	[ "${BASH_REMATCH[1]}" -ge 4900 ] && [ "${BASH_REMATCH[1]}" -lt 8000 ]
	# no table to read: 503, not a crash
	run bash -c "printf 'GET /metrics HTTP/1.1\r\n\r\n' | '$TCPMAPCTL' metrics --http --runtime-dir '$BATS_TEST_TMPDIR/none' 2>/dev/null"
	[ "${lines[0]}" = $'HTTP/1.1 503 Service Unavailable\r' ]
}

@test "top: under tmux, the mapping's numbers move while traffic flows; plain text otherwise" {
	command -v tmux >/dev/null || skip "tmux not installed"
	make_metrics_config
	start_tcpmapd "$CONF"
	# not a terminal: plain repeated tables, bounded
	run "$TCPMAPCTL" top --runtime-dir "$RUN_DIR" --iterations 2 --delay 0.2
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c '^CLUSTER' <<<"$output")" -eq 2 ]
	grep -q "^127.0.0.1:$UP plain" <<<"$output"

	TMUX_SOCKET=$BATS_TEST_TMPDIR/tmux.sock
	tmux -S "$TMUX_SOCKET" new-session -d -x 80 -y 24 \
		"'$TCPMAPCTL' top --runtime-dir '$RUN_DIR' --sort c; echo top-exited=\$?; sleep 30"
	# short connections, one after another, until the screen shows them moving (at most
	# 15 s: on a loaded machine a client may take a second to start, and the screen shows
	# rates over its last interval)
	local end=$((SECONDS + 15)) sent=0 screen row conns=0 in=0 out=0
	while [ "$SECONDS" -lt "$end" ]; do
		client 127.0.0.1 "$ECHO_PORT" --send 20000 --timeout 5 >/dev/null
		sent=$((sent + 1))
		screen=$(tmux -S "$TMUX_SOCKET" capture-pane -p)
		row=$(grep "^127.0.0.1:$UP plain" <<<"$screen") || continue
		read -r _ _ _ _ conns in out _ <<<"$row"
		[ "$sent" -ge 3 ] && [ "$conns" != 0 ] && [ "$in" != 0 ] && [ "$out" != 0 ] && break
	done
	echo "$screen"
	note "top under tmux, $sent connections of 20000 bytes:"
	while IFS= read -r row; do note "  $row"; done <<<"$screen"
	# CONN/S, IN B/S and OUT B/S are moving (not 0)
	[ "$conns" != 0 ]
	[ "$in" != 0 ]
	[ "$out" != 0 ]
	# every line fits 80 columns
	! awk 'length($0) > 80 { bad = 1 } END { exit !bad }' <<<"$screen"
	# q quits
	tmux -S "$TMUX_SOCKET" send-keys q
	for _ in $(seq 30); do
		tmux -S "$TMUX_SOCKET" capture-pane -p | grep -q '^top-exited=0' && break
		sleep 0.1
	done
	tmux -S "$TMUX_SOCKET" capture-pane -p | grep -q '^top-exited=0'
}
