/* windows_symbols.c: call stacks and symbols on Windows (os.h:
 * tsri_os_stack_capture, tsri_os_symbolize).
 *
 * Stacks, on x86-64, come from RtlCaptureStackBackTrace, which allocates
 * nothing and unwinds with the .pdata/.xdata tables every x64 PE carries
 * (mingw-w64 emits them), so it is exact without frame pointers.  On
 * 32-bit x86 it follows the EBP chain, which code built without frame
 * pointers does not keep, so there the walk is unwind_x86.c's, by the
 * DWARF CFI in the images' .eh_frame (unwind_pe.c), with
 * RtlCaptureStackBackTrace only where that walk finds a frame implausible.
 *
 * A symbol is found in three places, best first:
 *   1. the module: GetModuleHandleExW(FROM_ADDRESS) and its file name;
 *   2. the function: the COFF symbol table that GNU ld leaves in a PE file
 *      (unless it was stripped), read from the file mapped read-only, else
 *      the module's export table (system DLLs), read in memory;
 *   3. file and line: the DWARF .debug_line that gcc -g puts into the PE
 *      file, read by dwarf_line.c.
 * PDB files (what MSVC writes) are not read: a module built by MSVC gets
 * its exported names only, and no lines.
 *
 * Files are not trusted: every offset read from one is checked against the
 * mapping.  Nothing here allocates from a heap: files are mapped with
 * MapViewOfFile, paths live in stack buffers.
 */
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#include <windows.h>

#include "os.h"
#include "dwarf_line.h"
#include "unwind_x86.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Stacks
 * ---------------------------------------------------------------------- */

/* Inlined into the capture function, so that the first frame
 * RtlCaptureStackBackTrace reports is the return address into it, which
 * the + 1 drops. */
static inline __attribute__((always_inline)) size_t rtl_capture(void **frames, size_t max, size_t skip) {
  DWORD want = max > 0xff00 ? 0xff00 : (DWORD)max;
  return RtlCaptureStackBackTrace((DWORD)skip + 1, want, frames, NULL);
}

/* noinline: both walks count this function's frame as the first to drop. */
__attribute__((noinline)) size_t tsri_os_stack_capture(void **frames, size_t max, size_t skip) {
  if (max == 0 || skip > 0xfff0) return 0;
  DWORD saved_last = GetLastError();
#if TSRI_UNWIND_FAST
  /* taking our own frame address gives this function a frame pointer,
   * which is where the walk starts */
  size_t n = tsri_unwind_walk(__builtin_frame_address(0), frames, max, skip, NULL);
  if (n == TSRI_UNWIND_FALLBACK) n = rtl_capture(frames, max, skip);
#else
  size_t n = rtl_capture(frames, max, skip);
#endif
  SetLastError(saved_last);
  return n;
}

/* ------------------------------------------------------------------------
 * One PE file, mapped read-only, and what a lookup reads from it
 * ---------------------------------------------------------------------- */

#define SYM_CACHE 8

typedef struct pe_file_s {
  uintptr_t base;              /* load address of the module (HMODULE) */
  HANDLE file, mapping;
  const uint8_t *map;          /* the whole file; NULL: not open */
  size_t size;
  uint64_t image_base;         /* the preferred base, as DWARF numbers addresses */
  const IMAGE_SECTION_HEADER *sections;
  unsigned n_sections;
  const uint8_t *symbols;      /* COFF symbol table, 18-byte records; NULL: none */
  uint32_t n_symbols;
  const uint8_t *strings;      /* COFF string table (its size first) */
  uint32_t strings_size;
  tsri_dwarf_t dwarf;
} pe_file_t;

static bool pe_in(const pe_file_t *f, uint64_t off, uint64_t len) {
  return off <= f->size && len <= f->size - off;
}

/* The name of a section: short names inline, long ones ("/123") in the
 * string table.  "" when unreadable. */
static const char *pe_section_name(const pe_file_t *f, const IMAGE_SECTION_HEADER *s, char *buf) {
  memcpy(buf, s->Name, 8);
  buf[8] = 0;
  if (buf[0] != '/' || f->strings == NULL) return buf;
  uint32_t off = 0;
  for (const char *c = buf + 1; *c >= '0' && *c <= '9'; c++) off = off * 10 + (uint32_t)(*c - '0');
  if (off < 4 || off >= f->strings_size) return "";
  const char *name = (const char *)f->strings + off;
  return memchr(name, 0, f->strings_size - off) ? name : "";
}

