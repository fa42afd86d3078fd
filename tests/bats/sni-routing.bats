#!/usr/bin/env bats
# sni-routing.bats — routing on the peeked ClientHello: `*.` wildcards and exact hosts,
# tls_passthrough (the client sees the upstream's own certificate), hellos re-framed into
# several records and written a byte at a time, and what a host-only port does with
# garbage, silence and a partial hello (preread timeout), after which it still works.

load ../lib/common
load ../lib/tls

PREREAD_MS=2000

setup_file() {
	load ../lib/common
	load ../lib/tls
	tls_make_pki
}

setup() {
	tls_setup
	PORT=$(pick_port)
	UP_WILD=$(pick_port)
	UP_EXACT=$(pick_port)
	UP_PASS=$(pick_port)
	CFG=$BATS_TEST_TMPDIR/sni.yaml
	write_module "$CFG" "$PREREAD_MS"
	write_tls_context "$CFG" wild-context wildsecret 'hosts: ["*.example.com"]'
	write_tls_context "$CFG" exact-context exactsecret "hosts: [exact.example.com]"
	write_mapping "$CFG" wild "$PORT" "127.0.0.1:$UP_WILD" 'host: "*.example.com"'
	write_mapping "$CFG" exact "$PORT" "127.0.0.1:$UP_EXACT" "host: exact.example.com"
	write_mapping "$CFG" pass "$PORT" "127.0.0.1:$UP_PASS" "host: pass.example.net" \
		"tls_passthrough: true"
}

teardown() {
	common_teardown
}

start_all() {
	start_upstream 127.0.0.1 "$UP_WILD" banner "i-am-wild"
	start_upstream 127.0.0.1 "$UP_EXACT" banner "i-am-exact"
	start_s_server 127.0.0.1 "$UP_PASS" passthrough -www
	start_tcpmapd "$CFG"
}

@test "an SNI in absolute form (one trailing dot) routes as the name without it" {
	start_all
	s_client_to "$PORT" exact.example.com. -verify_return_error
	[ "$status" -eq 0 ]
	[[ "$output" == *"i-am-exact"* ]]
	wait_for_log "event=close mapping=exact .*sni=exact.example.com .*result=ok"
	s_client_to "$PORT" b.example.com.
	[ "$status" -eq 0 ]
	[[ "$output" == *"i-am-wild"* ]]
	# the CLI answers the same
	run "$TCPMAPCTL" route --config "$CFG" --secrets-dir "$SECRETS_DIR" --address 127.0.0.1 --port "$PORT" --sni exact.example.com.
	[ "$status" -eq 0 ]
	[[ "$output" == *"exact"* ]]
}

@test "a wildcard host routes any name under it, with the wildcard certificate" {
	start_all
	local h
	for h in a.example.com Zz-9.Example.COM; do
		s_client_to "$PORT" "$h" -verify_return_error
		[ "$status" -eq 0 ]
		[[ "$output" == *"i-am-wild"* ]]
	done
	run served_san "$PORT" a.example.com
	note "a.example.com served SAN: $output"
	[ "$output" = "DNS:*.example.com" ]
	wait_for_log "event=close mapping=wild .*sni=a.example.com .*result=ok"
	# the bare parent name is not covered by the wildcard
	s_client_to "$PORT" example.com
	[ "$status" -ne 0 ]
	[[ "$output" != *"i-am-"* ]]
	wait_for_log "event=close .*sni=example.com .*result=unknown_sni"
}

@test "an exact host beats the wildcard that also covers it" {
	start_all
	s_client_to "$PORT" exact.example.com -verify_return_error -verify_hostname exact.example.com
	[ "$status" -eq 0 ]
	[[ "$output" == *"i-am-exact"* ]]
	[[ "$output" != *"i-am-wild"* ]]
	run served_san "$PORT" EXACT.example.com
	note "exact.example.com served SAN: $output"
	[ "$output" = "DNS:exact.example.com" ]
	wait_for_log "event=close mapping=exact .*result=ok"
}

