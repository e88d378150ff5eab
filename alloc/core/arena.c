/* arena.c: arenas, the arena registry, spans and purging.
 *
 * Owns: reserving arenas from the OS, the registry that says which arena
 * addresses are ours, carving spans of slots for pages and taking them
 * back, committing slots on demand and decommitting slots that stayed free
 * for the purge delay.  Leaves to page.c what happens inside a span and to
 * heap.c which thread owns it.
 *
 * arena_lock guards the arena list and every arena's slot maps.  It is
 * taken only when a heap needs a new page or gives one back, not per
 * block, and held across an OS call only to reserve a new arena or to
 * take a slot for bitmaps (below: its commit, or the decommit of a record
 * area it kept from a span): slots of spans being committed or
 * decommitted are out of the free map meanwhile (transit_map), so nobody
 * else takes them.
 *
 * Span placement: a one-slot span reuses a free slot that is still
 * committed when there is one (no syscall, no page faults); otherwise first
 * fit from the lowest address, which keeps the committed part of an arena
 * compact so that decommitted runs are long.
 */
#include "hooks.h"

/* One bit per possible arena address: 2^(48-26) bits = 512 KiB of zero
 * pages in .bss, of which only the words near real arenas are touched. */
_Atomic(uint64_t) tsri_arena_registry[((size_t)1 << (TSR_VA_BITS - TSR_ARENA_SHIFT)) / 64];

static tsri_lock_t arena_lock;
static _Atomic(tsr_arena_t *) arena_list;   /* all arenas, oldest first; walked without the lock */
static tsr_arena_t *arena_list_tail;
static _Atomic uint64_t arena_next_purge_ms;   /* 0: nothing waits */

#define MAP_WORDS (TSR_ARENA_SLOTS / 64)

static inline bool map_get(const uint64_t *map, size_t i) { return (map[i >> 6] >> (i & 63)) & 1; }
static inline void map_set(uint64_t *map, size_t i) { map[i >> 6] |= (uint64_t)1 << (i & 63); }
static inline void map_clear(uint64_t *map, size_t i) { map[i >> 6] &= ~((uint64_t)1 << (i & 63)); }

tsri_lock_t *tsri_arena_lock_get(void) { return &arena_lock; }
tsr_arena_t *tsri_arena_first(void) { return arena_list; }

/* Slot k of a became free and committed at `now`: mark it dirty and make
 * sure a purge is due after the delay.  Lock held. */
static void arena_mark_dirty(tsr_arena_t *a, size_t k, uint32_t now) {
  a->pages[k].freed_at_ms = now;
  map_set(a->dirty_map, k);
  int64_t delay = tsri_option(TSRI_OPT_PURGE_DELAY_MS);
  if (delay >= 0 && atomic_load_explicit(&arena_next_purge_ms, memory_order_relaxed) == 0)
    atomic_store_explicit(&arena_next_purge_ms, (uint64_t)now + (uint64_t)delay, memory_order_relaxed);
}

static inline uint8_t *arena_slot_addr(tsr_arena_t *a, size_t slot) {
  return (uint8_t *)a + slot * TSR_SLOT_SIZE;
}

/* ---- sizing ----
 * An arena reserves as many slots as the arenas before it together, from
 * ARENA_FIRST_SLOTS (4 MiB) up to TSR_ARENA_SLOTS: a program that
 * allocates little holds little address space (its first arena is all a
 * loop of large blocks needs), and one that allocates much soon gets whole
 * arenas.  When the OS refuses the reservation (a cap on the address
 * space, RLIMIT_AS or TESSERA_RESERVE_LIMIT, near its end), it is tried
 * again at half the size, down to ARENA_MIN_SLOTS, so the last MiB of the
 * address space still hold blocks.  Whatever its size, an arena starts at
 * a multiple of TSR_ARENA_SIZE and owns that window in the registry; its
 * records cover the descriptors of the whole window (those past `slots`
 * stay FREE); its pages' bitmaps come after them (below). */
