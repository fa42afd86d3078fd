#!/usr/bin/env bats
# runner.bats — tests/run.sh must never report green for a run that was cut off (issue 25):
# a bats that is killed by the timeout, one that exits non-zero, one that runs fewer tests
# than its plan announced each make run.sh print a failure and exit non-zero; a missing tool
# is a counted skip. Each case puts a fake `bats` first on PATH and runs only run.sh's bats
# suite with its logs in this test's own directory; nothing here runs the real suites.

ROOT=$(cd "$BATS_TEST_DIRNAME/../.." && pwd)
RUN_SH=$ROOT/tests/run.sh

setup() {
	FAKE=$BATS_TEST_TMPDIR/fake
	mkdir -p "$FAKE"
}

# fake_bats BODY: a `bats` executable whose script is BODY (it ignores its arguments)
fake_bats() {
	printf '#!/bin/bash\n%s\n' "$1" >"$FAKE/bats"
	chmod +x "$FAKE/bats"
}

# run_runner SUITE... : run.sh on the fake bats, its output in $output, its status in $status
run_runner() {
	run env PATH="$FAKE:$PATH" TCPMAP_TEST_LOGS="$BATS_TEST_TMPDIR/logs" \
		TCPMAP_BATS_TIMEOUT="${BATS_TIMEOUT_FOR_TEST:-60}" "$RUN_SH" build 0 "$@"
	echo "$output"
	last=${lines[${#lines[@]} - 1]}
}

@test "a bats run that completes its plan with every test ok passes" {
	fake_bats 'printf "1..2\nok 1 one\nok 2 two\n"; exit 0'
	run_runner bats
	[ "$status" -eq 0 ]
	[ "$last" = "2 passed, 0 failed" ]
}

@test "a bats run killed by the timeout fails the run" {
	# two of three tests, then hangs: the timeout must cut it off and count that
	fake_bats 'printf "1..3\nok 1 one\nok 2 two\n"; exec sleep 60'
	BATS_TIMEOUT_FOR_TEST=2
	SECONDS=0
	run_runner bats
	[ "$SECONDS" -lt 30 ]
	[ "$status" -ne 0 ]
	[[ "$output" == *"not ok - bats was killed after its timeout of 2 s"* ]]
	[[ "$last" =~ ^2\ passed,\ [1-9][0-9]*\ failed ]]
}

@test "a bats run killed by a signal fails the run" {
	fake_bats 'printf "1..1\nok 1 one\n"; kill -KILL $$'
	run_runner bats
	[ "$status" -ne 0 ]
	[[ "$output" == *"not ok - bats was killed by signal 9"* ]]
	[[ "$last" =~ ^1\ passed,\ [1-9][0-9]*\ failed ]]
}

@test "a bats run that exits non-zero with every test ok fails the run" {
	fake_bats 'printf "1..1\nok 1 one\n"; exit 1'
	run_runner bats
	[ "$status" -ne 0 ]
	[[ "$output" == *"not ok - bats exited with status 1"* ]]
	[ "$last" = "1 passed, 1 failed" ]
}

@test "a bats run that runs fewer tests than its plan fails the run" {
	fake_bats 'printf "1..3\nok 1 one\nok 2 two\n"; exit 0'
	run_runner bats
	[ "$status" -ne 0 ]
	[[ "$output" == *"not ok - bats ran 2 of the 3 tests its plan announced"* ]]
	[ "$last" = "2 passed, 1 failed" ]
}

@test "a bats run without a plan fails the run" {
	fake_bats 'printf "ok 1 one\n"; exit 0'
	run_runner bats
	[ "$status" -ne 0 ]
	[[ "$output" == *"not ok - bats printed no TAP plan"* ]]
	[ "$last" = "1 passed, 1 failed" ]
}

@test "a failing test fails the run and is counted once" {
	fake_bats 'printf "1..2\nok 1 one\nnot ok 2 two\n"; exit 1'
	run_runner bats
	[ "$status" -ne 0 ]
	[ "$last" = "1 passed, 1 failed" ]
}

@test "a missing clang-format is a printed and counted skip" {
	fake_bats 'printf "1..1\nok 1 one\n"; exit 0'
	TCPMAP_CLANG_FORMAT=clang-format-not-installed-here run_runner format bats
	[ "$status" -eq 0 ]
	[[ "$output" == *"ok - format-check: clang-format-not-installed-here not installed # skip"* ]]
	[ "$last" = "1 passed, 0 failed, 1 skipped" ]
}

@test "skipped bats tests are counted as skipped, never as passed" {
	fake_bats 'printf "1..2\nok 1 one\nok 2 two # skip no haproxy\n"; exit 0'
	run_runner bats
	[ "$status" -eq 0 ]
	[ "$last" = "1 passed, 0 failed, 1 skipped" ]
}
