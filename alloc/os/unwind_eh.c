/* unwind_eh.c: reading the unwind tables for the fast stack walk
 * (unwind_x86_64.c).  For a return address it finds the loaded object
 * that holds it, the FDE that covers it through the object's
 * .eh_frame_hdr, and interprets that FDE and its CIE (the subset
 * compilers emit for ordinary x86-64 functions) into a rule word
 * (unwind_x86_64.h: tsri_unwind_rule_compute).  The tables are read with
 * pread from the object's file where its headers and build-id show it is
 * the image loaded, else in place ("where the tables are read from").
 *
 * What it owns: finding objects, reading their tables, and the CFI
 * interpreter.  What it leaves to unwind_x86_64.c: the rule table that
 * caches its answers, so that it runs once per return address, only on a
 * miss, and the walk that steps by them.  A frame the rule word cannot
 * describe (unwind_x86_64.c lists them) gets TSRI_RULE_FALLBACK.  Objects
 * are found with _dl_find_object (glibc 2.35, lock-free), or with
 * dl_iterate_phdr where the C library lacks it.  Nothing here allocates.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "unwind_x86_64.h"
#include "dwarf_read.h"

#if TSRI_UNWIND_FAST

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "elf_note.h"

/* glibc defines this in every <dlfcn.h> that declares _dl_find_object. */
#if defined(DLFO_STRUCT_HAS_EH_DBASE)
#define HAVE_DL_FIND_OBJECT 1
#else
#define HAVE_DL_FIND_OBJECT 0
#endif

/* ------------------------------------------------------------------------
 * Reading .eh_frame
 * ---------------------------------------------------------------------- */

/* Pointer encodings (DW_EH_PE_*, LSB 5.0 "Exception Frames"). */
enum {
  PE_ABSPTR = 0x00, PE_ULEB128 = 0x01, PE_UDATA2 = 0x02, PE_UDATA4 = 0x03, PE_UDATA8 = 0x04,
  PE_SLEB128 = 0x09, PE_SDATA2 = 0x0a, PE_SDATA4 = 0x0b, PE_SDATA8 = 0x0c,
  PE_PCREL = 0x10, PE_DATAREL = 0x30, PE_ALIGNED = 0x50, PE_INDIRECT = 0x80, PE_OMIT = 0xff,
};

/* A pointer encoded as enc, read by c from a copy of the table that lies
 * bias bytes below the table itself (0: read in place).  datarel is the
 * base of DW_EH_PE_datarel (0: none known).  false for the encodings the
 * walk does not follow: omit, indirect, aligned, textrel, funcrel. */
static bool get_encoded(tsri_dw_reader_t *c, unsigned enc, uintptr_t datarel, uintptr_t bias,
                        uintptr_t *out) {
  if (enc == PE_OMIT || (enc & PE_INDIRECT) != 0) return false;
  uintptr_t here = (uintptr_t)c->p + bias;
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

/* ---- finding the object ------------------------------------------------ */

/* What the walk needs of the loaded object that holds an address: its
 * .eh_frame_hdr (the PT_GNU_EH_FRAME segment), and, to read that from the
 * object's file, where it is mapped and its file name. */
typedef struct eh_obj_s {
  const uint8_t *hdr;      /* NULL: the object has none */
  uintptr_t start;         /* its lowest mapped page; 0: unknown */
  uintptr_t base;          /* memory address - address in the file's headers */
  const char *name;        /* "": the program itself */
} eh_obj_t;

#define PAGE_MIN 4096   /* the smallest page size: what is surely mapped at start */
#define HEAD_MAX 1024   /* most bytes of ELF and program headers compared with the file */

#if HAVE_DL_FIND_OBJECT
/* false when addr is in no loaded object. */
static bool find_object(uintptr_t addr, eh_obj_t *o) {
  struct dl_find_object obj;
  if (_dl_find_object((void *)addr, &obj) != 0) return false;
  o->hdr = obj.dlfo_eh_frame;
  o->start = (uintptr_t)obj.dlfo_map_start;
  o->base = obj.dlfo_link_map->l_addr;
  o->name = obj.dlfo_link_map->l_name != NULL ? obj.dlfo_link_map->l_name : "";
  return true;
}
#else
typedef struct phdr_search_s {
  uintptr_t addr;
  bool found;
  eh_obj_t *obj;
} phdr_search_t;

static int phdr_visit(struct dl_phdr_info *info, size_t size, void *arg) {
  phdr_search_t *s = arg;
  bool inside = false;
  const uint8_t *hdr = NULL;
  uintptr_t lowest = UINTPTR_MAX;
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && s->addr - start < ph->p_memsz) inside = true;
    if (ph->p_type == PT_LOAD && start < lowest) lowest = start;
    if (ph->p_type == PT_GNU_EH_FRAME) hdr = (const uint8_t *)start;
  }
  if (!inside) return 0;
  s->found = true;
  *s->obj = (eh_obj_t){ hdr, lowest & ~(uintptr_t)(PAGE_MIN - 1), info->dlpi_addr,
                        info->dlpi_name != NULL ? info->dlpi_name : "" };
  return 1;
}

