/* tessera.h: the public API of the tessera memory manager.
 *
 * Two faces share one implementation: the prefixed functions below, usable
 * on every platform and next to another heap in the same process, and (in
 * the override build, libtessera.so) the standard C names malloc, free, ...
 * which forward to them.  See docs/api.md.
 */
#ifndef TESSERA_H
#define TESSERA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#  if defined(TSR_BUILD_SHARED)
#    define TSR_API __declspec(dllexport)
#  elif defined(TSR_USE_SHARED)
#    define TSR_API __declspec(dllimport)
#  else
#    define TSR_API
#  endif
#  define TSR_MALLOC_ATTR
#  define TSR_ALLOC_SIZE(...)
#else
#  define TSR_API __attribute__((visibility("default")))
#  define TSR_MALLOC_ATTR __attribute__((malloc, warn_unused_result))
#  define TSR_ALLOC_SIZE(...) __attribute__((alloc_size(__VA_ARGS__)))
#endif

#define TSR_VERSION_MAJOR 0
#define TSR_VERSION_MINOR 1
#define TSR_VERSION_PATCH 0

/* ------------------------------------------------------------------------
 * The malloc family.  Semantics are those of C11 and POSIX, as glibc gives
 * them: NULL with errno = ENOMEM when memory runs out or a size overflows;
 * realloc(p, 0) frees p and returns NULL; realloc(NULL, n) is malloc(n).
 * Every block is aligned to at least 16 bytes.
 * ---------------------------------------------------------------------- */

TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(1) void *tsr_malloc(size_t size);
TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(1, 2) void *tsr_calloc(size_t count, size_t size);
TSR_API TSR_ALLOC_SIZE(2) void *tsr_realloc(void *ptr, size_t size);
TSR_API TSR_ALLOC_SIZE(2, 3) void *tsr_reallocarray(void *ptr, size_t count, size_t size);
TSR_API void tsr_free(void *ptr);

/* Aligned allocation.  alignment must be a power of two (posix_memalign:
 * also a multiple of sizeof(void *)); otherwise EINVAL.  Out of memory,
 * each sets errno to ENOMEM, posix_memalign too (its result says ENOMEM). */
TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(2) void *tsr_aligned_alloc(size_t alignment, size_t size);
TSR_API int tsr_posix_memalign(void **out, size_t alignment, size_t size);
TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(2) void *tsr_memalign(size_t alignment, size_t size);
TSR_API TSR_MALLOC_ATTR TSR_ALLOC_SIZE(1) void *tsr_valloc(size_t size);
TSR_API TSR_MALLOC_ATTR void *tsr_pvalloc(size_t size);

/* The bytes the block really has (>= the size asked for); 0 for NULL.
 * A pointer tessera did not hand out is reported like a bad free. */
TSR_API size_t tsr_usable_size(const void *ptr);

/* ------------------------------------------------------------------------
 * Ownership and maintenance
 * ---------------------------------------------------------------------- */

/* 1 if ptr is the start of a live block handed out by tessera, else 0.
 * Never touches the memory ptr points to, never reports an error. */
TSR_API int tsr_owns(const void *ptr);

/* For programs that can move their own objects (as Redis's active defrag
 * does): 1 if moving the live block ptr (a new allocation of its size by
 * the calling thread, a copy, a free of ptr) would take it out of a page
 * into one at least as full, so that its page may empty and go back to
 * the OS; 0 if not (a large block, ptr's page is the one a new block
 * would come from, is fuller, or has less than an eighth free; a fuller
 * page of the calling thread's with room then becomes the one its next
 * blocks of that size come from, so that the moves converge).  A pointer
 * that is not a live block is reported like a bad free and gets 0. */
TSR_API int tsr_defrag_hint(const void *ptr);

/* Return free memory to the OS now: collect blocks freed by other threads
 * into the calling thread's pages, and decommit every free page and every
 * cached large block without waiting for TESSERA_PURGE_DELAY_MS. */
TSR_API void tsr_collect(void);

/* Walk every arena, the calling thread's pages, the pages of exited
 * threads and every block record (other live threads' pages are checked
 * by their own calls); on an inconsistency print what is wrong and return
 * the number of problems found (0: heap is sound). */
TSR_API size_t tsr_check(void);

