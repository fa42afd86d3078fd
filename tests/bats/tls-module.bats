#!/usr/bin/env bats
# tls-module.bats — tcpmapd does not link OpenSSL: lib/tls.c lives in tcpmap-tls.so, loaded
# the first time a config needs TLS. A cleartext tcpmapd never maps OpenSSL; a TLS one maps
# the module from beside the binary; and a TLS config without the module is refused with
# its file and line and the path looked at, while a cleartext one still runs.

load ../lib/common
load ../lib/faults

setup() { common_setup; }
teardown() { common_teardown; }

# maps_of PID: the files the process has mapped, one per line
maps_of() { awk 'NF >= 6 { print $6 }' "/proc/$1/maps" | sort -u; }

@test "a cleartext tcpmapd maps no OpenSSL; a TLS one maps tcpmap-tls.so from beside it" {
	start_echo_relay clear
	local up=$RELAY_UP
	run maps_of "$TCPMAPD_PID"
	[ "$status" -eq 0 ]
	# the maps were read (an unreadable or empty list would show no OpenSSL either)
	grep -qx "$(readlink -f "$TCPMAPD")" <<<"$output"
	if grep -E 'libssl|libcrypto|tcpmap-tls' <<<"$output"; then false; fi
	stop_tcpmapd

	local tport secrets=$BATS_TEST_TMPDIR/secrets tconf=$BATS_TEST_TMPDIR/tls.yaml
	tport=$(pick_port)
	make_cert "$secrets" modcert mod.test
	write_tls_context_doc "$tconf" ctx modcert mod.test
	write_mapping "$tconf" tls "$tport" "127.0.0.1:$up" "host: mod.test"
	TCPMAPD_ARGS=(--secrets-dir "$secrets")
	start_tcpmapd "$tconf"
	run maps_of "$TCPMAPD_PID"
	grep -qx "$(dirname "$(readlink -f "$TCPMAPD")")/tcpmap-tls.so" <<<"$output"
	grep -q 'libssl' <<<"$output"
	run timeout 10 bash -c 'echo hello | openssl s_client -quiet -connect "127.0.0.1:$0" \
		-servername mod.test 2>/dev/null' "$tport"
	[ "$output" = hello ]
	note "cleartext: no libssl, libcrypto or module mapped; TLS: module and libssl mapped, echo through"
}

@test "without tcpmap-tls.so a TLS config is refused at its line, and a cleartext one runs" {
	local bin=$BATS_TEST_TMPDIR/bin secrets=$BATS_TEST_TMPDIR/secrets
	local conf=$BATS_TEST_TMPDIR/tls.yaml port up
	port=$(pick_port)
	up=$(pick_port)
	mkdir -p "$bin"
	cp "$TCPMAPD" "$bin/tcpmapd" # alone: no module beside it, none in ../lib/tcpmap
	make_cert "$secrets" modcert mod.test
	write_tls_context_doc "$conf" ctx modcert mod.test
	write_mapping "$conf" tls "$port" "127.0.0.1:$up" "host: mod.test"
	run timeout 10 "$bin/tcpmapd" --config "$conf" --secrets-dir "$secrets" \
		--runtime-dir "$RUN_DIR" --log-target stderr
	echo "$output"
	[ "$status" -ne 0 ]
	grep -q "$conf:[0-9]*:[0-9]*: TLS is configured, but $bin/../lib/tcpmap/tcpmap-tls.so cannot be loaded" <<<"$output"
	local refused
	refused=$(grep -m1 -o 'tls.yaml:[0-9:]* TLS is configured.*' <<<"$output")

	local clear=$BATS_TEST_TMPDIR/clear.yaml
	start_upstream 127.0.0.1 "$up" echo
	write_mapping "$clear" clear "$port" "127.0.0.1:$up"
	TCPMAPD=$bin/tcpmapd start_tcpmapd "$clear"
	run client 127.0.0.1 "$port" --send 1000 --timeout 10
	[ "$(kv recv_bytes)" = 1000 ]
	note "refused: ${refused%%\"*}"
}
