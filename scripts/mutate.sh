#!/bin/bash
# mutate.sh [N...] — mutation check (issue 25): apply each mutant of tests/mutate/mutants.list
# (or only mutants number N..., counted from 1 in list order) to a scratch copy of the tree,
# rebuild, and run the tests the list names for it. Prints a table: caught (a test failed),
# SURVIVED (every test passed: the suite misses that bug), STALE (its original text is not
# in the file exactly once: lib/ changed, re-target it) or NOBUILD (the mutant does not
# compile: rewrite it). Exits non-zero unless every mutant run was caught.
#
# It never touches this checkout: the scratch copy is a `cp` of the tracked files (and of
# BUILD, so only what a mutant changes is rebuilt) in a temporary directory, removed at the
# end. Before the mutants it runs their tests once unmutated, since a test that fails anyway
# would "catch" everything (MUTATE_NO_BASELINE=1 skips that). Slow: not part of `make check`.
#
# Environment: MUTANTS_LIST (default tests/mutate/mutants.list), BUILD (default build),
# MUTATE_KEEP=1 keeps the scratch directory, MUTATE_TIMEOUT seconds per test (default 900).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT" || exit 2
LIST=${MUTANTS_LIST:-$ROOT/tests/mutate/mutants.list}
BUILD=${BUILD:-build}
TEST_TIMEOUT=${MUTATE_TIMEOUT:-900}
[ -r "$LIST" ] || { echo "mutate.sh: no list at $LIST" >&2; exit 2; }

# The list's mutants, one per line, as FILE<TAB>ORIGINAL<TAB>REPLACEMENT<TAB>TESTS with the
# escapes of the list decoded and then re-encoded as Python string literals (repr), so that
# newlines and tabs survive the trip through bash.
parse_list() {
	python3 - "$LIST" <<'EOF'
import sys
def fields(line):
    out, cur, i = [], "", 0
    while i < len(line):
        c = line[i]
        if c == "\\" and i + 1 < len(line):
            n = line[i + 1]
            cur += {"n": "\n", "t": "\t", "|": "|", "\\": "\\"}.get(n, "\\" + n)
            i += 2
            continue
        if c == "|":
            out.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    out.append(cur)
    return out
for no, line in enumerate(open(sys.argv[1]), 1):
    line = line.rstrip("\n")
    if not line.strip() or line.lstrip().startswith("#"):
        continue
    f = fields(line)
    if len(f) != 4 or not f[3].strip():
        sys.exit(f"{sys.argv[1]}:{no}: want FILE|ORIGINAL|REPLACEMENT|TESTS, got {len(f)} fields")
    print("\t".join([f[0], repr(f[1]), repr(f[2]), f[3].strip(), str(no)]))
EOF
}

# apply SCRATCH FILE ORIGINAL_REPR REPLACEMENT_REPR: exit 0 applied, 3 stale (ORIGINAL not
# there exactly once; the count is printed).
apply_mutant() {
	python3 - "$@" <<'EOF'
import ast, sys
scratch, path, orig, repl = sys.argv[1], sys.argv[2], ast.literal_eval(sys.argv[3]), ast.literal_eval(sys.argv[4])
text = open(f"{scratch}/{path}").read()
n = text.count(orig)
if n != 1:
    print(n)
    sys.exit(3)
open(f"{scratch}/{path}", "w").write(text.replace(orig, repl))
EOF
}

mapfile -t MUTANTS < <(parse_list) || exit 2
[ "${#MUTANTS[@]}" -gt 0 ] || { echo "mutate.sh: $LIST lists no mutant" >&2; exit 2; }
if [ $# -gt 0 ]; then
	SELECTED=("$@")
else
	mapfile -t SELECTED < <(seq "${#MUTANTS[@]}")
fi
for n in "${SELECTED[@]}"; do
	if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt "${#MUTANTS[@]}" ]; then
		echo "mutate.sh: no mutant $n (the list has ${#MUTANTS[@]})" >&2
		exit 2
	fi
done

SCRATCH=$(mktemp -d /tmp/tcpmap-mutate.XXXXXX)
cleanup() { [ "${MUTATE_KEEP:-0}" = 1 ] && echo "scratch kept: $SCRATCH" || rm -rf "$SCRATCH"; }
trap cleanup EXIT
# tracked files as they are now (uncommitted edits included), times kept so make rebuilds
# only what a mutant touches
git ls-files -z | tar --null -T - -cf - 2>/dev/null | tar -xf - -C "$SCRATCH" || exit 2
[ -d "$BUILD" ] && cp -a "$BUILD" "$SCRATCH/"
LOGDIR=$SCRATCH/mutate-logs
mkdir -p "$LOGDIR"

