#!/usr/bin/env bats
# systemd-operations.bats — running tcpmap day to day under a real systemd (the private one of
# tests/lib/sandbox.sh): `systemctl reload` with a new and with a broken config, live
# connections across a reload, the STATUS line, Type=notify around a reload, TLS keys that
# reach the dynamic user only through LoadCredential=, and the close events in the journal.
#
# It never boots systemd any other way than through tests/lib/sandbox.sh, and teardown_file
# always powers the sandbox off. Upstreams and clients run on the host's loopback; the
# sandbox shares the host's network namespace, so systemd's sockets are reachable from here.
#
# One tcpmapd serves the whole file: tcpmap@127.0.0.1:P.socket, with a drop-in that adds the
# TLS listener 127.0.0.1:T, and a credentials drop-in on its service.

load ../lib/systemd

SD_PORT_MIN=31500
SD_PORT_SPAN=1200
TLS_HOST=tls.sandbox.test
SECRET=opssecret
CONF=/etc/tcpmap/tcpmap.yaml

svc() { echo "tcpmap@127.0.0.1:$P.service"; }

# The upstreams, one per "PORT:ROLE:TAG", each on 127.0.0.1:
#   sink  sends "TAG\n", reads to EOF, answers "COUNT SHA256\n" and closes; every finished
#         connection appends "TAG PEER COUNT SHA256" to REPORT;
#   line  sends "TAG\n", reads one line, answers "TAG got LINE\n" and closes.
# It gives up by itself after 15 minutes in case teardown never comes.
start_upstreams() { # REPORT SPEC...
	python3 - "$@" 3>&- >"$BATS_FILE_TMPDIR/upstreams.log" 2>&1 <<'EOF' &
import hashlib, socket, sys, threading, time
report, specs = sys.argv[1], sys.argv[2:]
lock = threading.Lock()

def sink(c, tag):
    c.sendall(tag.encode() + b"\n")
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        h.update(b)
        n += len(b)
    c.sendall(f"{n} {h.hexdigest()}\n".encode())
    peer = "%s:%d" % c.getpeername()[:2]
    with lock, open(report, "a") as f:
        f.write(f"{tag} {peer} {n} {h.hexdigest()}\n")

def line(c, tag):
    c.sendall(tag.encode() + b"\n")
    got = b""
    while b"\n" not in got and len(got) < 4096:
        b = c.recv(4096)
        if not b:
            break
        got += b
    first = got.split(b"\n")[0].decode(errors="replace")
    c.sendall(f"{tag} got {first}\n".encode())

def handle(c, role, tag):
    with c:
        c.settimeout(60)
        try:
            (sink if role == "sink" else line)(c, tag)
            c.shutdown(socket.SHUT_WR)
        except OSError as e:
            print(f"{tag}: {e}", flush=True)

def serve(port, role, tag, deadline):
    srv = socket.create_server(("127.0.0.1", port), backlog=128)
    srv.settimeout(1)
    while time.monotonic() < deadline:
        try:
            c, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=handle, args=(c, role, tag), daemon=True).start()

deadline = time.monotonic() + 900
threads = []
for spec in specs:
    port, role, tag = spec.split(":")
    threads.append(threading.Thread(target=serve, args=(int(port), role, tag, deadline), daemon=True))
    threads[-1].start()
for t in threads:
    t.join()
EOF
	echo $! >"$BATS_FILE_TMPDIR/upstreams.pid"
	local spec
	for spec in "${@:2}"; do
		for _ in $(seq 50); do [ -n "$(ss -Hltn "sport = :${spec%%:*}")" ] && break; sleep 0.1; done
		[ -n "$(ss -Hltn "sport = :${spec%%:*}")" ] || {
			echo "upstream ${spec} did not start:" >&2
			cat "$BATS_FILE_TMPDIR/upstreams.log" >&2
			return 1
		}
	done
}

