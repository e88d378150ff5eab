#!/usr/bin/env bash
# demo.sh: build tessera and run the key-value cache demo (bench/demo.c)
# under the system heap, tessera and mimalloc, interleaved round by round;
# print a Markdown table of median wall time and median peak RSS, and write
# it to out/demo.md.  Every run must print the system heap's checksum.
#
# Installs what it needs (scripts/deps.sh build bench).  Settings from the
# environment:
#   ROUNDS=5          runs per allocator
#   DEMO_ARGS="..."   arguments for tessera-demo (see tessera-demo -h)
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-5}
DEMO_ARGS=${DEMO_ARGS:-}
BUILD=build/release
OUT=out

banner() { printf '\n==== %s ====\n' "$*"; }

banner "dependencies"
bash scripts/deps.sh build bench

banner "build (Release, $BUILD)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTSR_BUILD_TESTS=OFF -DTSR_BUILD_BENCH=ON \
  -DTSR_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j2 --target tessera tessera-demo

DEMO=$ROOT/$BUILD/bench/tessera-demo
TESSERA_SO=$ROOT/$BUILD/libtessera.so
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "demo.sh: $TIME (GNU time) is missing" >&2; exit 1; }

# The mimalloc shared library Debian ships (package libmimalloc2.0).
MIMALLOC_SO=$(dpkg -L libmimalloc2.0 2>/dev/null | grep -E '/libmimalloc\.so\.[0-9.]+$' | head -n 1 || true)
if [ -z "$MIMALLOC_SO" ]; then
  MIMALLOC_SO=$(ldconfig -p 2>/dev/null | awk '/libmimalloc\.so/ { print $NF; exit }' || true)
fi

names=(system tessera)
preloads=("" "$TESSERA_SO")
if [ -n "$MIMALLOC_SO" ] && [ -e "$MIMALLOC_SO" ]; then
  names+=(mimalloc)
  preloads+=("$MIMALLOC_SO")
else
  echo "demo.sh: mimalloc's shared library was not found (package libmimalloc2.0); skipping it"
fi

mkdir -p "$OUT"
RUNS=$(mktemp -d)
trap 'rm -rf "$RUNS"' EXIT

banner "runs: ${names[*]}, $ROUNDS rounds, tessera-demo ${DEMO_ARGS:-(defaults)}"
expected=""
for round in $(seq 1 "$ROUNDS"); do
  for i in "${!names[@]}"; do
    name=${names[$i]}
    log=$RUNS/$name.$round.out
    # shellcheck disable=SC2086  # DEMO_ARGS is a list of words
    if ! "$TIME" -f '%e %M' -o "$RUNS/$name.$round.time" \
        env LD_PRELOAD="${preloads[$i]}" "$DEMO" $DEMO_ARGS >"$log" 2>&1; then
      echo "demo.sh: the run under $name failed:" >&2
      cat "$log" >&2
      exit 1
    fi
    heap=$(sed -n 's/^heap: //p' "$log")
    if [ "$heap" != "$name" ]; then
      echo "demo.sh: expected malloc to be $name's but the demo reports '$heap'" >&2
      exit 1
    fi
    sum=$(sed -n 's/^checksum: //p' "$log")
    if [ -z "$expected" ]; then
      expected=$sum
    elif [ "$sum" != "$expected" ]; then
      echo "demo.sh: checksum mismatch under $name (round $round): $sum, system heap gave $expected" >&2
      exit 1
    fi
    read -r secs kib <"$RUNS/$name.$round.time"
    printf 'round %d  %-9s %6.2f s  peak RSS %6.1f MiB  checksum %s\n' \
      "$round" "$name" "$secs" "$(awk -v k="$kib" 'BEGIN { print k / 1024 }')" "$sum"
  done
done

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

declare -A med_time med_rss med_end
for name in "${names[@]}"; do
  med_time[$name]=$(cat "$RUNS/$name".*.time | awk '{ print $1 }' | median)
  med_rss[$name]=$(cat "$RUNS/$name".*.time | awk '{ print $2 / 1024 }' | median)
  med_end[$name]=$(cat "$RUNS/$name".*.out | sed -n 's/^rss_end_kib: //p' | awk '{ print $1 / 1024 }' | median)
done

sys_time=${med_time[system]}
sys_rss=${med_rss[system]}
first=$RUNS/system.1.out
{
  echo "## tessera demo: key-value cache workload"
  echo
  echo "Workload: $(sed -n 's/^threads: /threads /p' "$first"); $ROUNDS rounds per allocator, interleaved."
  echo "Machine: $(nproc) CPUs, $(uname -sr), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo 'unknown CPU')."
  echo "Checksum $expected, the same under every allocator."
  echo
  echo "| allocator | median time (s) | median peak RSS (MiB) | RSS at end (MiB) | time vs system | peak RSS vs system |"
  echo "|---|---:|---:|---:|---:|---:|"
  for name in "${names[@]}"; do
    awk -v n="$name" -v t="${med_time[$name]}" -v r="${med_rss[$name]}" -v e="${med_end[$name]}" \
        -v st="$sys_time" -v sr="$sys_rss" \
        'BEGIN { printf "| %s | %.2f | %.1f | %.1f | %.2f | %.2f |\n", n, t, r, e, t / st, r / sr }'
  done
  echo
  echo "Time and peak RSS: /usr/bin/time (wall seconds, maximum resident set)."
  echo "RSS at end: the demo's resident set after its last request, before it frees everything."
} >"$OUT/demo.md"

banner "results (also in $OUT/demo.md)"
cat "$OUT/demo.md"
