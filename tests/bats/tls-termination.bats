#!/usr/bin/env bats
# tls-termination.bats — case 2 of the doc ("host" only): tcpmapd terminates TLS with the
# TLSContext's certificate, routes on SNI and relays cleartext upstream. Runs the doc's
# tls-terminate.yaml as written (ports substituted), then bulk data and half-close.

load ../lib/common
load ../lib/tls

setup_file() {
	load ../lib/common
	load ../lib/tls
	tls_make_pki
}

setup() {
	tls_setup
}

teardown() {
	common_teardown
}

# The doc's example as written: upstream-host-1 and upstream-host-2 listen on the same port
# at 127.0.0.1 and 127.0.0.2 and answer with their names.
start_doc_example() {
	PORT=$(pick_port)
	UP=$(pick_port)
	start_upstream 127.0.0.1 "$UP" banner "i-am-upstream-host-1"
	start_upstream 127.0.0.2 "$UP" banner "i-am-upstream-host-2"
	start_tcpmapd "$(example_config tls-terminate "$PORT" "$UP")"
}

@test "tls-terminate.yaml as written: my-host-1 and my-host-2 reach their own upstreams" {
	start_doc_example
	local h
	for h in my-host-1 my-host-2; do
		S_CLIENT_INPUT="hello from $h"
		s_client_to "$PORT" "$h" -verify_return_error -verify_hostname "$h"
		[ "$status" -eq 0 ]
		[[ "$output" == *"Verify return code: 0 (ok)"* ]]
		local n=${h#my-host-} other
		other=$((3 - n))
		[[ "$output" == *"i-am-upstream-host-$n"* ]]
		# and not the other one's
		[[ "$output" != *"i-am-upstream-host-$other"* ]]
		wait_for_log "event=close mapping=$h .*sni=$h .*result=ok"
		local line
		line=$(close_line "mapping=$h ")
		note "$h -> $(logfield "$line" upstream) bytes_in=$(logfield "$line" bytes_in) bytes_out=$(logfield "$line" bytes_out)"
	done
	[ "$(logfield "$(close_line 'mapping=my-host-1 ')" upstream)" = "127.0.0.1:$UP" ]
	[ "$(logfield "$(close_line 'mapping=my-host-2 ')" upstream)" = "127.0.0.2:$UP" ]
}

@test "tcpmapctl check accepts every TLS example of the doc, unmodified, with its secrets" {
	local ex
	for ex in tls-terminate tls-terminate-originate tls-originate; do
		run "$TCPMAPCTL" check --secrets-dir "$SECRETS_DIR" "$EXAMPLES/$ex.yaml"
		echo "$ex: $output"
		[ "$status" -eq 0 ]
	done
	# and without the secrets it names what is missing
	run "$TCPMAPCTL" check --secrets-dir "$BATS_TEST_TMPDIR/none" "$EXAMPLES/tls-terminate.yaml"
	[ "$status" -eq 1 ]
	[[ "$output" == *supersecret* ]]
}

@test "the served certificate is the context's, with SANs my-host-1 and my-host-2" {
	start_doc_example
	run served_san "$PORT" my-host-2
	note "SAN: $output"
	[ "$output" = "DNS:my-host-1, DNS:my-host-2" ]
	run served_subject "$PORT" my-host-1
	[[ "$output" == *"CN = my-host-1"* ]]
}

@test "SNI matching is case-insensitive" {
	start_doc_example
	s_client_to "$PORT" MY-Host-2
	[ "$status" -eq 0 ]
	[[ "$output" == *"i-am-upstream-host-2"* ]]
	wait_for_log "event=close mapping=my-host-2 .*result=ok"
}

@test "another SNI fails the handshake with an alert, logged unknown_sni" {
	start_doc_example
	s_client_to "$PORT" not-my-host.example
	note "s_client status $status: $(grep -o 'alert[^:]*' <<<"$output" | head -n 1)"
	[ "$status" -ne 0 ]
	[[ "$output" == *alert* ]]
	[[ "$output" != *"i-am-upstream"* ]]
	wait_for_log "event=close .*sni=not-my-host.example .*result=unknown_sni"
	[ "$(log_count 'result=ok')" -eq 0 ]
}

@test "no SNI fails the handshake with an alert" {
	start_doc_example
	s_client_to "$PORT" -
	note "s_client status $status: $(grep -o 'alert[^:]*' <<<"$output" | head -n 1)"
	[ "$status" -ne 0 ]
	[[ "$output" == *alert* ]]
	[[ "$output" != *"i-am-upstream"* ]]
	wait_for_log "event=close .*result=(unknown_sni|handshake_failed)"
	[ "$(log_count 'result=ok')" -eq 0 ]
}

# A terminating mapping of our own toward sink, source and halfclose upstreams.
start_terminating() {
	PORT=$(pick_port)
	UP=$(pick_port)
	local cfg=$BATS_TEST_TMPDIR/term.yaml
	write_tls_context "$cfg" my-context supersecret "hosts: [my-host-1]"
	write_mapping "$cfg" term "$PORT" "127.0.0.1:$UP" "host: my-host-1"
	start_upstream 127.0.0.1 "$UP" "$@"
	start_tcpmapd "$cfg"
}

@test "50 MiB client to upstream through termination arrives intact" {
	start_terminating sink
	local n=$((50 * MiB)) t0=$SECONDS
	run hello 127.0.0.1 "$PORT" --sni my-host-1 --cafile "$PKI/ca.crt" --send "$n" \
		--close-notify --text --timeout 25
	echo "$output"
	[ "$(kv handshake)" = ok ]
	[ "$(kv sent_bytes)" -eq "$n" ]
	wait_for_report "$UP"
	[ "$(report_kv "$UP" recv_bytes)" -eq "$n" ]
	[ "$(report_kv "$UP" recv_sha256)" = "$(kv sent_sha256)" ]
	# the sink's answer (its sha256) came back after our close_notify
	[ "$(kv recv_text)" = "$(kv sent_sha256)" ]
	[ "$(kv closed_by)" = close_notify ]
	wait_for_log "event=close mapping=term .*bytes_in=$n .*result=ok"
	note "50 MiB up: $(kv elapsed_ms) ms, sha256 $(kv sent_sha256 | cut -c1-16)… on both sides"
}

@test "50 MiB upstream to client through termination arrives intact" {
	local n=$((50 * MiB))
	start_terminating source "$n"
	run hello 127.0.0.1 "$PORT" --sni my-host-1 --cafile "$PKI/ca.crt" --timeout 25
	echo "$output"
	[ "$(kv handshake)" = ok ]
	[ "$(kv recv_bytes)" -eq "$n" ]
	wait_for_report "$UP"
	[ "$(report_kv "$UP" sent_sha256)" = "$(kv recv_sha256)" ]
	# the upstream's FIN reached us as close_notify
	[ "$(kv closed_by)" = close_notify ]
	wait_for_log "event=close mapping=term .*bytes_out=$n .*result=ok"
	note "50 MiB down: $(kv elapsed_ms) ms, sha256 $(kv recv_sha256 | cut -c1-16)… on both sides"
}

@test "half-close over TLS: close_notify becomes FIN upstream, the answer still comes back" {
	start_terminating halfclose --bytes $((3 * MiB))
	run hello 127.0.0.1 "$PORT" --sni my-host-1 --cafile "$PKI/ca.crt" --send 100000 \
		--close-notify --timeout 15
	echo "$output"
	[ "$(kv handshake)" = ok ]
	wait_for_report "$UP"
	# the upstream read to EOF (it answers only after the FIN) and got every byte
	[ "$(report_kv "$UP" recv_bytes)" -eq 100000 ]
	[ "$(report_kv "$UP" recv_sha256)" = "$(kv sent_sha256)" ]
	# and its whole answer reached us after our close_notify
	[ "$(kv recv_bytes)" -eq $((3 * MiB)) ]
	[ "$(kv recv_sha256)" = "$(report_kv "$UP" sent_sha256)" ]
	[ "$(kv closed_by)" = close_notify ]
	note "half-close: sent 100000, received $(kv recv_bytes) after close_notify"
}

@test "half-close over TLS: a TCP FIN without close_notify is passed on too" {
	start_terminating halfclose --bytes 65536
	run hello 127.0.0.1 "$PORT" --sni my-host-1 --cafile "$PKI/ca.crt" --send 5000 \
		--shut-wr --timeout 15
	echo "$output"
	[ "$(kv handshake)" = ok ]
	wait_for_report "$UP"
	[ "$(report_kv "$UP" recv_bytes)" -eq 5000 ]
	[ "$(kv recv_bytes)" -eq 65536 ]
	[ "$(kv recv_sha256)" = "$(report_kv "$UP" sent_sha256)" ]
}

@test "a TLS connection that goes idle gives its buffers back and then goes on, losing nothing" {
	start_terminating echo
	# tcpmapd frees its 16 KiB relay buffers when a direction has nothing in flight, and
	# OpenSSL its record buffers (SSL_MODE_RELEASE_BUFFERS): both must be re-made intact
	run python3 - "$PORT" "$PKI/ca.crt" 3>&- <<'PY'
import hashlib, socket, ssl, sys, time
port, ca = int(sys.argv[1]), sys.argv[2]
ctx = ssl.create_default_context(cafile=ca)
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=20), server_hostname="my-host-1")
sent, got = hashlib.sha256(), hashlib.sha256()
n_sent = n_got = 0
for burst in range(4):
    data = bytes((burst * 7 + i * 13) % 256 for i in range(300_000))
    s.sendall(data); sent.update(data); n_sent += len(data)
    while n_got < n_sent:
        b = s.recv(65536)
        if not b:
            break
        got.update(b); n_got += len(b)
    time.sleep(1.2)  # idle: every buffer on the way is empty
print("sent", n_sent, sent.hexdigest())
print("got", n_got, got.hexdigest())
PY
	echo "$output"
	[ "$status" -eq 0 ]
	local sent got
	sent=$(sed -n 's/^sent //p' <<<"$output")
	got=$(sed -n 's/^got //p' <<<"$output")
	[ "$sent" = "$got" ]
	[[ "$sent" == 1200000\ * ]]
	note "4 bursts of 300 kB with 1.2 s idle between them: echoed intact ($sent)"
}
