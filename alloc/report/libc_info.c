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
 * The figures come from tsr_class_stats (one pass over the arenas) and
 * tsr_stats_get, in glibc's terms:
 *   arena     bytes committed to the size classes' pages, and the
 *             blocks of guarded sampling (glibc: the arenas' memory that
 *             is not mmapped)
 *   ordblks   free blocks in those pages; smblks, fsmblks 0 (no fastbins)
 *   hblks     live large blocks; hblkhd: their mapped bytes (above 128
 *             KiB, where glibc's default mmap threshold also puts them)
 *   usmblks   0, as glibc
 *   uordblks  usable bytes of live blocks of the classes and guarded
 *             ones; fordblks the rest of arena
 *   keepcost  committed bytes in none of those nor tessera's records:
 *             free pages waiting for their purge delay and cached large
 *             blocks, what malloc_trim gives back now
 * mallinfo's int fields take the same figures cut to int, as glibc's do.
 * Only the maximum lines of malloc_stats and malloc_info differ in kind:
 * tessera keeps no peaks, and they show the current figures.
 */
#include "report.h"

#if defined(__GLIBC__)
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>

#define TSRI_EXPORT __attribute__((visibility("default")))

typedef struct libc_info_s {
  uint64_t arena, ordblks, hblks, hblkhd, uordblks, keepcost;
  uint64_t committed, allocated, reserved;
  tsr_class_stats_t rows[TSR_CLASS_COUNT + 1];
} libc_info_t;

static void info_take(libc_info_t *i) {
  memset(i, 0, sizeof *i);
  size_t n = tsr_class_stats(i->rows, TSR_CLASS_COUNT + 1);
  for (size_t c = 0; c < n && c < TSR_CLASS_COUNT; c++) {
    i->arena += i->rows[c].committed;
    i->uordblks += i->rows[c].bytes_live;
    i->ordblks += i->rows[c].blocks_total - i->rows[c].blocks_live;
  }
  if (n > TSR_CLASS_COUNT) {
    i->hblks = i->rows[TSR_CLASS_COUNT].pages;
    i->hblkhd = i->rows[TSR_CLASS_COUNT].committed;
  }
  /* a block of guarded sampling is a small block too, on a page of its own */
  uint64_t guarded_blocks, guarded_bytes;
  tsri_guarded_stats(&guarded_blocks, &guarded_bytes);
  i->arena += guarded_bytes;
  i->uordblks += guarded_bytes;
  tsr_stats_t s = { .size = sizeof s };
  tsr_stats_get(&s);
  uint64_t held = i->arena + i->hblkhd + s.metadata;
  i->keepcost = s.committed > held ? s.committed - held : 0;
  i->committed = s.committed;
  i->allocated = s.allocated;
  i->reserved = s.reserved;
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
  m.fordblks = i.arena - i.uordblks;
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
  m.fordblks = (int)(i.arena - i.uordblks);
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
  fprintf(stderr, "Arena 0:\nsystem bytes     = %10llu\nin use bytes     = %10llu\n",
          (unsigned long long)i.arena, (unsigned long long)i.uordblks);
  fprintf(stderr, "Total (incl. mmap):\nsystem bytes     = %10llu\nin use bytes     = %10llu\n",
          (unsigned long long)i.committed, (unsigned long long)i.allocated);
  fprintf(stderr, "max mmap regions = %10llu\nmax mmap bytes   = %10llu\n", (unsigned long long)i.hblks,
          (unsigned long long)i.hblkhd);
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
    const tsr_class_stats_t *r = &i.rows[c];
    uint64_t count = r->blocks_total - r->blocks_live;
    free_bytes += count * r->block_size;
    if (count != 0)
      fprintf(fp, "  <size from=\"%u\" to=\"%u\" total=\"%llu\" count=\"%llu\"/>\n", r->block_size, r->block_size,
              (unsigned long long)(count * r->block_size), (unsigned long long)count);
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
  tsr_stats_t before = { .size = sizeof before }, after = { .size = sizeof after };
  tsr_stats_get(&before);
  tsr_collect();
  tsr_stats_get(&after);
  return after.committed < before.committed;
}

#endif /* __GLIBC__ */