#define ARENA_META_BYTES (sizeof(tsr_arena_t))
#define BITS_LINE 64                                           /* bitmaps: see below */
#define BITS_MOST (2 * TSR_BITMAP_WORDS * sizeof(uint64_t))   /* 1 KiB */
#define ARENA_META_SLOTS ((ARENA_META_BYTES + TSR_SLOT_SIZE - 1) / TSR_SLOT_SIZE)
#define ARENA_FIRST_SLOTS (TSR_ARENA_SLOTS < 64 ? TSR_ARENA_SLOTS : 64)
#define ARENA_MIN_SLOTS 16
_Static_assert(ARENA_MIN_SLOTS > ARENA_META_SLOTS + TSR_SPAN_MAX_SLOTS,
               "the smallest arena holds the longest span and a slot for its bitmaps");

static size_t arena_slots_total;   /* slots of all arenas; arena lock */

/* Reserve a new arena (sized as above) and commit its record slots.
 * Arena lock held. */
static tsr_arena_t *arena_create(void) {
  size_t slots = arena_slots_total < ARENA_FIRST_SLOTS ? ARENA_FIRST_SLOTS : arena_slots_total;
  if (slots > TSR_ARENA_SLOTS) slots = TSR_ARENA_SLOTS;
  void *mem;
  while (tsri_os_reserve(slots * TSR_SLOT_SIZE, TSR_ARENA_SIZE, &mem) != 0) {
    if (slots / 2 < ARENA_MIN_SLOTS) return NULL;
    slots /= 2;
  }
  tsri_count(&tsri_counters.os_reserves, 1);
  size_t meta_slots = ARENA_META_SLOTS;
  size_t meta_bytes = meta_slots * TSR_SLOT_SIZE;
  if (tsri_os_commit(mem, meta_bytes) != 0) {
    tsri_os_release(mem, slots * TSR_SLOT_SIZE);
    tsri_count(&tsri_counters.os_releases, 1);
    return NULL;
  }
  tsri_count(&tsri_counters.os_commits, 1);
  tsri_count(&tsri_counters.reserved, (int64_t)(slots * TSR_SLOT_SIZE));
  tsri_count(&tsri_counters.committed, (int64_t)meta_bytes);
  tsri_count(&tsri_counters.metadata, (int64_t)ARENA_META_BYTES);
  tsri_count(&tsri_counters.arenas, 1);
  arena_slots_total += slots;

  tsr_arena_t *a = mem;   /* fresh memory is zero: every slot FREE, maps empty */
  a->slots = slots;
  a->meta_slots = meta_slots;
  a->free_slots = slots - meta_slots;
  a->bits_next = (uint8_t *)a + ARENA_META_BYTES;
  a->bits_end = (uint8_t *)a + meta_bytes - (BITS_MOST - BITS_LINE);
  for (size_t i = 0; i < slots; i++) {
    a->pages[i].start = arena_slot_addr(a, i);
    if (i < a->meta_slots) {
      a->pages[i].kind = TSR_SLOT_META;
      map_set(a->commit_map, i);
    } else {
      map_set(a->free_map, i);
    }
  }
  uintptr_t idx = (uintptr_t)a >> TSR_ARENA_SHIFT;
  atomic_fetch_or_explicit(&tsri_arena_registry[idx >> 6], (uint64_t)1 << (idx & 63),
                           memory_order_release);
  /* release: a walker that finds a finds it made */
  if (arena_list_tail) atomic_store_explicit(&arena_list_tail->next, a, memory_order_release);
  else atomic_store_explicit(&arena_list, a, memory_order_release);
  arena_list_tail = a;
  return a;
}

/* First slot of a run of n free slots, or 0 when there is none (slot 0
 * always holds records).  Arena lock held. */
