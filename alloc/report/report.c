/* report.c: the report API over the records: the walk, sites, snapshots
 * and their diff, the memory map, the address space.
 *
 * Owns: aggregating blocks by call stack and class into tables that live
 * in memory from the OS (never the heap being reported on) and ordering
 * them (a heap sort of our own: qsort may allocate).  The writers are in
 * writer*.c, the triggers (at exit, on a signal, every few seconds) in
 * trigger.c.
 */
#include "report.h"

/* ------------------------------------------------------------------------
 * Scratch memory from the OS
 * ---------------------------------------------------------------------- */

void *tsri_scratch(size_t bytes) {
  void *mem;
  size_t size = tsri_align_up(bytes + 16, tsri_os_page_size());
  if (tsri_os_alloc_uncapped(size, &mem) != 0) return NULL;
  *(size_t *)mem = size;
  return (uint8_t *)mem + 16;
}

void tsri_scratch_free(void *p) {
  if (p == NULL) return;
  uint8_t *mem = (uint8_t *)p - 16;
  tsri_os_release_uncapped(mem, *(size_t *)mem);
}

/* ------------------------------------------------------------------------
 * The walk
 * ---------------------------------------------------------------------- */

typedef struct pub_walk_s {
  tsr_walk_fn *visit;
  void *arg;
} pub_walk_t;

static int pub_visit(const tsri_block_t *b, void *arg) {
  pub_walk_t *w = arg;
  return w->visit(&b->pub, w->arg);
}

int tsr_walk(tsr_walk_fn *visit, void *arg) {
  if (visit == NULL) return EINVAL;
  pub_walk_t w = { visit, arg };
  return tsri_meta_walk(pub_visit, &w, false);
}

/* ------------------------------------------------------------------------
 * Ordering
 * ---------------------------------------------------------------------- */

static void swap_bytes(uint8_t *a, uint8_t *b, size_t size) {
  uint8_t t[64];
  for (size_t k = 0; k < size; k += sizeof t) {
    size_t n = size - k < sizeof t ? size - k : sizeof t;
    memcpy(t, a + k, n);
    memcpy(a + k, b + k, n);
    memcpy(b + k, t, n);
  }
}

static void sift(uint8_t *v, size_t size, size_t n, size_t i, tsri_order_fn *before) {
  for (;;) {
    size_t l = 2 * i + 1, m = i;
    if (l < n && before(v + m * size, v + l * size)) m = l;
    if (l + 1 < n && before(v + m * size, v + (l + 1) * size)) m = l + 1;
    if (m == i) return;
    swap_bytes(v + i * size, v + m * size, size);
    i = m;
  }
}

/* A heap sort (a max-heap on "comes later", popped to the back), O(n log n)
 * at worst (under 2 n log2 n + 2 n comparisons) and no memory of its own,
 * where qsort may allocate. */
void tsri_heap_sort(void *base, size_t n, size_t size, tsri_order_fn *before) {
  uint8_t *v = base;
  for (size_t i = n / 2; i-- > 0;) sift(v, size, n, i, before);
  for (size_t end = n; end > 1; end--) {
    swap_bytes(v, v + (end - 1) * size, size);
    sift(v, size, end - 1, 0, before);
  }
}

/* ------------------------------------------------------------------------
 * Sites
 * ---------------------------------------------------------------------- */

typedef struct site_collect_s {
  tsri_site_t *by_id;     /* indexed by stack id, count + 1 entries */
  uint32_t count;
  bool leaks;
  uint64_t expected_blocks;
} site_collect_t;

static int site_visit(const tsri_block_t *b, void *arg) {
  site_collect_t *c = arg;
  uint32_t id = b->pub.site <= c->count ? b->pub.site : 0;
  if (c->leaks && b->expected) {
    c->expected_blocks++;
    return 0;
  }
  tsri_site_t *s = &c->by_id[id];
  s->blocks += b->pub.weight;
  s->bytes += b->pub.weight * (double)b->pub.usable;
  s->requested += b->pub.weight * (double)b->pub.requested;
  if (b->pub.weight != 1.0) s->estimated = true;
  return 0;
}

