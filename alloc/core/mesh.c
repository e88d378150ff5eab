/* mesh.c: meshing, two sparsely used OS pages on one physical page.
 *
 * Owns: finding OS pages of sparse spans whose live blocks do not overlap
 * (any classes, any offsets in their spans); copying the live blocks of
 * both into one page of a shared file and mapping both virtual pages onto
 * it (the physical pages they had go back to the OS); taking a pair apart
 * when one side's blocks on it are all free; the write barrier that keeps
 * every write made meanwhile; and what fork must do about the shared file.
 * Pointers never change: a block stays at its address, only the physical
 * page behind it does.  After Mesh (Powers et al., PLDI 2019), in tessera's
 * terms; docs/design.md argues the choices.
 *
 * The unit.  A span is 64 KiB or more; two spans almost never have their live blocks at different
 * offsets throughout, two 4 KiB OS pages of sparse spans often do.  Two OS pages mesh when no byte
 * of the page belongs to a live block in both (compared a 16-byte granule at a time:
 * tsri_page_granules), whatever their classes and their offsets in their spans: a file page holds
 * each side's bytes where that side has them, so sides of different classes and offsets live side
 * by side.  Half the spans of a class are shifted by one block (page.c: the phase), so that
 * survivors left in the order they were allocated fall at different offsets in different spans.
 *
 * Frozen pages.  Each side keeps its own bitmap: its live blocks are its own, the other sides' are
 * free in it.  So that none hands out a free block over another's live one, a page with a meshed OS
 * page is frozen: FULL in its owner's full queue, never allocated from; a free into it goes through
 * a slow path that calls tsri_mesh_check (and heap_thaw checks every frozen page at each pass, for
 * frees that raced the freeze).  A side with no live block left on a shared OS page gets fresh
 * private memory there and leaves; the last side keeps the file page as a "single", which behaves
 * like any memory and goes back to private memory when its page is trimmed or retired.  A page
 * meshed no more thaws.
 *
 * The write barrier (mesh_fence.c).  While a virtual page is copied into the file it is read-only:
 * a writer faults and waits in tessera's SIGSEGV handler until the file page is mapped in its place,
 * then writes there; reads never wait, and a write by the kernel gets EFAULT meanwhile, which the
 * read family of libtessera.so (override_io.c) takes as a sign to run the call again.  Other
 * faults go on to the program's handler; where the program put its own in front, each pass puts
 * tessera's back (tsri_os_fault_front), and where it cannot, meshing pauses.  A pass holds its
 * thread's asynchronous signals back: a handler writing to the page its own thread fenced would
 * wait for ever.
 *
 * fork.  Before fork every file page is made read-only; the child, first thing, gives each private
 * memory with the same contents and opens a file of its own (with its parent's, both would take the
 * same file pages); the parent waits on a pipe until the child is done, then makes them writable
 * again.  The cost is proportional to the meshed pages.
 *
 * Limits.  Meshing keeps its estimate of the mappings it added (vmas,
 * map_cost) under half of vm.max_map_count, and places neighbours on
 * neighbouring file pages so that their mappings merge.  docs/design.md
 * ("Meshing") has each of these at length.
 *
 * Locking: mesh_lock guards the records, the table and every page's
 * filed/meshed.  Order: the reclaimer's lock, a heap's park, the abandoned
 * lock, then mesh_lock.
 */
#include "queue.h"

#define MESH_OPEN 512                 /* open OS pages kept in a pass, probed for each new one */
#define MESH_CANDIDATES 2048          /* pages a pass looks at, at most */
#define MESH_WAYS 8                   /* virtual pages on one file page, at most */
#define MESH_MASK_WORDS (TSRI_MESH_PAGE_MAX / TSR_MIN_ALIGN / 64)   /* a bit per 16 bytes of an OS page */
#define MESH_MAX_RECORDS 65536u
#define MESH_FILE_STEP ((uint64_t)64 << 20)   /* the file grows this much at a time */
#define REC_NONE UINT32_MAX

/* A page of the shared file: the virtual pages mapped onto it (0: a free
 * place), OS pages of any spans. */
typedef struct mesh_rec_s {
  uintptr_t va[MESH_WAYS];
  uint32_t sides;                     /* of va[] not 0 */
} mesh_rec_t;

/* The table's entry for a virtual page mapped from the file. */
typedef struct mesh_entry_s {
  uintptr_t va;
  uint32_t rec;
  uint32_t side;
} mesh_entry_t;

/* An OS page open for a partner in a pass: a page's own (rec REC_NONE),
 * or a file page's, whose live blocks are those of all its sides. */