/* ------------------------------------------------------------------------
 * Tracking: what tessera records about each block (docs/report.md)
 * ---------------------------------------------------------------------- */

typedef enum tsr_track_e {
  TSR_TRACK_STATS = 0,    /* counters only, no per-block records */
  TSR_TRACK_SAMPLE = 1,   /* a record for about one block per TESSERA_SAMPLE_BYTES
                             allocated; site figures are estimates (default) */
  TSR_TRACK_FULL = 2,     /* a record for every block */
} tsr_track_t;

/* Change the level for allocations made from now on; blocks allocated
 * before keep (or lack) their records.  0, or EINVAL for a bad level. */
TSR_API int tsr_track_set(tsr_track_t level);
TSR_API tsr_track_t tsr_track_get(void);

/* ------------------------------------------------------------------------
 * Totals
 * ---------------------------------------------------------------------- */

#define TSR_STATS_VERSION 4

/* The kinds of error tessera reports (docs/debugging.md), each counted in
 * tsr_stats_t.errors_by_kind.  Their number is part of version 3 of
 * tsr_stats_t: a kind added later comes with a new version. */
typedef enum tsr_error_kind_e {
  TSR_ERROR_BAD_FREE = 0,       /* a pointer that is no block: foreign, interior, wild,
                                   or one whose memory went back to the OS */
  TSR_ERROR_DOUBLE_FREE = 1,    /* a block freed again */
  TSR_ERROR_OVERFLOW = 2,       /* written past its end (guard bytes, a guard page) */
  TSR_ERROR_UNDERFLOW = 3,      /* written before its start (a guarded block) */
  TSR_ERROR_WRITE_AFTER_FREE = 4, /* the freed pattern of a freed block damaged */
  TSR_ERROR_USE_AFTER_FREE = 5, /* a freed block used: a guarded block's fault, or
                                   realloc or malloc_usable_size of it */
  TSR_ERROR_OTHER = 6,          /* anything else (a wild access to a guard page) */
} tsr_error_kind_t;

#define TSR_ERROR_KINDS 7

typedef struct tsr_stats_s {
  size_t size;              /* set by the caller: sizeof(tsr_stats_t) */
  uint32_t version;         /* set by tessera: TSR_STATS_VERSION */
  uint64_t allocated;       /* bytes in live blocks, usable size */
  uint64_t committed;       /* bytes committed from the OS (arenas, large) */
  uint64_t reserved;        /* bytes of address space reserved */
  uint64_t metadata;        /* bytes committed for tessera's own records */
  uint64_t large_live;      /* live blocks above the largest size class */
  uint64_t arenas;          /* arenas reserved */
  uint64_t os_commits;      /* commit calls made to the OS */
  uint64_t os_decommits;    /* decommit calls made to the OS */
  uint64_t os_reserves;     /* reserve calls made to the OS */
  uint64_t os_releases;     /* release calls made to the OS */
  uint64_t os_resets;       /* calls giving back free OS pages inside used pages */
  uint64_t errors;          /* errors reported, of every kind (bad free, double free, ...) */
  /* ---- version 2 ---- */
  uint32_t track;           /* tsr_track_t in force */
  uint32_t requested_exact; /* 1: `requested` is exact (every live block has a
                               record); 0: an estimate scaled up from samples */
  uint64_t requested;       /* bytes asked for in live blocks */
  uint64_t live_blocks;     /* live blocks, small and large */
  uint64_t tracked_blocks;  /* live blocks that have a record */
  uint64_t allocations;     /* blocks handed out since start */
  uint64_t frees;           /* blocks given back since start */
  uint64_t purges;          /* free slots decommitted after their delay or by tsr_collect */
  double internal_fragmentation;  /* allocated / requested, >= 1 */
  double external_fragmentation;  /* committed / allocated, >= 1 once warm */
  double metadata_overhead;       /* metadata / allocated */
  double efficiency;              /* requested / committed, in (0, 1] */
  /* ---- version 3 ---- */
  uint64_t errors_by_kind[TSR_ERROR_KINDS];  /* errors by tsr_error_kind_t; they sum to `errors` */
  /* ---- version 4 ---- */
  uint64_t records_lost;    /* blocks left without the record tracking (or the debug
                               checks) meant to give them: no memory for it */
  uint64_t stacks_lost;     /* call stacks not stored (no memory for the stack
                               table, or it is full): their blocks name site 0 */
} tsr_stats_t;

