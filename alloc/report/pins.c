/* pins.c: who pins the pages.
 *
 * Owns tsr_pins and the pins section of the reports.  A size-class heap
 * gives a page back only when its last block is freed, so a page with a
 * few survivors holds all of its memory: after a peak, that memory is the
 * external fragmentation a server sees as RSS it cannot explain.  This
 * names who holds it: for the sparse pages (at most half their blocks
 * live), the allocation sites of the live blocks in them.
 *
 * Shares.  Each live block of a sparse page holds an equal share of the
 * page's bytes (`pinned`) and of its free bytes (`idle`, what would go
 * back if the blocks moved), so the sites' shares add up to the sparse
 * pages' bytes.  A block with a sampled record stands for `weight` blocks
 * of its site, as in the site report; the blocks without a record are
 * what the sites' estimates leave of the exact totals, shown as site 0.
 * Under TESSERA_TRACK=full every figure is exact.
 *
 * Meshable.  Two OS pages at the same offset of two spans of a class
 * whose live blocks sit at different bytes could share one physical
 * page (Mesh, Powers et al., PLDI 2019, meshes whole 4 KiB spans; a
 * tessera span is 64 KiB or more, far too many blocks for two to miss
 * each other, so the unit is the OS page inside it).  `meshable` counts
 * the bytes pairs of sparse spans would so give back, each span paired
 * with the best of at most MESH_PROBES others after it, over the first
 * MESH_PAGES sparse spans of the walk.  It is reckoned from the bitmaps
 * alone, whether or not meshing (mesh.c, TESSERA_MESH) has paired those
 * pages already: what pairing could save on this heap now, beside what
 * meshing does save (mesh_saved, from tsri_mesh_figures).  A floor:
 * meshing itself also puts OS pages of other classes and offsets, up to
 * eight of them, on one physical page.
 */
#include "report.h"

#define MESH_PROBES 64
#define MESH_PAGES 16384   /* sparse spans looked at for meshable, at most */
#define MESH_GRANULE_WORDS (TSRI_MESH_PAGE_MAX / TSR_MIN_ALIGN / 64)   /* a bit per 16 bytes */

/* A sparse span as the walk copied it, for meshable. */
typedef struct mesh_page_s {
  uint32_t cls;
  uint32_t index;             /* in the walk's order: the tie-break of the sort */
  uint32_t phase;             /* bytes from the span's start to block 0 (page.c) */
  uint32_t capacity;          /* its blocks */
  uint32_t block_size;        /* bytes: its class's, or less on a fitted page */
  uint32_t slots;             /* of its span */
  uint64_t *live;             /* its live bitmap, TSR_BITMAP_WORDS words in `bits` */
} mesh_page_t;

typedef struct pins_walk_s {
  tsri_pin_t *by_id;          /* indexed by stack id, count + 1 entries */
  uint32_t count;
  const tsr_page_t *page;     /* the page of the last block seen, and what a block of it holds */
  bool sparse;
  double share, idle_share;
  tsri_pin_t all;             /* every block of the sparse pages, weight 1 */
  uint64_t pages, bytes, live;
  mesh_page_t *mesh;          /* the first MESH_PAGES sparse spans, with their bitmaps */
  uint64_t *bits;
  size_t nmesh;
} pins_walk_t;

/* Everything comes from the walk's copy of the page (track.h): a page's
 * live descriptor may be carved again meanwhile, for another class.  The
 * walk visits a page's blocks one after another, so a page is measured
 * once, at its first block. */