typedef struct mesh_open_s {
  tsr_page_t *pg;                     /* the page of the OS page, or of its last side */
  uint32_t k;                         /* which OS page of pg */
  uint32_t rec;
  uint64_t live[MESH_MASK_WORDS];
} mesh_open_t;

enum { MESH_UNTRIED = 0, MESH_READY, MESH_FAILED };

static tsri_lock_t mesh_lock;
static _Atomic int mesh_setup = MESH_UNTRIED;   /* written under the lock, read by the figures */
static size_t page_size;
static mesh_rec_t *recs;
static uint64_t rec_used[MESH_MAX_RECORDS / 64];   /* bit r: file page r holds sides */
static uint32_t rec_high, rec_cap;    /* records ever used (from 0), the most there may be */
static size_t rec_counted;            /* bytes of recs counted as metadata */
static _Atomic uint32_t vmas;         /* mappings meshing added (an estimate; written locked) */
static uint32_t vma_cap;              /* their cap, set before mesh_setup is READY */
static uint64_t file_bytes;
static tsri_table_t mesh_table = TSRI_TABLE_INIT(mesh_entry_t, 1024);
static mesh_open_t *open_list;        /* MESH_OPEN of them, for a pass */
static tsr_page_t *cand[MESH_CANDIDATES];   /* a pass's pages */

/* Figures, read by tsri_mesh_figures without the lock. */
static _Atomic uint64_t fig_meshed, fig_saved, fig_meshes, fig_unmeshes, fig_passes, fig_ns;
static _Atomic int mesh_paused;

static intptr_t fork_pipe[2] = { -1, -1 };

static inline tsr_page_t *page_at(uintptr_t va) { return tsri_page_of((const void *)va); }

/* ThreadSanitizer cannot see the write barrier: a page's writers are ordered before its copy
 * by the mprotect that makes it read-only (the kernel's flush of every CPU's mapping), not by
 * anything in the program, and it takes a new mapping for a write to all of it.  It is told
 * not to look at the copy and the mapping. */
#if defined(__SANITIZE_THREAD__)
#define MESH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MESH_TSAN 1
#endif
#endif
#if defined(MESH_TSAN)
void __tsan_ignore_thread_begin(void);
void __tsan_ignore_thread_end(void);
static inline void copy_begin(void) { __tsan_ignore_thread_begin(); }
static inline void copy_end(void) { __tsan_ignore_thread_end(); }
#else
static inline void copy_begin(void) {}
static inline void copy_end(void) {}
#endif

static inline void count_add(_Atomic uint16_t *c, int d) {
  atomic_store_explicit(c, (uint16_t)(atomic_load_explicit(c, memory_order_relaxed) + d), memory_order_relaxed);
}

/* ------------------------------------------------------------------------
 * Set-up and records.  Lock held.
 * ---------------------------------------------------------------------- */

/* A new file, nothing being on the old one (a fork child's parent's, or
 * one whose descriptor the program closed).  Lock held. */
static bool file_anew(void) {
  memset(rec_used, 0, sizeof rec_used);
  rec_high = 0;
  vmas = 0;
  file_bytes = 0;
  tsri_os_share_close();
  return tsri_os_share_open() == 0;
}

static bool mesh_ready(void) {
  /* the program closed the file's descriptor (a daemon's closerange): a
   * new file, unless pages are on the old one (they stay until freed) */
  if (mesh_setup == MESH_READY && !tsri_os_share_ok() && (mesh_table.count != 0 || !file_anew())) {
    mesh_setup = MESH_FAILED;
    tsri_warning("meshing: the program closed tessera's file with pages on it; meshing stops");
  }
  if (mesh_setup != MESH_UNTRIED) return mesh_setup == MESH_READY;
  mesh_setup = MESH_FAILED;
  page_size = tsri_os_page_size();
  if (page_size > TSRI_MESH_PAGE_MAX || TSR_SLOT_SIZE % page_size != 0) return false;
  /* meshing keeps to half of the mappings the process may have */
  vma_cap = (uint32_t)(tsri_os_map_limit() / 2);
  rec_cap = vma_cap < MESH_MAX_RECORDS ? vma_cap : MESH_MAX_RECORDS;
  if (rec_cap == 0) return false;
  size_t rec_bytes = tsri_align_up((size_t)rec_cap * sizeof(mesh_rec_t), page_size);
  size_t open_bytes = tsri_align_up(sizeof(mesh_open_t) * MESH_OPEN, page_size);
  void *mem;
  if (tsri_os_share_open() != 0) return false;
  if (tsri_os_alloc(rec_bytes + open_bytes, page_size, &mem) != 0) {
    tsri_os_share_close();
    return false;
  }
  if (tsri_os_fault_catch(tsri_mesh_fault) != 0) {
    tsri_os_release(mem, rec_bytes + open_bytes);
    tsri_os_share_close();
    return false;
  }
  tsri_own_add(mem, rec_bytes + open_bytes, TSRI_OWN_META);
  /* the records count as committed as they come into use (rec_alloc) */
  tsri_count(&tsri_counters.metadata, (int64_t)open_bytes);
  tsri_count(&tsri_counters.committed, (int64_t)open_bytes);
  tsri_count(&tsri_counters.reserved, (int64_t)(rec_bytes + open_bytes));
  recs = mem;
  open_list = (mesh_open_t *)((uint8_t *)mem + rec_bytes);
  mesh_setup = MESH_READY;
  return true;
}

