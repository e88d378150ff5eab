/* unwind_pe.c: the rules of the fast stack walk (unwind_x86.c) on i686
 * Windows, read from the .eh_frame of PE images (unwind_x86.h:
 * tsri_unwind_rule_compute).
 *
 * Why.  On 32-bit x86 RtlCaptureStackBackTrace follows the EBP chain, and
 * code built without frame pointers (gcc -O2 omits them on i686, and so
 * do system DLLs) keeps no chain: a stack taken in such a program ended at
 * its first frame.  Debian's i686 mingw-w64 gcc uses DWARF-2 exceptions
 * (libgcc_s_dw2-1.dll, not SJLJ), so every function it compiles has an
 * FDE in .eh_frame, a section the image loads; the walk reads it there.
 *
 * Finding the module: VirtualQuery of the call instruction.  The region
 * of an image (MEM_IMAGE) has the module's base as its allocation base.
 * Unlike GetModuleHandleExW, this takes no loader lock.
 *
 * Finding .eh_frame.  A PE section name of more than 8 bytes is written
 * "/N", an offset into the COFF string table, which lies in the file but
 * is not loaded: ".eh_frame" reads "/4" in memory.  So the section is
 * known by what it is: a long name (or ".eh_fram", a linker's truncation),
 * readable initialized data, neither code nor discardable (the DWARF
 * debug sections, also long names, are discardable), and it opens with a
 * CIE.
 *
 * Finding the FDE.  A PE image has no .eh_frame_hdr search table, so the
 * section is scanned record by record, checking every length and CIE
 * pointer against the section.  The walk caches the rule it gets, so the
 * scan runs once per return address for the life of the process.
 *
 * Where the stack ends.  A return address in a module without .eh_frame
 * (system DLLs, modules built by MSVC) or without an FDE for it is
 * reported and ends the stack.  So does a frame the rule word cannot
 * describe, where on Linux libgcc would take over: a function that
 * realigns the stack through another register, whose CFA is computed by
 * an expression, as the C runtime's __tmainCRTStartup does (main realigns
 * with EBP as its frame pointer, which the rule word says).  Redoing the
 * capture with RtlCaptureStackBackTrace would lose every frame the walk
 * found, so that frame is the last one reported.
 *
 * Nothing here allocates or takes a lock of tessera's or the loader's; a
 * module is read in place.
 */
#include "unwind_x86.h"

#if TSRI_UNWIND_FAST && defined(_WIN32)

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include <string.h>

/* The i386 register set of .eh_frame: EBP is 5, ESP 4, the return
 * address column 8 (EIP). */
static const tsri_cfi_arch_t arch = { 5, 4, 8, 4 };

/* scan's answer when the section has no FDE for the address. */
#define RULE_MISSING UINT64_MAX

/* A record of [start, end) at p: its length and identifier fit in the
 * section, and so does the rest of it.  false at the terminator (length
 * 0), a 64-bit length, or a record that runs past the end. */
static bool record_fits(const uint8_t *start, const uint8_t *end, const uint8_t *p) {
  if (p < start || p > end || (size_t)(end - p) < 8) return false;
  uint32_t len = tsri_cfi_load32(p);
  return len >= 4 && len != 0xffffffffu && len <= (size_t)(end - p) - 4;
}

/* Does the section [start, end) open with a CIE of a version .eh_frame
 * uses? */
static bool opens_with_cie(const uint8_t *start, const uint8_t *end) {
  return record_fits(start, end, start) && tsri_cfi_load32(start) >= 5 && tsri_cfi_load32(start + 4) == 0 &&
         (start[8] == 1 || start[8] == 3);
}

/* The rule for the call at target from the FDE that covers it in the
 * .eh_frame [start, end), or RULE_MISSING. */
