/* segment.c: the reservations that large blocks are carved from.
 *
 * Owns: large segments, reservations of SEG_FIRST_BYTES and more (each as
 * big as those before together, up to SEG_MAX_BYTES), cut into OS pages;
 * a block of up to TSRI_LARGE_CARVE_MAX bytes is a run of pages of one of
 * them, first fit in the oldest segment with room.  A bitmap per segment,
 * out of band, says which pages are in a block and which free pages are
 * still committed (dirty: freed, not yet given back).  Leaves to large.c
 * the table of live blocks, and bigger blocks, which stay mappings of
 * their own.
 *
 * Why: a large block that is a mapping of its own costs one of the
 * kernel's vm.max_map_count mappings (65,530 by default), and a program
 * holding that many large blocks gets NULL from every mmap after.  A
 * segment is one mapping however many blocks it holds: on POSIX it is
 * mapped readable and writable from the start (MAP_NORESERVE; a page
 * costs memory once touched), so carving commits nothing, and giving a
 * freed run back is madvise(MADV_DONTNEED), which changes no protection
 * and so never splits the mapping (mprotect would).  Neighbouring
 * segments are merged by the kernel into one mapping.  On Windows, which
 * has no such limit, a segment is a reservation whose runs are committed
 * when carved and decommitted when given back.
 *
 * Freed runs stay dirty until large.c's purge (TESSERA_PURGE_DELAY_MS
 * after the segment's oldest dirty run was freed: the runs of a segment
 * go back together), so a program that frees and allocates big buffers in
 * a loop pays neither the faults nor the madvise each time.
 *
 * When the OS refuses a segment (a cap on the address space: RLIMIT_AS,
 * TESSERA_RESERVE_LIMIT), the size is halved and tried again, down to the
 * block's own size, so that the end of the address space still holds
 * blocks.  A segment that stayed empty for the purge delay is released
 * (but for the last one, until tsr_collect or a refusal forces it),
 * so the address space it held can take any block again (a 32-bit
 * process's next big image); its successors are sized from what is left.
 * Segments are reserved high (os.h: placement), away from the arenas.
 *
 * Every function here is called with large.c's large_lock held; the OS
 * calls (madvise of one block, a segment's reservation) are made under it.
 */
#include "internal.h"

/* In a 32-bit process every reserved MiB counts: segments start at the
 * largest carved block and grow to 16 MiB only. */
#if UINTPTR_MAX > 0xFFFFFFFFu
#define SEG_FIRST_BYTES ((size_t)16 << 20)
#define SEG_MAX_BYTES ((size_t)256 << 20)
#else
#define SEG_FIRST_BYTES TSRI_LARGE_CARVE_MAX
#define SEG_MAX_BYTES ((size_t)16 << 20)
#endif
#define SEG_ROUND_PAGES 64   /* a segment has a whole number of bitmap words */

struct tsri_seg_s {
  struct tsri_seg_s *next;   /* oldest first */
  uintptr_t base;
  size_t pages;              /* a multiple of SEG_ROUND_PAGES */
  size_t free_pages;         /* pages in no block, dirty or not */
  size_t max_run;            /* no run of free pages is longer (exact after a
                                failed search, raised by frees) */
  size_t dirty_pages;        /* free pages still committed */
  uint64_t dirty_at_ms;      /* clock when the oldest of them was freed, or
                                when the segment emptied */
  size_t meta_bytes;         /* of this descriptor and its bitmaps */
  bool open;                 /* read and written without a commit (POSIX) */
  uint64_t bits[];           /* used[pages / 64], then dirty[pages / 64] */
};

static tsri_seg_t *seg_list, *seg_tail;
static size_t seg_total_bytes;   /* of all segments */
static uint64_t seg_dirty_bytes;

static inline size_t seg_words(const tsri_seg_t *s) { return s->pages / 64; }
static inline uint64_t *seg_used(tsri_seg_t *s) { return s->bits; }
static inline uint64_t *seg_dirty(tsri_seg_t *s) { return s->bits + seg_words(s); }
static inline bool bit_get(const uint64_t *m, size_t i) { return (m[i >> 6] >> (i & 63)) & 1; }

/* Set (or clear) bits [first, first + n) of m. */
static void bits_set(uint64_t *m, size_t first, size_t n, bool on) {
  for (size_t i = first; i < first + n;) {
    size_t b = i & 63, k = 64 - b < first + n - i ? 64 - b : first + n - i;
    uint64_t mask = (k == 64 ? ~(uint64_t)0 : (((uint64_t)1 << k) - 1)) << b;
    if (on) m[i >> 6] |= mask;
    else m[i >> 6] &= ~mask;
    i += k;
  }
}

/* Pages of m set in [first, first + n). */
static size_t bits_count(const uint64_t *m, size_t first, size_t n) {
  size_t c = 0;
  for (size_t i = first; i < first + n; i++) c += bit_get(m, i);
  return c;
}

/* First run of n free pages of s, or SIZE_MAX (and s->max_run made exact).
 * Runs are stepped over a word at a time (ctz), so a scan costs the
 * number of runs, not of pages. */
