/* page.c: what happens inside one page (a span of one size class).
 *
 * Owns: setting a page up for a class, finding free blocks in its local
 * bitmap, merging the remote bitmap (frees by other threads) into it, and
 * checking its invariants.  The caller is the page's owner (heap.c), or the
 * holder of the abandoned-list lock for a page whose owner exited; nobody
 * else writes local, used or scan.
 *
 * Free blocks are bits, not links threaded through the blocks: allocation
 * and free never read or write the user's memory, so a buffer overflow
 * cannot redirect the allocator and a double free is seen before anything
 * is written.
 */
#include "internal.h"


/* The phase of a page: whether its blocks start at its span's first byte
 * or one block further in.  A program's survivors often follow the order
 * it allocated in (every other block of a list, the older half of each
 * batch), and a page hands its blocks out in address order, so without
 * phases the survivors of every page of a class sit at the same offsets
 * of their OS pages and no two of those pages mesh.  Shifting half of
 * the pages by one block puts their survivors at the other offsets: a
 * free-every-other pattern then pairs one page of each phase.  Mesh
 * (Powers et al.) shuffles each page's free list for the same end; a
 * phase costs nothing in the allocation and free paths, only the one
 * block of capacity its shift leaves out.  Only while meshing is on (and
 * the OS can mesh), and only for blocks of at most half an OS page: bigger
 * ones cover whole OS pages, which their own frees give back. */
static size_t page_phase(const tsr_page_t *pg) {
  static _Atomic uint32_t pages_set_up;
  if (tsri_option(TSRI_OPT_MESH) == 0 || 2 * (size_t)pg->block_size > tsri_os_page_size() ||
      tsri_os_share_why() != NULL)
    return 0;
  uint64_t x = (tsri_page_base(pg) >> TSR_SLOT_SHIFT) ^
               ((uint64_t)atomic_fetch_add_explicit(&pages_set_up, 1, memory_order_relaxed) << 32);
  x *= 0x9e3779b97f4a7c15ull;   /* Fibonacci hashing: the top bit mixes every bit of x */
  return (size_t)(x >> 63);
}

void tsri_page_init(tsr_page_t *pg, size_t cls) {
  tsri_shape_t shape = tsri_page_shape(pg);
  tsr_assert(pg->cls == cls && shape.capacity <= TSR_PAGE_MAX_BLOCKS && shape.slots == pg->span_slots);
  if (!tsri_mesh_is_armed() && tsri_option(TSRI_OPT_MESH) != 0)
    atomic_store_explicit(&tsri_mesh_armed, 1, memory_order_relaxed);
  size_t phase = page_phase(pg), capacity = shape.capacity - phase;
  pg->start = (uint8_t *)tsri_page_base(pg) + phase * pg->block_size;
  pg->capacity = (uint16_t)capacity;
  pg->magic = (((uint64_t)1 << TSR_MAGIC_SHIFT) / pg->block_size) + 1;
  atomic_store_explicit(&pg->used, 0, memory_order_relaxed);
  pg->scan = 0;
  pg->trimmed_at_used = (uint32_t)capacity;
  pg->seen_used = (uint32_t)capacity;   /* not seen yet: no growth to hold trimming back */
  pg->mesh_seen_used = UINT32_MAX;   /* not seen yet: not cold */
  pg->next = pg->prev = NULL;
  pg->notify_next = NULL;
  /* every word of its bitmaps (arena.c: as many as its shape needs) */
  size_t full_words = capacity / 64, rest = capacity % 64;
  for (size_t w = 0; w < tsri_shape_words(shape); w++) {
    uint64_t bits = w < full_words ? ~(uint64_t)0 : (w == full_words && rest ? ((uint64_t)1 << rest) - 1 : 0);
    atomic_store_explicit(tsri_local(pg, w), bits, memory_order_relaxed);
    atomic_store_explicit(tsri_remote(pg, w), 0, memory_order_relaxed);
  }
}

/* Set bits [lo, hi) of mask. */
static void bits_set(uint64_t *mask, size_t lo, size_t hi) {
  while (lo < hi) {
    size_t n = 64 - (lo & 63);
    if (n > hi - lo) n = hi - lo;
    mask[lo >> 6] |= (n == 64 ? ~(uint64_t)0 : (((uint64_t)1 << n) - 1)) << (lo & 63);
    lo += n;
  }
}

