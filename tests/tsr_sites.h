/* tsr_sites.h: keeping a test's allocating functions recognisable in the
 * call stacks the reports record.  Each allocating function must make its
 * calls from one call instruction of its own: not inlined, split or cloned
 * (TSR_ALLOC_FN), loops not unrolled (TSR_ONE_CALL), and no tail call to
 * tsr_malloc (TSR_KEEP on the result after the call).
 */
#ifndef TSR_SITES_H
#define TSR_SITES_H

#if defined(__clang__)
#define TSR_ALLOC_FN __attribute__((noinline, used))
#else
#define TSR_ALLOC_FN __attribute__((noipa, used))
#endif
#define TSR_ONE_CALL _Pragma("GCC unroll 1")
/* n, hidden from the optimiser: a loop of a known small count is unrolled
 * whatever TSR_ONE_CALL says */
static inline int tsr_opaque_count(int n) {
  __asm__("" : "+r"(n));
  return n;
}
#define TSR_KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

/* A call stack of its own for each k: TSR_STACK_PER_K(name, count, size)
 * defines name_a and name_b; name_a(k, bits, out) is a chain of `bits`
 * calls, each level run by name_b where its bit of k is set and by name_a
 * where it is clear (so the functions the return addresses lie in spell
 * k), down to a loop of count (an expression in k) allocations of size
 * bytes into out. */
#define TSR_STACK_PER_K_LEVEL(name, k, level, out, count, size)                \
  do {                                                                         \
    if ((level) == 0) {                                                        \
      TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(count); i++) {        \
        (out)[i] = tsr_malloc(size);                                           \
        TSR_KEEP((out)[i]);                                                    \
      }                                                                        \
    } else if (((k) >> ((level) - 1)) & 1) {                                   \
      name##_b(k, (level) - 1, out);                                           \
    } else {                                                                   \
      name##_a(k, (level) - 1, out);                                           \
    }                                                                          \
    TSR_KEEP(out);                                                             \
  } while (0)

#define TSR_STACK_PER_K(name, count, size)                                                 \
  static TSR_ALLOC_FN void name##_a(unsigned k, unsigned level, void **out);               \
  static TSR_ALLOC_FN void name##_b(unsigned k, unsigned level, void **out);               \
  static TSR_ALLOC_FN void name##_a(unsigned k, unsigned level, void **out) {              \
    TSR_STACK_PER_K_LEVEL(name, k, level, out, count, size);                               \
  }                                                                                        \
  static TSR_ALLOC_FN void name##_b(unsigned k, unsigned level, void **out) {              \
    TSR_STACK_PER_K_LEVEL(name, k, level, out, count, size);                               \
  }

#endif /* TSR_SITES_H */
