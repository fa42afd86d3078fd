# faults.bash — helpers for the fault and hostile-client suites (issue 7): misbehaving
# peers from faults.py in the background, a checksummed "bystander" stream that must
# survive every fault untouched, and tcpmapd's RSS and CPU time from /proc.
#
# Load it after common.bash. It must never stop a process it did not start (every PID it
# starts goes through record_pid) and every wait is a bounded poll.

# The fault suites' share of the port space.
TEST_PORT_MIN=10000
TEST_PORT_MAX=19999

FAULTS_PY=$TESTLIB/faults.py
TCPMAPCTL=${TCPMAPCTL:-$(dirname "$TCPMAPD")/tcpmapctl}

# start_fault PORT MODE [ARGS...]: a faults.py server mode listening on 127.0.0.1:PORT.
start_fault() {
	local port=$1 mode=$2 i
	shift 2
	local rf=$BATS_TEST_TMPDIR/fault-$port.ready
	rm -f "$rf"
	python3 "$FAULTS_PY" "$mode" --port "$port" --ready-file "$rf" \
		--report "$BATS_TEST_TMPDIR/fault-$port.report" --max-seconds 120 "$@" \
		>"$BATS_TEST_TMPDIR/fault-$port.out" 2>&1 3>&- &
	local pid=$!
	record_pid "$pid"
	for ((i = 0; i < 50; i++)); do
		[ -e "$rf" ] && return 0
		pid_alive "$pid" || break
		sleep 0.1
	done
	echo "faults.py $mode on $port did not start:" >&2
	cat "$BATS_TEST_TMPDIR/fault-$port.out" >&2
	return 1
}

fault_report() { echo "$BATS_TEST_TMPDIR/fault-$1.report"; }

faults() { python3 "$FAULTS_PY" "$@" 3>&-; }

# ---- the bystander -------------------------------------------------------------------

# start_bystander PORT: a connection through tcpmapd to an echo upstream that streams
# 16 KiB every 10 ms until finish_bystander.
start_bystander() {
	BYSTANDER_STOP=$BATS_TEST_TMPDIR/bystander.stop
	BYSTANDER_OUT=$BATS_TEST_TMPDIR/bystander.out
	rm -f "$BYSTANDER_STOP"
	python3 "$FAULTS_PY" bystander --port "$1" --stop-file "$BYSTANDER_STOP" \
		--max-seconds 50 >"$BYSTANDER_OUT" 2>&1 3>&- &
	BYSTANDER_PID=$!
	record_pid "$BYSTANDER_PID"
	# the fault must not start before the bystander's connection is up
	local i
	for ((i = 0; i < 50; i++)); do
		[ -n "$(ss -Htn state established "( dport = :$1 )")" ] && break
		sleep 0.1
	done
	sleep 0.1
}

# finish_bystander: stop it and check that every byte came back; notes the figure.
finish_bystander() {
	touch "$BYSTANDER_STOP"
	wait_pid_exit "$BYSTANDER_PID" 150 || {
		echo "bystander did not finish" >&2
		return 1
	}
	cat "$BYSTANDER_OUT"
	local sent intact
	sent=$(sed -n 's/^sent_bytes=//p' "$BYSTANDER_OUT")
	intact=$(sed -n 's/^intact=//p' "$BYSTANDER_OUT")
	note "bystander: $sent bytes streamed across the fault, intact=$intact"
	[ "$intact" = 1 ]
	[ "${sent:-0}" -gt 0 ]
}

# ---- configs -------------------------------------------------------------------------

# write_module_config FILE KEY: VALUE...: a Module with tcpmap's own settings under config:.
write_module_config() {
	local file=$1 line
	shift
	{
		echo "---"
		echo "apiVersion: getambassador.io/v2"
		echo "kind: Module"
		echo "metadata:"
		echo "  name: ambassador"
		echo "spec:"
		echo "  config:"
		for line in "$@"; do
			echo "    $line"
		done
	} >>"$file"
}

# make_cert DIR NAME HOST: a self-signed P-256 certificate for HOST as a Kubernetes-style
# secret DIR/NAME/tls.crt and tls.key.
make_cert() {
	mkdir -p "$1/$2"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
		-keyout "$1/$2/tls.key" -out "$1/$2/tls.crt" -subj "/CN=$3" \
		-addext "subjectAltName=DNS:$3" 2>/dev/null
}

# write_tls_context_doc FILE NAME SECRET HOST
write_tls_context_doc() {
	cat >>"$1" <<-EOF
		---
		apiVersion: getambassador.io/v2
		kind: TLSContext
		metadata:
		  name: $2
		spec:
		  secret: $3
		  hosts: [$4]
	EOF
}

# ---- /proc figures ------------------------------------------------------------------------

rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# own_rss_kb PID: RSS less the pages of the mapped breaker table. The table is a shared file
# whose pages stay mapped once touched (the once-a-second reap reads every slot): bounded by
# the table's size, and shared by every tcpmap process.
own_rss_kb() { echo $(($(rss_kb "$1") - $(table_rss_kb "$1"))); }
table_rss_kb() {
	awk '/^[0-9a-f]+-[0-9a-f]+ / {t = ($6 ~ /breakers/)} t && /^Rss:/ {n += $2} END {print n + 0}' "/proc/$1/smaps"
}
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
fd_count() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }

# wait_fds_at_most PID MAX TENTHS: bounded wait until PID has at most MAX fds open; fails
# with the count it saw last.
wait_fds_at_most() {
	wait_count -le "$2" "$3" fd_count "$1" && return 0
	echo "pid $1 still has $WAIT_COUNT_LAST fds open, wanted at most $2" >&2
	return 1
}

# cpu_ticks PID: utime + stime in clock ticks (fields 14 and 15 of /proc/PID/stat, counted
# after the command name, which may hold spaces).
cpu_ticks() {
	sed -E 's/^[0-9]+ \(.*\) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}

# cpu_percent PID SECONDS: CPU use of PID over a window, in percent of one core.
cpu_percent() {
	local a b hz
	hz=$(getconf CLK_TCK)
	a=$(cpu_ticks "$1")
	sleep "$2"
	b=$(cpu_ticks "$1")
	echo $(((b - a) * 100 / hz / $2))
}

# wait_for_close_count PATTERN COUNT TENTHS: bounded wait for COUNT close lines.
wait_for_count() {
	local pattern=$1 want=$2 n=${3:-100} i
	for ((i = 0; i < n; i++)); do
		[ "$(log_count "$pattern")" -ge "$want" ] && return 0
		sleep 0.1
	done
	echo "wanted $want lines matching '$pattern', found $(log_count "$pattern")" >&2
	return 1
}

# served_ok PORT: the next connection through tcpmapd to an echo mapping works, 64 KiB.
served_ok() {
	run client 127.0.0.1 "$1" --send 65536 --timeout 10
	echo "$output"
	[ "$(kv closed_by)" = eof ]
	[ "$(kv recv_bytes)" = 65536 ]
	[ "$(kv recv_sha256)" = "$(kv sent_sha256)" ]
}
