#!/usr/bin/env bats
# tls-per-connection.bats — the doc's four TLS cases and passthrough served by the
# one-process-per-connection model (Accept=yes, here systemd-socket-activate --accept), so
# that both process models are shown to serve every case, not only the threaded one.

load ../lib/common
load ../lib/tls

setup_file() {
	load ../lib/common
	load ../lib/tls
	tls_make_pki
}

setup() {
	tls_setup
	command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate not installed"
	PORT=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/tcpmap.yaml
}

teardown() { common_teardown; }

# activate: systemd-socket-activate --accept owns 127.0.0.1:PORT; one tcpmapd per connection.
activate() {
	local env_args
	mapfile -t env_args < <(socket_activate_env)
	TCPMAPD_LOG=$BATS_TEST_TMPDIR/tcpmapd-accept.log
	systemd-socket-activate --accept --listen="127.0.0.1:$PORT" "${env_args[@]}" \
		"$TCPMAPD" --config "$CONF" --runtime-dir "$RUN_DIR" --secrets-dir "$SECRETS_DIR" \
		--log-target stderr </dev/null >"$TCPMAPD_LOG" 2>&1 3>&- &
	TCPMAPD_PID=$!
	record_pid "$TCPMAPD_PID"
	wait_listening "$PORT"
}

# mapping NAME SPEC_LINE...: append a TCPMapping on 127.0.0.1:PORT.
mapping() {
	local name=$1 line
	shift
	{
		printf -- '---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: %s\nspec:\n  address: 127.0.0.1\n  port: %s\n' "$name" "$PORT"
		for line in "$@"; do echo "  $line"; done
	} >>"$CONF"
}

@test "per-connection: host only terminates TLS and relays cleartext upstream" {
	UP=$(pick_port)
	start_upstream 127.0.0.1 "$UP" banner per-connection-banner
	write_tls_context "$CONF" my-context supersecret "hosts: [my-host-1]"
	mapping term "host: my-host-1" "service: 127.0.0.1:$UP"
	activate
	s_client_to "$PORT" my-host-1 -verify_return_error -verify_hostname my-host-1
	[ "$status" -eq 0 ]
	[[ "$output" == *per-connection-banner* ]]
	wait_for_log 'event=close .*mapping=term .*sni=my-host-1 .*result=ok'
	[ "$(log_count '^Spawned ')" -ge 1 ]
	note "host only, Accept=yes: the upstream's banner came back through a per-connection tcpmapd"
}

@test "per-connection: host and tls terminate, then originate with the context's certificate" {
	UP=$(pick_port)
	start_s_server 127.0.0.1 "$UP" upstream-1 -www -verify 1 -CAfile "$PKI/ca.crt"
	write_tls_context "$CONF" my-context supersecret "hosts: [my-host-1]"
	write_tls_context "$CONF" origination-context othersecret
	mapping both "host: my-host-1" "tls: origination-context" "service: 127.0.0.1:$UP"
	activate
	S_CLIENT_INPUT=$(printf 'GET / HTTP/1.0\r\n\r\n')
	s_client_to "$PORT" my-host-1 -verify_return_error
	[ "$status" -eq 0 ]
	[[ "$output" == *"HTTP/1.0 200 ok"* ]]
	[[ "$output" == *"CN=tcpmap-origination"* ]] || [[ "$output" == *"CN = tcpmap-origination"* ]]
	wait_for_log 'event=close .*mapping=both .*result=ok'
}

@test "per-connection: tls only originates TLS for a cleartext client" {
	UP=$(pick_port)
	start_s_server 127.0.0.1 "$UP" upstream-1 -www
	mapping orig "tls: true" "service: 127.0.0.1:$UP"
	activate
	run timeout 10 curl -sS --max-time 5 "http://127.0.0.1:$PORT/"
	[ "$status" -eq 0 ]
	[[ "$output" == *"s_server -accept 127.0.0.1:$UP"* ]]
	wait_for_log 'event=close .*mapping=orig .*result=ok'
}

@test "per-connection: tls_passthrough routes on SNI and shows the upstream's own certificate" {
	UP=$(pick_port)
	start_s_server 127.0.0.1 "$UP" passthrough -www
	mapping pass "host: pass.example.net" "tls_passthrough: true" "service: 127.0.0.1:$UP"
	activate
	S_CLIENT_INPUT=$(printf 'GET / HTTP/1.0\r\n\r\n')
	s_client_to "$PORT" pass.example.net -verify_return_error -verify_hostname pass.example.net
	[ "$status" -eq 0 ]
	[[ "$output" == *"CN = passthrough-upstream"* ]] || [[ "$output" == *"CN=passthrough-upstream"* ]]
	wait_for_log 'event=close .*mapping=pass .*sni=pass.example.net .*result=ok'
}

# The other per-connection model: the threaded tcpmapd with per_connection_process. A TLS
# session it terminates cannot go to its relay spawner, so tcpmapd forks that relay itself.
@test "per_connection_process: TLS terminated by tcpmapd is relayed by a process of its own" {
	UP=$(pick_port)
	start_upstream 127.0.0.1 "$UP" banner forked-tls-banner
	write_tls_context "$CONF" my-context supersecret "hosts: [my-host-1]"
	mapping term "host: my-host-1" "service: 127.0.0.1:$UP" "per_connection_process: true"
	TCPMAPD_ARGS=(--secrets-dir "$SECRETS_DIR")
	start_tcpmapd "$CONF"
	s_client_to "$PORT" my-host-1 -verify_return_error -verify_hostname my-host-1
	[ "$status" -eq 0 ]
	[[ "$output" == *forked-tls-banner* ]]
	wait_for_log 'event=close .*mapping=term .*sni=my-host-1 .*result=ok pid=[0-9]+ '
	local pid
	pid=$(sed -nE 's/.*event=close .*mapping=term .* pid=([0-9]+) .*/\1/p' "$TCPMAPD_LOG")
	[ -n "$pid" ] && [ "$pid" != "$TCPMAPD_PID" ]
	[ "$(log_count 'event=relay_died')" -eq 0 ]
	note "TLS terminated, relayed by process $pid, forked by tcpmapd $TCPMAPD_PID"
}
