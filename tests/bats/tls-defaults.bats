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
