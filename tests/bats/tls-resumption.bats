#!/usr/bin/env bats
# tls-resumption.bats — issue 19: a session ticket one tcpmapd issued resumes in another,
# because every tcpmap process on the host seals tickets with the keys in
# RUNTIME_DIR/tls-ticket-keys: a tcpmapd started after the first one stopped, a forked
# relay (per_connection_process) and an Accept=yes process per connection. A ticket whose
# key is older than the window (the test-only clock offset) gets a full handshake, and no
# log ever holds a key's bytes.
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
