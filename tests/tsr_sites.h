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

#endif /* TSR_SITES_H */
