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

# ---- what goes on the wire with termination and origination together (issue 24) ----------

# start_tls_upstream PORT MODE [ALPN...]: a Python TLS server with upstream-1's certificate.
# It reads the client's first bytes, answers "hello from upstream" (or the ALPN it agreed,
# mode alpn), then ends its side: mode fin with a bare FIN, notify with close_notify, wait
# not at all. Then it reads to the end and reports how the client ended (client_end=
# close_notify|eof) in tls-upstream-PORT.report.
start_tls_upstream() {
	local port=$1 mode=$2 i
	shift 2
	local script=$BATS_TEST_TMPDIR/tls_upstream.py ready=$BATS_TEST_TMPDIR/tls-upstream-$port.ready
	cat >"$script" <<'PY'
import socket, ssl, sys, time
port, mode, cert, key, ready, report = sys.argv[1:7]
alpn = sys.argv[7:]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
if alpn:
    ctx.set_alpn_protocols(alpn)
ls = socket.socket()
ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", int(port)))
ls.listen(4)
ls.settimeout(60)
open(ready, "w").close()
raw, _ = ls.accept()
raw.settimeout(20)
s = ctx.wrap_socket(raw, server_side=True, suppress_ragged_eofs=False)
out = {"alpn": s.selected_alpn_protocol() or "none"}
try:
    out["first"] = s.recv(100).decode(errors="replace").strip() or "-"
    if mode == "alpn":
        s.sendall(("alpn=" + out["alpn"] + "\n").encode())
    elif mode != "wait":
        s.sendall(b"hello from upstream\n")
    if mode == "fin":
        socket.socket.shutdown(s, socket.SHUT_WR)
    elif mode in ("notify", "alpn"):
        s.setblocking(False)
        try:
            s.unwrap()  # sends close_notify; the answer is read below
        except (ssl.SSLWantReadError, ssl.SSLError, OSError):
            pass
        s.settimeout(20)
        socket.socket.shutdown(s, socket.SHUT_WR)
    while True:
        b = s.recv(4096)
        if not b:
            out["client_end"] = "close_notify"
            break
except ssl.SSLZeroReturnError:
    out["client_end"] = "close_notify"  # raised rather than b"" once unwrap() has begun
except ssl.SSLEOFError:
    out["client_end"] = "eof"
except Exception as e:
    out["client_end"] = "error:" + type(e).__name__
with open(report, "w") as f:
    for k, v in out.items():
        f.write(f"{k}={v}\n")
PY
	python3 "$script" "$port" "$mode" "$PKI/upstream-1.crt" "$PKI/upstream-1.key" "$ready" \
		"$BATS_TEST_TMPDIR/tls-upstream-$port.report" "$@" \
		>"$BATS_TEST_TMPDIR/tls-upstream-$port.out" 2>&1 3>&- &
	record_pid $!
	for ((i = 0; i < 50; i++)); do
		[ -e "$ready" ] && return 0
		sleep 0.1
	done
	cat "$BATS_TEST_TMPDIR/tls-upstream-$port.out" >&2
	return 1
}

tls_upstream_kv() {
	local f=$BATS_TEST_TMPDIR/tls-upstream-$1.report i
	for ((i = 0; i < 100; i++)); do
		[ -s "$f" ] && break
		sleep 0.1
	done
	sed -n "s/^$2=//p" "$f"
}

# write_both_ways FILE PORT UP [SPEC_LINE...]: my-host-1 terminated and originated to UP.
write_both_ways() {
	local cfg=$1 port=$2 up=$3
	shift 3
	write_tls_context "$cfg" term supersecret "hosts: [my-host-1]" "$@"
	write_mapping "$cfg" both "$port" "127.0.0.1:$up" "host: my-host-1" "tls: true"
}

@test "truncation is not hidden: a bare FIN passes as a bare FIN, each way, with termination and origination" {
	PORT=$(pick_port)
	UP=$(pick_port)
	local cfg=$BATS_TEST_TMPDIR/both.yaml
	write_both_ways "$cfg" "$PORT" "$UP"
	start_tls_upstream "$UP" fin
	start_tcpmapd "$cfg"
	run hello 127.0.0.1 "$PORT" --sni my-host-1 --send-text 'hi' --shut-wr --text --timeout 15
	echo "$output"
	[ "$(kv handshake)" = ok ]
	[ "$(kv recv_text)" = "hello from upstream" ]
	# the upstream's bare FIN reached the client as a bare FIN
	[ "$(kv closed_by)" = eof ]
	# and the client's bare FIN reached the upstream as one
	[ "$(tls_upstream_kv "$UP" first)" = hi ]
	[ "$(tls_upstream_kv "$UP" client_end)" = eof ]
	note "bare FIN both ways: client saw $(kv closed_by), upstream saw $(tls_upstream_kv "$UP" client_end)"
}

