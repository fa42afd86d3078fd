#!/usr/bin/env bats
# listen-addresses.bats — issue 23, defects 6 and 7: a mapping without `address:` listens on
# every address, IPv4 and IPv6, when tcpmapd binds itself; equivalent spellings of an
# address make one listener; and a port that cannot be bound twice is refused by check.

load ../lib/common

setup() { common_setup; }
teardown() { common_teardown; }

# doc FILE NAME PORT SERVICE [SPEC_LINE...]: write_mapping without its 127.0.0.1 address.
doc() {
	local file=$1 name=$2 port=$3 service=$4 line
	shift 4
	{
		printf -- '---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata:\n  name: %s\nspec:\n  port: %s\n  service: "%s"\n' "$name" "$port" "$service"
		for line in "$@"; do echo "  $line"; done
	} >>"$file"
}

@test "standalone: a mapping without address serves IPv4 and [::1] (defect 6)" {
	[ -e /proc/net/if_inet6 ] || skip "no IPv6 on this host"
	local port up conf=$BATS_TEST_TMPDIR/every.yaml
	port=$(pick_port) && up=$(pick_port)
	start_upstream 127.0.0.1 "$up" echo
	doc "$conf" every "$port" "127.0.0.1:$up"
	start_tcpmapd "$conf"
	run client 127.0.0.1 "$port" --send 1000 --timeout 10
	[ "$status" -eq 0 ]
	[ "$(kv recv_bytes)" = 1000 ]
	run client ::1 "$port" --send 1000 --timeout 10
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(kv recv_bytes)" = 1000 ]
	grep -q "listening on \*:$port" "$TCPMAPD_LOG"
}

@test "equivalent spellings of one address make one listener (defect 7)" {
	local conf=$BATS_TEST_TMPDIR/spell.yaml
	doc "$conf" a 7101 "a:1" 'address: "::1"' 'host: a.example' 'tls_passthrough: true'
	doc "$conf" b 7101 "b:1" 'address: "0:0:0:0:0:0:0:1"'
	doc "$conf" c 7102 "c:1" 'address: "::ffff:127.0.0.1"' 'host: c.example' 'tls_passthrough: true'
	doc "$conf" d 7102 "d:1" 'address: 127.0.0.1'
	doc "$conf" e 7103 "e:1" 'address: 0.0.0.0' 'host: e.example' 'tls_passthrough: true'
	doc "$conf" f 7103 "f:1"
	run "$TCPMAPCTL" check "$conf"
	echo "$output"
	[ "$status" -eq 0 ]
	run "$TCPMAPCTL" --config "$conf" units
	echo "$output"
	[ "$status" -eq 0 ]
	[ "$(grep -c 'tcpmap@.*7101\.socket' <<<"$output")" -eq 1 ]
	[ "$(grep -c 'tcpmap@.*7102\.socket' <<<"$output")" -eq 1 ]
	[ "$(grep -c 'tcpmap@.*7103\.socket' <<<"$output")" -eq 1 ]
	[[ "$output" == *"# listens on [::1]:7101"* ]]
	[[ "$output" == *"tcpmap@127.0.0.1:7102.socket"* ]]
	[[ "$output" == *"tcpmap@7103.socket"* ]]
}

@test "check refuses one port with and without an address, naming both mappings (defect 7)" {
	local conf=$BATS_TEST_TMPDIR/clash.yaml
	doc "$conf" every 7201 "a:1"
	doc "$conf" local 7201 "b:1" 'address: 127.0.0.1'
	run "$TCPMAPCTL" check "$conf"
	echo "$output"
	[ "$status" -ne 0 ]
	[[ "$output" == *'mapping "local": address: port 7201 on 127.0.0.1 cannot be bound beside port 7201 on every address of mapping "every"'* ]]
}