static size_t arena_find_run(const tsr_arena_t *a, size_t n) {
  if (n == 1) {
    for (size_t w = 0; w < MAP_WORDS; w++)
      if (a->dirty_map[w]) return w * 64 + (size_t)__builtin_ctzll(a->dirty_map[w]);
  }
  size_t run = 0;
  for (size_t w = 0; w < MAP_WORDS; w++) {
    uint64_t bits = a->free_map[w];
    if (bits == 0) { run = 0; continue; }
    if (bits == ~(uint64_t)0 && run + 64 < n) { run += 64; continue; }
    for (size_t b = 0; b < 64; b++) {
      if ((bits >> b) & 1) {
        if (++run == n) return w * 64 + b + 1 - n;
      } else {
        run = 0;
      }
    }
  }
  return 0;
}

/* ---- bitmaps ----
 * A span's two free bitmaps take one word pair (16 bytes) for every 64
 * blocks its class holds, rounded up to whole cache lines: one line from
 * 256-byte blocks up (two threads' pages never share a line, which every
 * allocation and owner free writes), 1 KiB for 16-byte blocks.  They are
 * cut from the end of the arena's records and, when that is used up, from
 * a free slot taken for them (kind META, committed under the lock: once
 * per 64 spans at the most, and kept for good); a span given back leaves
 * its bitmaps on the free list of their length (16 lengths) for the next
 * span of that length.  A fixed 1 KiB per slot, as before, held 1.6 % of
 * the memory of every class, and as much of the address space.
 *
 * A free of a wrong pointer racing with its span being given back or
 * carved again may read the descriptor's geometry from before: block
 * indices up to TSR_PAGE_MAX_BLOCKS, 1 KiB of bitmaps.  Each bitmap area
 * keeps that much committed past the start of its last bitmaps, so such a
 * free touches bitmaps, never a page that is not there, and a descriptor
 * between spans says capacity 0, which turns such frees away. */

static inline size_t bits_lines(tsri_shape_t shape) {
  return (tsri_shape_words(shape) * 2 * sizeof(uint64_t) + BITS_LINE - 1) / BITS_LINE;
}

/* Bitmaps of `lines` cache lines from a, or NULL (no free slot left for
 * more, or the OS refused to commit one).  Lock held. */
static _Atomic(uint64_t) *bits_take(tsr_arena_t *a, size_t lines) {
  _Atomic(uint64_t) *b = a->bits_free[lines - 1];
  if (b != NULL) {
    a->bits_free[lines - 1] = (_Atomic(uint64_t) *)(uintptr_t)atomic_load_explicit(b, memory_order_relaxed);
    return b;
  }
  size_t bytes = lines * BITS_LINE;
  if (a->bits_next + bytes > a->bits_end) {
    size_t k = a->free_slots > 0 ? arena_find_run(a, 1) : 0;   /* a committed one first */
    if (k == 0) return NULL;
    uint8_t *slot = arena_slot_addr(a, k);
    if (!map_get(a->commit_map, k)) {
      if (tsri_os_commit(slot, TSR_SLOT_SIZE) != 0) return NULL;
      tsri_count(&tsri_counters.os_commits, 1);
      tsri_count(&tsri_counters.committed, (int64_t)TSR_SLOT_SIZE);
      map_set(a->commit_map, k);
    } else {
      tsri_hook_slot_purged(a, k);   /* its record area, if a span of it had one: for good */
    }
    map_clear(a->free_map, k);
    map_clear(a->dirty_map, k);
    a->free_slots--;
    a->pages[k].kind = TSR_SLOT_META;
    a->bits_next = slot;
    a->bits_end = slot + TSR_SLOT_SIZE - (BITS_MOST - BITS_LINE);
  }
  b = (_Atomic(uint64_t) *)(void *)a->bits_next;
  a->bits_next += bytes;
  tsri_count(&tsri_counters.metadata, (int64_t)bytes);   /* bitmaps for good, as records */
  return b;
}

