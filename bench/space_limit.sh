#!/bin/sh
# space_limit.sh: bench/space_limit under the system heap and under
# tessera (LD_PRELOAD), at several block sizes, as a table.
#
#   bench/space_limit.sh BUILD_DIR [BUDGET_MIB]
#
# BUILD_DIR holds libtessera.so and bench/space_limit (configure with
# -DTSR_BUILD_BENCH=ON and build tessera-bench).  TESSERA_TRACK in the
# environment applies to the tessera runs.
set -eu
build=$1
budget=${2:-1024}
prog=$build/bench/space_limit
lib=$build/libtessera.so
printf '%10s %14s %14s\n' size "system (MiB)" "tessera (MiB)"
for size in 16 100 4000 40000 200000 1048576; do
  sys=$("$prog" "$size" "$budget" | cut -d' ' -f2)
  tsr=$(LD_PRELOAD=$lib "$prog" "$size" "$budget" | cut -d' ' -f2)
  printf '%10s %14s %14s\n' "$size" "$sys" "$tsr"
done
