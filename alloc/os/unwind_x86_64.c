/* unwind_x86_64.c: the fast stack walk for tsri_os_stack_capture on x86-64
 * Linux (unwind_x86_64.h: tsri_unwind_walk), for code built without frame
 * pointers.
 *
 * Why it is fast.  To step from a frame to its caller on x86-64 the walk
 * needs three facts about the frame's return address: where the CFA (the
 * caller's stack pointer) is, RSP + k or RBP + k; where RBP was saved, at
 * CFA + off or not at all; and that the return address sits at CFA - 8.
 * They depend on the return address only, so the walk computes them once
 * from the FDE that covers it, in the object's .eh_frame, and keeps them
 * in a fixed, lock-free table.  An allocation profile revisits the same
 * few hundred call sites, so nearly every step is a table hit: a hash,
 * four loads and two stack reads, instead of libgcc's reinterpretation of
 * the whole CFI program of every frame.
 *
 * What it owns: the rule table, finding and interpreting FDEs (the subset
 * compilers emit for ordinary x86-64 functions), and the walk.  What it
 * leaves to unwind.c: everything else.  A rule the three facts cannot say
 * (CFA expressions, as in frames that realign the stack; signal frames;
 * registers other than RSP and RBP as the CFA base; RBP kept in another
 * register) is cached as "fall back", and the capture is then redone by
 * _Unwind_Backtrace from the start.  So when this walk answers, it gives
 * what libgcc gives: the same FDE (the eh_frame_hdr search for pc - 1),
 * the same instructions executed, the same end (a return address of 0, a
 * frame whose return address rule is DW_CFA_undefined, as glibc's _start
 * and clone3 have, or one with no FDE, which is reported and ends the
 * stack).
 *
 * Why it does not fault.  The walk reads the stack only at CFA - 8 and
 * CFA + off, and the code word before each return address.  With rules
 * taken from the frames' real FDEs every CFA is a live frame of this
 * thread's stack, by induction from the walk's own frame.  Two guards
 * cover a rule that is no longer true: a table entry carries the 8 code
 * bytes around its return address and is used only while they are
 * unchanged (an object unloaded and another loaded at the same address
 * has other code there; only the same 8 bytes at the same address with a
 * different frame layout would pass), and every CFA must lie above the
 * previous one by at most STEP_MAX, or libgcc takes over.
 *
 * The table: SLOTS entries of (sequence, pc, code, rule), open addressing
 * over PROBES slots, of which only the first 2^table_bits are in use:
 * that starts at one page and doubles when half of it has been filled,
 * so a program with a few call sites touches a page or two of the
 * table's bss, not one page per return address.  An entry placed under a
 * smaller table stays true after a doubling; lookups that no longer reach
 * it miss and fill another slot.  Any thread inserts; a writer claims a slot by moving
 * its sequence to odd, a reader uses an entry only when the sequence was
 * even and unchanged around its reads (a seqlock), so it never acts on a
 * half-written entry.  Losing a race loses only a cache entry.  Objects
 * are found with _dl_find_object (glibc 2.35, lock-free), or with
 * dl_iterate_phdr where the C library lacks it, only on a miss.  Nothing
 * here allocates.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "unwind_x86_64.h"
#include "dwarf_read.h"

#if TSRI_UNWIND_FAST

#include <dlfcn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

/* glibc defines this in every <dlfcn.h> that declares _dl_find_object. */
#if defined(DLFO_STRUCT_HAS_EH_DBASE)
#define HAVE_DL_FIND_OBJECT 1
#else
#define HAVE_DL_FIND_OBJECT 0
#include <link.h>
#endif

/* The walk reads other frames' saved registers and code bytes, which the
 * address and thread sanitizers would take for wild accesses. */
#define RAW_READS __attribute__((no_sanitize("address", "thread")))

/* ------------------------------------------------------------------------
 * Rules
 * ---------------------------------------------------------------------- */

/* A rule in one word: bits 0-1 the kind, bit 2 CFA = RBP + k (else
 * RSP + k), bit 3 RBP saved, bits 16-31 RBP's offset from the CFA (int16),
 * bits 32-63 k (int32). */