static inline bool rec_in_use(uint32_t r) { return (rec_used[r >> 6] >> (r & 63)) & 1; }

/* A free file page: `prefer` when it is free (the one next to a
 * neighbour's, so that their mappings merge), else one never used, else
 * any.  REC_NONE when there is none or the file cannot grow. */
static uint32_t rec_alloc(uint32_t prefer) {
  uint32_t r = REC_NONE;
  if (prefer < rec_cap && !rec_in_use(prefer)) {
    r = prefer;
  } else if (rec_high < rec_cap) {
    r = rec_high;
  } else {
    for (uint32_t w = 0; w < rec_cap / 64 && r == REC_NONE; w++)
      if (~rec_used[w] != 0) r = w * 64 + (uint32_t)__builtin_ctzll(~rec_used[w]);
    if (r >= rec_cap) return REC_NONE;
  }
  uint64_t need = ((uint64_t)r + 1) * page_size;
  while (need > file_bytes) {
    if (tsri_os_share_size(file_bytes + MESH_FILE_STEP) != 0) return REC_NONE;
    file_bytes += MESH_FILE_STEP;
  }
  if (r >= rec_high) {
    rec_high = r + 1;
    size_t bytes = tsri_align_up((size_t)rec_high * sizeof(mesh_rec_t), page_size);
    if (bytes > rec_counted) {
      tsri_count(&tsri_counters.metadata, (int64_t)(bytes - rec_counted));
      tsri_count(&tsri_counters.committed, (int64_t)(bytes - rec_counted));
      rec_counted = bytes;
    }
  }
  rec_used[r >> 6] |= (uint64_t)1 << (r & 63);
  memset(&recs[r], 0, sizeof recs[r]);
  return r;
}

static void rec_drop(uint32_t r) {
  tsri_os_share_punch((uint64_t)r * page_size, page_size);
  memset(&recs[r], 0, sizeof recs[r]);
  rec_used[r >> 6] &= ~((uint64_t)1 << (r & 63));
}

/* The mappings a virtual page at va mapped from file page r adds: two
 * (the mapping around it splits in three), one less for each neighbour
 * mapped from the file page next to r, with which it merges. */
static uint32_t map_cost(uintptr_t va, uint32_t r) {
  uint32_t cost = 2;
  mesh_entry_t *e = tsri_table_find(&mesh_table, va - page_size);
  if (e != NULL && e->rec + 1 == r) cost--;
  e = tsri_table_find(&mesh_table, va + page_size);
  if (e != NULL && e->rec == r + 1) cost--;
  return cost;
}

/* The file page next to those of va's neighbours, or REC_NONE. */
static uint32_t rec_beside(uintptr_t va) {
  mesh_entry_t *e = tsri_table_find(&mesh_table, va - page_size);
  if (e != NULL) return e->rec + 1;
  e = tsri_table_find(&mesh_table, va + page_size);
  return e != NULL && e->rec > 0 ? e->rec - 1 : REC_NONE;
}

static bool entry_add(uintptr_t va, uint32_t r, uint32_t side) {
  mesh_entry_t *e = tsri_table_insert(&mesh_table, va);
  if (e == NULL) return false;
  e->rec = r;
  e->side = side;
  return true;
}

/* ------------------------------------------------------------------------
 * Live blocks on an OS page
 * ---------------------------------------------------------------------- */

/* Bit i of bits: block i of pg is live (free in neither bitmap). */
static void live_blocks(const tsr_page_t *pg, uint64_t *bits) {
  for (size_t w = 0, n = tsri_page_words(pg); w < n; w++)
    bits[w] = ~(atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed) |
                atomic_load_explicit(tsri_remote(pg, w), memory_order_relaxed));
}