/* Bitmaps of `lines` cache lines back to a's free list.  Lock held. */
static void bits_give(tsr_arena_t *a, _Atomic(uint64_t) *b, size_t lines) {
  atomic_store_explicit(b, (uint64_t)(uintptr_t)a->bits_free[lines - 1], memory_order_relaxed);
  a->bits_free[lines - 1] = b;
}

/* A run of n free slots of a and bitmaps of `lines` cache lines for it:
 * the run's first slot, or 0 when a has not both.  Lock held. */
static size_t arena_claim(tsr_arena_t *a, size_t n, size_t lines, _Atomic(uint64_t) **bits) {
  size_t first;
  if (a->free_slots < n || (first = arena_find_run(a, n)) == 0) return 0;
  size_t before = a->free_slots;
  if ((*bits = bits_take(a, lines)) == NULL) return 0;
  if (a->free_slots == before) return first;
  /* a slot went to bitmaps, perhaps out of that run */
  if ((first = arena_find_run(a, n)) == 0) bits_give(a, *bits, lines);
  return first;
}

/* A run of slots to commit or decommit once the arena lock is released:
 * the OS calls take microseconds, and other threads carving or returning
 * spans must not wait behind them. */
typedef struct slot_run_s {
  tsr_arena_t *arena;
  size_t first, n;
} slot_run_t;

/* Decommit the runs and give their slots back as free and uncommitted
 * (as free, committed and dirty where the OS refused).  The caller took
 * the slots out of the free map, so nobody carves them meanwhile.  Lock
 * not held.  Returns the slots decommitted. */
static size_t arena_decommit_runs(const slot_run_t *runs, size_t count) {
  size_t done = 0;
  for (size_t r = 0; r < count; r++) {
    tsr_arena_t *a = runs[r].arena;
    bool ok = tsri_os_decommit(arena_slot_addr(a, runs[r].first), runs[r].n * TSR_SLOT_SIZE) == 0;
    for (size_t k = runs[r].first; k < runs[r].first + runs[r].n; k++) tsri_hook_slot_purged(a, k);
    if (ok) {
      done += runs[r].n;
      tsri_count(&tsri_counters.os_decommits, 1);
      tsri_count(&tsri_counters.purges, (int64_t)runs[r].n);
    }
    uint32_t now = (uint32_t)tsri_os_clock_ms();
    tsri_lock(&arena_lock);
    /* the committed count moves with commit_map, under the lock (a fork
     * child finds the two agreeing: tsri_arena_fork_child) */
    if (ok) tsri_count(&tsri_counters.committed, -(int64_t)(runs[r].n * TSR_SLOT_SIZE));
    for (size_t k = runs[r].first; k < runs[r].first + runs[r].n; k++) {
      map_set(a->free_map, k);
      map_clear(a->transit_map, k);
      if (ok) map_clear(a->commit_map, k);
      else arena_mark_dirty(a, k, now);   /* try again at the next purge */
    }
    a->free_slots += runs[r].n;
    tsri_unlock(&arena_lock);
  }
  return done;
}