# One client connection to a sink upstream through 127.0.0.1:PORT: reads the upstream's tag,
# sends N random bytes in 64 KiB chunks CHUNK_MS apart, half-closes and reads the answer.
# With --pause-at B it sends B bytes, writes "tag=TAG" to READY and waits (at most 30 s) for
# the file GO before the rest. Prints key=value lines; intact=1 when the sink saw exactly
# the bytes sent. Every step runs under a deadline.
client() { # PORT N [--chunk-ms MS] [--pause-at B READY GO]
	python3 - "$@" 3>&- <<'EOF'
import hashlib, os, socket, sys, time
port, total = int(sys.argv[1]), int(sys.argv[2])
chunk_ms, pause_at, ready, go = 0.0, -1, None, None
args = sys.argv[3:]
while args:
    if args[0] == "--chunk-ms":
        chunk_ms, args = float(args[1]), args[2:]
    elif args[0] == "--pause-at":
        pause_at, ready, go, args = int(args[1]), args[2], args[3], args[4:]
    else:
        sys.exit(f"client: unknown argument {args[0]}")

s = socket.create_connection(("127.0.0.1", port), timeout=20)
local = "%s:%d" % s.getsockname()[:2]
got = b""
while b"\n" not in got and len(got) < 256:
    b = s.recv(256)
    if not b:
        break
    got += b
tag, _, rest = got.partition(b"\n")
tag = tag.decode(errors="replace")

def wait_go():
    with open(ready, "w") as f:
        f.write(f"tag={tag}\nlocal={local}\n")
    deadline = time.monotonic() + 30
    while not os.path.exists(go):
        if time.monotonic() > deadline:
            sys.exit("client: no go file after 30 s")
        time.sleep(0.05)

h, sent = hashlib.sha256(), 0
while sent < total or sent == pause_at:
    if sent == pause_at:
        wait_go()
        pause_at = -1
        continue
    n = min(65536, total - sent)
    if pause_at > sent:
        n = min(n, pause_at - sent)
    data = os.urandom(n)
    s.sendall(data)
    h.update(data)
    sent += n
    if chunk_ms:
        time.sleep(chunk_ms / 1000)
s.shutdown(socket.SHUT_WR)
answer, deadline = rest, time.monotonic() + 20
while time.monotonic() < deadline:
    b = s.recv(65536)
    if not b:
        break
    answer += b
s.close()
fields = answer.decode(errors="replace").split()
count, sha = (fields + ["", ""])[:2]
print(f"tag={tag}")
print(f"local={local}")
print(f"sent={sent}")
print(f"sent_sha256={h.hexdigest()}")
print(f"reply_count={count}")
print(f"reply_sha256={sha}")
# everything the client read: the tag line, its newline and the answer
print(f"recv_bytes={len(got) - len(rest) + len(answer)}")
print(f"intact={int(count == str(sent) and sha == h.hexdigest())}")
EOF
}

kv() { sed -n "s/^$1=//p" <<<"$output" | tail -1; } # KEY: a value from client output

# Wait at most 5 s for FILE to exist.
wait_file() {
	for _ in $(seq 50); do [ -s "$1" ] && return 0; sleep 0.1; done
	[ -s "$1" ]
}

# The whole config: the plain mapping on P routed to UPSTREAM_PORT, and the TLS-terminating
# mapping on T whose key is secret $SECRET. Written in place, before a reload.
write_config() { # UPSTREAM_PORT
	sb sh -c "umask 022; mkdir -p /etc/tcpmap; cat >$CONF" <<EOF
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: ops-plain
spec:
  port: $P
  service: 127.0.0.1:$1
---
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata:
  name: ops-tls
spec:
  hosts:
  - $TLS_HOST
  secret: $SECRET
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: ops-tls
spec:
  port: $T
  host: $TLS_HOST
  service: 127.0.0.1:$UP_T
EOF
}

# Print one line "EVENT GENERATION PRIORITY MESSAGE" per config or config_rejected event of
# the service after CURSOR.
config_events() { # CURSOR
	journal_after "$1" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("_SYSTEMD_UNIT") == sys.argv[1] and e.get("TCPMAP_EVENT") in ("config", "config_rejected"):
        print(e["TCPMAP_EVENT"], e.get("TCPMAP_CONFIG_GENERATION", "-"), e.get("PRIORITY"), e.get("MESSAGE"))
' "$(svc)"
}

# systemctl reload, then wait (at most 10 s) for tcpmapd's verdict on the config and print
# the config_events lines it logged.
reload_and_wait() {
	local cursor ev
	cursor=$(journal_cursor)
	sb systemctl reload "$(svc)"
	for _ in $(seq 100); do
		ev=$(config_events "$cursor")
		if grep -q '^config ' <<<"$ev" || grep -q 'reload failed' <<<"$ev"; then
			echo "$ev"
			return 0
		fi
		sleep 0.1
	done
	echo "no config verdict after systemctl reload; the journal has:" >&2
	sb journalctl --no-pager -o verbose -u "$(svc)" | tail -60 >&2
	return 1
}

# Install a config routing P to UPSTREAM_PORT and reload until tcpmapd took it.
apply_config() { # UPSTREAM_PORT
	write_config "$1"
	reload_and_wait | grep -q '^config '
}

