#!/usr/bin/env bats
# circuit-breakers.bats — max_connections through the shared breaker table: in one threaded
# tcpmapd, across per-connection tcpmapd processes (systemd-socket-activate --accept), after
# a relay is SIGKILLed, failover inside a group, and an exact 10/90 split when every
# connection is its own process.
#
# "Never reaches the upstream" is shown twice: the upstream's established connections
# (ss) never exceed the limit, and its report (one line per connection it accepted) counts
# only the admitted ones.

load ../lib/common
load ../lib/breakers

setup() { breakers_setup; }
teardown() { breakers_teardown; }

# assert_refused_fast OUTPUT: the client was closed (EOF or reset) in under 1 s.
assert_refused_fast() {
	output=$1
	echo "$output"
	[[ "$(kv closed_by)" =~ ^(eof|reset)$ ]]
	[ "$(kv eof_ms)" -lt 1000 ]
	[ "$(kv recv_bytes)" -eq 0 ]
}

@test "threaded: max_connections 2 refuses the third connection at once, admits again after a close" {
	local port up conf=$BATS_TEST_TMPDIR/threaded.yaml lines
	port=$(pick_port)
	up=$(pick_port)
	start_upstream 127.0.0.1 "$up" hold
	mapfile -t lines < <(breaker_lines max_connections 2)
	write_mapping "$conf" limited "$port" "127.0.0.1:$up" "${lines[@]}"
	start_tcpmapd "$conf"

	hold_connection "$port"
	local first=$HOLD_PID
	hold_connection "$port"
	wait_established "$up" 2
	wait_status_active "127.0.0.1:$up" 2

	run client 127.0.0.1 "$port" --idle-ms 3000 --timeout 5
	assert_refused_fast "$output"
	local refused_ms
	refused_ms=$(kv eof_ms)
	wait_for_log 'event=close .*mapping=limited .*result=breaker_overflow'
	wait_for_log 'event=overflow .*mapping=limited'
	# the upstream never saw it
	[ "$(established_to "$up")" -eq 2 ]
	[ "$(report_lines "$up")" -eq 0 ]

	# one held connection ends: its slot is free again
	stop_hold "$first"
	wait_for_report "$up" 1
	wait_status_active "127.0.0.1:$up" 1
	hold_connection "$port"
	wait_established "$up" 2
	wait_status_active "127.0.0.1:$up" 2
	[ "$(log_count 'event=close .*result=breaker_overflow')" -eq 1 ]

	# everyone leaves; the upstream accepted exactly the three admitted connections
	stop_all_holds
	wait_for_report "$up" 3
	wait_status_active "127.0.0.1:$up" 0
	[ "$(report_lines "$up")" -eq 3 ]
	[ "$(json_cluster "$(status_flat)" "127.0.0.1:$up" total)" -eq 3 ]
	[ "$(json_cluster "$(status_flat)" "127.0.0.1:$up" overflows)" -eq 1 ]
	note "threaded: third connection closed in $refused_ms ms, never upstream; a new one admitted after a close"
}

@test "per-connection: max_connections 2 holds across tcpmapd processes" {
	local port up conf=$BATS_TEST_TMPDIR/accept.yaml
	accept_two_held "$conf"
	local relays
	relays=$(activate_children "$ACTIVATE_PID" | tr '\n' ' ')

	# a third process starts, finds the table full and refuses
	run client 127.0.0.1 "$port" --idle-ms 3000 --timeout 5
	assert_refused_fast "$output"
	local refused_ms
	refused_ms=$(kv eof_ms)
	wait_for_log 'event=close .*mapping=limited .*result=breaker_overflow'
	wait_for_log 'event=overflow .*mapping=limited'
	[ "$(established_to "$up")" -eq 2 ]
	[ "$(report_lines "$up")" -eq 0 ]
	# that process is gone; the two relays are still there
	wait_activate_children "$ACTIVATE_PID" 2
	[ "$(log_count '^Spawned ')" -eq 3 ]

	stop_all_holds
	wait_for_report "$up" 2
	wait_activate_children "$ACTIVATE_PID" 0
	wait_status_active "127.0.0.1:$up" 0
	[ "$(report_lines "$up")" -eq 2 ]
	note "per-connection: relays $relays held the 2 slots; a third process refused in $refused_ms ms"
}

@test "per-connection: kill -9 of a relay frees its slot" {
	local port up conf=$BATS_TEST_TMPDIR/kill.yaml
	accept_two_held "$conf"
	# full: a third is refused
	run client 127.0.0.1 "$port" --idle-ms 2000 --timeout 5
	assert_refused_fast "$output"
	wait_for_log 'event=close .*result=breaker_overflow'

	local victim
	victim=$(activate_children "$ACTIVATE_PID" | head -n 1)
	[ -n "$victim" ]
	[ "$(cat "/proc/$victim/comm")" = tcpmapd ]
	kill -KILL "$victim"
	wait_pid_exit "$victim" 20
	wait_activate_children "$ACTIVATE_PID" 1
	local t0
	t0=$(date +%s%N)

	# within 2 s a new connection is admitted although no release was ever written: the
	# next admit (or the survivor's once-a-second reap) reclaims the dead owner's slot
	local i admitted=0
	for ((i = 0; i < 20; i++)); do
		hold_connection "$port"
		if wait_established_quiet "$up" 2 5; then
			admitted=1
			break
		fi
		stop_hold "$HOLD_PID"
		sleep 0.1
	done
	local took_ms=$((($(date +%s%N) - t0) / 1000000))
	[ "$admitted" -eq 1 ]
	[ "$took_ms" -lt 2000 ]
	wait_activate_children "$ACTIVATE_PID" 2
	wait_status_active "127.0.0.1:$up" 2

	stop_all_holds
	wait_activate_children "$ACTIVATE_PID" 0
	wait_status_active "127.0.0.1:$up" 0
	[ "$(json_cluster "$(status_flat)" "127.0.0.1:$up" pending)" -eq 0 ]
	note "per-connection: relay $victim SIGKILLed; a new connection admitted $took_ms ms later (after $i refusals); active back to 2, then 0"
}

