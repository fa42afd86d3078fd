#!/usr/bin/env bats
# tls-resumption.bats — issue 19: a session ticket one tcpmapd issued resumes in another,
# because every tcpmap process on the host seals tickets with the keys in
# RUNTIME_DIR/tls-ticket-keys: a tcpmapd started after the first one stopped, a forked
# relay (per_connection_process) and an Accept=yes process per connection. A ticket whose
# key is older than the window (the test-only clock offset) gets a full handshake, and no
# log ever holds a key's bytes. Nor does a core: tcpmapd killed by a signal writes none (it
# is not dumpable), and one taken anyway with gdb's gcore holds no copy of a key, since
# their mapping is MADV_DONTDUMP and no copy of one outlives sealing or opening a ticket.
#
# The client is tests/lib/resume.py: one process holds the session while the test swaps
# tcpmapd under it.

load ../lib/common
load ../lib/tls

# this file's share of the port space
TEST_PORT_MIN=2500
TEST_PORT_MAX=2999
RESUME_PY=$TESTLIB/resume.py
KEYS_PY=$TESTLIB/ticketkeys.py

setup_file() {
	load ../lib/common
	load ../lib/tls
	tls_make_pki
}

setup() {
	tls_setup
	TEST_PORT_MIN=2500
	TEST_PORT_MAX=2999
	PORT=$(pick_port)
	UP=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/tcpmap.yaml
	start_upstream 127.0.0.1 "$UP" banner resumption-banner
	write_tls_context "$CONF" my-context supersecret "hosts: [my-host-1]"
}

teardown() { common_teardown; }

# client NAME TLS ROUNDS: resume.py in the background (output CLIENT_OUT-NAME); waits for
# its first connection to be done.
client_start() {
	local name=$1 out=$BATS_TEST_TMPDIR/client-$1.out i
	python3 "$RESUME_PY" --port "$PORT" --sni my-host-1 --ca "$PKI/ca.crt" --tls "$2" \
		--rounds "$3" --round-file "$BATS_TEST_TMPDIR/round-$name" >"$out" 2>&1 3>&- </dev/null &
	record_pid $!
	eval "CLIENT_PID_$name=$!"
	for ((i = 0; i < 100; i++)); do
		grep -q '^first ' "$out" && break
		sleep 0.1
	done
	grep -q '^first reused=0 .*ticket=1 banner=resumption-banner' "$out" || {
		cat "$out" >&2
		return 1
	}
}

# round NAME N: let client NAME make its connection N (to $PORT) and wait for its line.
round() {
	local out=$BATS_TEST_TMPDIR/client-$1.out f=$BATS_TEST_TMPDIR/round-$1.$2 i
	echo "$PORT" >"$f.tmp" && mv "$f.tmp" "$f"
	for ((i = 0; i < 100; i++)); do
		grep -q "^round $2 " "$out" && break
		sleep 0.1
	done
	ROUND=$(grep "^round $2 " "$out")
	echo "client $1 round $2: $ROUND" >&2
}

mapping_term() {
	write_mapping "$CONF" term "$PORT" "127.0.0.1:$UP" "host: my-host-1" "$@"
}

swap_tcpmapd() {
	stop_tcpmapd
	start_tcpmapd "$CONF"
}

@test "resumption: a TLS 1.3 ticket from one tcpmapd resumes on the next one, not on another runtime dir" {
	mapping_term
	start_tcpmapd "$CONF"
	client_start a 1.3 2
	swap_tcpmapd
	round a 1
	[[ "$ROUND" == "round 1 reused=1 version=TLSv1.3 banner=resumption-banner" ]]
	# the control: the same client, a tcpmapd with its own (empty) runtime directory
	stop_tcpmapd
	RUN_DIR=$BATS_TEST_TMPDIR/other-run
	mkdir -m 0700 "$RUN_DIR"
	start_tcpmapd "$CONF"
	round a 2
	[[ "$ROUND" == "round 2 reused=0 version=TLSv1.3 banner=resumption-banner" ]]
	note "TLS 1.3: resumed across a tcpmapd restart on the same runtime dir; full handshake on another"
}

@test "resumption: a TLS 1.2 ticket from one tcpmapd resumes on the next one" {
	mapping_term
	start_tcpmapd "$CONF"
	client_start a 1.2 1
	swap_tcpmapd
	round a 1
	[[ "$ROUND" == "round 1 reused=1 version=TLSv1.2 banner=resumption-banner" ]]
}

@test "resumption: a ticket from one per_connection_process relay resumes in another" {
	mapping_term "per_connection_process: true"
	start_tcpmapd "$CONF"
	client_start a 1.3 1
	client_start b 1.2 1
	round a 1
	[[ "$ROUND" == "round 1 reused=1 version=TLSv1.3 banner=resumption-banner" ]]
	round b 1
	[[ "$ROUND" == "round 1 reused=1 version=TLSv1.2 banner=resumption-banner" ]]
}