/* Fill *stats (stats->size must be set; a caller built against version 1,
 * 2 or 3 passes the smaller struct and gets its fields).  Returns 0, or
 * EINVAL when the struct is smaller than the first version of it. */
TSR_API int tsr_stats_get(tsr_stats_t *stats);

/* ------------------------------------------------------------------------
 * Size classes
 * ---------------------------------------------------------------------- */

#define TSR_OCCUPANCY_BUCKETS 10

typedef struct tsr_class_stats_s {
  uint32_t index;           /* class number; the last row is the large blocks */
  uint32_t block_size;      /* bytes; 0 for the large row.  A fitted page's
                               blocks are smaller (docs/design.md) */
  uint64_t pages;           /* pages (spans) of the class; large: live blocks */
  uint64_t committed;       /* bytes of those pages (large: mapped bytes) */
  uint64_t blocks_live;
  uint64_t blocks_total;    /* capacity of its pages */
  uint64_t bytes_live;      /* usable bytes of the live blocks (blocks_live *
                               block_size but on fitted pages) */
  uint64_t bytes_requested; /* asked for in them (an estimate unless track full) */
  double utilisation;       /* blocks_live / blocks_total (large: 1) */
  /* pages whose live/capacity lies in [i/10, (i+1)/10); bucket 9 includes
   * full pages */
  uint64_t occupancy[TSR_OCCUPANCY_BUCKETS];
} tsr_class_stats_t;

/* Rows (one per size class, then one for the large blocks) in class order.
 * Fills at most max rows of out and returns the number of rows there are
 * (0 when fewer than all are asked for and the memory to make them all
 * cannot be had). */
TSR_API size_t tsr_class_stats(tsr_class_stats_t *out, size_t max);

/* ------------------------------------------------------------------------
 * Blocks and sites
 * ---------------------------------------------------------------------- */

typedef struct tsr_block_s {
  void *ptr;
  size_t usable;            /* bytes the block has */
  size_t requested;         /* bytes asked for; 0 when the block has no record */
  int tracked;              /* 1: the fields below are filled */
  uint32_t thread;          /* OS thread id of the allocating thread */
  uint64_t seq;             /* allocation number: unique, rising within a thread
                               (threads take them in blocks of 256) */
  uint64_t time_ms;         /* milliseconds after tessera started, to the OS
                               clock's tick; older blocks to within 1/32 of
                               their age (docs/report.md) */
  uint32_t site;            /* call stack id (0: none captured) */
  uint32_t depth;           /* frames in `frames`, innermost first */
  void *const *frames;      /* return addresses; stays valid */
  double weight;            /* blocks this record stands for (1, or 1/p for a sample) */
} tsr_block_t;

/* Called once per live block; a nonzero return stops the walk. */
typedef int tsr_walk_fn(const tsr_block_t *block, void *arg);

/* Visit every live block of every thread.  Other threads may allocate and
 * free meanwhile: a block live for the whole walk is visited exactly once.
 * The visitor may call malloc and free.  Returns 0, or the visitor's stop
 * value. */
TSR_API int tsr_walk(tsr_walk_fn *visit, void *arg);

typedef struct tsr_site_s {
  uint32_t id;              /* call stack id */
  uint32_t depth;
  void *const *frames;      /* innermost first; raw return addresses */
  uint64_t blocks;          /* live blocks allocated from here */
  uint64_t bytes;           /* their usable bytes */
  uint64_t requested;       /* bytes asked for */
  int estimated;            /* 1: scaled up from samples */
} tsr_site_t;

/* Live blocks grouped by allocation call stack, most bytes first.  Fills
 * at most max entries and returns the number of sites. */
TSR_API size_t tsr_sites(tsr_site_t *out, size_t max);

/* Who pins the pages.  A page of small blocks goes back to the OS only
 * when its last block is freed: the sparse pages (at most half their
 * blocks live) hold memory that no live block uses.  Each live block of
 * such a page holds an equal share of its bytes; a site's share is what
 * its blocks hold.  Under TESSERA_TRACK=sample the sites' figures are
 * estimates scaled from the sampled blocks, and site 0 is the rest (blocks
 * without a record); the totals are always exact. */
