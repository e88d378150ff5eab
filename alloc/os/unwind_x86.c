/* unwind_x86.c: the fast stack walk for tsri_os_stack_capture (unwind_x86.h:
 * tsri_unwind_walk), for code built without frame pointers: on x86-64
 * Linux, and on i686 Windows, where RtlCaptureStackBackTrace follows the
 * EBP chain only.
 *
 * Why it is fast.  To step from a frame to its caller the walk needs three
 * facts about the frame's return address: where the CFA (the caller's
 * stack pointer) is, SP + k or FP + k (FP: RBP or EBP; SP: RSP or ESP);
 * where FP was saved, at CFA + off or not at all; and that the return
 * address sits one word below the CFA.  They depend on the return address
 * only, so the walk computes them once from the FDE that covers it, in
 * the module's .eh_frame, and keeps them in a fixed, lock-free table.  An
 * allocation profile revisits the same few hundred call sites, so nearly
 * every step is a table hit: a hash, four loads and two stack reads,
 * instead of libgcc's reinterpretation of the whole CFI program of every
 * frame.
 *
 * What it owns: the rule table and the walk.  What it leaves to
 * unwind_eh.c (ELF) and unwind_pe.c (PE): computing a rule on a table
 * miss (finding the module that holds the return address, its FDE, and
 * having cfi.c interpret it: the subset compilers emit for ordinary x86
 * functions); the rule word is cfi.h's.  What it leaves to the caller
 * (unwind.c, windows_symbols.c): everything else.  On Linux a rule the
 * three facts cannot say (CFA expressions, as in frames that realign the
 * stack; signal frames; registers other than SP and FP as the CFA base; FP
 * kept in another register) is cached as "fall back", and the capture is
 * then redone by _Unwind_Backtrace from the start.  So when this walk
 * answers there, it gives what libgcc gives: the same FDE (the
 * eh_frame_hdr search for pc - 1), the same instructions executed, the
 * same end (a return address of 0, a frame whose return address rule is
 * DW_CFA_undefined, as glibc's _start and clone3 have, or one with no
 * FDE, which is reported and ends the stack).  On Windows unwind_pe.c ends
 * the stack at such a frame instead (unwind_pe.c says why).
 *
 * Why it does not fault.  The walk reads the stack only at CFA - word and
 * CFA + off, and the code word before each return address.  With rules
 * taken from the frames' real FDEs every CFA is a live frame of this
 * thread's stack, by induction from the walk's own frame.  Two guards
 * cover a rule that is no longer true: a table entry carries the 8 code
 * bytes around its return address and is used only while they are
 * unchanged (a module unloaded and another loaded at the same address
 * has other code there; only the same 8 bytes at the same address with a
 * different frame layout would pass), and every CFA must lie above the
 * previous one by at most STEP_MAX, or the caller's fallback takes over.
 *
 * The table: SLOTS entries of (sequence, pc, code, rule), open addressing
 * over PROBES slots, of which only the first 2^table_use.bits are in use:
 * that starts at one page and doubles when half of it has been filled,
 * so a program with a few call sites touches a page or two of the
 * table's bss, not one page per return address.  An entry placed under a
 * smaller table stays true after a doubling; lookups that no longer reach
 * it miss and fill another slot.  Any thread inserts; a writer claims a slot by moving
 * its sequence to odd, a reader uses an entry only when the sequence was
 * even and unchanged around its reads (a seqlock), so it never acts on a
 * half-written entry.  Losing a race loses only a cache entry.  Nothing
 * here allocates.
 */
#include "unwind_x86.h"

#if TSRI_UNWIND_FAST

#include <stdatomic.h>
#include <stdbool.h>

/* The walk reads other frames' saved registers and code bytes, which the
 * address and thread sanitizers would take for wild accesses. */
#define RAW_READS __attribute__((no_sanitize("address", "thread")))

/* ------------------------------------------------------------------------
 * The rule table
 * ---------------------------------------------------------------------- */

