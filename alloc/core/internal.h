/* internal.h: the core's declarations, shared between its files and
 * readable by the layers above: the assert macros, the spin lock, the
 * options, and the hot paths (size to class, pointer to page, block
 * index) as static inline functions.  The heap's fast alloc and free are
 * in heap.h, which this header includes last.
 *
 * Layer: alloc/core/ owns the malloc family (api.c, override.c), size
 * classes, pages, heaps, arenas, large blocks, options, errors, start-up
 * and fork, and the counters of what it took from the OS (own.c).  It calls
 * only the OS layer (os/os.h) and, through the hooks of hooks.h and
 * nothing else, tracking.  Tracking (track/) and reports (report/) read
 * what is declared here; the core never calls them by name.
 */
#ifndef TSR_INTERNAL_H
#define TSR_INTERNAL_H

#include "os/os.h"
#include "types.h"
#include "tessera.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

#define tsr_likely(x) __builtin_expect(!!(x), 1)
#define tsr_unlikely(x) __builtin_expect(!!(x), 0)
#define tsr_noinline __attribute__((noinline))

#ifndef TSR_DEBUG
#define TSR_DEBUG 0
#endif

/* ---- asserts: internal invariants, never checks on user input ---------- */

tsri_hidden _Noreturn void tsri_assert_fail(const char *expr, const char *file, int line);
#define tsri_assert_at(level, expr) \
  ((TSR_DEBUG >= (level) && !(expr)) ? tsri_assert_fail(#expr, __FILE__, __LINE__) : (void)0)
#define tsr_assert(expr) tsri_assert_at(1, expr)
#define tsr_assert_internal(expr) tsri_assert_at(2, expr)
#define tsr_assert_expensive(expr) tsri_assert_at(3, expr)

/* ---- errors on user input (error.c) ------------------------------------ */

/* Report a bad call: "tessera: <message>" on stderr, counted under its
 * kind (tsr_stats_t.errors_by_kind, and so errors); then abort, unless
 * TESSERA_ON_ERROR=continue.  Formats: %p %s %zu %d %x only.  Never
 * allocates. */
tsri_hidden void tsri_error(tsr_error_kind_t kind, const char *fmt, ...);
/* tsri_error in parts, for a message of several lines (the debug checks'
 * reports with their call stacks): begin counts the error and prints its
 * first line, each tsri_error_line one more ("tessera:   <line>"), and
 * end aborts unless TESSERA_ON_ERROR=continue.  A guarded-sampling fault
 * calls begin and lines, and ends the process its own way. */
tsri_hidden void tsri_error_begin(tsr_error_kind_t kind, const char *fmt, ...);
tsri_hidden void tsri_error_line(const char *fmt, ...);
tsri_hidden void tsri_error_end(void);
/* The same without counting or aborting: a warning (bad option value). */
tsri_hidden void tsri_warning(const char *fmt, ...);
/* Errors reported, by tsr_error_kind_t (their sum is tsr_stats_t.errors). */
tsri_hidden extern _Atomic uint64_t tsri_error_counts[TSR_ERROR_KINDS];

/* ---- options (options.c) ------------------------------------------------ */

typedef enum tsri_option_e {
  TSRI_OPT_PURGE_DELAY_MS,
  TSRI_OPT_ON_ERROR,
  TSRI_OPT_LARGE_CACHE_MB,
  TSRI_OPT_TRIM_MS,
  TSRI_OPT_RECLAIM_MS,
  TSRI_OPT_MESH,
  TSRI_OPT_MESH_MS,
  TSRI_OPT_TRACK,
  TSRI_OPT_SAMPLE_BYTES,
  TSRI_OPT_REPORT,
  TSRI_OPT_REPORT_FORMAT,
  TSRI_OPT_REPORT_SIGNAL,
  TSRI_OPT_REPORT_INTERVAL_S,
  TSRI_OPT_REPORT_SITES,
  TSRI_OPT_RESERVE_LIMIT,
  TSRI_OPT_DEBUG,
  TSRI_OPT_QUARANTINE_BYTES,
  TSRI_OPT_GUARD_SAMPLE,
  TSRI_OPT_GUARD_SLOTS,
  TSRI_OPT_FAIL,
  TSRI_OPT_COUNT
} tsri_option_t;

enum { TSRI_ON_ERROR_ABORT = 0, TSRI_ON_ERROR_CONTINUE = 1 };
/* The checks of TESSERA_DEBUG, a bit each (track/debug.c). */
enum { TSRI_DEBUG_GUARD = 1, TSRI_DEBUG_FILL = 2, TSRI_DEBUG_QUARANTINE = 4, TSRI_DEBUG_ALL = 7 };

/* The value of an option, read from the environment on first use. */
tsri_hidden int64_t tsri_option(tsri_option_t opt);
/* A text option's value (TESSERA_REPORT), or NULL when unset: tessera's
 * copy, made when the environment was read. */
tsri_hidden const char *tsri_option_string(tsri_option_t opt);
/* The options set in the environment but ignored because the process runs
 * in secure mode (set-user-ID and the like: tsri_os_secure), a bit each
 * (1 << option); the reports say which. */
tsri_hidden uint32_t tsri_options_ignored(void);
/* An option's environment name (TESSERA_...). */
tsri_hidden const char *tsri_option_name(tsri_option_t opt);
/* Read (again) every option; false when the environment is not there yet
 * (the defaults hold until a later call finds it). */
tsri_hidden bool tsri_options_init(void);

/* Thread-local storage, in the block the program's threads start with
 * where the platform has one (no call to find it). */
#if defined(_WIN32)
#define TSRI_TLS __thread
#else
#define TSRI_TLS __thread __attribute__((tls_model("initial-exec")))
#endif

/* ---- debug checks and guarded sampling (api.c) ---------------------------- */

/* The TESSERA_DEBUG checks in force (TSRI_DEBUG_* bits), set by tracking
 * when it reads the options (track/debug.c); 0: none, and the paths that
 * look at it (a free of a tracked block, realloc, a page trim) go on as
 * without it. */
tsri_hidden extern _Atomic uint32_t tsri_debug_checks;
/* The address range of guarded sampling's pool (track/guarded.c), set once
 * when it is reserved; empty until then. */
tsri_hidden extern _Atomic uintptr_t tsri_guard_lo, tsri_guard_len;
static inline bool tsri_guarded(const void *p) {
  return (uintptr_t)p - atomic_load_explicit(&tsri_guard_lo, memory_order_relaxed) <
         atomic_load_explicit(&tsri_guard_len, memory_order_relaxed);
}

/* ---- lock --------------------------------------------------------------- */

/* A lock for slow paths (arena carving, the abandoned list, the large-block
 * table, records): uncontended, one compare-and-swap to take and one
 * exchange to give back.  Contended, it spins a little, then sleeps in
 * the OS (a futex on Linux; Windows yields to any ready thread, os.h), so
 * that a thread of real-time priority does not spin for ever behind a
 * holder it keeps off the CPU.  held: 0 free, 1 held, 2 held and a thread may be asleep on
 * it.  Zero-initialised means free.  A fork child gives back what its
 * fork handlers took with tsri_unlock, as anywhere. */
typedef struct tsri_lock_s {
  _Atomic int held;
} tsri_lock_t;

tsri_hidden void tsri_lock_slow(tsri_lock_t *l);   /* lock.c */
/* One round of a short spin: the CPU told that this is one (x86). */
static inline void tsri_spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
/* Round `round` (from 0) of a wait for a step another thread is in the
 * middle of (a remote free's push, a page's copy under meshing): it
 * yields, then sleeps a millisecond a round (lock.c). */
tsri_hidden void tsri_wait_brief(uint32_t round);

#if defined(_WIN32)
/* No fork to ask. */
static inline void tsri_lock_count(int d) { (void)d; }
static inline bool tsri_locks_held(void) { return false; }
#else
/* How many of tessera's locks the calling thread holds or waits for.
 * Fork's prepare handler reads it (init.c): run by a signal handler that
 * interrupted this thread inside a lock, it must not wait for that lock.
 * Counted up before the lock is tried and down after it is given back,
 * with the compiler kept from moving either across (signal fences cost
 * nothing at run time), so that a handler never sees 0 while the
 * interrupted code holds a lock. */
tsri_hidden extern TSRI_TLS _Atomic int tsri_tl_locks;
static inline void tsri_lock_count(int d) {
  atomic_signal_fence(memory_order_seq_cst);
  atomic_store_explicit(&tsri_tl_locks, atomic_load_explicit(&tsri_tl_locks, memory_order_relaxed) + d,
                        memory_order_relaxed);
  atomic_signal_fence(memory_order_seq_cst);
}
static inline bool tsri_locks_held(void) { return atomic_load_explicit(&tsri_tl_locks, memory_order_relaxed) != 0; }
#endif

static inline void tsri_lock(tsri_lock_t *l) {
  tsri_lock_count(1);
  int free_now = 0;
  if (tsr_likely(atomic_compare_exchange_strong_explicit(&l->held, &free_now, 1, memory_order_acquire,
                                                         memory_order_relaxed)))
    return;
  tsri_lock_slow(l);
}

static inline void tsri_unlock(tsri_lock_t *l) {
  if (tsr_unlikely(atomic_exchange_explicit(&l->held, 0, memory_order_release) == 2)) tsri_os_wake(&l->held);
  tsri_lock_count(-1);
}

/* ---- size classes (sizeclass.c) ----------------------------------------- */

typedef struct tsri_class_s {
  uint32_t block_size;   /* bytes */
  uint16_t span_slots;   /* slots per span */
  uint16_t capacity;     /* blocks per span */
} tsri_class_t;

tsri_hidden extern const tsri_class_t tsri_classes[TSR_CLASS_COUNT];
#define TSR_SMALL_LUT 65  /* (1024 + 15) / 16 + 1 */
tsri_hidden extern const uint8_t tsri_class_small[TSR_SMALL_LUT];

/* Class of a request of 1024 < size <= TSR_SMALL_MAX bytes: 8 classes
 * per power of two. */
static inline size_t tsri_size_class_medium(size_t size) {
  size_t s = size - 1;
  unsigned log2 = 63u - (unsigned)__builtin_clzll((unsigned long long)s);  /* >= 10 */
  size_t step_shift = log2 - 3;
  size_t k = (s >> step_shift) & 7;      /* which eighth of [2^log2, 2^(log2+1)) */
  /* 1152 (the first class above 1024) is class 32; each power of two
   * above adds 8 classes */
  return 32 + (log2 - 10) * 8 + k;
}

/* Class of a request of size <= 1024 bytes, through a table. */
static inline size_t tsri_size_class_small(size_t size) { return tsri_class_small[(size + 15) >> 4]; }

/* Class of a request of size bytes, 1 <= size <= TSR_SMALL_MAX. */
static inline size_t tsri_size_class(size_t size) {
  if (tsr_likely(size <= 1024)) return tsri_size_class_small(size);
  return tsri_size_class_medium(size);
}

/* Fitted pages (heap.c).  A page of a class above 1024 bytes may have
 * blocks smaller than its class's, cut to the size its heap was asked for
 * (any multiple of TSR_MIN_ALIGN above the class below), in a span shaped
 * for that size by the class table's rules. */
#define TSRI_FIT_FIRST 32   /* the first class whose pages may be fitted */

/* The least block size that serves a request of size bytes with alignment
 * align (0 or a power of two) from class cls: 0 where every block of the
 * class does; an alignment above TSR_MIN_ALIGN takes the class's own size,
 * which the class was chosen for, where a fitted size may not be a
 * multiple of it. */
static inline size_t tsri_class_need(size_t size, size_t cls, size_t align) {
  if (cls < TSRI_FIT_FIRST) return 0;
  return align > TSR_MIN_ALIGN ? tsri_classes[cls].block_size : size;
}

typedef struct tsri_shape_s {
  size_t slots;      /* slots of the span */
  size_t capacity;   /* blocks it holds at phase 0 */
} tsri_shape_t;

/* The span for blocks of block_size bytes (a multiple of TSR_MIN_ALIGN, at
 * most TSR_SMALL_MAX) by the rules of the class table (sizeclass.c), which
 * give a class's own size its row. */
tsri_hidden tsri_shape_t tsri_span_shape(size_t block_size);
/* The span of class cls for blocks of block_size bytes: the class's row
 * for its own size, without applying the rules again. */
static inline tsri_shape_t tsri_shape_of(size_t cls, size_t block_size) {
  const tsri_class_t *c = &tsri_classes[cls];
  return block_size == c->block_size ? (tsri_shape_t){ c->span_slots, c->capacity } : tsri_span_shape(block_size);
}
/* Does a fitted page of block_size bytes (less than class cls's) hold
 * its blocks in no more bytes of span each than the class's own pages? */
tsri_hidden bool tsri_fit_pays(size_t block_size, size_t cls);
/* A request of class cls (TSRI_FIT_FIRST or above) that needs need bytes
 * (tsri_class_need, not 0), to *fit, a heap's fitting of the class
 * (tsr_heap_t.fit): the request's size on the class's first page where
 * tsri_fit_pays, the fitted size while requests fit it, the class's from
 * the first that does not on. */
static inline void tsri_fit_note(uint32_t *fit, size_t cls, size_t need) {
  size_t full = tsri_classes[cls].block_size;
  size_t want = (need + TSR_MIN_ALIGN - 1) & ~(size_t)(TSR_MIN_ALIGN - 1), f = *fit;
  if (f == 0) *fit = (uint32_t)(tsri_fit_pays(want, cls) ? want : full);
  else if (want > f) *fit = (uint32_t)full;
}

/* ---- arenas and pointer lookup (arena.c) ------------------------------- */

tsri_hidden extern _Atomic(uint64_t) tsri_arena_registry[];

static inline bool tsri_arena_registered(uintptr_t arena) {
  uintptr_t idx = arena >> TSR_ARENA_SHIFT;
#if TSR_VA_BITS < 64 && UINTPTR_MAX > 0xFFFFFFFFu
  if (tsr_unlikely(idx >> (TSR_VA_BITS - TSR_ARENA_SHIFT))) return false;
#endif
  uint64_t w = atomic_load_explicit(&tsri_arena_registry[idx >> 6], memory_order_relaxed);
  return (w >> (idx & 63)) & 1;
}

/* The page (span head) holding p, or NULL when p is not inside a span of
 * one of our arenas.  Reads only our own records. */
static inline tsr_page_t *tsri_page_of(const void *p) {
  uintptr_t a = (uintptr_t)p & ~(uintptr_t)TSR_ARENA_MASK;
  if (tsr_unlikely(!tsri_arena_registered(a))) return NULL;
  tsr_arena_t *arena = (tsr_arena_t *)a;
  tsr_page_t *pg = &arena->pages[((uintptr_t)p & TSR_ARENA_MASK) >> TSR_SLOT_SHIFT];
  if (tsr_likely(pg->kind == TSR_SLOT_HEAD)) return pg;
  if (pg->kind == TSR_SLOT_TAIL) return &arena->pages[pg->head_slot];
  return NULL;
}

/* Index of the block that p, the start of a block of pg, is.  Exact:
 * offsets are below 2^20 and block sizes below 2^18, so the error of the
 * 40-bit reciprocal stays under 1/block_size. */
static inline size_t tsri_block_index_of(const tsr_page_t *pg, const void *p) {
  return (size_t)((((uint64_t)((const uint8_t *)p - pg->start)) * pg->magic) >> TSR_MAGIC_SHIFT);
}

/* Index of the block starting at p in pg, or -1 when p is not the start of
 * a block (interior pointer or past the last block). */
static inline long tsri_block_index(const tsr_page_t *pg, const void *p) {
  size_t idx = tsri_block_index_of(pg, p);
  if (tsr_unlikely((uint64_t)idx * pg->block_size != (uint64_t)((const uint8_t *)p - pg->start) ||
                   idx >= pg->capacity))
    return -1;
  return (long)idx;
}

/* A span for class cls, with blocks of block_size bytes (the class's, or
 * a fitted size: heap.c), or NULL; *loose names it from under the arena
 * lock on (heap.c: a fork child finds it there). */
tsri_hidden tsr_page_t *tsri_arena_span_alloc(size_t cls, size_t block_size, _Atomic(tsr_page_t *) *loose);
tsri_hidden void tsri_arena_span_free(tsr_page_t *pg);
/* Decommit free slots that stayed free longer than the purge delay (or all
 * of them when force); returns the number of slots decommitted. */
tsri_hidden size_t tsri_arena_purge(bool force);
/* Bytes of free slots still committed, waiting for their purge delay:
 * what a purge that did not wait would give back. */
tsri_hidden uint64_t tsri_arena_dirty_bytes(void);
tsri_hidden tsr_arena_t *tsri_arena_first(void);
tsri_hidden tsri_lock_t *tsri_arena_lock_get(void);
tsri_hidden size_t tsri_arena_check(tsr_arena_t *arena);
/* Fork child: give back the slots vanished threads left in transit. */
tsri_hidden void tsri_arena_fork_child(void);

/* ---- pages (page.c) ------------------------------------------------------ */

tsri_hidden void tsri_page_init(tsr_page_t *pg, size_t cls);
/* The shape of pg's span (its block size is set when the span is carved). */
static inline tsri_shape_t tsri_page_shape(const tsr_page_t *pg) { return tsri_shape_of(pg->cls, pg->block_size); }
/* The blocks of pg, to a reader other than its owner (under the arena
 * lock, so that the span stays a span): its own capacity (one less than
 * its shape's at phase 1) once its owner has published it with xowner,
 * its shape's while the owner is still setting it up. */
static inline uint32_t tsri_page_capacity_seen(const tsr_page_t *pg) {
  uintptr_t x = atomic_load_explicit(&pg->xowner, memory_order_acquire);
  return (x & ~TSR_PAGE_STATE_MASK) != 0 || (x & TSR_PAGE_STATE_MASK) == TSR_PAGE_ABANDONED
             ? pg->capacity
             : (uint32_t)tsri_page_shape(pg).capacity;
}
/* The address of pg's span: its first slot's, whatever pg's phase. */
static inline uintptr_t tsri_page_base(const tsr_page_t *pg) {
  return (uintptr_t)pg->start & ~(uintptr_t)(TSR_SLOT_SIZE - 1);
}
/* Merge remote frees into local; returns how many blocks came back. */
tsri_hidden uint32_t tsri_page_collect(tsr_page_t *pg);
/* The same for bitmap word w alone. */
tsri_hidden uint32_t tsri_page_collect_word(tsr_page_t *pg, size_t w);
/* Bitmap words of pg. */
static inline size_t tsri_page_words(const tsr_page_t *pg) { return ((size_t)pg->capacity + 63) / 64; }
/* Bitmap words a span of shape s has (arena.c sizes its bitmaps so):
 * those of its pages at phase 0; a page at phase 1 leaves its last bit
 * unused. */
static inline size_t tsri_shape_words(tsri_shape_t s) { return (s.capacity + 63) / 64; }
/* Point pg->scan at the first bitmap word from `from` on with a free block
 * in the local bitmap; false when there is none.  Owner only; inline, as
 * the allocation path's step to the next word uses it. */
static inline bool tsri_page_find(tsr_page_t *pg, size_t from) {
  for (size_t w = from, n = tsri_page_words(pg); w < n; w++) {
    if (atomic_load_explicit(tsri_local(pg, w), memory_order_relaxed) != 0) {
      pg->scan = (uint32_t)w;
      return true;
    }
  }
  return false;
}
/* Point pg->scan at a bitmap word with a free block, merging remote frees
 * if needed; false when the page has no free block at all. */
tsri_hidden bool tsri_page_refill(tsr_page_t *pg);
tsri_hidden size_t tsri_page_check(const tsr_page_t *pg);
/* Give back the OS pages that lie wholly inside runs of free blocks of pg,
 * when `used` fell by at least an eighth of the capacity since the last
 * trim (always when force).  Caller: the owner, for a page it does not
 * allocate from right now.  Returns the bytes given back. */
tsri_hidden size_t tsri_page_trim(tsr_page_t *pg, bool force);
/* tsri_page_trim for the reclaimer (reclaim.c, through heap.c: tsri_heap_park_idle), for a
 * page of a parked heap that is not its current one: the blocks other
 * threads freed count as free too, and the page is trimmed whenever more
 * of its blocks are free than at its last trim.  Returns the bytes given
 * back. */
tsri_hidden size_t tsri_page_trim_idle(tsr_page_t *pg);
/* Set used from the local bitmap (capacity minus free bits). */
tsri_hidden void tsri_page_recount(tsr_page_t *pg);
/* Which bytes of [at, at + len) hold live blocks, a bit per TSR_MIN_ALIGN
 * bytes in out (len / TSR_MIN_ALIGN bits): blocks of block_size bytes from
 * start on, capacity of them, block i live when bit i of live is set (the
 * words of live that cover the range are read).  False when none is.  For
 * meshing, which compares the live bytes of OS pages of spans of
 * different phases (mesh.c, and report/pins.c's estimate). */
tsri_hidden bool tsri_page_granules(uintptr_t start, size_t block_size, size_t capacity, const uint64_t *live,
                                    uintptr_t at, size_t len, uint64_t *out);
tsri_hidden bool tsri_page_has_remote(const tsr_page_t *pg);

/* ---- address-keyed tables (table.c) -------------------------------------- */

/* Entries of entry_size bytes that begin with their key, a block address
 * (0: empty).  The owner locks around every call. */
typedef struct tsri_table_s {
  uint8_t *slots;
  size_t entry_size;
  size_t first_capacity;   /* slots of the first allocation, a power of two */
  size_t capacity, count;
} tsri_table_t;
#define TSRI_TABLE_INIT(type, first) { NULL, sizeof(type), (first), 0, 0 }

/* The entry of key, or NULL. */
tsri_hidden void *tsri_table_find(const tsri_table_t *t, uintptr_t key);
/* A new entry for key (not present), its key set and the rest as it was
 * left; NULL when the table cannot grow. */
tsri_hidden void *tsri_table_insert(tsri_table_t *t, uintptr_t key);
/* Remove an entry returned by find or insert; other entries may move. */
tsri_hidden void tsri_table_remove(tsri_table_t *t, void *entry);
/* Remove every entry, keeping the storage. */
tsri_hidden void tsri_table_clear(tsri_table_t *t);
/* Every entry, one per call from *cursor (start at 0); NULL at the end. */
tsri_hidden void *tsri_table_next(const tsri_table_t *t, size_t *cursor);

/* ---- large blocks (large.c) --------------------------------------------- */

tsri_hidden void *tsri_large_alloc(size_t size, size_t align, bool zero);
/* Free p if it is a large block; false when p is not one. */
tsri_hidden bool tsri_large_free(void *p);
/* Usable size of large block p; 0 when p is not one. */
tsri_hidden size_t tsri_large_usable(const void *p);
/* Resize large block p in place or by remapping; NULL when it cannot. */
tsri_hidden void *tsri_large_realloc(void *p, size_t size);
/* Describe what p is relative to the large blocks, for error messages. */
tsri_hidden bool tsri_large_contains(const void *p);
tsri_hidden void tsri_large_purge(bool force);
/* A copy of every live large block's record, in memory from the OS (free
 * it with tsri_large_snapshot_free).  0, or ENOMEM. */
tsri_hidden int tsri_large_snapshot(tsr_large_t **list, size_t *count, size_t *bytes);
tsri_hidden void tsri_large_snapshot_free(tsr_large_t *list, size_t bytes);
tsri_hidden void tsri_large_stats(uint64_t *live_bytes, uint64_t *live_blocks,
                                  uint64_t *mapped);
/* Bytes of freed large blocks kept committed for reuse (the cache and
 * segments' dirty runs): what tsr_collect gives back of them. */
tsri_hidden uint64_t tsri_large_idle_bytes(void);
/* Large blocks with a record (tracking counts them); nonzero: large frees
 * must call tsri_hook_free_large. */
tsri_hidden extern _Atomic size_t tsri_large_tracked;
tsri_hidden void tsri_large_fork_prepare(void);
tsri_hidden void tsri_large_fork_parent(void);
tsri_hidden void tsri_large_fork_child(void);

/* ---- large segments (segment.c), all under large.c's lock ---------------- */

/* Blocks up to this size are carved from segments; bigger ones are
 * mappings of their own (large.c). */
#define TSRI_LARGE_CARVE_MAX ((size_t)4 << 20)
/* A run of bytes (a multiple of the OS page) for a block: its address,
 * *seg its segment, *dirty whether some of its pages may not be zero (a
 * freed run not yet given back); a new segment is reserved when none has
 * room.  0 when the OS refuses. */
tsri_hidden uintptr_t tsri_seg_carve(size_t bytes, tsri_seg_t **seg, bool *dirty);
/* The segment holding p, or NULL. */
tsri_hidden tsri_seg_t *tsri_seg_of(uintptr_t p);
/* Free run [addr, addr + bytes) of s: kept committed until the purge
 * (keep), or given back to the OS now. */
tsri_hidden void tsri_seg_free(tsri_seg_t *s, uintptr_t addr, size_t bytes, bool keep);
/* Shrink or grow the run at addr in place; false when the pages after it
 * are taken (or the OS will not commit them). */
tsri_hidden bool tsri_seg_resize(tsri_seg_t *s, uintptr_t addr, size_t old_bytes, size_t new_bytes);
/* Give the dirty runs back: of segments whose oldest waited delay ms, or
 * all (force); and release the segments that stayed empty as long (but
 * for the last one, unless force). */
tsri_hidden void tsri_seg_purge(bool force, int64_t delay);
/* Bytes of freed runs still committed. */
tsri_hidden uint64_t tsri_seg_dirty_bytes(void);

/* ---- the background reclaimer (reclaim.c) --------------------------------- */

/* Called every 16th allocation slow path: once the process is old or big
 * enough, ask for the reclaimer (tsri_reclaim_due). */
tsri_hidden void tsri_reclaim_note(void);
/* What every 16th allocation slow path of h does for memory to go back
 * while the program runs: the purges, h's trim pass when TESSERA_TRIM_MS
 * ran out, meshing when due.  Owner, parked. */
tsri_hidden void tsri_reclaim_on_slow_path(tsr_heap_t *h);
/* Set when the reclaimer should be started: the next allocation slow path
 * starts it, outside every lock (starting a thread allocates). */
tsri_hidden extern _Atomic int tsri_reclaim_due;
tsri_hidden void tsri_reclaim_start(void);
/* Held for each pass of the reclaimer; tsr_collect holds it too, so that
 * what it purges is not half way through another thread's decommit when
 * it returns.  Taken before every heap, arena and large-block lock. */
tsri_hidden tsri_lock_t *tsri_reclaim_lock_get(void);
tsri_hidden void tsri_reclaim_fork_prepare(void);
tsri_hidden void tsri_reclaim_fork_parent(void);
tsri_hidden void tsri_reclaim_fork_child(bool locked);

/* ---- meshing (mesh.c) ----------------------------------------------------- */

/* Whether meshing may run at all (TESSERA_MESH on, no TESSERA_DEBUG=fill). */
tsri_hidden bool tsri_mesh_allowed(void);
/* Whether a meshing pass over a heap is due now (meshing allowed,
 * TESSERA_MESH_MS since the heap's last pass). */
tsri_hidden bool tsri_mesh_due(tsr_heap_t *h);
/* A meshing pass over h (heap.c, mesh.c): meshes the OS pages of its
 * sparse pages that are not current, freezes the pages meshed and thaws
 * those meshed no more, until the clock reads `until` (ns).  Who asks
 * decides how long it may take: its owner in an allocation slow path
 * (TSRI_MESH_OWNER_NS), the reclaimer with h parked (TSRI_MESH_IDLE_NS at
 * most, from a budget for all heaps), or tsr_collect (UINT64_MAX: as long
 * as it takes, every sparse page, cold or not); and which pages count as
 * cold: to the owner, those whose live count did not change since its
 * last pass; to the reclaimer, all of an idle heap's.  Returns the bytes
 * given back. */
typedef enum tsri_mesh_by_e { TSRI_MESH_OWNER, TSRI_MESH_IDLE, TSRI_MESH_ALL } tsri_mesh_by_t;
#define TSRI_MESH_OWNER_NS ((uint64_t)4000000)
/* The largest OS page meshing works with (mesh.c; report/pins.c's estimate). */
#define TSRI_MESH_PAGE_MAX 16384
#define TSRI_MESH_IDLE_NS ((uint64_t)10000000)
tsri_hidden size_t tsri_heap_mesh(tsr_heap_t *h, tsri_mesh_by_t by, uint64_t until);
/* Take pg's OS pages out of the shared file where pg has no live block
 * left (its owner, or whoever holds its page as the owner would).
 * Returns pg->meshed after: 0 when the page may be allocated from. */
tsri_hidden uint32_t tsri_mesh_check(tsr_page_t *pg);
tsri_hidden void tsri_mesh_figures(tsr_pins_t *out);
tsri_hidden void tsri_mesh_fork_prepare(void);
tsri_hidden void tsri_mesh_fork_parent(void);
tsri_hidden void tsri_mesh_fork_child(void);

/* ---- meshing's write barrier (mesh_fence.c) ------------------------------ */

/* The fault function meshing installs (tsri_os_fault_catch): true when the
 * fault was a write to a fenced page, which may now run again. */
tsri_hidden bool tsri_mesh_fault(void *addr);
/* Fence the virtual page at va while it is copied; end the fence, begun
 * at since_ns (the longest fence is a figure: tsri_mesh_pause_max). */
tsri_hidden void tsri_mesh_fence_begin(uintptr_t va);
tsri_hidden void tsri_mesh_fence_end(uint64_t since_ns);
tsri_hidden uint64_t tsri_mesh_pause_max(void);
/* fork's fence over every page mapped from the file: up in the prepare
 * handler (with the forking thread noted), down once the child has its
 * own memory. */
tsri_hidden void tsri_mesh_fork_fence(bool up);
tsri_hidden bool tsri_mesh_fork_fenced(void);
/* The page at va, read-only and mapped from the file, gets private memory
 * with the same contents (a fork child's, single-threaded). */
tsri_hidden void tsri_mesh_unshare(uintptr_t va);
/* The page at va, made read-only by a meshing step that then failed,
 * takes writes again: through mprotect, or else through private memory
 * with its contents; when the OS refuses both, the process stops here,
 * saying why, rather than at the program's next write.  Lock held. */
tsri_hidden void tsri_mesh_writable_again(uintptr_t va);
/* A count that moves with every fence put up or taken down; and, given a
 * count read before a system call that failed with EFAULT, whether a
 * fence moved since (after waiting for the one up now, if any): then the
 * call may have failed on a fenced page and may run again.  False without
 * waiting in a fork handler that runs while fork's fence is up.  errno
 * kept. */
tsri_hidden uint64_t tsri_mesh_fences(void);
tsri_hidden bool tsri_mesh_fenced_since(uint64_t seen);
/* The same look without waiting: a fence moved since, or is up now. */
tsri_hidden bool tsri_mesh_fence_moved(uint64_t seen);
/* Set (for good) when a span is set up with meshing on, before any of
 * its blocks is handed out: no block meshing may fence exists before. */
tsri_hidden extern _Atomic int tsri_mesh_armed;
static inline bool tsri_mesh_is_armed(void) { return atomic_load_explicit(&tsri_mesh_armed, memory_order_relaxed) != 0; }
/* Whether the n bytes at address p are memory meshing may fence: meshing
 * armed, and the range inside one span in use of tessera's arenas (so
 * also memory that takes writes). */
tsri_hidden bool tsri_mesh_fenceable(uintptr_t p, size_t n);

/* ---- what tessera took from the OS (own.c) ------------------------------- */

#define TSRI_OS_COUNTERS(X) X(os_commits) X(os_decommits) X(os_reserves) X(os_releases) X(os_resets)
typedef struct tsri_os_counters_s {
#define TSRI_DECLARE(name) _Atomic uint64_t name;
  TSRI_OS_COUNTERS(TSRI_DECLARE)
#undef TSRI_DECLARE
  _Atomic uint64_t reserved;   /* bytes */
  _Atomic uint64_t committed;  /* bytes */
  _Atomic uint64_t metadata;   /* bytes */
  _Atomic uint64_t arenas;
  _Atomic uint64_t purges;     /* free slots decommitted */
} tsri_os_counters_t;
tsri_hidden extern tsri_os_counters_t tsri_counters;

static inline void tsri_count(_Atomic uint64_t *c, int64_t delta) {
  atomic_fetch_add_explicit(c, (uint64_t)delta, memory_order_relaxed);
}

/* tessera's reservations other than arenas, their record areas and large
 * blocks of their own (large segments, the stack table, heap chunks, hash
 * tables), so that the address-space report counts them as tessera's, of
 * what kind. */
enum { TSRI_OWN_META = 0, TSRI_OWN_LARGE = 1 };   /* records and tables; large segments */
tsri_hidden void tsri_own_add(const void *base, size_t size, unsigned kind);
tsri_hidden void tsri_own_remove(const void *base);
/* Every reservation of tsri_own_add, one per call from *cursor (start at
 * 0); false at the end.  Lock-free: entries may come and go meanwhile. */
tsri_hidden bool tsri_own_next(size_t *cursor, uintptr_t *base, size_t *size, unsigned *kind);
#define TSRI_OWN_SLOTS 256

/* Refusals: requests answered NULL because the OS (or
 * TESSERA_RESERVE_LIMIT) refused the reservation they needed, after the
 * retries (a smaller arena or segment, the large cache given back).
 * tsri_refused records one and calls the function a higher layer left
 * with tsri_on_refusal (the report at failure), once at a time; the
 * caller holds no lock of tessera's and no heap of its own parked. */
enum { TSRI_REFUSED_SMALL = 1, TSRI_REFUSED_LARGE = 2 };   /* a new arena; a large block */
typedef struct tsri_refusal_s {
  uint64_t count;       /* refusals so far */
  uint64_t size;        /* the last: bytes asked for */
  uint32_t what;        /* TSRI_REFUSED_*; 0: none yet */
  uint64_t at_ms;       /* its clock (tsri_os_clock_ms) */
} tsri_refusal_t;
tsri_hidden void tsri_refused(size_t size, unsigned what);
tsri_hidden void tsri_refusal_get(tsri_refusal_t *out);
tsri_hidden void tsri_on_refusal(void (*fn)(void));

/* ---- init (init.c) --------------------------------------------------------- */

tsri_hidden extern _Atomic int tsri_ready;
tsri_hidden extern uint64_t tsri_start_ms;   /* clock (tsri_os_clock_ms) when tessera started */
tsri_hidden void tsri_init_slow(void);
static inline void tsri_init(void) {
  if (tsr_unlikely(atomic_load_explicit(&tsri_ready, memory_order_acquire) == 0)) tsri_init_slow();
}

/* Run fn once in a fork child, at its first allocation slow path rather
 * than in the fork handler, where starting a thread is not safe (the
 * report layer restarts its trigger thread so).  One function: a later
 * call replaces it. */
tsri_hidden void tsri_on_fork_child(void (*fn)(void));
tsri_hidden extern _Atomic int tsri_fork_child_pending;
tsri_hidden void tsri_fork_child_run(void);

static inline size_t tsri_align_up(size_t n, size_t a) { return (n + a - 1) & ~(a - 1); }

#include "heap.h"

#endif /* TSR_INTERNAL_H */
