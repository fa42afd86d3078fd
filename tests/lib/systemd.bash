# systemd.bash — what the suites that run tcpmap under a real systemd share: booting the
# private systemd of tests/lib/sandbox.sh, installing into it with `make install`, running
# commands inside it, free loopback ports, and reading tcpmapd's journal entries back.
#
# It must never boot systemd any other way than through sandbox.sh, and a suite that loads it
# must call sd_stop from teardown_file so no sandbox outlives it. The sandbox shares the host's
# network namespace: everything here talks to the host's loopback only.
#
# Load it from a bats file with `load ../lib/systemd`. A suite sets SD_PORT_MIN (and
# SD_PORT_SPAN) before pick_port to keep out of the other suites' ports.

ROOT=${TCPMAP_ROOT:-$(cd "$BATS_TEST_DIRNAME/../.." && pwd)}
# shellcheck source=pids.bash
. "$ROOT/tests/lib/pids.bash"
# shellcheck source=ports.bash
. "$ROOT/tests/lib/ports.bash"
SANDBOX=$ROOT/tests/lib/sandbox.sh
MID_CLOSE=$(sed -n 's/^#define TCPMAP_MID_CLOSE "\([0-9a-f]*\)"$/\1/p' "$ROOT/lib/log.h")
# Below the kernel's ephemeral range (32768-60999): systemd-operations takes 31500-32699,
# systemd-restart 64500-65499; pick_port skips this machine's ephemeral range anyway.
SD_PORT_MIN=${SD_PORT_MIN:-30000}
SD_PORT_SPAN=${SD_PORT_SPAN:-1500}

sb() { "$SANDBOX" exec "$SB_STATE" "$@"; }

port_is_free() { [ -z "$(ss -Hltn "sport = :$1")" ]; }

# A stopped service may still be exiting with its copy of the socket: wait at most 5 s.
wait_port_free() {
	for _ in $(seq 50); do port_is_free "$1" && return 0; sleep 0.1; done
	port_is_free "$1"
}

pick_port() { # print a free port in the suite's range that is not in "$*"; bounded tries
	local p
	for _ in $(seq 200); do
		p=$((SD_PORT_MIN + (RANDOM % SD_PORT_SPAN)))
		case " $* " in *" $p "*) continue ;; esac
		port_ephemeral "$p" && continue
		# Nothing may use it at all, not only no listener: a client's socket bound to it
		# explicitly, or a connection to it still in TIME_WAIT, would make the bind fail too.
		[ -z "$(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null)" ] && port_claim "$p" &&
			{ echo "$p"; return 0; }
	done
	return 1
}

# roundtrip_to HOST PORT BYTES: send BYTES deterministic bytes to HOST:PORT (loopback),
# half-close, read everything back and fail unless it is exactly what was sent (the upstream
# echoes). Bounded by 20 s. relay_roundtrip PORT BYTES does the same to 127.0.0.1.
roundtrip_to() {
	python3 - "$@" <<'EOF'
import socket, sys, time
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
data = bytes((i * 7 + 3) % 251 for i in range(n))
s = socket.create_connection((host, port), timeout=10)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
got, deadline = bytearray(), time.monotonic() + 20
while time.monotonic() < deadline:
    b = s.recv(65536)
    if not b:
        break
    got += b
s.close()
if bytes(got) != data:
    sys.exit(f"sent {n} bytes to [{host}]:{port}, got {len(got)} back")
EOF
}
relay_roundtrip() { roundtrip_to 127.0.0.1 "$1" "$2"; }

# Print one line "PID UNIT BYTES_IN BYTES_OUT RESULT MESSAGE_ID" per close event of UNITGLOB.
close_events() { # UNITGLOB
	sb journalctl --no-pager -o json -u "$1" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("TCPMAP_EVENT") != "close":
        continue
    print(e.get("_PID"), e.get("_SYSTEMD_UNIT"), e.get("TCPMAP_BYTES_IN"), e.get("TCPMAP_BYTES_OUT"),
          e.get("TCPMAP_RESULT"), e.get("MESSAGE_ID"))
'
}

# Wait (at most 15 s: a loaded machine's journald has been seen 5 s behind a short-lived
# unit) until UNITGLOB has a close event with BYTES_IN bytes, and print it.
wait_close_event() { # UNITGLOB BYTES_IN
	local ev
	for _ in $(seq 150); do
		ev=$(close_events "$1" | awk -v n="$2" '$3 == n' | tail -1)
		[ -n "$ev" ] && { echo "$ev"; return 0; }
		sleep 0.1
	done
	echo "no close event with TCPMAP_BYTES_IN=$2 for $1; the journal has:" >&2
	sb journalctl --no-pager -o verbose -u "$1" | tail -60 >&2
	return 1
}