tsr_page_t *tsri_arena_span_alloc(size_t cls, size_t block_size, _Atomic(tsr_page_t *) *loose) {
  tsri_shape_t shape = tsri_shape_of(cls, block_size);
  size_t n = shape.slots, lines = bits_lines(shape);
  _Atomic(uint64_t) *bits = NULL;
  tsri_lock(&arena_lock);
  tsr_arena_t *a = arena_list;
  size_t first = 0;
  for (; a != NULL; a = a->next) {
    if ((first = arena_claim(a, n, lines, &bits)) != 0) break;
  }
  if (a == NULL) {
    a = arena_create();
    if (a == NULL) {
      /* refused even at the smallest size: what large blocks hold for
       * reuse (cached mappings, empty segments) goes back, and one more
       * try; the caller records a second refusal */
      tsri_unlock(&arena_lock);
      tsri_large_purge(true);
      tsri_lock(&arena_lock);
      a = arena_create();
    }
    if (a == NULL || (first = arena_claim(a, n, lines, &bits)) == 0) {
      tsri_unlock(&arena_lock);
      return NULL;
    }
  }
  tsr_assert_internal(first >= a->meta_slots && first + n <= a->slots);
  /* claim the slots; those not committed yet are committed below, outside
   * the lock */
  slot_run_t todo[TSR_SPAN_MAX_SLOTS];
  size_t runs = 0;
  for (size_t k = first; k < first + n; k++) {
    map_clear(a->free_map, k);
    map_clear(a->dirty_map, k);
    map_set(a->transit_map, k);
    if (!map_get(a->commit_map, k)) {
      if (runs > 0 && todo[runs - 1].first + todo[runs - 1].n == k) todo[runs - 1].n++;
      else todo[runs++] = (slot_run_t){ a, k, 1 };
      map_set(a->commit_map, k);
      tsri_count(&tsri_counters.committed, (int64_t)TSR_SLOT_SIZE);
    }
  }
  a->free_slots -= n;
  tsri_unlock(&arena_lock);
  for (size_t r = 0; r < runs; r++) {
    if (tsri_os_commit(arena_slot_addr(a, todo[r].first), todo[r].n * TSR_SLOT_SIZE) != 0) {
      /* give the span back: the slots committed before as dirty, the rest not */
      uint32_t now = (uint32_t)tsri_os_clock_ms();
      tsri_lock(&arena_lock);
      for (size_t q = r; q < runs; q++) {
        for (size_t k = todo[q].first; k < todo[q].first + todo[q].n; k++) map_clear(a->commit_map, k);
        tsri_count(&tsri_counters.committed, -(int64_t)(todo[q].n * TSR_SLOT_SIZE));
      }
      for (size_t k = first; k < first + n; k++) {
        map_set(a->free_map, k);
        map_clear(a->transit_map, k);
        if (map_get(a->commit_map, k)) arena_mark_dirty(a, k, now);
      }
      a->free_slots += n;
      bits_give(a, bits, lines);
      tsri_unlock(&arena_lock);
      return NULL;
    }
    tsri_count(&tsri_counters.os_commits, 1);
  }
  tsri_lock(&arena_lock);
  for (size_t k = first; k < first + n; k++) {
    map_clear(a->transit_map, k);
    a->pages[k].kind = TSR_SLOT_TAIL;
    a->pages[k].head_slot = (uint16_t)first;
  }
  tsr_page_t *pg = &a->pages[first];
  pg->kind = TSR_SLOT_HEAD;
  pg->cls = (uint8_t)cls;
  pg->block_size = (uint32_t)block_size;
  pg->span_slots = (uint16_t)n;
  pg->capacity = 0;   /* until tsri_page_init: no block for a wrong free to find */
  pg->bits = bits;
  atomic_store_explicit(loose, pg, memory_order_relaxed);   /* under the lock: a fork child finds it */
  tsri_unlock(&arena_lock);
  return pg;
}

/* Arena of a page descriptor (descriptors live inside their arena). */
static inline tsr_arena_t *arena_of_page(const tsr_page_t *pg) {
  return (tsr_arena_t *)((uintptr_t)pg & ~(uintptr_t)TSR_ARENA_MASK);
}