status_text() { sb systemctl show -p StatusText --value "$(svc)"; }

setup_file() {
	sd_require || return 0
	sd_choose_build

	export P T UP_A UP_B UP_T
	P=$(pick_port)
	T=$(pick_port "$P")
	UP_A=$(pick_port "$P" "$T")
	UP_B=$(pick_port "$P" "$T" "$UP_A")
	UP_T=$(pick_port "$P" "$T" "$UP_A" "$UP_B")
	export REPORT=$BATS_FILE_TMPDIR/upstream-report
	: >"$REPORT"
	start_upstreams "$REPORT" "$UP_A:sink:a" "$UP_B:sink:b" "$UP_T:line:tls-upstream"

	sd_start

	# The key pair exists only in a root-only directory: the dynamic user can reach it only
	# through the credentials systemd copies for it.
	sb sh -c "umask 077; mkdir -p /etc/tcpmap/secrets/$SECRET && chmod 0700 /etc/tcpmap/secrets/$SECRET &&
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
			-subj /CN=$TLS_HOST -addext subjectAltName=DNS:$TLS_HOST \
			-keyout /etc/tcpmap/secrets/$SECRET/tls.key -out /etc/tcpmap/secrets/$SECRET/tls.crt" 2>/dev/null
	sb cat "/etc/tcpmap/secrets/$SECRET/tls.crt" >"$BATS_FILE_TMPDIR/tls.crt"
	write_config "$UP_A"

	# The drop-ins, as `systemctl edit` would write them.
	sb sh -c "mkdir -p '/etc/systemd/system/tcpmap@127.0.0.1:$P.service.d' '/etc/systemd/system/tcpmap@127.0.0.1:$P.socket.d' &&
		printf '[Service]\nLoadCredential=$SECRET.crt:/etc/tcpmap/secrets/$SECRET/tls.crt\nLoadCredential=$SECRET.key:/etc/tcpmap/secrets/$SECRET/tls.key\n' \
			>'/etc/systemd/system/tcpmap@127.0.0.1:$P.service.d/creds.conf' &&
		printf '[Socket]\nListenStream=127.0.0.1:$T\n' >'/etc/systemd/system/tcpmap@127.0.0.1:$P.socket.d/tls.conf'"

	sd_install
	sb systemctl daemon-reload
	sb systemctl enable --now "tcpmap@127.0.0.1:$P.socket"
	# Start the service now rather than on the first connection: with Type=notify this
	# returns once tcpmapd said READY=1, i.e. the config and the credentials loaded.
	if ! sb systemctl start "$(svc)"; then
		sb journalctl --no-pager -u "$(svc)" | tail -40 >&2
		return 1
	fi
}

teardown_file() {
	sd_stop
	if [ -f "$BATS_FILE_TMPDIR/upstreams.pid" ]; then
		kill "$(cat "$BATS_FILE_TMPDIR/upstreams.pid")" 2>/dev/null || true
	fi
	return 0
}

setup() {
	sd_skip_unavailable
	BG_PID=
}

teardown() {
	if [ -n "${BG_PID:-}" ]; then
		kill "$BG_PID" 2>/dev/null || true
		wait "$BG_PID" 2>/dev/null || true
	fi
	return 0
}

@test "systemd ops: systemctl status shows \"1 active connection\" while one is live" {
	local ready=$BATS_TEST_TMPDIR/ready go=$BATS_TEST_TMPDIR/go st=
	client "$P" 1000 --pause-at 0 "$ready" "$go" >"$BATS_TEST_TMPDIR/live.out" &
	BG_PID=$!
	wait_file "$ready"
	# tcpmapd refreshes STATUS= every second
	for _ in $(seq 50); do
		st=$(sb systemctl status --no-pager "$(svc)" || true)
		grep -q '^ *Status: "1 active connection,' <<<"$st" && break
		sleep 0.1
	done
	echo "$st"
	grep -q '^ *Status: "1 active connection, [0-9]* total, config generation [0-9]*"' <<<"$st"
	[[ "$st" == *"Active: active (running)"* ]]

	touch "$go"
	wait "$BG_PID"
	BG_PID=
	run cat "$BATS_TEST_TMPDIR/live.out"
	[ "$(kv intact)" = 1 ]
	for _ in $(seq 50); do
		[[ "$(status_text)" == "0 active connections"* ]] && break
		sleep 0.1
	done
	status_text
	sb journalctl --no-pager -o cat -u "$(svc)" | tail -20
	[[ "$(status_text)" == "0 active connections"* ]]
}

