#!/usr/bin/env bats
# weights.bats — weighted split: two mappings on one port with weights 10 and 90 share
# 1000 connections exactly 100/900, as the upstreams and the access log both count.

load ../lib/common

setup() { common_setup; }
teardown() { common_teardown; }

@test "a 10/90 split over 1000 connections is exact" {
	local port up_a up_b conf=$BATS_TEST_TMPDIR/weights.yaml
	port=$(pick_port)
	up_a=$(pick_port)
	up_b=$(pick_port)
	start_upstream 127.0.0.1 "$up_a" banner A
	start_upstream 127.0.0.1 "$up_b" banner B
	write_mapping "$conf" ten "$port" "127.0.0.1:$up_a" 'weight: 10'
	write_mapping "$conf" ninety "$port" "127.0.0.1:$up_b" 'weight: 90'
	start_tcpmapd "$conf"
	local t0=$SECONDS
	run client 127.0.0.1 "$port" --repeat 1000 --timeout 90
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv failures)" -eq 0 ]
	grep -qx 'banner=A count=100' <<<"$output"
	grep -qx 'banner=B count=900' <<<"$output"
	wait_for_log 'event=close ' 1000
	[ "$(log_count 'event=close .*mapping=ten ')" -eq 100 ]
	[ "$(log_count 'event=close .*mapping=ninety ')" -eq 900 ]
	note "1000 connections in $((SECONDS - t0)) s: A (weight 10) 100, B (weight 90) 900; access log agrees"
}

@test "a 10/90 split is smooth: every 10 consecutive connections hold exactly one A" {
	local port up_a up_b conf=$BATS_TEST_TMPDIR/weights.yaml
	port=$(pick_port)
	up_a=$(pick_port)
	up_b=$(pick_port)
	start_upstream 127.0.0.1 "$up_a" banner A
	start_upstream 127.0.0.1 "$up_b" banner B
	write_mapping "$conf" ten "$port" "127.0.0.1:$up_a" 'weight: 10'
	write_mapping "$conf" ninety "$port" "127.0.0.1:$up_b" 'weight: 90'
	start_tcpmapd "$conf"
	local i
	for ((i = 0; i < 3; i++)); do
		run client 127.0.0.1 "$port" --repeat 10 --timeout 20
		echo "$output"
		grep -qx 'banner=A count=1' <<<"$output"
		grep -qx 'banner=B count=9' <<<"$output"
	done
}
