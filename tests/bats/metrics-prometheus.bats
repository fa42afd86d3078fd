#!/usr/bin/env bats
# metrics-prometheus.bats — issue 17: a real Prometheus (Debian's package) scrapes
# tcpmap-metrics.socket in the private systemd of tests/lib/sandbox.sh, every second, while
# known traffic goes through tcpmap@.service: N connections, B bytes each way, K circuit
# breaker overflows, F upstream connect failures, and a `systemctl restart` of the relay in
# the middle with a live connection handed over. Prometheus' own query API must then say that
# increase() over the window is exactly what was sent, with no counter reset.
#
# Prometheus runs on the host's loopback (the sandbox shares its network), its data in the
# file's temp dir; it and every other process started here are stopped by PID, and the
# sandbox is powered off in teardown_file.

load ../lib/systemd

SD_PORT_MIN=9500
SD_PORT_SPAN=400
CLIENT_PY=$ROOT/tests/lib/client.py

setup_file() {
	sd_require || return 0
	command -v prometheus >/dev/null || { export SD_SKIP="Debian's prometheus package is not installed"; return 0; }
	sd_choose_build
	: >"$BATS_FILE_TMPDIR/pids"
	export P D M PP UP DEAD
	P=$(pick_port)
	D=$(pick_port "$P")
	M=$(pick_port "$P" "$D")
	PP=$(pick_port "$P" "$D" "$M")
	UP=$(pick_port "$P" "$D" "$M" "$PP")
	DEAD=$(pick_port "$P" "$D" "$M" "$PP" "$UP")
	start_echo "$UP"

	sd_start
	sb sh -c 'umask 022; mkdir -p /etc/tcpmap; cat >/etc/tcpmap/tcpmap.yaml' <<-EOF
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: metrics-echo
		spec:
		  port: $P
		  address: 127.0.0.1
		  service: 127.0.0.1:$UP
		  circuit_breakers:
		  - max_connections: 1
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: metrics-dead
		spec:
		  port: $D
		  address: 127.0.0.1
		  service: 127.0.0.1:$DEAD
	EOF
	local p
	for p in "$P" "$D"; do
		sb sh -c "mkdir -p '/etc/systemd/system/tcpmap@$p.socket.d' &&
			printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$p\n' >'/etc/systemd/system/tcpmap@$p.socket.d/loopback.conf'"
	done
	# the scrape address, a drop-in away from its default, as tcpmap-units(7) shows
	sb sh -c "mkdir -p /etc/systemd/system/tcpmap-metrics.socket.d &&
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$M\n' >/etc/systemd/system/tcpmap-metrics.socket.d/address.conf"
	sd_install
	sb systemctl daemon-reload
	sb systemctl start "tcpmap@$P.socket" "tcpmap@$D.socket" tcpmap-metrics.socket
	sb systemctl start "tcpmap@$P.service" "tcpmap@$D.service" || {
		sb journalctl --no-pager -n 60 -u 'tcpmap@*' >&2
		return 1
	}

	mkdir -p "$BATS_FILE_TMPDIR/prom"
	cat >"$BATS_FILE_TMPDIR/prom/prometheus.yml" <<-EOF
		global:
		  scrape_interval: 1s
		  scrape_timeout: 1s
		  evaluation_interval: 1s
		scrape_configs:
		- job_name: tcpmap
		  static_configs:
		  - targets: ['127.0.0.1:$M']
	EOF
	prometheus --config.file="$BATS_FILE_TMPDIR/prom/prometheus.yml" \
		--storage.tsdb.path="$BATS_FILE_TMPDIR/prom/data" \
		--web.listen-address="127.0.0.1:$PP" --log.level=warn \
		>"$BATS_FILE_TMPDIR/prom/prometheus.log" 2>&1 3>&- &
	echo $! >>"$BATS_FILE_TMPDIR/pids"
}

teardown_file() {
	sd_stop
	sd_kill_recorded
}

setup() { sd_skip_unavailable; }

# query PROMQL [TIME]: the one value of an instant query (empty when there is none).
query() {
	curl -sf "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" \
		${2:+--data-urlencode "time=$2"} | python3 -c '
import json, sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")'
}