@test "systemd ops: journalctl MESSAGE_ID=<close id> has one entry per connection, with its bytes" {
	local n got=
	[ -n "$MID_CLOSE" ]
	: >"$BATS_TEST_TMPDIR/clients"
	for n in 1000 250001 3000002; do
		run client "$P" "$n"
		echo "$output"
		[ "$status" -eq 0 ]
		[ "$(kv intact)" = 1 ]
		echo "$(kv local) $(kv sent) $(kv recv_bytes)" >>"$BATS_TEST_TMPDIR/clients"
	done
	cat "$BATS_TEST_TMPDIR/clients"

	# The query as the man page gives it; a client's address:port names its connection.
	for _ in $(seq 50); do
		got=$(sb journalctl --no-pager -o json "MESSAGE_ID=$MID_CLOSE" -u 'tcpmap@*' | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    print(e.get("TCPMAP_CLIENT"), e.get("TCPMAP_BYTES_IN"), e.get("TCPMAP_BYTES_OUT"), e.get("TCPMAP_EVENT"))
')
		[ "$(grep -cFf <(cut -d' ' -f1 "$BATS_TEST_TMPDIR/clients" | sed 's/$/ /') <<<"$got")" -ge 3 ] && break
		sleep 0.1
	done
	echo "close entries:"
	echo "$got"
	# Each connection exactly once, with the bytes it sent and received.
	while read -r local sent recv; do
		[ "$(grep -c "^$local " <<<"$got")" -eq 1 ]
		grep -qx "$local $sent $recv close" <<<"$got"
	done <"$BATS_TEST_TMPDIR/clients"
	# and nothing but close events answer to that MESSAGE_ID
	[ -z "$(awk '$4 != "close"' <<<"$got")" ]
}

@test "systemd ops: TLS termination with the key delivered only through LoadCredential=" {
	local dir=/etc/tcpmap/secrets/$SECRET
	# The key is root-only: the service's user could not read it by itself.
	[ "$(sb stat -c '%a %U' "$dir")" = "700 root" ]
	run sb runuser -u nobody -- cat "$dir/tls.key"
	echo "$output"
	[ "$status" -ne 0 ]
	run sb systemctl cat "$(svc)"
	grep -x "LoadCredential=$SECRET.crt:$dir/tls.crt" <<<"$output"
	grep -x "LoadCredential=$SECRET.key:$dir/tls.key" <<<"$output"
	[ "$(sb systemctl show -p DynamicUser --value "$(svc)")" = yes ]

	run timeout 10 openssl s_client -connect "127.0.0.1:$T" -servername "$TLS_HOST" \
		-CAfile "$BATS_FILE_TMPDIR/tls.crt" -verify_return_error -verify_hostname "$TLS_HOST" \
		-ign_eof <<<"hello-through-credentials"
	echo "$output"
	[ "$status" -eq 0 ]
	[[ "$output" == *"Verify return code: 0 (ok)"* ]]
	[[ "$output" == *"subject=CN = $TLS_HOST"* ]]
	# The upstream got the plaintext and its answer came back through the TLS session.
	[[ "$output" == *"tls-upstream got hello-through-credentials"* ]]
}

@test "systemd ops: Type=notify reload comes back active with the new config generation" {
	local before pid ev gen st=
	before=$(status_text)
	pid=$(sb systemctl show -p MainPID --value "$(svc)")
	echo "before: $before (pid $pid)"
	[[ "$before" =~ config\ generation\ ([0-9]+) ]]
	local old=${BASH_REMATCH[1]}

	write_config "$UP_B"
	ev=$(reload_and_wait)
	echo "$ev"
	gen=$(awk '$1 == "config" { print $2 }' <<<"$ev" | tail -1)
	# A journal entry for the reload, with the generation that follows the old one.
	[ "$gen" = $((old + 1)) ]
	[ "$(awk '$1 == "config" { print $3 }' <<<"$ev" | tail -1)" = 6 ]

	# RELOADING=1 … READY=1: systemd has the unit back in active/running, with the same
	# process, and the STATUS line names the new generation.
	for _ in $(seq 50); do
		st=$(sb systemctl show -p ActiveState -p SubState -p MainPID -p StatusText "$(svc)")
		grep -q "^StatusText=.*config generation $gen\$" <<<"$st" && break
		sleep 0.1
	done
	echo "$st"
	grep -qx ActiveState=active <<<"$st"
	grep -qx SubState=running <<<"$st"
	grep -qx "MainPID=$pid" <<<"$st"
	grep -q "^StatusText=.*config generation $gen\$" <<<"$st"
	[ "$(sb systemctl is-active "$(svc)")" = active ]
}

@test "systemd ops: systemctl reload re-routes new connections; a live one keeps streaming to the old upstream" {
	local ready=$BATS_TEST_TMPDIR/ready go=$BATS_TEST_TMPDIR/go n local
	apply_config "$UP_A"
	run client "$P" 10
	[ "$(kv tag)" = a ]

	# 10 MiB, checksummed, in 64 KiB chunks 5 ms apart; it stops half way until the reload
	# is done, so the reload lands in the middle of the stream.
	client "$P" 10485760 --chunk-ms 5 --pause-at 5242880 "$ready" "$go" >"$BATS_TEST_TMPDIR/long.out" &
	BG_PID=$!
	for _ in $(seq 4); do wait_file "$ready" && break; done
	cat "$ready"
	grep -qx tag=a "$ready"
	local=$(sed -n 's/^local=//p' "$ready")

	write_config "$UP_B"
	run reload_and_wait
	echo "$output"
	grep -q '^config ' <<<"$output"
	kill -0 "$BG_PID" # the long connection is still open
	for n in 1 2 3; do
		run client "$P" $((n * 1000))
		echo "$output"
		[ "$(kv tag)" = b ]
		[ "$(kv intact)" = 1 ]
	done

	touch "$go"
	wait "$BG_PID"
	BG_PID=
	run cat "$BATS_TEST_TMPDIR/long.out"
	echo "$output"
	[ "$(kv tag)" = a ]
	[ "$(kv local)" = "$local" ]
	[ "$(kv sent)" = 10485760 ]
	[ "$(kv intact)" = 1 ]
	# The old upstream's own account: every byte of it, and the same digest.
	grep -qE "^a 127\.0\.0\.1:[0-9]+ 10485760 $(kv sent_sha256)\$" "$REPORT"
	# tcpmapd's account: that connection went to the old upstream, all of it.
	run wait_close_event "$(svc)" 10485760
	echo "$output"
	[ "$status" -eq 0 ]
	run sb journalctl --no-pager -u "$(svc)" "TCPMAP_CLIENT=$local" -o json
	python3 -c '
import json, sys
es = [json.loads(l) for l in sys.stdin if l.strip()]
es = [e for e in es if e.get("TCPMAP_EVENT") == "close"]
assert len(es) == 1, es
e = es[0]
assert e["TCPMAP_UPSTREAM"] == "127.0.0.1:" + sys.argv[1], e
assert e["TCPMAP_BYTES_IN"] == "10485760", e
assert e["TCPMAP_RESULT"] == "ok", e
' "$UP_A" <<<"$output"
}

@test "systemd ops: a broken config on reload keeps the old routes, and journalctl -p err has file:line" {
	local pid before errors_before
	apply_config "$UP_A"
	pid=$(sb systemctl show -p MainPID --value "$(svc)")
	before=$(status_text)

	# The flow sequence opened on the service line is never closed.
	sb sh -c "cat >$CONF" <<EOF
---
apiVersion: getambassador.io/v3alpha1
kind: TCPMapping
metadata:
  name: ops-plain
spec:
  port: $P
  service: [127.0.0.1:$UP_B
EOF
	errors_before=$(sb journalctl --no-pager -o cat -p err -u "$(svc)" | grep -cE "^$CONF:[0-9]+" || true)
	run reload_and_wait
	echo "$output"
	grep -q 'reload failed' <<<"$output"
	[ -z "$(awk '$1 == "config"' <<<"$output")" ]

	# The parser's own error, with file and line, at priority err: one more than before.
	run sb journalctl --no-pager -o cat -p err -u "$(svc)"
	echo "$output"
	[ "$(grep -cE "^$CONF:[0-9]+(:[0-9]+)?: " <<<"$output")" -gt "$errors_before" ]

	# The old routes still serve, from the same process, on the same generation.
	run client "$P" 2000
	echo "$output"
	[ "$(kv tag)" = a ]
	[ "$(kv intact)" = 1 ]
	[ "$(sb systemctl is-active "$(svc)")" = active ]
	[ "$(sb systemctl show -p MainPID --value "$(svc)")" = "$pid" ]
	[[ "$(status_text)" == *"${before##*,}" ]]

	# Fixing it takes effect at the next reload.
	apply_config "$UP_B"
	run client "$P" 10
	[ "$(kv tag)" = b ]
}
