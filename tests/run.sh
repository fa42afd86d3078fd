#!/bin/bash
# run.sh BUILD SAN [format|unit|bats|runner|fuzz]... — run every suite and add up one closing
# line: "N passed, N failed" and ", N skipped" when something was skipped. Unit tests
# (cmocka) and bats both speak TAP; each fuzz harness counts as one test that passes when its
# smoke run finds nothing; `runner` is the test of this script itself (tests/runner).
#
# A run that was cut off must never read as green: a suite that exits non-zero, runs fewer
# tests than its TAP plan (1..N) announced or is killed by its timeout adds a failure of its
# own. A missing tool is a skip that is printed and counted, never silence. The exit status
# is non-zero whenever anything failed.
set -u
BUILD=${1:?build dir}; SAN=${2:-0}; shift 2
SUITES=${*:-format unit bats runner fuzz}
# overridable so tests/runner can cut a run short and hide a tool
BATS_TIMEOUT=${TCPMAP_BATS_TIMEOUT:-1500}
UNIT_TIMEOUT=${TCPMAP_UNIT_TIMEOUT:-300}
BATS_JOBS=${TCPMAP_BATS_JOBS:-2} # bats files run at once; 1 runs them one after another
CLANG_FORMAT=${TCPMAP_CLANG_FORMAT:-clang-format}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2

export TCPMAP_ROOT=$ROOT
export TCPMAPD=$ROOT/$BUILD/tcpmapd
export TCPMAPCTL=$ROOT/$BUILD/tcpmapctl
export TCPMAP_SAN=$SAN
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:exitcode=86}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1:exitcode=87}
export LSAN_OPTIONS=${LSAN_OPTIONS:-exitcode=88}

passed=0; failed=0; skipped=0
# tests/runner points this elsewhere so its fake runs never overwrite the real logs
LOG=${TCPMAP_TEST_LOGS:-$ROOT/$BUILD/test-logs}; mkdir -p "$LOG"

count_tap() { # FILE: add the TAP "ok"/"not ok" lines of FILE to the totals; a skipped test
	# ("ok ... # skip") showed nothing, so it is counted apart, never as passed
	local p f k
	p=$(grep -E '^ok ' "$1" | grep -cvE '# (skip|SKIP)')
	k=$(grep -E '^ok ' "$1" | grep -cE '# (skip|SKIP)')
	f=$(grep -cE '^not ok ' "$1")
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + k))
}

fail_line() { # TEXT: one failure the TAP stream itself did not report
	echo "not ok - $1"; failed=$((failed + 1))
}

skip_line() { # TEXT: one skip, printed in TAP form and counted
	echo "ok - $1 # skip"; skipped=$((skipped + 1))
}

# check_tap_run NAME FILE STATUS TIMEOUT ELAPSED: what the "ok"/"not ok" lines of FILE cannot
# say. STATUS is the exit status of `timeout -k 10 TIMEOUT ...` around the suite: 124 is its
# timeout, 128+N a signal; 137 (KILL) is the timeout too when TERM was not enough, which
# only the ELAPSED seconds tell apart from a KILL sent by someone else.
check_tap_run() {
	local name=$1 file=$2 rc=$3 limit=$4 elapsed=$5 plan ran
	plan=$(grep -m1 -oE '^1\.\.[0-9]+' "$file" | cut -d. -f3)
	ran=$(grep -cE '^(ok|not ok) ' "$file")
	if [ "$rc" -eq 124 ] || { [ "$rc" -eq 137 ] && [ "$elapsed" -ge "$limit" ]; }; then
		fail_line "$name was killed after its timeout of $limit s ($ran of ${plan:-?} tests ran)"
	elif [ "$rc" -gt 128 ]; then
		fail_line "$name was killed by signal $((rc - 128)) ($ran of ${plan:-?} tests ran)"
	elif [ "$rc" -ne 0 ] && ! grep -qE '^not ok ' "$file"; then
		# a crash or sanitizer report after the TAP lines is a failure of its own
		fail_line "$name exited with status $rc"
	fi
	if [ -z "$plan" ]; then
		fail_line "$name printed no TAP plan (1..N)"
	elif [ "$ran" -lt "$plan" ]; then
		fail_line "$name ran $ran of the $plan tests its plan announced"
	fi
}

