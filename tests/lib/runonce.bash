# runonce.bash — tcpmapd started once on a runtime directory, only to see whether it accepts
# it: the files that test the runtime directory's and the table's trust checks share it.
# Needs common.bash (record_pid, pid_alive, port_listening, stop_pid, write_mapping); never
# leaves the tcpmapd it starts running.

# runonce_mapping: for a test's setup: $CONF holds one mapping m from $PORT to the upstream
# port $UP (a test starts an upstream there only if it needs one).
runonce_mapping() {
	PORT=$(pick_port)
	UP=$(pick_port)
	CONF=$BATS_TEST_TMPDIR/tcpmap.yaml
	write_mapping "$CONF" m "$PORT" "127.0.0.1:$UP"
}

# run_once DIR: tcpmapd on DIR, stopped as soon as it listens; status is 0 when it came up,
# else its exit status; output is its log.
run_once() {
	"$TCPMAPD" --config "$CONF" --runtime-dir "$1" --log-target stderr --workers 1 \
		>"$BATS_TEST_TMPDIR/out.log" 2>&1 3>&- &
	local pid=$!
	record_pid "$pid"
	local i
	for ((i = 0; i < 30; i++)); do
		pid_alive "$pid" || break
		port_listening "$PORT" && break
		sleep 0.1
	done
	if pid_alive "$pid"; then
		stop_pid "$pid"
		status=0
	else
		status=0
		wait "$pid" || status=$?
	fi
	output=$(cat "$BATS_TEST_TMPDIR/out.log")
}
