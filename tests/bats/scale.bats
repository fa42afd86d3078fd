#!/usr/bin/env bats
# scale.bats — no fixed ceilings: a generated config of 10 000 mappings in 2 000 groups over
# 1 000 listeners and 10 000 upstreams runs, relays through its first, a middle and its last
# listener, and is listed whole by `tcpmapctl status`; a reload adding 5 000 mappings grows
# the shared breaker table while 20 checksummed streams run through it intact.
#
# Most upstreams do not exist (127.1.X.Y:9): only routing and the table are at stake. The
# relaying listeners send their catch-all group to a real echo upstream (weight 100).

load ../lib/common

STREAM_PY=$TCPMAP_ROOT/tests/lib/stream.py
GENSCALE_PY=$TCPMAP_ROOT/tests/lib/genscale.py

setup() {
	common_setup
	# 1 000 listeners and 20 streams: the soft open-files limit up to the hard one
	ulimit -n "$(ulimit -Hn)"
}
teardown() { common_teardown; }

# start_scale_tcpmapd CONFIG: like start_tcpmapd, but waits for the ready line rather than
# probing 1 000 ports one by one (bounded: 30 s).
start_scale_tcpmapd() {
	TCPMAPD_LOG=$BATS_TEST_TMPDIR/tcpmapd-scale.log
	"$TCPMAPD" --config "$1" --runtime-dir "$RUN_DIR" --log-target stderr --workers 2 \
		</dev/null >"$TCPMAPD_LOG" 2>&1 3>&- &
	TCPMAPD_PID=$!
	record_pid "$TCPMAPD_PID"
	local i
	for ((i = 0; i < 300; i++)); do
		[ "$(log_count 'event=ready')" -ge 1 ] && return 0
		pid_alive "$TCPMAPD_PID" || break
		sleep 0.1
	done
	echo "tcpmapd did not become ready:" >&2
	tail -20 "$TCPMAPD_LOG" >&2
	return 1
}

# relays PORT: one checksummed stream through PORT, echoed back intact.
relays() {
	run python3 "$STREAM_PY" --port "$1" --connections 1 --duration 0.3 --max-seconds 20 3>&-
	[ "$status" -eq 0 ] && [ "${lines[-1]}" = OK ] || {
		echo "no relay through port $1: $output" >&2
		return 1
	}
}

