#!/usr/bin/env bats
# upstream.bats — reaching the upstream: IPv6 with enable_ipv6 (and IPv6 first when both
# families are on), IPv4-only by default, the default port 80, and a refused or
# black-holed upstream closing the client promptly.

load ../lib/common

# A name that resolves to both ::1 and 127.0.0.1. The host's /etc/hosts has no such name,
# so tcpmapd runs in a private mount namespace with its own hosts file bound over it.
DUAL=dual-stack.tcpmap.test

setup() { common_setup; }
teardown() { common_teardown; }

use_dual_stack_name() {
	command -v unshare >/dev/null || skip "unshare not installed"
	local hosts=$BATS_TEST_TMPDIR/hosts
	printf '::1 %s\n127.0.0.1 %s\n' "$DUAL" "$DUAL" >"$hosts"
	unshare -m -- sh -c 'mount --bind "$1" /etc/hosts && getent ahosts "$2"' sh "$hosts" "$DUAL" \
		>"$BATS_TEST_TMPDIR/getent.out" 2>&1 || skip "cannot bind a private /etc/hosts"
	grep -q '^::1 ' "$BATS_TEST_TMPDIR/getent.out"
	grep -q '^127.0.0.1 ' "$BATS_TEST_TMPDIR/getent.out"
	TCPMAPD_WRAP=(unshare -m -- sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$hosts")
}

@test "an IPv6-only upstream is reached with enable_ipv6 through a name with both families" {
	use_dual_stack_name
	local port up conf=$BATS_TEST_TMPDIR/v6.yaml
	port=$(pick_port)
	up=$(pick_port)
	start_upstream ::1 "$up" banner v6-upstream
	# nothing answers on IPv4 at that port
	[ -z "$(ss -Hltn "sport = :$up" | grep -F '127.0.0.1')" ]
	write_mapping "$conf" v6 "$port" "$DUAL:$up" 'enable_ipv6: true'
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --text --timeout 10
	echo "$output"
	[ "$(kv recv_text)" = v6-upstream ]
	wait_for_log "event=close .*mapping=v6 .*upstream=\[?::1\]?:$up .*result=ok"
	note "service $DUAL:$up with enable_ipv6 reached [::1]:$up"
}

@test "with both families on, IPv6 is tried first; without enable_ipv6 only IPv4" {
	use_dual_stack_name
	local p6 p4 up conf=$BATS_TEST_TMPDIR/both.yaml
	p6=$(pick_port)
	p4=$(pick_port)
	up=$(pick_port)
	# one port, two answers: which family tcpmapd chose is what comes back
	start_upstream ::1 "$up" banner answered-by-ipv6
	start_upstream 127.0.0.1 "$up" banner answered-by-ipv4
	write_mapping "$conf" both "$p6" "$DUAL:$up" 'enable_ipv6: true' 'enable_ipv4: true'
	write_mapping "$conf" v4default "$p4" "$DUAL:$up"
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$p6" --repeat 5 --timeout 10
	echo "$output"
	grep -qx 'banner=answered-by-ipv6 count=5' <<<"$output"
	[ "$(grep -c '^banner=' <<<"$output")" -eq 1 ]
	run client 127.0.0.1 "$p4" --repeat 5 --timeout 10
	echo "$output"
	grep -qx 'banner=answered-by-ipv4 count=5' <<<"$output"
	[ "$(grep -c '^banner=' <<<"$output")" -eq 1 ]
	note "enable_ipv6+ipv4: 5/5 over IPv6; defaults: 5/5 over IPv4"
}

@test "with both families on, an IPv6 address that refuses falls back to IPv4, every time" {
	use_dual_stack_name
	local port up conf=$BATS_TEST_TMPDIR/fallback.yaml
	port=$(pick_port)
	up=$(pick_port)
	# only IPv4 answers: each connection's first socket (to ::1) is refused and replaced
	start_upstream 127.0.0.1 "$up" banner answered-by-ipv4
	[ -z "$(ss -Hltn "sport = :$up" | grep -F '[::1]')" ]
	write_mapping "$conf" fallback "$port" "$DUAL:$up" 'enable_ipv6: true' 'enable_ipv4: true'
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --repeat 20 --timeout 10
	echo "$output"
	grep -qx 'banner=answered-by-ipv4 count=20' <<<"$output"
	[ "$(grep -c '^banner=' <<<"$output")" -eq 1 ]
	wait_for_log "event=close .*mapping=fallback .*upstream=127.0.0.1:$up .*result=ok"
	note "IPv6 refused, IPv4 answered: 20/20"
}

@test "an IPv6-only upstream fails fast under the defaults (IPv4 only)" {
	use_dual_stack_name
	local port up conf=$BATS_TEST_TMPDIR/v4only.yaml
	port=$(pick_port)
	up=$(pick_port)
	start_upstream ::1 "$up" banner v6-upstream
	write_mapping "$conf" v4only "$port" "$DUAL:$up"
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --no-shutdown --timeout 5
	echo "$output"
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	[ "$(kv recv_bytes)" -eq 0 ]
	[ "$(kv eof_ms)" -lt 1000 ]
	wait_for_log "event=close .*mapping=v4only .*result=connect_failed"
	# the IPv6 upstream was never reached
	[ ! -s "$(upstream_report "$up")" ]
	note "defaults, IPv6-only upstream: client closed after $(kv eof_ms) ms, result=connect_failed"
}

@test "a service without a port goes to port 80" {
	# port 80 in a network namespace of this test's own: nothing else can hold it there
	netns_enter
	local port conf=$BATS_TEST_TMPDIR/port80.yaml
	port=$(pick_port)
	start_upstream 127.0.0.2 80 banner hello-from-port-80
	write_mapping "$conf" port80 "$port" "127.0.0.2"
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --text --timeout 10
	echo "$output"
	[ "$(kv recv_text)" = hello-from-port-80 ]
	wait_for_log "event=close .*mapping=port80 .*upstream=127.0.0.2:80 .*result=ok"
	note "service 127.0.0.2 (no port) reached 127.0.0.2:80"
}

@test "a refused upstream closes the client within connect_timeout_ms + 1 s" {
	local port closed conf=$BATS_TEST_TMPDIR/refused.yaml
	port=$(pick_port)
	closed=$(pick_port)
	write_mapping "$conf" refused "$port" "127.0.0.1:$closed" 'connect_timeout_ms: 1000'
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --no-shutdown --timeout 5
	echo "$output"
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	[ "$(kv eof_ms)" -lt 2000 ]
	wait_for_log "event=close .*mapping=refused .*result=connect_failed"
	note "refused upstream: client closed after $(kv eof_ms) ms, result=connect_failed"
}

@test "a black-holed upstream closes the client within connect_timeout_ms + 1 s" {
	local port hole conf=$BATS_TEST_TMPDIR/blackhole.yaml
	port=$(pick_port)
	hole=$(pick_port)
	# a listener whose accept queue is full: the kernel drops every further SYN
	start_upstream 127.0.0.1 "$hole" blackhole
	write_mapping "$conf" blackhole "$port" "127.0.0.1:$hole" 'connect_timeout_ms: 1000'
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --no-shutdown --timeout 5
	echo "$output"
	[ "$(kv closed_by)" = eof ] || [ "$(kv closed_by)" = reset ]
	local t
	t=$(kv eof_ms)
	[ "$t" -ge 900 ]
	[ "$t" -lt 2000 ]
	wait_for_log "event=close .*mapping=blackhole .*result=connect_timeout"
	note "black-holed upstream: client closed after $t ms (connect_timeout_ms 1000), result=connect_timeout"
}