@test "resumption: a ticket from one Accept=yes process resumes in the next" {
	command -v systemd-socket-activate >/dev/null || skip "systemd-socket-activate not installed"
	mapping_term
	local env_args
	mapfile -t env_args < <(socket_activate_env)
	TCPMAPD_LOG=$BATS_TEST_TMPDIR/tcpmapd-accept.log
	systemd-socket-activate --accept --listen="127.0.0.1:$PORT" "${env_args[@]}" \
		"$TCPMAPD" --config "$CONF" --runtime-dir "$RUN_DIR" --secrets-dir "$SECRETS_DIR" \
		--log-target stderr </dev/null >"$TCPMAPD_LOG" 2>&1 3>&- &
	TCPMAPD_PID=$!
	record_pid "$TCPMAPD_PID"
	wait_listening "$PORT"
	client_start a 1.3 1
	client_start b 1.2 1
	round a 1
	[[ "$ROUND" == "round 1 reused=1 version=TLSv1.3 banner=resumption-banner" ]]
	round b 1
	[[ "$ROUND" == "round 1 reused=1 version=TLSv1.2 banner=resumption-banner" ]]
	[ "$(log_count '^Spawned ')" -ge 4 ]
}

@test "resumption: a ticket under a key older than 12 h gets a full handshake; 11 h still resumes" {
	mapping_term
	start_tcpmapd "$CONF"
	client_start young 1.3 1
	client_start old 1.2 1
	stop_tcpmapd
	TCPMAP_TEST_TICKET_CLOCK_OFFSET=$((11 * 3600)) start_tcpmapd "$CONF"
	round young 1
	[[ "$ROUND" == "round 1 reused=1 version=TLSv1.3 banner=resumption-banner" ]]
	stop_tcpmapd
	TCPMAP_TEST_TICKET_CLOCK_OFFSET=$((13 * 3600)) start_tcpmapd "$CONF"
	round old 1
	[[ "$ROUND" == "round 1 reused=0 version=TLSv1.2 banner=resumption-banner" ]]
	wait_for_log 'event=close .*mapping=term .*result=ok'
}

@test "resumption: the keys live in RUN_DIR/tls-ticket-keys (0600) and no log holds their bytes" {
	mapping_term
	TCPMAP_LOG_LEVEL=debug start_tcpmapd "$CONF"
	client_start a 1.3 1
	client_start b 1.2 1
	swap_tcpmapd
	round a 1
	[[ "$ROUND" == *reused=1* ]]
	local keys=$RUN_DIR/tls-ticket-keys
	[ "$(stat -c %a "$keys")" = 600 ]
	[ "$(python3 "$KEYS_PY" "$keys")" -ge 1 ]
	stop_tcpmapd
	local logs=("$BATS_TEST_TMPDIR"/tcpmapd-*.log)
	strings "${logs[@]}" >"$BATS_TEST_TMPDIR/strings.txt"
	run python3 "$KEYS_PY" "$keys" "${logs[@]}" "$BATS_TEST_TMPDIR/strings.txt"
	echo "$output"
	[ "$status" -eq 0 ]
	# removing the file forces a rotation: the next tcpmapd makes new keys, the old ticket
	# gets a full handshake
	rm "$keys"
	start_tcpmapd "$CONF"
	round b 1
	[[ "$ROUND" == "round 1 reused=0 version=TLSv1.2 banner=resumption-banner" ]]
}

# ---- no key in a core file ------------------------------------------------------------

# tcpmapd with a ticket issued and one resumed (the key callback has run both ways), so
# whatever copies of a key OpenSSL or tcpmapd keep have been made.
start_with_tickets_used() {
	mapping_term
	start_tcpmapd "$CONF"
	client_start a 1.3 1
	round a 1
	[[ "$ROUND" == "round 1 reused=1 version=TLSv1.3 banner=resumption-banner" ]]
	[ "$(python3 "$KEYS_PY" "$RUN_DIR/tls-ticket-keys")" -ge 1 ]
}

# A core written by the kernel lands in the process's cwd only for a plain core_pattern;
# a pipe (systemd-coredump, apport) or a path puts it where this test cannot look.
need_plain_core_pattern() {
	local pattern
	pattern=$(cat /proc/sys/kernel/core_pattern)
	[ "$pattern" = core ] ||
		skip "kernel.core_pattern is '$pattern', not 'core': a core would not land in the cwd"
}

# kill_and_reap PID SIGNAL: the signal, a bounded wait for the death; KILLED_STATUS is then
# its exit status (128 + the signal when the signal killed it).
kill_and_reap() {
	kill -"$2" "$1"
	wait_pid_exit "$1" 30
	KILLED_STATUS=0
	wait "$1" 2>/dev/null || KILLED_STATUS=$?
}

