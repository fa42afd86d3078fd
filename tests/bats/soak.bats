#!/usr/bin/env bats
# soak.bats — issue 18's soak for 60 s as part of `make check`: everything at once (streams,
# request/response, TLS termination, origination, passthrough, PROXY, per-connection relays)
# under the private systemd of tests/lib/sandbox.sh, with a seeded fault every 6 s. The soak
# itself is tests/soak/soak.sh (`make soak` runs it for an hour); this file only runs it
# short and shows its summary. The seed is printed, so a failure can be run again with
# SOAK_SEED=N.
#
# soak.sh powers its sandbox off and stops its processes by PID on every exit; teardown_file
# checks that nothing of it is left.

load ../lib/systemd

setup_file() {
	sd_require || return 0
	sd_choose_build
}

setup() { sd_skip_unavailable; }

teardown_file() {
	local leftover=0
	# soak.sh's own trap powers the sandbox off; a second stop is harmless
	"$SANDBOX" stop "$BATS_FILE_TMPDIR/soak/tmp/sandbox" 2>/dev/null || true
	[ ! -e "$BATS_FILE_TMPDIR/soak/tmp/sandbox" ] || { echo "sandbox state left behind" >&2; leftover=1; }
	return "$leftover"
}

@test "soak: 60 s of every kind of connection and a seeded fault every 6 s; nothing lost, nothing grows" {
	local out=$BATS_FILE_TMPDIR/soak
	run timeout -k 10 150 env SOAK_SECONDS=60 SOAK_OUT="$out" "$ROOT/tests/soak/soak.sh" "$(basename "$SB_BUILD")"
	echo "$output"
	[ "$status" -ne 77 ] || skip "soak.sh: ${lines[-1]}"
	[ "$status" -eq 0 ]
	[ "${lines[-1]}" = OK ]
	# the run did inject faults and moved every kind of connection
	grep -q '^faults: .*([1-9][0-9]* in all)$' "$out/summary.txt"
	for kind in stream rr term orig pass proxy flap inetd; do
		grep -qE "^$kind +[1-9]" "$out/summary.txt"
	done
	[ -s "$out/samples.tsv" ]
}