void tsri_arena_span_free(tsr_page_t *pg) {
  tsr_arena_t *a = arena_of_page(pg);
  size_t first = (size_t)(pg - a->pages), n = pg->span_slots;
  tsr_assert_internal(pg->kind == TSR_SLOT_HEAD && first >= a->meta_slots);
  int64_t delay = tsri_option(TSRI_OPT_PURGE_DELAY_MS);
  uint32_t now = (uint32_t)tsri_os_clock_ms();
  tsri_lock(&arena_lock);
  for (size_t k = first; k < first + n; k++) a->pages[k].kind = TSR_SLOT_FREE;
  bits_give(a, pg->bits, bits_lines(tsri_page_shape(pg)));
  pg->capacity = 0;   /* a wrong free racing with this finds no block */
  if (delay == 0) {   /* decommit now, outside the lock */
    for (size_t k = first; k < first + n; k++) map_set(a->transit_map, k);
    tsri_unlock(&arena_lock);
    slot_run_t run = { a, first, n };
    (void)arena_decommit_runs(&run, 1);
    return;
  }
  for (size_t k = first; k < first + n; k++) {
    map_set(a->free_map, k);
    arena_mark_dirty(a, k, now);
  }
  a->free_slots += n;
  tsri_unlock(&arena_lock);
}

uint64_t tsri_arena_dirty_bytes(void) {
  uint64_t slots = 0;
  tsri_lock(&arena_lock);
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next)
    for (size_t w = 0; w < (a->slots + 63) / 64; w++) slots += (uint64_t)__builtin_popcountll(a->dirty_map[w]);
  tsri_unlock(&arena_lock);
  return slots * TSR_SLOT_SIZE;
}

size_t tsri_arena_purge(bool force) {
  int64_t delay = tsri_option(TSRI_OPT_PURGE_DELAY_MS);
  uint64_t due = atomic_load_explicit(&arena_next_purge_ms, memory_order_relaxed);
  uint64_t now64 = tsri_os_clock_ms();
  if (!force && (delay < 0 || due == 0 || now64 < due)) return 0;
  uint32_t now = (uint32_t)now64;
  slot_run_t runs[32];
  size_t count = 0;
  uint64_t next = 0;
  tsri_lock(&arena_lock);
  for (tsr_arena_t *a = arena_list; a != NULL; a = a->next) {
    size_t i = a->meta_slots;
    while (i < a->slots) {
      if (a->dirty_map[i >> 6] == 0) { i = (i | 63) + 1; continue; }
      if (!map_get(a->dirty_map, i)) { i++; continue; }
      /* a run of dirty slots old enough to go */
      size_t j = i;
      while (j < a->slots && map_get(a->dirty_map, j) &&
             (force || (uint32_t)(now - a->pages[j].freed_at_ms) >= (uint64_t)delay))
        j++;
      if (j > i && count < sizeof runs / sizeof runs[0]) {
        for (size_t k = i; k < j; k++) {   /* out of the free map until decommitted */
          map_clear(a->free_map, k);
          map_clear(a->dirty_map, k);
          map_set(a->transit_map, k);
        }
        a->free_slots -= j - i;
        runs[count++] = (slot_run_t){ a, i, j - i };
        i = j;
      } else {
        /* too young, or this pass is full: come back for it */
        uint64_t at = j > i ? now64 : now64 + (uint64_t)delay - (uint32_t)(now - a->pages[i].freed_at_ms);
        if (next == 0 || at < next) next = at;
        i = j > i ? j : i + 1;
      }
    }
  }
  atomic_store_explicit(&arena_next_purge_ms, next, memory_order_relaxed);
  tsri_unlock(&arena_lock);
  return arena_decommit_runs(runs, count);
}

/* In a fork child, slots that a vanished thread was committing or
 * decommitting outside the lock would stay out of the free map forever:
 * give them back as free and due for purge.  Their commit_map bits are
 * set (both ways set them before the OS call and clear them after), but
 * a commit may not have been made yet: the slot is still inaccessible,
 * and the first span carved there would fault.  So each is committed
 * here (a commit of committed memory changes nothing, and a decommit of
 * memory that is not committed is harmless); one the OS refuses goes
 * back uncommitted.  Single-threaded. */