static size_t seg_find(tsri_seg_t *s, size_t n) {
  const uint64_t *used = seg_used(s);
  size_t run = 0, start = 0, longest = 0;
  for (size_t w = 0; w < seg_words(s); w++) {
    uint64_t u = used[w];
    for (size_t b = 0; b < 64;) {
      uint64_t rest = u >> b;
      if (rest & 1) {   /* used pages: the run ends */
        if (run > longest) longest = run;
        run = 0;
        b += ~rest == 0 ? 64 - b : (size_t)__builtin_ctzll(~rest);
        continue;
      }
      size_t k = rest == 0 ? 64 - b : (size_t)__builtin_ctzll(rest);
      if (run == 0) start = w * 64 + b;
      run += k;
      if (run >= n) return start;
      b += k;
    }
  }
  s->max_run = run > longest ? run : longest;
  return SIZE_MAX;
}

/* Length of the free run through pages [first, first + n) (themselves
 * free). */
static size_t seg_run_around(tsri_seg_t *s, size_t first, size_t n) {
  const uint64_t *used = seg_used(s);
  size_t lo = first, hi = first + n;
  while (lo > 0 && !bit_get(used, lo - 1)) lo--;
  while (hi < s->pages && !bit_get(used, hi)) hi++;
  return hi - lo;
}

/* Reserve a segment of at least `pages` pages, halving on refusal. */
static tsri_seg_t *seg_reserve(size_t pages) {
  size_t page = tsri_os_page_size();
  size_t want = seg_total_bytes < SEG_FIRST_BYTES ? SEG_FIRST_BYTES : seg_total_bytes;
  if (want > SEG_MAX_BYTES) want = SEG_MAX_BYTES;
  size_t need = tsri_align_up(pages, SEG_ROUND_PAGES) * page;
  if (want < need) want = need;
  void *mem = NULL;
  bool open = false;
  size_t bytes = want;
  while (tsri_os_reserve_open(bytes, tsri_os_granularity(), &mem, &open) != 0) {
    if (bytes == need) return NULL;
    bytes = tsri_align_up(bytes / 2, SEG_ROUND_PAGES * page);
    if (bytes < need) bytes = need;
  }
  size_t n = bytes / page;
  size_t meta = tsri_align_up(sizeof(tsri_seg_t) + 2 * (n / 64) * sizeof(uint64_t), page);
  void *desc;
  if (tsri_os_alloc(meta, page, &desc) != 0) {
    tsri_os_release(mem, bytes);
    return NULL;
  }
  tsri_seg_t *s = desc;   /* zero: every page free and clean */
  s->base = (uintptr_t)mem;
  s->pages = n;
  s->free_pages = s->max_run = n;
  s->meta_bytes = meta;
  s->open = open;
  tsri_own_add(mem, bytes, TSRI_OWN_LARGE);
  tsri_own_add(desc, meta, TSRI_OWN_META);
  tsri_count(&tsri_counters.os_reserves, 2);
  tsri_count(&tsri_counters.reserved, (int64_t)(bytes + meta));
  tsri_count(&tsri_counters.committed, (int64_t)meta);
  tsri_count(&tsri_counters.metadata, (int64_t)meta);
  seg_total_bytes += bytes;
  if (seg_tail) seg_tail->next = s;
  else seg_list = s;
  seg_tail = s;
  return s;
}

/* Take run [first, first + n) of s for a block; false when the OS will
 * not commit it (Windows).  In locked memory an open segment's run that
 * was given back is inaccessible (os.h: tsri_os_memory_locked). */
static bool seg_take(tsri_seg_t *s, size_t first, size_t n, bool *dirty) {
  size_t page = tsri_os_page_size();
  size_t was_dirty = bits_count(seg_dirty(s), first, n);
  if ((!s->open || tsri_os_memory_locked()) && was_dirty < n) {
    if (tsri_os_commit((void *)(s->base + first * page), n * page) != 0) return false;
    tsri_count(&tsri_counters.os_commits, 1);
  }
  bits_set(seg_used(s), first, n, true);
  bits_set(seg_dirty(s), first, n, false);
  s->free_pages -= n;
  s->dirty_pages -= was_dirty;
  seg_dirty_bytes -= was_dirty * page;
  tsri_count(&tsri_counters.committed, (int64_t)((n - was_dirty) * page));
  *dirty = was_dirty != 0;
  return true;
}

uintptr_t tsri_seg_carve(size_t bytes, tsri_seg_t **seg, bool *dirty) {
  size_t page = tsri_os_page_size(), n = bytes / page;
  for (tsri_seg_t *s = seg_list; s != NULL; s = s->next) {
    if (s->free_pages < n || s->max_run < n) continue;
    size_t first = seg_find(s, n);
    if (first == SIZE_MAX) continue;
    if (!seg_take(s, first, n, dirty)) return 0;
    *seg = s;
    return s->base + first * page;
  }
  tsri_seg_t *s = seg_reserve(n);
  if (s == NULL || !seg_take(s, 0, n, dirty)) return 0;
  *seg = s;
  return s->base;
}

