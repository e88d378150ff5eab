/* test_libc_info.c: glibc's questions about its heap (mallinfo2,
 * mallinfo, malloc_stats, malloc_info, malloc_trim) answered with
 * tessera's figures (alloc/report/libc_info.c).  Linked to libtessera.so,
 * so that the C names are tessera's; the figures are read as differences,
 * since Criterion allocates in the same process.  Run without the
 * reclaimer and with a long purge delay, so that only malloc_trim gives
 * freed pages back.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <malloc.h>
#include <pthread.h>

#define BLOCKS 16384   /* 16 MiB of 1,024-byte blocks */
#define SIZE 1000   /* class 1024 */

static void *blocks[BLOCKS];

#define MiB ((size_t)1 << 20)

/* mallinfo is deprecated (its fields overflow past 2 GiB), and still
 * called by programs */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
static struct mallinfo old_mallinfo(void) { return mallinfo(); }
#pragma GCC diagnostic pop

/* glibc's order, which programs rely on when they subtract */
static void ordered(const struct mallinfo2 *m) {
  cr_assert_leq(m->keepcost, m->fordblks, "keepcost %zu over fordblks %zu", m->keepcost, m->fordblks);
  cr_assert_leq(m->fordblks, m->arena, "fordblks %zu over arena %zu", m->fordblks, m->arena);
  cr_assert_eq(m->fordblks, m->arena - m->uordblks);
}

static void fill(size_t size) {
  for (size_t i = 0; i < BLOCKS; i++) {
    blocks[i] = malloc(size);
    cr_assert_not_null(blocks[i]);
    memset(blocks[i], 7, size);
  }
}

static void empty(void) {
  for (size_t i = 0; i < BLOCKS; i++) free(blocks[i]);
}

Test(libc_info, mallinfo2_counts_the_blocks_of_the_classes) {
  struct mallinfo2 a = mallinfo2();
  fill(SIZE);
  struct mallinfo2 b = mallinfo2();
  uint64_t usable = 0;
  for (size_t i = 0; i < BLOCKS; i++) usable += malloc_usable_size(blocks[i]);
  cr_assert_geq(b.uordblks - a.uordblks, usable, "in use grew by %zu for %llu bytes", b.uordblks - a.uordblks,
                (unsigned long long)usable);
  cr_assert_lt(b.uordblks - a.uordblks, usable + 65536, "in use grew by %zu for %llu bytes",
               b.uordblks - a.uordblks, (unsigned long long)usable);
  ordered(&a);
  ordered(&b);
  cr_assert_eq(b.smblks + b.fsmblks + b.usmblks, 0);
  empty();
  struct mallinfo2 c = mallinfo2();
  cr_assert_leq(c.uordblks, a.uordblks + 65536, "in use %zu after the frees, %zu before the blocks", c.uordblks,
                a.uordblks);
  ordered(&c);
  /* the emptied pages wait for their purge delay, committed: free in the
   * arena, and what a trim would give back */
  cr_assert_geq(c.fordblks, b.fordblks + 8 * MiB, "fordblks %zu after the frees, %zu before", c.fordblks,
                b.fordblks);
  cr_assert_geq(c.keepcost, b.keepcost + 8 * MiB, "keepcost %zu after the frees, %zu before", c.keepcost,
                b.keepcost);
}

/* a block carved from a large segment (3 MiB) and one mapped alone and
 * cached when freed (6 MiB) */
static void large_block(size_t size) {
  struct mallinfo2 a = mallinfo2();
  char *p = malloc(size);
  cr_assert_not_null(p);
  p[0] = 1;
  blocks[0] = p;   /* seen outside: the compiler may not drop the pair */
  struct mallinfo2 b = mallinfo2();
  cr_assert_eq(b.hblks, a.hblks + 1);
  cr_assert_geq(b.hblkhd - a.hblkhd, size);
  cr_assert_lt(b.uordblks - a.uordblks, 65536, "a large block is not in the classes' figures");
  free(p);
  struct mallinfo2 c = mallinfo2();
  ordered(&c);
  cr_assert_eq(c.hblks, a.hblks);
  cr_assert_eq(c.hblkhd, a.hblkhd, "a freed block still counted: %zu, %zu before it", c.hblkhd, a.hblkhd);
  /* a free may also purge what waited past its delay: keepcost holds the
   * block, whatever else left */
  cr_assert_geq(c.keepcost, size, "a freed large block of %zu is kept for reuse, what a trim gives back: keepcost %zu",
                size, c.keepcost);
}

Test(libc_info, mallinfo2_counts_large_blocks_as_mapped) {
  large_block(3 * MiB);
  large_block(6 * MiB);
}

/* a thread with the smallest stack POSIX allows */
static void *ask_on_a_small_stack(void *arg) {
  (void)arg;
  struct mallinfo2 m = mallinfo2();
  struct mallinfo o = old_mallinfo();
  return (void *)(uintptr_t)(m.arena != 0 && o.arena != 0);
}

Test(libc_info, mallinfo2_needs_little_stack) {
  void *rv;
  cr_assert(tsr_test_on_small_stack(ask_on_a_small_stack, &rv));
  cr_assert_eq(rv, (void *)1);
}

Test(libc_info, mallinfo_gives_the_same_figures_in_int) {
  fill(SIZE);
  struct mallinfo2 b = mallinfo2();
  struct mallinfo m = old_mallinfo();
  cr_assert_eq((size_t)m.arena, b.arena);
  cr_assert_eq((size_t)m.uordblks, b.uordblks);
  cr_assert_eq((size_t)m.hblks, b.hblks);
  empty();
}

