#!/bin/sh
# seed_oom.sh: bench/seed_oom.c, the 32-bit server that runs out of
# address space (issue 19, item 4), under every allocator, as a table.
#
#   bench/seed_oom.sh windows WIN32_BUILD_DIR [SEEDS] [ROUNDS]
#   bench/seed_oom.sh linux32 LINUX32_BUILD_DIR [SEEDS] [ROUNDS]
#
# windows: builds seed_oom.exe with i686-w64-mingw32-gcc against
# WIN32_BUILD_DIR/libtessera-prefixed.a (a build with
# cmake/toolchain-mingw-i686.cmake) and runs it under wine32, in a 32-bit
# wine prefix of its own (WIN32_BUILD_DIR/seed_oom-prefix), for crt
# (msvcrt's malloc), heap (HeapAlloc on the process heap) and tessera.
# linux32: builds it with gcc -m32 (gcc-multilib) against
# LINUX32_BUILD_DIR/libtessera-prefixed.a (a build with -m32), for crt
# (glibc's malloc) and tessera.
#
# "grow" runs once per seed (SEEDS, default "1 2 3") until an allocation
# fails; "steady" runs ROUNDS rounds (default 3000) with 64 images.  Each
# line is the program's key=value output; the table after it is what
# docs/benchmarks.md shows.
set -eu
target=$1
build=$(cd "$2" && pwd)
seeds=${3:-1 2 3}
rounds=${4:-3000}
src=$(cd "$(dirname "$0")/.." && pwd)
out=$build/seed_oom-out
mkdir -p "$out"

case $target in
  windows)
    exe=$build/seed_oom.exe
    i686-w64-mingw32-gcc-win32 -O2 -Wall -Wextra -I"$src/include" "$src/bench/seed_oom.c" \
      "$build/libtessera-prefixed.a" -Wl,-u,_tsri_report_triggers_anchor -static-libgcc -lm -o "$exe"
    export WINEPREFIX="$build/seed_oom-prefix" WINEARCH=win32 WINEDEBUG=-all WINEDLLOVERRIDES=mscoree,mshtml=
    run() { wine "$exe" "$@"; }
    allocators="crt heap tessera"
    ;;
  linux32)
    exe=$build/seed_oom
    gcc -m32 -O2 -Wall -Wextra -I"$src/include" "$src/bench/seed_oom.c" "$build/libtessera-prefixed.a" \
      -lpthread -lm -o "$exe"
    run() { "$exe" "$@"; }
    allocators="crt tessera"
    ;;
  *)
    echo "usage: bench/seed_oom.sh windows|linux32 BUILD_DIR [SEEDS] [ROUNDS]" >&2
    exit 2
    ;;
esac

: > "$out/runs.txt"
for a in $allocators; do
  for s in $seeds; do run "$a" grow "$s" | tee -a "$out/runs.txt"; done
  run "$a" steady "$rounds" 64 | tee -a "$out/runs.txt"
done
if [ "$target" = windows ]; then wineserver -k 2>/dev/null || true; fi

# The table: per allocator, grow: live MiB at the failure per seed and
# their mean, the largest free range and committed MiB then (means);
# steady: the largest free range and committed MiB after the rounds.
awk '
function field(name,   i, kv) {
  for (i = 1; i <= NF; i++) { split($i, kv, "="); if (kv[1] == name) return kv[2] }
  return ""
}
{
  a = field("allocator"); m = field("mode")
  if (!(a in seen)) { order[++n] = a; seen[a] = 1 }
  if (m == "grow") {
    g[a] = g[a] sprintf("%s%.0f", (g[a] == "" ? "" : ", "), field("live") / 1048576)
    live[a] += field("live"); lf[a] += field("largest_free"); cm[a] += field("committed"); runs[a]++
  } else {
    slf[a] = field("largest_free"); scm[a] = field("committed"); sfail[a] = field("failed")
  }
}
END {
  print ""
  print "| allocator | grow: live MiB at the failure (per seed) | mean | largest free MiB then | committed MiB then | steady: largest free MiB | committed MiB | failed |"
  print "|---|---|---|---|---|---|---|---|"
  for (i = 1; i <= n; i++) {
    a = order[i]
    printf "| %s | %s | %.0f | %.1f | %.0f | %.0f | %.0f | %s |\n", a, g[a], live[a] / runs[a] / 1048576,
      lf[a] / runs[a] / 1048576, cm[a] / runs[a] / 1048576, slf[a] / 1048576, scm[a] / 1048576, sfail[a]
  }
}' "$out/runs.txt"