@test "close_notify passes as close_notify, each way, with termination and origination" {
	PORT=$(pick_port)
	UP=$(pick_port)
	local cfg=$BATS_TEST_TMPDIR/both.yaml
	write_both_ways "$cfg" "$PORT" "$UP"
	start_tls_upstream "$UP" notify
	start_tcpmapd "$cfg"
	run hello 127.0.0.1 "$PORT" --sni my-host-1 --send-text 'hi' --close-notify --text --timeout 15
	echo "$output"
	[ "$(kv recv_text)" = "hello from upstream" ]
	[ "$(kv closed_by)" = close_notify ]
	[ "$(tls_upstream_kv "$UP" client_end)" = close_notify ]
}

@test "an idle timeout on TLS legs sends close_notify both ways" {
	PORT=$(pick_port)
	UP=$(pick_port)
	local cfg=$BATS_TEST_TMPDIR/both.yaml
	write_tls_context "$cfg" term supersecret "hosts: [my-host-1]"
	write_mapping "$cfg" both "$PORT" "127.0.0.1:$UP" "host: my-host-1" "tls: true" \
		"idle_timeout_ms: 800"
	start_tls_upstream "$UP" wait
	start_tcpmapd "$cfg"
	run hello 127.0.0.1 "$PORT" --sni my-host-1 --send-text 'hi' --text --timeout 15
	echo "$output"
	[ "$(kv closed_by)" = close_notify ]
	[ "$(tls_upstream_kv "$UP" client_end)" = close_notify ]
	wait_for_log "event=close mapping=both .*result=idle_timeout"
}

@test "a TLS 1.3 upstream refusing the missing client certificate after its handshake is a handshake failure" {
	PORT=$(pick_port)
	UP=$(pick_port)
	local cfg=$BATS_TEST_TMPDIR/both.yaml
	write_both_ways "$cfg" "$PORT" "$UP"
	start_s_server 127.0.0.1 "$UP" upstream-1 -www -Verify 1 -CAfile "$PKI/ca.crt" -tls1_3
	start_tcpmapd "$cfg"
	S_CLIENT_INPUT=$(printf "$HTTP_GET")
	s_client_to "$PORT" my-host-1
	wait_for_log "event=close mapping=both .*result=handshake_failed"
	wait_for_log "event=upstream_failed mapping=both .*reason=no_certificate"
	[ "$(log_count "mapping=both .*result=ok")" -eq 0 ]
	note "$(grep -m1 -o 'TLS handshake with [^"]*' "$TCPMAPD_LOG")"
}

@test "an upstream certificate that does not verify is logged with why, as upstream_failed" {
	local p_name p_ca cfg=$BATS_TEST_TMPDIR/verify.yaml
	p_name=$(pick_port)
	p_ca=$(pick_port)
	UP=$(pick_port)
	start_s_server 127.0.0.1 "$UP" upstream-1 -www
	write_tls_context "$cfg" ca-only testca
	write_tls_context "$cfg" wrong-ca otherca "sni: upstream-host-1"
	sed -i 's/^  secret: \(testca\|otherca\)$/  ca_secret: \1/' "$cfg"
	write_mapping "$cfg" bad-name "$p_name" "127.0.0.1:$UP" "tls: ca-only"
	write_mapping "$cfg" bad-ca "$p_ca" "127.0.0.1:$UP" "tls: wrong-ca"
	start_tcpmapd "$cfg"
	run curl -sS --max-time 10 "http://127.0.0.1:$p_name/"
	run curl -sS --max-time 10 "http://127.0.0.1:$p_ca/"
	wait_for_log "event=upstream_failed mapping=bad-name .*upstream=127.0.0.1:$UP .*result=handshake_failed .*reason=certificate_verify_failed .*verify_error=.*(mismatch|IP address)"
	wait_for_log "event=upstream_failed mapping=bad-ca .*reason=certificate_verify_failed .*verify_error=.*(issuer|self.signed)"
	note "$(grep -m1 -o 'mapping \\"bad-name\\": TLS handshake[^"]*' "$TCPMAPD_LOG" || grep -m1 'bad-name.*verify_error' "$TCPMAPD_LOG")"
}

