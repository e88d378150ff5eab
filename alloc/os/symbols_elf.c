/* symbols_elf.c: naming code addresses for the report writers (os.h:
 * tsri_os_symbolize), on Linux and other systems of ELF64 objects.
 *
 * Owns: finding the loaded module that holds an address (dl_iterate_phdr),
 * mapping its file read-only, the section table, the function symbol from
 * .symtab or .dynsym, the separate debug file (by build-id or
 * .gnu_debuglink), and the cache of mapped files for one batch of lookups.
 * The line tables are read by dwarf_line.c.
 *
 * A report is written while the heap may be in any state, so nothing here
 * calls malloc or a libc function that may: files are read through open,
 * fstat and mmap, paths are built in stack buffers, and dl_iterate_phdr
 * and readlink allocate nothing.
 *
 * Files are not trusted: every offset and size read from one is checked
 * against its mapping before use, so a truncated or malformed file gives
 * empty fields.  A file whose build-id differs from the loaded image's
 * (the library was replaced on disk since it was loaded) is not used.
 * A file cut short by someone else after it was mapped can still fault
 * (SIGBUS) when read: the price of mapping files instead of copying them.
 *
 * Not supported: ELF32 and foreign byte orders, compressed debug sections
 * (SHF_COMPRESSED; only the function name is found then), the vDSO (no
 * file: its module name only), and symbols without a size (assembly that
 * declares none).
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "os.h"

#include "dwarf_line.h"
#include "elf_note.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Longest module or debug file path we handle; longer ones go unopened. */
#define SYM_PATH 1024
/* Files kept mapped during a batch: the executable, the C library, the
 * allocator and a few more cover a typical report. */
#define SYM_CACHE 16
/* Longest build-id compared (GNU ld writes 20 bytes, SHA-1). */
#define SYM_BUILD_ID 64

typedef struct sym_span_s {
  const uint8_t *p;
  size_t n;
} sym_span_t;

/* One mapped ELF file and the sections we read, all inside the mapping. */
typedef struct elf_file_s {
  const uint8_t *map;        /* the whole file, read-only; NULL: not open */
  size_t size;
  sym_span_t symtab, strtab; /* .symtab and the names it points into */
  sym_span_t dynsym, dynstr; /* .dynsym and its names */
  tsri_dwarf_t dwarf;        /* the line sections; empty where compressed */
  const char *debuglink;     /* .gnu_debuglink file name, NUL inside the map */
  sym_span_t build_id;       /* the NT_GNU_BUILD_ID descriptor; n 0: none */
} elf_file_t;

/* What dl_iterate_phdr tells about the module that holds an address. */
typedef struct sym_found_s {
  uintptr_t addr;            /* in: the address looked up (return address - 1) */
  unsigned index;            /* modules seen so far; 0 is the executable */
  bool found;
  bool is_exe;               /* the main program: open /proc/self/exe */
  bool has_file;             /* false for the vDSO */
  uintptr_t base;            /* dlpi_addr: memory address - file address */
  uint64_t name_hash;        /* of dlpi_name, with base the cache key */
  char path[SYM_PATH];       /* dlpi_name, or the executable's path */
  uint8_t build_id[SYM_BUILD_ID]; /* of the image in memory */
  size_t build_id_len;       /* 0: unknown */
} sym_found_t;

/* A module's files, opened together. */
typedef struct sym_module_s {
  uintptr_t base;            /* cache key, with name_hash */
  uint64_t name_hash;
  elf_file_t file;           /* the module's own file */
  elf_file_t debug;          /* its separate debug file; map NULL: none */
} sym_module_t;

/* ------------------------------------------------------------------------
 * ELF files
 * ---------------------------------------------------------------------- */

/* The GNU build-id note among the notes [p, p + n), aligned to align. */
static sym_span_t elf_note_build_id(const uint8_t *p, size_t n, size_t align) {
  sym_span_t id = { NULL, 0 };   /* n stays 0 where there is none */
  id.p = tsri_elf_build_id(p, n, align, &id.n);
  return id;
}

/* The bytes of section s, or an empty span when they are not all inside
 * the file, occupy no file space, or are compressed. */
static sym_span_t elf_section(const elf_file_t *e, const Elf64_Shdr *s) {
  if (s->sh_type == SHT_NOBITS || (s->sh_flags & SHF_COMPRESSED) || s->sh_offset > e->size ||
      s->sh_size > e->size - s->sh_offset)
    return (sym_span_t){ NULL, 0 };
  return (sym_span_t){ e->map + s->sh_offset, s->sh_size };
}

