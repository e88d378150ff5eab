/* libc_info.c: the C library's questions about its heap, answered for
 * tessera's: mallinfo, mallinfo2, malloc_stats, malloc_info and
 * malloc_trim (glibc's <malloc.h>).
 *
 * Compiled only into the override library, beside override.c: a program
 * that swaps tessera in and reads these (a server exporting mallinfo2 as
 * metrics, Ruby's collector calling malloc_trim after a full pass) would
 * otherwise get glibc's own heap, which is empty, and a trim that gives
 * nothing back.
 *
 * The figures come from one pass over the arenas and the large blocks'
 * totals, in glibc's terms, so that keepcost <= fordblks <= arena holds
 * as in glibc:
 *   arena     bytes committed to the size classes' pages, guarded
 *             sampling's blocks, and keepcost's (glibc: the arenas'
 *             memory that is not mmapped, its free top included)
 *   ordblks   free blocks in the classes' pages; smblks, fsmblks 0 (no
 *             fastbins)
 *   hblks     live large blocks; hblkhd: their bytes (above 128 KiB,
 *             where glibc's default mmap threshold also puts them)
 *   usmblks   0, as glibc
 *   uordblks  usable bytes of live blocks of the classes and guarded
 *             ones; fordblks the rest of arena
 *   keepcost  free slots still committed and freed large blocks kept for
 *             reuse: what malloc_trim gives back (glibc: the free top of
 *             the heap, which trimming releases)
 * mallinfo's int fields take the same figures cut to int, as glibc's do.
 * Only the maximum lines of malloc_stats and malloc_info differ in kind:
 * tessera keeps no peaks, and they show the current figures.  Nothing
 * big goes on the stack: programs call these from threads of their own,
 * whose stacks may be small.
 */
#include "report.h"

#if defined(__GLIBC__)
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>

#define TSRI_EXPORT __attribute__((visibility("default")))

typedef struct libc_info_s {
  uint64_t pages;   /* bytes of the classes' pages */
  uint64_t arena, ordblks, hblks, hblkhd, uordblks, fordblks, keepcost;
  uint64_t committed, allocated, reserved;
  uint64_t free_blocks[TSR_CLASS_COUNT];   /* malloc_info's rows: blocks */
  uint64_t free_bytes[TSR_CLASS_COUNT];    /* and their bytes (fitted pages' blocks are smaller) */
} libc_info_t;

static void info_page(void *arg, const tsr_page_t *pg, uint32_t live, uint32_t capacity) {
  libc_info_t *i = arg;
  i->pages += (uint64_t)pg->span_slots * TSR_SLOT_SIZE;
  i->uordblks += (uint64_t)live * pg->block_size;
  i->free_blocks[pg->cls] += capacity - live;
  i->free_bytes[pg->cls] += (uint64_t)(capacity - live) * pg->block_size;
  i->ordblks += capacity - live;
}

static void info_take(libc_info_t *i) {
  memset(i, 0, sizeof *i);
  tsri_init();
  tsri_pages_each(info_page, i);
  uint64_t large_bytes, large_blocks, large_mapped, guarded_blocks, guarded_bytes;
  tsri_large_stats(&large_bytes, &large_blocks, &large_mapped);
  tsri_guarded_stats(&guarded_blocks, &guarded_bytes);
  i->keepcost = tsri_arena_dirty_bytes() + tsri_large_idle_bytes();
  i->uordblks += guarded_bytes;
  i->arena = i->pages + guarded_bytes + i->keepcost;
  i->fordblks = i->arena - i->uordblks;
  i->hblks = large_blocks;
  i->hblkhd = large_bytes;
  i->allocated = i->uordblks + large_bytes;
  i->committed = atomic_load_explicit(&tsri_counters.committed, memory_order_relaxed);
  i->reserved = atomic_load_explicit(&tsri_counters.reserved, memory_order_relaxed);
}

#if __GLIBC_PREREQ(2, 33)
TSRI_EXPORT struct mallinfo2 mallinfo2(void) {
  libc_info_t i;
  info_take(&i);
  struct mallinfo2 m = { 0 };
  m.arena = i.arena;
  m.ordblks = i.ordblks;
  m.hblks = i.hblks;
  m.hblkhd = i.hblkhd;
  m.uordblks = i.uordblks;
  m.fordblks = i.fordblks;
  m.keepcost = i.keepcost;
  return m;
}
#endif