@test "an upstream that cannot be reached after a terminated hello is told to the client as an alert" {
	PORT=$(pick_port)
	UP=$(pick_port) # nothing listens there
	local p_verify cfg=$BATS_TEST_TMPDIR/both.yaml
	p_verify=$(pick_port)
	UP_TLS=$(pick_port)
	write_both_ways "$cfg" "$PORT" "$UP"
	# and one whose upstream certificate cannot be verified (unrelated CA)
	write_tls_context "$cfg" wrong-ca otherca "sni: upstream-host-1"
	sed -i 's/^  secret: otherca$/  ca_secret: otherca/' "$cfg"
	write_tls_context "$cfg" term2 supersecret "hosts: [my-host-2]"
	write_mapping "$cfg" unverified "$p_verify" "127.0.0.1:$UP_TLS" "host: my-host-2" "tls: wrong-ca"
	start_s_server 127.0.0.1 "$UP_TLS" upstream-1 -www
	start_tcpmapd "$cfg"
	run hello 127.0.0.1 "$PORT" --sni my-host-1 --send-text 'hi' --timeout 10
	echo "$output"
	[ "$(kv handshake)" = failed ]
	[[ "$(kv error)" == *INTERNAL_ERROR* ]]
	wait_for_log "event=close mapping=both .*result=connect_failed"
	note "refused upstream: the client got $(kv error)"
	run hello 127.0.0.1 "$p_verify" --sni my-host-2 --send-text 'hi' --timeout 10
	echo "$output"
	[ "$(kv handshake)" = failed ]
	[[ "$(kv error)" == *INTERNAL_ERROR* ]]
	wait_for_log "event=upstream_failed mapping=unverified .*reason=certificate_verify_failed"
	note "unverifiable upstream: the client got $(kv error)"
}

@test "ALPN end to end: the upstream is offered the client's protocols, the client is told the upstream's choice" {
	PORT=$(pick_port)
	local cfg=$BATS_TEST_TMPDIR/alpn.yaml up want
	write_tls_context "$cfg" term supersecret "hosts: [my-host-1]" 'alpn_protocols: "h2,http/1.1"'
	for want in http/1.1 h2 none; do
		up=$(pick_port)
		cp "$cfg" "$cfg.run"
		write_mapping "$cfg.run" both "$PORT" "127.0.0.1:$up" "host: my-host-1" "tls: true"
		if [ "$want" = none ]; then
			start_tls_upstream "$up" alpn
		else
			start_tls_upstream "$up" alpn "$want"
		fi
		start_tcpmapd "$cfg.run"
		run hello 127.0.0.1 "$PORT" --sni my-host-1 --alpn h2,http/1.1 --send-text 'hi' \
			--text --timeout 10
		echo "$output"
		stop_pid "$TCPMAPD_PID"
		[ "$(kv handshake)" = ok ]
		# the client's protocol is the one the upstream agreed, or none when it agreed none
		[ "$(kv alpn)" = "$want" ]
		[ "$(kv recv_text)" = "alpn=$want" ]
		[ "$(tls_upstream_kv "$up" alpn)" = "$want" ]
		note "upstream speaks ${want}: client told $(kv alpn), upstream agreed $(tls_upstream_kv "$up" alpn)"
	done
}

@test "a stop closes open TLS legs with close_notify, not a bare FIN" {
	PORT=$(pick_port)
	UP=$(pick_port)
	local cfg=$BATS_TEST_TMPDIR/both.yaml out=$BATS_TEST_TMPDIR/hello.out
	write_both_ways "$cfg" "$PORT" "$UP"
	start_tls_upstream "$UP" wait
	start_tcpmapd "$cfg"
	hello 127.0.0.1 "$PORT" --sni my-host-1 --send-text 'hi' --text --timeout 15 >"$out" &
	local pid=$!
	record_pid "$pid"
	# the relay is up once tcpmapd holds a connection to the upstream
	for ((i = 0; i < 100; i++)); do
		[ "$(ss -Htn state established "( dport = :$UP )" | wc -l)" -ge 1 ] && break
		sleep 0.1
	done
	sleep 0.3
	stop_tcpmapd
	wait "$pid" || true
	output=$(cat "$out")
	echo "$output"
	[ "$(kv handshake)" = ok ]
	[ "$(kv closed_by)" = close_notify ]
	[ "$(tls_upstream_kv "$UP" client_end)" = close_notify ]
}