@test "resumption: tcpmapd killed by SIGSEGV under ulimit -c unlimited leaves no core file" {
	need_plain_core_pattern
	local cores=$BATS_TEST_TMPDIR/cores sig=SEGV
	mkdir "$cores"
	# the sanitizer's own SIGSEGV handler reports and exits instead of dying by the signal;
	# it leaves SIGABRT alone (handle_abort=0)
	[ "${TCPMAP_SAN:-0}" = 1 ] && sig=ABRT
	local signo
	signo=$(kill -l "$sig")
	# cd and the core limit only for the process the wrapper execs (same PID)
	# shellcheck disable=SC2016 # expanded by that sh
	local wrap=(sh -c 'cd "$0" && ulimit -c unlimited && exec "$@"' "$cores")
	# the control: a dumpable process under the same wrapper does leave a core there
	"${wrap[@]}" sleep 10 &
	local control=$!
	record_pid "$control"
	# the wrapper has set the limit once sleep runs in its place
	local i
	for ((i = 0; i < 50; i++)); do
		[[ "$(readlink "/proc/$control/exe")" == */sleep ]] && break
		sleep 0.1
	done
	kill_and_reap "$control" "$sig"
	[ "$KILLED_STATUS" -eq $((128 + signo)) ]
	local control_core
	control_core=$(find "$cores" -mindepth 1 -maxdepth 1 -name 'core*' -printf '%f %s\n')
	[ -n "$control_core" ] || {
		echo "the control (sleep) left no core in $cores: cores are not written here" >&2
		return 1
	}
	rm -f "$cores"/core*

	TCPMAPD_WRAP=("${wrap[@]}")
	start_with_tickets_used
	# what tcpmapd made of the unlimited core size it started under (asserted last: the
	# core itself is what counts)
	local core_limit
	core_limit=$(grep '^Max core file size' "/proc/$TCPMAPD_PID/limits")
	kill_and_reap "$TCPMAPD_PID" "$sig"
	echo "tcpmapd exit status $KILLED_STATUS" >&2
	[ "$KILLED_STATUS" -eq $((128 + signo)) ]
	run find "$cores" -mindepth 1 -maxdepth 1 -name 'core*'
	[ -z "$output" ] || {
		echo "tcpmapd left a core: $output" >&2
		return 1
	}
	[[ "$core_limit" =~ ^Max\ core\ file\ size\ +0\ +0\  ]]
	note "control: sleep left a core ($control_core); tcpmapd died by SIG$sig (status $KILLED_STATUS) and left none"
}

# gcore_of FILE PID [GDB-ARGS...]: a core of the live PID in FILE, as gcore(1) takes it.
gcore_of() {
	local file=$1 pid=$2
	shift 2
	timeout 20 gdb -nx -batch -p "$pid" "$@" -ex "gcore $file" \
		>"$BATS_TEST_TMPDIR/gdb.out" 2>&1 </dev/null 3>&- || {
		cat "$BATS_TEST_TMPDIR/gdb.out" >&2
		return 1
	}
	[ -f "$file" ]
}

@test "resumption: a gcore of a live tcpmapd holds its heap but no ticket key; the keys mapping is dd" {
	command -v gdb >/dev/null || skip "gdb not installed"
	# measured: gcore of the sanitizer build reads ASan's shadow for over 20 s (timed out)
	[ "${TCPMAP_SAN:-0}" = 1 ] &&
		skip "gcore of the ASan build reads its terabytes of shadow: too slow; the plain run tests this"
	start_with_tickets_used
	local keys=$RUN_DIR/tls-ticket-keys
	# the kernel leaves the keys out of any core: VmFlags of their mapping say dd. Found by
	# inode: the first process mapped the file under its private name before linking it
	local ino flags
	ino=$(stat -c %i "$keys")
	flags=$(awk -v ino="$ino" '/^[0-9a-f]+-[0-9a-f]+ / { m = ($5 == ino && /tls-ticket-keys/) }
		m && /^VmFlags:/ { print }' "/proc/$TCPMAPD_PID/smaps")
	echo "keys mapping (inode $ino): $flags" >&2
	[[ " $flags " == *" dd "* ]]
	# Every kind of mapping in the core, the keys' file-backed shared one too (the default
	# filter, 0x33, leaves it out anyway): only dd keeps them out. As root gdb attaches
	# although tcpmapd is not dumpable.
	echo 0x3b >"/proc/$TCPMAPD_PID/coredump_filter"
	local core=$BATS_TEST_TMPDIR/core
	gcore_of "$core" "$TCPMAPD_PID"
	pid_alive "$TCPMAPD_PID"
	[ "$(stat -c %s "$core")" -ge $((4 * MiB)) ]
	run python3 "$KEYS_PY" --core "$keys" "$core" my-context my-host-1
	echo "$output"
	[ "$status" -eq 0 ]
	note "gcore: $(echo "$output" | tr '\n' ';')"
	# the control: told to ignore dd, the same gcore holds every secret field, so the scan
	# above would have seen a copy
	rm "$core"
	gcore_of "$core" "$TCPMAPD_PID" -ex 'set dump-excluded-mappings on'
	run python3 "$KEYS_PY" --core-with-keys "$keys" "$core" my-context
	echo "$output"
	[ "$status" -eq 0 ]
	note "control, dd ignored: $(echo "$output" | tail -n 1)"
}
