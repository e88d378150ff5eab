#!/usr/bin/env bash
# test_bench_runner.sh: the benchmark runner (bench/bench.py suite) and
# tessera-compare (bench/bench.py compare) on tiny workloads, from the build
# tree.  Run by ctest with:
#   TSR_BENCH_PY    bench/bench.py
#   TSR_COMPARE     scripts/tessera-compare
#   TSR_BUILD_DIR   the build tree (with bench/runmon and the workloads)
#   TSR_LIBTESSERA  the built libtessera.so
# Checks: every allocator row is present and its figures are numbers; a
# missing allocator library is reported and its row says skipped; a
# workload that aborts, and a command that exits 1, fail the run (non-zero
# status, a message naming the workload and the allocator, no table).
set -uo pipefail

: "${TSR_BENCH_PY:?}" "${TSR_COMPARE:?}" "${TSR_BUILD_DIR:?}" "${TSR_LIBTESSERA:?}"
export BENCH_LIB_TESSERA=$TSR_LIBTESSERA
export TESSERA_COMPARE_BUILD=$TSR_BUILD_DIR
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
failures=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

for tool in hyperfine python3 gnuplot; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (bash scripts/deps.sh bench)"; exit 1; }
done

# An allocator's row: numbers, or "skipped" where its library is not on
# this machine (then the runner must have said so on stderr).
check_rows() {   # TABLE STDERR WORKLOAD-or-empty ALLOC...
  local table=$1 err=$2 w=$3
  shift 3
  local a row prefix
  for a in "$@"; do
    if [ -n "$w" ]; then prefix="| $w | $a |"; else prefix="| $a |"; fi
    row=$(grep -F -- "$prefix" "$table" | head -n 1)
    if [ -z "$row" ]; then
      fail "no row for ${w:+$w/}$a in $table"
      continue
    fi
    if grep -q "skipped" <<<"$row"; then
      if grep -q "^$a: library not found" "$err"; then
        pass "${w:+$w/}$a skipped, and reported"
      else
        fail "${w:+$w/}$a skipped without a report on stderr: $row"
      fi
      continue
    fi
    # every cell after the names is a number, a percentage or "-"
    local cells bad
    cells=$(sed "s/^| *[^|]*|$([ -n "$w" ] && echo ' *[^|]*|')//; s/|[^|]*$//" <<<"$row")
    bad=$(tr '|' '\n' <<<"$cells" | sed 's/^ *//; s/ *$//' | grep -vE '^(-?[0-9]+(\.[0-9]+)?( %)?|-)$' || true)
    if [ -n "$bad" ]; then
      fail "${w:+$w/}$a has cells that are not numbers: $(echo $bad) in: $row"
    else
      pass "${w:+$w/}$a row has numbers"
    fi
  done
}

# ---- the suite on tiny workloads, jemalloc pointed at a missing file -----
OUT=$WORK/suite
if BENCH_LIB_JEMALLOC=/nonexistent/libjemalloc.so.2 python3 "$TSR_BENCH_PY" suite --tiny \
    --build "$TSR_BUILD_DIR" --out "$OUT" --workloads st_mixed,mt_churn,frag_everyother \
    >"$WORK/suite.out" 2>"$WORK/suite.err"; then
  pass "suite --tiny ran"
else
  fail "suite --tiny failed: $(cat "$WORK/suite.err")"
fi
grep -q '^jemalloc: library not found at /nonexistent/libjemalloc.so.2 (set by BENCH_LIB_JEMALLOC); skipped' \
  "$WORK/suite.err" && pass "missing jemalloc reported" || fail "missing jemalloc not reported: $(cat "$WORK/suite.err")"
for w in st_mixed mt_churn frag_everyother; do
  row=$(grep -F "| $w | jemalloc |" "$OUT/results.md" || true)
  grep -q "skipped: library not found" <<<"$row" && pass "$w/jemalloc row says skipped" \
    || fail "$w/jemalloc row does not say skipped: $row"
  check_rows "$OUT/results.md" "$WORK/suite.err" "$w" system tessera mimalloc tcmalloc
done
frag=$(grep -F "| frag_everyother |" "$OUT/results.md" | grep -v '| frag_everyother | [a-z]* |' | tail -n 1)
grep -qE '^\| frag_everyother \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ ' <<<"$frag" && pass "RSS/live row has numbers" \
  || fail "RSS/live row: $frag"