exposure() { # UNITFILE: systemd-analyze's overall exposure, e.g. 1.2
	sb systemd-analyze security --offline=true --no-pager "$1" 2>&1 |
		sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p'
}

# The journal's position now, for journal_after: the cursor of its newest entry.
journal_cursor() {
	sb journalctl --no-pager -q -n 1 --show-cursor -o cat | sed -n 's/^-- cursor: //p' | tail -1
}

# journal_after CURSOR [JOURNALCTL_ARGS...]: the entries after CURSOR as JSON lines. Filter
# the output, not the query: journalctl 252 with --after-cursor and a match skips the first
# matching entry whenever the cursor's own entry does not match.
journal_after() {
	local cursor=$1
	shift
	sb journalctl --no-pager -o json --after-cursor="$cursor" "$@"
}

# ---- the sandbox's life cycle (setup_file / teardown_file) -------------------------------

# Skip the whole file where a private systemd cannot boot.
# sd_require (in setup_file): 0 when a private systemd can run here; else 1, with the reason
# in SD_SKIP for sd_skip_unavailable. (bats 1.8 cannot skip from setup_file itself.)
sd_require() {
	export SD_SKIP=
	# The hardened services forbid what the sanitizers need (MemoryDenyWriteExecute=,
	# SystemCallFilter=), so these suites would install the plain build again under SAN=1
	# and test exactly what the plain run tested: the sanitizers check the code elsewhere.
	if [ "${TCPMAP_SAN:-0}" = 1 ]; then
		SD_SKIP="units are tested by the plain run (a sanitizer build cannot run hardened)"
	elif [ "$(id -u)" != 0 ]; then
		SD_SKIP="the private systemd needs root"
	elif ! command -v unshare >/dev/null || ! command -v nsenter >/dev/null; then
		SD_SKIP="needs unshare and nsenter (util-linux)"
	elif ! grep -qw overlay /proc/filesystems && ! modprobe overlay 2>/dev/null; then
		SD_SKIP="needs overlayfs"
	elif [ ! -x /lib/systemd/systemd ]; then
		SD_SKIP="needs systemd installed (/lib/systemd/systemd)"
	fi
	[ -z "$SD_SKIP" ]
}

# sd_skip_unavailable (in setup): skip the test when sd_require said no.
sd_skip_unavailable() {
	[ -z "${SD_SKIP:-}" ] || skip "$SD_SKIP"
}

# Set SB_BUILD, the build whose binaries go into the sandbox.
sd_choose_build() {
	export SB_BUILD
	SB_BUILD=$(dirname "${TCPMAPD:-$ROOT/build/tcpmapd}")
	[ -x "$SB_BUILD/tcpmapd" ] || { echo "no $SB_BUILD/tcpmapd: build first" >&2; return 1; }
}

# Boot the sandbox; its state lives in the file's temp dir.
sd_start() {
	export SB_STATE=$BATS_FILE_TMPDIR/sandbox
	"$SANDBOX" start "$SB_STATE" "$ROOT" 3>&- >/dev/null
}