TSRI_EXPORT struct mallinfo mallinfo(void) {
  libc_info_t i;
  info_take(&i);
  struct mallinfo m = { 0 };
  m.arena = (int)i.arena;
  m.ordblks = (int)i.ordblks;
  m.hblks = (int)i.hblks;
  m.hblkhd = (int)i.hblkhd;
  m.uordblks = (int)i.uordblks;
  m.fordblks = (int)i.fordblks;
  m.keepcost = (int)i.keepcost;
  return m;
}

/* glibc's layout, one arena: the classes' pages; then the whole heap.
 * Not a cancellation point, as glibc's is not: a thread cancelled while
 * it prints would leave the lines cut (glibc bug 22830's test). */
TSRI_EXPORT void malloc_stats(void) {
  libc_info_t i;
  info_take(&i);
  int cancel;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
  flockfile(stderr);   /* its lines together, as glibc's */
  fprintf(stderr, "Arena 0:\nsystem bytes     = %10llu\nin use bytes     = %10llu\n",
          (unsigned long long)i.arena, (unsigned long long)i.uordblks);
  fprintf(stderr, "Total (incl. mmap):\nsystem bytes     = %10llu\nin use bytes     = %10llu\n",
          (unsigned long long)i.committed, (unsigned long long)i.allocated);
  fprintf(stderr, "max mmap regions = %10llu\nmax mmap bytes   = %10llu\n", (unsigned long long)i.hblks,
          (unsigned long long)i.hblkhd);
  funlockfile(stderr);
  pthread_setcancelstate(cancel, NULL);
}

/* glibc's schema: the free blocks by size (here, by class), the totals of
 * one heap, then of the process.  options must be 0, as glibc asks. */
TSRI_EXPORT int malloc_info(int options, FILE *fp) {
  if (options != 0 || fp == NULL) {
    errno = EINVAL;
    return -1;
  }
  libc_info_t i;
  info_take(&i);
  fputs("<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n", fp);
  uint64_t free_bytes = 0;
  for (size_t c = 0; c < TSR_CLASS_COUNT; c++) {
    uint64_t count = i.free_blocks[c], size = tsri_classes[c].block_size, bytes = i.free_bytes[c];
    /* a row of fitted blocks too covers the sizes above the class below */
    uint64_t from = bytes == count * size ? size : tsri_classes[c - 1].block_size + TSR_MIN_ALIGN;
    free_bytes += bytes;
    if (count != 0)
      fprintf(fp, "  <size from=\"%llu\" to=\"%llu\" total=\"%llu\" count=\"%llu\"/>\n", (unsigned long long)from,
              (unsigned long long)size, (unsigned long long)bytes, (unsigned long long)count);
  }
  fprintf(fp,
          "</sizes>\n<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n"
          "<system type=\"current\" size=\"%llu\"/>\n<system type=\"max\" size=\"%llu\"/>\n"
          "<aspace type=\"total\" size=\"%llu\"/>\n<aspace type=\"mprotect\" size=\"%llu\"/>\n</heap>\n",
          (unsigned long long)i.ordblks, (unsigned long long)free_bytes, (unsigned long long)i.arena,
          (unsigned long long)i.arena, (unsigned long long)i.arena, (unsigned long long)i.arena);
  fprintf(fp,
          "<total type=\"fast\" count=\"0\" size=\"0\"/>\n"
          "<total type=\"rest\" count=\"%llu\" size=\"%llu\"/>\n"
          "<total type=\"mmap\" count=\"%llu\" size=\"%llu\"/>\n"
          "<system type=\"current\" size=\"%llu\"/>\n<system type=\"max\" size=\"%llu\"/>\n"
          "<aspace type=\"total\" size=\"%llu\"/>\n<aspace type=\"mprotect\" size=\"%llu\"/>\n</malloc>\n",
          (unsigned long long)i.ordblks, (unsigned long long)free_bytes, (unsigned long long)i.hblks,
          (unsigned long long)i.hblkhd, (unsigned long long)i.committed, (unsigned long long)i.committed,
          (unsigned long long)i.reserved, (unsigned long long)i.committed);
  return 0;
}

/* tsr_collect: every free page and cached large block given back now.
 * pad (bytes glibc leaves at the top of its heap) has no meaning here.
 * 1 when memory went back, as glibc answers. */
TSRI_EXPORT int malloc_trim(size_t pad) {
  (void)pad;
  uint64_t before = atomic_load_explicit(&tsri_counters.committed, memory_order_relaxed);
  tsr_collect();
  return atomic_load_explicit(&tsri_counters.committed, memory_order_relaxed) < before;
}

#endif /* __GLIBC__ */