/* Is any block of pg (live or not) on its OS page k? */
static bool blocks_on(const tsr_page_t *pg, size_t k) {
  return tsri_page_base(pg) + k * page_size < (uintptr_t)pg->start + (size_t)pg->capacity * pg->block_size;
}

/* Bit g of live: bytes [16g, 16g + 16) of OS page k of pg belong to a
 * live block (bits: live_blocks).  Bytes, not block indices: the sides of
 * a file page may be of different classes, offsets and phases (page.c).
 * False when no block there is live. */
static bool live_mask(const tsr_page_t *pg, const uint64_t *bits, size_t k, uint64_t *live) {
  memset(live, 0, MESH_MASK_WORDS * sizeof *live);   /* the words past a small OS page's too */
  return tsri_page_granules((uintptr_t)pg->start, pg->block_size, pg->capacity, bits,
                            tsri_page_base(pg) + k * page_size, page_size, live);
}

static bool masks_apart(const uint64_t *a, const uint64_t *b) {
  for (size_t w = 0; w < page_size / TSR_MIN_ALIGN / 64; w++)
    if (a[w] & b[w]) return false;
  return true;
}

/* ------------------------------------------------------------------------
 * Making and taking apart pairs.  Lock held.
 * ---------------------------------------------------------------------- */

/* OS page k of pg goes onto a new page of the file, alone: its record,
 * or REC_NONE when something failed (nothing changed then). */
static uint32_t mesh_single(tsr_page_t *pg, size_t k) {
  uintptr_t a = tsri_page_base(pg) + k * page_size;
  uint32_t r = rec_alloc(rec_beside(a));
  if (r == REC_NONE) return REC_NONE;
  uint32_t cost = map_cost(a, r);
  if (vmas + cost > vma_cap) {
    rec_drop(r);
    return REC_NONE;
  }
  uint64_t off = (uint64_t)r * page_size;
  if (!entry_add(a, r, 0)) {
    rec_drop(r);
    return REC_NONE;
  }
  uint64_t t0 = tsri_os_clock_ns();
  tsri_mesh_fence_begin(a);
  bool ok = tsri_os_protect((void *)a, page_size, false) == 0;
  copy_begin();
  if (ok && (tsri_os_share_write(off, (const void *)a, page_size) != 0 ||
             tsri_os_share_map((void *)a, page_size, off) != 0)) {
    tsri_mesh_writable_again(a);
    ok = false;
  }
  copy_end();
  tsri_mesh_fence_end(t0);
  if (!ok) {
    tsri_table_remove(&mesh_table, tsri_table_find(&mesh_table, a));
    rec_drop(r);
    return REC_NONE;
  }
  recs[r].va[0] = a;
  recs[r].sides = 1;
  vmas += cost;
  count_add(&pg->filed, 1);
  return r;
}

/* OS page k of py joins file page r: the bytes of py's live blocks there
 * (ylive, live_mask's, apart from those of r's sides) are copied in and
 * its virtual page mapped onto it.  false when something failed (nothing
 * changed then). */
static bool mesh_join(uint32_t r, tsr_page_t *py, size_t k, const uint64_t *ylive) {
  mesh_rec_t *rec = &recs[r];
  uintptr_t b = tsri_page_base(py) + k * page_size, a = 0;
  uint32_t side = MESH_WAYS;
  for (uint32_t i = 0; i < MESH_WAYS; i++) {
    if (rec->va[i] != 0 && a == 0) a = rec->va[i];   /* writable: the copy goes in through it */
    if (rec->va[i] == 0 && side == MESH_WAYS) side = i;
  }
  uint32_t cost = map_cost(b, r);
  if (side == MESH_WAYS || a == 0 || vmas + cost > vma_cap || !entry_add(b, r, side)) return false;
  uint64_t t0 = tsri_os_clock_ns();
  tsri_mesh_fence_begin(b);
  bool ok = tsri_os_protect((void *)b, page_size, false) == 0;
  if (ok) {
    copy_begin();
    size_t granules = page_size / TSR_MIN_ALIGN;
    for (size_t g = 0; g < granules;) {   /* each run of live bytes */
      if (!((ylive[g >> 6] >> (g & 63)) & 1)) {
        g++;
        continue;
      }
      size_t from = g;
      while (g < granules && ((ylive[g >> 6] >> (g & 63)) & 1)) g++;
      memcpy((void *)(a + from * TSR_MIN_ALIGN), (const void *)(b + from * TSR_MIN_ALIGN), (g - from) * TSR_MIN_ALIGN);
    }
    if (tsri_os_share_map((void *)b, page_size, (uint64_t)r * page_size) != 0) {
      tsri_mesh_writable_again(b);
      ok = false;
    }
    copy_end();
  }
  tsri_mesh_fence_end(t0);
  if (!ok) {
    tsri_table_remove(&mesh_table, tsri_table_find(&mesh_table, b));
    return false;
  }
  if (rec->sides == 1) {   /* the single it was becomes meshed too */
    count_add(&page_at(a)->meshed, 1);
    atomic_fetch_add_explicit(&fig_meshed, 1, memory_order_relaxed);
  }
  rec->va[side] = b;
  rec->sides++;
  vmas += cost;
  count_add(&py->filed, 1);
  count_add(&py->meshed, 1);
  atomic_fetch_add_explicit(&fig_meshed, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&fig_saved, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&fig_meshes, 1, memory_order_relaxed);
  return true;
}