bool tsri_page_granules(uintptr_t start, size_t block_size, size_t capacity, const uint64_t *live, uintptr_t at,
                        size_t len, uint64_t *out) {
  memset(out, 0, (len / TSR_MIN_ALIGN + 63) / 64 * sizeof *out);
  uintptr_t end = start + capacity * block_size;
  if (at + len <= start || at >= end) return false;
  size_t first = at > start ? (at - start) / block_size : 0;
  size_t last = ((at + len < end ? at + len : end) - start + block_size - 1) / block_size;   /* past the last */
  bool any = false;
  for (size_t w = first >> 6; w <= (last - 1) >> 6; w++) {
    uint64_t bits = live[w];
    if (w == first >> 6) bits &= ~(uint64_t)0 << (first & 63);
    if (w == (last - 1) >> 6 && (last & 63) != 0) bits &= ((uint64_t)1 << (last & 63)) - 1;
    for (; bits != 0; bits &= bits - 1) {
      uintptr_t lo = start + (w * 64 + (size_t)__builtin_ctzll(bits)) * block_size, hi = lo + block_size;
      if (lo < at) lo = at;
      if (hi > at + len) hi = at + len;
      bits_set(out, (lo - at) / TSR_MIN_ALIGN, (hi - at + TSR_MIN_ALIGN - 1) / TSR_MIN_ALIGN);
      any = true;
    }
  }
  return any;
}

/* Give back the OS pages inside runs of free blocks: the local bitmap's,
 * and with_remote the blocks other threads freed too (free as well, and
 * handed out by nobody until the owner collects them). */
static size_t trim_runs(tsr_page_t *pg, bool with_remote) {
  /* the fill check of TESSERA_DEBUG reads a freed block's pattern back
   * when the block is handed out again: its pages must keep it */
  if (atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed) & TSRI_DEBUG_FILL) return 0;
  size_t os_page = tsri_os_page_size(), given = 0;
  /* start of the current run of free blocks, 0: none; a phase's gap
   * before block 0 is free space too */
  uintptr_t run_start = (uintptr_t)pg->start != tsri_page_base(pg) ? tsri_page_base(pg) : 0;
  for (size_t i = 0; i <= pg->capacity; i++) {
    uint64_t word = 0;
    if (i < pg->capacity) {
      word = atomic_load_explicit(tsri_local(pg, i >> 6), memory_order_relaxed);
      if (with_remote) word |= atomic_load_explicit(tsri_remote(pg, i >> 6), memory_order_relaxed);
    }
    bool free_block = (word >> (i & 63)) & 1;
    uintptr_t at = (uintptr_t)pg->start + i * pg->block_size;
    if (free_block) {
      if (run_start == 0) run_start = at;
      continue;
    }
    if (run_start != 0) {
      uintptr_t lo = (run_start + os_page - 1) & ~(uintptr_t)(os_page - 1);
      uintptr_t hi = at & ~(uintptr_t)(os_page - 1);
      if (hi > lo && tsri_os_reset((void *)lo, hi - lo) == 0) {
        tsri_count(&tsri_counters.os_resets, 1);
        given += hi - lo;
      }
      run_start = 0;
    }
  }
  return given;
}

size_t tsri_page_trim(tsr_page_t *pg, bool force) {
  uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
  if (!force && used + pg->capacity / 8u > pg->trimmed_at_used) return 0;
  pg->trimmed_at_used = used;
  tsri_mesh_check(pg);   /* an OS page of the shared file with no live block leaves it */
  return trim_runs(pg, false);
}

/* Free blocks of pg by its local bitmap, and with_remote its remote one
 * too. */
static uint32_t free_count(const tsr_page_t *pg, bool with_remote) {
  uint32_t n = 0;
  for (size_t w = 0, words = tsri_page_words(pg); w < words; w++) {
    uint64_t bits = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
    if (with_remote) bits |= atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed);
    n += (uint32_t)__builtin_popcountll(bits);
  }
  return n;
}

size_t tsri_page_trim_idle(tsr_page_t *pg) {
  uint32_t taken = pg->capacity - free_count(pg, true);
  if (taken >= pg->trimmed_at_used) return 0;   /* nothing freed since its last trim */
  pg->trimmed_at_used = taken;
  tsri_mesh_check(pg);
  return trim_runs(pg, true);
}

void tsri_page_recount(tsr_page_t *pg) {
  atomic_store_explicit(&pg->used, pg->capacity - free_count(pg, false), memory_order_relaxed);
}

bool tsri_page_has_remote(const tsr_page_t *pg) {
  for (size_t w = 0, n = tsri_page_words(pg); w < n; w++)
    if (atomic_load_explicit(tsri_remote(pg, w), memory_order_seq_cst) != 0) return true;
  return false;
}