typedef struct tsr_pins_s {
  uint64_t pages;           /* sparse pages */
  uint64_t bytes;           /* their bytes */
  uint64_t live;            /* bytes of the live blocks in them */
  uint64_t meshable;        /* bytes that meshing pairs of them (live blocks at
                               different offsets, Mesh) would give back */
  /* Meshing (TESSERA_MESH): what it holds now and did since start. */
  uint32_t mesh_state;      /* tsr_mesh_state_t */
  uint64_t meshed_pages;    /* OS pages sharing their physical page with another now */
  uint64_t mesh_saved;      /* bytes of physical memory that sharing saves now */
  uint64_t meshes;          /* OS pages put onto the physical page of others since
                               start (two to eight share one) */
  uint64_t unmeshes;        /* of them taken off again since start (their blocks there
                               all freed while others still shared it) */
  uint64_t mesh_passes;     /* passes over a heap */
  uint64_t mesh_ns;         /* time spent in them */
  uint64_t mesh_pause_max_ns;  /* longest a page stayed read-only while copied */
} tsr_pins_t;

typedef enum tsr_mesh_state_e {
  TSR_MESH_OFF = 0,         /* TESSERA_MESH=off */
  TSR_MESH_ON = 1,
  TSR_MESH_UNSUPPORTED = 2, /* the OS cannot map a page twice (Windows for now;
                               the reports say why) */
  TSR_MESH_PAUSED = 3,      /* tessera's SIGSEGV handler could not go back in
                               front of the program's, the mapping budget
                               is spent, or the program forbade itself
                               system calls since it started (seccomp) */
} tsr_mesh_state_t;

typedef struct tsr_pin_s {
  uint32_t id;              /* call stack id; 0: blocks without a record */
  uint32_t depth;
  void *const *frames;      /* innermost first; NULL for site 0 */
  uint64_t blocks;          /* its live blocks in sparse pages */
  uint64_t pinned;          /* its share of those pages' bytes */
  uint64_t idle;            /* of which free: what would go back if its blocks moved */
  int estimated;            /* 1: scaled up from samples */
} tsr_pin_t;

/* Fill totals (when not NULL) and at most max sites, most pinned bytes
 * first; returns the number of sites. */
TSR_API size_t tsr_pins(tsr_pins_t *totals, tsr_pin_t *out, size_t max);

/* ------------------------------------------------------------------------
 * Snapshots and growth
 * ---------------------------------------------------------------------- */

typedef struct tsr_snapshot_s tsr_snapshot_t;

/* The live blocks by site and by class at this moment; NULL when memory
 * for it cannot be had.  Free it with tsr_snapshot_free. */
TSR_API tsr_snapshot_t *tsr_snapshot_take(void);
TSR_API void tsr_snapshot_free(tsr_snapshot_t *snap);

typedef struct tsr_delta_s {
  int is_site;              /* 1: a site (id = stack id); 0: a class (id = class) */
  uint32_t id;
  uint32_t block_size;      /* classes */
  uint32_t depth;           /* sites */
  void *const *frames;      /* sites */
  int64_t blocks;           /* after - before */
  int64_t bytes;
  uint64_t blocks_after, bytes_after;
} tsr_delta_t;

/* What changed from before to after: every site and class whose live
 * bytes or blocks differ, most growth in bytes first; at equal growth,
 * sites before classes, each by id.  Fills at most max entries and
 * returns the number of changes. */
TSR_API size_t tsr_snapshot_diff(const tsr_snapshot_t *before, const tsr_snapshot_t *after,
                                 tsr_delta_t *out, size_t max);

/* ------------------------------------------------------------------------
 * Leaks
 * ---------------------------------------------------------------------- */

/* Mark a live block as expected to outlive the program (a cache freed by
 * process exit): leak reports leave it out.  0, or EINVAL when p is not a
 * live block with a record. */
TSR_API int tsr_leak_expect(const void *ptr);
/* Leave out of leak reports every block whose call stack passes through
 * a function of this name (exact symbol name, or for C++ the decoded name
 * the reports print, such as "app::store::keep()").  0, or ENOMEM when the
 * table of names (64) is full. */
TSR_API int tsr_leak_expect_function(const char *name);

/* ------------------------------------------------------------------------
 * Memory map
 * ---------------------------------------------------------------------- */