/* The virtual page of entry e leaves the file: fresh private memory there
 * (pg's blocks on it are all free).  False when the OS refused. */
static bool mesh_leave(tsr_page_t *pg, mesh_entry_t *e) {
  uintptr_t va = e->va;
  uint32_t r = e->rec, side = e->side;
  mesh_rec_t *rec = &recs[r];
  if (tsri_os_private_map((void *)va, page_size) != 0) return false;
  uint32_t cost = map_cost(va, r);
  vmas = vmas > cost ? vmas - cost : 0;
  tsri_table_remove(&mesh_table, e);
  rec->va[side] = 0;
  rec->sides--;
  count_add(&pg->filed, -1);
  if (rec->sides == 0) {
    rec_drop(r);
    return true;
  }
  count_add(&pg->meshed, -1);
  atomic_fetch_sub_explicit(&fig_meshed, 1, memory_order_relaxed);
  atomic_fetch_sub_explicit(&fig_saved, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&fig_unmeshes, 1, memory_order_relaxed);
  if (rec->sides == 1) {   /* the one left is a single now */
    for (uint32_t i = 0; i < MESH_WAYS; i++)
      if (rec->va[i] != 0) count_add(&page_at(rec->va[i])->meshed, -1);
    atomic_fetch_sub_explicit(&fig_meshed, 1, memory_order_relaxed);
  }
  return true;
}

uint32_t tsri_mesh_check(tsr_page_t *pg) {
  if (atomic_load_explicit(&pg->filed, memory_order_relaxed) == 0) return 0;
  tsri_lock(&mesh_lock);
  size_t pages = (size_t)pg->span_slots * TSR_SLOT_SIZE / page_size;
  uint64_t live[MESH_MASK_WORDS], bits[TSR_BITMAP_WORDS];
  live_blocks(pg, bits);
  for (size_t k = 0; k < pages && atomic_load_explicit(&pg->filed, memory_order_relaxed) > 0; k++) {
    mesh_entry_t *e = tsri_table_find(&mesh_table, tsri_page_base(pg) + k * page_size);
    if (e != NULL && !live_mask(pg, bits, k, live)) mesh_leave(pg, e);
  }
  uint32_t meshed = atomic_load_explicit(&pg->meshed, memory_order_relaxed);
  tsri_unlock(&mesh_lock);
  return meshed;
}

/* ------------------------------------------------------------------------
 * A pass
 * ---------------------------------------------------------------------- */

bool tsri_mesh_allowed(void) {
  /* a meshed page shows its partner's bytes where its own free blocks
   * were: the freed pattern of TESSERA_DEBUG=fill would be lost */
  return tsri_option(TSRI_OPT_MESH) != 0 &&
         !(atomic_load_explicit(&tsri_debug_checks, memory_order_relaxed) & TSRI_DEBUG_FILL);
}

bool tsri_mesh_due(tsr_heap_t *h) {
  if (!tsri_mesh_allowed()) return false;
  uint64_t now = tsri_os_clock_ms();
  if (now < h->next_mesh_ms) return false;
  h->next_mesh_ms = now + (uint64_t)tsri_option(TSRI_OPT_MESH_MS);
  return true;
}

/* The live bytes of the virtual page va, one side of a file page. */
static void side_live(uintptr_t va, uint64_t *live) {
  uint64_t bits[TSR_BITMAP_WORDS];
  tsr_page_t *pg = page_at(va);
  live_blocks(pg, bits);
  live_mask(pg, bits, (va - tsri_page_base(pg)) / page_size, live);
}

/* Mesh the OS pages of the n pages given (none of them a current page),
 * until the clock reads `until` (ns).  Any OS page may go onto any file
 * page whose live bytes its own miss: pages of other classes and at other
 * offsets of their spans alike.  Lock held; meshing ready.  Returns the
 * OS pages meshed. */