# build_for TESTS: the binaries, and the unit test binaries TESTS names.
build_for() {
	local t targets=(all)
	for t in $1; do
		case $t in unit:*) targets+=("$BUILD/tests/${t#unit:}") ;; esac
	done
	make -C "$SCRATCH" -s -j2 BUILD="$BUILD" "${targets[@]}"
}

# run_test SPEC LOG: 0 when the test passed on the scratch build.
run_test() {
	local spec=$1 log=$2 file filter
	case $spec in
	unit:*)
		CMOCKA_MESSAGE_OUTPUT=TAP timeout -k 10 "$TEST_TIMEOUT" \
			"$SCRATCH/$BUILD/tests/${spec#unit:}" >"$log" 2>&1
		;;
	bats:*)
		file=${spec#bats:}
		filter=
		if [[ "$file" == *:* ]]; then
			filter=${file#*:}
			file=${file%%:*}
		fi
		(
			cd "$SCRATCH" || exit 2
			export TCPMAP_ROOT=$SCRATCH TCPMAPD=$SCRATCH/$BUILD/tcpmapd
			export TCPMAPCTL=$SCRATCH/$BUILD/tcpmapctl TCPMAP_SAN=0
			timeout -k 10 "$TEST_TIMEOUT" bats --tap ${filter:+-f "$filter"} "tests/bats/$file.bats"
		) >"$log" 2>&1
		;;
	*)
		echo "unknown test kind: $spec" >"$log"
		return 2
		;;
	esac
}

# ---- the baseline: every test named, on the unmutated scratch build ----------------------
if [ "${MUTATE_NO_BASELINE:-0}" != 1 ]; then
	declare -A seen=()
	all_tests=
	for n in "${SELECTED[@]}"; do
		IFS=$'\t' read -r _ _ _ tests _ <<<"${MUTANTS[n - 1]}"
		for t in $tests; do
			[ -n "${seen[$t]:-}" ] && continue
			seen[$t]=1
			all_tests="$all_tests $t"
		done
	done
	echo "baseline: building and running$all_tests unmutated"
	build_for "$all_tests" >"$LOGDIR/baseline-build.log" 2>&1 || {
		echo "mutate.sh: the unmutated tree does not build (see $LOGDIR/baseline-build.log)" >&2
		MUTATE_KEEP=1
		exit 2
	}
	for t in $all_tests; do
		if ! run_test "$t" "$LOGDIR/baseline.log"; then
			echo "mutate.sh: $t fails without any mutant; fix that first:" >&2
			tail -30 "$LOGDIR/baseline.log" >&2
			exit 2
		fi
	done
fi

# ---- the mutants --------------------------------------------------------------------------
printf '%-4s %-9s %-16s %-6s %s\n' "#" result file line "tests (the one that caught it marked *)"
caught=0 survived=0 stale=0 nobuild=0
for n in "${SELECTED[@]}"; do
	IFS=$'\t' read -r file orig repl tests lineno <<<"${MUTANTS[n - 1]}"
	log=$LOGDIR/mutant-$n.log
	: >"$log"
	cp "$ROOT/$file" "$SCRATCH/$file" 2>/dev/null || {
		printf '%-4s %-9s %-16s %-6s %s\n' "$n" STALE "$file" "$lineno" "no such file: re-target this mutant"
		stale=$((stale + 1))
		continue
	}
	count=$(apply_mutant "$SCRATCH" "$file" "$orig" "$repl")
	case $? in
	0) ;;
	3)
		printf '%-4s %-9s %-16s %-6s %s\n' "$n" STALE "$file" "$lineno" \
			"original text found $count times, wanted once: re-target this mutant"
		stale=$((stale + 1))
		continue
		;;
	*)
		echo "mutate.sh: could not apply mutant $n" >&2
		exit 2
		;;
	esac
	result=SURVIVED shown=
	if ! build_for "$tests" >>"$log" 2>&1; then
		result=NOBUILD shown="$tests (see the build log: $log)"
	else
		for t in $tests; do
			if run_test "$t" "$LOGDIR/mutant-$n-test.log"; then
				shown="$shown $t"
			else
				result=caught
				shown="$shown *$t"
				cat "$LOGDIR/mutant-$n-test.log" >>"$log"
				break # one failing test is enough; the rest would only cost time
			fi
		done
	fi
	printf '%-4s %-9s %-16s %-6s %s\n' "$n" "$result" "$file" "$lineno" "${shown# }"
	case $result in
	caught) caught=$((caught + 1)) ;;
	SURVIVED) survived=$((survived + 1)) ;;
	NOBUILD) nobuild=$((nobuild + 1)) ;;
	esac
	# back to the original, with a new time so the next build compiles it again
	cp "$ROOT/$file" "$SCRATCH/$file"
	touch "$SCRATCH/$file"
done
echo "$caught caught, $survived survived, $stale stale, $nobuild did not build (of ${#SELECTED[@]} mutants)"
[ $((survived + stale + nobuild)) -eq 0 ]
