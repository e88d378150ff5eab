// st_kvmap.cpp: a key-value map with churn, in C++ (std::unordered_map of
// std::string), as a cache or a session table inside a server.
//
// 50000 keys; each step looks a random key up (70 %), sets it to a new
// value of 20..600 bytes (20 %: the old string is freed, the new one
// allocated), or erases it (10 %: the node and both strings are freed).
// Keys and values are longer than the short-string buffer, so every one is
// a heap block; the map's nodes and bucket array are blocks too.
#include "bench.h"

#include <string>
#include <unordered_map>

int main() {
  bench_start("st_kvmap");
  uint64_t steps = static_cast<uint64_t>(1000000 * bench_env_num("BENCH_SCALE", 1));
  const uint64_t nkeys = 50000;
  std::unordered_map<std::string, std::string> map;
  bench_rng_t r = { 5 };
  uint64_t sum = 0;
  char key[48];
  for (uint64_t i = 0; i < steps; i++) {
    uint64_t k = bench_rand(&r) % nkeys;
    snprintf(key, sizeof key, "session:%016" PRIx64 ":user", bench_mix(k));
    uint64_t op = bench_rand(&r) % 10;
    if (op < 7) {
      auto it = map.find(key);
      if (it != map.end()) {
        const std::string &v = it->second;
        if (v.front() != static_cast<char>('A' + v.size() % 26) || v.back() != v.front())
          bench_fail("a value changed while it was stored (heap corruption)");
        sum += v.size();
      }
    } else if (op < 9) {
      size_t len = bench_log_size(&r, 20, 600);
      map[key] = std::string(len, static_cast<char>('A' + len % 26));
    } else {
      sum += map.erase(key);
    }
  }
  printf("keys at end: %zu\n", map.size());
  bench_end(steps, sum);
  return 0;
}
