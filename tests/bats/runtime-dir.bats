#!/usr/bin/env bats
# runtime-dir.bats — tcpmapd refuses a breaker table another user could write: a runtime
# directory others can write, a table owned by someone else, or one hard-linked elsewhere.

load ../lib/common
load ../lib/runonce

setup() {
	common_setup
	[ "$(id -u)" = 0 ] || skip "needs root to give the table to another user"
	runonce_mapping
	RD=$BATS_TEST_TMPDIR/rt
	mkdir -p "$RD"
	chmod 0755 "$RD"
}

teardown() { common_teardown; }

@test "a runtime directory others can write is refused, sticky or not" {
	chmod 0777 "$RD"
	run_once "$RD"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"runtime directory $RD is not a directory only its owner can write"* ]]
	[ ! -e "$RD/breakers" ]
	# sticky stops others removing our table, not creating its name before us (issue 26)
	chmod 1777 "$RD"
	run_once "$RD"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"runtime directory $RD is not a directory only its owner can write"* ]]
	[ ! -e "$RD/breakers" ]
	chmod 0755 "$RD"
	run_once "$RD"
	[ "$status" -eq 0 ]
	[ -f "$RD/breakers" ]
}

@test "a breaker table owned by another user, or with a second hard link, is refused" {
	run_once "$RD"
	[ "$status" -eq 0 ]
	[ -f "$RD/breakers" ]
	chown nobody "$RD/breakers"
	run_once "$RD"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"cannot open the breaker table in $RD"*"Operation not permitted"* ]]
	chown root "$RD/breakers"
	run_once "$RD"
	[ "$status" -eq 0 ]
	ln "$RD/breakers" "$BATS_TEST_TMPDIR/second-name"
	run_once "$RD"
	echo "$output"
	[ "$status" -eq 1 ]
	[[ "$output" == *"Operation not permitted"* ]]
	note "refused: world-writable runtime dir, a table owned by nobody, a table with 2 links"
}

@test "run by hand as root, the runtime directory is 0700 and the table 0600 (issue 23, defect 9)" {
	local rd=$BATS_TEST_TMPDIR/fresh
	# umask 022, as a root shell has it: the modes must not depend on it
	(umask 022 && run_once "$rd" && [ "$status" -eq 0 ])
	[ "$(stat -c %a "$rd")" = 700 ]
	[ "$(stat -c %a "$rd/breakers")" = 600 ]
	note "runtime dir $(stat -c %a "$rd"), table $(stat -c %a "$rd/breakers")"
}
