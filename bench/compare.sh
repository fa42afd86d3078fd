#!/bin/bash
# compare.sh OLD_BUILD NEW_BUILD [ROUNDS] — tcpmap's workloads on two builds of it, run
# alternately on the same machine, so a change can be judged against the round-to-round
# noise of the machine it ran on rather than against a number from another day.
#
# Each round runs bench/run.sh once per build (peers: tcpmap and direct loopback), the order
# of the two builds swapped every round. The report gives, per metric, each build's median
# and its spread over the rounds (max-min, relative to the median), the ratio new/old, and
# "within noise" when that ratio differs from 1 by no more than the larger of the two
# spreads. Nothing is asserted: like the rest of bench/, this measures and prints.
#
#   BENCH_ONLY (default bulk,connrate,tls,idle,sni), BENCH_IDLE_N (default 2000) and
#   BENCH_QUICK (default 1) pass through to run.sh; results go to bench/out/compare/.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OLD=${1:?usage: compare.sh OLD_BUILD NEW_BUILD [ROUNDS]}
NEW=${2:?usage: compare.sh OLD_BUILD NEW_BUILD [ROUNDS]}
ROUNDS=${3:-3}
OUT=$HERE/out/compare
rm -rf "$OUT"
mkdir -p "$OUT"
ALL=$OUT/all.tsv
: >"$ALL"

for ((r = 1; r <= ROUNDS; r++)); do
	if ((r % 2)); then order="old new"; else order="new old"; fi
	for label in $order; do
		build=$OLD
		[ "$label" = new ] && build=$NEW
		echo "compare: round $r of $ROUNDS, $label ($build)" >&2
		dir=$OUT/round$r-$label
		BENCH_OUT=$dir BENCH_PEERS=tcpmap BENCH_ROUNDS=1 BENCH_BULK_ROUNDS=1 \
			BENCH_QUICK=${BENCH_QUICK:-1} BENCH_IDLE_N=${BENCH_IDLE_N:-2000} \
			BENCH_ONLY=${BENCH_ONLY:-bulk,connrate,tls,idle,sni} \
			"$HERE/run.sh" "$build" >"$dir.log" 2>&1 || echo "compare: run failed, see $dir.log" >&2
		awk -v r="$r" -v l="$label" -F'\t' '$2 == "tcpmap" { print r "\t" l "\t" $1 "\t" $3 "\t" $4 "\t" $5 }' \
			"$dir/results.tsv" >>"$ALL" 2>/dev/null
	done
done

python3 - "$ALL" "$ROUNDS" <<'PY' | tee "$OUT/report.txt"
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
vals = {}
units = {}
for r, label, workload, metric, value, unit in rows:
    try:
        v = float(value)
    except ValueError:
        continue
    vals.setdefault((workload, metric), {}).setdefault(label, []).append(v)
    units[(workload, metric)] = unit
print(f"tcpmap, old build against new, {sys.argv[2]} alternating rounds")
print(f"{'workload':9} {'metric':22} {'old':>9} {'spread':>7} {'new':>9} {'spread':>7} {'new/old':>8}  verdict")
def spread(xs, m):
    return (max(xs) - min(xs)) / m if m else 0.0
for key in sorted(vals):
    d = vals[key]
    if "old" not in d or "new" not in d:
        continue
    mo, mn = statistics.median(d["old"]), statistics.median(d["new"])
    so, sn = spread(d["old"], mo), spread(d["new"], mn)
    ratio = mn / mo if mo else float("nan")
    noise = max(so, sn)
    verdict = "within noise" if abs(ratio - 1) <= noise else ("higher" if ratio > 1 else "lower")
    print(f"{key[0]:9} {key[1]:22} {mo:9.4g} {so:6.0%} {mn:9.4g} {sn:6.0%} {ratio:8.3f}  {verdict} ({units[key]})")
PY