static bool find_object(uintptr_t addr, eh_obj_t *o) {
  phdr_search_t s = { addr, false, o };
  dl_iterate_phdr(phdr_visit, &s);
  return s.found;
}
#endif

/* The ELF header and program headers of o as mapped, when they lie where
 * the first mapped page of a conventionally linked object has them: at
 * its start, inside the page (always mapped), and mapped from the file's
 * first bytes.  Otherwise (a static program, whose lowest page is code;
 * headers moved elsewhere by a tool such as patchelf) NULL. */
static const ElfW(Ehdr) *image_headers(const eh_obj_t *o, size_t *head_len) {
  if (o->start == 0) return NULL;
  const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)o->start;
  if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64 ||
      eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phoff < sizeof *eh || eh->e_phoff > HEAD_MAX ||
      (size_t)eh->e_phnum * sizeof(ElfW(Phdr)) > HEAD_MAX - eh->e_phoff)
    return NULL;
  size_t len = eh->e_phoff + (size_t)eh->e_phnum * sizeof(ElfW(Phdr));
  const ElfW(Phdr) *phdr = (const ElfW(Phdr) *)(o->start + eh->e_phoff);
  bool first_page = false;
  for (size_t i = 0; i < eh->e_phnum; i++) {
    const ElfW(Phdr) *ph = &phdr[i];
    if (ph->p_type == PT_LOAD && ph->p_offset == 0 && ph->p_filesz >= len &&
        ((o->base + ph->p_vaddr) & ~(uintptr_t)(PAGE_MIN - 1)) == o->start)
      first_page = true;
    if (ph->p_type == PT_PHDR && o->base + ph->p_vaddr != o->start + eh->e_phoff) return NULL;
  }
  if (!first_page) return NULL;
  *head_len = len;
  return eh;
}

/* ---- where the tables are read from ------------------------------------ */

/* The tables of an object are read from its file when the file can be
 * opened and is the image loaded, else in place.  Reading them in place
 * maps them into the process: the binary search touches pages all over
 * .eh_frame_hdr and the FDE and CIE lie elsewhere again, and each first
 * touch of a page maps up to 64 KiB around it (the kernel's
 * fault-around).  For a program that allocates from a few places that was
 * 100 to 130 KiB of the C library's tables in its resident set, against a
 * few KiB of tessera's own memory for sampling.  Read with pread, from the
 * page cache, they add nothing to it.
 *
 * The file is opened and closed around each rule computed (once per
 * return address for the life of the process), so tessera never holds a
 * descriptor the program might close or count.  Its ELF header, program
 * headers and build-id must equal the loaded image's, or the tables are
 * read in place (a library replaced on disk since it was loaded; a
 * program started as an argument of the dynamic linker, whose
 * /proc/self/exe is the linker).  Only absolute names are opened: the
 * vDSO's is not a path, and a relative one was relative to the directory
 * of that moment.  The calls are raw system calls (raw_syscall).  A
 * process whose seccomp filter kills on openat or pread64 cannot sample
 * with this walk. */
