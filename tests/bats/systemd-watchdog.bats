#!/usr/bin/env bats
# systemd-watchdog.bats — issue 18, WatchdogSec= in the private systemd of tests/lib/sandbox.sh:
# the main loop pings systemd only while every worker's loop makes progress. A worker that
# stops (the test-only hook TCPMAP_TEST_STALL_WORKER, tcpmapd(8)) is named in the journal,
# the pings stop, systemd restarts the service with result "watchdog", and what the other
# workers spliced is handed over through the fd store as on a restart, so a stream on them
# goes on with no byte lost. A stream on the stuck worker itself ends with the process.
#
# It never boots systemd any other way than through tests/lib/sandbox.sh, and teardown_file
# always powers the sandbox off. Every process it starts on the host is stopped by its PID.

load ../lib/systemd

SD_PORT_MIN=2000
SD_PORT_SPAN=500
STALL_FILE=/run/tcpmap/stall-worker

setup_file() {
	sd_setup_installed
	[ -z "${SD_SKIP:-}" ] || return 0
	export P SVC
	P=$(pick_port "$UP")
	SVC=tcpmap@$P.service
	sb sh -c 'umask 022; mkdir -p /etc/tcpmap; cat >/etc/tcpmap/tcpmap.yaml' <<-EOF
		---
		apiVersion: getambassador.io/v3alpha1
		kind: TCPMapping
		metadata:
		  name: watched
		spec:
		  port: $P
		  address: 127.0.0.1
		  service: 127.0.0.1:$UP
	EOF
	local exec
	exec=$(sb sh -c 'command -v tcpmapd')
	sb sh -c "mkdir -p '/etc/systemd/system/tcpmap@$P.socket.d' '/etc/systemd/system/$SVC.d' &&
		printf '[Socket]\nListenStream=\nListenStream=127.0.0.1:$P\n' >'/etc/systemd/system/tcpmap@$P.socket.d/loopback.conf' &&
		printf '[Service]\nWatchdogSec=2s\nEnvironment=TCPMAP_TEST_STALL_WORKER=$STALL_FILE\nExecStart=\nExecStart=$exec --config /etc/tcpmap --workers 2\n' >'/etc/systemd/system/$SVC.d/watchdog.conf'"
	sb systemctl daemon-reload
}

setup() {
	sd_skip_unavailable
	sb systemctl reset-failed "$SVC" "tcpmap@$P.socket" 2>/dev/null || true
	sb rm -f "$STALL_FILE"
	sb systemctl start "tcpmap@$P.socket" "$SVC"
}

teardown() { sd_stop_test_pids; }

teardown_file() {
	sd_stop
	sd_kill_recorded
}

# unit_messages CURSOR: "PID MESSAGE" of every journal entry of $SVC after CURSOR, systemd's
# own about the unit included; tcpmapd's structured fields follow as KEY=VALUE.
unit_messages() {
	journal_after "$1" | python3 -c '
import json, sys
unit = sys.argv[1]
for line in sys.stdin:
    e = json.loads(line)
    if unit not in (e.get("_SYSTEMD_UNIT"), e.get("UNIT")):
        continue
    extra = " ".join("%s=%s" % (k, v) for k, v in sorted(e.items()) if k.startswith("TCPMAP_"))
    print(e.get("_PID"), e.get("MESSAGE"), extra)
' "$SVC"
}

# stall_and_wait_restart WHICH: write WHICH ("idle" or "busy") to the hook's file, then wait
# (bounded, 20 s) for a new main process. Sets OLD, NEW, CURSOR and RESTART_MS.
stall_and_wait_restart() {
	local t0 pid
	OLD=$(main_pid "$SVC")
	CURSOR=$(journal_cursor)
	t0=$(date +%s%N)
	sb sh -c "echo $1 >$STALL_FILE"
	for _ in $(seq 200); do
		pid=$(main_pid "$SVC")
		if [ "$pid" != 0 ] && [ "$pid" != "$OLD" ] && [ "$(sb systemctl is-active "$SVC")" = active ]; then
			NEW=$pid
			RESTART_MS=$((($(date +%s%N) - t0) / 1000000))
			return 0
		fi
		sleep 0.1
	done
	echo "$SVC: no new main process 20 s after the stall (MainPID=$pid, was $OLD)" >&2
	unit_messages "$CURSOR" >&2
	return 1
}

# the journal's account of the stall: the stuck worker, the watchdog's verdict, the hand-over
check_watchdog_journal() {
	run unit_messages "$CURSOR"
	echo "$output"
	STUCK_LINE=$(grep -E "^$OLD worker [0-9]+ made no progress for [0-9]+ ms" <<<"$output")
	[ -n "$STUCK_LINE" ]
	[[ "$STUCK_LINE" == *TCPMAP_EVENT=worker_stuck* ]]
	grep -q "TCPMAP_TEST_STALL_WORKER: worker [0-9]* ($1 connections) stops here" <<<"$output"
	grep -q 'Watchdog timeout' <<<"$output"
	grep -q "Failed with result 'watchdog'" <<<"$output"
}

@test "watchdog: a stuck worker stops the pings; systemd restarts with result watchdog and the other worker's stream is handed over intact" {
	start_stream wd --port "$P" --connections 1 --rate 262144 --max-seconds 120
	sleep 1
	stall_and_wait_restart idle
	check_watchdog_journal without
	local worker stuck
	worker=$(sed -nE 's/.*TCPMAP_WORKER=([0-9]+).*/\1/p' <<<"$STUCK_LINE")
	stuck=$(sed -nE 's/.*TCPMAP_STUCK_MS=([0-9]+).*/\1/p' <<<"$STUCK_LINE")
	# more than half of WatchdogSec=2s, and not much more (the check runs every 0.5 s)
	[ "$stuck" -gt 1000 ] && [ "$stuck" -lt 2000 ]
	# the healthy worker handed the stream over, and the new process adopted it
	wait_unit_events "$SVC" "$OLD" handover "" 1
	wait_unit_events "$SVC" "$NEW" adopt "" 1
	mark_stream wd
	sleep 1
	finish_stream_ok wd
	local line
	line=$(grep '^conn=0 ' <<<"$output")
	[ "$(field "$line" intact)" = 1 ]
	[ "$(field "$line" recv_after_mark)" -gt 0 ]
	# and a new connection is served by the new process
	relay_roundtrip "$P" 100000
	echo "# worker $worker stuck ${stuck} ms when named; stall to new main process $NEW: ${RESTART_MS} ms; stream $(field "$line" sent_bytes) bytes sent, $(field "$line" recv_bytes) back intact, $(field "$line" recv_after_mark) after the restart" >&3
}

@test "watchdog: a stream on the stuck worker itself ends with the killed process; new connections work after" {
	start_stream busy --port "$P" --connections 1 --rate 262144 --max-seconds 120 --allow-close
	sleep 1
	stall_and_wait_restart busy
	check_watchdog_journal with
	run finish_stream busy 200
	echo "$output"
	local line
	line=$(grep '^conn=0 ' <<<"$output")
	# nobody could hand it over: the stuck thread holds it, and the kill closes it
	[[ "$(field "$line" closed_by)" =~ ^(eof|reset)$ ]]
	[ "$(unit_event_count "$SVC" "$OLD" handover)" -eq 0 ]
	relay_roundtrip "$P" 100000
	echo "# stream on the stuck worker: closed_by=$(field "$line" closed_by) after $(field "$line" recv_bytes) bytes; restart in ${RESTART_MS} ms; a new connection works" >&3
}
