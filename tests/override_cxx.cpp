// override_cxx.cpp: a C++ workload for the override tests.
//
// Several threads build std::map<std::string, std::vector<...>>, grow and
// shrink std::string and std::vector, and hand containers between threads,
// all through operator new/delete, which libstdc++ routes to malloc/free.
// It prints one deterministic checksum line, so a run with
// LD_PRELOAD=libtessera.so must print the same as a run without.
//
// Built twice (tests/CMakeLists.txt): plain, and linked to the override
// library with TSR_LINKED, where it checks that new really lands in
// tessera (tsr_owns).  The plain build does the same check through dlsym
// when TSR_EXPECT_TESSERA=1 (under LD_PRELOAD).  A failed check exits 3.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#if defined(TSR_LINKED)
#include "tessera.h"
static int (*owns_fn)(const void *) = tsr_owns;
#else
#include <dlfcn.h>
static int (*owns_fn)(const void *) = nullptr;
#endif

static uint64_t fnv(uint64_t h, const void *data, size_t n) {
  const unsigned char *p = static_cast<const unsigned char *>(data);
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

static uint64_t next(uint64_t &s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

using Table = std::map<std::string, std::vector<uint32_t>>;

static uint64_t digest(const Table &t) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (const auto &kv : t) {
    h = fnv(h, kv.first.data(), kv.first.size());
    h = fnv(h, kv.second.data(), kv.second.size() * sizeof(uint32_t));
  }
  return h;
}

static void check_owned(const void *p, const char *what) {
  if (owns_fn != nullptr && owns_fn(p) != 1) {
    std::fprintf(stderr, "override_cxx: %s at %p is not a tessera block\n", what, p);
    std::exit(3);
  }
}

static uint64_t work(unsigned id, unsigned rounds, std::unique_ptr<Table> &out) {
  uint64_t s = 0x9E3779B97F4A7C15ull * (id + 1);
  uint64_t h = 0;
  for (unsigned r = 0; r < rounds; r++) {
    auto t = std::make_unique<Table>();
    check_owned(t.get(), "a new'ed std::map");
    for (unsigned i = 0; i < 3000; i++) {
      std::string key = "k" + std::to_string(next(s) % 5000) + std::string(next(s) % 40, 'x');
      auto &v = (*t)[key];
      size_t n = next(s) % 64;
      for (size_t k = 0; k < n; k++) v.push_back(static_cast<uint32_t>(next(s)));
      if (!v.empty() && v.capacity() > 8) check_owned(v.data(), "a std::vector buffer");
      if (key.size() > 20) check_owned(key.data(), "a std::string buffer");
    }
    // drop about half of the entries, shrink some vectors
    for (auto it = t->begin(); it != t->end();) {
      if (next(s) & 1) {
        it = t->erase(it);
      } else {
        it->second.resize(it->second.size() / 2);
        it->second.shrink_to_fit();
        ++it;
      }
    }
    std::string big;
    for (unsigned i = 0; i < 2000; i++) big += std::to_string(next(s));
    std::vector<uint64_t> large(50000 + next(s) % 100000, id);   // above 128 KiB: a large block
    check_owned(large.data(), "a large std::vector buffer");
    h ^= digest(*t) + fnv(0, big.data(), big.size()) + large.size();
    if (r + 1 == rounds) out = std::move(t);   // handed to main, freed there
  }
  return h;
}

int main(int argc, char **argv) {
#if !defined(TSR_LINKED)
  const char *expect = std::getenv("TSR_EXPECT_TESSERA");
  if (expect != nullptr && std::strcmp(expect, "1") == 0) {
    owns_fn = reinterpret_cast<int (*)(const void *)>(dlsym(RTLD_DEFAULT, "tsr_owns"));
    if (owns_fn == nullptr) {
      std::fprintf(stderr, "override_cxx: tsr_owns not found: tessera is not loaded\n");
      return 3;
    }
  }
#endif
  unsigned threads = argc > 1 ? static_cast<unsigned>(std::atoi(argv[1])) : 4;
  unsigned rounds = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 6;
  if (owns_fn != nullptr) {
    int *one = new int(1);
    check_owned(one, "new int");
    delete one;
    auto arr = std::make_unique<double[]>(100000);
    check_owned(arr.get(), "new double[100000]");
  }
  std::vector<uint64_t> sums(threads);
  std::vector<std::unique_ptr<Table>> tables(threads);
  std::vector<std::thread> pool;
  for (unsigned i = 0; i < threads; i++)
    pool.emplace_back([i, rounds, &sums, &tables] { sums[i] = work(i, rounds, tables[i]); });
  for (auto &t : pool) t.join();
  uint64_t total = 0;
  for (unsigned i = 0; i < threads; i++) {
    total = total * 31 + sums[i];
    total ^= digest(*tables[i]);
    tables[i].reset();   // freed by another thread than the one that built it
  }
  std::printf("checksum %016llx\n", static_cast<unsigned long long>(total));
  return 0;
}
