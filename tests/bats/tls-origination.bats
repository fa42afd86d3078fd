#!/usr/bin/env bats
# tls-origination.bats — cases 3 and 4 of the doc: tcpmapd originates TLS toward the
# upstream, after terminating the client's TLS (tls-terminate-originate.yaml) or from a
# cleartext client (tls-originate.yaml). Both examples run as written, ports substituted.
# The upstreams are openssl s_server -www, whose status page starts with its own command
# line (so it names the address that answered) and shows the client certificate it saw.

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

HTTP_GET='GET / HTTP/1.0\r\n\r\n'

@test "tls-terminate-originate.yaml as written: test-1 offers no client certificate, test-2 offers the origination context's" {
	PORT=$(pick_port)
	UP=$(pick_port)
	# -verify asks for a client certificate without demanding one, so both mappings get
	# through and each page says what it saw
	start_s_server 127.0.0.1 "$UP" upstream-1 -www -verify 1 -CAfile "$PKI/ca.crt"
	start_s_server 127.0.0.2 "$UP" upstream-2 -www -verify 1 -CAfile "$PKI/ca.crt"
	start_tcpmapd "$(example_config tls-terminate-originate "$PORT" "$UP")"

	S_CLIENT_INPUT=$(printf "$HTTP_GET")
	s_client_to "$PORT" my-host-1 -verify_return_error -verify_hostname my-host-1
	[ "$status" -eq 0 ]
	[[ "$output" == *"HTTP/1.0 200 ok"* ]]
	[[ "$output" == *"s_server -accept 127.0.0.1:$UP "* ]]
	[[ "$output" == *"no client certificate available"* ]]
	note "test-1 -> upstream-host-1: no client certificate"

	s_client_to "$PORT" my-host-2 -verify_return_error -verify_hostname my-host-2
	[ "$status" -eq 0 ]
	[[ "$output" == *"s_server -accept 127.0.0.2:$UP "* ]]
	[[ "$output" == *"Client certificate"* ]]
	[[ "$output" == *"Subject: CN=tcpmap-origination"* ]]
	[[ "$output" == *"Issuer: CN=tcpmap-test-ca"* ]]
	# the upstream verified it against the CA, as its own log says
	grep -q "depth=0 CN = tcpmap-origination" "$(s_server_log 127.0.0.2 "$UP")"
	if grep -q "tcpmap-origination" "$(s_server_log 127.0.0.1 "$UP")"; then false; fi
	note "test-2 -> upstream-host-2: client certificate CN = tcpmap-origination"

	wait_for_log "event=close mapping=test-1 .*sni=my-host-1 .*result=ok"
	wait_for_log "event=close mapping=test-2 .*sni=my-host-2 .*result=ok"
}

@test "case 3 with -Verify: the upstream that demands a certificate refuses test-1 and accepts test-2" {
	PORT=$(pick_port)
	UP=$(pick_port)
	start_s_server 127.0.0.1 "$UP" upstream-1 -www -Verify 1 -CAfile "$PKI/ca.crt"
	start_s_server 127.0.0.2 "$UP" upstream-2 -www -Verify 1 -CAfile "$PKI/ca.crt"
	start_tcpmapd "$(example_config tls-terminate-originate "$PORT" "$UP")"

	S_CLIENT_INPUT=$(printf "$HTTP_GET")
	s_client_to "$PORT" my-host-2
	[[ "$output" == *"Subject: CN=tcpmap-origination"* ]]

	s_client_to "$PORT" my-host-1
	[[ "$output" != *"HTTP/1.0 200 ok"* ]]
	# s_server says why it refused: no certificate came
	grep -qiE "peer did not return a certificate|no certificate" "$(s_server_log 127.0.0.1 "$UP")"
	# With TLS 1.3 the upstream judges the client certificate after tcpmapd's handshake has
	# completed, and answers with an alert: so nothing may come back, whatever the result.
	wait_for_log "event=close mapping=test-1 .*bytes_out=0 "
	note "test-1 against -Verify: $(close_line 'mapping=test-1 ' | grep -oE 'bytes_out=[0-9]+ .*result=[a-z_]+')"
}

