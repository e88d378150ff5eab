/* unwind_x86_64.h: the fast stack walk behind tsri_os_stack_capture,
 * private to alloc/os/ (unwind.c calls it) and to tests/test_unwind.c,
 * which holds it against libgcc's unwinder.
 *
 * Only x86-64 Linux has it (unwind_x86_64.c); elsewhere TSRI_UNWIND_FAST
 * is 0 and unwind.c uses _Unwind_Backtrace alone.
 */
#ifndef TSR_UNWIND_X86_64_H
#define TSR_UNWIND_X86_64_H

#include <stdbool.h>
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

/* How many rules the walk has computed (once per return address) from
 * the objects' files and from their tables in place (unwind_x86_64.c,
 * "where the tables are read from"). */
typedef struct tsri_unwind_reads_s {
  uint64_t from_file, in_place;
} tsri_unwind_reads_t;
tsri_hidden tsri_unwind_reads_t tsri_unwind_reads(void);

/* The rule for return address pc computed from the file of the object
 * holding pc and in place, without the table: tests/test_unwind.c holds
 * the two equal.  false when the file gave no answer (it cannot be read,
 * or is not the image loaded, or pc's FDE is too long for the walk's
 * buffers): *from_file is then no rule. */
tsri_hidden bool tsri_unwind_rule_both(uintptr_t pc, uint64_t *from_file, uint64_t *in_place);

#else
#define TSRI_UNWIND_FAST 0
#endif

#endif /* TSR_UNWIND_X86_64_H */