/* The NUL-terminated string at offset off of a string table, or NULL. */
static const char *elf_str(sym_span_t strs, uint64_t off) {
  if (off >= strs.n || memchr(strs.p + off, 0, strs.n - off) == NULL) return NULL;
  return (const char *)strs.p + off;
}

/* Read section header i; false when the table does not hold it. */
static bool elf_shdr(const elf_file_t *e, uint64_t shoff, uint64_t shnum, uint64_t i,
                     Elf64_Shdr *s) {
  if (i >= shnum) return false;
  memcpy(s, e->map + shoff + i * sizeof *s, sizeof *s);
  return true;
}

/* A symbol table and its string table (sh_link); empty spans when either
 * is unusable. */
static void elf_symbols(const elf_file_t *e, uint64_t shoff, uint64_t shnum, const Elf64_Shdr *s,
                        sym_span_t *syms, sym_span_t *strs) {
  Elf64_Shdr link;
  if (s->sh_entsize != sizeof(Elf64_Sym) || !elf_shdr(e, shoff, shnum, s->sh_link, &link)) return;
  *syms = elf_section(e, s);
  *strs = elf_section(e, &link);
}

/* Find the sections of the mapped file e.  false when it is no ELF64 file
 * of our byte order with a readable section table. */
static bool elf_parse(elf_file_t *e) {
  Elf64_Ehdr eh;
  if (e->size < sizeof eh) return false;
  memcpy(&eh, e->map, sizeof eh);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  const unsigned char order = ELFDATA2MSB;
#else
  const unsigned char order = ELFDATA2LSB;
#endif
  if (memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64 ||
      eh.e_ident[EI_DATA] != order || eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shoff == 0 ||
      eh.e_shoff > e->size || e->size - eh.e_shoff < sizeof(Elf64_Shdr))
    return false;
  /* More than 0xff00 sections: the real count and string table index sit
   * in section 0. */
  uint64_t shoff = eh.e_shoff, shnum = eh.e_shnum, shstrndx = eh.e_shstrndx;
  Elf64_Shdr s;
  memcpy(&s, e->map + shoff, sizeof s);
  if (shnum == 0) shnum = s.sh_size;
  if (shstrndx == SHN_XINDEX) shstrndx = s.sh_link;
  if (shnum > (e->size - shoff) / sizeof(Elf64_Shdr) || !elf_shdr(e, shoff, shnum, shstrndx, &s))
    return false;
  sym_span_t names = elf_section(e, &s);

  for (uint64_t i = 1; i < shnum; i++) {
    elf_shdr(e, shoff, shnum, i, &s);
    if (s.sh_type == SHT_SYMTAB) {
      elf_symbols(e, shoff, shnum, &s, &e->symtab, &e->strtab);
    } else if (s.sh_type == SHT_DYNSYM) {
      elf_symbols(e, shoff, shnum, &s, &e->dynsym, &e->dynstr);
    } else if (s.sh_type == SHT_NOTE && e->build_id.n == 0) {
      sym_span_t notes = elf_section(e, &s);
      if (notes.n) e->build_id = elf_note_build_id(notes.p, notes.n, s.sh_addralign == 8 ? 8 : 4);
    }
    const char *name = elf_str(names, s.sh_name);
    if (name == NULL || s.sh_type == SHT_NOBITS) continue;
    sym_span_t data = elf_section(e, &s);
    if (strcmp(name, ".debug_line") == 0) {
      e->dwarf.line = data.p;
      e->dwarf.line_size = data.n;
    } else if (strcmp(name, ".debug_line_str") == 0) {
      e->dwarf.line_str = data.p;
      e->dwarf.line_str_size = data.n;
    } else if (strcmp(name, ".debug_str") == 0) {
      e->dwarf.str = data.p;
      e->dwarf.str_size = data.n;
    } else if (strcmp(name, ".gnu_debuglink") == 0) {
      e->debuglink = elf_str(data, 0);
    }
  }
  return true;
}

static void elf_close(elf_file_t *e) {
  if (e->map != NULL) munmap((void *)e->map, e->size);
  memset(e, 0, sizeof *e);
}

/* Map the file at path and find its sections; false (e closed) when it
 * cannot be opened or is no ELF file we read. */