static int pins_visit(const tsri_block_t *b, void *arg) {
  pins_walk_t *w = arg;
  if (b->cls >= TSR_CLASS_COUNT || b->page == NULL) return 0;
  if (b->page != w->page) {
    uint32_t live = b->page_live;
    w->page = b->page;
    /* of the span's shape: a phase's gap is free space */
    w->sparse = live > 0 && 2 * live <= b->page_capacity + ((b->page_start & (TSR_SLOT_SIZE - 1)) != 0);
    if (w->sparse) {
      uint64_t bytes = (uint64_t)b->page_slots * TSR_SLOT_SIZE;
      uint64_t live_bytes = (uint64_t)live * b->pub.usable;
      w->share = (double)bytes / live;
      w->idle_share = (double)(bytes - live_bytes) / live;
      w->pages++;
      w->bytes += bytes;
      w->live += live_bytes;
      if (w->bits != NULL && w->nmesh < MESH_PAGES) {
        mesh_page_t *m = &w->mesh[w->nmesh];
        m->cls = b->cls;
        m->index = (uint32_t)w->nmesh;
        m->phase = (uint32_t)(b->page_start & (TSR_SLOT_SIZE - 1));
        m->capacity = b->page_capacity;
        m->block_size = (uint32_t)b->pub.usable;
        m->slots = b->page_slots;
        m->live = w->bits + w->nmesh * TSR_BITMAP_WORDS;
        for (size_t k = 0; k < ((size_t)b->page_capacity + 63) / 64; k++) m->live[k] = ~b->page_free[k];
        w->nmesh++;
      }
    }
  }
  if (!w->sparse) return 0;
  w->all.blocks += 1;
  w->all.pinned += w->share;
  w->all.idle += w->idle_share;
  if (b->pub.tracked && b->pub.site != 0 && b->pub.site <= w->count) {
    tsri_pin_t *s = &w->by_id[b->pub.site];
    double weight = b->pub.weight;
    s->blocks += weight;
    s->pinned += weight * w->share;
    s->idle += weight * w->idle_share;
    if (weight != 1.0) s->estimated = true;
  }
  return 0;
}

/* OS pages that meshing a with b (spans of class c) would free: those at
 * an offset where both have live blocks and no byte is live in both
 * (tsri_page_granules, as mesh.c compares them); an OS page with no live
 * block is trimmed already (page.c) and saves nothing here. */
static size_t mesh_saving(const mesh_page_t *a, const mesh_page_t *b, size_t os_page) {
  size_t saved = 0, span = (size_t)(a->slots < b->slots ? a->slots : b->slots) * TSR_SLOT_SIZE;
  uint64_t ga[MESH_GRANULE_WORDS], gb[MESH_GRANULE_WORDS];
  for (size_t off = 0; off < span; off += os_page) {
    if (!tsri_page_granules(a->phase, a->block_size, a->capacity, a->live, off, os_page, ga) ||
        !tsri_page_granules(b->phase, b->block_size, b->capacity, b->live, off, os_page, gb))
      continue;
    bool clash = false;
    for (size_t w = 0; w < os_page / TSR_MIN_ALIGN / 64 && !clash; w++) clash = (ga[w] & gb[w]) != 0;
    saved += !clash;
  }
  return saved;
}

/* By class, then in the walk's order. */
static bool mesh_before(const void *pa, const void *pb) {
  const mesh_page_t *a = pa, *b = pb;
  return a->cls < b->cls || (a->cls == b->cls && a->index < b->index);
}

/* Bytes that meshing the sparse spans in pairs would give back: sorted by
 * class, each span not yet paired goes with the one of the next
 * MESH_PROBES of its class that frees the most OS pages. */
static uint64_t meshable_bytes(mesh_page_t *pages, size_t n) {
  tsri_heap_sort(pages, n, sizeof *pages, mesh_before);
  size_t os_page = tsri_os_page_size();
  if (os_page > MESH_GRANULE_WORDS * 64 * TSR_MIN_ALIGN) return 0;   /* meshing's limit too */
  uint64_t bytes = 0;
  for (size_t i = 0; i < n; i++) {
    if (pages[i].live == NULL) continue;
    size_t best = 0, best_j = 0;
    for (size_t j = i + 1; j < n && j <= i + MESH_PROBES; j++) {
      if (pages[j].live == NULL) continue;   /* paired already */
      if (pages[j].cls != pages[i].cls) break;
      size_t saved = mesh_saving(&pages[i], &pages[j], os_page);
      if (saved > best) {
        best = saved;
        best_j = j;
      }
    }
    if (best == 0) continue;
    bytes += (uint64_t)best * os_page;
    pages[best_j].live = NULL;
  }
  return bytes;
}