enum {
  RULE_NONE = 0,     /* pc lies in no loaded object: report it, stop (never cached) */
  RULE_STEP = 1,     /* step to the caller with the offsets */
  RULE_END = 2,      /* report pc, stop: outermost frame, or no FDE */
  RULE_FALLBACK = 3, /* libgcc must walk this stack */
};
#define RULE_KIND(r) ((unsigned)((r) & 3))
#define RULE_CFA_RBP 4u
#define RULE_RBP_SAVED 8u

static uint64_t rule_step(bool cfa_rbp, int64_t k, bool rbp_saved, int64_t rbp_off) {
  if (k != (int32_t)k || rbp_off != (int16_t)rbp_off) return RULE_FALLBACK;
  return RULE_STEP | (cfa_rbp ? RULE_CFA_RBP : 0) | (rbp_saved ? RULE_RBP_SAVED : 0) |
         ((uint64_t)(uint16_t)rbp_off << 16) | ((uint64_t)(uint32_t)k << 32);
}

static int64_t rule_cfa_offset(uint64_t r) { return (int32_t)(uint32_t)(r >> 32); }
static int64_t rule_rbp_offset(uint64_t r) { return (int16_t)(uint16_t)(r >> 16); }

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
  _Atomic uint64_t rule; /* rule_step() or RULE_END / RULE_FALLBACK */
} slot_t;

static _Alignas(4096) slot_t table[SLOTS];   /* the first 128 slots: one page */
static _Atomic unsigned table_bits = SLOT_BITS_FIRST; /* slots in use: 2^table_bits */
static _Atomic size_t table_filled;                   /* empty slots filled so far */