static void pe_close(pe_file_t *f) {
  if (f->map != NULL) UnmapViewOfFile(f->map);
  if (f->mapping != NULL) CloseHandle(f->mapping);
  if (f->file != NULL && f->file != INVALID_HANDLE_VALUE) CloseHandle(f->file);
  memset(f, 0, sizeof *f);
}

/* Map path and find its headers, symbols and line tables. */
static void pe_open(pe_file_t *f, const wchar_t *path, uintptr_t base) {
  memset(f, 0, sizeof *f);
  f->base = base;
  f->file = CreateFileW(path, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                        NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
  if (f->file == INVALID_HANDLE_VALUE) { f->file = NULL; return; }
  LARGE_INTEGER size;
  if (!GetFileSizeEx(f->file, &size) || size.QuadPart < 512 || (uint64_t)size.QuadPart > SIZE_MAX) {
    pe_close(f);
    return;
  }
  f->mapping = CreateFileMappingW(f->file, NULL, PAGE_READONLY, 0, 0, NULL);
  if (f->mapping == NULL) { pe_close(f); return; }
  f->map = MapViewOfFile(f->mapping, FILE_MAP_READ, 0, 0, 0);
  if (f->map == NULL) { pe_close(f); return; }
  f->size = (size_t)size.QuadPart;

  const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)f->map;
  if (dos->e_magic != IMAGE_DOS_SIGNATURE || dos->e_lfanew < 0) { pe_close(f); return; }
  uint64_t nt = (uint64_t)dos->e_lfanew;
  if (!pe_in(f, nt, 4 + sizeof(IMAGE_FILE_HEADER) + 2) ||
      memcmp(f->map + nt, "PE\0\0", 4) != 0) { pe_close(f); return; }
  const IMAGE_FILE_HEADER *fh = (const IMAGE_FILE_HEADER *)(f->map + nt + 4);
  uint64_t opt = nt + 4 + sizeof(IMAGE_FILE_HEADER);
  uint16_t magic;
  memcpy(&magic, f->map + opt, 2);
  if (magic == IMAGE_NT_OPTIONAL_HDR64_MAGIC && pe_in(f, opt, sizeof(IMAGE_OPTIONAL_HEADER64)))
    f->image_base = ((const IMAGE_OPTIONAL_HEADER64 *)(f->map + opt))->ImageBase;
  else if (magic == IMAGE_NT_OPTIONAL_HDR32_MAGIC && pe_in(f, opt, sizeof(IMAGE_OPTIONAL_HEADER32)))
    f->image_base = ((const IMAGE_OPTIONAL_HEADER32 *)(f->map + opt))->ImageBase;
  else { pe_close(f); return; }
  uint64_t sec = opt + fh->SizeOfOptionalHeader;
  if (!pe_in(f, sec, (uint64_t)fh->NumberOfSections * sizeof(IMAGE_SECTION_HEADER))) { pe_close(f); return; }
  f->sections = (const IMAGE_SECTION_HEADER *)(f->map + sec);
  f->n_sections = fh->NumberOfSections;

  uint64_t symtab = fh->PointerToSymbolTable, nsym = fh->NumberOfSymbols;
  if (symtab != 0 && nsym != 0 && pe_in(f, symtab, nsym * IMAGE_SIZEOF_SYMBOL + 4)) {
    f->symbols = f->map + symtab;
    f->n_symbols = (uint32_t)nsym;
    uint64_t str = symtab + nsym * IMAGE_SIZEOF_SYMBOL;
    uint32_t str_size;
    memcpy(&str_size, f->map + str, 4);
    if (str_size >= 4 && pe_in(f, str, str_size)) {
      f->strings = f->map + str;
      f->strings_size = str_size;
    }
  }

  /* DWARF sections keep their real size in VirtualSize; the raw data is
   * that rounded up to the file alignment */
  for (unsigned i = 0; i < f->n_sections; i++) {
    const IMAGE_SECTION_HEADER *s = &f->sections[i];
    char buf[9];
    const char *name = pe_section_name(f, s, buf);
    uint64_t len = s->Misc.VirtualSize != 0 && s->Misc.VirtualSize < s->SizeOfRawData
                       ? s->Misc.VirtualSize : s->SizeOfRawData;
    if (strncmp(name, ".debug_", 7) != 0 || !pe_in(f, s->PointerToRawData, len)) continue;
    const uint8_t *data = f->map + s->PointerToRawData;
    if (strcmp(name, ".debug_line") == 0) { f->dwarf.line = data; f->dwarf.line_size = len; }
    else if (strcmp(name, ".debug_line_str") == 0) { f->dwarf.line_str = data; f->dwarf.line_str_size = len; }
    else if (strcmp(name, ".debug_str") == 0) { f->dwarf.str = data; f->dwarf.str_size = len; }
  }
}

