#!/usr/bin/env bash
# bench.sh: build tessera and its benchmark workloads, then compare tessera
# with the system heap (glibc), mimalloc, jemalloc and tcmalloc on them:
# speed (single- and multi-threaded) and fragmentation (RSS against the
# bytes the workload holds, over time and after a settle period).
#
# Usage: bash scripts/bench.sh [--quick | --full] [--runs N]
#                              [--workloads A,B,...] [--allocators A,B,...]
#   --quick   (default) a first look: about 3 minutes on 2 cores, build included
#   --full    a real session: more work per run, more runs, 11 s settle
#             periods, a 32 s soak, 16-thread variants (about 30 minutes)
#
# Prints the results table; writes out/bench/results.md, results.json and
# the plots out/bench/*.svg and *.png.  Installs what it needs
# (scripts/deps.sh build bench); builds in build/bench (Release).
# Library paths: BENCH_LIB_TESSERA, BENCH_LIB_MIMALLOC, BENCH_LIB_JEMALLOC,
# BENCH_LIB_TCMALLOC override what dpkg and ldconfig find.
# For your own program: scripts/tessera-compare -- COMMAND ARGS...
# Method and current figures: docs/benchmarks.md.
set -euo pipefail

cd "$(dirname "$0")/.."
BUILD=build/bench
JOBS=${JOBS:-2}

banner() { printf '\n==== %s ====\n' "$*"; }

start=$SECONDS
banner "dependencies"
bash scripts/deps.sh build bench

banner "build (Release, $BUILD)"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTSR_BUILD_TESTS=OFF -DTSR_BUILD_BENCH=ON \
  -DTSR_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j "$JOBS" --target tessera-bench
echo "built in $(( SECONDS - start )) s"

banner "benchmarks"
python3 bench/bench.py suite --build "$BUILD" --out out/bench "$@"
echo "bench.sh: done in $(( SECONDS - start )) s"
