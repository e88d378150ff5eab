// report_dlopen_helper.cpp: a C++ program whose heap is the C library's
// and which loads libtessera.so with dlopen (RTLD_LOCAL), for
// test_report.c's check that a report written there decodes C++ names
// without handing the C++ runtime's buffers to tessera's free (they come
// from the process's malloc):
//
//   report_dlopen_helper /path/to/libtessera.so
//
// It allocates through tsr_malloc from app::grab(), tracked in full, writes
// a text report into memory and prints "ok" when the report names
// app::grab().
#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "tessera.h"
#include "tsr_sites.h"

typedef void *malloc_fn(size_t);

namespace app {
TSR_ALLOC_FN void *grab(malloc_fn *m) {
  void *p = m(100);
  TSR_KEEP(p);
  return p;
}
}  // namespace app

static void collect(const char *text, size_t len, void *arg) { static_cast<std::string *>(arg)->append(text, len); }

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return 2;
  auto track_set = reinterpret_cast<int (*)(tsr_track_t)>(dlsym(lib, "tsr_track_set"));
  auto tmalloc = reinterpret_cast<malloc_fn *>(dlsym(lib, "tsr_malloc"));
  auto report = reinterpret_cast<int (*)(tsr_format_t, tsr_output_fn *, void *)>(dlsym(lib, "tsr_report"));
  if (track_set == nullptr || tmalloc == nullptr || report == nullptr || track_set(TSR_TRACK_FULL) != 0) return 2;
  if (app::grab(tmalloc) == nullptr) return 1;
  std::string text;
  if (report(TSR_FORMAT_TEXT, collect, &text) != 0) return 1;
  if (text.find("app::grab(void* (*)(unsigned long))") == std::string::npos) {
    std::fputs(text.c_str(), stderr);
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