static void sym_copy(char *dst, size_t size, const char *src, size_t len) {
  if (len >= size) len = size - 1;
  memcpy(dst, src, len);
  dst[len] = 0;
}

/* The function symbol of the COFF table at or below rva, in the section
 * that holds rva.  true with its name and start. */
static bool pe_coff_lookup(const pe_file_t *f, uint32_t rva, char *name, size_t size, uint32_t *start) {
  if (f->symbols == NULL) return false;
  const IMAGE_SECTION_HEADER *home = NULL;
  unsigned home_no = 0;
  for (unsigned i = 0; i < f->n_sections; i++) {
    const IMAGE_SECTION_HEADER *s = &f->sections[i];
    uint32_t span = s->Misc.VirtualSize ? s->Misc.VirtualSize : s->SizeOfRawData;
    if (rva >= s->VirtualAddress && rva - s->VirtualAddress < span) { home = s; home_no = i + 1; break; }
  }
  if (home == NULL) return false;
  const uint8_t *best = NULL;
  uint32_t best_rva = 0;
  for (uint32_t i = 0; i < f->n_symbols; i++) {
    IMAGE_SYMBOL sym;
    memcpy(&sym, f->symbols + (size_t)i * IMAGE_SIZEOF_SYMBOL, IMAGE_SIZEOF_SYMBOL);
    uint32_t aux = sym.NumberOfAuxSymbols;
    if (sym.SectionNumber == (SHORT)home_no && ISFCN(sym.Type) &&
        (sym.StorageClass == IMAGE_SYM_CLASS_EXTERNAL || sym.StorageClass == IMAGE_SYM_CLASS_STATIC)) {
      uint32_t at = home->VirtualAddress + sym.Value;
      if (at <= rva && (best == NULL || at >= best_rva)) {
        best = f->symbols + (size_t)i * IMAGE_SIZEOF_SYMBOL;
        best_rva = at;
      }
    }
    i += aux;
  }
  if (best == NULL) return false;
  IMAGE_SYMBOL sym;
  memcpy(&sym, best, IMAGE_SIZEOF_SYMBOL);
  const char *s;
  size_t len;
  if (sym.N.Name.Short != 0) {
    s = (const char *)best;
    len = strnlen(s, 8);
  } else {
    uint32_t off = sym.N.Name.Long;
    if (f->strings == NULL || off < 4 || off >= f->strings_size) return false;
    s = (const char *)f->strings + off;
    const char *end = memchr(s, 0, f->strings_size - off);
    if (end == NULL) return false;
    len = (size_t)(end - s);
  }
#if defined(__i386__)
  if (len > 1 && s[0] == '_') { s++; len--; }   /* the 32-bit C decoration */
#endif
  sym_copy(name, size, s, len);
  *start = best_rva;
  return true;
}

/* The exported function at or below rva of the loaded module at base
 * (read in memory: the module is mapped as an image). */
static bool pe_export_lookup(uintptr_t base, uint32_t rva, char *name, size_t size, uint32_t *start) {
  const IMAGE_DOS_HEADER *dos = (const IMAGE_DOS_HEADER *)base;
  if (dos->e_magic != IMAGE_DOS_SIGNATURE) return false;
  const IMAGE_NT_HEADERS *nt = (const IMAGE_NT_HEADERS *)(base + (uintptr_t)dos->e_lfanew);
  if (nt->Signature != IMAGE_NT_SIGNATURE ||
      nt->OptionalHeader.NumberOfRvaAndSizes <= IMAGE_DIRECTORY_ENTRY_EXPORT)
    return false;
  const IMAGE_DATA_DIRECTORY *dir = &nt->OptionalHeader.DataDirectory[IMAGE_DIRECTORY_ENTRY_EXPORT];
  if (dir->VirtualAddress == 0 || dir->Size < sizeof(IMAGE_EXPORT_DIRECTORY)) return false;
  const IMAGE_EXPORT_DIRECTORY *ex = (const IMAGE_EXPORT_DIRECTORY *)(base + dir->VirtualAddress);
  const DWORD *funcs = (const DWORD *)(base + ex->AddressOfFunctions);
  const DWORD *names = (const DWORD *)(base + ex->AddressOfNames);
  const WORD *ords = (const WORD *)(base + ex->AddressOfNameOrdinals);
  const char *best = NULL;
  uint32_t best_rva = 0;
  for (DWORD i = 0; i < ex->NumberOfNames; i++) {
    if (ords[i] >= ex->NumberOfFunctions) continue;
    uint32_t at = funcs[ords[i]];
    if (at >= dir->VirtualAddress && at < dir->VirtualAddress + dir->Size) continue;  /* forwarder */
    if (at <= rva && (best == NULL || at > best_rva)) {
      best = (const char *)(base + names[i]);
      best_rva = at;
    }
  }
  if (best == NULL) return false;
  sym_copy(name, size, best, strnlen(best, size));
  *start = best_rva;
  return true;
}