for suite in $SUITES; do
	case $suite in
	format)
		# one format, enforced (STYLE.md): the same check as `make format-check`
		if ! command -v "$CLANG_FORMAT" >/dev/null; then
			skip_line "format-check: $CLANG_FORMAT not installed"
		elif "$CLANG_FORMAT" --dry-run --Werror lib/*.[ch] bin/*.c tests/unit/*.c tests/fuzz/*.c >"$LOG/format.log" 2>&1; then
			echo "ok - format-check: lib, bin and tests are clang-formatted"; passed=$((passed + 1))
		else
			echo "not ok - format-check (see $LOG/format.log)"; head -20 "$LOG/format.log"
			failed=$((failed + 1))
		fi
		;;
	unit)
		n_units=0
		for t in "$BUILD"/tests/test-*; do
			[ -x "$t" ] || continue
			n=$(basename "$t"); out=$LOG/$n.tap; n_units=$((n_units + 1))
			start=$SECONDS
			CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$UNIT_TIMEOUT" "$t" > "$out" 2>&1; rc=$?
			cat "$out"
			count_tap "$out"
			check_tap_run "$n" "$out" "$rc" "$UNIT_TIMEOUT" $((SECONDS - start))
		done
		[ "$n_units" -gt 0 ] || skip_line "unit: no test binaries in $BUILD/tests (make unit builds them)"
		;;
	bats | runner)
		if ! command -v bats >/dev/null; then
			skip_line "$suite: bats not installed"
			continue
		fi
		dir=tests/bats; [ "$suite" = runner ] && dir=tests/runner
		out=$LOG/$suite.tap
		start=$SECONDS
		# Two files at a time when GNU parallel is there (bats needs it for --jobs): most
		# tests wait on sockets, timers and systemd rather than compute, so a second file
		# fills the idle core. Tests inside a file stay in order: they share its sandbox.
		# Every file keeps a port range and build directories of its own for this.
		jobs=()
		if [ "$suite" = bats ] && [ "$BATS_JOBS" -gt 1 ]; then
			if command -v parallel >/dev/null; then
				jobs=(--jobs "$BATS_JOBS" --no-parallelize-within-files)
			else
				echo "# bats: GNU parallel is not installed; the files run one at a time"
			fi
		fi
		# the ports the files have picked, so two never pick one (tests/lib/ports.bash)
		export TCPMAP_PORT_CLAIMS=$LOG/$suite-port-claims
		rm -rf "$TCPMAP_PORT_CLAIMS" && mkdir -p "$TCPMAP_PORT_CLAIMS"
		timeout -k 10 "$BATS_TIMEOUT" bats --tap --timing "${jobs[@]}" "$dir" 2>&1 | tee "$out"
		rc=${PIPESTATUS[0]}
		count_tap "$out"
		check_tap_run "$suite" "$out" "$rc" "$BATS_TIMEOUT" $((SECONDS - start))
		;;
	fuzz)
		# the harnesses are always built with ASan+UBSan: the SAN=1 run would repeat them
		if [ "$SAN" = 1 ]; then
			echo "# fuzz smoke: ran in the plain run (the harnesses are sanitized builds already)"
			continue
		fi
		n_fuzz=0
		for f in build-fuzz/fuzz-*; do
			[ -x "$f" ] || continue
			n_fuzz=$((n_fuzz + 1))
			n=$(basename "$f"); c=tests/fuzz/corpus/${n#fuzz-}; w=$(mktemp -d)
			[ -d "$c" ] && cp -r "$c"/. "$w"/ 2>/dev/null
			if timeout 120 "$f" -max_total_time="${FUZZ_SMOKE_SECONDS:-5}" -print_final_stats=1 -rss_limit_mb=1024 "$w" > "$LOG/$n.log" 2>&1; then
				echo "ok - fuzz smoke $n ($(grep -o 'stat::number_of_executed_units: [0-9]*' "$LOG/$n.log" | tail -1 | awk '{print $2}') runs)"
				passed=$((passed + 1))
			else
				echo "not ok - fuzz smoke $n (see $LOG/$n.log)"; tail -30 "$LOG/$n.log"
				failed=$((failed + 1))
			fi
			rm -rf "$w"
		done
		[ "$n_fuzz" -gt 0 ] || skip_line "fuzz smoke: no harness in build-fuzz (make fuzz-build, needs clang)"
		;;
	*) echo "run.sh: unknown suite $suite" >&2; exit 2 ;;
	esac
done

if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