@test "tls_passthrough: the client sees the upstream's own certificate, bytes untouched" {
	start_all
	S_CLIENT_INPUT=$(printf 'GET / HTTP/1.0\r\n\r\n')
	s_client_to "$PORT" pass.example.net -verify_return_error -verify_hostname pass.example.net
	[ "$status" -eq 0 ]
	[[ "$output" == *"subject=CN = passthrough-upstream"* ]]
	[[ "$output" != *"example.com"* ]]
	# the page comes from the upstream s_server itself, over the client's own session
	[[ "$output" == *"s_server -accept 127.0.0.1:$UP_PASS "* ]]
	run served_san "$PORT" pass.example.net
	note "pass.example.net served SAN: $output (the upstream's)"
	[ "$output" = "DNS:pass.example.net" ]
	wait_for_log "event=close mapping=pass .*sni=pass.example.net .*result=ok"
}

@test "a hello re-framed into two records and written a byte at a time still routes by SNI" {
	start_all
	run hello 127.0.0.1 "$PORT" --sni b.example.com --cafile "$PKI/ca.crt" --records 2 \
		--byte-writes --byte-delay-ms 0.5 --send-text 'hi\n' --text --timeout 15
	echo "$output"
	[ "$(kv handshake)" = ok ]
	[ "$(kv hello_records)" -eq 2 ]
	[ "$(kv peer_san)" = "DNS:*.example.com" ]
	[ "$(kv recv_text)" = i-am-wild ]
	note "hello of $(kv hello_bytes) bytes in $(kv hello_records) records, one byte per write: routed to wild"
	wait_for_log "event=close mapping=wild .*sni=b.example.com .*result=ok"
}

@test "a 2 KiB hello over three records routes, terminated and passed through" {
	start_all
	run hello 127.0.0.1 "$PORT" --sni exact.example.com --cafile "$PKI/ca.crt" --records 3 \
		--pad-alpn 1600 --send-text 'hi\n' --text --timeout 15
	echo "$output"
	[ "$(kv handshake)" = ok ]
	[ "$(kv hello_bytes)" -ge 1800 ]
	[ "$(kv hello_records)" -eq 3 ]
	[ "$(kv recv_text)" = i-am-exact ]
	note "terminated: hello of $(kv hello_bytes) bytes in 3 records routed to exact"

	# passthrough: the re-framed bytes reach the upstream untouched and it completes the
	# handshake with its own certificate
	run hello 127.0.0.1 "$PORT" --sni pass.example.net --cafile "$PKI/ca.crt" --records 3 \
		--byte-writes --byte-delay-ms 0.2 --send-text 'GET / HTTP/1.0\r\n\r\n' --text --timeout 15
	echo "$output"
	[ "$(kv handshake)" = ok ]
	[ "$(kv peer_subject)" = commonName=passthrough-upstream ]
	[[ "$(kv recv_text)" == *"s_server -accept 127.0.0.1:$UP_PASS "* ]]
	note "passthrough: hello of $(kv hello_bytes) bytes in 3 records, byte writes: upstream's certificate"
}

@test "garbage on a host-only port is closed at once (not_tls), then a good connection works" {
	start_all
	# client.py's deterministic bytes with seed 7 do not start with 0x16, so this is not TLS
	run client 127.0.0.1 "$PORT" --send 4096 --no-shutdown --timeout 5
	echo "$output"
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	[ "$(kv eof_ms)" -lt "$PREREAD_MS" ]
	wait_for_log "event=close .*result=not_tls"
	note "garbage: closed after $(kv eof_ms) ms (preread timeout $PREREAD_MS ms)"
	s_client_to "$PORT" a.example.com
	[[ "$output" == *"i-am-wild"* ]]
	[ "$(log_count "event=close mapping=wild .*result=ok")" -ge 1 ]
}