#define SLOT_BITS 13       /* at most 8192 slots, 256 KiB of bss */
#define SLOT_BITS_FIRST 7  /* 128 slots: one page */
#define SLOTS ((size_t)1 << SLOT_BITS)
#define PROBES 4

typedef struct slot_s {
  _Atomic uint64_t seq;  /* even: stable; odd: a writer is filling the slot */
  _Atomic uint64_t pc;   /* the return address; 0: empty */
  _Atomic uint64_t code; /* the aligned code word holding pc - 1, when cached */
  _Atomic uint64_t rule; /* tsri_rule_step() or TSRI_RULE_END / TSRI_RULE_FALLBACK */
} slot_t;

static _Alignas(4096) slot_t table[SLOTS];   /* the first 128 slots: one page */
/* How much of the table is in use.  One initialised object, so that both
 * counters lie in .data with the library's other settings: a zeroed one
 * in .bss could land alone in the page before the table (which is
 * page-aligned) and cost a page of memory for 8 bytes. */
static struct {
  _Atomic unsigned bits; /* slots in use: 2^bits */
  _Atomic size_t filled; /* empty slots filled so far */
} table_use = { SLOT_BITS_FIRST, 0 };

static size_t slot_home(uintptr_t pc, unsigned bits) {
  return (size_t)(((uint64_t)pc * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* The entry for pc: its rule and the code word it was computed with.  The
 * loads are acquire so that none moves past the second read of seq; on
 * x86-64 they are plain moves. */
static bool table_find(uintptr_t pc, uint64_t *rule, uint64_t *code) {
  unsigned bits = atomic_load_explicit(&table_use.bits, memory_order_relaxed);
  size_t mask = ((size_t)1 << bits) - 1, i = slot_home(pc, bits);
  for (unsigned probe = 0; probe < PROBES; probe++, i = (i + 1) & mask) {
    slot_t *s = &table[i];
    uint64_t seq = atomic_load_explicit(&s->seq, memory_order_acquire);
    uint64_t key = atomic_load_explicit(&s->pc, memory_order_acquire);
    if (key == 0) return false;
    if (key != pc) continue;
    *code = atomic_load_explicit(&s->code, memory_order_acquire);
    *rule = atomic_load_explicit(&s->rule, memory_order_acquire);
    return (seq & 1) == 0 && atomic_load_explicit(&s->seq, memory_order_relaxed) == seq;
  }
  return false;
}

/* Store pc's rule in the first of its probe slots that is empty or already
 * pc's, else over one of them chosen by pc.  Gives up if another writer
 * holds the slot.  Filling an empty slot may double the table. */
static void table_insert(uintptr_t pc, uint64_t code, uint64_t rule) {
  unsigned bits = atomic_load_explicit(&table_use.bits, memory_order_relaxed);
  size_t mask = ((size_t)1 << bits) - 1, home = slot_home(pc, bits);
  size_t pick = (home + ((pc >> 4) & (PROBES - 1))) & mask;
  bool fills = false;
  for (size_t probe = 0; probe < PROBES; probe++) {
    size_t i = (home + probe) & mask;
    uint64_t key = atomic_load_explicit(&table[i].pc, memory_order_relaxed);
    if (key == 0 || key == pc) {
      pick = i;
      fills = key == 0;
      break;
    }
  }
  slot_t *s = &table[pick];
  uint64_t seq = atomic_load_explicit(&s->seq, memory_order_relaxed);
  if ((seq & 1) != 0 ||
      !atomic_compare_exchange_strong_explicit(&s->seq, &seq, seq + 1, memory_order_relaxed,
                                               memory_order_relaxed))
    return;
  /* release: a reader that sees any new field also sees the odd seq */
  atomic_store_explicit(&s->pc, pc, memory_order_release);
  atomic_store_explicit(&s->code, code, memory_order_release);
  atomic_store_explicit(&s->rule, rule, memory_order_release);
  atomic_store_explicit(&s->seq, seq + 2, memory_order_release);
  if (fills && bits < SLOT_BITS &&
      (atomic_fetch_add_explicit(&table_use.filled, 1, memory_order_relaxed) + 1) * 2 > mask + 1)
    atomic_compare_exchange_strong_explicit(&table_use.bits, &bits, bits + 1, memory_order_relaxed,
                                            memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * The walk
 * ---------------------------------------------------------------------- */

/* The largest frame the walk takes on trust; a larger step goes to the fallback. */
#define STEP_MAX ((uintptr_t)1 << 20)

typedef uintptr_t __attribute__((aligned(1), may_alias)) raw_word_t;

static inline RAW_READS uintptr_t peek(uintptr_t addr) { return *(const raw_word_t *)addr; }

/* The 8 code bytes of the aligned block holding pc - 1, which lies in
 * pc - 1's page. */
static inline RAW_READS uint64_t code_at(uintptr_t pc) {
  return *(const uint64_t *)((pc - 1) & ~(uintptr_t)7);
}

/* pc's rule, from the table while the code around pc is what it was. */
static inline RAW_READS uint64_t rule_for(uintptr_t pc) {
  uint64_t rule, code;
  if (table_find(pc, &rule, &code) && code == code_at(pc)) return rule;
  /* only now is pc known to lie in a loaded module, so its code readable */
  rule = tsri_unwind_rule_compute(pc);
  if (rule != TSRI_RULE_NONE) table_insert(pc, code_at(pc), rule);
  return rule;
}

/* Note in w that the walk read value at addr; false when w is full or addr
 * out of its reach. */
static inline bool note_read(tsri_os_memo_way_t *w, uintptr_t fp, uintptr_t addr, uintptr_t value) {
  if (w->reads == TSRI_OS_MEMO_READS || addr < fp || addr - fp > UINT32_MAX) return false;
  w->off[w->reads] = (uint32_t)(addr - fp);
  w->val[w->reads] = value;
  w->reads++;
  return true;
}

RAW_READS size_t tsri_unwind_walk(void *fp, void **frames, size_t max, size_t skip,
                                  tsri_os_memo_way_t *w) {
  const uintptr_t word = sizeof(uintptr_t);
  /* fp points at the saved FP, with the return address above it */
  uintptr_t base = (uintptr_t)fp;
  uintptr_t sp = base + 2 * word;
  uintptr_t fp_at = base;   /* where FP was read; 0 once the memo has it */
  uintptr_t fpv = peek(fp_at);
  uintptr_t pc = peek(base + word);
  /* The memo keeps the words the walk's answer depends on: every return
   * address read, and a saved FP only when a CFA was computed from it
   * (most FPs read are the program's, reused as a general register). */
  bool memo = w != NULL;
  if (memo) {
    w->reads = 0;
    memo = note_read(w, base, base + word, pc);
  }
  size_t n = 0;
  while (pc != 0) {
    if (skip > 0) {
      skip--;
    } else {
      frames[n++] = (void *)pc;
      if (n == max) break;
    }
    uint64_t rule = rule_for(pc);
    unsigned kind = TSRI_RULE_KIND(rule);
    if (kind == TSRI_RULE_FALLBACK) return TSRI_UNWIND_FALLBACK;
    if (kind != TSRI_RULE_STEP) break;
    if ((rule & TSRI_RULE_CFA_FP) && memo && fp_at != 0) {
      memo = note_read(w, base, fp_at, fpv);
      fp_at = 0;
    }
    uintptr_t cfa = ((rule & TSRI_RULE_CFA_FP) ? fpv : sp) + (uintptr_t)tsri_rule_cfa_offset(rule);
    if (cfa <= sp || cfa - sp > STEP_MAX) return TSRI_UNWIND_FALLBACK;
    if (rule & TSRI_RULE_FP_SAVED) {
      fp_at = cfa + (uintptr_t)tsri_rule_fp_offset(rule);
      fpv = peek(fp_at);
    }
    pc = peek(cfa - word);
    if (memo) memo = note_read(w, base, cfa - word, pc);
    sp = cfa;
  }
  if (w != NULL && !memo) w->reads = UINT32_MAX;
  return n;
}

#endif /* TSRI_UNWIND_FAST */