static size_t mesh_pages(tsr_page_t **pages, size_t n, uint64_t until) {
  size_t made = 0;
  uint64_t t0 = tsri_os_clock_ns();
  tsri_os_sigmask_t mask;
  tsri_os_signals_hold(&mask);   /* a handler writing to a fenced page would wait for this thread */
  uint32_t open = 0;
  uint64_t live[MESH_MASK_WORDS], bits[TSR_BITMAP_WORDS];
  bool late = false;
  for (size_t p = 0; p < n && !late && vmas < vma_cap; p++) {
    late = tsri_os_clock_ns() >= until;
    tsr_page_t *pg = pages[p];
    size_t offsets = (size_t)pg->span_slots * TSR_SLOT_SIZE / page_size;
    uint32_t last = REC_NONE;   /* the file page pg's previous OS page went onto, + 1 */
    tsr_page_t *partner = NULL; /* the page it went onto with */
    live_blocks(pg, bits);
    for (size_t k = 0; k < offsets && !late; k++, last = last == REC_NONE ? last : last + 1) {
      if (!blocks_on(pg, k)) break;
      uintptr_t va = tsri_page_base(pg) + k * page_size;
      mesh_entry_t *e = atomic_load_explicit(&pg->filed, memory_order_relaxed) > 0
                            ? tsri_table_find(&mesh_table, va) : NULL;
      if (e != NULL) {
        /* already on a file page: open it for more sides, once per pass */
        uint32_t r = e->rec;
        last = r;
        bool listed = recs[r].sides >= MESH_WAYS;
        for (uint32_t j = 0; j < open && !listed; j++) listed = open_list[j].rec == r;
        if (listed || open == MESH_OPEN) continue;
        mesh_open_t *o = &open_list[open++];
        o->pg = pg;
        o->k = (uint32_t)k;
        o->rec = r;
        memset(o->live, 0, sizeof o->live);
        for (uint32_t i = 0; i < MESH_WAYS; i++) {
          if (recs[r].va[i] == 0) continue;
          side_live(recs[r].va[i], live);
          for (size_t w = 0; w < MESH_MASK_WORDS; w++) o->live[w] |= live[w];
        }
        continue;
      }
      if (!live_mask(pg, bits, k, live)) continue;   /* no live block: trimming's business */
      /* a partner, the file page next to the last one first: the two
       * mappings then merge into one */
      uint32_t found = open;
      for (uint32_t j = 0; j < open; j++) {
        if (open_list[j].pg == pg || !masks_apart(open_list[j].live, live)) continue;
        if (found == open) found = j;
        if ((last != REC_NONE && open_list[j].rec == last) || (partner != NULL && open_list[j].pg == partner)) {
          found = j;
          break;
        }
      }
      if (found == open) {
        /* no partner yet: open it, or in place of one (so that later
         * pages get their chance) when the list is full */
        mesh_open_t *o = open < MESH_OPEN ? &open_list[open++] : &open_list[(p + k) % MESH_OPEN];
        o->pg = pg;
        o->k = (uint32_t)k;
        o->rec = REC_NONE;
        memcpy(o->live, live, sizeof live);
        continue;
      }
      mesh_open_t *o = &open_list[found];
      partner = o->pg;
      if (o->rec == REC_NONE) {
        o->rec = mesh_single(o->pg, o->k);
        if (o->rec == REC_NONE) {
          *o = open_list[--open];
          continue;
        }
      }
      if (mesh_join(o->rec, pg, k, live)) {
        made++;
        late = tsri_os_clock_ns() >= until;
        last = o->rec;
        for (size_t w = 0; w < MESH_MASK_WORDS; w++) o->live[w] |= live[w];
        o->pg = pg;
        o->k = (uint32_t)k;
      }
      if (recs[o->rec].sides >= MESH_WAYS) *o = open_list[--open];
    }
  }
  tsri_os_signals_restore(&mask);
  atomic_fetch_add_explicit(&fig_passes, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&fig_ns, tsri_os_clock_ns() - t0, memory_order_relaxed);
  return made;
}

/* Meshing (mesh.c) over h, parked by the reclaimer or entered by its
 * owner.  Candidates are the cold sparse pages of each class other than
 * the current one: at most half their blocks live, and as many as at the
 * heap's previous pass (all sparse pages when `all`: tsr_collect), so
 * that pages the program keeps allocating from and freeing into are left
 * to do so; and the frozen pages, whose other OS pages may still pair.
 * A page that got a meshed OS page is frozen: FULL, in the full queue.
 * Bounded in time (tsri_mesh_by_t: the owner's own pass delays its
 * allocation, the reclaimer's parks the heap, for that long) and to
 * MESH_CANDIDATES pages a pass.
 * Returns the bytes given back. */

