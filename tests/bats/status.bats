#!/usr/bin/env bats
# status.bats — `tcpmapctl status` (JSON and text) against traffic the test just sent:
# per-cluster totals, bytes in and out, overflows, connect failures and active counts, and
# per-group picks, in a threaded tcpmapd and across per-connection processes.
#
# The expected figures come from outside tcpmapd: the clients' own counts of what they sent
# and got, and the upstreams' reports of what they received.

load ../lib/common
load ../lib/breakers

setup() { breakers_setup; }
teardown() { breakers_teardown; }

# The answer of a sink upstream: sha256 hex and a newline.
SINK_ANSWER=65
SENDS=8

# Three ports:
#   SPLIT_PORT: a 25/75 group, "left" and "right", to two sink upstreams, no breakers;
#   LIMIT_PORT: "limited", max_connections 1, to a hold upstream;
#   DEAD_PORT:  "dead", to a port nobody listens on.
make_status_config() {
	CONF=$BATS_TEST_TMPDIR/status.yaml
	SPLIT_PORT=$(pick_port)
	LIMIT_PORT=$(pick_port)
	DEAD_PORT=$(pick_port)
	UP_LEFT=$(pick_port)
	UP_RIGHT=$(pick_port)
	UP_HOLD=$(pick_port)
	UP_DEAD=$(pick_port)
	start_upstream 127.0.0.1 "$UP_LEFT" sink
	start_upstream 127.0.0.1 "$UP_RIGHT" sink
	start_upstream 127.0.0.1 "$UP_HOLD" hold
	local lines
	mapfile -t lines < <(breaker_lines max_connections 1)
	write_mapping "$CONF" left "$SPLIT_PORT" "127.0.0.1:$UP_LEFT" 'weight: 25'
	write_mapping "$CONF" right "$SPLIT_PORT" "127.0.0.1:$UP_RIGHT" 'weight: 75'
	write_mapping "$CONF" limited "$LIMIT_PORT" "127.0.0.1:$UP_HOLD" "${lines[@]}"
	write_mapping "$CONF" dead "$DEAD_PORT" "127.0.0.1:$UP_DEAD"
}

# Send the traffic, each connection waited for; sets SENT_SUM and RECV_SUM (the clients'
# own counts) and REFUSED.
send_status_traffic() {
	local i
	SENT_SUM=0 RECV_SUM=0
	for ((i = 1; i <= SENDS; i++)); do
		run client 127.0.0.1 "$SPLIT_PORT" --send "$((i * 1000 + i))" --seed "$i" --timeout 10
		[ "$(kv closed_by)" = eof ] || { echo "$output"; return 1; }
		SENT_SUM=$((SENT_SUM + $(kv sent_bytes)))
		RECV_SUM=$((RECV_SUM + $(kv recv_bytes)))
	done

	hold_connection "$LIMIT_PORT"
	wait_established "$UP_HOLD" 1
	REFUSED=3
	for ((i = 0; i < REFUSED; i++)); do
		run client 127.0.0.1 "$LIMIT_PORT" --idle-ms 2000 --timeout 5
		[ "$(kv eof_ms)" != none ] || { echo "$output"; return 1; }
	done
	stop_all_holds
	wait_for_report "$UP_HOLD" 1

	for ((i = 0; i < 2; i++)); do
		run client 127.0.0.1 "$DEAD_PORT" --send 10 --timeout 5
		[ "$(kv recv_bytes)" -eq 0 ] || { echo "$output"; return 1; }
	done
}

# report_sum PORT KEY: the sum of KEY over an upstream's report lines.
report_sum() {
	local f
	f=$(upstream_report "$1")
	[ -f "$f" ] || { echo 0; return 0; }
	tr ' ' '\n' <"$f" | sed -n "s/^$2=//p" | awk '{ s += $1 } END { print s + 0 }'
}

