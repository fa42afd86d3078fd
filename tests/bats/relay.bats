#!/usr/bin/env bats
# relay.bats — cleartext relaying: the reference doc's SSH and CockroachDB examples carry
# 50 MiB each way byte-exactly, half-close is kept, and parallel connections stay intact.

load ../lib/common

setup() { common_setup; }
teardown() { common_teardown; }

# example_conf EXAMPLE DOC_PORT DOC_SERVICE PORT UPSTREAM_PORT: a copy of
# conf/examples/EXAMPLE.yaml with only its port and its service changed, because the doc's
# host names do not resolve here. Prints the copy's path.
example_conf() {
	local src=$TCPMAP_ROOT/conf/examples/$1.yaml dst=$BATS_TEST_TMPDIR/$1.yaml
	[ -f "$src" ] || { echo "missing $src" >&2; return 1; }
	sed -E -e "s/$3/127.0.0.1:$5/" -e "s/(port:[[:space:]]*\"?)$2\b/\1$4/" "$src" >"$dst"
	# exactly the port line and the service line differ from the example as written
	local changed
	changed=$(diff "$src" "$dst" | grep -c '^>')
	[ "$changed" -eq 2 ] || { echo "expected 2 changed lines, got $changed:" >&2; diff "$src" "$dst" >&2; return 1; }
	echo "$dst"
}

# upload_through EXAMPLE DOC_PORT DOC_SERVICE: 50 MiB client -> sink, sha256 compared.
upload_through() {
	local port up conf size=$((50 * MiB))
	port=$(pick_port)
	up=$(pick_port)
	conf=$(example_conf "$1" "$2" "$3" "$port" "$up")
	start_upstream 127.0.0.1 "$up" sink
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --send "$size" --text --timeout 60
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv closed_by)" = eof ]
	[ "$(kv sent_bytes)" -eq "$size" ]
	# the sink's answer is the sha256 of what reached it
	[ "$(kv recv_text)" = "$(kv sent_sha256)" ]
	wait_for_report "$up"
	[ "$(report_kv "$up" recv_bytes)" -eq "$size" ]
	wait_for_log "event=close .*mapping=$1 .*bytes_in=$size "
	note "$1: $size bytes client->upstream in $(kv elapsed_ms) ms, sha256 $(kv sent_sha256 | cut -c1-16)... equal"
}

# download_through EXAMPLE DOC_PORT DOC_SERVICE: 50 MiB source -> client, sha256 compared.
download_through() {
	local port up conf size=$((50 * MiB))
	port=$(pick_port)
	up=$(pick_port)
	conf=$(example_conf "$1" "$2" "$3" "$port" "$up")
	start_upstream 127.0.0.1 "$up" source "$size" --seed 11
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --timeout 60
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv closed_by)" = eof ]
	[ "$(kv recv_bytes)" -eq "$size" ]
	wait_for_report "$up"
	[ "$(kv recv_sha256)" = "$(report_kv "$up" sent_sha256)" ]
	wait_for_log "event=close .*mapping=$1 .*bytes_out=$size "
	note "$1: $size bytes upstream->client in $(kv elapsed_ms) ms, sha256 $(kv recv_sha256 | cut -c1-16)... equal"
}

@test "ssh example: 50 MiB client to upstream arrive byte-exactly" {
	upload_through ssh 2222 upstream:22
}

@test "ssh example: 50 MiB upstream to client arrive byte-exactly" {
	download_through ssh 2222 upstream:22
}

@test "cockroach example: 50 MiB client to upstream arrive byte-exactly" {
	upload_through cockroach 26257 cockroach:26257
}

@test "cockroach example: 50 MiB upstream to client arrive byte-exactly" {
	download_through cockroach 26257 cockroach:26257
}

@test "half-close: 1 MiB in, shutdown, then 1 MiB back, all of it" {
	local port up conf=$BATS_TEST_TMPDIR/halfclose.yaml
	port=$(pick_port)
	up=$(pick_port)
	start_upstream 127.0.0.1 "$up" halfclose --bytes "$MiB" --seed 5
	write_mapping "$conf" halfclose "$port" "127.0.0.1:$up"
	start_tcpmapd "$conf"
	# client.py shuts its write side down after sending, then reads to EOF
	run client 127.0.0.1 "$port" --send "$MiB" --timeout 20
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv closed_by)" = eof ]
	[ "$(kv sent_bytes)" -eq "$MiB" ]
	[ "$(kv recv_bytes)" -eq "$MiB" ]
	wait_for_report "$up"
	# the upstream saw all of our bytes and our FIN, and we got all of its answer
	[ "$(report_kv "$up" recv_bytes)" -eq "$MiB" ]
	[ "$(report_kv "$up" recv_sha256)" = "$(kv sent_sha256)" ]
	[ "$(kv recv_sha256)" = "$(report_kv "$up" sent_sha256)" ]
	wait_for_log "event=close .*mapping=halfclose .*bytes_in=$MiB bytes_out=$MiB .*result=ok"
	note "half-close: sent $(kv sent_bytes), shut down, received $(kv recv_bytes), both sha256 equal"
}

@test "50 parallel connections of 2 MiB each stay intact" {
	local port up conf=$BATS_TEST_TMPDIR/parallel.yaml size=$((2 * MiB))
	port=$(pick_port)
	up=$(pick_port)
	start_upstream 127.0.0.1 "$up" echo
	write_mapping "$conf" parallel "$port" "127.0.0.1:$up"
	start_tcpmapd "$conf"
	local t0=$SECONDS
	run client 127.0.0.1 "$port" --send "$size" --parallel 50 --timeout 60
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv intact)" -eq 50 ]
	wait_for_log "event=close .*mapping=parallel .*bytes_in=$size bytes_out=$size .*result=ok" 50
	note "50 x $size bytes echoed, 50 intact (sha256 each), $((SECONDS - t0)) s"
}

@test "tcpmapd exits 0 on SIGTERM" {
	start_echo_relay term
	stop_tcpmapd
	echo "exit status $STOP_STATUS"
	[ "$STOP_STATUS" -eq 0 ]
	if port_listening "$RELAY_PORT"; then false; fi
}