static uint64_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  unsigned long long size = 0, resident = 0;
  cr_assert_eq(fscanf(f, "%llu %llu", &size, &resident), 2);
  fclose(f);
  return resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

Test(libc_info, malloc_trim_gives_the_free_pages_back) {
  fill(SIZE);
  empty();
  struct mallinfo2 before = mallinfo2();
  uint64_t rss_before = rss_bytes();
  cr_assert_gt(before.keepcost, 0, "no free committed memory to give back");
  cr_assert_eq(malloc_trim(0), 1, "malloc_trim gave nothing back");
  struct mallinfo2 after = mallinfo2();
  uint64_t rss_after = rss_bytes();
  cr_assert_lt(after.keepcost, before.keepcost / 4, "keepcost %zu after the trim, %zu before", after.keepcost,
               before.keepcost);
  cr_assert_geq(rss_before, rss_after + 8 * MiB, "RSS %llu before the trim, %llu after",
                (unsigned long long)rss_before, (unsigned long long)rss_after);
  cr_assert_eq(malloc_trim(0), 0, "a second trim found more to give back");
}

/* What f holds from its start, as a string (the caller frees it). */
static char *read_back(FILE *f) {
  fflush(f);
  char *text = tsr_test_slurp(f, NULL);
  cr_assert_not_null(text);
  return text;
}

static unsigned long long number_after(const char *text, const char *key) {
  const char *p = strstr(text, key);
  cr_assert_not_null(p, "no \"%s\" in:\n%s", key, text);
  return strtoull(p + strlen(key), NULL, 10);
}

Test(libc_info, malloc_stats_prints_the_figures_of_mallinfo2) {
  fill(SIZE);
  FILE *f = tmpfile();
  cr_assert_not_null(f);
  fflush(stderr);
  int saved = dup(2);
  cr_assert_geq(saved, 0);
  cr_assert_geq(dup2(fileno(f), 2), 0);
  struct mallinfo2 m = mallinfo2();
  malloc_stats();
  dup2(saved, 2);
  close(saved);
  char *text = read_back(f);
  fclose(f);
  cr_assert_eq(number_after(text, "Arena 0:\nsystem bytes     ="), m.arena, "%s", text);
  cr_assert_eq(number_after(text, "in use bytes     ="), m.uordblks, "%s", text);
  cr_assert_eq(number_after(text, "max mmap regions ="), m.hblks, "%s", text);
  const char *total = strstr(text, "Total (incl. mmap):");
  cr_assert_not_null(total, "%s", text);
  cr_assert_geq(number_after(total, "in use bytes     ="), m.uordblks + m.hblkhd / 2, "%s", text);
  free(text);
  empty();
}

Test(libc_info, malloc_info_writes_glibcs_schema) {
  fill(SIZE);
  for (size_t i = 0; i < BLOCKS; i += 2) free(blocks[i]);   /* free blocks of class 1024 */
  FILE *f = tmpfile();
  cr_assert_not_null(f);
  struct mallinfo2 m = mallinfo2();
  cr_assert_eq(malloc_info(0, f), 0);
  char *text = read_back(f);
  cr_assert_eq(strncmp(text, "<malloc version=\"1\">\n<heap nr=\"0\">\n<sizes>\n", 41), 0, "%s", text);
  size_t n = strlen(text);
  cr_assert(n > 10 && strcmp(text + n - 10, "</malloc>\n") == 0, "%s", text);
  const char *sizes_end = strstr(text, "</sizes>");
  cr_assert_not_null(sizes_end);
  unsigned long long total = number_after(text, "<size from=\"1024\" to=\"1024\" total=\"");
  cr_assert_geq(total, (unsigned long long)BLOCKS / 2 * 1024, "%s", text);
  cr_assert_eq(number_after(sizes_end, "<total type=\"rest\" count=\""), m.ordblks, "%s", text);
  cr_assert_eq(number_after(sizes_end, "<system type=\"current\" size=\""), m.arena, "%s", text);
  free(text);
  errno = 0;
  cr_assert_eq(malloc_info(1, f), -1);
  cr_assert_eq(errno, EINVAL);
  fclose(f);
  for (size_t i = 1; i < BLOCKS; i += 2) free(blocks[i]);
}

/* glibc's tst-malloc-stats-cancellation (bug 22830): a thread with a
 * cancellation pending prints all of malloc_stats, and is cancelled at
 * its next cancellation point. */
static void *stats_then_cancel(void *gate) {
  pthread_barrier_wait(gate);
  malloc_stats();
  fputs("after the cancellation point\n", stderr);
  return NULL;
}

Test(libc_info, malloc_stats_is_not_a_cancellation_point) {
  int fds[2];
  cr_assert_eq(pipe(fds), 0);   /* a write to a pipe is a cancellation point */
  fflush(stderr);
  int saved = dup(2);
  cr_assert_geq(dup2(fds[1], 2), 0);
  pthread_barrier_t gate;
  pthread_barrier_init(&gate, NULL, 2);
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, stats_then_cancel, &gate), 0);
  pthread_cancel(t);
  pthread_barrier_wait(&gate);
  void *rv;
  pthread_join(t, &rv);
  dup2(saved, 2);
  close(saved);
  close(fds[1]);
  char text[4096];
  ssize_t n = read(fds[0], text, sizeof text - 1);
  close(fds[0]);
  text[n > 0 ? n : 0] = 0;
  cr_assert_eq(rv, PTHREAD_CANCELED, "the thread was not cancelled");
  cr_assert_not_null(strstr(text, "max mmap bytes"), "malloc_stats was cut short:\n%s", text);
  cr_assert_null(strstr(text, "after the cancellation point"), "cancellation stayed off:\n%s", text);
}
