/* large.c: blocks above the largest size class.
 *
 * Owns: the table of live large blocks, keyed by the block's address
 * (table.c), out of band like every other record, and the blocks above
 * TSRI_LARGE_CARVE_MAX.  A block is rounded up to the OS page that covers
 * the request (so a 1 MiB + 1 byte request takes 1 MiB + 4 KiB, not
 * 2 MiB).  Up to TSRI_LARGE_CARVE_MAX it is a run of pages of a large
 * segment (segment.c), so that any number of them costs the kernel a few
 * mappings (vm.max_map_count); freed runs stay committed until the purge.
 * Bigger blocks are one OS reservation each, which realloc moves with
 * mremap, without copying, where the OS can; a freed one is kept in a
 * small cache for TESSERA_PURGE_DELAY_MS, so that a program that
 * allocates and frees big buffers in a loop does not pay an mmap, the page
 * faults and a munmap per iteration; the purge releases it after the
 * delay.  The cache and the freed runs together hold at most an eighth of
 * the live large bytes (at least 32 MiB, at most TESSERA_LARGE_CACHE_MB;
 * in a 32-bit process a thirty-second, at least 8 MiB), so they add
 * little to peak RSS.  Blocks are placed high (os.h: placement).  When
 * the OS refuses a block, all of that goes back and it is tried again.
 *
 * large_lock guards the table, the cache and the segments.  It is not
 * held across an mremap that frees pages, which takes as long as a munmap
 * (tens of ms for a GiB): a shrink updates the record first and frees
 * after, a cached mapping leaves the cache before it is resized.  A grow
 * of a live block keeps it: the move changes the record's key, and moving
 * page tables frees nothing (1 GiB to 2 GiB: 0.6 ms, against 62 ms for a
 * shrink from 1 GiB to 64 MiB).
 */
#include "internal.h"

#define LARGE_CACHE_SLOTS 64

typedef struct large_cached_s {
  uintptr_t base;
  size_t mapped;
  uint64_t freed_at_ms;
} large_cached_t;

_Atomic size_t tsri_large_tracked;     /* counted by tracking (core/hooks.h) */
static tsri_lock_t large_lock;
static tsri_table_t large_table = TSRI_TABLE_INIT(tsr_large_t, 256);   /* live blocks */
static uint64_t large_live_bytes;     /* sum of usable sizes */
static uint64_t large_mapped_bytes;   /* live and cached mappings */
static large_cached_t large_cache[LARGE_CACHE_SLOTS];
static size_t large_cached_bytes;

/* The record of live block p, or NULL.  Lock held. */
static tsr_large_t *large_find(const void *p) { return tsri_table_find(&large_table, (uintptr_t)p); }

/* Mappings to give back once large_lock is released: munmap takes long
 * (it flushes TLBs on every CPU) and must not stall other threads' large
 * allocations. */
typedef struct large_drop_s {
  size_t count;
  uintptr_t base[2 * LARGE_CACHE_SLOTS + 2];
  size_t mapped[2 * LARGE_CACHE_SLOTS + 2];
} large_drop_t;

/* Forget a mapping now, release it in large_drop_flush.  Lock held. */
static void large_release(large_drop_t *drop, uintptr_t base, size_t mapped) {
  large_mapped_bytes -= mapped;
  drop->base[drop->count] = base;
  drop->mapped[drop->count] = mapped;
  drop->count++;
}

/* Lock not held. */
static void large_drop_flush(const large_drop_t *drop) {
  for (size_t i = 0; i < drop->count; i++) {
    tsri_os_release((void *)drop->base[i], drop->mapped[i]);
    tsri_count(&tsri_counters.os_releases, 1);
    tsri_count(&tsri_counters.committed, -(int64_t)drop->mapped[i]);
    tsri_count(&tsri_counters.reserved, -(int64_t)drop->mapped[i]);
  }
}

/* Take a cached mapping for a block of need bytes out of the cache: the
 * smallest one that is big enough, else the biggest one.  Returns its base
 * and sets *have to its size, or 0.  Lock held; large_cache_fit resizes it
 * after. */