typedef enum tsr_slot_state_e {
  TSR_SLOT_STATE_META = 0,        /* tessera's own records */
  TSR_SLOT_STATE_DECOMMITTED = 1, /* free, no memory behind it */
  TSR_SLOT_STATE_DIRTY = 2,       /* free, still committed (purged later) */
  TSR_SLOT_STATE_USED = 3,        /* part of a page of blocks */
} tsr_slot_state_t;

typedef struct tsr_map_entry_s {
  void *start;              /* first byte */
  size_t size;              /* bytes: one slot, or the whole page for USED */
  uint32_t arena;           /* arena number, 0 = oldest */
  uint32_t slot;            /* first slot index in the arena */
  uint32_t slots;
  tsr_slot_state_t state;
  uint32_t cls;             /* USED: class and its block size */
  uint32_t block_size;
  uint32_t capacity, live;  /* USED: blocks */
} tsr_map_entry_t;

typedef int tsr_map_fn(const tsr_map_entry_t *entry, void *arg);

/* Every page and free slot of every arena, in address order.  Returns 0,
 * or the visitor's nonzero stop value. */
TSR_API int tsr_map_walk(tsr_map_fn *visit, void *arg);

typedef enum tsr_region_state_e {
  TSR_REGION_FREE = 0,      /* no mapping */
  TSR_REGION_RESERVED = 1,  /* mapped without access */
  TSR_REGION_COMMITTED = 2, /* mapped and accessible */
} tsr_region_state_t;

typedef struct tsr_region_s {
  uintptr_t start, end;     /* [start, end) */
  tsr_region_state_t state;
  uint32_t prot;            /* TSR_PROT_* bits */
  int tessera;              /* 1: reserved by tessera (arena, large block, records) */
  const char *name;         /* file or [heap] / [stack] ...; "" when anonymous */
  /* Appended in 0.1 for Windows (VirtualQuery); 0 where the OS does not
   * say (Linux) and in free gaps. */
  uint32_t type;            /* TSR_REGION_TYPE_*: what backs the region */
  uintptr_t base;           /* start of the reservation it belongs to (AllocationBase) */
  /* Appended after type and base: who holds it, on every OS. */
  uint32_t holder;          /* TSR_HOLDER_*; for a region partly tessera's, the
                               holder of most of its bytes */
} tsr_region_t;

/* Who holds a range of the address space, as a VirtualQuery monitor
 * (VMMap) names it.  tessera knows its own reservations; the OS says
 * which are images and mapped files; stacks and other heaps are found as
 * docs/report.md says (Windows: a guard page, GetProcessHeaps; Linux:
 * [stack], [heap], a guard page below). */
typedef enum tsr_holder_e {
  TSR_HOLDER_FREE = 0,      /* nobody: free */
  TSR_HOLDER_ARENA = 1,     /* tessera: arenas (small blocks) */
  TSR_HOLDER_LARGE = 2,     /* tessera: large blocks (segments, mappings of their own) */
  TSR_HOLDER_TESSERA = 3,   /* tessera: its records, stack table and tables */
  TSR_HOLDER_IMAGE = 4,     /* the program and its libraries */
  TSR_HOLDER_MAPPED = 5,    /* mapped files and sections */
  TSR_HOLDER_HEAP = 6,      /* another heap: the C runtime's, a HeapCreate, glibc's [heap] */
  TSR_HOLDER_STACK = 7,     /* a thread's stack */
  TSR_HOLDER_OTHER = 8,     /* other private memory (VirtualAlloc, mmap, a heap's big blocks) */
} tsr_holder_t;
#define TSR_HOLDER_COUNT 9

#define TSR_PROT_READ 1u
#define TSR_PROT_WRITE 2u
#define TSR_PROT_EXEC 4u

#define TSR_REGION_TYPE_PRIVATE 1u  /* MEM_PRIVATE: VirtualAlloc'd memory */
#define TSR_REGION_TYPE_MAPPED 2u   /* MEM_MAPPED: a section view (file or pagefile) */
#define TSR_REGION_TYPE_IMAGE 3u    /* MEM_IMAGE: an executable or DLL */

typedef int tsr_region_fn(const tsr_region_t *region, void *arg);

