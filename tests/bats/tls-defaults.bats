#!/usr/bin/env bats
# tls-defaults.bats — what a terminating TLSContext without any version or cipher setting
# allows (issue 7, SECURITY.md): TLS 1.2 and 1.3 only, so TLS 1.0 and 1.1 are refused even
# by a client that lowers its own security level; and no renegotiation. Checked from
# outside with `openssl s_client`. tcpmapd serves the next client after each refusal.

load ../lib/common
load ../lib/faults

setup() {
	common_setup
	PORT=$(pick_port)
	ECHO_UP=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/tls.yaml
	SECRETS=$BATS_TEST_TMPDIR/secrets
	make_cert "$SECRETS" defcert tls.test
	start_upstream 127.0.0.1 "$ECHO_UP" echo
	write_tls_context_doc "$CONF" ctx defcert tls.test
	write_mapping "$CONF" tls "$PORT" "127.0.0.1:$ECHO_UP" "host: tls.test"
	TCPMAPD_ARGS=(--secrets-dir "$SECRETS")
	start_tcpmapd "$CONF"
}
teardown() { common_teardown; }

# s_client_run [OPTS...]: one s_client session to tls.test, stdin from a pipe that holds
# the lines of $S_INPUT each after a pause, so commands arrive after the handshake.
s_client_run() {
	run timeout 15 bash -c '
		{ sleep 0.5; for l in $S_INPUT; do echo "$l"; sleep 1; done; } |
			openssl s_client -connect "127.0.0.1:$0" -servername tls.test "$@" 2>&1' \
		"$PORT" "$@"
}

# One good session proves the refusals were the protocol's, and that tcpmapd still serves.
still_serves() {
	run faults tls-probe --port "$PORT" --sni tls.test --count 1
	[ "$(sed -n 's/^ok=//p' <<<"$output")" = 1 ]
	pid_alive "$TCPMAPD_PID"
}

@test "TLS 1.2 and TLS 1.3 are accepted" {
	local v
	for v in -tls1_2 -tls1_3; do
		S_INPUT=hello-$v s_client_run "$v"
		echo "$output"
		[[ "$output" == *"hello-$v"* ]] # echoed back through the relay
		note "s_client $v: $(grep -m1 -E '^ *Protocol *:' <<<"$output" | tr -s ' '), $(grep -m1 -E '^ *Cipher *:' <<<"$output" | tr -s ' ')"
	done
}

@test "TLS 1.0 and TLS 1.1 are refused, even by a client at security level 0" {
	local v
	for v in -tls1 -tls1_1; do
		S_INPUT= s_client_run "$v" -cipher DEFAULT@SECLEVEL=0
		echo "$output"
		[ "$status" -ne 0 ]
		[[ "$output" != *"BEGIN CERTIFICATE"* ]]
		[[ "$output" != *"Server certificate"* ]]
		[[ "$output" == *alert* ]] || [[ "$output" == *"no protocols available"* ]] ||
			[[ "$output" == *"unsupported protocol"* ]]
		note "s_client $v: refused, $(grep -oE 'alert protocol version|unsupported protocol|wrong version number|no protocols available' <<<"$output" | head -n 1))"
		still_serves
	done
	# refused before any mapping is chosen, so the close line names only the SNI
	wait_for_log 'event=close .*sni=tls.test .*result=handshake_failed' 2
}

@test "renegotiation (s_client R over TLS 1.2) is refused; the session never renegotiates" {
	S_INPUT="before R after" s_client_run -tls1_2
	echo "$output"
	[[ "$output" == *"Secure Renegotiation IS supported"* ]] # RFC 5746 signalling only
	[[ "$output" == *RENEGOTIATING* ]]
	[[ "$output" == *before* ]]
	# a refused renegotiation: the server's no_renegotiation alert ends it, and nothing
	# sent afterwards is echoed
	[[ "$output" == *"no renegotiation"* ]] || [[ "$output" == *"alert"* ]]
	[[ "$output" != *after* ]]
	note "s_client R: $(grep -m1 -oE '[^:]*(no renegotiation|alert)[^:]*' <<<"$output")"
	still_serves
}

