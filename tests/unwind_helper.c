/* unwind_helper.c: a shared object whose frames test_unwind walks through,
 * to see where the walk reads the object's unwind tables from (its file,
 * or its pages in memory).  Built -O2 -fomit-frame-pointer twice
 * (tests/CMakeLists.txt): UNWIND_HELPER_VARIANT 1 puts more code ahead of
 * the entry point, so that its FDEs, and its build-id, differ from
 * variant 0's.
 */
#include <stddef.h>

typedef void (*unwind_helper_fn)(void *);

#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

#if UNWIND_HELPER_VARIANT
/* Only here to move what follows. */
__attribute__((noinline, used)) int unwind_helper_pad(const int *v, int n) {
  int sum = 0;
  for (int i = 0; i < n; i++) sum += v[i] * (i | 1) + (v[i] >> 3);
  return sum;
}
#endif

/* Frames with arrays on the stack, so that the rules say RSP + k. */
static __attribute__((noinline)) int inner(unwind_helper_fn fn, void *arg, int depth) {
  char buf[48 + 16 * (depth & 1)];
  KEEP(buf);
  if (depth == 0) fn(arg);
  int r = depth == 0 ? 0 : inner(fn, arg, depth - 1);
  KEEP(buf);
  return r + 1;
}

/* Call fn(arg) four frames of this object down. */
__attribute__((visibility("default"))) int unwind_helper_call(unwind_helper_fn fn, void *arg) {
  int r = inner(fn, arg, 3);
  KEEP(arg);
  return r;
}
