# common.bash — shared helpers for tests/bats: free ports, upstream servers, tcpmapd in the
# background, log polling, sha256.
#
# Every process a test starts is recorded here and stopped by PID in teardown, with a
# bounded wait; nothing is ever killed by name. Every wait is a bounded poll. Tests touch
# loopback only (127.0.0.0/8 and ::1).

TCPMAP_ROOT=${TCPMAP_ROOT:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
TCPMAPD=${TCPMAPD:-$TCPMAP_ROOT/build/tcpmapd}
TESTLIB=$TCPMAP_ROOT/tests/lib
UPSTREAM_PY=$TESTLIB/upstream.py
# shellcheck source=pids.bash
. "$TESTLIB/pids.bash"
# shellcheck source=ports.bash
. "$TESTLIB/ports.bash"
CLIENT_PY=$TESTLIB/client.py

# Our share of the port space; other suites use other ranges, all outside the kernel's
# ephemeral range (32768-60999 by default), where a client socket could take a port between
# pick_port and the bind: common 20000-29999, faults 10000-19999, systemd 30000-32699,
# tls 61000-62999, breakers 63000-64499, systemd-restart 64500-65499. pick_port also skips
# whatever /proc says the ephemeral range is on this machine.
TEST_PORT_MIN=20000
TEST_PORT_MAX=29999

MiB=$((1024 * 1024))

common_setup() {
	[ -x "$TCPMAPD" ] || skip "tcpmapd not built at $TCPMAPD"
	RUN_DIR=$BATS_TEST_TMPDIR/run
	PIDS_FILE=$BATS_TEST_TMPDIR/pids
	PORTS_FILE=$BATS_TEST_TMPDIR/ports
	mkdir -p "$RUN_DIR"
	: >"$PIDS_FILE"
	: >"$PORTS_FILE"
	TCPMAPD_ARGS=()
	TCPMAPD_WRAP=()
	TCPMAPD_COUNT=0
	NETNS_WRAP=()
}

common_teardown() {
	stop_all_pids
	local f bad=0
	for f in "$BATS_TEST_TMPDIR"/tcpmapd-*.log; do
		[ -e "$f" ] || continue
		# shown by bats only when the test failed
		echo "--- $(basename "$f") (last 40 lines)"
		tail -n 40 "$f"
		if grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|runtime error:' "$f"; then
			echo "sanitizer report in $f" >&2
			bad=1
		fi
	done
	return $bad
}

# ---- processes ----------------------------------------------------------------------

record_pid() { echo "$1" >>"$PIDS_FILE"; }

# A zombie still answers kill -0, so look at the state instead.
pid_alive() {
	local state
	[ -r "/proc/$1/stat" ] || return 1
	state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# wait_pid_exit PID [TENTHS]: bounded wait for PID to exit (default 3 s).
wait_pid_exit() {
	local pid=$1 n=${2:-30} i
	for ((i = 0; i < n; i++)); do
		pid_alive "$pid" || return 0
		sleep 0.1
	done
	! pid_alive "$pid"
}

# stop_pid PID: SIGTERM, a bounded wait, then SIGKILL. Sets STOP_STATUS to the exit status
# when PID is our child (so callers can assert a clean exit), else to 127. Call it
# directly, not in $(...) or run: a subshell cannot reap our children.
stop_pid() {
	local pid=$1
	STOP_STATUS=127
	[ -n "$pid" ] || return 0
	# exited long ago, its PID maybe another's now (pids.bash)
	if ! pid_ours "$pid"; then
		wait "$pid" 2>/dev/null
		STOP_STATUS=$?
		return 0
	fi
	if pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null
		if ! wait_pid_exit "$pid" 30; then
			kill -KILL "$pid" 2>/dev/null
			wait_pid_exit "$pid" 20
		fi
	fi
	wait "$pid" 2>/dev/null
	STOP_STATUS=$?
	return 0
}

stop_all_pids() {
	local pid
	[ -f "${PIDS_FILE:-}" ] || return 0
	# newest first: tcpmapd before the upstreams it talks to
	for pid in $(tac "$PIDS_FILE"); do
		stop_pid "$pid"
	done
	: >"$PIDS_FILE"
}

# wait_count OP N TENTHS CMD...: bounded wait (TENTHS x 0.1 s) until the number CMD prints
# compares OP (-eq, -le, ...) to N. WAIT_COUNT_LAST holds the number it printed last, for the
# caller's message when it fails.
wait_count() {
	local op=$1 want=$2 tenths=$3 i
	shift 3
	for ((i = 0; i < tenths; i++)); do
		WAIT_COUNT_LAST=$("$@")
		[ "$WAIT_COUNT_LAST" "$op" "$want" ] && return 0
		sleep 0.1
	done
	return 1
}

# ---- a network namespace of the test's own ---------------------------------------------

# netns_enter: from here on this test's upstreams, tcpmapd, clients and port checks run in a
# fresh network namespace with only loopback up, so a fixed port (80) is free and no other
# test or program can take it. The namespace is held by a sleeping process, stopped by PID
# in teardown like every other. Skips when namespaces cannot be made (not root).
netns_enter() {
	unshare -n sleep 600 </dev/null >/dev/null 2>&1 3>&- &
	local pid=$! i
	record_pid "$pid"
	for ((i = 0; i < 50; i++)); do
		# unshare execs sleep once the namespace exists
		[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" = "$(readlink -f "$(command -v sleep)")" ] && break
		pid_alive "$pid" || skip "cannot create a network namespace (unshare -n)"
		sleep 0.1
	done
	[ "$(readlink "/proc/$pid/ns/net")" != "$(readlink /proc/self/ns/net)" ] ||
		skip "cannot create a network namespace (unshare -n)"
	nsenter -t "$pid" -n ip link set lo up
	NETNS_WRAP=(nsenter -t "$pid" -n --)
}

# ---- ports --------------------------------------------------------------------------

port_listening() { # PORT [ADDRESS]
	[ -n "$("${NETNS_WRAP[@]}" ss -Hltn "sport = :$1" 2>/dev/null)" ]
}

# pick_port: a random port in our range that nothing listens on, nothing holds in any
# state, this test has not handed out already and no other file running beside it has
# (port_claim).
pick_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((TEST_PORT_MIN + RANDOM % (TEST_PORT_MAX - TEST_PORT_MIN + 1)))
		grep -qx "$p" "$PORTS_FILE" 2>/dev/null && continue
		port_ephemeral "$p" && continue
		[ -n "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ] && continue
		port_claim "$p" || continue
		echo "$p" >>"$PORTS_FILE"
		echo "$p"
		return 0
	done
	echo "pick_port: no free port in $TEST_PORT_MIN-$TEST_PORT_MAX" >&2
	return 1
}

# wait_listening PORT...: bounded wait (50 x 0.1 s) until every PORT is listening.
wait_listening() {
	local i p missing
	for ((i = 0; i < 50; i++)); do
		missing=
		for p in "$@"; do
			port_listening "$p" || missing="$missing $p"
		done
		[ -z "$missing" ] && return 0
		sleep 0.1
	done
	echo "ports not listening after 5 s:$missing" >&2
	return 1
}

# ---- upstreams ----------------------------------------------------------------------

# start_upstream HOST PORT MODE [ARGS...]: an upstream.py server in the background; waits
# until it listens. Its report (one line per finished connection) is upstream_report PORT.
start_upstream() {
	local host=$1 port=$2 mode=$3 i
	shift 3
	local ready=$BATS_TEST_TMPDIR/upstream-$port.ready
	rm -f "$ready"
	"${NETNS_WRAP[@]}" python3 "$UPSTREAM_PY" "$mode" "$@" --host "$host" --port "$port" \
		--ready-file "$ready" --report "$(upstream_report "$port")" --max-seconds 120 \
		>"$BATS_TEST_TMPDIR/upstream-$port.out" 2>&1 3>&- &
	local pid=$!
	record_pid "$pid"
	for ((i = 0; i < 50; i++)); do
		[ -e "$ready" ] && return 0
		pid_alive "$pid" || break
		sleep 0.1
	done
	echo "upstream $mode on $host:$port did not start:" >&2
	cat "$BATS_TEST_TMPDIR/upstream-$port.out" >&2
	return 1
}

upstream_report() { echo "$BATS_TEST_TMPDIR/upstream-$1.report"; }

# ---- configs ------------------------------------------------------------------------

# write_mapping FILE NAME PORT SERVICE [SPEC_LINE...]: append one TCPMapping document
# bound to 127.0.0.1. Each SPEC_LINE is a "key: value" line placed under spec.
write_mapping() {
	local file=$1 name=$2 port=$3 service=$4 line
	shift 4
	{
		echo "---"
		echo "apiVersion: getambassador.io/v2"
		echo "kind: TCPMapping"
		echo "metadata:"
		echo "  name: $name"
		echo "spec:"
		echo "  port: $port"
		echo "  address: 127.0.0.1"
		echo "  service: \"$service\""
		for line in "$@"; do
			echo "  $line"
		done
	} >>"$file"
}

# The listening ports a config names, from its "port:" lines.
config_ports() {
	local c
	for c in "$@"; do
		if [ -d "$c" ]; then
			cat "$c"/*.yaml "$c"/*.yml 2>/dev/null
		else
			cat "$c"
		fi
	done | sed -nE 's/^[[:space:]]*port:[[:space:]]*"?([0-9]+)"?.*/\1/p' | sort -u
}

# ---- tcpmapd ------------------------------------------------------------------------

# start_tcpmapd CONFIG...: tcpmapd in the background on those configs, stderr to its own
# log; waits until every port the configs name is listening. Sets TCPMAPD_PID and
# TCPMAPD_LOG. TCPMAPD_ARGS adds options; TCPMAPD_WRAP is a command prefix that must
# exec tcpmapd in the same PID (e.g. unshare).
start_tcpmapd() {
	local args=() c
	for c in "$@"; do
		args+=(--config "$c")
	done
	TCPMAPD_COUNT=$((TCPMAPD_COUNT + 1))
	TCPMAPD_LOG=$BATS_TEST_TMPDIR/tcpmapd-$TCPMAPD_COUNT.log
	"${NETNS_WRAP[@]}" "${TCPMAPD_WRAP[@]}" "$TCPMAPD" "${args[@]}" --runtime-dir "$RUN_DIR" \
		--log-target stderr --workers 2 "${TCPMAPD_ARGS[@]}" \
		</dev/null >"$TCPMAPD_LOG" 2>&1 3>&- &
	TCPMAPD_PID=$!
	record_pid "$TCPMAPD_PID"
	local ports
	ports=$(config_ports "$@")
	# shellcheck disable=SC2086 # one word per port
	if ! wait_listening $ports || ! pid_alive "$TCPMAPD_PID"; then
		echo "tcpmapd did not come up on:" $ports >&2
		cat "$TCPMAPD_LOG" >&2
		return 1
	fi
}

# stop_tcpmapd: SIGTERM; STOP_STATUS is then its exit status (0 for a clean stop).
stop_tcpmapd() {
	stop_pid "$TCPMAPD_PID"
}

# Extra environment systemd-socket-activate must pass on (it starts from a clean one).
socket_activate_env() {
	local v
	for v in ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS TCPMAP_LOG_LEVEL; do
		[ -n "${!v:-}" ] && printf -- '-E\n%s\n' "$v"
	done
	return 0
}

# ---- logs ---------------------------------------------------------------------------

# log_count PATTERN [LOG]: lines of the log matching the extended regex.
log_count() {
	grep -cE -- "$1" "${2:-$TCPMAPD_LOG}" 2>/dev/null || true
}

# wait_for_log PATTERN [COUNT] [LOG]: bounded wait (50 x 0.1 s) for COUNT matching lines.
wait_for_log() {
	local pattern=$1 want=${2:-1} log=${3:-$TCPMAPD_LOG} i
	for ((i = 0; i < 50; i++)); do
		[ "$(log_count "$pattern" "$log")" -ge "$want" ] && return 0
		sleep 0.1
	done
	echo "log $log: wanted $want lines matching '$pattern', found $(log_count "$pattern" "$log")" >&2
	return 1
}

# ---- client output --------------------------------------------------------------------

# kv KEY: the value of KEY=... in $output (client.py prints one field per line).
kv() {
	sed -n "s/^$1=//p" <<<"$output" | head -n 1
}

# report_kv PORT KEY [LINE]: a field from the LINE-th (default last) report line.
report_kv() {
	local line
	if [ -n "${3:-}" ]; then
		line=$(sed -n "${3}p" "$(upstream_report "$1")")
	else
		line=$(tail -n 1 "$(upstream_report "$1")")
	fi
	tr ' ' '\n' <<<"$line" | sed -n "s/^$2=//p"
}

# wait_for_report PORT [COUNT]: bounded wait for the upstream to finish COUNT connections.
wait_for_report() {
	local f i
	f=$(upstream_report "$1")
	for ((i = 0; i < 50; i++)); do
		[ -f "$f" ] && [ "$(wc -l <"$f")" -ge "${2:-1}" ] && return 0
		sleep 0.1
	done
	echo "upstream on port $1 reported no finished connection" >&2
	return 1
}

sha256_file() { sha256sum "$1" | cut -d' ' -f1; }

client() { "${NETNS_WRAP[@]}" python3 "$CLIENT_PY" "$@" 3>&-; }

# Print a figure into the TAP stream.
note() { echo "# $*" >&3; }

# start_echo_relay NAME: an echo upstream, and tcpmapd relaying a new port to it as mapping
# NAME; then one 1000-byte round trip, which must come back whole. Sets RELAY_PORT,
# RELAY_UP and RELAY_CONF.
start_echo_relay() {
	RELAY_PORT=$(pick_port)
	RELAY_UP=$(pick_port)
	RELAY_CONF=$BATS_TEST_TMPDIR/$1.yaml
	start_upstream 127.0.0.1 "$RELAY_UP" echo
	write_mapping "$RELAY_CONF" "$1" "$RELAY_PORT" "127.0.0.1:$RELAY_UP"
	start_tcpmapd "$RELAY_CONF"
	run client 127.0.0.1 "$RELAY_PORT" --send 1000 --timeout 10
	[ "$status" -eq 0 ]
	[ "$(kv recv_bytes)" = 1000 ]
	[ "$(kv recv_sha256)" = "$(kv sent_sha256)" ]
}