typedef struct eh_src_s {
  int fd;                /* -1: read in place */
  uintptr_t lo, hi;      /* the memory the file backs: the tables' segment */
  uint64_t off;          /* the file offset of lo */
} eh_src_t;

#define BUILD_ID_MAX 64

/* The PT_LOAD of phdr[0..n) whose file-backed part holds [va, va + len)
 * (addresses of the file's headers), or NULL. */
static const ElfW(Phdr) *load_segment(const ElfW(Phdr) *phdr, size_t n, uintptr_t va, size_t len) {
  for (size_t i = 0; i < n; i++) {
    const ElfW(Phdr) *ph = &phdr[i];
    if (ph->p_type == PT_LOAD && va - ph->p_vaddr <= ph->p_filesz && len <= ph->p_filesz - (va - ph->p_vaddr))
      return ph;
  }
  return NULL;
}

/* A system call made here rather than through the C library: its
 * wrappers are cancellation points, which malloc must not be, may be
 * interposed by a program's own (allocating) open, set errno, and lie in
 * pages of the C library's code that a program may never otherwise run
 * (each first run maps up to 64 KiB of them).  -errno on failure. */
static long raw_syscall(long nr, long a, long b, long c, long d) {
  long ret;
  register long r10 __asm__("r10") = d;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
  return ret;
}

static bool read_file(int fd, void *buf, size_t n, uint64_t off) {
  long got;
  do got = raw_syscall(SYS_pread64, fd, (long)(uintptr_t)buf, (long)n, (long)off);
  while (got == -EINTR);
  return got == (long)n;
}

static void close_file(long fd) { raw_syscall(SYS_close, fd, 0, 0, 0); }

/* memcmp's answer to "equal?", without calling the C library's memcmp,
 * whose code a program may never otherwise run (see raw_syscall). */
static bool same_bytes(const uint8_t *a, const uint8_t *b, size_t n) {
  uint8_t diff = 0;
  for (size_t i = 0; i < n; i++) diff |= (uint8_t)(a[i] ^ b[i]);
  return diff == 0;
}

/* Open o's file for reading its tables: false (s in place) when o's
 * headers are not where image_headers looks, its tables lie in a writable
 * segment (they may be relocated there), it has no build-id, or its file
 * cannot be opened or is not the image loaded. */
static bool src_open(const eh_obj_t *o, eh_src_t *s) {
  s->fd = -1;
  size_t head_len;
  const ElfW(Ehdr) *eh = image_headers(o, &head_len);
  if (eh == NULL || o->hdr == NULL || (o->name[0] != 0 && o->name[0] != '/')) return false;
  const ElfW(Phdr) *phdr = (const ElfW(Phdr) *)((uintptr_t)eh + eh->e_phoff);
  size_t phnum = eh->e_phnum;
  const ElfW(Phdr) *seg = load_segment(phdr, phnum, (uintptr_t)o->hdr - o->base, 4);
  if (seg == NULL || (seg->p_flags & PF_W) != 0) return false;
  const uint8_t *id = NULL;
  size_t id_len = 0;
  uint64_t id_off = 0;
  for (size_t i = 0; i < phnum && id == NULL; i++) {
    const ElfW(Phdr) *ph = &phdr[i];
    if (ph->p_type != PT_NOTE || load_segment(phdr, phnum, ph->p_vaddr, ph->p_filesz) == NULL) continue;
    const uint8_t *notes = (const uint8_t *)(o->base + ph->p_vaddr);
    id = tsri_elf_build_id(notes, ph->p_filesz, ph->p_align == 8 ? 8 : 4, &id_len);
    if (id != NULL) id_off = ph->p_offset + (uint64_t)(id - notes);
  }
  if (id == NULL || id_len == 0 || id_len > BUILD_ID_MAX) return false;
  long fd;
  do fd = raw_syscall(SYS_openat, AT_FDCWD, (long)(uintptr_t)(o->name[0] != 0 ? o->name : "/proc/self/exe"),
                       O_RDONLY | O_CLOEXEC | O_NONBLOCK, 0);
  while (fd == -EINTR);
  if (fd < 0) return false;
  uint8_t head[HEAD_MAX], file_id[BUILD_ID_MAX];
  if (!read_file((int)fd, head, head_len, 0) || !same_bytes(head, (const uint8_t *)eh, head_len) ||
      !read_file((int)fd, file_id, id_len, id_off) || !same_bytes(file_id, id, id_len)) {
    close_file(fd);
    return false;
  }
  s->fd = (int)fd;
  s->lo = o->base + seg->p_vaddr;
  s->hi = s->lo + seg->p_filesz;
  s->off = seg->p_offset;
  return true;
}

