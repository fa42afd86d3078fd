#!/usr/bin/env bats
# proxy-protocol.bats — the `proxy_protocol: v1|v2` extension, checked by real peers:
# haproxy (bind ... accept-proxy) and nginx (listen ... proxy_protocol) parse the header
# and answer with the client address they read from it, which must be the client's own
# source address and port (the client binds a known source port) and tcpmapd's listener.
# Also with TLS: the header goes before the upstream handshake when originating, and
# after termination the relayed stream still starts with it.

load ../lib/common
load ../lib/tls

setup_file() {
	load ../lib/common
	load ../lib/tls
	tls_make_pki
}

setup() {
	tls_setup
	command -v haproxy >/dev/null || skip "haproxy not installed"
	CFG=$BATS_TEST_TMPDIR/pp.yaml
}

teardown() {
	common_teardown
}

# get_via PORT SCHEME [CURL_OPTS...]: one HTTP GET through tcpmapd from a fixed source
# port; sets SRC_PORT, status and output.
get_via() {
	local port=$1 scheme=$2
	shift 2
	SRC_PORT=$(pick_port)
	run curl -sS --max-time 10 --local-port "$SRC_PORT" "$@" "$scheme://127.0.0.1:$port/"
}

# check_answer TCPMAP_PORT MAPPING: the peer's answer names the client's address and
# tcpmapd's listener, and tcpmapd's own access log agrees on the client.
check_answer() {
	echo "answer: $output"
	[ "$status" -eq 0 ]
	[ "$output" = "src=127.0.0.1:$SRC_PORT dst=127.0.0.1:$1" ]
	wait_for_log "event=close mapping=$2 .*result=ok"
	[ "$(logfield "$(close_line "mapping=$2 ")" client)" = "127.0.0.1:$SRC_PORT" ]
}

@test "PROXY v1 and v2 headers are parsed by haproxy accept-proxy" {
	local p1 p2 hp
	p1=$(pick_port)
	p2=$(pick_port)
	hp=$(pick_port)
	start_haproxy_echo "$hp"
	write_mapping "$CFG" pp-v1 "$p1" "127.0.0.1:$hp" "proxy_protocol: v1"
	write_mapping "$CFG" pp-v2 "$p2" "127.0.0.1:$hp" "proxy_protocol: v2"
	start_tcpmapd "$CFG"

	get_via "$p1" http
	check_answer "$p1" pp-v1
	note "v1 via haproxy: $output"
	get_via "$p2" http
	check_answer "$p2" pp-v2
	note "v2 via haproxy: $output"
}

@test "PROXY v1 and v2 headers are parsed by nginx proxy_protocol" {
	command -v nginx >/dev/null || skip "nginx not installed"
	local p1 p2 np
	p1=$(pick_port)
	p2=$(pick_port)
	np=$(pick_port)
	start_nginx_echo "$np"
	write_mapping "$CFG" pp-v1 "$p1" "127.0.0.1:$np" "proxy_protocol: v1"
	write_mapping "$CFG" pp-v2 "$p2" "127.0.0.1:$np" "proxy_protocol: v2"
	start_tcpmapd "$CFG"

	get_via "$p1" http
	check_answer "$p1" pp-v1
	note "v1 via nginx: $output"
	get_via "$p2" http
	check_answer "$p2" pp-v2
	note "v2 via nginx: $output"
}

@test "without proxy_protocol the peer that expects a header refuses the connection" {
	local p hp
	p=$(pick_port)
	hp=$(pick_port)
	start_haproxy_echo "$hp"
	write_mapping "$CFG" plain "$p" "127.0.0.1:$hp"
	start_tcpmapd "$CFG"
	get_via "$p" http
	echo "answer: $output"
	# the request was relayed, and the peer closed without answering a byte
	[ "$status" -ne 0 ]
	[[ "$output" != *"src="* ]]
	wait_for_log "event=close mapping=plain "
	local line
	line=$(close_line "mapping=plain ")
	echo "$line"
	[ "$(logfield "$line" client)" = "127.0.0.1:$SRC_PORT" ]
	[ "$(logfield "$line" upstream)" = "127.0.0.1:$hp" ]
	[ "$(logfield "$line" bytes_in)" -ge 16 ]
	[ "$(logfield "$line" bytes_out)" -eq 0 ]
	note "without a header: $(logfield "$line" bytes_in) request bytes relayed, $(logfield "$line" bytes_out) answered, curl: $output"
}

@test "PROXY v2 goes before the TLS handshake when originating (haproxy accept-proxy ssl)" {
	local p hp
	p=$(pick_port)
	hp=$(pick_port)
	start_haproxy_echo "$hp" ssl crt "$PKI/upstream-3.pem"
	write_mapping "$CFG" pp-tls "$p" "127.0.0.1:$hp" "tls: true" "proxy_protocol: v2"
	start_tcpmapd "$CFG"
	get_via "$p" http
	check_answer "$p" pp-tls
	note "v2 then TLS via haproxy: $output"
}

@test "PROXY v1 after TLS termination carries the TLS client's address" {
	local p hp
	p=$(pick_port)
	hp=$(pick_port)
	start_haproxy_echo "$hp"
	write_tls_context "$CFG" my-context supersecret "hosts: [my-host-1]"
	write_mapping "$CFG" pp-term "$p" "127.0.0.1:$hp" "host: my-host-1" "proxy_protocol: v1"
	start_tcpmapd "$CFG"
	SRC_PORT=$(pick_port)
	run curl -sS --max-time 10 --local-port "$SRC_PORT" --cacert "$PKI/ca.crt" \
		--resolve "my-host-1:$p:127.0.0.1" "https://my-host-1:$p/"
	# check_answer asserts the status and the answer
	check_answer "$p" pp-term
	note "TLS terminated, then v1 via haproxy: $output"
}
