# breakers.bash — helpers for the circuit-breaker and status bats tests: held-open clients,
# per-connection tcpmapd under systemd-socket-activate --accept, counts of upstream
# connections, and readers for `tcpmapctl status` (text and JSON).
#
# Load after common.bash. Like it, every process started here is recorded and stopped by
# PID in teardown (socket-activate's tcpmapd children included), every wait is a bounded
# poll, and nothing leaves loopback.

TCPMAPCTL=${TCPMAPCTL:-$TCPMAP_ROOT/build/tcpmapctl}

# This suite's share of the port space, apart from common.bash's default range.
TEST_PORT_MIN=63000
TEST_PORT_MAX=64499

breakers_setup() {
	common_setup
	[ -x "$TCPMAPCTL" ] || skip "tcpmapctl not built at $TCPMAPCTL"
	ACTIVATE_PIDS_FILE=$BATS_TEST_TMPDIR/activate-pids
	: >"$ACTIVATE_PIDS_FILE"
	HOLD_COUNT=0
}

breakers_teardown() {
	stop_activate_children
	common_teardown
}

# ---- mapping lines ------------------------------------------------------------------

# The spec lines of a `circuit_breakers` list with one default-priority entry, for
# write_mapping: breaker_lines max_connections 2 [max_pending_requests 1]...
breaker_lines() {
	echo "circuit_breakers:"
	local first=1
	while [ $# -ge 2 ]; do
		if [ $first -eq 1 ]; then
			echo "- $1: $2"
			first=0
		else
			echo "  $1: $2"
		fi
		shift 2
	done
}

# ---- per-connection mode ------------------------------------------------------------

# start_accept_activate PORT CONFIG: systemd-socket-activate --accept owns 127.0.0.1:PORT
# and starts one tcpmapd per connection (a connected fd in LISTEN_FDS), all sharing
# RUN_DIR/breakers. Sets ACTIVATE_PID and TCPMAPD_LOG (every child's stderr goes there).
start_accept_activate() {
	local port=$1 conf=$2 env_args
	command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate not installed"
	mapfile -t env_args < <(socket_activate_env)
	TCPMAPD_LOG=$BATS_TEST_TMPDIR/tcpmapd-accept-$port.log
	systemd-socket-activate --accept --listen="127.0.0.1:$port" "${env_args[@]}" \
		"$TCPMAPD" --config "$conf" --runtime-dir "$RUN_DIR" --log-target stderr \
		</dev/null >"$TCPMAPD_LOG" 2>&1 3>&- &
	ACTIVATE_PID=$!
	record_pid "$ACTIVATE_PID"
	echo "$ACTIVATE_PID" >>"$ACTIVATE_PIDS_FILE"
	wait_listening "$port"
}

# Live (non-zombie) tcpmapd children of systemd-socket-activate PID, one per line.
activate_children() {
	local pid
	for pid in $(pgrep -P "$1" 2>/dev/null); do
		pid_alive "$pid" && echo "$pid"
	done
	return 0
}

# wait_activate_children PID N: bounded wait (5 s) until PID has exactly N live children.
activate_child_count() { activate_children "$1" | wc -l; }
wait_activate_children() {
	wait_count -eq "$2" 50 activate_child_count "$1" && return 0
	echo "socket-activate $1 has $WAIT_COUNT_LAST live children, wanted $2" >&2
	return 1
}

# Stop every per-connection tcpmapd by PID before its parent goes, so none outlives the test.
stop_activate_children() {
	local sa pid
	[ -f "${ACTIVATE_PIDS_FILE:-}" ] || return 0
	for sa in $(cat "$ACTIVATE_PIDS_FILE"); do
		for pid in $(activate_children "$sa"); do
			stop_pid "$pid" || true
		done
	done
	: >"$ACTIVATE_PIDS_FILE"
}

# ---- held connections ---------------------------------------------------------------

# hold_connection PORT [SECONDS]: a client in the background that connects and stays,
# sending nothing, until stopped (or SECONDS, default 30, pass). Sets HOLD_PID and
# HOLD_OUT (its key=value report, written when it ends).
hold_connection() {
	local port=$1 secs=${2:-30}
	HOLD_COUNT=$((HOLD_COUNT + 1))
	HOLD_OUT=$BATS_TEST_TMPDIR/hold-$HOLD_COUNT.out
	python3 "$CLIENT_PY" 127.0.0.1 "$port" --idle-ms "$((secs * 1000))" --timeout "$((secs + 5))" \
		>"$HOLD_OUT" 2>&1 3>&- </dev/null &
	HOLD_PID=$!
	record_pid "$HOLD_PID"
	echo "$HOLD_PID" >>"$BATS_TEST_TMPDIR/hold-pids"
}

# stop_hold PID: end one held connection. The client dies of SIGTERM (status 143), which
# is expected, so errexit must not see it.
stop_hold() {
	stop_pid "$1" || true
}

# stop_all_holds: end every held connection (SIGTERM: the kernel closes the socket with a FIN).
stop_all_holds() {
	local pid
	[ -f "$BATS_TEST_TMPDIR/hold-pids" ] || return 0
	for pid in $(cat "$BATS_TEST_TMPDIR/hold-pids"); do
		stop_hold "$pid"
	done
	: >"$BATS_TEST_TMPDIR/hold-pids"
}

# Established connections whose local port is PORT: for an upstream, the connections it
# has accepted and not yet closed.
established_to() {
	ss -Htn state established "( sport = :$1 )" 2>/dev/null | wc -l
}

# wait_established PORT N: bounded wait (5 s) until exactly N connections are up on PORT.
wait_established() {
	wait_count -eq "$2" 50 established_to "$1" && return 0
	echo "port $1: $WAIT_COUNT_LAST established connections, wanted $2" >&2
	return 1
}

# wait_established_quiet PORT N TENTHS: like wait_established, silent, over TENTHS x 0.1 s.
wait_established_quiet() {
	local i
	for ((i = 0; i < $3; i++)); do
		[ "$(established_to "$1")" -eq "$2" ] && return 0
		sleep 0.1
	done
	return 1
}

# The clients' side of a count: established connections whose remote port is PORT (tcpmapd's
# listener), i.e. clients connected and not yet closed. With established_to on the upstream's
# port this counts a breaker's admissions without reading the table through lib/.
clients_on() {
	ss -Htn state established "( dport = :$1 )" 2>/dev/null | wc -l
}

# wait_counted PORT UPSTREAM_PORT N: bounded wait (5 s) until `tcpmapctl status`, the clients
# of PORT and the upstream on UPSTREAM_PORT all count N live connections.
wait_counted() {
	wait_status_active "127.0.0.1:$2" "$3"
	wait_counted_outside "$@"
}

# wait_counted_outside PORT UPSTREAM_PORT N: the same without the table: the clients of PORT
# and the upstream on UPSTREAM_PORT both count N live connections (bounded, 5 s).
wait_counted_outside() {
	local i c u
	for ((i = 0; i < 50; i++)); do
		c=$(clients_on "$1")
		u=$(established_to "$2")
		[ "$c" -eq "$3" ] && [ "$u" -eq "$3" ] && return 0
		sleep 0.1
	done
	echo "port $1: $c clients connected, upstream $2: $u accepted; wanted $3" >&2
	return 1
}

# poll_cost_ms CMD...: how long one run of CMD takes here, in ms; a bound on a time that is
# observed by polling with CMD adds this, so a slow (or sanitized) machine widens it.
poll_cost_ms() {
	local t0
	t0=$(date +%s%N)
	"$@" >/dev/null 2>&1 || true
	echo $((($(date +%s%N) - t0) / 1000000))
}

# Lines in an upstream's report: connections it accepted and finished.
report_lines() {
	local f
	f=$(upstream_report "$1")
	if [ -f "$f" ]; then wc -l <"$f"; else echo 0; fi
}

# ---- tcpmapctl status ---------------------------------------------------------------

status_text() { "$TCPMAPCTL" status --runtime-dir "$RUN_DIR"; }
status_json() { "$TCPMAPCTL" status --runtime-dir "$RUN_DIR" --json; }

# json_flat: tcpmapctl status --json on stdin, flattened by one python run (python's start
# is slow enough to matter when called per field) into lines the readers below grep:
#   cluster KEY FIELD VALUE
#   picks MAPPING VALUE
json_flat() {
	python3 -c '
import json, sys
doc = json.load(sys.stdin)
for c in doc["clusters"]:
    for k, v in c.items():
        if k != "cluster":
            print("cluster", c["cluster"], k, v)
for g in doc["groups"]:
    for m in g["mappings"]:
        print("picks", m["name"], m["picks"])
'
}

# status_flat: the live table, flattened (see json_flat).
status_flat() { status_json | json_flat; }

# json_cluster FLAT SERVICE FIELD: FIELD of the one cluster whose key starts with
# "SERVICE|" (the key is service, TLS origination and limits, '|'-separated); empty when
# there is not exactly one.
json_cluster() {
	awk -v svc="$2|" -v f="$3" '
		$1 == "cluster" && index($2, svc) == 1 && $3 == f { n++; v = $4 }
		END { if (n == 1) print v }
	' <<<"$1"
}

# json_picks FLAT MAPPING: the picks of MAPPING (mapping names are unique).
json_picks() {
	awk -v name="$2" '$1 == "picks" && $2 == name { print $3; exit }' <<<"$1"
}

# text_cluster TEXT SERVICE COLUMN: a column (ACTIVE, TOTAL, BYTES_IN, ...) of the text
# form's first row for SERVICE (host:port), found by the header's column names.
text_cluster() {
	awk -v svc="$2" -v col="$3" '
		$1 == "SERVICE" { for (i = 1; i <= NF; i++) idx[$i] = i; next }
		$1 == "GROUP" { exit }
		(col in idx) && $1 == svc { print $(idx[col]); exit }
	' <<<"$1"
}

# text_picks TEXT MAPPING: PICKS of MAPPING in the text form's group table (the group
# key is printed on a group's first row only).
text_picks() {
	awk -v name="$2" '
		$1 == "GROUP" { in_groups = 1; next }
		in_groups && NF == 4 && $2 == name { print $4; exit }
		in_groups && NF == 3 && $1 == name { print $3; exit }
	' <<<"$1"
}

# wait_status_active SERVICE N: bounded wait (5 s) until the table shows N active for SERVICE.
wait_status_active() {
	local i a=
	for ((i = 0; i < 50; i++)); do
		a=$(json_cluster "$(status_flat)" "$1" active)
		[ "$a" = "$2" ] && return 0
		sleep 0.1
	done
	echo "status: $1 active=$a, wanted $2" >&2
	status_text >&2
	return 1
}

# accept_two_held CONF: a per-connection tcpmapd (systemd-socket-activate --accept) on a
# mapping limited to max_connections 2, with two connections held open through it, each in
# its own relay process, and the table counting both. Sets the caller's `port` and `up`.
accept_two_held() {
	local conf=$1 lines
	port=$(pick_port)
	up=$(pick_port)
	start_upstream 127.0.0.1 "$up" hold
	mapfile -t lines < <(breaker_lines max_connections 2)
	write_mapping "$conf" limited "$port" "127.0.0.1:$up" "${lines[@]}"
	start_accept_activate "$port" "$conf"
	hold_connection "$port"
	hold_connection "$port"
	wait_established "$up" 2
	wait_activate_children "$ACTIVATE_PID" 2
	wait_status_active "127.0.0.1:$up" 2
}