# `make install` into the sandbox's overlay root, where the dynamic user can reach it; the
# checkout may sit anywhere (even under /tmp, which services do not see). `-o all`: install
# what the suite already built, never rebuild from inside. Sets UNITDIR.
sd_install() {
	sb make -C "$ROOT" -s -o all SAN=0 BUILD="$SB_BUILD" PREFIX=/usr DESTDIR= install >&2
	export UNITDIR
	UNITDIR=$(sb pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
}

# Power the sandbox off; safe when it never booted.
sd_stop() {
	[ -n "${SB_STATE:-}" ] && "$SANDBOX" stop "$SB_STATE"
	return 0
}

# ---- the documented recipes, as the docs write them ----------------------------------------

# readme_recipe HEADING: the first indented code block under "## HEADING" in README.md.
readme_recipe() {
	awk -v h="## $1" '
		$0 == h { inside = 1; next }
		inside && /^## / { exit }
		inside && /^    / { sub(/^    /, ""); print; seen = 1; next }
		inside && seen && !/^$/ { exit }
	' "$ROOT/README.md"
}

# man_recipe PAGE NAME: the .EX block after the line `.\" recipe: NAME` in man/PAGE, with the
# roff escapes the pages use turned back into what a reader types.
man_recipe() {
	awk -v tag="recipe: $2" '
		index($0, ".\\\" " tag) == 1 { found = 1; next }
		found && $0 == ".EX" { inside = 1; next }
		inside && $0 == ".EE" { exit }
		inside { print }
	' "$ROOT/man/$1" | sed -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" -e 's/\\(dq/"/g' -e 's/\\e/\\/g'
}

# ---- upstreams and streams on the host ------------------------------------------------
# Every process these start is recorded in $BATS_FILE_TMPDIR/pids; a suite's teardown_file
# stops them with sd_kill_recorded.

STREAM_PY=$ROOT/tests/lib/stream.py
UPSTREAM_PY=$ROOT/tests/lib/upstream.py

# start_echo PORT [HOST]: tests/lib/upstream.py's echo server on HOST (default 127.0.0.1),
# for at most 20 minutes; waits (bounded, 5 s) until it listens. Sets ECHO_PID.
start_echo() {
	local host=${2:-127.0.0.1}
	python3 "$UPSTREAM_PY" echo --host "$host" --port "$1" --max-seconds 1200 \
		--ready-file "$BATS_FILE_TMPDIR/echo-$1.ready" >"$BATS_FILE_TMPDIR/echo-$1.log" 2>&1 3>&- &
	ECHO_PID=$!
	echo "$ECHO_PID" >>"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 50); do
		[ -e "$BATS_FILE_TMPDIR/echo-$1.ready" ] && return 0
		sleep 0.1
	done
	cat "$BATS_FILE_TMPDIR/echo-$1.log" >&2
	return 1
}

# sd_kill_recorded: stop every process recorded in $BATS_FILE_TMPDIR/pids, newest first.
sd_kill_recorded() {
	local pid
	[ -f "$BATS_FILE_TMPDIR/pids" ] || return 0
	for pid in $(tac "$BATS_FILE_TMPDIR/pids"); do
		pid_ours "$pid" && kill "$pid" 2>/dev/null
	done
	return 0
}

# ---- streams ------------------------------------------------------------------------

# start_stream NAME ARGS...: stream.py in the background on the host; waits (bounded) until
# every connection has had bytes echoed. Its files are $BATS_TEST_TMPDIR/NAME.*.
start_stream() {
	local name=$1 d=$BATS_TEST_TMPDIR pid
	shift
	rm -f "$d/$name.ready" "$d/$name.stop" "$d/$name.mark"
	python3 "$STREAM_PY" --ready-file "$d/$name.ready" --stop-file "$d/$name.stop" \
		--mark-file "$d/$name.mark" "$@" >"$d/$name.out" 2>&1 3>&- &
	pid=$!
	echo "$pid" >"$d/$name.pid"
	echo "$pid" >>"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 200); do # 20 s
		[ -e "$d/$name.ready" ] && return 0
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	echo "stream $name did not get going:" >&2
	cat "$d/$name.out" >&2
	return 1
}

mark_stream() { touch "$BATS_TEST_TMPDIR/$1.mark"; }

# finish_stream NAME [TENTHS]: ask NAME to stop (unless it ended by itself), wait for it
# (bounded, default 60 s) and print its report. Succeeds when the report ends in OK. (Works
# under `run`: it polls the PID instead of waiting for it.)
finish_stream() {
	local name=$1 n=${2:-600} d=$BATS_TEST_TMPDIR pid i
	pid=$(cat "$d/$name.pid")
	touch "$d/$name.stop"
	for ((i = 0; i < n; i++)); do
		stream_running "$pid" || break
		sleep 0.1
	done
	if stream_running "$pid"; then
		kill "$pid" 2>/dev/null
		echo "stream $name did not finish in time"
	fi
	cat "$d/$name.out"
	[ "$(tail -n 1 "$d/$name.out")" = OK ]
}

# finish_stream_ok NAME: finish_stream, shown in the test's output, which must have ended
# cleanly: exit status 0 and a last line OK. Leaves $output and $lines for further checks.
finish_stream_ok() {
	run finish_stream "$@"
	echo "$output"
	[ "$status" -eq 0 ]
	[ "${lines[-1]}" = OK ]
}

# A zombie answers kill -0 too, so look at the state.
stream_running() {
	local state
	state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# field LINE KEY: KEY's value in a stream.py line.
field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }

# ---- pieces the restart and upgrade files share -------------------------------------

# main_pid UNIT: its MainPID, 0 when it runs none.
main_pid() { sb systemctl show -p MainPID --value "$1"; }

# events UNIT: one line per tcpmapd event of UNIT, "PID EVENT RESULT MESSAGE_ID".
events() {
	sb journalctl --no-pager -o json -u "$1" | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if "TCPMAP_EVENT" in e:
        print(e.get("_PID"), e["TCPMAP_EVENT"], e.get("TCPMAP_RESULT", "-"), e.get("MESSAGE_ID", "-"))
'
}

# event_field UNIT PID EVENT FIELD: FIELD (as log_event names it, e.g. CONNECTION) of each
# such tcpmapd event in UNIT's journal, one a line.
event_field() {
	sb journalctl --no-pager -o json -u "$1" _PID="$2" TCPMAP_EVENT="$3" |
		python3 -c '
import json, sys
for line in sys.stdin:
    print(json.loads(line).get("TCPMAP_" + sys.argv[1], "-"))
' "$4"
}

# moved_once UNIT OLD NEW STREAM_REPORT: the hand-over contract of a restart or re-exec from
# PID OLD to PID NEW: every connection OLD logged `handover` for, NEW logged `adopt` for, each
# once, and every connection of STREAM_REPORT (tests/lib/stream.py's output, its client=
# fields) was among them, once. Probes running meanwhile may have moved too.
moved_once() {
	local handed adopted clients c
	handed=$(event_field "$1" "$2" handover CONNECTION | sort)
	adopted=$(event_field "$1" "$3" adopt CONNECTION | sort)
	echo "$(wc -l <<<"$handed") handed over by $2, $(wc -l <<<"$adopted") adopted by $3"
	if [ "$handed" != "$adopted" ]; then
		echo "handed over: $handed"
		echo "adopted: $adopted"
		# what the journal says of each one not adopted, under any unit or none
		for c in $(comm -23 <(echo "$handed") <(echo "$adopted")); do
			echo "journal lines naming c$c:"
			sb journalctl --no-pager -o short-precise | grep -F "c$c" | tail -8
		done
		return 1
	fi
	[ -z "$(uniq -d <<<"$handed")" ] || { echo "moved twice: $(uniq -d <<<"$handed")"; return 1; }
	clients=$(event_field "$1" "$2" handover CLIENT)
	for c in $(sed -n 's/^conn=.* client=\([^ ]*\).*/\1/p' <<<"$4"); do
		[ "$(grep -cx "$c" <<<"$clients")" -eq 1 ] || { echo "stream client $c handed over $(grep -cx "$c" <<<"$clients") times"; return 1; }
	done
}

# count_event_lines EVENTS PID EVENT [RESULT [MESSAGE_ID]]: how many lines of EVENTS (the
# output of `events`, read once for several counts) are EVENT from PID. RESULT "-" matches
# events without a result; empty or absent matches any, and so does an absent MESSAGE_ID.
count_event_lines() {
	awk -v pid="$2" -v ev="$3" -v res="${4:-}" -v mid="${5:-}" '
		$1 == pid && $2 == ev && (res == "" || $3 == res) && (mid == "" || $4 == mid) { n++ }
		END { print n + 0 }' <<<"$1"
}

# unit_event_count UNIT PID EVENT [RESULT [MESSAGE_ID]]: how many such tcpmapd events UNIT's
# journal has.
unit_event_count() { count_event_lines "$(events "$1")" "${@:2}"; }

# wait_unit_events UNIT PID EVENT RESULT N [MESSAGE_ID]: bounded wait (10 s) until UNIT's
# journal holds at least N such events; journald may lag behind the service a little.
wait_unit_events() {
	local n=
	for _ in $(seq 50); do
		n=$(unit_event_count "$1" "$2" "$3" "$4" "${6:-}")
		[ "$n" -ge "$5" ] && return 0
		sleep 0.2
	done
	echo "$n '$3' ($4) events from PID $2, wanted $5; the journal's tail:" >&2
	sb journalctl --no-pager -n 60 -u "$1" >&2
	return 1
}

# probe_during PORT CMD...: run CMD while tests/lib/probe.py probes an echoing mapping on
# 127.0.0.1:PORT back to back, from before CMD starts until after it ended (at least 1.5 s),
# each probe timed from its connect() to its echoed bytes. Prints CMD's output, then last
# "max_ms=M worst_at_ms=W p50_ms=X before_max_ms=B probes=K failed=F" (see probe.py), the
# figure the upgrade suites report; every probe is in $BATS_TEST_TMPDIR/probe/trace. Fails
# when CMD or the prober fails.
probe_during() {
	local port=$1 d pid rc
	shift
	d=$BATS_TEST_TMPDIR/probe
	rm -rf "$d" && mkdir "$d" || return 1
	python3 "$ROOT/tests/lib/probe.py" --port "$port" --control-dir "$d" >"$d/out" 2>&1 3>&- &
	pid=$!
	echo "$pid" >>"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 200); do
		[ -e "$d/ready" ] && break
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	[ -e "$d/ready" ] || { kill "$pid" 2>/dev/null; cat "$d/out"; return 1; }
	touch "$d/started"
	"$@"
	rc=$?
	touch "$d/done"
	wait "$pid" || rc=1
	cat "$d/out"
	return "$rc"
}

# probe_max_ms OUTPUT: the whole milliseconds of probe_during's max_ms.
probe_max_ms() { sed -n 's/^max_ms=\([0-9]*\).*/\1/p' <<<"$1"; }

# ---- idle TLS connections (tests/lib/tlsidle.py) ------------------------------------

# start_tls_idle NAME PORT SNI CAFILE N: N idle TLS connections to 127.0.0.1:PORT, for at most
# 120 s; waits (bounded, 20 s) until all are up. Its files are $BATS_TEST_TMPDIR/NAME.*.
start_tls_idle() {
	local d=$BATS_TEST_TMPDIR
	python3 "$ROOT/tests/lib/tlsidle.py" --port "$2" --sni "$3" --cafile "$4" \
		--connections "$5" --ready-file "$d/$1.ready" --check-file "$d/$1.check" \
		--max-seconds 120 >"$d/$1.out" 2>&1 3>&- &
	echo $! >"$d/$1.pid"
	echo $! >>"$BATS_FILE_TMPDIR/pids"
	for _ in $(seq 200); do
		[ -e "$d/$1.ready" ] && return 0
		sleep 0.1
	done
	cat "$d/$1.out" >&2
	return 1
}

# check_tls_idle NAME: have every idle TLS connection report; prints the report, whose last
# line is "alive=N".
check_tls_idle() {
	local d=$BATS_TEST_TMPDIR pid
	pid=$(cat "$d/$1.pid")
	touch "$d/$1.check"
	for _ in $(seq 300); do
		stream_running "$pid" || break
		sleep 0.1
	done
	cat "$d/$1.out"
}

# sd_make_server_pki DIR CA_CN NAME: a CA (DIR/ca.crt) and a serverAuth certificate for NAME
# that it signed (DIR/server.crt, DIR/server.key).
sd_make_server_pki() {
	local d=$1
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$d/ca.key" -out "$d/ca.crt" -days 2 -subj "/CN=$2" 2>/dev/null
	printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' \
		"$3" >"$d/server.ext"
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-keyout "$d/server.key" -out "$d/server.csr" -subj "/CN=$3" 2>/dev/null
	openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
		-CAcreateserial -days 2 -out "$d/server.crt" -extfile "$d/server.ext" 2>/dev/null
}

# sd_install_secret NAME: $PKI/server.crt and .key as the sandbox's secret NAME, where
# tcpmapd looks for it by default, readable by the dynamic user.
sd_install_secret() {
	sb sh -c "umask 022; mkdir -p /etc/tcpmap/secrets/$1"
	sb sh -c "umask 022; cat >/etc/tcpmap/secrets/$1/tls.crt" <"$PKI/server.crt"
	sb sh -c "umask 022; cat >/etc/tcpmap/secrets/$1/tls.key" <"$PKI/server.key"
}

# sd_stop_test_pids: a test's teardown; what a test that failed half-way left running
# ($BATS_TEST_TMPDIR/*.pid) is stopped by PID.
sd_stop_test_pids() {
	local f pid
	for f in "$BATS_TEST_TMPDIR"/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		stream_running "$pid" && kill "$pid" 2>/dev/null
	done
	return 0
}

# sd_recorded_gone: after sd_kill_recorded, fails (and kills it) when a recorded process
# still runs 3 s later.
sd_recorded_gone() {
	local pid leftover=0
	[ -f "$BATS_FILE_TMPDIR/pids" ] || return 0
	for pid in $(cat "$BATS_FILE_TMPDIR/pids"); do
		for _ in $(seq 30); do pid_ours "$pid" || break; sleep 0.1; done
		if pid_ours "$pid"; then
			echo "process $pid still running" >&2
			kill -KILL "$pid" 2>/dev/null
			leftover=1
		fi
	done
	return "$leftover"
}

# sd_setup_installed: a setup_file for a file that needs only `make install` in a started
# sandbox and one echo upstream on $UP (no config is written).
sd_setup_installed() {
	sd_require || return 0
	sd_choose_build
	export UP
	UP=$(pick_port)
	: >"$BATS_FILE_TMPDIR/pids"
	start_echo "$UP"
	sd_start
	sd_install
}
