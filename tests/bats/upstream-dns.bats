#!/usr/bin/env bats
# upstream-dns.bats — a slow or silent DNS server never holds up anything else: in a network
# namespace of the test's own, tcpmapd (one worker) resolves through tests/lib/dns_server.py
# on the namespace's loopback, which answers one name after 5 s, another never, and a third
# at once. While connections to the slow names wait for their lookups, connections on the
# same worker to an IP-literal upstream and to the prompt name are served at once; the
# waiting ones end with connect_timeout after connect_timeout_ms.
#
# It never touches the machine's /etc/resolv.conf: tcpmapd runs in a private mount namespace
# with the test's own bound over it. Every process it starts is stopped by PID.

load ../lib/common

SLOW=slow.dns.tcpmap.test
NEVER=never.dns.tcpmap.test
FAST=fast.dns.tcpmap.test
DNS_PY=$TESTLIB/dns_server.py

setup() { common_setup; }
teardown() { common_teardown; }

# start_dns: the DNS server on the namespace's 127.0.0.1:53, and tcpmapd's resolv.conf
# pointing there. glibc waits 8 s for an answer, longer than the slow name takes and longer
# than connect_timeout_ms, so only tcpmapd's own deadline ends those connections.
start_dns() {
	local ready=$BATS_TEST_TMPDIR/dns.ready i
	DNS_LOG=$BATS_TEST_TMPDIR/dns.log
	"${NETNS_WRAP[@]}" python3 "$DNS_PY" --log "$DNS_LOG" --ready-file "$ready" \
		--name "$SLOW=5" --name "$NEVER=never" --name "$FAST=0" --max-seconds 120 \
		>"$BATS_TEST_TMPDIR/dns.out" 2>&1 3>&- &
	record_pid $!
	for ((i = 0; i < 50; i++)); do
		[ -e "$ready" ] && break
		sleep 0.1
	done
	[ -e "$ready" ] || { cat "$BATS_TEST_TMPDIR/dns.out" >&2; return 1; }
	local resolv=$BATS_TEST_TMPDIR/resolv.conf
	printf 'nameserver 127.0.0.1\noptions timeout:8 attempts:1\n' >"$resolv"
	command -v unshare >/dev/null || skip "unshare not installed"
	# the prompt name resolves through it from a private mount namespace, or we cannot test
	# (not getent: its AI_ADDRCONFIG finds no address in a loopback-only namespace)
	"${NETNS_WRAP[@]}" unshare -m -- sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' \
		sh "$resolv" python3 -c 'import socket, sys; print(socket.getaddrinfo(sys.argv[1], 80, socket.AF_INET)[0][4][0])' \
		"$FAST" >"$BATS_TEST_TMPDIR/lookup.out" 2>&1 3>&- ||
		skip "cannot bind a private /etc/resolv.conf: $(cat "$BATS_TEST_TMPDIR/lookup.out")"
	[ "$(cat "$BATS_TEST_TMPDIR/lookup.out")" = 127.0.0.1 ]
	TCPMAPD_WRAP=(unshare -m -- sh -c 'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$resolv")
}

@test "slow and silent DNS answers hold up only their own connections; literal and prompt names are served at once" {
	netns_enter
	start_dns
	local conf=$BATS_TEST_TMPDIR/dns.yaml up pl pf ps pn
	up=$(pick_port)
	pl=$(pick_port)
	pf=$(pick_port)
	ps=$(pick_port)
	pn=$(pick_port)
	start_upstream 127.0.0.1 "$up" banner i-am-upstream
	write_mapping "$conf" literal "$pl" "127.0.0.1:$up"
	write_mapping "$conf" prompt "$pf" "$FAST:$up"
	write_mapping "$conf" slow "$ps" "$SLOW:$up" 'connect_timeout_ms: 2000'
	write_mapping "$conf" silent "$pn" "$NEVER:$up" 'connect_timeout_ms: 2000'
	# one worker: every connection below shares its event loop
	TCPMAPD_ARGS=(--workers 1)
	start_tcpmapd "$conf"

	# three connections to each slow name, left waiting for their lookups
	local i
	for i in 1 2 3; do
		client 127.0.0.1 "$ps" --text --timeout 10 >"$BATS_TEST_TMPDIR/slow-$i.out" &
		record_pid $!
		client 127.0.0.1 "$pn" --text --timeout 10 >"$BATS_TEST_TMPDIR/silent-$i.out" &
		record_pid $!
	done
	wait_for_log_file_line "query name=$SLOW"
	wait_for_log_file_line "query name=$NEVER"
	local t_pending
	t_pending=$(date +%s%N)

	# meanwhile: the literal and the prompt name, five times each, every one at once (one
	# client process: starting python ten times takes longer than the timeouts here)
	run "${NETNS_WRAP[@]}" python3 - "$pl" "$pf" 3>&- <<'PY'
import socket, sys, time
ports = {"literal": int(sys.argv[1]), "prompt": int(sys.argv[2])}
t0, worst = time.monotonic(), {}
for _ in range(5):
    for name, port in ports.items():
        t = time.monotonic()
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        got = b""
        while True:
            b = s.recv(100)
            if not b:
                break
            got += b
        s.close()
        ms = (time.monotonic() - t) * 1000
        assert got == b"i-am-upstream", (name, got)
        worst[name] = max(worst.get(name, 0), ms)
for name, ms in worst.items():
    print("%s_max_ms=%d" % (name, ms))
print("all_ms=%d" % ((time.monotonic() - t0) * 1000))
PY
	echo "$output"
	[ "$status" -eq 0 ]
	local max_l max_f all
	max_l=$(kv literal_max_ms)
	max_f=$(kv prompt_max_ms)
	all=$(kv all_ms)
	local during_ms=$((($(date +%s%N) - t_pending) / 1000000))
	note "while 6 lookups hang (5 s and never): literal upstream max ${max_l} ms, prompt name max ${max_f} ms per connection, 10 connections in ${all} ms (done ${during_ms} ms after the slow queries went out)"
	[ "$max_l" -lt 500 ]
	[ "$max_f" -lt 500 ]
	# and they were all served before any slow lookup ended or timed out
	[ "$(log_count "event=close mapping=(slow|silent) ")" -eq 0 ]
	[ "$(log_count "event=close mapping=(literal|prompt) .*result=ok")" -eq 10 ]
	! grep -q "answer name=$SLOW" "$DNS_LOG"

	# the waiting ones end with connect_timeout after connect_timeout_ms
	wait_for_log "event=close mapping=slow .*result=connect_timeout" 3
	wait_for_log "event=close mapping=silent .*result=connect_timeout" 3
	local line d m
	for m in slow silent; do
		for line in $(grep -E "event=close mapping=$m " "$TCPMAPD_LOG" | grep -oE 'duration_ms=[0-9]+'); do
			d=${line#duration_ms=}
			[ "$d" -ge 1900 ] && [ "$d" -lt 3000 ]
		done
		note "$m: $(grep -cE "event=close mapping=$m .*result=connect_timeout" "$TCPMAPD_LOG") connections closed connect_timeout after $(grep -E "event=close mapping=$m " "$TCPMAPD_LOG" | grep -oE 'duration_ms=[0-9]+' | cut -d= -f2 | tr '\n' ' ')ms"
	done
	[ "$(log_count 'mapping=(literal|prompt) .*result=ok')" -eq 10 ]
	# the clients saw their connections closed, nothing relayed
	for i in 1 2 3; do
		grep -qx 'recv_bytes=0' "$BATS_TEST_TMPDIR/slow-$i.out"
		grep -qx 'recv_bytes=0' "$BATS_TEST_TMPDIR/silent-$i.out"
	done
	note "DNS server's log: $(grep -c query "$DNS_LOG") queries; $(tr '\n' ';' <"$DNS_LOG" | head -c 600)"
}

# wait_for_log_file_line TEXT: bounded wait (5 s) until the DNS server logged TEXT.
wait_for_log_file_line() {
	local i
	for ((i = 0; i < 50; i++)); do
		grep -qF -- "$1" "$DNS_LOG" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "the DNS server never logged '$1':" >&2
	cat "$DNS_LOG" >&2
	return 1
}