/* Most bytes first; equal bytes by stack id. */
static bool site_before(const void *pa, const void *pb) {
  const tsri_site_t *a = pa, *b = pb;
  return a->bytes > b->bytes || (a->bytes == b->bytes && a->id < b->id);
}

/* Functions of glibc and its dynamic linker that allocate for the library
 * itself, blocks it keeps for the life of the process (and frees only for
 * a leak checker, in __libc_freeres).  None of them hands a block to its
 * caller or calls the program's code, so a stack that passes through one
 * is the library's own: the program's leaks through a C function that
 * returns memory (strdup, asprintf, getline, realpath, open_memstream,
 * getaddrinfo's list, newlocale's locale) reach none of these.  Found by
 * running programs that use each service under TESSERA_TRACK=full, with
 * glibc 2.36; other C libraries match none of them. */
static const char *const libc_keepers[] = {
  /* stdio buffers; a FILE never closed still shows, by fopen's block */
  "_IO_file_doallocate", "_IO_wfile_doallocate",
  /* locale data, locale names, message catalogs, converters of wide stdio */
  "setlocale", "_nl_find_locale", "__dcigettext", "__wcsmbs_load_conv",
  /* the time zone */
  "tzset_internal",
  /* NSS: its configuration and modules, getpw* and getgr*'s result buffers */
  "__nss_database_get", "nss_database_check_reload_and_get", "getpwnam", "getpwuid", "getgrnam", "getgrgid",
  /* the resolver's configuration, the interface list getaddrinfo caches */
  "__resolv_context_get", "__check_pf",
  /* libraries the C library loads for itself (NSS modules, iconv converters) */
  "__libc_dlopen_mode", "__gconv_find_shlib",
  /* the dynamic linker's records of loaded objects and of threads' TLS */
  "_dl_map_object", "_dl_map_object_deps", "_dl_check_map_versions", "_dl_find_object_update",
  "_dl_allocate_tls",
};

/* Is the function at return address pc one of libc_keepers?  A name is
 * compared up to its symbol version ("@@GLIBC_2.2.5") or compiler clone
 * suffix (".constprop.0").  Names of the library's static functions need
 * its debug information (libc6-dbg); without it only the exported ones
 * match. */
static bool frame_kept_by_libc(const void *pc) {
  tsri_os_symbol_t sym;
  if (tsri_os_symbolize(pc, &sym) != 0) return false;
  size_t len = strcspn(sym.function, "@.");
  for (size_t k = 0; k < sizeof libc_keepers / sizeof libc_keepers[0]; k++)
    if (strlen(libc_keepers[k]) == len && memcmp(sym.function, libc_keepers[k], len) == 0) return true;
  return false;
}

/* The answers of frame_kept_by_libc by return address, in a table of
 * FRAME_MEMO slots: a lookup scans a module's symbol table, and the sites
 * of a leak report share most of their frames.  A frame with no slot
 * (frame_memo_slot) is looked up each time. */
#define FRAME_MEMO_BITS 16
#define FRAME_MEMO ((size_t)1 << FRAME_MEMO_BITS)
#define FRAME_PROBES 16

typedef struct frame_memo_s {
  uintptr_t pc;    /* a return address; 0: the slot is free */
  bool kept;       /* frame_kept_by_libc(pc) */
} frame_memo_t;

/* memo's slot for pc: the one that holds it, or a free one for it; NULL
 * when neither is among the FRAME_PROBES slots from pc's hash on. */
static frame_memo_t *frame_memo_slot(frame_memo_t *memo, uintptr_t pc) {
  size_t h = (size_t)(((uint64_t)pc * 0x9e3779b97f4a7c15u) >> (64 - FRAME_MEMO_BITS));
  for (size_t p = 0; p < FRAME_PROBES; p++) {
    frame_memo_t *m = &memo[(h + p) & (FRAME_MEMO - 1)];
    if (m->pc == pc || m->pc == 0) return m;
  }
  return NULL;
}