/* The frozen pages of h whose OS pages are meshed no more go back to the
 * avail queue of their class, behind its current page (so cur stays).
 * Each frozen page is checked first: the frees other threads made into
 * it since its freeze may not have come through a slow path of its
 * owner (they saw it AVAIL), and another page's leaving may have left it
 * alone on a file page. */
static void heap_thaw(tsr_heap_t *h) {
  tsr_page_t *pg = h->full.first;
  while (pg != NULL) {
    tsr_page_t *next = pg->next;
    if (atomic_load_explicit(&pg->meshed, memory_order_relaxed) != 0) tsri_mesh_check(pg);
    uintptr_t x = (uintptr_t)h | TSR_PAGE_FULL;
    if (atomic_load_explicit(&pg->used, memory_order_relaxed) < pg->capacity &&
        atomic_load_explicit(&pg->meshed, memory_order_relaxed) == 0 && h->avail[pg->cls].first != NULL &&
        atomic_compare_exchange_strong_explicit(&pg->xowner, &x, (uintptr_t)h | TSR_PAGE_AVAIL,
                                                memory_order_seq_cst, memory_order_seq_cst)) {
      loose_begin(h, pg);
      queue_remove(&h->full, pg);
      queue_push_back(&h->avail[pg->cls], pg);
      loose_end(h);
    }
    pg = next;
  }
}

size_t tsri_heap_mesh(tsr_heap_t *h, tsri_mesh_by_t by, uint64_t until) {
  heap_thaw(h);
  bool all = by == TSRI_MESH_ALL;
  size_t made = 0, n = 0;
  tsri_lock(&mesh_lock);
  /* each pass starts at another class, so that none waits for ever
   * behind classes with more candidates than a pass takes */
  size_t c0 = (size_t)atomic_load_explicit(&fig_passes, memory_order_relaxed) % TSR_CLASS_COUNT;
  for (size_t i = 0; i < TSR_CLASS_COUNT && n < MESH_CANDIDATES; i++) {
    size_t c = (c0 + i) % TSR_CLASS_COUNT;
    tsr_page_t *pg = h->avail[c].first;
    for (pg = pg ? pg->next : NULL; pg != NULL && n < MESH_CANDIDATES; pg = pg->next) {
      uint32_t used = atomic_load_explicit(&pg->used, memory_order_relaxed);
      /* the reclaimer meshes heaps idle since its previous look: their
       * pages are cold already */
      bool cold = all || by == TSRI_MESH_IDLE || used == pg->mesh_seen_used;
      pg->mesh_seen_used = used;
      if (cold && 2 * used <= tsri_page_shape(pg).capacity) cand[n++] = pg;   /* a phase's gap is free space */
    }
  }
  size_t sparse = n;
  if (sparse == 0) goto out;
  for (tsr_page_t *pg = h->full.first; pg != NULL && n < MESH_CANDIDATES; pg = pg->next)
    if (atomic_load_explicit(&pg->meshed, memory_order_relaxed) != 0) cand[n++] = pg;
  /* the file, the records and the fault handler come with the first pass
   * that has two pages to look at */
  if (n < 2) goto out;
  /* a program that forbade itself system calls since it started may be
   * killed by the file's or the handler's (os/posix_restrict.c) */
  if (tsri_os_restricted()) {
    atomic_store_explicit(&mesh_paused, 1, memory_order_relaxed);
    goto out;
  }
  if (!mesh_ready()) goto out;
  bool ours = tsri_os_fault_front();
  atomic_store_explicit(&mesh_paused, !ours, memory_order_relaxed);
  if (!ours) goto out;
  made = mesh_pages(cand, n, until);
  /* the pages meshed freeze; the others go to the back of the queue,
   * so that the next pass looks at pages this one did not reach */
  for (size_t i = 0; i < sparse; i++) {
    tsr_page_t *pg = cand[i];
    if ((atomic_load_explicit(&pg->xowner, memory_order_relaxed) & TSR_PAGE_STATE_MASK) != TSR_PAGE_AVAIL)
      continue;
    queue_remove(&h->avail[pg->cls], pg);
    if (atomic_load_explicit(&pg->meshed, memory_order_relaxed) == 0) {
      queue_push_back(&h->avail[pg->cls], pg);
    } else {
      queue_push_back(&h->full, pg);
      set_owner(pg, h, TSR_PAGE_FULL);
    }
  }
out:
  /* pages left to look at, and this pass found pairs: come back soon */
  h->mesh_more = made > 0 && (n == MESH_CANDIDATES || tsri_os_clock_ns() >= until);
  tsri_unlock(&mesh_lock);
  return made * tsri_os_page_size();
}