static uintptr_t large_cache_take(size_t need, size_t *have) {
  size_t fit = LARGE_CACHE_SLOTS, big = LARGE_CACHE_SLOTS;
  for (size_t i = 0; i < LARGE_CACHE_SLOTS; i++) {
    size_t m = large_cache[i].mapped;
    if (large_cache[i].base == 0) continue;
    if (m >= need && (fit == LARGE_CACHE_SLOTS || m < large_cache[fit].mapped)) fit = i;
    if (big == LARGE_CACHE_SLOTS || m > large_cache[big].mapped) big = i;
  }
  size_t pick = fit != LARGE_CACHE_SLOTS ? fit : big;
  if (pick == LARGE_CACHE_SLOTS) return 0;
  uintptr_t base = large_cache[pick].base;
  large_cache[pick].base = 0;
  *have = large_cache[pick].mapped;
  large_cached_bytes -= *have;
  return base;
}

/* Resize a mapping taken from the cache (have bytes) for a block of need
 * bytes, unless it holds it without wasting more than a quarter, with
 * mremap where the OS can: a shrink gives the tail back at once (as long
 * as a munmap of it), a grow keeps the pages already faulted in.  Lock not
 * held: nobody else knows the mapping meanwhile.  Returns its base and
 * sets *mapped, or 0 when it cannot be resized here (Windows), and then it
 * is back in the cache, or released when the cache filled meanwhile. */
static uintptr_t large_cache_fit(uintptr_t base, size_t have, size_t need, size_t *mapped) {
  void *moved = (void *)base;
  *mapped = have;
  if (have >= need && have - need <= need / 4) return base;
  if (tsri_os_remap((void *)base, have, need, &moved) != 0) {
    large_drop_t drop = { 0 };
    tsri_lock(&large_lock);
    size_t slot = 0;
    while (slot < LARGE_CACHE_SLOTS && large_cache[slot].base != 0) slot++;
    if (slot == LARGE_CACHE_SLOTS) {
      large_release(&drop, base, have);
    } else {
      large_cache[slot] = (large_cached_t){ base, have, tsri_os_clock_ms() };
      large_cached_bytes += have;
    }
    tsri_unlock(&large_lock);
    large_drop_flush(&drop);
    return 0;
  }
  tsri_count(&tsri_counters.committed, (int64_t)need - (int64_t)have);
  tsri_count(&tsri_counters.reserved, (int64_t)need - (int64_t)have);
  *mapped = need;
  return (uintptr_t)moved;
}

/* Drop cached mappings older than the purge delay (all when force).  Lock
 * held. */
static void large_cache_expire(bool force, int64_t delay, large_drop_t *drop) {
  uint64_t now = tsri_os_clock_ms();
  for (size_t k = 0; k < LARGE_CACHE_SLOTS; k++) {
    if (large_cache[k].base != 0 && (force || now - large_cache[k].freed_at_ms >= (uint64_t)delay)) {
      large_release(drop, large_cache[k].base, large_cache[k].mapped);
      large_cached_bytes -= large_cache[k].mapped;
      large_cache[k].base = 0;
    }
  }
}

/* Bytes of freed mappings the cache may hold: an eighth of the live large
 * bytes (at least 32 MiB, so that one big buffer freed and allocated again in a
 * loop stays cached), capped by TESSERA_LARGE_CACHE_MB.  In a 32-bit
 * process, where what the cache holds is address space a large request
 * may need, a thirty-second (at least 8 MiB).  Lock held. */
#if UINTPTR_MAX > 0xFFFFFFFFu
#define LARGE_CACHE_SHARE 8
#define LARGE_CACHE_MIN ((size_t)32 << 20)
#else
#define LARGE_CACHE_SHARE 32
#define LARGE_CACHE_MIN ((size_t)8 << 20)
#endif
static size_t large_cache_budget(void) {
  size_t cap = (size_t)tsri_option(TSRI_OPT_LARGE_CACHE_MB) << 20;
  size_t rel = (size_t)(large_live_bytes / LARGE_CACHE_SHARE);
  if (rel < LARGE_CACHE_MIN) rel = LARGE_CACHE_MIN;
  return rel < cap ? rel : cap;
}