/* Does stack id pass through one of libc_keepers?  memo: FRAME_MEMO slots,
 * or NULL.  Called between tsri_os_symbols_begin and _end. */
static bool site_kept_by_libc(uint32_t id, frame_memo_t *memo) {
  void *const *frames;
  size_t depth = tsri_stack_frames(id, &frames);
  for (size_t f = 0; f < depth; f++) {
    frame_memo_t *m = memo != NULL ? frame_memo_slot(memo, (uintptr_t)frames[f]) : NULL;
    if (m == NULL) {
      if (frame_kept_by_libc(frames[f])) return true;
      continue;
    }
    if (m->pc == 0) {
      m->pc = (uintptr_t)frames[f];
      m->kept = frame_kept_by_libc(frames[f]);
    }
    if (m->kept) return true;
  }
  return false;
}

tsri_sites_t *tsri_sites_collect(bool leaks, bool by_id) {
  site_collect_t c;
  c.count = tsri_stack_count();
  c.leaks = leaks;
  c.expected_blocks = 0;
  c.by_id = tsri_scratch((c.count + 1) * sizeof(tsri_site_t));
  tsri_sites_t *out = tsri_scratch(sizeof(tsri_sites_t));
  if (c.by_id == NULL || out == NULL) {
    tsri_scratch_free(c.by_id);
    tsri_scratch_free(out);
    return NULL;
  }
  tsri_meta_walk(site_visit, &c, true);
  size_t n = 0;
  frame_memo_t *memo = leaks ? tsri_scratch(FRAME_MEMO * sizeof(frame_memo_t)) : NULL;
  tsri_os_symbols_begin();
  for (uint32_t id = 0; id <= c.count; id++) {
    tsri_site_t s = c.by_id[id];
    if (s.blocks <= 0) continue;
    if (leaks && id != 0 && tsri_meta_site_expected(id)) {
      c.expected_blocks += (uint64_t)(s.blocks + 0.5);
      continue;
    }
    if (leaks && id != 0 && site_kept_by_libc(id, memo)) {
      c.expected_blocks += tsri_round_u64(s.blocks);
      out->libc_blocks += tsri_round_u64(s.blocks);
      continue;
    }
    s.id = id;
    c.by_id[n++] = s;
    out->blocks += tsri_round_u64(s.blocks);
    out->bytes += tsri_round_u64(s.bytes);
  }
  tsri_os_symbols_end();
  tsri_scratch_free(memo);
  if (!by_id) tsri_heap_sort(c.by_id, n, sizeof(tsri_site_t), site_before);
  out->sites = c.by_id;
  out->count = n;
  out->expected_blocks = c.expected_blocks;
  return out;
}

void tsri_sites_free(tsri_sites_t *s) {
  if (s == NULL) return;
  tsri_scratch_free(s->sites);
  tsri_scratch_free(s);
}

void tsri_site_public(const tsri_site_t *s, tsr_site_t *out) {
  out->id = s->id;
  out->depth = (uint32_t)tsri_stack_frames(s->id, &out->frames);
  out->blocks = tsri_round_u64(s->blocks);
  out->bytes = tsri_round_u64(s->bytes);
  out->requested = tsri_round_u64(s->requested);
  out->estimated = s->estimated;
}

size_t tsr_sites(tsr_site_t *out, size_t max) {
  tsri_init();
  tsri_sites_t *s = tsri_sites_collect(false, false);
  if (s == NULL) return 0;
  for (size_t i = 0; i < s->count && i < max; i++) tsri_site_public(&s->sites[i], &out[i]);
  size_t n = s->count;
  tsri_sites_free(s);
  return n;
}