typedef struct tsr_address_space_s {
  uint64_t reserved, committed, free;  /* bytes of the user address space */
  uint64_t largest_free;               /* the largest free range */
  uintptr_t largest_free_at;
  uint64_t regions;
  uint64_t tessera_reserved;           /* of `reserved + committed`, tessera's */
} tsr_address_space_t;

/* The process address space as the OS reports it (/proc/self/maps on
 * Linux, a VirtualQuery walk on Windows), free gaps included, in address order, and its totals (either
 * may be NULL).  0, or an errno value when the OS will not say. */
TSR_API int tsr_address_space(tsr_region_fn *visit, void *arg, tsr_address_space_t *totals);

/* Why a request can fail with most of the address space free: the pieces
 * the free space is cut into and who holds the rest (tsr_space_pieces).
 * Free ranges are counted in TSR_FREE_BUCKETS sizes: below 1 MiB, 4 MiB,
 * 16 MiB, 64 MiB, 256 MiB, and above. */
#define TSR_SPACE_VERSION 1
#define TSR_FREE_BUCKETS 6
#define TSR_LARGEST_LISTED 8

typedef struct tsr_space_pieces_s {
  size_t size;                          /* set by the caller: sizeof(tsr_space_pieces_t) */
  uint32_t version;                     /* set by tessera: TSR_SPACE_VERSION */
  tsr_address_space_t totals;           /* as tsr_address_space gives them */
  uint64_t reservable;                  /* the biggest reservation the OS grants now, up
                                           to 4 GiB (all of a 32-bit process; on 64-bit:
                                           at least that), probed: reserved and released
                                           at once */
  uint64_t reserve_left;                /* what TESSERA_RESERVE_LIMIT still allows;
                                           UINT64_MAX without a cap */
  uint64_t free_ranges;                 /* pieces of free space */
  uint64_t pieces[TSR_FREE_BUCKETS];    /* free ranges by size */
  uint64_t pieces_bytes[TSR_FREE_BUCKETS];
  uint64_t largest[TSR_LARGEST_LISTED]; /* the biggest free ranges, biggest first (0: none) */
  uintptr_t largest_at[TSR_LARGEST_LISTED];
  uint64_t held[TSR_HOLDER_COUNT];      /* bytes, reserved or committed, by holder
                                           ([TSR_HOLDER_FREE]: free) */
  uint64_t held_regions[TSR_HOLDER_COUNT];  /* regions of each */
  uint64_t refusals;                    /* requests tessera answered NULL because the OS
                                           (or TESSERA_RESERVE_LIMIT) refused what they needed */
  uint64_t refused_size;                /* the last of them: bytes asked for */
  uint32_t refused_large;               /* 1: it was a large block; 0: small blocks (a new arena) */
  uint64_t refused_ms;                  /* when: ms after tessera started */
} tsr_space_pieces_t;

/* Fill *pieces (set pieces->size first).  0, EINVAL for a size too small,
 * or an errno value when the OS will not say. */
TSR_API int tsr_space_pieces(tsr_space_pieces_t *pieces);

/* ------------------------------------------------------------------------
 * Reports
 * ---------------------------------------------------------------------- */

typedef enum tsr_format_e {
  TSR_FORMAT_TEXT = 0,          /* for people */
  TSR_FORMAT_JSON = 1,          /* docs/report-schema.json, one line */
  TSR_FORMAT_OPENMETRICS = 2,   /* for a /metrics endpoint */
  TSR_FORMAT_FOLDED = 3,        /* "frame;frame;frame bytes" per site, for flame graphs */
} tsr_format_t;

/* Receives the report in pieces. */
typedef void tsr_output_fn(const char *text, size_t len, void *arg);

/* Write a whole report (totals, classes, sites, leaks, memory map, address
 * space; as much as the format carries) through out.  0, or EINVAL. */
TSR_API int tsr_report(tsr_format_t format, tsr_output_fn *out, void *arg);
/* The same to a file ("stderr", or a path, appended to; "%p" in it becomes
 * the process id).  0, or an errno value. */
TSR_API int tsr_report_to(tsr_format_t format, const char *path);
/* The growth between two snapshots, as a report (text, JSON, or folded:
 * bytes grown per site). */
TSR_API int tsr_report_diff(const tsr_snapshot_t *before, const tsr_snapshot_t *after,
                            tsr_format_t format, tsr_output_fn *out, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* TESSERA_H */
