/* cfi.h: the DWARF call-frame information of .eh_frame, read for the fast
 * stack walk (unwind_x86.h), private to alloc/os/.  cfi.c decodes the
 * pointers, parses a CIE and runs the CFI program of a CIE and an FDE up
 * to a return address, for one register set: x86-64 or i386 (struct
 * tsri_cfi_arch_s).  Where the tables are and how the FDE is found is the
 * caller's business (unwind_eh.c for ELF objects, unwind_pe.c for PE
 * images).  Its answer is a rule word, which unwind_x86.c caches and
 * steps by.  Nothing here allocates or locks.
 */
#ifndef TSR_CFI_H
#define TSR_CFI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dwarf_read.h"
#include "os.h"

/* ------------------------------------------------------------------------
 * Rules: computed by cfi.c, cached and stepped by in unwind_x86.c
 * ---------------------------------------------------------------------- */

/* A rule in one word: bits 0-1 the kind, bit 2 CFA = FP + k (else
 * SP + k), bit 3 FP saved, bits 16-31 FP's offset from the CFA (int16),
 * bits 32-63 k (int32).  FP and SP are the frame and stack pointers of
 * the register set: RBP and RSP, or EBP and ESP; the return address lies
 * one word below the CFA. */
enum {
  TSRI_RULE_NONE = 0,     /* pc lies in no loaded module: report it, stop (never cached) */
  TSRI_RULE_STEP = 1,     /* step to the caller with the offsets */
  TSRI_RULE_END = 2,      /* report pc, stop: outermost frame, or no FDE */
  TSRI_RULE_FALLBACK = 3, /* the platform's own unwinder must walk this stack */
};
#define TSRI_RULE_KIND(r) ((unsigned)((r) & 3))
#define TSRI_RULE_CFA_FP 4u
#define TSRI_RULE_FP_SAVED 8u

static inline uint64_t tsri_rule_step(bool cfa_fp, int64_t k, bool fp_saved, int64_t fp_off) {
  if (k != (int32_t)k || fp_off != (int16_t)fp_off) return TSRI_RULE_FALLBACK;
  return TSRI_RULE_STEP | (cfa_fp ? TSRI_RULE_CFA_FP : 0) | (fp_saved ? TSRI_RULE_FP_SAVED : 0) |
         ((uint64_t)(uint16_t)fp_off << 16) | ((uint64_t)(uint32_t)k << 32);
}

static inline int64_t tsri_rule_cfa_offset(uint64_t r) { return (int32_t)(uint32_t)(r >> 32); }
static inline int64_t tsri_rule_fp_offset(uint64_t r) { return (int16_t)(uint16_t)(r >> 16); }

/* ------------------------------------------------------------------------
 * Reading .eh_frame
 * ---------------------------------------------------------------------- */

/* The register set: DWARF numbers of the frame pointer, the stack pointer
 * and the return address column, and the size of an address. */
typedef struct tsri_cfi_arch_s {
  uint8_t fp, sp, ra;
  uint8_t word;
} tsri_cfi_arch_t;

/* Pointer encodings (DW_EH_PE_*, LSB 5.0 "Exception Frames"). */
enum {
  TSRI_PE_ABSPTR = 0x00, TSRI_PE_ULEB128 = 0x01, TSRI_PE_UDATA2 = 0x02, TSRI_PE_UDATA4 = 0x03,
  TSRI_PE_UDATA8 = 0x04, TSRI_PE_SLEB128 = 0x09, TSRI_PE_SDATA2 = 0x0a, TSRI_PE_SDATA4 = 0x0b,
  TSRI_PE_SDATA8 = 0x0c, TSRI_PE_PCREL = 0x10, TSRI_PE_DATAREL = 0x30, TSRI_PE_ALIGNED = 0x50,
  TSRI_PE_INDIRECT = 0x80, TSRI_PE_OMIT = 0xff,
};

/* A pointer encoded as enc (an absolute one is word bytes), read by c
 * from a copy of the table that lies bias bytes below the table itself
 * (0: read in place).  datarel is the base of DW_EH_PE_datarel (0: none
 * known).  false for the encodings the walk does not follow: omit,
 * indirect, aligned, textrel, funcrel. */
tsri_hidden bool tsri_cfi_encoded(tsri_dw_reader_t *c, unsigned enc, unsigned word, uintptr_t datarel,
                                  uintptr_t bias, uintptr_t *out);

static inline uint32_t tsri_cfi_load32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, sizeof v);
  return v;
}

/* What the FDEs of a CIE need of it. */
typedef struct tsri_cfi_cie_s {
  const uint8_t *insns, *end; /* the initial instructions */
  uint64_t code_align;        /* DW_CFA_advance_loc unit */
  int64_t data_align;         /* offset unit of the register rules */
  unsigned fde_enc;           /* encoding of the FDE's address fields ('R') */
  bool has_z;                 /* FDEs carry an augmentation length */
} tsri_cfi_cie_t;

/* Parse the CIE record at p (its length field first; bias as for
 * tsri_cfi_encoded).  false where the walk must leave the frame to the
 * platform's unwinder: a signal frame ('S'), an augmentation it does not
 * know, a return address column other than the register set's. */
tsri_hidden bool tsri_cfi_cie_parse(const uint8_t *p, uintptr_t bias, const tsri_cfi_arch_t *arch,
                                    tsri_cfi_cie_t *cie);

/* The rule in force at target (pc - 1, the call) in a function that
 * starts at begin: cie's initial instructions, then the FDE's [insns,
 * end).  TSRI_RULE_FALLBACK for what the rule word cannot say. */
tsri_hidden uint64_t tsri_cfi_rule(const tsri_cfi_arch_t *arch, const tsri_cfi_cie_t *cie,
                                   const uint8_t *insns, const uint8_t *end, uintptr_t begin,
                                   uintptr_t target);

#endif /* TSR_CFI_H */