for f in results.json time.svg time.png peak_rss.svg rss_per_live.png rss_frag_everyother.svg rss_frag_everyother.png; do
  [ -s "$OUT/$f" ] && pass "wrote $f" || fail "did not write $f"
done
python3 - "$OUT/results.json" <<'PY' && pass "results.json has numbers for every allocator that ran" || fail "results.json"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["allocators"]["jemalloc"]["status"] == "skipped"
for w, r in d["workloads"].items():
    for a, v in r["results"].items():
        if d["allocators"][a]["status"] == "skipped":
            assert v is None, (w, a)
            continue
        for k in ("time_s", "peak_rss_mib", "cpu_s"):
            assert isinstance(v[k], (int, float)) and v[k] >= 0, (w, a, k)
        if r["kind"] == "frag":
            assert v["rss_per_live"] > 0, (w, a)
PY

# ---- a workload that aborts under one allocator fails the whole run ------
if BENCH_FAIL_ON=tessera python3 "$TSR_BENCH_PY" suite --tiny --build "$TSR_BUILD_DIR" --out "$WORK/fail" \
    --workloads st_mixed >"$WORK/fail.out" 2>"$WORK/fail.err"; then
  fail "an aborting workload did not fail the run"
else
  grep -q "FAILED: st_mixed under tessera was killed by signal 6" "$WORK/fail.err" \
    && pass "aborting workload fails the run, naming workload and allocator" \
    || fail "unclear failure message: $(cat "$WORK/fail.err")"
  [ ! -e "$WORK/fail/results.md" ] && pass "no table for a failed run" || fail "a failed run wrote a table"
fi

# ---- tessera-compare on a tiny program ------------------------------------
COUT=$WORK/compare
if BENCH_BUDGET_MB=2 BENCH_SETTLE_MS=20 BENCH_LIB_TCMALLOC=/nonexistent "$TSR_COMPARE" --runs 2 --out "$COUT" \
    -- "$TSR_BUILD_DIR/bench/frag_sizeshift" >"$WORK/cmp.out" 2>"$WORK/cmp.err"; then
  pass "tessera-compare ran"
else
  fail "tessera-compare failed: $(cat "$WORK/cmp.err")"
fi
grep -q '^tcmalloc: library not found at /nonexistent' "$WORK/cmp.err" && pass "compare reports missing tcmalloc" \
  || fail "compare did not report missing tcmalloc"
check_rows "$COUT/results.md" "$WORK/cmp.err" "" system tessera mimalloc jemalloc tcmalloc
grep -q '| tcmalloc | skipped' "$COUT/results.md" && pass "compare: tcmalloc row skipped" || fail "compare: tcmalloc row"
for f in rss.svg rss.png results.json; do
  [ -s "$COUT/$f" ] && pass "compare wrote $f" || fail "compare did not write $f"
done

# a command that exits 1 fails the comparison, naming the allocator
if "$TSR_COMPARE" --runs 1 --out "$WORK/cfail" -- sh -c 'exit 1' >"$WORK/cf.out" 2>"$WORK/cf.err"; then
  fail "tessera-compare passed a command that exits 1"
else
  grep -qE "FAILED: the command \`sh -c 'exit 1'\` under [a-z]+ exited with status 1" "$WORK/cf.err" \
    && pass "a failing command fails the comparison" || fail "unclear message: $(cat "$WORK/cf.err")"
fi

# a preload that does not take (a file that is no shared library) fails too
echo "not a library" >"$WORK/bogus.so"
if BENCH_LIB_MIMALLOC=$WORK/bogus.so "$TSR_COMPARE" --runs 1 --allocators system,mimalloc --out "$WORK/cbad" \
    -- "$TSR_BUILD_DIR/bench/st_tree" >"$WORK/cb.out" 2>"$WORK/cb.err"; then
  fail "tessera-compare passed a preload that did not load"
else
  grep -q "under mimalloc: the preload of .*bogus.so did not take effect" "$WORK/cb.err" \
    && pass "a preload that did not load fails the comparison" || fail "unclear message: $(cat "$WORK/cb.err")"
fi

echo
if [ "$failures" -ne 0 ]; then
  echo "test_bench_runner: $failures failure(s)"
  exit 1
fi
echo "test_bench_runner: all checks passed"