/* ------------------------------------------------------------------------
 * Snapshots
 * ---------------------------------------------------------------------- */

#define SNAPSHOT_MAGIC 0x74737270736e6170ull

typedef struct snap_class_s {
  uint64_t blocks, bytes;
} snap_class_t;

struct tsr_snapshot_s {
  uint64_t magic;
  size_t count;                               /* sites, in id order */
  snap_class_t classes[TSR_CLASS_COUNT + 1];
  tsri_site_t sites[];
};

tsr_snapshot_t *tsr_snapshot_take(void) {
  tsri_init();
  tsri_sites_t *s = tsri_sites_collect(false, true);   /* by id, for the merge in the diff */
  if (s == NULL) return NULL;
  tsr_snapshot_t *snap = tsri_scratch(sizeof(tsr_snapshot_t) + s->count * sizeof(tsri_site_t));
  if (snap == NULL) {
    tsri_sites_free(s);
    return NULL;
  }
  snap->magic = SNAPSHOT_MAGIC;
  snap->count = s->count;
  memcpy(snap->sites, s->sites, s->count * sizeof(tsri_site_t));
  tsri_sites_free(s);
  /* the rows in memory from the OS: a program may take a snapshot from a
   * thread with a small stack */
  tsr_class_stats_t *rows = tsri_scratch((TSR_CLASS_COUNT + 1) * sizeof *rows);
  if (rows == NULL) {
    tsri_scratch_free(snap);
    return NULL;
  }
  tsr_class_stats(rows, TSR_CLASS_COUNT + 1);
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    snap->classes[c].blocks = rows[c].blocks_live;
    snap->classes[c].bytes = rows[c].bytes_live;
  }
  tsri_scratch_free(rows);
  return snap;
}

void tsr_snapshot_free(tsr_snapshot_t *snap) {
  if (snap == NULL || snap->magic != SNAPSHOT_MAGIC) return;
  snap->magic = 0;
  tsri_scratch_free(snap);
}

static int64_t delta_of(double after, double before) {
  return (int64_t)tsri_round_u64(after) - (int64_t)tsri_round_u64(before);
}

/* Most growth in bytes first; equal growth: sites before classes, each
 * by id (the order tsri_snapshot_deltas makes them in). */
static bool delta_before(const void *pa, const void *pb) {
  const tsr_delta_t *a = pa, *b = pb;
  if (a->bytes != b->bytes) return a->bytes > b->bytes;
  if (a->is_site != b->is_site) return a->is_site > b->is_site;
  return a->id < b->id;
}

tsr_delta_t *tsri_snapshot_deltas(const tsr_snapshot_t *a, const tsr_snapshot_t *b, size_t *count) {
  size_t cap = a->count + b->count + TSR_CLASS_COUNT + 1;
  tsr_delta_t *d = tsri_scratch(cap * sizeof(tsr_delta_t));
  if (d == NULL) return NULL;
  size_t n = 0, i = 0, j = 0;
  static const tsri_site_t none;
  while (i < a->count || j < b->count) {
    const tsri_site_t *x = i < a->count ? &a->sites[i] : NULL;
    const tsri_site_t *y = j < b->count ? &b->sites[j] : NULL;
    uint32_t id;
    if (y == NULL || (x != NULL && x->id < y->id)) { id = x->id; y = &none; i++; }
    else if (x == NULL || y->id < x->id) { id = y->id; x = &none; j++; }
    else { id = x->id; i++; j++; }
    int64_t db = delta_of(y->blocks, x->blocks), dy = delta_of(y->bytes, x->bytes);
    if (db == 0 && dy == 0) continue;
    tsr_delta_t *e = &d[n++];
    memset(e, 0, sizeof *e);
    e->is_site = 1;
    e->id = id;
    e->depth = (uint32_t)tsri_stack_frames(id, &e->frames);
    e->blocks = db;
    e->bytes = dy;
    e->blocks_after = tsri_round_u64(y->blocks);
    e->bytes_after = tsri_round_u64(y->bytes);
  }
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    const snap_class_t *x = &a->classes[c], *y = &b->classes[c];
    if (x->blocks == y->blocks && x->bytes == y->bytes) continue;
    tsr_delta_t *e = &d[n++];
    memset(e, 0, sizeof *e);
    e->id = (uint32_t)c;
    e->block_size = c < TSR_CLASS_COUNT ? tsri_classes[c].block_size : 0;
    e->blocks = (int64_t)y->blocks - (int64_t)x->blocks;
    e->bytes = (int64_t)y->bytes - (int64_t)x->bytes;
    e->blocks_after = y->blocks;
    e->bytes_after = y->bytes;
  }
  tsri_heap_sort(d, n, sizeof(tsr_delta_t), delta_before);
  *count = n;
  return d;
}

