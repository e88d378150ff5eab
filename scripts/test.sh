#!/usr/bin/env bash
# test.sh: the whole test run, as CI does it (.ci/run calls only this).
#
# Installs what it needs (scripts/deps.sh build test bench, and windows when that
# stage runs), then, stopping at the first failure:
#   debug    gcc, Debug (internal asserts at level 2), -Werror: the Criterion suite,
#            and the benchmark runner and tessera-compare on tiny workloads
#   tsan     clang, ThreadSanitizer, Debug: the suite, with a modest number of
#            threads and seconds for the stress tests, and its threaded tests
#            again with meshing on (a meshing pass every millisecond)
#   ubsan    clang, UndefinedBehaviorSanitizer, RelWithDebInfo (the optimised
#            code as it ships, no internal asserts): the suite
#   asan     gcc, AddressSanitizer, Debug: the suite (the preload tests are
#            left out there: the sanitizer owns malloc in that build)
#   fuzz     clang, libFuzzer (TSR_FUZZ=ON): the fuzz tests (ctest -R fuzz), one
#            of them with meshing on
#   release  gcc, Release: the library, bench/ and the suite compile with -Werror,
#            the suite passes, with meshing off (the default) and on
#            (a pass every millisecond), its soak (test_soak) for
#            TSR_TEST_SOAK_SECONDS=120 in the first run (15 s elsewhere), and the
#            demo gives the same checksum under tessera as under the system heap
#   windows  mingw-w64 cross builds (docs/windows.md): x86_64, Debug, and i686,
#            RelWithDebInfo, both -Werror, each with its tests run under wine
#            (wine64 and wine32: headless, a wine prefix of each build tree's own,
#            its wineserver stopped when the tests end, passed or not)
#
# Usage: bash scripts/test.sh [STAGE...]   (no argument: every stage, as CI)
# Build trees: build/debug build/tsan build/ubsan build/asan build/fuzz build/release
# build/win64 build/win32
# (kept, so a second run only rebuilds what changed).
# Environment: TSR_TEST_THREADS / TSR_TEST_SECONDS / TSR_TEST_SOAK_SECONDS, if
# set, go to every stage;
# otherwise the stress tests use their own defaults, and under TSan 4 threads
# for 1 second.  JOBS (default 2) sets build and ctest parallelism.
set -euo pipefail

cd "$(dirname "$0")/.."
JOBS=${JOBS:-2}
ALL_STAGES=(debug tsan ubsan asan fuzz release windows)
if [ "$#" -gt 0 ]; then STAGES=("$@"); else STAGES=("${ALL_STAGES[@]}"); fi
for s in "${STAGES[@]}"; do
  case " ${ALL_STAGES[*]} " in
    *" $s "*) ;;
    *) echo "usage: bash scripts/test.sh [STAGE...]   (stages: ${ALL_STAGES[*]})" >&2; exit 2 ;;
  esac
done
stage=setup
start_all=$SECONDS

elapsed() { local s=$(( SECONDS - $1 )); printf '%dm%02ds' $(( s / 60 )) $(( s % 60 )); }

on_exit() {
  local rc=$?
  if [ "$rc" -ne 0 ]; then
    echo
    echo "test.sh: FAILED in stage '$stage' (exit $rc) after $(elapsed "$start_all")"
  fi
}
trap on_exit EXIT

banner() {
  stage=$1
  stage_start=$SECONDS
  printf '\n======== test.sh stage: %s — %s ========\n' "$1" "$2"
}

stage_done() { echo "-------- stage $stage passed in $(elapsed "$stage_start") --------"; }

# ctest must fail on "no tests" once tests exist: an empty run is no pass.
no_tests=ignore
if compgen -G 'tests/*.c' >/dev/null || compgen -G 'tests/*.cpp' >/dev/null; then
  no_tests=error
fi
no_fuzz_tests=ignore
if [ -d tests/fuzz ]; then no_fuzz_tests=error; fi

configure_build() {   # DIR C-COMPILER CXX-COMPILER CMAKE-ARGS...
  local dir=$1 cc=$2 cxx=$3
  shift 3
  cmake -S . -B "$dir" -DCMAKE_C_COMPILER="$cc" -DCMAKE_CXX_COMPILER="$cxx" -DTSR_WERROR=ON "$@"
  cmake --build "$dir" -j "$JOBS"
}

run_ctest() {   # DIR NO-TESTS-ACTION CTEST-ARGS...
  local dir=$1 action=$2
  shift 2
  ctest --test-dir "$dir" --output-on-failure -j "$JOBS" --timeout 300 --no-tests="$action" "$@"
}

# ---------------------------------------------------------------------------
banner setup "dependencies and toolchain"
bash scripts/deps.sh build test bench
case " ${STAGES[*]} " in *" windows "*) bash scripts/deps.sh windows ;; esac
gcc --version | head -n 1
clang --version | head -n 1
cmake --version | head -n 1

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}

# ---------------------------------------------------------------------------
stage_debug() {
  banner debug "gcc, Debug, -Werror, build/debug"
  configure_build build/debug gcc g++ -DCMAKE_BUILD_TYPE=Debug -DTSR_BUILD_TESTS=ON -DTSR_BUILD_BENCH=ON
  run_ctest build/debug "$no_tests"
  stage_done
}

