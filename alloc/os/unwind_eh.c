/* unwind_eh.c: reading the unwind tables of ELF objects for the fast
 * stack walk on x86-64 Linux (unwind_x86.c).  For a return address it
 * finds the loaded object that holds it and the FDE that covers it
 * through the object's .eh_frame_hdr, and has cfi.c interpret that FDE
 * and its CIE into a rule word (unwind_x86.h: tsri_unwind_rule_compute).
 * The tables are read with pread from the object's file where its
 * headers and build-id show it is the image loaded, else in place ("where
 * the tables are read from").
 *
 * What it owns: finding objects and reading their tables.  What it leaves
 * to cfi.c: the CFI interpreter; to unwind_x86.c: the rule table that
 * caches its answers, so that it runs once per return address, only on a
 * miss, and the walk that steps by them.  A frame the rule word cannot
 * describe (unwind_x86.c lists them) gets TSRI_RULE_FALLBACK.  Objects
 * are found with _dl_find_object (glibc 2.35, lock-free), or with
 * dl_iterate_phdr where the C library lacks it.  Nothing here allocates.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "unwind_x86.h"

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

/* The x86-64 register set: RBP, RSP, the return address column. */
static const tsri_cfi_arch_t arch = { 6, 7, 16, 8 };

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
 * process that installed a seccomp filter since tessera started, which
 * may kill it at pread64, reads them in place (os.h:
 * tsri_os_restricted). */
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
  if (id == NULL || id_len == 0 || id_len > BUILD_ID_MAX || tsri_os_restricted()) return false;
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
  case TSRI_PE_UDATA2: case TSRI_PE_SDATA2: return 2;
  case TSRI_PE_UDATA4: case TSRI_PE_SDATA4: return 4;
  case TSRI_PE_ABSPTR: case TSRI_PE_UDATA8: case TSRI_PE_SDATA8: return 8;
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
  if (head[0] != 1 || head[1] == TSRI_PE_OMIT || head[2] == TSRI_PE_OMIT || ptr_size == 0 || count_size == 0 ||
      head[3] != (TSRI_PE_DATAREL | TSRI_PE_SDATA4))
    return SEARCH_UNSUPPORTED;
  if (!src_read(s, hdr + 4, head + 4, ptr_size + count_size)) return SEARCH_UNREAD;
  tsri_dw_reader_t c = { head + 4, head + 4 + ptr_size + count_size, false };
  uintptr_t bias = hdr - (uintptr_t)head, eh_frame, count;
  if (!tsri_cfi_encoded(&c, head[1], arch.word, hdr, bias, &eh_frame) || !tsri_cfi_encoded(&c, head[2], arch.word, hdr, bias, &count))
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
  uint32_t len = tsri_cfi_load32(fde), cie_delta = tsri_cfi_load32(fde + 4);
  if (len < 4 || cie_delta == 0) return TSRI_RULE_FALLBACK;
  const uint8_t *cie_rec = src_record(s, fde_at + 4 - cie_delta, cie_buf, sizeof cie_buf, &cie_bias);
  if (cie_rec == NULL) return s->fd < 0 ? TSRI_RULE_FALLBACK : RULE_UNREAD;
  tsri_cfi_cie_t cie;
  if (!tsri_cfi_cie_parse(cie_rec, cie_bias, &arch, &cie)) return TSRI_RULE_FALLBACK;
  /* a file holds the tables as linked: only pc-relative addresses in them
   * are the same as in memory whatever the load address */
  if (s->fd >= 0 && (cie.fde_enc & 0x70) != TSRI_PE_PCREL) return RULE_UNREAD;
  tsri_dw_reader_t c = { fde + 8, fde + 4 + len, false };
  uintptr_t begin, range;
  if (!tsri_cfi_encoded(&c, cie.fde_enc, arch.word, 0, fde_bias, &begin) ||
      !tsri_cfi_encoded(&c, cie.fde_enc & 0x0f, arch.word, 0, fde_bias, &range))
    return TSRI_RULE_FALLBACK;
  if (target - begin >= range) return TSRI_RULE_END;
  if (cie.has_z) tsri_dw_skip(&c, tsri_dw_uleb(&c));
  if (c.bad) return TSRI_RULE_FALLBACK;
  return tsri_cfi_rule(&arch, &cie, c.p, c.end, begin, target);
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
