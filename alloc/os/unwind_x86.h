/* unwind_x86.h: the fast stack walk behind tsri_os_stack_capture,
 * private to alloc/os/ and to tests/test_unwind.c, which holds it against
 * libgcc's unwinder.  The walk and its rule table are unwind_x86.c's; the
 * rule for a return address is computed from the unwind tables of the
 * module that holds it, by the file that knows the platform's modules:
 *
 *   x86-64 Linux    unwind_eh.c (ELF objects, .eh_frame_hdr); unwind.c
 *                   calls the walk and falls back on libgcc
 *   i686 Windows    unwind_pe.c (PE images, their .eh_frame);
 *                   windows_symbols.c calls the walk and falls back on
 *                   RtlCaptureStackBackTrace
 *
 * Both interpret the tables with cfi.c, into the rule word of cfi.h.
 * Elsewhere TSRI_UNWIND_FAST is 0: unwind.c uses _Unwind_Backtrace alone
 * (other POSIX systems), RtlCaptureStackBackTrace unwinds with .pdata
 * (x86-64 Windows).
 */
#ifndef TSR_UNWIND_X86_H
#define TSR_UNWIND_X86_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os.h"

#if (defined(__x86_64__) && defined(__linux__)) || (defined(__i386__) && defined(_WIN32))
#define TSRI_UNWIND_FAST 1

#include "cfi.h"

/* tsri_unwind_walk's answer when it cannot follow the stack the way the
 * platform's own unwinder would; the caller must then ask that one. */
#define TSRI_UNWIND_FALLBACK SIZE_MAX

/* Walk the calling thread's stack from the frame whose frame pointer is fp
 * (the value of __builtin_frame_address(0) in a function that is still
 * running, not a leaf the walk has returned from): frames[0] is that
 * function's return address, after `skip` frames are dropped.  Stores at
 * most max (>= 1) return addresses and returns how many, or
 * TSRI_UNWIND_FALLBACK.  On Linux, when it answers, the answer is the one
 * _Unwind_Backtrace gives.  Lock-free, never allocates. */
/* With w non-NULL the walk also notes in w the stack words its answer
 * depends on (w->reads = UINT32_MAX: too many to note).  While those words
 * hold what they held, a walk from the same fp gives the same answer:
 * tsri_os_stack_memo_find (os.h) checks them. */
tsri_hidden size_t tsri_unwind_walk(void *fp, void **frames, size_t max, size_t skip,
                                    tsri_os_memo_way_t *w);

/* The rule for the frame at return address pc, from the FDE covering
 * pc - 1 in the module that holds it (unwind_eh.c, unwind_pe.c).
 * TSRI_RULE_NONE when pc lies in no loaded module.  Lock-free, never
 * allocates; the walk calls it only when its table has no rule for pc. */
tsri_hidden uint64_t tsri_unwind_rule_compute(uintptr_t pc);

#if defined(__linux__)
/* How many rules the walk has computed (once per return address) from
 * the objects' files and from their tables in place (unwind_eh.c,
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
#endif

#else
#define TSRI_UNWIND_FAST 0
#endif

#endif /* TSR_UNWIND_X86_H */
