#!/bin/bash
# run.sh BUILD SAN [unit|bats|fuzz]... — run every suite and add up one closing line:
# "N passed, N failed". Unit tests (cmocka) and bats both speak TAP; each fuzz harness
# counts as one test that passes when its smoke run finds nothing.
set -u
BUILD=${1:?build dir}; SAN=${2:-0}; shift 2
SUITES=${*:-format unit bats fuzz}
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
LOG=$ROOT/$BUILD/test-logs; mkdir -p "$LOG"

count_tap() { # FILE: add the TAP "ok"/"not ok" lines of FILE to the totals; a skipped test
	# ("ok ... # skip") showed nothing, so it is counted apart, never as passed
	local p f k
	p=$(grep -E '^ok ' "$1" | grep -cvE '# (skip|SKIP)')
	k=$(grep -E '^ok ' "$1" | grep -cE '# (skip|SKIP)')
	f=$(grep -cE '^not ok ' "$1")
	passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + k))
}

for suite in $SUITES; do
	case $suite in
	format)
		# one format, enforced (STYLE.md): the same check as `make format-check`
		if ! command -v clang-format >/dev/null; then
			echo "# format-check skipped: clang-format not installed"
		elif clang-format --dry-run --Werror lib/*.[ch] bin/*.c tests/unit/*.c tests/fuzz/*.c >"$LOG/format.log" 2>&1; then
			echo "ok - format-check: lib, bin and tests are clang-formatted"; passed=$((passed + 1))
		else
			echo "not ok - format-check (see $LOG/format.log)"; head -20 "$LOG/format.log"
			failed=$((failed + 1))
		fi
		;;
	unit)
		for t in "$BUILD"/tests/test-*; do
			[ -x "$t" ] || continue
			n=$(basename "$t"); out=$LOG/$n.tap
			CMOCKA_MESSAGE_OUTPUT=TAP timeout 300 "$t" > "$out" 2>&1; rc=$?
			cat "$out"
			count_tap "$out"
			# a crash or sanitizer report after the TAP lines is a failure of its own
			if [ $rc -ne 0 ] && ! grep -q '^not ok ' "$out"; then
				echo "not ok - $n exited with status $rc"; failed=$((failed + 1))
			fi
		done
		;;
	bats)
		out=$LOG/bats.tap
		timeout 1500 bats --tap tests/bats 2>&1 | tee "$out"
		count_tap "$out"
		;;
	fuzz)
		# the harnesses are always built with ASan+UBSan: the SAN=1 run would repeat them
		if [ "$SAN" = 1 ]; then
			echo "# fuzz smoke: ran in the plain run (the harnesses are sanitized builds already)"
			continue
		fi
		for f in build-fuzz/fuzz-*; do
			[ -x "$f" ] || continue
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