static size_t slot_home(uintptr_t pc, unsigned bits) {
  return (size_t)(((uint64_t)pc * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

/* The entry for pc: its rule and the code word it was computed with.  The
 * loads are acquire so that none moves past the second read of seq; on
 * x86-64 they are plain moves. */
static bool table_find(uintptr_t pc, uint64_t *rule, uint64_t *code) {
  unsigned bits = atomic_load_explicit(&table_bits, memory_order_relaxed);
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
  unsigned bits = atomic_load_explicit(&table_bits, memory_order_relaxed);
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
      (atomic_fetch_add_explicit(&table_filled, 1, memory_order_relaxed) + 1) * 2 > mask + 1)
    atomic_compare_exchange_strong_explicit(&table_bits, &bits, bits + 1, memory_order_relaxed,
                                            memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Reading .eh_frame
 * ---------------------------------------------------------------------- */

/* Pointer encodings (DW_EH_PE_*, LSB 5.0 "Exception Frames"). */
enum {
  PE_ABSPTR = 0x00, PE_ULEB128 = 0x01, PE_UDATA2 = 0x02, PE_UDATA4 = 0x03, PE_UDATA8 = 0x04,
  PE_SLEB128 = 0x09, PE_SDATA2 = 0x0a, PE_SDATA4 = 0x0b, PE_SDATA8 = 0x0c,
  PE_PCREL = 0x10, PE_DATAREL = 0x30, PE_ALIGNED = 0x50, PE_INDIRECT = 0x80, PE_OMIT = 0xff,
};

/* A pointer encoded as enc.  datarel is the base of DW_EH_PE_datarel (0:
 * none known).  false for the encodings the walk does not follow: omit,
 * indirect, aligned, textrel, funcrel. */
static bool get_encoded(tsri_dw_reader_t *c, unsigned enc, uintptr_t datarel, uintptr_t *out) {
  if (enc == PE_OMIT || (enc & PE_INDIRECT) != 0) return false;
  uintptr_t here = (uintptr_t)c->p;
  uint64_t v;
  switch (enc & 0x0f) {
  case PE_ABSPTR: case PE_UDATA8: case PE_SDATA8: v = tsri_dw_fixed(c, 8); break;
  case PE_ULEB128: v = tsri_dw_uleb(c); break;
  case PE_SLEB128: v = (uint64_t)tsri_dw_sleb(c); break;
  case PE_UDATA2: v = tsri_dw_fixed(c, 2); break;
  case PE_UDATA4: v = tsri_dw_fixed(c, 4); break;
  case PE_SDATA2: v = (uint64_t)(int64_t)(int16_t)tsri_dw_fixed(c, 2); break;
  case PE_SDATA4: v = (uint64_t)(int64_t)(int32_t)tsri_dw_fixed(c, 4); break;
  default: return false;
  }
  switch (enc & 0x70) {
  case 0: break;
  case PE_PCREL: v += here; break;
  case PE_DATAREL:
    if (datarel == 0) return false;
    v += datarel;
    break;
  default: return false;
  }
  *out = (uintptr_t)v;
  return !c->bad;
}

static uint32_t load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* ---- finding the FDE ---------------------------------------------------- */

/* The PT_GNU_EH_FRAME segment (.eh_frame_hdr) of the object holding addr,
 * NULL when it has none.  false when addr is in no loaded object. */
#if HAVE_DL_FIND_OBJECT
static bool find_eh_frame_hdr(uintptr_t addr, const uint8_t **hdr) {
  struct dl_find_object obj;
  if (_dl_find_object((void *)addr, &obj) != 0) return false;
  *hdr = obj.dlfo_eh_frame;
  return true;
}
#else
typedef struct phdr_search_s {
  uintptr_t addr;
  bool found;
  const uint8_t *hdr;
} phdr_search_t;

static int phdr_visit(struct dl_phdr_info *info, size_t size, void *arg) {
  phdr_search_t *s = arg;
  bool inside = false;
  const uint8_t *hdr = NULL;
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && s->addr - start < ph->p_memsz) inside = true;
    if (ph->p_type == PT_GNU_EH_FRAME) hdr = (const uint8_t *)start;
  }
  if (!inside) return 0;
  s->found = true;
  s->hdr = hdr;
  return 1;
}

static bool find_eh_frame_hdr(uintptr_t addr, const uint8_t **hdr) {
  phdr_search_t s = { addr, false, NULL };
  dl_iterate_phdr(phdr_visit, &s);
  *hdr = s.hdr;
  return s.found;
}
#endif

enum { SEARCH_FOUND, SEARCH_MISSING, SEARCH_UNSUPPORTED };

/* Binary search of .eh_frame_hdr's table for the FDE whose range starts at
 * or below addr.  Linkers write the table as (start, fde) pairs of sdata4
 * relative to the header; another layout is left to libgcc. */
static int hdr_search(const uint8_t *hdr, uintptr_t addr, const uint8_t **fde) {
  if (hdr[0] != 1) return SEARCH_UNSUPPORTED;
  /* the two fields before the table are at most 8 bytes each, or LEB128 */
  tsri_dw_reader_t c = { hdr + 4, hdr + 4 + 32, false };
  uintptr_t eh_frame, count;
  if (!get_encoded(&c, hdr[1], (uintptr_t)hdr, &eh_frame) ||
      !get_encoded(&c, hdr[2], (uintptr_t)hdr, &count) ||
      hdr[3] != (PE_DATAREL | PE_SDATA4))
    return SEARCH_UNSUPPORTED;
  const uint8_t *entries = c.p;
  if (count == 0) return SEARCH_MISSING;
  size_t lo = 0, hi = count;
  while (hi - lo > 1) {
    size_t mid = lo + (hi - lo) / 2;
    uintptr_t start = (uintptr_t)hdr + (uintptr_t)(int64_t)(int32_t)load32(entries + 8 * mid);
    if (start <= addr) lo = mid;
    else hi = mid;
  }
  uintptr_t start = (uintptr_t)hdr + (uintptr_t)(int64_t)(int32_t)load32(entries + 8 * lo);
  if (start > addr) return SEARCH_MISSING;
  *fde = hdr + (int32_t)load32(entries + 8 * lo + 4);
  return SEARCH_FOUND;
}

/* ---- the CIE ------------------------------------------------------------ */

typedef struct cie_s {
  const uint8_t *insns, *end; /* the initial instructions */
  uint64_t code_align;        /* DW_CFA_advance_loc unit */
  int64_t data_align;         /* offset unit of the register rules */
  unsigned fde_enc;           /* encoding of the FDE's address fields ('R') */
  bool has_z;                 /* FDEs carry an augmentation length */
} cie_t;

#define REG_RBP 6
#define REG_RSP 7
#define REG_RA 16 /* the return address column on x86-64 */

/* Parse the CIE at p.  false where the walk must leave the frame to libgcc:
 * a signal frame ('S'), an augmentation it does not know, a return
 * address column other than 16. */
static bool cie_parse(const uint8_t *p, cie_t *cie) {
  uint32_t len = load32(p);
  if (len == 0 || len == 0xffffffffu) return false;
  tsri_dw_reader_t c = { p + 4, p + 4 + len, false };
  if (tsri_dw_fixed(&c, 4) != 0) return false; /* CIE id: 0 in .eh_frame */
  uint64_t version = tsri_dw_fixed(&c, 1);
  if (version != 1 && version != 3) return false;
  const uint8_t *aug = c.p;
  while (c.p < c.end && *c.p != 0) c.p++;
  if (c.p == c.end) return false;
  c.p++;
  cie->code_align = tsri_dw_uleb(&c);
  cie->data_align = tsri_dw_sleb(&c);
  uint64_t ra = version == 1 ? tsri_dw_fixed(&c, 1) : tsri_dw_uleb(&c);
  if (c.bad || ra != REG_RA) return false;
  cie->fde_enc = PE_ABSPTR;
  cie->has_z = aug[0] == 'z';
  if (cie->has_z) {
    uint64_t n = tsri_dw_uleb(&c);
    if (c.bad || n > (uint64_t)(c.end - c.p)) return false;
    tsri_dw_reader_t a = { c.p, c.p + n, false };
    for (const uint8_t *s = aug + 1; *s != 0; s++) {
      uintptr_t ignored;
      unsigned enc;
      switch (*s) {
      case 'R': cie->fde_enc = (unsigned)tsri_dw_fixed(&a, 1); break;
      case 'L': tsri_dw_fixed(&a, 1); break;
      case 'P':
        /* the personality routine: only its size matters here */
        enc = (unsigned)tsri_dw_fixed(&a, 1);
        if ((enc & 0x70) == PE_ALIGNED || !get_encoded(&a, enc & 0x0f, 0, &ignored)) return false;
        break;
      default: return false;
      }
    }
    if (a.bad) return false;
    c.p += n;
  } else if (aug[0] != 0) {
    return false;
  }
  cie->insns = c.p;
  cie->end = c.end;
  return true;
}

/* ---- the CFI program ---------------------------------------------------- */

/* How a register of the caller is recovered.  Only RBP, RSP and the
 * return address matter to the walk; rules for others are read past. */
enum { HOW_SAME, HOW_OFFSET, HOW_UNDEFINED, HOW_OTHER };

typedef struct reg_rule_s {
  uint8_t how;
  int64_t offset; /* HOW_OFFSET: saved at CFA + offset */
} reg_rule_t;

enum { TRACK_RBP, TRACK_RSP, TRACK_RA, TRACKED };

typedef struct frame_rules_s {
  uint64_t cfa_reg; /* DWARF register number; UINT64_MAX: not yet defined */
  int64_t cfa_offset;
  bool cfa_expr;    /* DW_CFA_def_cfa_expression is in force */
  reg_rule_t reg[TRACKED];
} frame_rules_t;

/* GCC nests DW_CFA_remember_state once per epilogue; deeper is left to libgcc. */
#define REMEMBER_MAX 8

typedef struct cfa_state_s {
  frame_rules_t cur, initial; /* initial: after the CIE, for DW_CFA_restore */
  frame_rules_t saved[REMEMBER_MAX];
  unsigned depth;
  uint64_t code_align;
  int64_t data_align;
} cfa_state_t;

static int track_index(uint64_t reg) {
  switch (reg) {
  case REG_RBP: return TRACK_RBP;
  case REG_RSP: return TRACK_RSP;
  case REG_RA: return TRACK_RA;
  default: return -1;
  }
}

static void set_rule(cfa_state_t *st, uint64_t reg, uint8_t how, int64_t offset) {
  int i = track_index(reg);
  if (i >= 0) st->cur.reg[i] = (reg_rule_t){ how, offset };
}

static void restore_rule(cfa_state_t *st, uint64_t reg) {
  int i = track_index(reg);
  if (i >= 0) st->cur.reg[i] = st->initial.reg[i];
}

/* v * data_align, wrapping as libgcc's unsigned arithmetic does */
static int64_t scaled(const cfa_state_t *st, uint64_t v) {
  return (int64_t)(v * (uint64_t)st->data_align);
}

/* DW_CFA_* opcodes (DWARF 5, section 6.4.2; GNU_args_size from GCC). */
enum {
  CFA_NOP = 0x00, CFA_ADVANCE_LOC1 = 0x02, CFA_ADVANCE_LOC2 = 0x03, CFA_ADVANCE_LOC4 = 0x04,
  CFA_OFFSET_EXTENDED = 0x05, CFA_RESTORE_EXTENDED = 0x06, CFA_UNDEFINED = 0x07,
  CFA_SAME_VALUE = 0x08, CFA_REGISTER = 0x09, CFA_REMEMBER_STATE = 0x0a,
  CFA_RESTORE_STATE = 0x0b, CFA_DEF_CFA = 0x0c, CFA_DEF_CFA_REGISTER = 0x0d,
  CFA_DEF_CFA_OFFSET = 0x0e, CFA_DEF_CFA_EXPRESSION = 0x0f, CFA_EXPRESSION = 0x10,
  CFA_OFFSET_EXTENDED_SF = 0x11, CFA_DEF_CFA_SF = 0x12, CFA_DEF_CFA_OFFSET_SF = 0x13,
  CFA_VAL_OFFSET = 0x14, CFA_VAL_OFFSET_SF = 0x15, CFA_VAL_EXPRESSION = 0x16,
  CFA_GNU_ARGS_SIZE = 0x2e,
  /* the high two bits, with an operand in the low six */
  CFA_ADVANCE_LOC = 0x40, CFA_OFFSET = 0x80, CFA_RESTORE = 0xc0,
};

/* Execute [p, end) while the location *loc is at or below target (pc - 1),
 * as libgcc does: the rules in force at the call instruction.  false on an
 * instruction the walk does not model (DW_CFA_set_loc, vendor ones). */
static bool cfa_run(cfa_state_t *st, const uint8_t *p, const uint8_t *end, uintptr_t *loc,
                    uintptr_t target) {
  tsri_dw_reader_t c = { p, end, false };
  while (!c.bad && c.p < c.end && *loc <= target) {
    unsigned op = (unsigned)tsri_dw_fixed(&c, 1);
    uint64_t reg;
    switch (op & 0xc0) {
    case CFA_ADVANCE_LOC: *loc += (op & 0x3f) * st->code_align; continue;
    case CFA_OFFSET: set_rule(st, op & 0x3f, HOW_OFFSET, scaled(st, tsri_dw_uleb(&c))); continue;
    case CFA_RESTORE: restore_rule(st, op & 0x3f); continue;
    default: break;
    }
    switch (op) {
    case CFA_NOP: break;
    case CFA_ADVANCE_LOC1: *loc += tsri_dw_fixed(&c, 1) * st->code_align; break;
    case CFA_ADVANCE_LOC2: *loc += tsri_dw_fixed(&c, 2) * st->code_align; break;
    case CFA_ADVANCE_LOC4: *loc += tsri_dw_fixed(&c, 4) * st->code_align; break;
    case CFA_OFFSET_EXTENDED:
      reg = tsri_dw_uleb(&c);
      set_rule(st, reg, HOW_OFFSET, scaled(st, tsri_dw_uleb(&c)));
      break;
    case CFA_OFFSET_EXTENDED_SF:
      reg = tsri_dw_uleb(&c);
      set_rule(st, reg, HOW_OFFSET, scaled(st, (uint64_t)tsri_dw_sleb(&c)));
      break;
    case CFA_RESTORE_EXTENDED: restore_rule(st, tsri_dw_uleb(&c)); break;
    case CFA_UNDEFINED: set_rule(st, tsri_dw_uleb(&c), HOW_UNDEFINED, 0); break;
    case CFA_SAME_VALUE: set_rule(st, tsri_dw_uleb(&c), HOW_SAME, 0); break;
    case CFA_REGISTER:
      reg = tsri_dw_uleb(&c);
      tsri_dw_uleb(&c);
      set_rule(st, reg, HOW_OTHER, 0);
      break;
    case CFA_VAL_OFFSET:
    case CFA_VAL_OFFSET_SF:
      reg = tsri_dw_uleb(&c);
      tsri_dw_uleb(&c); /* same length either way */
      set_rule(st, reg, HOW_OTHER, 0);
      break;
    case CFA_EXPRESSION:
    case CFA_VAL_EXPRESSION:
      reg = tsri_dw_uleb(&c);
      tsri_dw_skip(&c, tsri_dw_uleb(&c));
      set_rule(st, reg, HOW_OTHER, 0);
      break;
    case CFA_REMEMBER_STATE:
      if (st->depth == REMEMBER_MAX) return false;
      st->saved[st->depth++] = st->cur;
      break;
    case CFA_RESTORE_STATE:
      if (st->depth == 0) return false;
      st->cur = st->saved[--st->depth];
      break;
    case CFA_DEF_CFA:
      st->cur.cfa_reg = tsri_dw_uleb(&c);
      st->cur.cfa_offset = (int64_t)tsri_dw_uleb(&c);
      st->cur.cfa_expr = false;
      break;
    case CFA_DEF_CFA_SF:
      st->cur.cfa_reg = tsri_dw_uleb(&c);
      st->cur.cfa_offset = scaled(st, (uint64_t)tsri_dw_sleb(&c));
      st->cur.cfa_expr = false;
      break;
    case CFA_DEF_CFA_REGISTER:
      st->cur.cfa_reg = tsri_dw_uleb(&c);
      st->cur.cfa_expr = false;
      break;
    /* libgcc leaves an expression CFA in force under these two as well */
    case CFA_DEF_CFA_OFFSET: st->cur.cfa_offset = (int64_t)tsri_dw_uleb(&c); break;
    case CFA_DEF_CFA_OFFSET_SF: st->cur.cfa_offset = scaled(st, (uint64_t)tsri_dw_sleb(&c)); break;
    case CFA_DEF_CFA_EXPRESSION:
      tsri_dw_skip(&c, tsri_dw_uleb(&c));
      st->cur.cfa_expr = true;
      break;
    case CFA_GNU_ARGS_SIZE: tsri_dw_uleb(&c); break;
    default: return false;
    }
  }
  return !c.bad;
}

/* The rule word for the frame rules in force at the call. */
static uint64_t rules_to_word(const frame_rules_t *r) {
  const reg_rule_t *ra = &r->reg[TRACK_RA], *rsp = &r->reg[TRACK_RSP], *rbp = &r->reg[TRACK_RBP];
  if (ra->how == HOW_UNDEFINED) return RULE_END;
  if (ra->how != HOW_OFFSET || ra->offset != -8) return RULE_FALLBACK;
  if (r->cfa_expr || (r->cfa_reg != REG_RSP && r->cfa_reg != REG_RBP)) return RULE_FALLBACK;
  if (rsp->how != HOW_SAME && rsp->how != HOW_UNDEFINED) return RULE_FALLBACK;
  /* libgcc keeps the callee's value for same-value and undefined alike */
  if (rbp->how == HOW_SAME || rbp->how == HOW_UNDEFINED)
    return rule_step(r->cfa_reg == REG_RBP, r->cfa_offset, false, 0);
  if (rbp->how == HOW_OFFSET) return rule_step(r->cfa_reg == REG_RBP, r->cfa_offset, true, rbp->offset);
  return RULE_FALLBACK;
}

/* The rule for the frame at return address pc, from the FDE covering
 * pc - 1 in the object that holds it. */
static uint64_t rule_compute(uintptr_t pc) {
  uintptr_t target = pc - 1;
  const uint8_t *hdr, *fde = NULL;
  if (!find_eh_frame_hdr(target, &hdr)) return RULE_NONE;
  if (hdr == NULL) return RULE_END;
  switch (hdr_search(hdr, target, &fde)) {
  case SEARCH_FOUND: break;
  case SEARCH_MISSING: return RULE_END;
  default: return RULE_FALLBACK;
  }

  uint32_t len = load32(fde), cie_delta = load32(fde + 4);
  if (len == 0 || len == 0xffffffffu || cie_delta == 0) return RULE_FALLBACK;
  cie_t cie;
  if (!cie_parse(fde + 4 - cie_delta, &cie)) return RULE_FALLBACK;
  tsri_dw_reader_t c = { fde + 8, fde + 4 + len, false };
  uintptr_t begin, range;
  if (!get_encoded(&c, cie.fde_enc, 0, &begin) || !get_encoded(&c, cie.fde_enc & 0x0f, 0, &range))
    return RULE_FALLBACK;
  if (target - begin >= range) return RULE_END;
  if (cie.has_z) tsri_dw_skip(&c, tsri_dw_uleb(&c));
  if (c.bad) return RULE_FALLBACK;

  cfa_state_t st;
  memset(&st, 0, sizeof st);
  st.cur.cfa_reg = UINT64_MAX;
  st.code_align = cie.code_align;
  st.data_align = cie.data_align;
  uintptr_t loc = begin;
  if (!cfa_run(&st, cie.insns, cie.end, &loc, target)) return RULE_FALLBACK;
  st.initial = st.cur;
  if (!cfa_run(&st, c.p, c.end, &loc, target)) return RULE_FALLBACK;
  return rules_to_word(&st.cur);
}

/* ------------------------------------------------------------------------
 * The walk
 * ---------------------------------------------------------------------- */

/* The largest frame the walk takes on trust; a larger step goes to libgcc. */
#define STEP_MAX ((uintptr_t)1 << 20)

typedef uintptr_t __attribute__((aligned(1), may_alias)) raw_word_t;

static inline RAW_READS uintptr_t peek(uintptr_t addr) { return *(const raw_word_t *)addr; }

/* pc's rule, from the table while the code around pc is what it was. */
static inline RAW_READS uint64_t rule_for(uintptr_t pc) {
  /* the aligned word holding pc - 1 lies in pc - 1's page, which is code */
  uintptr_t at = (pc - 1) & ~(uintptr_t)7;
  uint64_t rule, code;
  if (table_find(pc, &rule, &code) && code == peek(at)) return rule;
  /* only now is pc known to lie in a loaded object, so its code readable */
  rule = rule_compute(pc);
  if (rule != RULE_NONE) table_insert(pc, peek(at), rule);
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
  /* fp points at the saved RBP, with the return address above it */
  uintptr_t base = (uintptr_t)fp;
  uintptr_t sp = base + 16;
  uintptr_t rbp_at = base;   /* where rbp was read; 0 once the memo has it */
  uintptr_t rbp = peek(rbp_at);
  uintptr_t pc = peek(base + 8);
  /* The memo keeps the words the walk's answer depends on: every return
   * address read, and a saved RBP only when a CFA was computed from it
   * (most RBPs read are the program's, reused as a general register). */
  bool memo = w != NULL;
  if (memo) {
    w->reads = 0;
    memo = note_read(w, base, base + 8, pc);
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
    unsigned kind = RULE_KIND(rule);
    if (kind == RULE_FALLBACK) return TSRI_UNWIND_FALLBACK;
    if (kind != RULE_STEP) break;
    if ((rule & RULE_CFA_RBP) && memo && rbp_at != 0) {
      memo = note_read(w, base, rbp_at, rbp);
      rbp_at = 0;
    }
    uintptr_t cfa = ((rule & RULE_CFA_RBP) ? rbp : sp) + (uintptr_t)rule_cfa_offset(rule);
    if (cfa <= sp || cfa - sp > STEP_MAX) return TSRI_UNWIND_FALLBACK;
    if (rule & RULE_RBP_SAVED) {
      rbp_at = cfa + (uintptr_t)rule_rbp_offset(rule);
      rbp = peek(rbp_at);
    }
    pc = peek(cfa - 8);
    if (memo) memo = note_read(w, base, cfa - 8, pc);
    sp = cfa;
  }
  if (w != NULL && !memo) w->reads = UINT32_MAX;
  return n;
}

#endif /* TSRI_UNWIND_FAST */