@test "a silent client and a partial hello are closed within the preread timeout" {
	start_all
	local bound=$((PREREAD_MS + 1000))
	run client 127.0.0.1 "$PORT" --idle-ms $((PREREAD_MS + 3000)) --timeout 10
	echo "$output"
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	[ "$(kv eof_ms)" -ge $((PREREAD_MS - 100)) ]
	[ "$(kv eof_ms)" -le "$bound" ]
	local silent=$(kv eof_ms)

	# a TLS record header and the start of a ClientHello that promises 512 bytes more
	printf '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' >"$BATS_TEST_TMPDIR/partial"
	run client 127.0.0.1 "$PORT" --send-file "$BATS_TEST_TMPDIR/partial" --no-shutdown \
		--timeout $((PREREAD_MS / 1000 + 4))
	echo "$output"
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	[ "$(kv eof_ms)" -ge $((PREREAD_MS - 100)) ]
	[ "$(kv eof_ms)" -le "$bound" ]
	wait_for_log "result=preread_timeout" 2
	note "silent: closed after $silent ms; partial hello: after $(kv eof_ms) ms (timeout $PREREAD_MS ms)"

	s_client_to "$PORT" exact.example.com
	[[ "$output" == *"i-am-exact"* ]]
}

# issue 19: the upstream connect starts as soon as the hello's SNI picks the mapping (the
# client's handshake waits at its hello until the upstream answers, so a refusal is still an
# alert), and a client that stalls after that holds the upstream connection and the breaker
# slot for the preread timeout at most.
@test "a terminated handshake stalled after its hello holds its upstream and its slot for the preread timeout at most" {
	start_all
	local out=$BATS_TEST_TMPDIR/stalled.out i held_up=0 held_slot=0
	python3 - "$PORT" >"$out" 2>&1 3>&- <<'PY' &
import socket, ssl, sys, time
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
inc, outg = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, outg, server_hostname="exact.example.com")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
t0 = time.monotonic()
s.sendall(outg.read())  # the ClientHello, and then nothing more
got = s.recv(65536)
print(f"answered_ms={(time.monotonic() - t0) * 1000:.0f} bytes={len(got)}", flush=True)
while got:
    got = s.recv(65536)
print(f"eof_ms={(time.monotonic() - t0) * 1000:.0f}", flush=True)
PY
	record_pid $!
	for ((i = 0; i < 50; i++)); do grep -q '^answered_ms' "$out" && break; sleep 0.1; done
	grep -q '^answered_ms=[0-9]* bytes=[1-9]' "$out"
	# stalled mid-handshake: tcpmapd holds a connection to the upstream and the slot
	held_up=$(ss -Htn state established state close-wait "( dport = :$UP_EXACT )" | wc -l)
	held_slot=$("$TCPMAPCTL" status --runtime-dir "$RUN_DIR" --json |
		python3 -c 'import json, sys; print(sum(c["active"] for c in json.load(sys.stdin)["clusters"]))')
	for ((i = 0; i < 50; i++)); do grep -q '^eof_ms' "$out" && break; sleep 0.1; done
	cat "$out"
	local eof
	eof=$(sed -n 's/^eof_ms=//p' "$out")
	[ -n "$eof" ] && [ "$eof" -ge $((PREREAD_MS - 100)) ] && [ "$eof" -le $((PREREAD_MS + 1000)) ]
	wait_for_log 'event=close mapping=exact .*result=handshake_failed'
	# and both are let go with it
	[ "$held_up" -ge 1 ] && [ "$held_slot" -ge 1 ]
	[ "$(ss -Htn state established state close-wait "( dport = :$UP_EXACT )" | wc -l)" -eq 0 ]
	[ "$("$TCPMAPCTL" status --runtime-dir "$RUN_DIR" --json |
		python3 -c 'import json, sys; print(sum(c["active"] for c in json.load(sys.stdin)["clusters"]))')" -eq 0 ]
	note "stalled after its hello: upstream connected and slot held while stalled ($held_up, $held_slot), both let go when the client was closed at $eof ms (preread timeout $PREREAD_MS ms)"
}