void tsri_mesh_figures(tsr_pins_t *out) {
  if (tsri_option(TSRI_OPT_MESH) == 0) out->mesh_state = TSR_MESH_OFF;
  /* where the OS cannot map a page twice, from the start, not after a pass */
  else if (mesh_setup == MESH_FAILED || tsri_os_share_why() != NULL) out->mesh_state = TSR_MESH_UNSUPPORTED;
  else if (atomic_load_explicit(&mesh_paused, memory_order_relaxed) ||
           (mesh_setup == MESH_READY && vmas + 2 > vma_cap))
    out->mesh_state = TSR_MESH_PAUSED;
  else out->mesh_state = TSR_MESH_ON;
  out->meshed_pages = atomic_load_explicit(&fig_meshed, memory_order_relaxed);
  out->mesh_saved = atomic_load_explicit(&fig_saved, memory_order_relaxed) * tsri_os_page_size();
  out->meshes = atomic_load_explicit(&fig_meshes, memory_order_relaxed);
  out->unmeshes = atomic_load_explicit(&fig_unmeshes, memory_order_relaxed);
  out->mesh_passes = atomic_load_explicit(&fig_passes, memory_order_relaxed);
  out->mesh_ns = atomic_load_explicit(&fig_ns, memory_order_relaxed);
  out->mesh_pause_max_ns = tsri_mesh_pause_max();
}

/* ------------------------------------------------------------------------
 * fork
 * ---------------------------------------------------------------------- */

/* Every virtual page mapped from the file, read-only (write false) or writable again. */
static void protect_all(bool write) {
  size_t cursor = 0;
  mesh_entry_t *e;
  while ((e = tsri_table_next(&mesh_table, &cursor)) != NULL) tsri_os_protect((void *)e->va, page_size, write);
}

void tsri_mesh_fork_prepare(void) {
  tsri_lock(&mesh_lock);
  if (mesh_table.count == 0) return;
  if (tsri_os_pipe(fork_pipe) != 0) fork_pipe[0] = fork_pipe[1] = -1;
  /* with the program's own SIGSEGV handler in place (ours could not go
   * back in front) a writer would crash on a read-only page: then the
   * child copies what it finds */
  if (tsri_os_fault_front()) {
    tsri_mesh_fork_fence(true);
    protect_all(false);
  }
}

void tsri_mesh_fork_parent(void) {
  if (mesh_table.count != 0) {
    if (fork_pipe[1] != -1) {
      tsri_os_file_close(fork_pipe[1]);
      tsri_os_pipe_read_byte(fork_pipe[0]);   /* the child is done, or gone */
      tsri_os_file_close(fork_pipe[0]);
      fork_pipe[0] = fork_pipe[1] = -1;
    }
    if (tsri_mesh_fork_fenced()) {
      protect_all(true);
      tsri_mesh_fork_fence(false);
    }
  }
  tsri_unlock(&mesh_lock);
}

void tsri_mesh_fork_child(void) {
  if (mesh_table.count != 0) {
    size_t cursor = 0;
    mesh_entry_t *e;
    while ((e = tsri_table_next(&mesh_table, &cursor)) != NULL) {
      tsri_mesh_unshare(e->va);
      tsr_page_t *pg = page_at(e->va);
      atomic_store_explicit(&pg->filed, 0, memory_order_relaxed);
      atomic_store_explicit(&pg->meshed, 0, memory_order_relaxed);
    }
    tsri_table_clear(&mesh_table);
    atomic_store_explicit(&fig_meshed, 0, memory_order_relaxed);
    atomic_store_explicit(&fig_saved, 0, memory_order_relaxed);
    if (fork_pipe[1] != -1) {
      tsri_os_file_write(fork_pipe[1], "", 1);
      tsri_os_file_close(fork_pipe[1]);
      tsri_os_file_close(fork_pipe[0]);
      fork_pipe[0] = fork_pipe[1] = -1;
    }
    tsri_mesh_fork_fence(false);
  }
  if (mesh_setup == MESH_READY) {
    /* a file of the child's own, meshed or not at fork: with the
     * parent's, both would hand out the same file pages */
    if (!file_anew()) mesh_setup = MESH_FAILED;
  }
  tsri_unlock(&mesh_lock);
}