# s_client_to_host PORT HOST [OPTS...]: like s_client_run, to another port and SNI.
s_client_to_host() {
	local port=$1 host=$2
	shift 2
	run timeout 15 bash -c '{ sleep 0.5; echo hi; sleep 1; } |
		openssl s_client -connect "127.0.0.1:$0" -servername "$1" "${@:2}" 2>&1' \
		"$port" "$host" "$@"
}

@test "TLS 1.2 offers only forward-secret AEAD suites by default; CBC and RSA key exchange only when a TLSContext asks" {
	local port2 conf2=$BATS_TEST_TMPDIR/ciphers.yaml
	port2=$(pick_port)
	# an RSA certificate too, so that RSA key exchange could be offered at all
	mkdir -p "$SECRETS/rsacert"
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rsa.test \
		-addext "subjectAltName=DNS:rsa.test" -keyout "$SECRETS/rsacert/tls.key" \
		-out "$SECRETS/rsacert/tls.crt" 2>/dev/null
	write_tls_context_doc "$conf2" ecctx defcert tls.test
	write_tls_context_doc "$conf2" rsactx rsacert rsa.test
	write_mapping "$conf2" ec "$port2" "127.0.0.1:$ECHO_UP" "host: tls.test"
	write_mapping "$conf2" rsa "$port2" "127.0.0.1:$ECHO_UP" "host: rsa.test"
	start_tcpmapd "$conf2"
	local c
	# refused by default: CBC with ECDHE, and plain-RSA key exchange (GCM and CBC)
	for c in ECDHE-ECDSA-AES128-SHA:tls.test AES256-GCM-SHA384:rsa.test AES128-SHA:rsa.test \
		ECDHE-RSA-AES128-SHA:rsa.test; do
		s_client_to_host "$port2" "${c#*:}" -tls1_2 -cipher "${c%%:*}"
		[ "$status" -ne 0 ]
		[[ "$output" != *"Cipher is ${c%%:*}"* ]]
		note "default profile, TLS 1.2 ${c%%:*} to ${c#*:}: refused"
	done
	# the forward-secret AEAD suites are there, for either certificate
	for c in ECDHE-ECDSA-AES128-GCM-SHA256:tls.test ECDHE-RSA-AES256-GCM-SHA384:rsa.test \
		ECDHE-ECDSA-CHACHA20-POLY1305:tls.test; do
		s_client_to_host "$port2" "${c#*:}" -tls1_2 -cipher "${c%%:*}"
		[ "$status" -eq 0 ]
		[[ "$output" == *"Cipher is ${c%%:*}"* ]]
	done
	# a TLSContext that lists cipher_suites gets exactly those, the old ones included
	stop_pid "$TCPMAPD_PID"
	: >"$conf2"
	cat >>"$conf2" <<-DOC
		---
		apiVersion: getambassador.io/v2
		kind: TLSContext
		metadata:
		  name: rsactx
		spec:
		  secret: rsacert
		  hosts: [rsa.test]
		  cipher_suites: [AES128-SHA, ECDHE-RSA-AES128-GCM-SHA256]
	DOC
	write_mapping "$conf2" rsa "$port2" "127.0.0.1:$ECHO_UP" "host: rsa.test"
	start_tcpmapd "$conf2"
	s_client_to_host "$port2" rsa.test -tls1_2 -cipher AES128-SHA
	echo "$output" | tail -5
	[ "$status" -eq 0 ]
	[[ "$output" == *"Cipher is AES128-SHA"* ]]
	s_client_to_host "$port2" rsa.test -tls1_2 -cipher ECDHE-RSA-AES256-GCM-SHA384
	[ "$status" -ne 0 ]
}