/* A block of need bytes carved from a segment, or NULL (errno ENOMEM). */
static void *large_carve(size_t size, size_t need, bool zero) {
  tsri_lock(&large_lock);
  tsri_seg_t *seg = NULL;
  bool dirty = false;
  uintptr_t base = tsri_seg_carve(need, &seg, &dirty);
  tsr_large_t *e = base != 0 ? tsri_table_insert(&large_table, base) : NULL;
  if (e == NULL) {
    if (base != 0) tsri_seg_free(seg, base, need, false);
    tsri_unlock(&large_lock);
    errno = ENOMEM;
    return NULL;
  }
  *e = (tsr_large_t){ base, base, need, need, seg };
  large_live_bytes += need;
  large_mapped_bytes += need;
  tsri_unlock(&large_lock);
  if (zero && dirty) memset((void *)base, 0, size);
  return (void *)base;
}

/* A block of need bytes that is a mapping of its own (placed high), a
 * cached one when one fits, or NULL (errno ENOMEM). */
static void *large_map(size_t size, size_t need, size_t align, bool zero) {
  tsri_lock(&large_lock);
  size_t have = 0, mapped = need;
  uintptr_t base = align == tsri_os_granularity() ? large_cache_take(need, &have) : 0;
  tsri_unlock(&large_lock);
  if (base != 0) base = large_cache_fit(base, have, need, &mapped);
  bool fresh = base == 0;
  if (fresh) {
    void *mem;
    if (tsri_os_alloc_high(need, align, &mem) != 0) { errno = ENOMEM; return NULL; }
    base = (uintptr_t)mem;
    have = 0;
    mapped = need;
    tsri_count(&tsri_counters.os_reserves, 1);
    tsri_count(&tsri_counters.committed, (int64_t)mapped);
    tsri_count(&tsri_counters.reserved, (int64_t)mapped);
  } else if (zero) {
    memset((void *)base, 0, size);
  }
  tsri_lock(&large_lock);
  large_mapped_bytes = large_mapped_bytes - have + mapped;
  tsr_large_t *e = tsri_table_insert(&large_table, base);
  if (e == NULL) {
    large_drop_t drop = { 0 };
    large_release(&drop, base, mapped);
    tsri_unlock(&large_lock);
    large_drop_flush(&drop);
    errno = ENOMEM;
    return NULL;
  }
  *e = (tsr_large_t){ base, base, mapped, mapped, NULL };
  large_live_bytes += mapped;
  tsri_unlock(&large_lock);
  return (void *)base;
}

/* When the OS refuses, what tessera holds for reuse (cached mappings,
 * empty segments, dirty runs) goes back and the request is tried once
 * more; a second refusal is the program's NULL, and is recorded
 * (tsri_refused) once no lock is held. */
void *tsri_large_alloc(size_t size, size_t align, bool zero) {
  size_t page = tsri_os_page_size();
  if (size > PTRDIFF_MAX - 2 * page) { errno = ENOMEM; return NULL; }
  size_t need = size == 0 ? page : tsri_align_up(size, page);
  bool carve = need <= TSRI_LARGE_CARVE_MAX && align <= page;
  if (align < tsri_os_granularity()) align = tsri_os_granularity();
  for (int attempt = 0; attempt < 2; attempt++) {
    void *p = carve ? large_carve(size, need, zero) : large_map(size, need, align, zero);
    if (p != NULL) return p;
    if (attempt == 0) tsri_large_purge(true);
  }
  tsri_refused(size, TSRI_REFUSED_LARGE);
  errno = ENOMEM;
  return NULL;
}