/* Copy the n bytes at addr into buf.  false when the file cannot give them
 * (the computation is then redone in place). */
static bool src_read(const eh_src_t *s, uintptr_t addr, void *buf, size_t n) {
  if (s->fd < 0) {
    memcpy(buf, (const void *)addr, n);
    return true;
  }
  if (addr < s->lo || addr > s->hi || n > s->hi - addr) return false;
  return read_file(s->fd, buf, n, s->off + (addr - s->lo));
}

/* The .eh_frame record (CIE or FDE) at addr, its length field included:
 * in place, or copied into buf (cap bytes).  NULL when it is empty, too
 * long for buf, or unreadable; *bias: addr - the pointer returned. */
static const uint8_t *src_record(const eh_src_t *s, uintptr_t addr, uint8_t *buf, size_t cap,
                                 uintptr_t *bias) {
  uint32_t len;
  if (!src_read(s, addr, &len, sizeof len) || len == 0 || len == 0xffffffffu) return NULL;
  if (s->fd < 0) {
    *bias = 0;
    return (const uint8_t *)addr;
  }
  if (len > cap - 4 || !src_read(s, addr, buf, (size_t)len + 4)) return NULL;
  *bias = addr - (uintptr_t)buf;
  return buf;
}

/* ---- finding the FDE ---------------------------------------------------- */

enum { SEARCH_FOUND, SEARCH_MISSING, SEARCH_UNSUPPORTED, SEARCH_UNREAD };

/* Table entries the search reads in one go once the range is this narrow. */
#define HDR_WINDOW 32

/* The byte size of a fixed-size pointer encoding; 0 for the others. */
static size_t encoded_size(unsigned enc) {
  switch (enc & 0x0f) {
  case PE_UDATA2: case PE_SDATA2: return 2;
  case PE_UDATA4: case PE_SDATA4: return 4;
  case PE_ABSPTR: case PE_UDATA8: case PE_SDATA8: return 8;
  default: return 0;
  }
}

/* Binary search of .eh_frame_hdr's table for the FDE whose range starts at
 * or below addr.  Linkers write the table as (start, fde) pairs of sdata4
 * relative to the header, after two fields of fixed size; another layout
 * is left to libgcc. */