/* ------------------------------------------------------------------------
 * The batch cache: used only by the thread between tsri_os_symbols_begin
 * and _end (the report writer, under its lock); lookups on other threads
 * map their own file.
 * ---------------------------------------------------------------------- */

static pe_file_t sym_cache[SYM_CACHE];
static size_t sym_cache_used, sym_cache_next;
static _Atomic DWORD sym_batch_owner;   /* thread id; 0: no batch */

static bool sym_in_batch(void) {
  return atomic_load_explicit(&sym_batch_owner, memory_order_relaxed) == GetCurrentThreadId();
}

void tsri_os_symbols_begin(void) {
  if (sym_in_batch()) return;
  sym_cache_used = sym_cache_next = 0;
  atomic_store_explicit(&sym_batch_owner, GetCurrentThreadId(), memory_order_relaxed);
}

void tsri_os_symbols_end(void) {
  if (!sym_in_batch()) return;
  DWORD saved_last = GetLastError();
  for (size_t i = 0; i < sym_cache_used; i++) pe_close(&sym_cache[i]);
  sym_cache_used = 0;
  atomic_store_explicit(&sym_batch_owner, 0, memory_order_relaxed);
  SetLastError(saved_last);
}

static pe_file_t *sym_cache_get(const wchar_t *path, uintptr_t base) {
  for (size_t i = 0; i < sym_cache_used; i++)
    if (sym_cache[i].base == base) return &sym_cache[i];
  pe_file_t *f;
  if (sym_cache_used < SYM_CACHE) {
    f = &sym_cache[sym_cache_used++];
  } else {
    f = &sym_cache[sym_cache_next];
    sym_cache_next = (sym_cache_next + 1) % SYM_CACHE;
    pe_close(f);
  }
  pe_open(f, path, base);
  return f;
}

/* Function, offset, file and line of rva in f (the function also from the
 * exports when the file has no symbol for it). */
static void sym_describe(const pe_file_t *f, uintptr_t base, uint32_t rva, uintptr_t addr,
                         tsri_os_symbol_t *out) {
  uint32_t start = 0;
  if (pe_coff_lookup(f, rva, out->function, sizeof out->function, &start) ||
      pe_export_lookup(base, rva, out->function, sizeof out->function, &start))
    out->offset = addr - (base + start);
  if (f->dwarf.line != NULL)
    tsri_dwarf_find_line(&f->dwarf, f->image_base + rva, out->file, sizeof out->file, &out->line);
}

int tsri_os_symbolize(const void *addr, tsri_os_symbol_t *out) {
  int saved = errno;
  DWORD saved_last = GetLastError();
  memset(out, 0, sizeof *out);
  HMODULE mod = NULL;
  const char *call = (const char *)addr - 1;   /* the call instruction, not the next one */
  if (!GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS |
                          GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT, (LPCWSTR)call, &mod) ||
      mod == NULL) {
    SetLastError(saved_last);
    errno = saved;
    return ENOENT;
  }
  uintptr_t base = (uintptr_t)mod;
  wchar_t path[1024];
  DWORD n = GetModuleFileNameW(mod, path, sizeof path / sizeof path[0]);
  if (n > 0 && n < sizeof path / sizeof path[0]) {
    if (WideCharToMultiByte(CP_UTF8, 0, path, -1, out->module, (int)sizeof out->module, NULL, NULL) <= 0)
      out->module[0] = 0;
  } else {
    n = 0;
  }
  out->module_offset = (uintptr_t)addr - base;
  uint32_t rva = (uint32_t)((uintptr_t)call - base);
  if (n == 0) {
    pe_file_t none;
    memset(&none, 0, sizeof none);
    sym_describe(&none, base, rva, (uintptr_t)addr, out);
  } else if (sym_in_batch()) {
    sym_describe(sym_cache_get(path, base), base, rva, (uintptr_t)addr, out);
  } else {
    pe_file_t f;
    pe_open(&f, path, base);
    sym_describe(&f, base, rva, (uintptr_t)addr, out);
    pe_close(&f);
  }
  SetLastError(saved_last);
  errno = saved;
  return 0;
}
