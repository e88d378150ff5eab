/* symbols_elf.c: naming code addresses for the report writers (os.h:
 * tsri_os_symbolize).  A first version on dladdr: exported names only. */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "os.h"

#include <dlfcn.h>
#include <errno.h>
#include <string.h>

static void copy(char *dst, size_t size, const char *src) {
  size_t n = src ? strlen(src) : 0;
  if (n >= size) n = size - 1;
  if (n) memcpy(dst, src, n);
  dst[n] = 0;
}

void tsri_os_symbols_begin(void) {}
void tsri_os_symbols_end(void) {}

int tsri_os_symbolize(const void *addr, tsri_os_symbol_t *out) {
  memset(out, 0, sizeof *out);
  Dl_info info;
  if (dladdr((const char *)addr - 1, &info) == 0) return ENOENT;
  copy(out->function, sizeof out->function, info.dli_sname);
  copy(out->module, sizeof out->module, info.dli_fname);
  out->offset = info.dli_saddr ? (uintptr_t)addr - (uintptr_t)info.dli_saddr : 0;
  out->module_offset = (uintptr_t)addr - (uintptr_t)info.dli_fbase;
  return 0;
}
