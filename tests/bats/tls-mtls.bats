#!/usr/bin/env bats
# tls-mtls.bats — mutual TLS on termination: a TLSContext with ca_secret and cert_required
# makes tcpmapd demand a client certificate that verifies against that CA. Real openssl
# s_client and python ssl clients over loopback, a throw-away client PKI per file: the
# test CA's client certificate relays, none or another CA's is refused with a logged result.

load ../lib/common
load ../lib/tls

setup_file() {
	load ../lib/common
	load ../lib/tls
	tls_make_pki
	# client certificates: one from the CA tcpmapd trusts, one from an unrelated CA
	[ -f "$PKI/mtls-done" ] && return 0
	tls_issue "$PKI" client-good tcpmap-client "" clientAuth
	local other=$PKI/other
	mkdir -p "$other"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$other/ca.key" -out "$other/ca.crt" -days 2 -subj "/CN=tcpmap-stranger-ca" \
		2>/dev/null
	tls_issue "$other" client-stranger tcpmap-client "" clientAuth
	touch "$PKI/mtls-done"
}

setup() {
	tls_setup
	PORT=$(pick_port)
	UP=$(pick_port)
	local cfg=$BATS_TEST_TMPDIR/mtls.yaml
	write_tls_context "$cfg" mtls supersecret "hosts: [my-host-1]" "ca_secret: testca" \
		"cert_required: true"
	write_mapping "$cfg" mtls "$PORT" "127.0.0.1:$UP" "host: my-host-1"
	start_upstream 127.0.0.1 "$UP" echo
	start_tcpmapd "$cfg"
}

teardown() {
	common_teardown
}

# mtls_s_client [OPTS...]: s_client to my-host-1 sending one line to the echo upstream,
# then closing a second later (time enough for the echo); sets status and output.
mtls_s_client() {
	run timeout 10 openssl s_client -connect "127.0.0.1:$PORT" -servername my-host-1 \
		-CAfile "$PKI/ca.crt" -verify_return_error "$@" \
		< <(echo ping-through-mtls; sleep 1)
}

# py_mtls CERT KEY VERSION: a python ssl client (TLS 1.2 or 1.3; CERT "-" for none)
# sending 1000 bytes to the echo upstream; prints result=ok and echo=N, or result=refused
# and error=REASON, and elapsed_ms.
py_mtls() {
	python3 - "$PORT" "$PKI/ca.crt" "$@" 3>&- <<'PY'
import socket, ssl, sys, time
port, ca, cert, key, tls = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2 if tls == "1.2" else ssl.TLSVersion.TLSv1_3
if cert != "-":
    ctx.load_cert_chain(cert, key)
t0 = time.monotonic()
try:
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="my-host-1")
    # with TLS 1.3 the server judges the client's certificate after the client thinks the
    # handshake is done: the refusal arrives as an alert on the first read
    s.sendall(b"x" * 1000)
    got = b""
    while len(got) < 1000:
        b = s.recv(4096)
        if not b:
            break
        got += b
    print("result=ok\necho=%d" % len(got))
except (ssl.SSLError, OSError) as e:
    print("result=refused\nerror=%s" % (getattr(e, "reason", None) or type(e).__name__))
print("elapsed_ms=%d" % ((time.monotonic() - t0) * 1000))
PY
}

# no_bytes_upstream: no byte of a refused client reached the upstream (tcpmapd may open the
# upstream connection during the handshake; it then closes it unused).
no_bytes_upstream() {
	local f n
	f=$(upstream_report "$UP")
	[ -f "$f" ] || return 0
	n=$(grep -c . "$f")
	note "upstream: $n connection(s) opened during refused handshakes, $(grep -vc 'recv_bytes=0 ' "$f") with bytes"
	! grep -v 'recv_bytes=0 ' "$f"
}

@test "mTLS: a client certificate from the context's CA relays bytes to the upstream" {
	mtls_s_client -cert "$PKI/client-good.crt" -key "$PKI/client-good.key"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Verify return code: 0 (ok)"* ]]
	# the echo upstream sent our line back
	[[ "$output" == *ping-through-mtls* ]]
	wait_for_log "event=close mapping=mtls .*sni=my-host-1 .*result=ok"
	local line
	line=$(close_line "mapping=mtls ")
	note "s_client with the test CA's client cert: result=$(logfield "$line" result) bytes_in=$(logfield "$line" bytes_in) bytes_out=$(logfield "$line" bytes_out)"
	[ "$(logfield "$line" bytes_in)" -ge 18 ]
	local v
	for v in 1.2 1.3; do
		run py_mtls "$PKI/client-good.crt" "$PKI/client-good.key" "$v"
		echo "$output"
		[ "$(kv result)" = ok ]
		[ "$(kv echo)" = 1000 ]
		note "python ssl TLS $v with a good client cert: 1000 bytes echoed in $(kv elapsed_ms) ms"
	done
	wait_for_log "event=close mapping=mtls .*result=ok" 3
	[ "$(log_count 'result=handshake_failed')" -eq 0 ]
}

@test "mTLS: a client without a certificate is refused, logged handshake_failed" {
	mtls_s_client
	echo "$output"
	# the echo upstream's answer never came back
	[[ "$output" != *ping-through-mtls* ]]
	[[ "$output" == *alert* ]]
	note "s_client without a cert: status $status, $(grep -o 'alert [a-z ]*' <<<"$output" | head -n 1)"
	wait_for_log "event=close mapping=mtls .*result=handshake_failed"
	local v
	for v in 1.2 1.3; do
		run py_mtls - - "$v"
		echo "$output"
		[ "$(kv result)" = refused ]
		note "python ssl TLS $v without a cert: refused ($(kv error)) in $(kv elapsed_ms) ms"
	done
	wait_for_log "event=close mapping=mtls .*result=handshake_failed" 3
	[ "$(log_count 'result=ok')" -eq 0 ]
	no_bytes_upstream
}

@test "mTLS: a client certificate from another CA is refused, logged handshake_failed" {
	mtls_s_client -cert "$PKI/other/client-stranger.crt" -key "$PKI/other/client-stranger.key"
	echo "$output"
	[[ "$output" != *ping-through-mtls* ]]
	[[ "$output" == *alert* ]]
	note "s_client with a stranger CA's cert: status $status, $(grep -o 'alert [a-z ]*' <<<"$output" | head -n 1)"
	wait_for_log "event=close mapping=mtls .*result=handshake_failed"
	local v
	for v in 1.2 1.3; do
		run py_mtls "$PKI/other/client-stranger.crt" "$PKI/other/client-stranger.key" "$v"
		echo "$output"
		[ "$(kv result)" = refused ]
		note "python ssl TLS $v with a stranger CA's cert: refused ($(kv error)) in $(kv elapsed_ms) ms"
	done
	wait_for_log "event=close mapping=mtls .*result=handshake_failed" 3
	[ "$(log_count 'result=ok')" -eq 0 ]
	no_bytes_upstream
	# tcpmapd said why, at the connection
	grep -E 'result=handshake_failed' "$TCPMAPD_LOG" | head -n 3
}