# check_status: the JSON and the text form both agree with the traffic just sent.
check_status() {
	wait_for_log 'event=close ' $((SENDS + 1 + REFUSED + 2))
	wait_status_active "127.0.0.1:$UP_HOLD" 0
	local json text
	json=$(status_json)
	text=$(status_text)
	echo "$json"
	echo "$text"
	json=$(json_flat <<<"$json")

	# the split group: per cluster, what each sink upstream received
	local n_left n_right in_left in_right
	n_left=$(report_lines "$UP_LEFT")
	n_right=$(report_lines "$UP_RIGHT")
	in_left=$(report_sum "$UP_LEFT" recv_bytes)
	in_right=$(report_sum "$UP_RIGHT" recv_bytes)
	[ $((n_left + n_right)) -eq "$SENDS" ]
	[ $((in_left + in_right)) -eq "$SENT_SUM" ]
	[ $(((n_left + n_right) * SINK_ANSWER)) -eq "$RECV_SUM" ]
	# smooth WRR, 25/75 over 8: exactly 2 and 6
	[ "$n_left" -eq 2 ]
	[ "$n_right" -eq 6 ]

	local svc n in out
	for svc in "$UP_LEFT:$n_left:$in_left" "$UP_RIGHT:$n_right:$in_right"; do
		IFS=: read -r svc n in <<<"$svc"
		out=$((n * SINK_ANSWER))
		check_cluster "$json" "$text" "127.0.0.1:$svc" 0 0 "" "$n" 0 0 "$in" "$out"
		# no breakers: no limit, 0 in JSON and "-" in the text
		[ "$(json_cluster "$json" "127.0.0.1:$svc" max_connections)" = 0 ]
		[ "$(text_cluster "$text" "127.0.0.1:$svc" MAX_CONN)" = - ]
	done
	check_picks "$json" "$text" left "$n_left"
	check_picks "$json" "$text" right "$n_right"

	# the limited mapping: one admitted, the others refused, nothing went through
	check_cluster "$json" "$text" "127.0.0.1:$UP_HOLD" 0 0 1 1 "$REFUSED" 0 0 0
	# picks count every routing choice, the refused ones too
	check_picks "$json" "$text" limited $((1 + REFUSED))
	[ "$(log_count 'event=close .*mapping=limited .*result=breaker_overflow')" -eq "$REFUSED" ]
	[ "$(report_lines "$UP_HOLD")" -eq 1 ]

	# the dead upstream: both connections admitted, both connects failed
	check_cluster "$json" "$text" "127.0.0.1:$UP_DEAD" 0 0 "" 2 0 2 0 0
	check_picks "$json" "$text" dead 2
	[ "$(log_count 'event=close .*mapping=dead .*result=connect_failed')" -eq 2 ]
}

# check_cluster JSON TEXT SERVICE ACTIVE PENDING MAXCONN(""=skip) TOTAL OVERFLOWS FAILURES IN OUT
check_cluster() {
	local json=$1 text=$2 svc=$3 f want got
	local -a names=(active pending max_connections total overflows connect_failures bytes_in bytes_out)
	local -a cols=(ACTIVE PENDING MAX_CONN TOTAL OVERFLOWS CONNECT_FAILURES BYTES_IN BYTES_OUT)
	shift 3
	for ((f = 0; f < 8; f++)); do
		want=$1
		shift
		[ -n "$want" ] || continue
		got=$(json_cluster "$json" "$svc" "${names[f]}")
		[ "$got" = "$want" ] || { echo "json $svc ${names[f]}: $got, wanted $want"; return 1; }
		got=$(text_cluster "$text" "$svc" "${cols[f]}")
		[ "$got" = "$want" ] || { echo "text $svc ${cols[f]}: $got, wanted $want"; return 1; }
	done
}

# check_picks JSON TEXT MAPPING N
check_picks() {
	local got
	got=$(json_picks "$1" "$3")
	[ "$got" = "$4" ] || { echo "json picks of $3: $got, wanted $4"; return 1; }
	got=$(text_picks "$2" "$3")
	[ "$got" = "$4" ] || { echo "text picks of $3: $got, wanted $4"; return 1; }
}

@test "status before any traffic: the file is there once tcpmapd runs, all zero" {
	make_status_config
	start_tcpmapd "$CONF"
	run "$TCPMAPCTL" status --runtime-dir "$RUN_DIR" --json
	echo "$output"
	[ "$status" -eq 0 ]
	output=$(json_flat <<<"$output")
	# the limits are known before the first connection
	[ "$(json_cluster "$output" "127.0.0.1:$UP_HOLD" max_connections)" = 1 ]
	local svc
	for svc in "$UP_LEFT" "$UP_RIGHT" "$UP_HOLD" "$UP_DEAD"; do
		[ "$(json_cluster "$output" "127.0.0.1:$svc" total)" = 0 ]
		[ "$(json_cluster "$output" "127.0.0.1:$svc" active)" = 0 ]
	done
	# an empty runtime dir is an error, not an empty table
	run "$TCPMAPCTL" status --runtime-dir "$BATS_TEST_TMPDIR/nothing-here"
	echo "$output"
	[ "$status" -ne 0 ]
}

@test "status --json and text match the traffic just sent (threaded tcpmapd)" {
	make_status_config
	start_tcpmapd "$CONF"
	send_status_traffic
	check_status
	note "threaded: $SENDS connections ($SENT_SUM bytes in, $RECV_SUM out), $REFUSED overflows, 2 connect failures: status agrees"
}