static uint64_t scan(const uint8_t *start, const uint8_t *end, uintptr_t target) {
  const uint8_t *cie_at = NULL;
  tsri_cfi_cie_t cie;
  bool cie_ok = false;
  for (const uint8_t *p = start; record_fits(start, end, p); p += 4 + tsri_cfi_load32(p)) {
    uint32_t id = tsri_cfi_load32(p + 4);
    if (id == 0) continue;   /* a CIE */
    if (id > (size_t)(p + 4 - start)) continue;   /* its CIE would lie before the section */
    if (p + 4 - id != cie_at) {
      cie_at = p + 4 - id;
      cie_ok = record_fits(start, end, cie_at) && tsri_cfi_load32(cie_at + 4) == 0 &&
               tsri_cfi_cie_parse(cie_at, 0, &arch, &cie);
    }
    if (!cie_ok) continue;
    tsri_dw_reader_t c = { p + 8, p + 4 + tsri_cfi_load32(p), false };
    uintptr_t begin, range;
    if (!tsri_cfi_encoded(&c, cie.fde_enc, arch.word, 0, 0, &begin) ||
        !tsri_cfi_encoded(&c, cie.fde_enc & 0x0f, arch.word, 0, 0, &range) || target - begin >= range)
      continue;
    if (cie.has_z) tsri_dw_skip(&c, tsri_dw_uleb(&c));
    if (c.bad) return TSRI_RULE_END;
    return tsri_cfi_rule(&arch, &cie, c.p, c.end, begin, target);
  }
  return RULE_MISSING;
}

/* The rule for target from the .eh_frame of the image loaded at base. */
static uint64_t image_rule(uintptr_t base, uintptr_t target) {
  const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)base;
  if (dos->e_magic != IMAGE_DOS_SIGNATURE || dos->e_lfanew < (LONG)sizeof *dos ||
      dos->e_lfanew > 4096 - (LONG)sizeof(IMAGE_NT_HEADERS32))
    return RULE_MISSING;
  const IMAGE_NT_HEADERS32 *nt = (const IMAGE_NT_HEADERS32 *)(base + (uintptr_t)dos->e_lfanew);
  if (nt->Signature != IMAGE_NT_SIGNATURE || nt->OptionalHeader.Magic != IMAGE_NT_OPTIONAL_HDR32_MAGIC)
    return RULE_MISSING;
  uintptr_t sections = (uintptr_t)&nt->OptionalHeader + nt->FileHeader.SizeOfOptionalHeader;
  size_t n = nt->FileHeader.NumberOfSections, image_size = nt->OptionalHeader.SizeOfImage;
  if (sections - base + n * sizeof(IMAGE_SECTION_HEADER) > nt->OptionalHeader.SizeOfHeaders) return RULE_MISSING;
  const DWORD want = IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ;
  const DWORD refuse = IMAGE_SCN_CNT_CODE | IMAGE_SCN_MEM_EXECUTE | IMAGE_SCN_MEM_DISCARDABLE;
  for (size_t i = 0; i < n; i++) {
    const IMAGE_SECTION_HEADER *s = (const IMAGE_SECTION_HEADER *)sections + i;
    if ((s->Characteristics & (want | refuse)) != want) continue;
    if (s->Name[0] != '/' && memcmp(s->Name, ".eh_fram", 8) != 0) continue;
    size_t size = s->Misc.VirtualSize;
    if (s->VirtualAddress > image_size || size > image_size - s->VirtualAddress) continue;
    const uint8_t *start = (const uint8_t *)(base + s->VirtualAddress), *end = start + size;
    if (!opens_with_cie(start, end)) continue;
    uint64_t rule = scan(start, end, target);
    if (rule != RULE_MISSING) return rule;
  }
  return RULE_MISSING;
}

uint64_t tsri_unwind_rule_compute(uintptr_t pc) {
  uintptr_t target = pc - 1;
  MEMORY_BASIC_INFORMATION mbi;
  if (VirtualQuery((const void *)target, &mbi, sizeof mbi) != sizeof mbi || mbi.State != MEM_COMMIT ||
      mbi.Type != MEM_IMAGE || mbi.AllocationBase == NULL)
    return TSRI_RULE_NONE;
  uint64_t rule = image_rule((uintptr_t)mbi.AllocationBase, target);
  /* no FDE, or a frame the rule word cannot say: the stack ends here */
  return rule == RULE_MISSING || TSRI_RULE_KIND(rule) == TSRI_RULE_FALLBACK ? TSRI_RULE_END : rule;
}

#endif /* TSRI_UNWIND_FAST && _WIN32 */
