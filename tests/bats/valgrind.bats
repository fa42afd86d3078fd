#!/usr/bin/env bats
# valgrind.bats — a short relay session under valgrind --leak-check=full: cleartext and TLS
# connections, a reload and a clean stop leave no leaked block and no memory error.

load ../lib/common
load ../lib/tls

setup_file() {
	load ../lib/common
	load ../lib/tls
	tls_make_pki
}

setup() {
	tls_setup
	command -v valgrind >/dev/null || skip "valgrind is not installed"
	[ "${TCPMAP_SAN:-0}" = 1 ] && skip "valgrind cannot run a sanitizer build (the plain build ran it)"
	PORT=$(pick_port)
	TPORT=$(pick_port)
	UP=$(pick_port)
	start_upstream 127.0.0.1 "$UP" echo
	BANNER=$(pick_port)
	start_upstream 127.0.0.1 "$BANNER" banner hello-through-tls
	CONF=$BATS_TEST_TMPDIR/tcpmap.yaml
	write_mapping "$CONF" plain "$PORT" "127.0.0.1:$UP"
	write_tls_context "$CONF" ctx supersecret "hosts: [my-host-1]"
	cat >>"$CONF" <<YAML
---
apiVersion: getambassador.io/v2
kind: TCPMapping
metadata:
  name: term
spec:
  address: 127.0.0.1
  port: $TPORT
  host: my-host-1
  service: 127.0.0.1:$BANNER
YAML
}

teardown() { common_teardown; }

@test "valgrind --leak-check=full: relaying, TLS, a reload and a stop leak nothing" {
	VG_LOG=$BATS_TEST_TMPDIR/valgrind.log
	TCPMAPD_WRAP=(valgrind --quiet --leak-check=full --show-leak-kinds=definite,indirect
		--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --log-file="$VG_LOG")
	TCPMAPD_ARGS+=(--workers 1)
	start_tcpmapd "$CONF"
	run client 127.0.0.1 "$PORT" --send 1048576 --timeout 60
	[ "$(kv recv_bytes)" = 1048576 ]
	[ "$(kv recv_sha256)" = "$(kv sent_sha256)" ]
	run client 127.0.0.1 "$PORT" --send 65536 --parallel 5 --timeout 60
	[ "$(kv intact)" = 5 ]
	s_client_to "$TPORT" my-host-1 -verify_return_error
	[ "$status" -eq 0 ]
	[[ "$output" == *hello-through-tls* ]]
	kill -HUP "$TCPMAPD_PID"
	wait_for_log 'event=config .*generation 2|config reloaded: generation 2' 1
	run client 127.0.0.1 "$PORT" --send 4096 --timeout 60
	[ "$(kv recv_bytes)" = 4096 ]
	[ "$(kv recv_sha256)" = "$(kv sent_sha256)" ]
	stop_pid "$TCPMAPD_PID"
	cat "$VG_LOG"
	note "valgrind --leak-check=full: exit status $STOP_STATUS (99 on any error or leak)"
	# --error-exitcode makes any memory error or definite/indirect leak exit 99
	[ "$STOP_STATUS" -eq 0 ]
	if grep -E 'definitely lost|indirectly lost|Invalid (read|write|free)|uninitialised|Mismatched' "$VG_LOG"; then false; fi
	# the only words allowed are valgrind's own: it has no wrapper for mlock2(2), which
	# OpenSSL's secure heap uses
	[ -z "$(grep -v -E 'unhandled amd64-linux syscall: 325|write your own handler|README_MISSING_SYSCALL|Nevertheless we consider|it at http://valgrind.org' "$VG_LOG")" ]
}