@test "status --json and text match the traffic just sent (per-connection tcpmapd processes)" {
	make_status_config
	# one socket-activate per port; every process shares RUN_DIR/breakers
	start_accept_activate "$SPLIT_PORT" "$CONF"
	local log_split=$TCPMAPD_LOG
	start_accept_activate "$LIMIT_PORT" "$CONF"
	local log_limit=$TCPMAPD_LOG
	start_accept_activate "$DEAD_PORT" "$CONF"
	local log_dead=$TCPMAPD_LOG
	TCPMAPD_LOG=$BATS_TEST_TMPDIR/tcpmapd-accept-all.log
	send_status_traffic
	# check_status reads one log: poll the three into it
	local i
	for ((i = 0; i < 50; i++)); do
		cat "$log_split" "$log_limit" "$log_dead" >"$TCPMAPD_LOG"
		[ "$(log_count 'event=close ')" -ge $((SENDS + 1 + REFUSED + 2)) ] && break
		sleep 0.1
	done
	check_status
	note "per-connection: $SENDS connections ($SENT_SUM bytes in, $RECV_SUM out), $REFUSED overflows, 2 connect failures, all in separate processes: status agrees"
}

@test "status names clusters by service and TLS, groups by address:port[/host]; --json keeps the raw keys" {
	make_status_config
	# one more cluster: the same upstream, originating TLS (v2's `tls: true`), refusing all;
	# and a group that routes by SNI
	local tls_port sni_port lines
	tls_port=$(pick_port)
	sni_port=$(pick_port)
	mapfile -t lines < <(breaker_lines max_connections 0)
	write_mapping "$CONF" zero "$tls_port" "127.0.0.1:$UP_HOLD" "tls: true" "${lines[@]}"
	write_mapping "$CONF" named "$sni_port" "127.0.0.1:$UP_LEFT" "host: named.example" "tls_passthrough: true"
	start_tcpmapd "$CONF"
	# groups enter the table at their first pick
	run client 127.0.0.1 "$LIMIT_PORT" --idle-ms 200 --timeout 5
	timeout 2 openssl s_client -connect "127.0.0.1:$sni_port" -servername named.example </dev/null >/dev/null 2>&1 || true
	wait_for_log 'event=close .*mapping=named'
	local text json
	text=$(status_text)
	echo "$text"
	json=$("$TCPMAPCTL" status --runtime-dir "$RUN_DIR" --json)
	echo "$json"
	# text: no internal key anywhere, a SERVICE and a TLS column
	[[ "$text" != *"|"* ]]
	head -1 <<<"$text" | grep -Eq '^SERVICE +TLS +ACTIVE +PENDING +MAX_CONN'
	grep -Eq "^127\.0\.0\.1:$UP_HOLD +plain +0 +0 +1 " <<<"$text"
	# max_connections 0 reads as a limit of 0, not as "-" (no limit)
	grep -Eq "^127\.0\.0\.1:$UP_HOLD +tls +0 +0 +0 " <<<"$text"
	grep -Eq "^127\.0\.0\.1:$LIMIT_PORT +limited +" <<<"$text"
	grep -Eq "^127\.0\.0\.1:$sni_port/named\.example +named +" <<<"$text"
	# JSON: the raw key (as "cluster" and "key"), and the readable parts
	python3 - "$json" "$UP_HOLD" "$LIMIT_PORT" "$sni_port" <<'PY'
import json, sys
doc, up, limit_port, sni_port = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
svc = f"127.0.0.1:{up}"
mine = sorted((c["service"], c["tls"], c["key"]) for c in doc["clusters"] if c["service"] == svc)
assert mine == [(svc, "plain", f"{svc}|plain|-|1|0"), (svc, "tls", f"{svc}|tls|-|refuse-0|0")], mine
assert all(c["cluster"] == c["key"] for c in doc["clusters"])
groups = {g["key"]: g["name"] for g in doc["groups"]}
assert groups[f"127.0.0.1|{limit_port}|*"] == f"127.0.0.1:{limit_port}", groups
assert groups[f"127.0.0.1|{sni_port}|named.example"] == f"127.0.0.1:{sni_port}/named.example", groups
PY
}

@test "status errors say what to do: no service yet, wrong --runtime-dir, permission denied" {
	run "$TCPMAPCTL" status --runtime-dir "$BATS_TEST_TMPDIR/nothing-here"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"nothing-here: no such directory: no tcpmap service has run yet (the table appears when tcpmapd first runs), or --runtime-dir is not the services' directory (/run/tcpmap)"* ]]
	mkdir -m 0700 "$BATS_TEST_TMPDIR/empty"
	run "$TCPMAPCTL" status --runtime-dir "$BATS_TEST_TMPDIR/empty"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"empty/breakers: no breaker table: no tcpmap service has run yet"* ]]
	# a table kept from this user (the services' directory is 0700, theirs)
	make_status_config
	start_tcpmapd "$CONF"
	chmod 0711 "$BATS_TEST_TMPDIR"
	command -v setpriv >/dev/null || skip "no setpriv"
	setpriv --reuid=nobody --regid=nogroup --clear-groups test -x "$TCPMAPCTL" ||
		skip "tcpmapctl is not executable by nobody here"
	run setpriv --reuid=nobody --regid=nogroup --clear-groups "$TCPMAPCTL" status --runtime-dir "$RUN_DIR"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"permission denied: run as root or as the tcpmap user"* ]]
}