size_t tsr_snapshot_diff(const tsr_snapshot_t *before, const tsr_snapshot_t *after,
                         tsr_delta_t *out, size_t max) {
  if (before == NULL || after == NULL || before->magic != SNAPSHOT_MAGIC || after->magic != SNAPSHOT_MAGIC)
    return 0;
  size_t n;
  tsr_delta_t *d = tsri_snapshot_deltas(before, after, &n);
  if (d == NULL) return 0;
  for (size_t i = 0; i < n && i < max; i++) out[i] = d[i];
  tsri_scratch_free(d);
  return n;
}

bool tsri_snapshot_valid(const tsr_snapshot_t *s) { return s != NULL && s->magic == SNAPSHOT_MAGIC; }

/* ------------------------------------------------------------------------
 * Memory map
 * ---------------------------------------------------------------------- */

/* Entries of arena a in address order into out (TSR_ARENA_SLOTS room). */
static size_t map_arena(tsr_arena_t *a, uint32_t number, tsr_map_entry_t *out) {
  size_t n = 0;
  tsri_lock(tsri_arena_lock_get());
  out[n++] = (tsr_map_entry_t){ .start = a, .size = a->meta_slots * TSR_SLOT_SIZE, .arena = number,
                                .slot = 0, .slots = (uint32_t)a->meta_slots,
                                .state = TSR_SLOT_STATE_META };
  for (size_t s = a->meta_slots; s < a->slots;) {
    const tsr_page_t *pg = &a->pages[s];
    tsr_map_entry_t e = { .start = (uint8_t *)a + s * TSR_SLOT_SIZE, .arena = number,
                          .slot = (uint32_t)s, .slots = 1 };
    if (pg->kind == TSR_SLOT_HEAD) {
      e.state = TSR_SLOT_STATE_USED;
      e.slots = pg->span_slots;
      e.cls = pg->cls;
      /* set with the span, under the lock; the owner initialises the
       * page's other fields outside it */
      e.block_size = pg->block_size;
      e.capacity = tsri_page_capacity_seen(pg);
      uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
      e.live = used < e.capacity ? used : e.capacity;
    } else if (pg->kind == TSR_SLOT_TAIL) {
      e.state = TSR_SLOT_STATE_USED;   /* a span being carved or given back */
    } else if (pg->kind == TSR_SLOT_META) {
      e.state = TSR_SLOT_STATE_META;   /* pages' bitmaps (arena.c) */
    } else {
      bool committed = (a->commit_map[s >> 6] >> (s & 63)) & 1;
      e.state = committed ? TSR_SLOT_STATE_DIRTY : TSR_SLOT_STATE_DECOMMITTED;
    }
    e.size = (size_t)e.slots * TSR_SLOT_SIZE;
    out[n++] = e;
    s += e.slots;
  }
  tsri_unlock(tsri_arena_lock_get());
  return n;
}

