#!/bin/sh
# space_limit.sh: bench/space_limit under the system heap and under
# tessera (LD_PRELOAD), at several block sizes, as a table.
#
#   bench/space_limit.sh BUILD_DIR [BUDGET_MIB]
#
# BUILD_DIR holds libtessera.so and bench/space_limit (configure with
# -DTSR_BUILD_BENCH=ON and build tessera-bench).  TESSERA_TRACK in the
# environment applies to the tessera runs; SIZES, the block sizes (bytes,
# separated by spaces), replaces the default list, which has sizes at a
# class's size and just past one (16,400, 32,800, 65,600).
set -eu
build=$1
budget=${2:-1024}
prog=$build/bench/space_limit
lib=$build/libtessera.so
printf '%10s %14s %14s\n' size "system (MiB)" "tessera (MiB)"
for size in ${SIZES:-16 100 4000 12000 16400 20000 30000 32800 40000 65600 100000 131000 200000 1048576}; do
  sys=$("$prog" "$size" "$budget" | cut -d' ' -f2)
  tsr=$(LD_PRELOAD=$lib "$prog" "$size" "$budget" | cut -d' ' -f2)
  printf '%10s %14s %14s\n' "$size" "$sys" "$tsr"
done