bool tsri_large_free(void *p) {
  int64_t delay = tsri_option(TSRI_OPT_PURGE_DELAY_MS);
  large_drop_t drop = { 0 };
  tsri_lock(&large_lock);
  tsr_large_t *found = large_find(p);
  if (found == NULL) { tsri_unlock(&large_lock); return false; }
  tsr_large_t e = *found;
  tsri_table_remove(&large_table, found);
  large_live_bytes -= e.usable;
  uintptr_t drop_base = e.base;
  size_t drop_mapped = e.mapped;
  size_t cache_max = large_cache_budget();
  if (delay >= 0) {   /* a program with no small allocations purges here */
    if (delay > 0) large_cache_expire(false, delay, &drop);
    tsri_seg_purge(false, delay);
  }
  if (e.seg != NULL) {
    large_mapped_bytes -= e.mapped;
    bool keep = delay != 0 && large_cached_bytes + tsri_seg_dirty_bytes() + e.mapped <= cache_max;
    tsri_seg_free(e.seg, e.base, e.mapped, keep);
    drop_base = 0;
  } else if (delay != 0 && e.mapped <= cache_max) {
    /* keep it: evict the oldest entries until it fits */
    while (large_cached_bytes + e.mapped > cache_max) {
      size_t oldest = LARGE_CACHE_SLOTS;
      for (size_t k = 0; k < LARGE_CACHE_SLOTS; k++)
        if (large_cache[k].base != 0 &&
            (oldest == LARGE_CACHE_SLOTS || large_cache[k].freed_at_ms < large_cache[oldest].freed_at_ms))
          oldest = k;
      large_release(&drop, large_cache[oldest].base, large_cache[oldest].mapped);
      large_cached_bytes -= large_cache[oldest].mapped;
      large_cache[oldest].base = 0;
    }
    size_t slot = LARGE_CACHE_SLOTS, oldest = 0;
    for (size_t k = 0; k < LARGE_CACHE_SLOTS && slot == LARGE_CACHE_SLOTS; k++) {
      if (large_cache[k].base == 0) slot = k;
      else if (large_cache[k].freed_at_ms < large_cache[oldest].freed_at_ms) oldest = k;
    }
    if (slot == LARGE_CACHE_SLOTS) {
      slot = oldest;
      large_release(&drop, large_cache[slot].base, large_cache[slot].mapped);
      large_cached_bytes -= large_cache[slot].mapped;
    }
    large_cache[slot].base = e.base;
    large_cache[slot].mapped = e.mapped;
    large_cache[slot].freed_at_ms = tsri_os_clock_ms();
    large_cached_bytes += e.mapped;
    drop_base = 0;
  }
  if (drop_base != 0) large_release(&drop, drop_base, drop_mapped);
  tsri_unlock(&large_lock);
  large_drop_flush(&drop);
  return true;
}

void tsri_large_purge(bool force) {
  int64_t delay = tsri_option(TSRI_OPT_PURGE_DELAY_MS);
  if (!force && delay < 0) return;
  large_drop_t drop = { 0 };
  tsri_lock(&large_lock);
  large_cache_expire(force, delay, &drop);
  tsri_seg_purge(force, delay);
  tsri_unlock(&large_lock);
  large_drop_flush(&drop);
}

size_t tsri_large_usable(const void *p) {
  size_t usable = 0;
  tsri_lock(&large_lock);
  const tsr_large_t *e = large_find(p);
  if (e != NULL) usable = e->usable;
  tsri_unlock(&large_lock);
  return usable;
}