int tsr_map_walk(tsr_map_fn *visit, void *arg) {
  if (visit == NULL) return EINVAL;
  tsri_init();
  tsr_map_entry_t *buf = tsri_scratch((TSR_ARENA_SLOTS + 1) * sizeof(tsr_map_entry_t));
  if (buf == NULL) return ENOMEM;
  tsri_lock(tsri_arena_lock_get());
  tsr_arena_t *a = tsri_arena_first();
  tsri_unlock(tsri_arena_lock_get());
  int stop = 0;
  for (uint32_t number = 0; a != NULL && stop == 0; a = a->next, number++) {
    size_t n = map_arena(a, number, buf);
    for (size_t i = 0; i < n && stop == 0; i++) stop = visit(&buf[i], arg);
  }
  tsri_scratch_free(buf);
  return stop;
}

/* ------------------------------------------------------------------------
 * Address space
 * ---------------------------------------------------------------------- */

typedef struct range_s {
  uintptr_t start, end;
  uint32_t holder;        /* TSR_HOLDER_ARENA, _LARGE or _TESSERA */
} range_t;

typedef struct space_walk_s {
  tsr_region_fn *visit;
  void *arg;
  tsr_address_space_t totals;
  tsr_space_pieces_t *pieces;   /* or NULL */
  uintptr_t last_end;
  int stop;
  const uintptr_t *lo;    /* the lowest user address, set by the OS layer */
  range_t *ours;          /* tessera's reservations: arenas, their record areas, large
                             blocks of their own, and the others of tsri_own_add
                             (large segments among them) */
  size_t n_ours;
} space_walk_t;

/* Collect tessera's reservations into scratch memory.  The OS merges
 * neighbouring mappings into one region, so a region is tessera's by
 * overlap, never by its start address alone. */
static range_t *ours_collect(size_t *count) {
  tsr_large_t *large = NULL;
  size_t n_large = 0, large_bytes = 0;
  if (tsri_large_snapshot(&large, &n_large, &large_bytes) != 0) n_large = 0;
  size_t arenas = 0;
  tsri_lock(tsri_arena_lock_get());
  for (tsr_arena_t *a = tsri_arena_first(); a != NULL; a = a->next) arenas++;
  tsri_unlock(tsri_arena_lock_get());
  range_t *r = tsri_scratch((2 * arenas + n_large + TSRI_OWN_SLOTS + 1) * sizeof(range_t));
  size_t n = 0;
  if (r != NULL) {
    tsri_lock(tsri_arena_lock_get());
    size_t k = 0;
    for (tsr_arena_t *a = tsri_arena_first(); a != NULL && k < arenas; a = a->next, k++) {
      r[n++] = (range_t){ (uintptr_t)a, (uintptr_t)a + a->slots * TSR_SLOT_SIZE, TSR_HOLDER_ARENA };
      uintptr_t recs = (uintptr_t)atomic_load_explicit(&a->recs, memory_order_relaxed);
      if (recs != 0)
        r[n++] = (range_t){ recs, recs + a->slots * TSRI_RECS_STRIDE, TSR_HOLDER_TESSERA };
    }
    tsri_unlock(tsri_arena_lock_get());
    for (size_t i = 0; i < n_large; i++)   /* a run of a segment lies in the segment's range below */
      if (large[i].seg == NULL)
        r[n++] = (range_t){ large[i].base, large[i].base + large[i].mapped, TSR_HOLDER_LARGE };
    uintptr_t base;
    size_t size, cursor = 0;
    unsigned kind;
    while (tsri_own_next(&cursor, &base, &size, &kind))
      r[n++] = (range_t){ base, base + size, kind == TSRI_OWN_LARGE ? TSR_HOLDER_LARGE : TSR_HOLDER_TESSERA };
  }
  if (large != NULL) tsri_large_snapshot_free(large, large_bytes);
  *count = n;
  return r;
}

/* Bytes of [start, end) in tessera's reservations, by holder (indices
 * TSR_HOLDER_ARENA.._TESSERA of by[]). */
