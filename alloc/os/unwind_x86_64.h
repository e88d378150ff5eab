/* unwind_x86_64.h: the fast stack walk behind tsri_os_stack_capture,
 * private to alloc/os/ (unwind.c calls it) and to tests/test_unwind.c,
 * which holds it against libgcc's unwinder.
 *
 * Only x86-64 Linux has it (unwind_x86_64.c); elsewhere TSRI_UNWIND_FAST
 * is 0 and unwind.c uses _Unwind_Backtrace alone.
 */
#ifndef TSR_UNWIND_X86_64_H
#define TSR_UNWIND_X86_64_H

#include <stddef.h>
#include <stdint.h>

#include "os.h"

#if defined(__x86_64__) && defined(__linux__)
#define TSRI_UNWIND_FAST 1

/* tsri_unwind_walk's answer when it cannot follow the stack the way
 * _Unwind_Backtrace would; the caller must then ask libgcc. */
#define TSRI_UNWIND_FALLBACK SIZE_MAX

/* Walk the calling thread's stack from the frame whose frame pointer is fp
 * (the value of __builtin_frame_address(0) in a function that is still
 * running, not a leaf the walk has returned from): frames[0] is that
 * function's return address, after `skip` frames are dropped.  Stores at
 * most max (>= 1) return addresses and returns how many, or
 * TSRI_UNWIND_FALLBACK.  When it answers, the answer is the one
 * _Unwind_Backtrace gives.  Lock-free, never allocates. */
/* With w non-NULL the walk also notes in w the stack words its answer
 * depends on (w->reads = UINT32_MAX: too many to note).  While those words
 * hold what they held, a walk from the same fp gives the same answer:
 * tsri_os_stack_memo_find (os.h) checks them. */
tsri_hidden size_t tsri_unwind_walk(void *fp, void **frames, size_t max, size_t skip,
                                    tsri_os_memo_way_t *w);

#else
#define TSRI_UNWIND_FAST 0
#endif

#endif /* TSR_UNWIND_X86_64_H */
