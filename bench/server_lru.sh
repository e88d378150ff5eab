#!/usr/bin/env bash
# server_lru.sh: a cache server filled past its memory limit, under each heap.
#
# Redis (Debian's redis-server) with maxmemory 64 MiB and allkeys-lru is
# filled with 400,000 writes of 200-byte values, then 150,000 of 1,500-byte
# values (a size shift), so that eviction leaves the first values'
# survivors scattered over their pages; after 4 s idle the script reads
# the memory the server holds: VmRSS less RssShmem plus Pss_Shmem (a page
# mapped at two addresses by meshing counted once, as bench/bench.h does)
# over Redis's own used_memory.
#
# Usage: bash bench/server_lru.sh [BUILD] [RUNS]   (BUILD: where
# libtessera.so is, default build/bench; RUNS: default 3, medians printed)
# Installs redis-server and redis-tools when missing (scripts/deps.sh server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh server
build=${1:-build/bench}
runs=${2:-3}
tessera=$(realpath "$build/libtessera.so")
shim=$(mktemp -d)/libglibc_shim.so
cc -O2 -shared -fPIC -o "$shim" bench/glibc_shim.c -ldl
lib_of() { dpkg -L "$1" 2>/dev/null | grep -E "$2" | head -1; }
mimalloc=$(lib_of libmimalloc2.0 '/libmimalloc\.so\.[0-9.]+$')
tcmalloc=$(lib_of libtcmalloc-minimal4 '/libtcmalloc_minimal\.so\.[0-9]+$')

# one run: LABEL PRELOAD [VAR=VALUE...] -> "held used"
run_one() {
  local label=$1 preload=$2
  shift 2
  local port=$((20000 + RANDOM % 20000))
  env "$@" LD_PRELOAD="$preload" redis-server --port "$port" --save "" --appendonly no \
    --maxmemory 64mb --maxmemory-policy allkeys-lru --loglevel warning >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-benchmark -p "$port" -t set -n 400000 -r 10000000 -d 200 -q -P 32 >/dev/null
  redis-benchmark -p "$port" -t set -n 150000 -r 10000000 -d 1500 -q -P 32 >/dev/null
  sleep 4
  local used rss shm pshm
  used=$(redis-cli -p "$port" info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
  rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status")
  shm=$(awk '$1 == "RssShmem:" { print $2 }' "/proc/$pid/status")
  pshm=$(awk '$1 == "Pss_Shmem:" { print $2 }' "/proc/$pid/smaps_rollup")
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$pid" 2>/dev/null || true
  echo "$(( (rss - shm + pshm) * 1024 )) $used"
}

printf '| heap | held MiB | Redis used_memory MiB | held / used |\n|---|---|---|---|\n'
measure() {
  local label=$1
  shift
  local results=()
  for _ in $(seq "$runs"); do results+=("$(run_one "$label" "$@")"); done
  printf '%s\n' "${results[@]}" | sort -n | awk -v label="$label" -v n="$runs" \
    'NR == int((n + 1) / 2) { printf "| %s | %.1f | %.1f | %.3f |\n", label, $1 / 1048576, $2 / 1048576, $1 / $2 }'
}
measure "system (glibc)" "$shim"
measure "jemalloc (Redis's own)" ""
measure tessera "$tessera"
measure "tessera, TESSERA_MESH=on" "$tessera" TESSERA_MESH=on
[ -n "$mimalloc" ] && measure mimalloc "$mimalloc"
[ -n "$tcmalloc" ] && measure tcmalloc "$tcmalloc"
true