void tsri_arena_fork_child(void) {
  uint32_t now = (uint32_t)tsri_os_clock_ms();
  for (tsr_arena_t *a = arena_list; a != NULL; a = a->next) {
    for (size_t w = 0; w < MAP_WORDS; w++) {
      uint64_t t = a->transit_map[w];
      if (t == 0) continue;
      a->transit_map[w] = 0;
      a->free_map[w] |= t;
      a->free_slots += (size_t)__builtin_popcountll(t);
      for (; t != 0; t &= t - 1) {
        size_t k = w * 64 + (size_t)__builtin_ctzll(t);
        tsr_page_t *pg = &a->pages[k];
        pg->kind = TSR_SLOT_FREE;
        tsr_assert_internal(map_get(a->commit_map, k));
        if (tsri_os_commit(arena_slot_addr(a, k), TSR_SLOT_SIZE) == 0) {
          arena_mark_dirty(a, k, now);
        } else {
          map_clear(a->commit_map, k);
          tsri_count(&tsri_counters.committed, -(int64_t)TSR_SLOT_SIZE);
        }
      }
    }
  }
  if (atomic_load_explicit(&arena_next_purge_ms, memory_order_relaxed) == 0)
    atomic_store_explicit(&arena_next_purge_ms, (uint64_t)now + 1, memory_order_relaxed);
}

/* Check one arena's slot maps against its descriptors; returns problems.
 * Arena lock held. */
size_t tsri_arena_check(tsr_arena_t *a) {
  size_t bad = 0, free_count = 0;
  for (size_t i = 0; i < a->slots; i++) {
    const tsr_page_t *pg = &a->pages[i];
    bool is_free = map_get(a->free_map, i);
    free_count += is_free;
    if (map_get(a->transit_map, i)) continue;   /* an OS call on it is under way */
    if (i < a->meta_slots || pg->kind == TSR_SLOT_META) {
      if (pg->kind != TSR_SLOT_META || is_free || !map_get(a->commit_map, i)) {
        tsri_warning("check: arena %p slot %zu should hold records", (void *)a, i);
        bad++;
      }
      continue;
    }
    if (is_free != (pg->kind == TSR_SLOT_FREE)) {
      tsri_warning("check: arena %p slot %zu: free map and kind %d disagree", (void *)a, i,
                   (int)pg->kind);
      bad++;
    }
    if (map_get(a->dirty_map, i) && (!is_free || !map_get(a->commit_map, i))) {
      tsri_warning("check: arena %p slot %zu: dirty but not free and committed", (void *)a, i);
      bad++;
    }
    if (!is_free && !map_get(a->commit_map, i)) {
      tsri_warning("check: arena %p slot %zu: in use but not committed", (void *)a, i);
      bad++;
    }
    if (pg->kind == TSR_SLOT_HEAD) {
      if (pg->span_slots != tsri_page_shape(pg).slots || i + pg->span_slots > a->slots) {
        tsri_warning("check: arena %p slot %zu: span length %d wrong", (void *)a, i,
                     (int)pg->span_slots);
        bad++;
        continue;
      }
      for (size_t k = i + 1; k < i + pg->span_slots; k++) {
        if (a->pages[k].kind != TSR_SLOT_TAIL || a->pages[k].head_slot != i) {
          tsri_warning("check: arena %p slot %zu: not a tail of span %zu", (void *)a, k, i);
          bad++;
        }
      }
    } else if (pg->kind == TSR_SLOT_TAIL) {
      const tsr_page_t *head = &a->pages[pg->head_slot];
      if (head->kind != TSR_SLOT_HEAD || pg->head_slot >= i || pg->head_slot + head->span_slots <= i) {
        tsri_warning("check: arena %p slot %zu: tail of no span", (void *)a, i);
        bad++;
      }
    }
  }
  if (free_count != a->free_slots) {
    tsri_warning("check: arena %p counts %zu free slots, map has %zu", (void *)a, a->free_slots,
                 free_count);
    bad++;
  }
  return bad;
}