# sample_times: the timestamps of every scrape of the echo cluster's ok counter so far.
sample_times() {
	curl -sf "http://127.0.0.1:$PP/api/v1/query" \
		--data-urlencode "query=tcpmap_connections_total{service=\"127.0.0.1:$UP\",result=\"ok\"}[10m]" |
		python3 -c '
import json, sys
for t, _ in json.load(sys.stdin)["data"]["result"][0]["values"]:
    print(t)'
}

# wait_scrapes N: bounded wait (20 s) until N more scrapes of the target are stored.
wait_scrapes() {
	local before now
	before=$(sample_times 2>/dev/null | wc -l)
	for _ in $(seq 200); do
		now=$(sample_times 2>/dev/null | wc -l)
		[ "$now" -ge $((before + $1)) ] && return 0
		sleep 0.1
	done
	echo "prometheus stored $now scrapes, wanted $((before + $1))" >&2
	tail -n 20 "$BATS_FILE_TMPDIR/prom/prometheus.log" >&2
	return 1
}

overflow() { # K: K clients the open breaker refuses (closed at once, nothing relayed)
	local i
	for ((i = 0; i < $1; i++)); do
		python3 "$CLIENT_PY" 127.0.0.1 "$P" --idle-ms 3000 --timeout 6 | grep -q '^eof_ms=[0-9]' ||
			{ echo "client $i was not closed by the breaker" >&2; return 1; }
	done
}

