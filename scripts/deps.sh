#!/usr/bin/env bash
# deps.sh GROUP... : install the Debian 12 packages that tessera's scripts
# need, and only those that are missing.
#
# Groups:
#   build   compile the library, the demo and tessera-report (cmake, gcc, g++,
#           make, pkg-config, and libjansson-dev, which tessera-report parses
#           JSON with)
#   test    the test suite: Criterion, clang with its sanitizer and libFuzzer
#           runtimes, llvm-symbolizer for readable sanitizer reports, and
#           python3 and sort, which the override test runs under LD_PRELOAD
#   bench   the allocators we compare with, the tools that time them and plot
#           the results, and python3, which runs bench/bench.py
#   server  a real server for bench/server_lru.sh: redis-server and
#           redis-tools (redis-benchmark, redis-cli), and gcc for its shim
#   windows the mingw-w64 cross compilers (64- and 32-bit) and wine, 64-bit
#           (wine64) and 32-bit (wine32:i386, which enables dpkg's i386
#           architecture first), which run the Windows tests (docs/windows.md)
#   all     every group above but server
#
# Runs as root (as on CI and a fresh machine) or through sudo when that
# exists.  apt-get update runs once, and only when something is missing.
# Never prompts: CI has no standard input.
set -euo pipefail

usage() {
  echo "usage: bash scripts/deps.sh GROUP...   (groups: build test bench server windows all)" >&2
  exit 2
}

group_packages() {
  case "$1" in
    build) echo "cmake gcc g++ make pkg-config libjansson-dev" ;;
    test)  echo "libcriterion-dev clang libclang-rt-14-dev llvm python3 python3-jsonschema coreutils" ;;
    bench) echo "libmimalloc-dev libjemalloc-dev libgoogle-perftools-dev hyperfine gnuplot-nox time python3" ;;
    server) echo "redis-server redis-tools gcc" ;;
    windows) echo "gcc-mingw-w64-x86-64 gcc-mingw-w64-i686 wine wine64 wine32:i386" ;;
    all)   echo "$(group_packages build) $(group_packages test) $(group_packages bench) $(group_packages windows)" ;;
    *)     return 1 ;;
  esac
}

[ "$#" -gt 0 ] || usage

wanted=()
for group in "$@"; do
  list=$(group_packages "$group") || { echo "deps.sh: unknown group '$group'" >&2; usage; }
  read -r -a pkgs <<<"$list"
  wanted+=("${pkgs[@]}")
done

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
  echo "deps.sh: not a Debian-like system (no dpkg-query/apt-get); make sure these are" \
       "installed yourself: ${wanted[*]}" >&2
  exit 0
fi

missing=()
for pkg in "${wanted[@]}"; do
  case " ${missing[*]} " in *" $pkg "*) continue ;; esac
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "deps.sh: all packages for '$*' are installed"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1; then
  as_root=(sudo)
else
  echo "deps.sh: these packages are missing and installing them needs root" \
       "(no sudo here): ${missing[*]}" >&2
  exit 1
fi

# A package of another architecture (wine32:i386) needs that architecture
# known to dpkg before apt-get update reads the package lists; once.
for pkg in "${missing[@]}"; do
  case "$pkg" in *:*) ;; *) continue ;; esac
  arch=${pkg##*:}
  if [ "$arch" != "$(dpkg --print-architecture)" ] &&
     ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
    echo "deps.sh: enabling the $arch architecture for $pkg (dpkg --add-architecture $arch)"
    "${as_root[@]}" dpkg --add-architecture "$arch"
  fi
done

echo "deps.sh: installing ${#missing[@]} missing package(s): ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -q --no-install-recommends "${missing[@]}"
echo "deps.sh: installed ${missing[*]}"