void *tsri_large_realloc(void *p, size_t size) {
  size_t page = tsri_os_page_size();
  if (size > PTRDIFF_MAX - 2 * page) return NULL;
  size_t need = tsri_align_up(size, page);
  tsri_lock(&large_lock);
  tsr_large_t *found = large_find(p);
  if (found == NULL || found->base != (uintptr_t)p) {
    tsri_unlock(&large_lock);
    return NULL;
  }
  tsr_large_t e = *found;
  if (need <= e.mapped && need >= e.mapped / 2) {   /* fits, and not much too big */
    tsri_unlock(&large_lock);
    return p;
  }
  if (e.seg != NULL) {   /* in place, or the caller moves it */
    if (need > TSRI_LARGE_CARVE_MAX || !tsri_seg_resize(e.seg, e.base, e.mapped, need)) {
      tsri_unlock(&large_lock);
      return NULL;
    }
    found->mapped = found->usable = need;
    large_live_bytes = large_live_bytes - e.usable + need;
    large_mapped_bytes = large_mapped_bytes - e.mapped + need;
    tsri_unlock(&large_lock);
    return p;
  }
  void *moved;
  if (need < e.mapped) {   /* in place; what it frees is as slow as a munmap: outside the lock */
    found->mapped = found->usable = need;
    large_live_bytes = large_live_bytes - e.usable + need;
    large_mapped_bytes = large_mapped_bytes - e.mapped + need;
    tsri_unlock(&large_lock);
    if (tsri_os_remap((void *)e.base, e.mapped, need, &moved) == 0) {
      tsri_count(&tsri_counters.committed, (int64_t)need - (int64_t)e.mapped);
      tsri_count(&tsri_counters.reserved, (int64_t)need - (int64_t)e.mapped);
      return p;
    }
    tsri_lock(&large_lock);   /* cannot (Windows): the record as it was, unless p was freed meanwhile */
    if ((found = large_find(p)) != NULL) {
      *found = e;
      large_live_bytes = large_live_bytes - need + e.usable;
      large_mapped_bytes = large_mapped_bytes - need + e.mapped;
    }
    tsri_unlock(&large_lock);
    return NULL;
  }
  if (tsri_os_remap((void *)e.base, e.mapped, need, &moved) != 0) {
    tsri_unlock(&large_lock);
    return NULL;
  }
  tsri_table_remove(&large_table, found);
  large_live_bytes -= e.usable;
  large_mapped_bytes -= e.mapped;
  tsri_count(&tsri_counters.committed, (int64_t)need - (int64_t)e.mapped);
  tsri_count(&tsri_counters.reserved, (int64_t)need - (int64_t)e.mapped);
  e.block = e.base = (uintptr_t)moved;
  e.mapped = e.usable = need;
  *(tsr_large_t *)tsri_table_insert(&large_table, e.block) = e;   /* room: one was just removed */
  large_live_bytes += e.usable;
  large_mapped_bytes += e.mapped;
  tsri_unlock(&large_lock);
  return moved;
}

bool tsri_large_contains(const void *p) {
  bool inside = false;
  tsri_lock(&large_lock);
  size_t cursor = 0;
  for (const tsr_large_t *e; !inside && (e = tsri_table_next(&large_table, &cursor)) != NULL;)
    inside = (uintptr_t)p >= e->block && (uintptr_t)p < e->block + e->usable;
  tsri_unlock(&large_lock);
  return inside;
}

void tsri_large_stats(uint64_t *live_bytes, uint64_t *live_blocks, uint64_t *mapped) {
  tsri_lock(&large_lock);
  *live_bytes = large_live_bytes;
  *live_blocks = large_table.count;
  *mapped = large_mapped_bytes;
  tsri_unlock(&large_lock);
}

uint64_t tsri_large_idle_bytes(void) {
  tsri_lock(&large_lock);
  uint64_t bytes = large_cached_bytes + tsri_seg_dirty_bytes();
  tsri_unlock(&large_lock);
  return bytes;
}

void tsri_large_fork_prepare(void) { tsri_lock(&large_lock); }
void tsri_large_fork_parent(void) { tsri_unlock(&large_lock); }
void tsri_large_fork_child(void) { tsri_unlock(&large_lock); }

int tsri_large_snapshot(tsr_large_t **list, size_t *count, size_t *bytes_out) {
  for (;;) {
    tsri_lock(&large_lock);
    size_t n = large_table.count;
    tsri_unlock(&large_lock);
    size_t bytes = tsri_align_up((n + 1) * sizeof(tsr_large_t), tsri_os_page_size());
    void *mem;
    if (tsri_os_alloc_uncapped(bytes, &mem) != 0) return ENOMEM;
    tsr_large_t *out = mem;
    tsri_lock(&large_lock);
    if (large_table.count <= n) {
      size_t k = 0, cursor = 0;
      for (const tsr_large_t *e; (e = tsri_table_next(&large_table, &cursor)) != NULL;) out[k++] = *e;
      tsri_unlock(&large_lock);
      *list = out;
      *count = k;
      *bytes_out = bytes;
      return 0;
    }
    tsri_unlock(&large_lock);   /* grew meanwhile: try again with more room */
    tsri_os_release_uncapped(mem, bytes);
  }
}

void tsri_large_snapshot_free(tsr_large_t *list, size_t bytes) { tsri_os_release_uncapped(list, bytes); }
