/* cfi.c: the call-frame information of .eh_frame, interpreted for the
 * fast stack walk (cfi.h).  It covers the subset compilers emit for
 * ordinary x86 functions: the CFA as a register plus an offset, registers
 * saved at offsets from it, remember and restore state.  What the rule
 * word cannot say (a CFA expression, as in a function that realigns the
 * stack; the return address or the frame pointer kept in another
 * register; an augmentation it does not know) is answered
 * TSRI_RULE_FALLBACK.  The same code reads x86-64 and i386 tables, with
 * their register numbers from tsri_cfi_arch_t.
 */
#include "unwind_x86.h"

#if TSRI_UNWIND_FAST

/* ---- pointers ------------------------------------------------------------ */

bool tsri_cfi_encoded(tsri_dw_reader_t *c, unsigned enc, unsigned word, uintptr_t datarel, uintptr_t bias,
                      uintptr_t *out) {
  if (enc == TSRI_PE_OMIT || (enc & TSRI_PE_INDIRECT) != 0) return false;
  uintptr_t here = (uintptr_t)c->p + bias;
  uint64_t v;
  switch (enc & 0x0f) {
  case TSRI_PE_ABSPTR: v = tsri_dw_fixed(c, word); break;
  case TSRI_PE_UDATA8: case TSRI_PE_SDATA8: v = tsri_dw_fixed(c, 8); break;
  case TSRI_PE_ULEB128: v = tsri_dw_uleb(c); break;
  case TSRI_PE_SLEB128: v = (uint64_t)tsri_dw_sleb(c); break;
  case TSRI_PE_UDATA2: v = tsri_dw_fixed(c, 2); break;
  case TSRI_PE_UDATA4: v = tsri_dw_fixed(c, 4); break;
  case TSRI_PE_SDATA2: v = (uint64_t)(int64_t)(int16_t)tsri_dw_fixed(c, 2); break;
  case TSRI_PE_SDATA4: v = (uint64_t)(int64_t)(int32_t)tsri_dw_fixed(c, 4); break;
  default: return false;
  }
  switch (enc & 0x70) {
  case 0: break;
  case TSRI_PE_PCREL: v += here; break;
  case TSRI_PE_DATAREL:
    if (datarel == 0) return false;
    v += datarel;
    break;
  default: return false;
  }
  *out = (uintptr_t)v;
  return !c->bad;
}

/* ---- the CIE ------------------------------------------------------------ */

bool tsri_cfi_cie_parse(const uint8_t *p, uintptr_t bias, const tsri_cfi_arch_t *arch, tsri_cfi_cie_t *cie) {
  uint32_t len = tsri_cfi_load32(p);
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
  if (c.bad || ra != arch->ra) return false;
  cie->fde_enc = TSRI_PE_ABSPTR;
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
        if ((enc & 0x70) == TSRI_PE_ALIGNED || !tsri_cfi_encoded(&a, enc & 0x0f, arch->word, 0, bias, &ignored)) return false;
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

/* How a register of the caller is recovered.  Only the frame pointer, the
 * stack pointer and the return address matter to the walk; rules for
 * others are read past. */
enum { HOW_SAME, HOW_OFFSET, HOW_UNDEFINED, HOW_OTHER };

typedef struct reg_rule_s {
  uint8_t how;
  int64_t offset; /* HOW_OFFSET: saved at CFA + offset */
} reg_rule_t;

enum { TRACK_FP, TRACK_SP, TRACK_RA, TRACKED };

typedef struct frame_rules_s {
  uint64_t cfa_reg; /* DWARF register number; UINT64_MAX: not yet defined */
  int64_t cfa_offset;
  bool cfa_expr;    /* DW_CFA_def_cfa_expression is in force */
  reg_rule_t reg[TRACKED];
} frame_rules_t;

/* GCC nests DW_CFA_remember_state once per epilogue; deeper is left to libgcc. */
#define REMEMBER_MAX 8

typedef struct cfa_state_s {
  const tsri_cfi_arch_t *arch;
  frame_rules_t cur, initial; /* initial: after the CIE, for DW_CFA_restore */
  frame_rules_t saved[REMEMBER_MAX];
  unsigned depth;
  uint64_t code_align;
  int64_t data_align;
} cfa_state_t;

static int track_index(const cfa_state_t *st, uint64_t reg) {
  if (reg == st->arch->fp) return TRACK_FP;
  if (reg == st->arch->sp) return TRACK_SP;
  if (reg == st->arch->ra) return TRACK_RA;
  return -1;
}

static void set_rule(cfa_state_t *st, uint64_t reg, uint8_t how, int64_t offset) {
  int i = track_index(st, reg);
  if (i >= 0) st->cur.reg[i] = (reg_rule_t){ how, offset };
}

static void restore_rule(cfa_state_t *st, uint64_t reg) {
  int i = track_index(st, reg);
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
static uint64_t rules_to_word(const tsri_cfi_arch_t *arch, const frame_rules_t *r) {
  const reg_rule_t *ra = &r->reg[TRACK_RA], *sp = &r->reg[TRACK_SP], *fp = &r->reg[TRACK_FP];
  if (ra->how == HOW_UNDEFINED) return TSRI_RULE_END;
  if (ra->how != HOW_OFFSET || ra->offset != -(int64_t)arch->word) return TSRI_RULE_FALLBACK;
  if (r->cfa_expr || (r->cfa_reg != arch->sp && r->cfa_reg != arch->fp)) return TSRI_RULE_FALLBACK;
  if (sp->how != HOW_SAME && sp->how != HOW_UNDEFINED) return TSRI_RULE_FALLBACK;
  /* libgcc keeps the callee's value for same-value and undefined alike */
  if (fp->how == HOW_SAME || fp->how == HOW_UNDEFINED)
    return tsri_rule_step(r->cfa_reg == arch->fp, r->cfa_offset, false, 0);
  if (fp->how == HOW_OFFSET) return tsri_rule_step(r->cfa_reg == arch->fp, r->cfa_offset, true, fp->offset);
  return TSRI_RULE_FALLBACK;
}

uint64_t tsri_cfi_rule(const tsri_cfi_arch_t *arch, const tsri_cfi_cie_t *cie, const uint8_t *insns,
                       const uint8_t *end, uintptr_t begin, uintptr_t target) {
  cfa_state_t st;
  memset(&st, 0, sizeof st);
  st.arch = arch;
  st.cur.cfa_reg = UINT64_MAX;
  st.code_align = cie->code_align;
  st.data_align = cie->data_align;
  uintptr_t loc = begin;
  if (!cfa_run(&st, cie->insns, cie->end, &loc, target)) return TSRI_RULE_FALLBACK;
  st.initial = st.cur;
  if (!cfa_run(&st, insns, end, &loc, target)) return TSRI_RULE_FALLBACK;
  return rules_to_word(arch, &st.cur);
}

#endif /* TSRI_UNWIND_FAST */