static uint64_t ours_overlap(const space_walk_t *w, uintptr_t start, uintptr_t end, uint64_t *by) {
  uint64_t bytes = 0;
  for (size_t i = 0; i < w->n_ours; i++) {
    uintptr_t s = w->ours[i].start > start ? w->ours[i].start : start;
    uintptr_t e = w->ours[i].end < end ? w->ours[i].end : end;
    if (s < e) {
      bytes += e - s;
      by[w->ours[i].holder] += e - s;
    }
  }
  return bytes;
}

/* The bucket of a free range of size bytes: < 1, 4, 16, 64, 256 MiB, more. */
static size_t free_bucket(uint64_t size) {
  size_t b = 0;
  for (uint64_t limit = (uint64_t)1 << 20; b + 1 < TSR_FREE_BUCKETS && size >= limit; limit <<= 2) b++;
  return b;
}

/* Note free range [start, start + size) among the biggest. */
static void pieces_note_free(tsr_space_pieces_t *p, uintptr_t start, uint64_t size) {
  size_t b = free_bucket(size);
  p->free_ranges++;
  p->pieces[b]++;
  p->pieces_bytes[b] += size;
  size_t i = TSR_LARGEST_LISTED;
  while (i > 0 && p->largest[i - 1] < size) i--;
  if (i == TSR_LARGEST_LISTED) return;
  for (size_t k = TSR_LARGEST_LISTED - 1; k > i; k--) {
    p->largest[k] = p->largest[k - 1];
    p->largest_at[k] = p->largest_at[k - 1];
  }
  p->largest[i] = size;
  p->largest_at[i] = start;
}

static void space_emit(space_walk_t *w, const tsr_region_t *r, uint64_t ours, const uint64_t *by) {
  uint64_t size = r->end - r->start;
  w->totals.regions++;
  if (r->state == TSR_REGION_FREE) {
    w->totals.free += size;
    if (size > w->totals.largest_free) {
      w->totals.largest_free = size;
      w->totals.largest_free_at = r->start;
    }
    if (w->pieces != NULL) pieces_note_free(w->pieces, r->start, size);
  } else {
    if (r->state == TSR_REGION_RESERVED) w->totals.reserved += size;
    else w->totals.committed += size;
    w->totals.tessera_reserved += ours;
  }
  if (w->pieces != NULL) {
    for (size_t h = 0; h < TSR_HOLDER_COUNT; h++) w->pieces->held[h] += by[h];
    w->pieces->held_regions[r->holder]++;
  }
  if (w->visit != NULL && w->stop == 0) w->stop = w->visit(r, w->arg);
}

/* Who holds what the OS layer describes, tessera's own aside. */
static uint32_t os_holder(const tsri_os_region_t *os) {
  if (os->holder == TSRI_OS_HOLDER_STACK) return TSR_HOLDER_STACK;
  if (os->holder == TSRI_OS_HOLDER_HEAP) return TSR_HOLDER_HEAP;
  if (os->type == TSR_REGION_TYPE_IMAGE) return TSR_HOLDER_IMAGE;
  if (os->type == TSR_REGION_TYPE_MAPPED) return TSR_HOLDER_MAPPED;
  if (os->type == 0 && os->name[0] == '/')   /* POSIX: a library or the program, else a file */
    return (os->prot & TSR_PROT_EXEC) || strstr(os->name, ".so") != NULL ? TSR_HOLDER_IMAGE
                                                                         : TSR_HOLDER_MAPPED;
  return TSR_HOLDER_OTHER;
}

/* One piece of a region, [start, end), with the holder that has most of it. */
static void space_piece(space_walk_t *w, const tsri_os_region_t *os, uintptr_t start, uintptr_t end) {
  uint64_t by[TSR_HOLDER_COUNT] = { 0 };
  uint64_t ours = ours_overlap(w, start, end, by);
  uint32_t rest_holder = os_holder(os);
  by[rest_holder] += (end - start) - ours;
  uint32_t holder = rest_holder;
  for (uint32_t h = 0; h < TSR_HOLDER_COUNT; h++)
    if (by[h] > by[holder]) holder = h;
  tsr_region_t r = { start, end, os->accessible ? TSR_REGION_COMMITTED : TSR_REGION_RESERVED,
                     os->prot, ours != 0, os->name, os->type, os->base, holder };
  space_emit(w, &r, ours, by);
}