static int hdr_search(const eh_src_t *s, uintptr_t hdr, uintptr_t addr, uintptr_t *fde) {
  uint8_t head[4 + 16];
  if (!src_read(s, hdr, head, 4)) return SEARCH_UNREAD;
  size_t ptr_size = encoded_size(head[1]), count_size = encoded_size(head[2]);
  if (head[0] != 1 || head[1] == PE_OMIT || head[2] == PE_OMIT || ptr_size == 0 || count_size == 0 ||
      head[3] != (PE_DATAREL | PE_SDATA4))
    return SEARCH_UNSUPPORTED;
  if (!src_read(s, hdr + 4, head + 4, ptr_size + count_size)) return SEARCH_UNREAD;
  tsri_dw_reader_t c = { head + 4, head + 4 + ptr_size + count_size, false };
  uintptr_t bias = hdr - (uintptr_t)head, eh_frame, count;
  if (!get_encoded(&c, head[1], hdr, bias, &eh_frame) || !get_encoded(&c, head[2], hdr, bias, &count))
    return SEARCH_UNSUPPORTED;
  uintptr_t entries = hdr + 4 + ptr_size + count_size;
  if (count == 0) return SEARCH_MISSING;
  size_t lo = 0, hi = count;
  while (hi - lo > HDR_WINDOW) {
    size_t mid = lo + (hi - lo) / 2;
    int32_t start;
    if (!src_read(s, entries + 8 * mid, &start, sizeof start)) return SEARCH_UNREAD;
    if (hdr + (uintptr_t)(int64_t)start <= addr) lo = mid;
    else hi = mid;
  }
  int32_t window[2 * HDR_WINDOW];
  if (!src_read(s, entries + 8 * lo, window, 8 * (hi - lo))) return SEARCH_UNREAD;
  size_t i = 0;
  while (i + 1 < hi - lo && hdr + (uintptr_t)(int64_t)window[2 * (i + 1)] <= addr) i++;
  if (hdr + (uintptr_t)(int64_t)window[2 * i] > addr) return SEARCH_MISSING;
  *fde = hdr + (uintptr_t)(int64_t)window[2 * i + 1];
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

/* Parse the CIE at p (src_record's answer; bias as it gives).  false where
 * the walk must leave the frame to libgcc: a signal frame ('S'), an
 * augmentation it does not know, a return address column other than 16. */
static bool cie_parse(const uint8_t *p, uintptr_t bias, cie_t *cie) {
  uint32_t len = load32(p);
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
        if ((enc & 0x70) == PE_ALIGNED || !get_encoded(&a, enc & 0x0f, 0, bias, &ignored)) return false;
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
  if (ra->how == HOW_UNDEFINED) return TSRI_RULE_END;
  if (ra->how != HOW_OFFSET || ra->offset != -8) return TSRI_RULE_FALLBACK;
  if (r->cfa_expr || (r->cfa_reg != REG_RSP && r->cfa_reg != REG_RBP)) return TSRI_RULE_FALLBACK;
  if (rsp->how != HOW_SAME && rsp->how != HOW_UNDEFINED) return TSRI_RULE_FALLBACK;
  /* libgcc keeps the callee's value for same-value and undefined alike */
  if (rbp->how == HOW_SAME || rbp->how == HOW_UNDEFINED)
    return tsri_rule_step(r->cfa_reg == REG_RBP, r->cfa_offset, false, 0);
  if (rbp->how == HOW_OFFSET) return tsri_rule_step(r->cfa_reg == REG_RBP, r->cfa_offset, true, rbp->offset);
  return TSRI_RULE_FALLBACK;
}

/* rule_read's answer when the file failed it: compute again in place. */
#define RULE_UNREAD UINT64_MAX

/* The longest FDE and CIE read from a file; longer ones are read in place. */
#define FDE_MAX 512
#define CIE_MAX 128

/* The rule for the frame whose call is at target, from the FDE covering it
 * in o's tables, read from s. */
static uint64_t rule_read(const eh_src_t *s, const eh_obj_t *o, uintptr_t target) {
  uintptr_t fde_at = 0;
  switch (hdr_search(s, (uintptr_t)o->hdr, target, &fde_at)) {
  case SEARCH_FOUND: break;
  case SEARCH_MISSING: return TSRI_RULE_END;
  case SEARCH_UNREAD: return RULE_UNREAD;
  default: return TSRI_RULE_FALLBACK;
  }
  uint8_t fde_buf[FDE_MAX], cie_buf[CIE_MAX];
  uintptr_t fde_bias, cie_bias;
  const uint8_t *fde = src_record(s, fde_at, fde_buf, sizeof fde_buf, &fde_bias);
  if (fde == NULL) return s->fd < 0 ? TSRI_RULE_FALLBACK : RULE_UNREAD;
  uint32_t len = load32(fde), cie_delta = load32(fde + 4);
  if (len < 4 || cie_delta == 0) return TSRI_RULE_FALLBACK;
  const uint8_t *cie_rec = src_record(s, fde_at + 4 - cie_delta, cie_buf, sizeof cie_buf, &cie_bias);
  if (cie_rec == NULL) return s->fd < 0 ? TSRI_RULE_FALLBACK : RULE_UNREAD;
  cie_t cie;
  if (!cie_parse(cie_rec, cie_bias, &cie)) return TSRI_RULE_FALLBACK;
  /* a file holds the tables as linked: only pc-relative addresses in them
   * are the same as in memory whatever the load address */
  if (s->fd >= 0 && (cie.fde_enc & 0x70) != PE_PCREL) return RULE_UNREAD;
  tsri_dw_reader_t c = { fde + 8, fde + 4 + len, false };
  uintptr_t begin, range;
  if (!get_encoded(&c, cie.fde_enc, 0, fde_bias, &begin) ||
      !get_encoded(&c, cie.fde_enc & 0x0f, 0, fde_bias, &range))
    return TSRI_RULE_FALLBACK;
  if (target - begin >= range) return TSRI_RULE_END;
  if (cie.has_z) tsri_dw_skip(&c, tsri_dw_uleb(&c));
  if (c.bad) return TSRI_RULE_FALLBACK;

  cfa_state_t st;
  memset(&st, 0, sizeof st);
  st.cur.cfa_reg = UINT64_MAX;
  st.code_align = cie.code_align;
  st.data_align = cie.data_align;
  uintptr_t loc = begin;
  if (!cfa_run(&st, cie.insns, cie.end, &loc, target)) return TSRI_RULE_FALLBACK;
  st.initial = st.cur;
  if (!cfa_run(&st, c.p, c.end, &loc, target)) return TSRI_RULE_FALLBACK;
  return rules_to_word(&st.cur);
}

static uint64_t rule_from_file(const eh_obj_t *o, uintptr_t target) {
  eh_src_t s;
  if (!src_open(o, &s)) return RULE_UNREAD;
  uint64_t rule = rule_read(&s, o, target);
  close_file(s.fd);
  return rule;
}

static uint64_t rule_in_place(const eh_obj_t *o, uintptr_t target) {
  eh_src_t s = { -1, 0, 0, 0 };
  return rule_read(&s, o, target);
}

static _Atomic uint64_t reads_from_file, reads_in_place;

uint64_t tsri_unwind_rule_compute(uintptr_t pc) {
  uintptr_t target = pc - 1;
  eh_obj_t o;
  if (!find_object(target, &o)) return TSRI_RULE_NONE;
  if (o.hdr == NULL) return TSRI_RULE_END;
  uint64_t rule = rule_from_file(&o, target);
  bool in_place = rule == RULE_UNREAD;
  if (in_place) rule = rule_in_place(&o, target);
  atomic_fetch_add_explicit(in_place ? &reads_in_place : &reads_from_file, 1, memory_order_relaxed);
  return rule;
}

tsri_unwind_reads_t tsri_unwind_reads(void) {
  return (tsri_unwind_reads_t){ atomic_load_explicit(&reads_from_file, memory_order_relaxed),
                                atomic_load_explicit(&reads_in_place, memory_order_relaxed) };
}

bool tsri_unwind_rule_both(uintptr_t pc, uint64_t *from_file, uint64_t *in_place) {
  eh_obj_t o;
  if (!find_object(pc - 1, &o) || o.hdr == NULL) return false;
  *from_file = rule_from_file(&o, pc - 1);
  *in_place = rule_in_place(&o, pc - 1);
  return *from_file != RULE_UNREAD;
}

#endif /* TSRI_UNWIND_FAST */