static bool elf_open(elf_file_t *e, const char *path) {
  memset(e, 0, sizeof *e);
  int fd;
  do fd = open(path, O_RDONLY | O_CLOEXEC);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return false;
  struct stat st;
  void *map = MAP_FAILED;
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
      (uint64_t)st.st_size <= SIZE_MAX)
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return false;
  e->map = map;
  e->size = (size_t)st.st_size;
  if (elf_parse(e)) return true;
  elf_close(e);
  return false;
}

/* Does e's build-id contradict the one in memory (id, len; 0: unknown)? */
static bool elf_other_build(const elf_file_t *e, const uint8_t *id, size_t len) {
  return len != 0 && e->build_id.n != 0 &&
         (e->build_id.n != len || memcmp(e->build_id.p, id, len) != 0);
}

/* ------------------------------------------------------------------------
 * Symbols
 * ---------------------------------------------------------------------- */

/* Find the function symbol of syms (names in strs) whose [value,
 * value + size) holds vaddr; copy its name to out and its value to *value.
 * Of several, the smallest wins (the most specific), then the global one
 * over weak and local aliases.  Function-typed symbols count, and untyped
 * or indirect ones that have a size (assembly, IFUNC resolvers). */
static bool sym_lookup(sym_span_t syms, sym_span_t strs, uint64_t vaddr, char *out, size_t size,
                       uint64_t *value) {
  const char *best = NULL;
  uint64_t best_size = 0;
  int best_rank = 0;
  size_t count = syms.n / sizeof(Elf64_Sym);
  for (size_t i = 1; i < count; i++) {  /* 0 is the undefined symbol */
    Elf64_Sym s;
    memcpy(&s, syms.p + i * sizeof s, sizeof s);
    unsigned type = ELF64_ST_TYPE(s.st_info), bind = ELF64_ST_BIND(s.st_info);
    if (s.st_shndx == SHN_UNDEF || s.st_shndx == SHN_ABS || s.st_size == 0 ||
        vaddr - s.st_value >= s.st_size)
      continue;
    if (type != STT_FUNC && type != STT_NOTYPE && type != STT_GNU_IFUNC) continue;
    int rank = bind == STB_GLOBAL ? 2 : bind == STB_WEAK ? 1 : 0;
    if (best != NULL && (s.st_size > best_size || (s.st_size == best_size && rank <= best_rank)))
      continue;
    const char *name = elf_str(strs, s.st_name);
    if (name == NULL || name[0] == 0) continue;
    best = name;
    best_size = s.st_size;
    best_rank = rank;
    *value = s.st_value;
  }
  if (best == NULL) return false;
  size_t n = strlen(best);
  if (n >= size) n = size - 1;
  memcpy(out, best, n);
  out[n] = 0;
  return true;
}

/* ------------------------------------------------------------------------
 * Finding the module
 * ---------------------------------------------------------------------- */

static uint64_t sym_hash(const char *s) {
  uint64_t h = 0xcbf29ce484222325u;  /* FNV-1a */
  for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3u;
  return h;
}

static void sym_copy(char *dst, size_t size, const char *src) {
  size_t n = strlen(src);
  if (n >= size) n = size - 1;
  memcpy(dst, src, n);
  dst[n] = 0;
}

/* Is [start, start + len) inside a loaded segment of the module? */
static bool sym_in_load(const struct dl_phdr_info *info, uintptr_t start, size_t len) {
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && start >= ph->p_vaddr && len <= ph->p_memsz &&
        start - ph->p_vaddr <= ph->p_memsz - len)
      return true;
  }
  return false;
}

/* dl_iterate_phdr callback, under the loader's lock: record the module
 * whose loaded segments hold f->addr and stop.  Only copies: the files
 * are opened after the lock is dropped. */
static int sym_find_module(struct dl_phdr_info *info, size_t size, void *arg) {
  sym_found_t *f = arg;
  unsigned index = f->index++;
  if (!sym_in_load(info, f->addr - info->dlpi_addr, 1)) return 0;
  const char *name = info->dlpi_name != NULL ? info->dlpi_name : "";
  f->found = true;
  f->base = info->dlpi_addr;
  f->name_hash = sym_hash(name);
  f->is_exe = index == 0 && name[0] == 0;
  f->has_file = f->is_exe || (name[0] != 0 && strncmp(name, "linux-vdso", 10) != 0 &&
                              strncmp(name, "linux-gate", 10) != 0);
  sym_copy(f->path, sizeof f->path, name);
  for (size_t i = 0; i < info->dlpi_phnum && f->build_id_len == 0; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_NOTE || !sym_in_load(info, ph->p_vaddr, ph->p_memsz)) continue;
    sym_span_t id = elf_note_build_id((const uint8_t *)(info->dlpi_addr + ph->p_vaddr),
                                      ph->p_memsz, ph->p_align == 8 ? 8 : 4);
    if (id.n != 0 && id.n <= SYM_BUILD_ID) {
      memcpy(f->build_id, id.p, id.n);
      f->build_id_len = id.n;
    }
  }
  return 1;
}