static int space_region(const tsri_os_region_t *os, void *arg) {
  space_walk_t *w = arg;
  uintptr_t from = w->last_end != 0 ? w->last_end : *w->lo;
  if (os->start > from) {
    uint64_t by[TSR_HOLDER_COUNT] = { 0 };
    tsr_region_t gap = { from, os->start, TSR_REGION_FREE, 0, 0, "", 0, 0, TSR_HOLDER_FREE };
    by[TSR_HOLDER_FREE] = os->start - from;
    space_emit(w, &gap, 0, by);
  }
  /* The OS merges neighbouring mappings of the same kind (an arena's
   * committed slots and a large-block segment next to it): the region is
   * cut where tessera's reservations begin and end, so that each piece
   * has one holder. */
  for (uintptr_t at = os->start; at < os->end;) {
    uintptr_t next = os->end;
    for (size_t i = 0; i < w->n_ours; i++) {
      if (w->ours[i].start > at && w->ours[i].start < next) next = w->ours[i].start;
      if (w->ours[i].end > at && w->ours[i].end < next) next = w->ours[i].end;
    }
    space_piece(w, os, at, next);
    at = next;
  }
  w->last_end = os->end;
  return 0;
}

static int space_walk(tsr_region_fn *visit, void *arg, tsr_address_space_t *totals,
                      tsr_space_pieces_t *pieces) {
  tsri_init();
  space_walk_t w;
  memset(&w, 0, sizeof w);
  w.visit = visit;
  w.arg = arg;
  w.pieces = pieces;
  w.ours = ours_collect(&w.n_ours);
  uintptr_t lo = 0, hi = 0;
  w.lo = &lo;
  int rc = tsri_os_regions(space_region, &w, &lo, &hi);
  if (rc == 0 && hi > w.last_end) {
    uintptr_t from = w.last_end > lo ? w.last_end : lo;
    tsr_region_t gap = { from, hi, TSR_REGION_FREE, 0, 0, "", 0, 0, TSR_HOLDER_FREE };
    uint64_t by[TSR_HOLDER_COUNT] = { hi - from };
    space_emit(&w, &gap, 0, by);
  }
  tsri_scratch_free(w.ours);
  if (rc == 0 && totals != NULL) *totals = w.totals;
  return rc;
}

int tsr_address_space(tsr_region_fn *visit, void *arg, tsr_address_space_t *totals) {
  return space_walk(visit, arg, totals, NULL);
}

int tsr_space_pieces(tsr_space_pieces_t *pieces) {
  if (pieces == NULL || pieces->size < sizeof(tsr_space_pieces_t)) return EINVAL;
  memset(pieces, 0, sizeof *pieces);
  pieces->size = sizeof *pieces;
  pieces->version = TSR_SPACE_VERSION;
  int rc = space_walk(NULL, NULL, &pieces->totals, pieces);
  if (rc != 0) return rc;
  pieces->reservable = tsri_os_largest_reservation();
  uint64_t limit = (uint64_t)tsri_option(TSRI_OPT_RESERVE_LIMIT), held = tsri_os_reserved();
  pieces->reserve_left = limit == 0 ? UINT64_MAX : limit > held ? limit - held : 0;
  tsri_refusal_t refusal;
  tsri_refusal_get(&refusal);
  pieces->refusals = refusal.count;
  pieces->refused_size = refusal.size;
  pieces->refused_large = refusal.what == TSRI_REFUSED_LARGE;
  pieces->refused_ms = refusal.count ? refusal.at_ms - tsri_start_ms : 0;
  return 0;
}
