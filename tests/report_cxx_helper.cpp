// report_cxx_helper.cpp: a C++ program linked to the override
// (libtessera.so), for test_report.c's check that the report at exit of a
// C++ program lists exactly its leaks, each under the function of the
// program that made it:
//
//   TESSERA_TRACK=full TESSERA_REPORT=PATH TESSERA_REPORT_FORMAT=json report_cxx_helper
//
// It leaks 3 nodes (new, 48 bytes each) from leak_nodes, an array of 250
// ints (new[], 1000 bytes) from leak_array, and a std::string of 200
// characters from leak_text: the string object (32 bytes, new) and its
// buffer (201 bytes, allocated inside the C++ library); and one block
// of 64 bytes from app::store::keep, a member function whose name the
// report prints decoded.  Everything else
// it allocates (containers, streams, an exception thrown and caught) it
// frees, and the C++ library's own pool for exceptions is not a leak.
// With the argument "expect" it marks app::store::keep() as expected
// (tsr_leak_expect_function, by the decoded name).  It prints "ok", and
// exits 3 when its blocks are not tessera's.  The sizes are libstdc++'s
// (a std::string object of 32 bytes), as the test expects them.
#include <cstdio>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "tessera.h"
#include "tsr_sites.h"

struct node {
  node *next;
  char payload[40];
};

static void *leaked[6];

extern "C" TSR_ALLOC_FN void leak_nodes(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(3); i++) {
    leaked[i] = new node();
    TSR_KEEP(leaked[i]);
  }
}

extern "C" TSR_ALLOC_FN void leak_array(void) {
  leaked[3] = new int[250];
  TSR_KEEP(leaked[3]);
}

extern "C" TSR_ALLOC_FN void leak_text(void) {
  leaked[4] = new std::string(200, 'x');
  TSR_KEEP(leaked[4]);
}

namespace app {
struct store {
  TSR_ALLOC_FN void keep();
};

TSR_ALLOC_FN void store::keep() {
  leaked[5] = new char[64];
  TSR_KEEP(leaked[5]);
}
}  // namespace app

static int busy(void) {
  std::map<std::string, std::vector<int>> m;
  for (int i = 0; i < 200; i++) m["key" + std::to_string(i)].assign(static_cast<size_t>(i), i);
  std::ostringstream os;
  for (const auto &kv : m) os << kv.first << kv.second.size();
  int caught = 0;
  try {
    throw std::runtime_error("an exception, thrown and caught");
  } catch (const std::exception &e) {
    caught = e.what()[0] == 'a';
  }
  return static_cast<int>(os.str().size()) + caught;
}

int main(int argc, char **argv) {
  if (argc > 1 && std::string(argv[1]) == "expect" && tsr_leak_expect_function("app::store::keep()") != 0) return 4;
  leak_nodes();
  leak_array();
  leak_text();
  app::store().keep();
  if (!tsr_owns(leaked[0]) || !tsr_owns(leaked[4])) return 3;   // new really reaches tessera
  if (busy() == 0) return 1;
  std::printf("ok\n");
  return 0;
}