/* Most pinned bytes first; equal bytes by stack id. */
static bool pin_before(const void *pa, const void *pb) {
  const tsri_pin_t *a = pa, *b = pb;
  return a->pinned > b->pinned || (a->pinned == b->pinned && a->id < b->id);
}

tsri_pins_t *tsri_pins_collect(void) {
  pins_walk_t w;
  memset(&w, 0, sizeof w);
  w.count = tsri_stack_count();
  w.by_id = tsri_scratch((w.count + 1) * sizeof(tsri_pin_t));
  tsri_pins_t *out = tsri_scratch(sizeof(tsri_pins_t));
  if (w.by_id == NULL || out == NULL) {
    tsri_scratch_free(w.by_id);
    tsri_scratch_free(out);
    return NULL;
  }
  memset(w.by_id, 0, (w.count + 1) * sizeof(tsri_pin_t));
  /* meshable goes without when this cannot be had (8 MiB at most) */
  w.mesh = tsri_scratch(MESH_PAGES * sizeof(mesh_page_t));
  w.bits = w.mesh ? tsri_scratch((size_t)MESH_PAGES * TSR_BITMAP_WORDS * sizeof(uint64_t)) : NULL;
  int rc = tsri_meta_walk(pins_visit, &w, false);
  out->meshable = rc == 0 && w.bits != NULL ? meshable_bytes(w.mesh, w.nmesh) : 0;
  tsri_scratch_free(w.bits);
  tsri_scratch_free(w.mesh);
  if (rc != 0) {
    tsri_scratch_free(w.by_id);
    tsri_scratch_free(out);
    return NULL;
  }
  /* the sites in place, then site 0: what their estimates leave */
  size_t n = 0;
  tsri_pin_t sum;
  memset(&sum, 0, sizeof sum);
  for (uint32_t id = 1; id <= w.count; id++) {
    tsri_pin_t s = w.by_id[id];
    if (s.blocks < 0.5) continue;
    s.id = id;
    sum.blocks += s.blocks;
    sum.pinned += s.pinned;
    sum.idle += s.idle;
    w.by_id[n++] = s;
  }
  tsri_pin_t rest = { 0, false, w.all.blocks - sum.blocks, w.all.pinned - sum.pinned, w.all.idle - sum.idle };
  if (rest.blocks >= 0.5 && rest.pinned > 0) {
    for (size_t i = 0; i < n; i++) rest.estimated |= w.by_id[i].estimated;   /* the rest of estimates */
    w.by_id[n++] = rest;
  }
  tsri_heap_sort(w.by_id, n, sizeof(tsri_pin_t), pin_before);
  out->pins = w.by_id;
  out->count = n;
  out->pages = w.pages;
  out->bytes = w.bytes;
  out->live = w.live;
  memset(&out->mesh, 0, sizeof out->mesh);
  tsri_mesh_figures(&out->mesh);
  return out;
}

void tsri_pins_free(tsri_pins_t *p) {
  if (p == NULL) return;
  tsri_scratch_free(p->pins);
  tsri_scratch_free(p);
}

size_t tsr_pins(tsr_pins_t *totals, tsr_pin_t *out, size_t max) {
  tsri_init();
  tsri_pins_t *p = tsri_pins_collect();
  if (totals != NULL) memset(totals, 0, sizeof *totals);
  if (p == NULL) return 0;
  if (totals != NULL) {
    *totals = p->mesh;
    totals->pages = p->pages;
    totals->bytes = p->bytes;
    totals->live = p->live;
    totals->meshable = p->meshable;
  }
  for (size_t i = 0; i < p->count && i < max; i++) {
    const tsri_pin_t *s = &p->pins[i];
    out[i].id = s->id;
    out[i].frames = NULL;
    out[i].depth = s->id ? (uint32_t)tsri_stack_frames(s->id, &out[i].frames) : 0;
    out[i].blocks = tsri_round_u64(s->blocks);
    out[i].pinned = tsri_round_u64(s->pinned);
    out[i].idle = tsri_round_u64(s->idle);
    out[i].estimated = s->estimated;
  }
  size_t n = p->count;
  tsri_pins_free(p);
  return n;
}