/* Merge remote word w into local: the blocks it brought back (`used` is
 * the caller's to lower). */
static uint32_t collect_word(tsr_page_t *pg, size_t w) {
  if (atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed) == 0) return 0;
  uint64_t bits = atomic_exchange_explicit(tsri_remote(pg, w), 0, memory_order_acquire);
  uint64_t local = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
  uint64_t twice = bits & local;
  if (tsr_unlikely(twice != 0)) {
    /* freed by the owner and by another thread at the same time */
    size_t idx = w * 64 + (size_t)__builtin_ctzll(twice);
    tsri_error(TSR_ERROR_DOUBLE_FREE, "double free of %p (freed concurrently by two threads)",
               (void *)(pg->start + idx * pg->block_size));
    bits &= ~twice;
  }
  atomic_store_explicit(tsri_local(pg, w), local | bits, memory_order_relaxed);
  return (uint32_t)__builtin_popcountll(bits);
}

static uint32_t collected(tsr_page_t *pg, uint32_t back) {
  if (back != 0) {
    uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
    tsr_assert_internal(used >= back);
    atomic_store_explicit(&pg->used, used - back, memory_order_relaxed);
  }
  return back;
}

uint32_t tsri_page_collect(tsr_page_t *pg) {
  uint32_t back = 0;
  for (size_t w = 0, n = tsri_page_words(pg); w < n; w++) back += collect_word(pg, w);
  return collected(pg, back);
}

uint32_t tsri_page_collect_word(tsr_page_t *pg, size_t w) { return collected(pg, collect_word(pg, w)); }

bool tsri_page_refill(tsr_page_t *pg) {
  /* the owner's own frees may sit below scan; remote frees anywhere */
  if (tsri_page_find(pg, pg->scan) || tsri_page_find(pg, 0)) return true;
  return tsri_page_collect(pg) != 0 && tsri_page_find(pg, 0);
}

size_t tsri_page_check(const tsr_page_t *pg) {
  size_t bad = 0, free_bits = 0, n = tsri_page_words(pg);
  const tsri_class_t *c = &tsri_classes[pg->cls < TSR_CLASS_COUNT ? pg->cls : 0];
  size_t below = pg->cls > 0 && pg->cls < TSR_CLASS_COUNT ? tsri_classes[pg->cls - 1].block_size : 0;
  if (pg->cls >= TSR_CLASS_COUNT || pg->block_size % TSR_MIN_ALIGN != 0 || pg->block_size <= below ||
      pg->block_size > c->block_size || (pg->block_size != c->block_size && pg->cls < TSRI_FIT_FIRST)) {
    tsri_warning("check: page %p: block size %zu is not one of class %d", (void *)pg->start,
                 (size_t)pg->block_size, (int)pg->cls);
    return 1;
  }
  tsri_shape_t shape = tsri_page_shape(pg);
  size_t phase = ((uintptr_t)pg->start - tsri_page_base(pg)) / pg->block_size;
  if (phase > 1 || pg->start != (uint8_t *)tsri_page_base(pg) + phase * pg->block_size ||
      pg->capacity + phase != shape.capacity || pg->span_slots != shape.slots) {
    tsri_warning("check: page %p: phase %zu, capacity %zu or %zu slots do not match its %zu-byte blocks",
                 (void *)pg->start, phase, (size_t)pg->capacity, (size_t)pg->span_slots, (size_t)pg->block_size);
    return 1;
  }
  for (size_t w = 0; w < tsri_shape_words(shape); w++) {
    uint64_t local = atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed);
    uint64_t remote = atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed);
    uint64_t valid = w < n ? (w + 1 < n || pg->capacity % 64 == 0 ? ~(uint64_t)0
                                                                  : ((uint64_t)1 << (pg->capacity % 64)) - 1)
                           : 0;
    if ((local | remote) & ~valid) {
      tsri_warning("check: page %p has free bits past its last block", (void *)pg->start);
      bad++;
    }
    if (local & remote) {
      tsri_warning("check: page %p has blocks freed twice", (void *)pg->start);
      bad++;
    }
    free_bits += (size_t)__builtin_popcountll(local);
  }
  uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
  if (free_bits + used != pg->capacity) {
    tsri_warning("check: page %p: %zu free + %zu used != %zu blocks", (void *)pg->start, free_bits,
                 (size_t)used, (size_t)pg->capacity);
    bad++;
  }
  return bad;
}
