/* unwind_x86_64.h: the fast stack walk behind tsri_os_stack_capture,
 * private to alloc/os/ (unwind.c calls it) and to tests/test_unwind.c,
 * which holds it against libgcc's unwinder.  Its second half is what the
 * walk's two files share: the rule word, which unwind_eh.c computes from
 * an object's unwind tables and unwind_x86_64.c caches and steps by.
 *
 * Only x86-64 Linux has it (unwind_x86_64.c, unwind_eh.c); elsewhere
 * TSRI_UNWIND_FAST is 0 and unwind.c uses _Unwind_Backtrace alone.
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

/* ------------------------------------------------------------------------
 * Rules: shared by unwind_eh.c (which computes them) and unwind_x86_64.c
 * (which caches them and steps by them)
 * ---------------------------------------------------------------------- */

/* A rule in one word: bits 0-1 the kind, bit 2 CFA = RBP + k (else
 * RSP + k), bit 3 RBP saved, bits 16-31 RBP's offset from the CFA (int16),
 * bits 32-63 k (int32). */
enum {
  TSRI_RULE_NONE = 0,     /* pc lies in no loaded object: report it, stop (never cached) */
  TSRI_RULE_STEP = 1,     /* step to the caller with the offsets */
  TSRI_RULE_END = 2,      /* report pc, stop: outermost frame, or no FDE */
  TSRI_RULE_FALLBACK = 3, /* libgcc must walk this stack */
};
#define TSRI_RULE_KIND(r) ((unsigned)((r) & 3))
#define TSRI_RULE_CFA_RBP 4u
#define TSRI_RULE_RBP_SAVED 8u

static inline uint64_t tsri_rule_step(bool cfa_rbp, int64_t k, bool rbp_saved, int64_t rbp_off) {
  if (k != (int32_t)k || rbp_off != (int16_t)rbp_off) return TSRI_RULE_FALLBACK;
  return TSRI_RULE_STEP | (cfa_rbp ? TSRI_RULE_CFA_RBP : 0) | (rbp_saved ? TSRI_RULE_RBP_SAVED : 0) |
         ((uint64_t)(uint16_t)rbp_off << 16) | ((uint64_t)(uint32_t)k << 32);
}

static inline int64_t tsri_rule_cfa_offset(uint64_t r) { return (int32_t)(uint32_t)(r >> 32); }
static inline int64_t tsri_rule_rbp_offset(uint64_t r) { return (int16_t)(uint16_t)(r >> 16); }

/* The rule for the frame at return address pc, from the FDE covering
 * pc - 1 in the object that holds it (unwind_eh.c): read from the object's
 * file where it can be, else in place.  TSRI_RULE_NONE when pc lies in no
 * loaded object.  Lock-free, never allocates; the walk calls it only when
 * its table has no rule for pc. */
tsri_hidden uint64_t tsri_unwind_rule_compute(uintptr_t pc);

#else
#define TSRI_UNWIND_FAST 0
#endif

#endif /* TSR_UNWIND_X86_64_H */