@test "prometheus: increase() over the window equals the traffic sent, across a restart with hand-over" {
	local i t0 t1 n=4 k1=3 k2=2 f=2 each=5000
	# up and scraped
	for _ in $(seq 150); do
		[ "$(query 'up{job="tcpmap"}')" = 1 ] && [ -n "$(query "tcpmap_connections_total{service=\"127.0.0.1:$UP\",result=\"ok\"}")" ] && break
		sleep 0.1
	done
	[ "$(query 'up{job="tcpmap"}')" = 1 ] || { cat "$BATS_FILE_TMPDIR/prom/prometheus.log"; sb journalctl --no-pager -n 30 -u 'tcpmap-metrics*'; false; }
	wait_scrapes 2
	t0=$(sample_times | tail -n 1) # the last scrape before any traffic

	# a long connection holds the breaker's one slot through the restart
	start_stream held --port "$P" --connections 1 --rate 20000 --duration 0 --max-seconds 60
	overflow "$k1"
	for ((i = 0; i < f; i++)); do
		python3 "$CLIENT_PY" 127.0.0.1 "$D" --send 10 --timeout 5 | grep -q '^recv_bytes=0$'
	done
	wait_scrapes 1
	sb systemctl restart "tcpmap@$P.service"
	overflow "$k2" # the adopted connection still holds the slot
	finish_stream_ok held
	local stream_sent stream_recv
	stream_sent=$(field "${lines[-2]}" sent_total)
	stream_recv=$(field "${lines[-2]}" recv_total)
	for ((i = 0; i < n; i++)); do
		roundtrip_to 127.0.0.1 "$P" "$each"
	done
	# every close is in the table before the last scrapes
	sleep 1
	wait_scrapes 2
	t1=$(sample_times | tail -n 1)
	local w
	w=$(python3 -c "print(int(round(($t1 - $t0) * 1000)) + 1)")
	echo "window: $t0 .. $t1 (${w}ms)"

	# inc EXPR: increase() of EXPR over the window, at its last scrape; Prometheus
	# extrapolates by at most the 1 ms the window starts before t0, so the value is the
	# count to well under 0.01.
	inc() {
		local v
		v=$(query "sum(increase($1[${w}ms]))" "$t1")
		python3 -c "v = float('$v'); print(int(round(v)) if abs(v - round(v)) < 0.01 else v)"
	}
	local e="service=\"127.0.0.1:$UP\"" d="service=\"127.0.0.1:$DEAD\"" got want
	for check in \
		"tcpmap_connections_total{$e,result=\"ok\"} $((n + 1))" \
		"tcpmap_connections_total{$e,result=\"breaker_overflow\"} $((k1 + k2))" \
		"tcpmap_connections_total{$e} $((n + 1 + k1 + k2))" \
		"tcpmap_breaker_overflows_total{$e} $((k1 + k2))" \
		"tcpmap_upstream_sent_bytes_total{$e} $((stream_sent + n * each))" \
		"tcpmap_upstream_received_bytes_total{$e} $((stream_recv + n * each))" \
		"tcpmap_connection_duration_seconds_count{$e} $((n + 1 + k1 + k2))" \
		"tcpmap_connections_total{$d,result=\"connect_failed\"} $f" \
		"tcpmap_upstream_connect_failures_total{$d} $f"; do
		want=${check##* }
		got=$(inc "${check% *}")
		echo "increase(${check% *}) = $got, sent $want"
		[ "$got" = "$want" ]
	done
	# the new process and its config are listed under its own pid
	local pid
	pid=$(sb systemctl show -p MainPID --value "tcpmap@$P.service")
	[ "$(query "tcpmap_config_generation{pid=\"$pid\",model=\"threaded\"}" "$t1")" = 1 ]
	# no reset seen across the restart
	[ "$(query "sum(resets(tcpmap_connections_total{$e}[${w}ms]))" "$t1")" = 0 ]
	[ "$(query "sum(resets(tcpmap_upstream_sent_bytes_total{$e}[${w}ms]))" "$t1")" = 0 ]
	# the held connection ended once, as ok, in the new process: not at the hand-over
	[ "$(sb journalctl --no-pager -u "tcpmap@$P.service" -o cat | grep -c 'adopted')" -ge 1 ]
	# each scrape was its own short process, and they left nothing failed behind
	[ -z "$(sb systemctl list-units --failed --no-legend 'tcpmap-metrics*')" ]
	echo "# prometheus: $((n + 1)) connections ok, $((k1 + k2)) overflows, $f connect failures, $((stream_sent + n * each)) bytes up, across a restart: increase() exact, resets() 0" >&3
}

@test "prometheus: the scrape endpoint answers 404, 405 and 400, survives a silent client, and is hardened" {
	local out
	out=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$M/")
	[ "$out" = 404 ]
	out=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$M/metrics")
	[ "$out" = 405 ]
	out=$(printf 'garbage\r\n\r\n' | timeout 10 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=8)
s.sendall(sys.stdin.buffer.read())
print(s.recv(100).split(b"\r\n")[0].decode())' "$M")
	[ "$out" = "HTTP/1.1 400 Bad Request" ]
	# silent: connect, send nothing; the handler lets go within its 5 s and the next scrape works
	out=$(timeout 15 python3 -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=12)
t = time.monotonic()
d = s.recv(100)
print(len(d), round(time.monotonic() - t))' "$M")
	echo "silent client: $out"
	[ "${out%% *}" = 0 ]
	[ "${out##* }" -le 7 ]
	out=$(curl -s -H 'Accept: application/openmetrics-text; version=1.0.0' "http://127.0.0.1:$M/metrics" | tail -n 1)
	[ "$out" = "# EOF" ]
	# one scrape through systemd, socket to last byte (a hardened process started each time)
	local times
	times=$(for _ in 1 2 3 4 5; do curl -s -o /dev/null -w '%{time_total}\n' "http://127.0.0.1:$M/metrics"; done | sort -n | tr '\n' ' ')
	echo "# scrape through tcpmap-metrics.socket, 5 times (s): $times" >&3
	# hardened as well as the relays
	local x
	x=$(exposure "$UNITDIR/tcpmap-metrics@.service")
	echo "# systemd-analyze security tcpmap-metrics@.service: $x" >&3
	[[ "$x" =~ ^[0-9]+(\.[0-9]+)?$ ]]
	awk -v x="$x" 'BEGIN { exit !(x + 0 <= 2.0) }'
	# the table is the relay's: the scrapes never took the runtime directory away
	sb systemctl is-active "tcpmap@$P.service"
	[ "$(sb sh -c 'ls /run/tcpmap/breakers')" = /run/tcpmap/breakers ]
}