@test "tls-originate.yaml as written: a cleartext client reaches a TLS-only upstream" {
	PORT=$(pick_port)
	UP=$(pick_port)
	start_s_server 127.0.0.1 "$UP" upstream-3 -www
	start_tcpmapd "$(example_config tls-originate "$PORT" "$UP")"

	run curl -sS --max-time 10 "http://127.0.0.1:$PORT/"
	[ "$status" -eq 0 ]
	[[ "$output" == *"s_server -accept 127.0.0.1:$UP "* ]]
	[[ "$output" == *"TLSv1.3"* ]] || [[ "$output" == *"TLSv1.2"* ]]
	[[ "$output" == *"no client certificate available"* ]]
	wait_for_log "event=close mapping=test .*result=ok"
	note "cleartext client -> TLS upstream: $(grep -m1 -o 'Cipher is [A-Z0-9_-]*' <<<"$output" || echo 'page received')"

	# a plain TCP upstream would not do: the bytes upstream really are TLS
	local line
	line=$(close_line 'mapping=test ')
	[ "$(logfield "$line" upstream)" = "127.0.0.1:$UP" ]
}

@test "origination verifies the upstream only when the context names a CA" {
	local p_none p_ok p_name p_ca
	p_none=$(pick_port)
	p_ok=$(pick_port)
	p_name=$(pick_port)
	p_ca=$(pick_port)
	UP=$(pick_port)
	# upstream-1's certificate is signed by the test CA and names upstream-host-1 only
	start_s_server 127.0.0.1 "$UP" upstream-1 -www
	local cfg=$BATS_TEST_TMPDIR/verify.yaml
	write_tls_context "$cfg" ca-and-sni testca "sni: upstream-host-1"
	write_tls_context "$cfg" ca-only testca
	write_tls_context "$cfg" wrong-ca otherca "sni: upstream-host-1"
	# the contexts carry only a CA; "secret" above is read as the CA secret's name below
	sed -i 's/^  secret: \(testca\|otherca\)$/  ca_secret: \1/' "$cfg"
	write_mapping "$cfg" no-ca "$p_none" "127.0.0.1:$UP" "tls: true"
	write_mapping "$cfg" ca-ok "$p_ok" "127.0.0.1:$UP" "tls: ca-and-sni"
	write_mapping "$cfg" ca-bad-name "$p_name" "127.0.0.1:$UP" "tls: ca-only"
	write_mapping "$cfg" ca-bad-ca "$p_ca" "127.0.0.1:$UP" "tls: wrong-ca"
	start_tcpmapd "$cfg"

	local m p
	for m in no-ca:$p_none ca-ok:$p_ok; do
		run curl -sS --max-time 10 "http://127.0.0.1:${m#*:}/"
		[ "$status" -eq 0 ]
		[[ "$output" == *"s_server -accept 127.0.0.1:$UP "* ]]
		wait_for_log "event=close mapping=${m%%:*} .*result=ok"
	done
	for m in ca-bad-name:$p_name ca-bad-ca:$p_ca; do
		run curl -sS --max-time 10 "http://127.0.0.1:${m#*:}/"
		[ "$status" -ne 0 ]
		[[ "$output" != *"s_server -accept"* ]]
		wait_for_log "event=close mapping=${m%%:*} .*result=(handshake_failed|connect_failed)"
	done
	note "no CA: ok; CA + sni: ok; CA, IP not in SAN: $(close_line 'mapping=ca-bad-name ' | sed -n 's/.*result=\([a-z_]*\).*/\1/p'); unrelated CA: $(close_line 'mapping=ca-bad-ca ' | sed -n 's/.*result=\([a-z_]*\).*/\1/p')"
}
