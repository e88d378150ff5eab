/* test_symbols.c: naming code addresses (os.h: tsri_os_symbolize), the
 * lookup behind the function, file and line of every frame in a report.
 *
 * A return address taken in this file must name the calling function, this
 * file and the line of the call, read from the test's own symbol table and
 * DWARF line tables (this program is compiled with -g).  An address in the
 * C library must name the library and the function; an address in no
 * module gives ENOENT; and a batch, which keeps files open between
 * lookups, must answer exactly as single lookups do.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <dlfcn.h>

#include "os/os.h"

/* A data object: inside the test's module but in no function. */
static int symbols_data[64];

static __attribute__((noinline)) void *symbols_return_address(void) {
  return __builtin_return_address(0);
}

/* The return address of a call made on the line stored in *line (one
 * line for both, so that __LINE__ is the call's). */
static __attribute__((noinline)) void *symbols_caller(unsigned *line) {
  void *ra = symbols_return_address(); *line = __LINE__;
  /* keep the call from becoming a tail call (the frame must be ours) */
  __asm__ volatile("" ::: "memory");
  return ra;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* `write` as the C library defines it: under ASan, &write in this program
 * is the sanitizer's wrapper, so ask libc.so.6 itself. */
static void *libc_write(void) {
  void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
  cr_assert_not_null(libc, "libc.so.6 is not loaded: %s", dlerror());
  void *fn = dlsym(libc, "write");
  cr_assert_not_null(fn);
  dlclose(libc);
  return fn;
}

/* Only the cr_assert family: TSan builds run the tests with the stand-in
 * in tsr_criterion.h, which has no cr_expect. */
static bool same(const char *a, const char *b) { return strcmp(a, b) == 0; }

static void assert_same(const tsri_os_symbol_t *a, const tsri_os_symbol_t *b, const void *addr) {
  cr_assert(same(a->function, b->function), "function at %p: %s, %s", addr, a->function,
            b->function);
  cr_assert_eq(a->offset, b->offset, "offset at %p", addr);
  cr_assert(same(a->module, b->module), "module at %p: %s, %s", addr, a->module, b->module);
  cr_assert_eq(a->module_offset, b->module_offset, "module offset at %p", addr);
  cr_assert(same(a->file, b->file), "file at %p: %s, %s", addr, a->file, b->file);
  cr_assert_eq(a->line, b->line, "line at %p", addr);
}

Test(symbols, return_address_names_caller_file_and_line) {
  unsigned line = 0;
  void *ra = symbols_caller(&line);
  tsri_os_symbol_t sym;
  errno = 1234;
  cr_assert_eq(tsri_os_symbolize(ra, &sym), 0);
  cr_assert_eq(errno, 1234, "errno changed to %d", errno);
  cr_assert(same(sym.function, "symbols_caller"), "function \"%s\"", sym.function);
  cr_assert_eq((uintptr_t)ra - sym.offset, (uintptr_t)&symbols_caller,
               "offset %#lx does not lead back to the function", (unsigned long)sym.offset);
  cr_assert(ends_with(sym.file, "test_symbols.c"), "file \"%s\"", sym.file);
  cr_assert_eq(sym.line, line, "line %u, the call is on line %u", sym.line, line);
  cr_assert(ends_with(sym.module, "test_symbols"), "module \"%s\"", sym.module);
  Dl_info info;
  cr_assert_neq(dladdr(ra, &info), 0);
  cr_assert_eq(sym.module_offset, (uintptr_t)ra - (uintptr_t)info.dli_fbase);
}

Test(symbols, libc_function_names_libc) {
  char *fn = (char *)libc_write() + 4 + 1;  /* +1: symbolize looks up addr - 1 */
  tsri_os_symbol_t sym;
  cr_assert_eq(tsri_os_symbolize(fn, &sym), 0);
  cr_assert(strstr(sym.module, "libc") != NULL, "module \"%s\"", sym.module);
  cr_assert(strstr(sym.function, "write") != NULL, "function \"%s\"", sym.function);
  cr_assert_eq(sym.offset, 5, "offset %lu", (unsigned long)sym.offset);
}

Test(symbols, data_is_in_the_module_but_no_function) {
  tsri_os_symbol_t sym;
  cr_assert_eq(tsri_os_symbolize(&symbols_data[8], &sym), 0);
  cr_assert(ends_with(sym.module, "test_symbols"), "module \"%s\"", sym.module);
  cr_assert(same(sym.function, ""), "function \"%s\"", sym.function);
  cr_assert_eq(sym.line, 0);
}

Test(symbols, address_outside_every_module_is_enoent) {
  tsri_os_symbol_t sym;
  errno = 77;
  cr_assert_eq(tsri_os_symbolize((void *)16, &sym), ENOENT);
  cr_assert_eq(errno, 77);
  cr_assert_eq(tsri_os_symbolize(NULL, &sym), ENOENT);
  cr_assert(same(sym.function, "") && same(sym.module, ""));
}

Test(symbols, batch_answers_as_single_lookups) {
  enum { N = 200 };
  static void *addrs[N];
  static tsri_os_symbol_t single[N], batch[N];
  unsigned line;
  void *ra = symbols_caller(&line);
  char *write_fn = libc_write();
  char *test_fn = (char *)&symbols_caller;
  for (size_t i = 0; i < N; i++) {
    switch (i % 5) {
    case 0: addrs[i] = ra; break;
    case 1: addrs[i] = write_fn + 1 + i % 16; break;
    case 2: addrs[i] = test_fn + 1 + i % 24; break;
    case 3: addrs[i] = (char *)&tsr_malloc + 1 + i % 32; break;
    default: addrs[i] = i % 2 ? (void *)16 : (void *)&symbols_data[i % 64]; break;
    }
  }
  int rc[N];
  for (size_t i = 0; i < N; i++) rc[i] = tsri_os_symbolize(addrs[i], &single[i]);
  tsri_os_symbols_begin();
  for (size_t i = 0; i < N; i++)
    cr_assert_eq(tsri_os_symbolize(addrs[i], &batch[i]), rc[i], "rc at %p", addrs[i]);
  tsri_os_symbols_end();
  for (size_t i = 0; i < N; i++) assert_same(&single[i], &batch[i], addrs[i]);
  cr_assert(same(batch[0].function, "symbols_caller"), "function \"%s\"", batch[0].function);
  cr_assert_eq(batch[0].line, line);
  cr_assert(same(batch[3].function, "tsr_malloc"), "function \"%s\"", batch[3].function);
}