# issue 24 item 16: a hello no TLS server would take gets the alert a TLS server would
# send, is logged bad_hello, and never reaches the catch-all.
@test "malformed hellos get a TLS alert (bad_hello), even on a port with a catch-all" {
	UP_CATCH=$(pick_port)
	write_mapping "$CFG" catchall "$PORT" "127.0.0.1:$UP_CATCH"
	start_upstream 127.0.0.1 "$UP_CATCH" banner "i-am-catchall"
	start_all
	local kind want n=0
	for kind in empty-sni:50 two-names:50 long-name:112 non-ascii:112 dotdot:112 oversize:22; do
		want=${kind#*:}
		kind=${kind%%:*}
		run hello 127.0.0.1 "$PORT" --sni exact.example.com --raw "$kind" --timeout 5
		echo "$kind: $output"
		[ "$(kv alert)" = "$want" ]
		[ "$(kv closed_by)" != timeout ]
		n=$((n + 1))
		note "$kind hello ($(kv hello_bytes) bytes): alert $want"
	done
	wait_for_log "result=bad_hello" "$n"
	[ "$(log_count "mapping=catchall")" -eq 0 ]
	# and the port still works, for the catch-all too
	s_client_to "$PORT" exact.example.com
	[[ "$output" == *"i-am-exact"* ]]
}

# issue 24 item 16: the limit counts handshake bytes, not the record headers around them.
@test "a 16 380-byte hello in one record and a 2 852-byte hello in one-byte records route" {
	start_all
	# measure the hello without padding, then pad it to 16 380 handshake bytes
	run hello 127.0.0.1 "$PORT" --sni exact.example.com --cafile "$PKI/ca.crt" \
		--pad-alpn 1000 --send-text 'hi\n' --text --timeout 15
	local pad=$((1000 + 16380 + 5 - $(kv hello_bytes)))
	run hello 127.0.0.1 "$PORT" --sni exact.example.com --cafile "$PKI/ca.crt" \
		--pad-alpn "$pad" --send-text 'hi\n' --text --timeout 15
	echo "$output"
	[ "$(kv hello_bytes)" -eq $((16380 + 5)) ]
	[ "$(kv hello_records)" -eq 1 ]
	[ "$(kv hello_bytes)" -gt 16384 ]
	[ "$(kv hello_bytes)" -le $((16384 + 5)) ]
	[ "$(kv handshake)" = ok ]
	[ "$(kv recv_text)" = i-am-exact ]
	note "a $(kv hello_bytes)-byte stream (one record): routed"

	run hello 127.0.0.1 "$PORT" --sni exact.example.com --cafile "$PKI/ca.crt" \
		--pad-alpn 2600 --records 100000 --send-text 'hi\n' --text --timeout 30
	echo "$output"
	[ "$(kv hello_bytes)" -ge 2852 ]
	[ "$(kv hello_records)" -ge 2852 ]
	[ "$(kv handshake)" = ok ]
	[ "$(kv recv_text)" = i-am-exact ]
	note "a $(kv hello_bytes)-byte hello in $(kv hello_records) one-byte records: routed"
}

# issue 24 item 17: server-first protocols on a port with SNI mappings and a catch-all.
@test "a silent client reaches the catch-all after silent_client_timeout_ms (server-first protocols)" {
	UP_CATCH=$(pick_port)
	CFG=$BATS_TEST_TMPDIR/silent.yaml
	printf -- '---\napiVersion: getambassador.io/v2\nkind: Module\nmetadata:\n  name: ambassador\nspec:\n  config:\n    preread_timeout_ms: 5000\n    silent_client_timeout_ms: 600\n' >"$CFG"
	write_tls_context "$CFG" exact-context exactsecret "hosts: [exact.example.com]"
	write_mapping "$CFG" exact "$PORT" "127.0.0.1:$UP_EXACT" "host: exact.example.com"
	write_mapping "$CFG" catchall "$PORT" "127.0.0.1:$UP_CATCH"
	start_upstream 127.0.0.1 "$UP_EXACT" banner "i-am-exact"
	start_upstream 127.0.0.1 "$UP_CATCH" banner "i-am-catchall"
	start_tcpmapd "$CFG"
	run client 127.0.0.1 "$PORT" --no-shutdown --text --timeout 5
	echo "$output"
	[[ "$(kv recv_text)" == *"i-am-catchall"* ]]
	[ "$(kv eof_ms)" -ge 500 ]
	wait_for_log "event=close mapping=catchall .*result=ok"
	note "a silent client got the catch-all's greeting after $(kv eof_ms) ms"
	# a TLS client that speaks at once still routes by SNI
	s_client_to "$PORT" exact.example.com
	[[ "$output" == *"i-am-exact"* ]]
}

# issue 26 item 7: a hello dribbled one byte per segment must not cost a peek and a parse of
# the whole prefix for each byte: tcpmapd asks the kernel for the bytes still missing
# (SO_RCVLOWAT). Peeks are counted with strace (deterministic); CPU time is only noted, as
# on a shared machine it mostly measures the softirq work of other processes' packets.
@test "20 hellos dribbled one byte per segment cost a few peeks each, not one per byte" {
	command -v strace >/dev/null || skip "strace is not installed"
	load ../lib/faults
	CFG=$BATS_TEST_TMPDIR/dribble.yaml
	write_module "$CFG" 60000
	write_tls_context "$CFG" exact-context exactsecret "hosts: [exact.example.com]"
	write_mapping "$CFG" exact "$PORT" "127.0.0.1:$UP_EXACT" "host: exact.example.com"
	start_upstream 127.0.0.1 "$UP_EXACT" banner "i-am-exact"
	start_tcpmapd "$CFG"
	local before after hz i pids=() trace=$BATS_TEST_TMPDIR/strace.out
	strace -f -c -e trace=recvfrom,ioctl -o "$trace" -p "$TCPMAPD_PID" 2>/dev/null &
	local strace_pid=$!
	record_pid "$strace_pid"
	sleep 0.5
	hz=$(getconf CLK_TCK)
	before=$(cpu_ticks "$TCPMAPD_PID")
	for ((i = 0; i < 20; i++)); do
		hello 127.0.0.1 "$PORT" --sni exact.example.com --raw padded:11800 --byte-writes \
			--byte-delay-ms 0.05 --timeout 60 >"$BATS_TEST_TMPDIR/dribble-$i.out" &
		pids+=($!)
		record_pid $!
	done
	for i in "${pids[@]}"; do wait "$i"; done
	after=$(cpu_ticks "$TCPMAPD_PID")
	wait_for_log "result=handshake_failed" 20
	kill -INT "$strace_pid"
	wait "$strace_pid" || true
	cat "$trace"
	local peeks counts
	peeks=$(awk '$NF == "recvfrom" {print $4}' "$trace")
	counts=$(awk '$NF == "ioctl" {print $4}' "$trace")
	output=$(cat "$BATS_TEST_TMPDIR/dribble-0.out")
	echo "$output"
	[ "$(kv hello_bytes)" -eq 11805 ]
	note "20 x 11 805 one-byte segments: $peeks peeks, ${counts:-0} byte counts, $(((after - before) * 1000 / hz)) ms of CPU (under strace)"
	# one wake-up per record header piece and one for the body: a handful per hello
	[ "$peeks" -lt 200 ]
}

@test "show, route and units read no keys; check still checks them" {
	local missing=$BATS_TEST_TMPDIR/no-secrets
	run "$TCPMAPCTL" show --config "$CFG" --secrets-dir "$missing"
	[ "$status" -eq 0 ]
	[[ "$output" == *"exact.example.com"* ]]
	run "$TCPMAPCTL" route --config "$CFG" --secrets-dir "$missing" --address 127.0.0.1 --port "$PORT" --sni a.example.com
	[ "$status" -eq 0 ]
	[[ "$output" == *"wild"* ]]
	run "$TCPMAPCTL" units --config "$CFG" --secrets-dir "$missing"
	[ "$status" -eq 0 ]
	[[ "$output" == *"tcpmap@127.0.0.1:$PORT.socket"* ]]
	run "$TCPMAPCTL" check --config "$CFG" --secrets-dir "$missing"
	[ "$status" -eq 1 ]
	[[ "$output" == *"wildsecret"* ]]
}