tsri_seg_t *tsri_seg_of(uintptr_t p) {
  size_t page = tsri_os_page_size();
  for (tsri_seg_t *s = seg_list; s != NULL; s = s->next)
    if (p >= s->base && p < s->base + s->pages * page) return s;
  return NULL;
}

/* Give the memory of [first, first + n) back to the OS; false when the
 * OS refuses, and the pages keep what they hold. */
static bool seg_decommit(tsri_seg_t *s, size_t first, size_t n) {
  size_t page = tsri_os_page_size();
  if (tsri_os_decommit((void *)(s->base + first * page), n * page) != 0) return false;
  tsri_count(&tsri_counters.os_decommits, 1);
  tsri_count(&tsri_counters.committed, -(int64_t)(n * page));
  return true;
}

/* A run the OS would not decommit stays dirty: a block carved there
 * later is cleared where it must be zero, and the next purge tries
 * again. */
void tsri_seg_free(tsri_seg_t *s, uintptr_t addr, size_t bytes, bool keep) {
  size_t page = tsri_os_page_size(), first = (addr - s->base) / page, n = bytes / page;
  if (keep || !seg_decommit(s, first, n)) {
    if (s->dirty_pages == 0) s->dirty_at_ms = tsri_os_clock_ms();
    bits_set(seg_dirty(s), first, n, true);
    s->dirty_pages += n;
    seg_dirty_bytes += bytes;
  }
  bits_set(seg_used(s), first, n, false);
  s->free_pages += n;
  if (s->free_pages == s->pages && s->dirty_pages == 0) s->dirty_at_ms = tsri_os_clock_ms();
  size_t run = seg_run_around(s, first, n);
  if (run > s->max_run) s->max_run = run;
}

bool tsri_seg_resize(tsri_seg_t *s, uintptr_t addr, size_t old_bytes, size_t new_bytes) {
  size_t page = tsri_os_page_size(), first = (addr - s->base) / page;
  size_t old_n = old_bytes / page, new_n = new_bytes / page;
  if (new_n < old_n) {
    tsri_seg_free(s, addr + new_bytes, old_bytes - new_bytes, false);
    return true;
  }
  size_t end = first + new_n;
  if (end > s->pages) return false;
  for (size_t i = first + old_n; i < end; i++)
    if (bit_get(seg_used(s), i)) return false;
  bool dirty;
  return seg_take(s, first + old_n, new_n - old_n, &dirty);
}

uint64_t tsri_seg_dirty_bytes(void) { return seg_dirty_bytes; }

/* Release empty segment s, which follows prev (NULL: the first). */
static void seg_release(tsri_seg_t *prev, tsri_seg_t *s) {
  size_t bytes = s->pages * tsri_os_page_size(), meta = s->meta_bytes;
  if (prev) prev->next = s->next;
  else seg_list = s->next;
  if (seg_tail == s) seg_tail = prev;
  seg_total_bytes -= bytes;
  tsri_own_remove((void *)s->base);
  tsri_own_remove(s);
  tsri_os_release((void *)s->base, bytes);
  tsri_os_release(s, meta);
  tsri_count(&tsri_counters.os_releases, 2);
  tsri_count(&tsri_counters.reserved, -(int64_t)(bytes + meta));
  tsri_count(&tsri_counters.committed, -(int64_t)meta);
  tsri_count(&tsri_counters.metadata, -(int64_t)meta);
}

void tsri_seg_purge(bool force, int64_t delay) {
  uint64_t now = tsri_os_clock_ms();
  tsri_seg_t *prev = NULL;
  for (tsri_seg_t *s = seg_list, *next; s != NULL; s = next) {
    next = s->next;
    /* the last segment left stays, unless forced: a loop that frees and
     * allocates one block does not reserve a segment each time */
    bool empty = s->free_pages == s->pages && (force || seg_list != s || next != NULL);
    if ((s->dirty_pages == 0 && !empty) || (!force && now - s->dirty_at_ms < (uint64_t)delay)) {
      prev = s;
      continue;
    }
    uint64_t *dirty = seg_dirty(s);
    for (size_t i = 0; i < s->pages;) {
      if (dirty[i >> 6] == 0) { i = (i | 63) + 1; continue; }
      if (!bit_get(dirty, i)) { i++; continue; }
      size_t j = i;
      while (j < s->pages && bit_get(dirty, j)) j++;
      /* a run the OS keeps stays dirty, unless the segment goes whole */
      bool gone = seg_decommit(s, i, j - i);
      if (!gone && empty) tsri_count(&tsri_counters.committed, -(int64_t)((j - i) * tsri_os_page_size()));
      if (gone || empty) {
        bits_set(dirty, i, j - i, false);
        s->dirty_pages -= j - i;
        seg_dirty_bytes -= (j - i) * tsri_os_page_size();
      }
      i = j;
    }
    if (empty) seg_release(prev, s);
    else prev = s;
  }
}