@test "10 000 mappings over 1 000 listeners run; a reload to 15 000 grows the table under 20 streams" {
	# scale, not memory safety: under ASan the reload of 15 000 outlasts this test's bounds,
	# and the growth path itself runs under ASan in test-breaker and the test below
	[ "${TCPMAP_SAN:-0}" != 1 ] || skip "the plain run measures scale; ASan multiplies every step"
	local conf=$BATS_TEST_TMPDIR/scale.yaml ports=$BATS_TEST_TMPDIR/listener-ports
	local up=() p i
	for i in 0 1 2; do
		p=$(pick_port)
		start_upstream 127.0.0.1 "$p" echo
		up+=("$p")
	done
	local relay=(--relay "0=127.0.0.1:${up[0]}" --relay "500=127.0.0.1:${up[1]}"
		--relay "999=127.0.0.1:${up[2]}")
	python3 "$GENSCALE_PY" "$conf" --ports-file "$ports" "${relay[@]}"
	local lport=()
	mapfile -t lport <"$ports"
	[ "${#lport[@]}" -eq 1000 ]

	local t0 t1
	t0=$(date +%s%N)
	run "$TCPMAPCTL" check --config "$conf"
	t1=$(date +%s%N)
	[ "$status" -eq 0 ]
	[[ "$output" == *"10000 mappings, 1000 listeners"* ]]
	note "tcpmapctl check, 10 000 mappings: $(((t1 - t0) / 1000000)) ms"

	t0=$(date +%s%N)
	start_scale_tcpmapd "$conf"
	t1=$(date +%s%N)
	note "tcpmapd ready with 10 000 mappings: $(((t1 - t0) / 1000000)) ms," \
		"RSS $(awk '/VmRSS/ {print $2}' "/proc/$TCPMAPD_PID/status") KiB"
	grep -q "ready: 1000 sockets" "$TCPMAPD_LOG"

	relays "${lport[0]}"
	relays "${lport[500]}"
	relays "${lport[999]}"

	# every cluster listed: the JSON's raw keys, one per cluster
	run "$TCPMAPCTL" status --json --runtime-dir "$RUN_DIR"
	[ "$status" -eq 0 ]
	[ "$(grep -o '"key":"[^"]*|plain|' <<<"$output" | wc -l)" -eq 10000 ]

	# 20 long streams over the three relaying listeners, then the reload under them
	local d=$BATS_TEST_TMPDIR spid=() n
	for i in 0 1 2; do
		n=$((i == 2 ? 6 : 7))
		p=${lport[$((i == 0 ? 0 : i == 1 ? 500 : 999))]}
		python3 "$STREAM_PY" --port "$p" --connections "$n" --rate 32768 \
			--ready-file "$d/stream$i.ready" --stop-file "$d/stream.stop" \
			--max-seconds 50 >"$d/stream$i.out" 2>&1 3>&- &
		spid+=($!)
		record_pid "$!"
	done
	for i in 0 1 2; do
		for ((n = 0; n < 100; n++)); do
			[ -e "$d/stream$i.ready" ] && break
			sleep 0.1
		done
		[ -e "$d/stream$i.ready" ]
	done

	local inode_before
	inode_before=$(stat -c %i "$RUN_DIR/breakers")
	python3 "$GENSCALE_PY" "$conf.new" --ports-file "$ports" "${relay[@]}" --extra 5000
	mv "$conf.new" "$conf"
	t0=$(date +%s%N)
	kill -HUP "$TCPMAPD_PID"
	# a new connection is accepted and relayed while the reload runs
	relays "${lport[500]}"
	t1=$(date +%s%N)
	wait_for_log 'config_generation=2 mappings=15000'
	note "reload to 15 000 mappings: relay during it done after $(((t1 - t0) / 1000000)) ms," \
		"RSS $(awk '/VmRSS/ {print $2}' "/proc/$TCPMAPD_PID/status") KiB"
	[ "$(stat -c %i "$RUN_DIR/breakers")" != "$inode_before" ] # grown: a new table

	relays "${lport[0]}"
	relays "${lport[999]}"
	run "$TCPMAPCTL" status --json --runtime-dir "$RUN_DIR"
	[ "$status" -eq 0 ]
	[ "$(grep -o '"key":"[^"]*|plain|' <<<"$output" | wc -l)" -eq 15000 ]

	sleep 1
	touch "$d/stream.stop"
	local intact=0
	for i in 0 1 2; do
		wait "${spid[$i]}" || {
			cat "$d/stream$i.out"
			false
		}
		[ "$(tail -1 "$d/stream$i.out")" = OK ]
		intact=$((intact + $(grep -c 'intact=1' "$d/stream$i.out")))
	done
	[ "$intact" -eq 20 ]
	pid_alive "$TCPMAPD_PID"
}

# A runtime directory with room for a new table but not for it to grow: the table cannot
# take the config's 1 200 clusters. tcpmapd must refuse the config, naming the cluster that
# found no room from memory it still owns (it once logged it after freeing the config: a
# use-after-free that the SAN=1 run of this test reports), and never die of a SIGBUS on a
# page the full tmpfs could not give.
@test "a runtime directory too small for the table: the config is refused cleanly, naming the cluster" {
	command -v unshare >/dev/null || skip "needs unshare (util-linux)"
	local cfg=$BATS_TEST_TMPDIR/many.yaml dir=$BATS_TEST_TMPDIR/small-run i
	mkdir -p "$dir"
	for ((i = 0; i < 1200; i++)); do
		printf -- '---\napiVersion: getambassador.io/v2\nkind: TCPMapping\nmetadata: {name: m%d}\nspec: {port: 23456, address: 127.0.0.1, host: h%d.example.com, tls_passthrough: true, service: "127.0.%d.%d:%d"}\n' \
			"$i" "$i" $((i / 250)) $((i % 250 + 1)) $((1000 + i))
	done >"$cfg"
	run "$TCPMAPCTL" check "$cfg"
	[ "$status" -eq 0 ]
	# its own mount namespace: the 7 MiB tmpfs (0700, as a runtime directory must be) is seen
	# by this tcpmapd alone
	run timeout 60 unshare -m --propagation private sh -c \
		'mount -t tmpfs -o size=7m,mode=0700 tmpfs "$1" && exec "$2" --config "$3" --runtime-dir "$1" --log-target stderr --workers 1' \
		sh "$dir" "$TCPMAPD" "$cfg"
	echo "$output" | grep -v 'level=warning' | tail -20
	[ "$status" -eq 1 ]
	[[ "$output" == *'breaker table: no room for cluster 127.0.'*'|plain|'*'No space left on device'* ]]
	[[ "$output" == *"no valid configuration"* ]]
	[[ "$output" != *"AddressSanitizer"* ]]
}