# ---------------------------------------------------------------------------
stage_tsan() {
  banner tsan "clang, ThreadSanitizer, Debug, build/tsan"
  configure_build build/tsan clang clang++ -DCMAKE_BUILD_TYPE=Debug -DTSR_SANITIZE=thread \
    -DTSR_BUILD_TESTS=ON -DTSR_BUILD_BENCH=OFF
  TSR_TEST_THREADS=${TSR_TEST_THREADS:-4} TSR_TEST_SECONDS=${TSR_TEST_SECONDS:-1} \
    run_ctest build/tsan "$no_tests"
  # and the threaded tests again with meshing on, a pass at every slow path
  # a millisecond after the last, while their threads write and free
  echo "---- the threaded tests again with TESSERA_MESH=on TESSERA_MESH_MS=1 ----"
  TESSERA_MESH=on TESSERA_MESH_MS=1 TSR_TEST_THREADS=${TSR_TEST_THREADS:-4} TSR_TEST_SECONDS=${TSR_TEST_SECONDS:-1} \
    run_ctest build/tsan "$no_tests" -R "test_threads|test_fork|test_mesh|test_purge|test_locks|test_exit_alloc|test_soak"
  stage_done
}

# ---------------------------------------------------------------------------
stage_ubsan() {
  banner ubsan "clang, UndefinedBehaviorSanitizer, RelWithDebInfo, build/ubsan"
  configure_build build/ubsan clang clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTSR_SANITIZE=undefined \
    -DTSR_BUILD_TESTS=ON -DTSR_BUILD_BENCH=OFF
  run_ctest build/ubsan "$no_tests"
  stage_done
}

# ---------------------------------------------------------------------------
stage_asan() {
  banner asan "gcc, AddressSanitizer, Debug, build/asan"
  configure_build build/asan gcc g++ -DCMAKE_BUILD_TYPE=Debug -DTSR_SANITIZE=address \
    -DTSR_BUILD_TESTS=ON -DTSR_BUILD_BENCH=OFF
  run_ctest build/asan "$no_tests"
  stage_done
}

# ---------------------------------------------------------------------------
stage_fuzz() {
  banner fuzz "clang, libFuzzer, build/fuzz"
  configure_build build/fuzz clang clang++ -DCMAKE_BUILD_TYPE=Debug -DTSR_FUZZ=ON \
    -DTSR_BUILD_TESTS=ON -DTSR_BUILD_BENCH=OFF
  run_ctest build/fuzz "$no_fuzz_tests" -R fuzz
  stage_done
}

# ---------------------------------------------------------------------------
stage_release() {
  banner release "gcc, Release, -Werror, build/release: library, bench/ and the suite"
  configure_build build/release gcc g++ -DCMAKE_BUILD_TYPE=Release -DTSR_BUILD_TESTS=ON -DTSR_BUILD_BENCH=ON
  # the suite as the library ships: GCC's optimised paths (full tracking's
  # record path needs the tail jump only optimisation makes)
  TSR_TEST_SOAK_SECONDS=${TSR_TEST_SOAK_SECONDS:-120} run_ctest build/release "$no_tests"
  # and again with meshing on: every test's blocks may then sit on shared
  # pages (issue 16: the suites green under meshing)
  echo "---- the suite again with TESSERA_MESH=on TESSERA_MESH_MS=1 ----"
  TESSERA_MESH=on TESSERA_MESH_MS=1 run_ctest build/release "$no_tests" -E test_inject
  demo=build/release/bench/tessera-demo
  sys_out=$("$demo" -q)
  tsr_out=$(LD_PRELOAD="$PWD/build/release/libtessera.so" "$demo" -q)
  echo "$tsr_out"
  sys_sum=$(sed -n 's/^checksum: //p' <<<"$sys_out")
  tsr_sum=$(sed -n 's/^checksum: //p' <<<"$tsr_out")
  if ! grep -qx 'heap: tessera' <<<"$tsr_out"; then
    echo "test.sh: the demo did not run on tessera under LD_PRELOAD" >&2
    exit 1
  fi
  if [ -z "$sys_sum" ] || [ "$sys_sum" != "$tsr_sum" ]; then
    echo "test.sh: demo checksum under tessera ($tsr_sum) differs from the system heap's ($sys_sum)" >&2
    exit 1
  fi
  echo "demo smoke run: checksum $tsr_sum under tessera and the system heap"
  stage_done
}

# ---------------------------------------------------------------------------
# One mingw build and its tests under wine: DIR TOOLCHAIN-FILE BUILD-TYPE.
win_build_test() {
  local dir=$1 rc=0
  cmake -S . -B "$dir" -DCMAKE_TOOLCHAIN_FILE="cmake/$2" \
    -DCMAKE_BUILD_TYPE="$3" -DTSR_WERROR=ON -DTSR_BUILD_TESTS=ON -DTSR_BUILD_BENCH=OFF
  cmake --build "$dir" -j "$JOBS"
  # CI has no display and no standard input; neither does this run
  (unset DISPLAY; run_ctest "$dir" error </dev/null) || rc=$?
  # wine keeps a server per prefix for a few seconds after its last
  # program: stop it now, passed or failed, rather than leave it behind
  WINEPREFIX="$PWD/$dir/wineprefix" wineserver -k 2>/dev/null || true
  return "$rc"
}

stage_windows() {
  banner windows "mingw-w64 under wine: x86_64 (build/win64), i686 (build/win32)"
  win_build_test build/win64 toolchain-mingw-x86_64.cmake Debug
  win_build_test build/win32 toolchain-mingw-i686.cmake RelWithDebInfo
  stage_done
}

for s in "${STAGES[@]}"; do "stage_$s"; done

# ---------------------------------------------------------------------------
stage=summary
echo
echo "test.sh: ${#STAGES[@]} of ${#ALL_STAGES[@]} stages passed (${STAGES[*]}) in $(elapsed "$start_all")"