@test "per-connection: a SIGKILLed relay's slot is reaped within 1-2 s even without a new admit" {
	local port up conf=$BATS_TEST_TMPDIR/reap.yaml
	accept_two_held "$conf"

	local victim t0 i
	victim=$(activate_children "$ACTIVATE_PID" | head -n 1)
	[ -n "$victim" ]
	kill -KILL "$victim"
	wait_pid_exit "$victim" 20
	t0=$(date +%s%N)
	# tcpmapctl only reads: the surviving relay's once-a-second reap is what frees the slot
	for ((i = 0; i < 25; i++)); do
		[ "$(json_cluster "$(status_flat)" "127.0.0.1:$up" active)" = 1 ] && break
		sleep 0.1
	done
	local took_ms=$((($(date +%s%N) - t0) / 1000000))
	status_text
	[ "$(json_cluster "$(status_flat)" "127.0.0.1:$up" active)" -eq 1 ]
	[ "$took_ms" -lt 2000 ]
	[ "$(log_count '^Spawned ')" -eq 2 ]

	stop_all_holds
	wait_activate_children "$ACTIVATE_PID" 0
	wait_status_active "127.0.0.1:$up" 0
	note "per-connection: relay $victim SIGKILLed; status showed active 1 after $took_ms ms with no new connection"
}

@test "failover: with the first mapping's breaker open the group routes to the other" {
	local port up_a up_b conf=$BATS_TEST_TMPDIR/failover.yaml lines
	port=$(pick_port)
	up_a=$(pick_port)
	up_b=$(pick_port)
	start_upstream 127.0.0.1 "$up_a" hold
	start_upstream 127.0.0.1 "$up_b" hold
	# a group's mappings must agree on circuit_breakers; each cluster has its own count
	mapfile -t lines < <(breaker_lines max_connections 1)
	write_mapping "$conf" primary "$port" "127.0.0.1:$up_a" 'weight: 90' "${lines[@]}"
	write_mapping "$conf" backup "$port" "127.0.0.1:$up_b" 'weight: 10' "${lines[@]}"
	start_tcpmapd "$conf"

	# smooth WRR gives the first two picks to primary (90/10)
	hold_connection "$port"
	wait_established "$up_a" 1
	[ "$(log_count 'event=failover')" -eq 0 ]

	hold_connection "$port"
	wait_established "$up_b" 1
	wait_for_log 'event=failover .*mapping=backup'
	[ "$(established_to "$up_a")" -eq 1 ]
	[ "$(log_count 'event=overflow')" -eq 0 ]

	# both breakers open: now it is an overflow
	run client 127.0.0.1 "$port" --idle-ms 3000 --timeout 5
	assert_refused_fast "$output"
	wait_for_log 'result=breaker_overflow'
	wait_for_log 'event=overflow'
	[ "$(log_count 'event=failover')" -eq 1 ]
	[ "$(established_to "$up_a")" -eq 1 ]
	[ "$(established_to "$up_b")" -eq 1 ]

	stop_all_holds
	wait_for_log 'event=close .*mapping=primary .*result=ok'
	wait_for_log 'event=close .*mapping=backup .*result=ok'
	[ "$(report_lines "$up_a")" -eq 1 ]
	[ "$(report_lines "$up_b")" -eq 1 ]
	note "failover: primary full, the next connection went to backup (event=failover); with both full, overflow"
}

@test "per-connection: a 10/90 group splits 1000 sequential connections exactly 100/900" {
	local port up_a up_b conf=$BATS_TEST_TMPDIR/split.yaml
	port=$(pick_port)
	up_a=$(pick_port)
	up_b=$(pick_port)
	start_upstream 127.0.0.1 "$up_a" banner A
	start_upstream 127.0.0.1 "$up_b" banner B
	write_mapping "$conf" ten "$port" "127.0.0.1:$up_a" 'weight: 10'
	write_mapping "$conf" ninety "$port" "127.0.0.1:$up_b" 'weight: 90'
	start_accept_activate "$port" "$conf"

	local t0=$SECONDS
	run client 127.0.0.1 "$port" --repeat 1000 --timeout 150
	echo "$output"
	local took=$((SECONDS - t0))
	[ "$status" -eq 0 ]
	[ "$(kv failures)" -eq 0 ]
	grep -qx 'banner=A count=100' <<<"$output"
	grep -qx 'banner=B count=900' <<<"$output"
	# each connection was its own process
	wait_for_log '^Spawned ' 1000
	[ "$(log_count '^Spawned ')" -eq 1000 ]
	[ "$(sed -nE 's/^Spawned .* as PID ([0-9]+)\.$/\1/p' "$TCPMAPD_LOG" | sort -u | wc -l)" -ge 900 ]
	wait_for_log 'event=close ' 1000
	[ "$(log_count 'event=close .*mapping=ten .*result=ok')" -eq 100 ]
	[ "$(log_count 'event=close .*mapping=ninety .*result=ok')" -eq 900 ]
	local json
	json=$(status_flat)
	[ "$(json_picks "$json" ten)" -eq 100 ]
	[ "$(json_picks "$json" ninety)" -eq 900 ]
	note "per-connection: 1000 tcpmapd processes in $took s: A 100, B 900; access log and status agree"
}