/* Build a path from pieces into out; false when it does not fit. */
static bool sym_path(char *out, const char *a, size_t alen, const char *b, const char *c) {
  size_t blen = strlen(b), clen = strlen(c);
  if (alen + blen + clen >= SYM_PATH) return false;
  memcpy(out, a, alen);
  memcpy(out + alen, b, blen);
  memcpy(out + alen + blen, c, clen + 1);
  return true;
}

/* Use the file at path as m's debug file if it adds something (line
 * tables, or the full symbol table of a stripped module; distributions
 * compress the line tables of their debug packages, and the names alone
 * are still worth having) and does not belong to another build. */
static bool sym_debug_try(sym_module_t *m, const sym_found_t *f, const char *path) {
  if (!elf_open(&m->debug, path)) return false;
  const elf_file_t *d = &m->debug;
  bool adds = d->dwarf.line != NULL || (m->file.symtab.n == 0 && d->symtab.n != 0);
  if (adds && !elf_other_build(d, f->build_id, f->build_id_len) &&
      !elf_other_build(d, m->file.build_id.p, m->file.build_id.n))
    return true;
  elf_close(&m->debug);
  return false;
}

/* Look for m's separate debug file where GDB does: by build-id under
 * /usr/lib/debug/.build-id, then by the .gnu_debuglink name next to the
 * module, in .debug/ beside it, and under /usr/lib/debug. */
static void sym_debug_open(sym_module_t *m, const sym_found_t *f) {
  char path[SYM_PATH];
  sym_span_t id = m->file.build_id;
  if (id.n >= 2 && id.n <= SYM_BUILD_ID) {
    static const char hex[] = "0123456789abcdef";
    char name[2 * SYM_BUILD_ID + 8];
    size_t k = 0;
    for (size_t i = 0; i < id.n; i++) {
      name[k++] = hex[id.p[i] >> 4];
      name[k++] = hex[id.p[i] & 15];
      if (i == 0) name[k++] = '/';
    }
    name[k] = 0;
    const char *prefix = "/usr/lib/debug/.build-id/";
    if (sym_path(path, prefix, strlen(prefix), name, ".debug") && sym_debug_try(m, f, path))
      return;
  }
  const char *link = m->file.debuglink;
  if (link == NULL || link[0] == 0 || strchr(link, '/') != NULL) return;
  const char *slash = strrchr(f->path, '/');
  if (slash == NULL) return;
  size_t dir = (size_t)(slash - f->path) + 1;  /* with the slash */
  if (sym_path(path, f->path, dir, link, "") && sym_debug_try(m, f, path)) return;
  if (sym_path(path, f->path, dir, ".debug/", link) && sym_debug_try(m, f, path)) return;
  char under[SYM_PATH];
  if (f->path[0] == '/' && sym_path(under, "/usr/lib/debug", 14, f->path, "") &&
      sym_path(path, under, 14 + dir, link, "") && sym_debug_try(m, f, path))
    return;
}

/* Open the files of the module f found.  Whatever cannot be used stays
 * closed; the lookups then find nothing in it. */
static void sym_module_open(sym_module_t *m, const sym_found_t *f) {
  memset(m, 0, sizeof *m);
  m->base = f->base;
  m->name_hash = f->name_hash;
  if (!f->has_file || !elf_open(&m->file, f->is_exe ? "/proc/self/exe" : f->path)) return;
  if (elf_other_build(&m->file, f->build_id, f->build_id_len)) {
    elf_close(&m->file);
    return;
  }
  if (m->file.dwarf.line == NULL) sym_debug_open(m, f);
}

static void sym_module_close(sym_module_t *m) {
  elf_close(&m->file);
  elf_close(&m->debug);
}

