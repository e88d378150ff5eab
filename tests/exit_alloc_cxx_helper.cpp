// exit_alloc_cxx_helper.cpp: C++ thread_local objects whose destructors
// allocate, in threads that come and go (issue 18, item 7; run by
// test_exit_alloc.c).  Linked to the override (libtessera.so).
//
// glibc runs a thread's thread_local destructors (__call_tls_dtors)
// before its thread-specific-data destructors, tessera's among them, but
// a thread_local first touched by another thread_local's destructor is
// constructed then, and destroyed after: both allocate while the thread
// exits.  Each thread fills a thread_local holder with strings and a map;
// its destructor checks them, builds new strings and hands them to main,
// and touches a second thread_local that allocates in its constructor
// and its destructor.  Two batches of threads; after each, main checks
// and frees what they handed over, from its own thread, and collects.
// The second batch must end where the first did (live blocks, and the
// committed memory less tessera's records within a quarter of a span per
// thread), and tsr_check must pass.  Exit status 0, or a line on stderr.
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tessera.h"

namespace {

constexpr int kBatchThreads = 200;
constexpr int kTogether = 8;

std::mutex handed_lock;
std::vector<std::string *> handed;   // strings made by exiting threads
int failures;

void fail(const char *what) {
  std::lock_guard<std::mutex> hold(handed_lock);
  failures++;
  std::fputs(what, stderr);
}

std::string text_of(unsigned seed, size_t length) {
  std::string s(length, ' ');
  for (size_t i = 0; i < length; i++) s[i] = static_cast<char>('a' + (seed + i * 7) % 26);
  return s;
}

// Touched first by holder's destructor: constructed and destroyed while
// the thread exits.
struct late_t {
  std::vector<std::string> made;
  late_t() {
    for (unsigned i = 0; i < 8; i++) made.push_back(text_of(i, 100 + i * 50));
  }
  ~late_t() {
    bool whole = made.size() == 9 && made[8] == text_of(7, 5000);   // the ninth: holder's
    for (unsigned i = 0; i < 8 && whole; i++) whole = made[i] == text_of(i, 100 + i * 50);
    if (!whole) fail("exit_alloc_cxx_helper: a late string changed\n");
    std::lock_guard<std::mutex> hold(handed_lock);
    handed.push_back(new std::string(text_of(99, 3000)));
  }
};
late_t &late() {
  thread_local late_t it;
  return it;
}

struct holder_t {
  std::map<int, std::string> kept;
  unsigned seed = 0;
  ~holder_t() {
    for (const auto &e : kept)
      if (e.second != text_of(seed + static_cast<unsigned>(e.first), 40 + e.first * 3))
        fail("exit_alloc_cxx_helper: a kept string changed\n");
    std::vector<std::string *> mine;
    for (unsigned i = 0; i < 16; i++) mine.push_back(new std::string(text_of(seed + i, 24 + i * 200)));
    late().made.push_back(text_of(7, 5000));   // constructs the late one now
    std::lock_guard<std::mutex> hold(handed_lock);
    handed.insert(handed.end(), mine.begin(), mine.end());
  }
};
thread_local holder_t holder;

void worker(unsigned seed) {
  holder.seed = seed;
  for (int i = 0; i < 64; i++) holder.kept[i] = text_of(seed + static_cast<unsigned>(i), 40 + i * 3);
  std::vector<std::string> scratch;
  for (int i = 0; i < 100; i++) scratch.push_back(text_of(static_cast<unsigned>(i), 17 + i));
}

int run_batch(unsigned batch) {
  for (int round = 0; round < kBatchThreads / kTogether; round++) {
    std::vector<std::thread> t;
    for (int i = 0; i < kTogether; i++) t.emplace_back(worker, batch * 1000 + static_cast<unsigned>(round * kTogether + i));
    for (auto &th : t) th.join();
  }
  const size_t expect = static_cast<size_t>(kBatchThreads) * (16 + 1);
  if (handed.size() != expect) {
    std::fprintf(stderr, "exit_alloc_cxx_helper: %zu strings handed over, expected %zu\n", handed.size(), expect);
    return 1;
  }
  size_t bad = tsr_check();
  if (bad != 0) {
    std::fprintf(stderr, "exit_alloc_cxx_helper: tsr_check found %zu problems with the strings live\n", bad);
    return 1;
  }
  for (std::string *s : handed) {
    if (!tsr_owns(s) || (s->size() > 15 && !tsr_owns(s->data()))) {
      std::fputs("exit_alloc_cxx_helper: a string is not tessera's\n", stderr);
      return 3;
    }
    delete s;
  }
  handed.clear();
  handed.shrink_to_fit();
  tsr_collect();
  bad = tsr_check();
  if (bad != 0 || failures != 0) {
    std::fprintf(stderr, "exit_alloc_cxx_helper: tsr_check found %zu problems after, %d failures\n", bad, failures);
    return 1;
  }
  return 0;
}

tsr_stats_t stats_now() {
  tsr_stats_t s;
  std::memset(&s, 0, sizeof s);
  s.size = sizeof s;
  if (tsr_stats_get(&s) != 0) std::abort();
  return s;
}

}  // namespace

int main() {
  tsr_stats_t after[2];
  for (unsigned batch = 0; batch < 2; batch++) {
    int rc = run_batch(batch);
    if (rc != 0) return rc;
    after[batch] = stats_now();
  }
  uint64_t held[2];
  for (int b = 0; b < 2; b++) held[b] = after[b].committed - after[b].metadata;
  std::printf("live_blocks %llu -> %llu, committed less records %llu -> %llu\n",
              static_cast<unsigned long long>(after[0].live_blocks),
              static_cast<unsigned long long>(after[1].live_blocks), static_cast<unsigned long long>(held[0]),
              static_cast<unsigned long long>(held[1]));
  if (after[1].live_blocks > after[0].live_blocks) {
    std::fprintf(stderr, "exit_alloc_cxx_helper: %llu more blocks live after the second batch\n",
                 static_cast<unsigned long long>(after[1].live_blocks - after[0].live_blocks));
    return 1;
  }
  if (held[1] > held[0] + (static_cast<uint64_t>(kBatchThreads) << 16) / 4) {
    std::fprintf(stderr, "exit_alloc_cxx_helper: committed grew from %llu to %llu bytes in the second batch\n",
                 static_cast<unsigned long long>(held[0]), static_cast<unsigned long long>(held[1]));
    return 1;
  }
  return 0;
}