/* ------------------------------------------------------------------------
 * The batch cache
 *
 * Used only by the thread between tsri_os_symbols_begin and _end (the
 * report writer, which holds the report lock across the batch); a lookup
 * on any other thread opens its own files, so it never sees an entry
 * being replaced.
 * ---------------------------------------------------------------------- */

static sym_module_t sym_cache[SYM_CACHE];
static size_t sym_cache_used;    /* entries in use, from 0 */
static size_t sym_cache_next;    /* the one replaced next, once all are used */
static _Atomic uintptr_t sym_batch_owner;  /* the batch's thread; 0: none */

static uintptr_t sym_self(void) { return (uintptr_t)pthread_self(); }

static bool sym_in_batch(void) {
  return atomic_load_explicit(&sym_batch_owner, memory_order_relaxed) == sym_self();
}

/* The cached module f found, opened now if it is not there; the oldest
 * entry makes room once the cache is full. */
static sym_module_t *sym_cache_get(const sym_found_t *f) {
  for (size_t i = 0; i < sym_cache_used; i++)
    if (sym_cache[i].base == f->base && sym_cache[i].name_hash == f->name_hash)
      return &sym_cache[i];
  sym_module_t *m;
  if (sym_cache_used < SYM_CACHE) {
    m = &sym_cache[sym_cache_used++];
  } else {
    m = &sym_cache[sym_cache_next];
    sym_cache_next = (sym_cache_next + 1) % SYM_CACHE;
    sym_module_close(m);
  }
  sym_module_open(m, f);
  return m;
}

/* A second begin on the batch's own thread is harmless: the batch goes on
 * until the end. */
void tsri_os_symbols_begin(void) {
  if (sym_in_batch()) return;
  sym_cache_used = 0;
  sym_cache_next = 0;
  atomic_store_explicit(&sym_batch_owner, sym_self(), memory_order_relaxed);
}

void tsri_os_symbols_end(void) {
  if (!sym_in_batch()) return;
  int saved = errno;
  for (size_t i = 0; i < sym_cache_used; i++) sym_module_close(&sym_cache[i]);
  sym_cache_used = 0;
  atomic_store_explicit(&sym_batch_owner, 0, memory_order_relaxed);
  errno = saved;
}

/* ------------------------------------------------------------------------
 * Lookup
 * ---------------------------------------------------------------------- */

/* Fill the function and line fields of out for addr, in module m. */
static void sym_describe(const sym_module_t *m, uintptr_t addr, tsri_os_symbol_t *out) {
  uint64_t vaddr = addr - 1 - m->base;  /* the call, as the file numbers it */
  uint64_t value = 0;
  if (sym_lookup(m->file.symtab, m->file.strtab, vaddr, out->function, sizeof out->function,
                 &value) ||
      sym_lookup(m->debug.symtab, m->debug.strtab, vaddr, out->function, sizeof out->function,
                 &value) ||
      sym_lookup(m->file.dynsym, m->file.dynstr, vaddr, out->function, sizeof out->function,
                 &value))
    out->offset = addr - (m->base + (uintptr_t)value);
  const tsri_dwarf_t *dwarf = m->file.dwarf.line != NULL ? &m->file.dwarf : &m->debug.dwarf;
  tsri_dwarf_find_line(dwarf, vaddr, out->file, sizeof out->file, &out->line);
}

int tsri_os_symbolize(const void *addr, tsri_os_symbol_t *out) {
  int saved = errno;
  memset(out, 0, sizeof *out);
  sym_found_t f;
  memset(&f, 0, sizeof f);
  f.addr = (uintptr_t)addr - 1;
  dl_iterate_phdr(sym_find_module, &f);
  if (!f.found) {
    errno = saved;
    return ENOENT;
  }
  if (f.is_exe) {
    ssize_t n = readlink("/proc/self/exe", f.path, sizeof f.path - 1);
    if (n > 0)
      f.path[n] = 0;
    else
      sym_copy(f.path, sizeof f.path, "/proc/self/exe");
  }
  sym_copy(out->module, sizeof out->module, f.path);
  out->module_offset = (uintptr_t)addr - f.base;
  if (f.has_file) {
    if (sym_in_batch()) {
      sym_describe(sym_cache_get(&f), (uintptr_t)addr, out);
    } else {
      sym_module_t m;
      sym_module_open(&m, &f);
      sym_describe(&m, (uintptr_t)addr, out);
      sym_module_close(&m);
    }
  }
  errno = saved;
  return 0;
}
