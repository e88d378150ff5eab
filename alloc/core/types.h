/* types.h: tessera's core data structures and how they link.
 *
 * Arena.  A reservation aligned to TSR_ARENA_SIZE, so that
 * (p & ~TSR_ARENA_MASK) is the arena of any pointer p inside it, of up to
 * TSR_ARENA_SIZE bytes: `slots` slots of TSR_SLOT_SIZE bytes, the first
 * arenas and those reserved when the OS would not give a whole one having
 * fewer (arena.c: sizing).  The first `meta_slots` slots hold the arena's
 * own records: this struct and the page descriptor of every slot of the
 * window (those past `slots` stay FREE, so a pointer there is not ours).
 * The rest of the last of them, and slots of kind META taken from the
 * free ones as needed, hold the pages' block bitmaps, each as long as its
 * class needs (arena.c: bitmaps).
 * User blocks never share a slot with records, so an overflow of a user's
 * buffer cannot reach them.  Slots are committed when a span is carved out
 * of them and decommitted after they stayed free for TSR purge delay.
 * A global registry (one bit per possible arena address) answers "is this
 * arena ours" without touching the pointed-to memory.  See arena.c.
 *
 * Page.  A span of 1..TSR_SPAN_MAX_SLOTS contiguous slots holding blocks of
 * one size class, all of its class's size or, on a fitted page, of one
 * smaller size above the class below (heap.c).  Its descriptor is the descriptor of its first slot; the
 * other slots of the span point back at it.  Block i starts at
 * start + i * block_size.  Two bitmaps, out of band, say which blocks are
 * free: `local` (owned by the owning thread) and `remote` (set atomically by
 * other threads that free into the page, merged into local by the owner),
 * stored as interleaved word pairs.
 *   invariant (owner's view): popcount(local) + used == capacity
 *   invariant: local & remote == 0 (a block is freed at most once)
 * See page.c.
 *
 * Heap.  One per thread.  For each size class, a queue of pages that may
 * have free blocks (`avail`, the first one is where allocation happens) and
 * one queue of full pages of all classes.  A page is in exactly one queue of
 * its owner.  Other threads tell an owner about remote frees into its full
 * pages through the atomic `notify` stack.  See heap.c.
 *
 * Size class.  A row of the const table in sizeclass.c: block size and span
 * length.  Waste is bounded there.
 *
 * Block record.  What tessera remembers about one tracked block (meta.c):
 * sequence number, requested size, call stack id, thread and time.  Never
 * next to the block.  A page tracked in full has a record area in a
 * reservation of its arena's own: a table of contexts (call stack, thread,
 * first sequence number) shared by its blocks, and one compact record per
 * block (4 bytes in classes up to 128 bytes, 8 above) naming a context,
 * the bytes not asked for and the sequence number's offset from the
 * context's; the time of a record follows from its sequence number
 * (meta.c's time log).  Sampled blocks, large blocks and what does not fit
 * a compact record have a full record in a hash table keyed by address.
 * Call stacks are interned once each in stack.c.
 *
 * Large block.  A request above TSR_SMALL_MAX is a run of pages of a large
 * segment (segment.c), or above TSRI_LARGE_CARVE_MAX an OS reservation of
 * its own, recorded in a hash table (large.c); its record holds the run or
 * mapping and the usable size, never anything inside the user's block.
 *
 * Build variants: TSR_DEBUG (0..3) turns on tsr_assert (1),
 * tsr_assert_internal (2) and tsr_assert_expensive (3).  The CMake Debug
 * build uses 2.
 */
#ifndef TSR_TYPES_H
#define TSR_TYPES_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "os/os.h"

/* ---- geometry ---------------------------------------------------------- */

#if UINTPTR_MAX > 0xFFFFFFFFu
#define TSR_ARENA_SHIFT 26              /* 64 MiB arenas on 64-bit */
#define TSR_VA_BITS 48                  /* user address bits the registry covers */
#else
#define TSR_ARENA_SHIFT 22              /* 4 MiB arenas in a 32-bit process */
#define TSR_VA_BITS 32
#endif
#define TSR_SLOT_SHIFT 16               /* 64 KiB slots */
#define TSR_ARENA_SIZE ((size_t)1 << TSR_ARENA_SHIFT)
#define TSR_ARENA_MASK (TSR_ARENA_SIZE - 1)
#define TSR_SLOT_SIZE ((size_t)1 << TSR_SLOT_SHIFT)
#define TSR_ARENA_SLOTS (TSR_ARENA_SIZE / TSR_SLOT_SIZE)
#define TSR_SPAN_MAX_SLOTS 10           /* longest span in the class table */
#define TSR_PAGE_MAX_BLOCKS 4096        /* 16-byte blocks in one slot */
#define TSR_BITMAP_WORDS (TSR_PAGE_MAX_BLOCKS / 64)
#define TSR_MIN_ALIGN 16                /* every block is 16-byte aligned */
#define TSR_CLASS_COUNT 88              /* rows of the size-class table */
#define TSR_SMALL_MAX ((size_t)128 * 1024)  /* largest class; above: large.c */
#define TSR_MAGIC_SHIFT 40              /* see tsri_block_index */

/* ---- page -------------------------------------------------------------- */

/* Slot kinds, in tsr_page_t.kind. */
enum {
  TSR_SLOT_FREE = 0,   /* not part of a span (committed or not: arena bits) */
  TSR_SLOT_HEAD = 1,   /* first slot of a span: this descriptor is the page */
  TSR_SLOT_TAIL = 2,   /* other slot of a span: head_slot names the head */
  TSR_SLOT_META = 3,   /* holds the arena's records or pages' bitmaps */
};

/* Page states, the low two bits of tsr_page_t.xowner. */
enum {
  TSR_PAGE_AVAIL = 0,      /* in the owner's avail queue of its class */
  TSR_PAGE_FULL = 1,       /* in the owner's full queue, no notice pending */
  TSR_PAGE_QUEUED = 2,     /* in the full queue and on the owner's notify stack */
  TSR_PAGE_ABANDONED = 3,  /* owner exited; in the abandoned list (heap.c) */
};
#define TSR_PAGE_STATE_MASK ((uintptr_t)3)

struct tsr_heap_s;

/* ---- block record ----------------------------------------------------- */

typedef struct tsri_rec_s {
  uint64_t seq;                     /* allocation number, 1..; 0: no record */
  uint32_t requested;               /* bytes asked for (small blocks: < 2^18) */
  uint32_t stack;                   /* stack id (stack.c) | TSRI_REC_EXPECTED */
  uint32_t thread;                  /* OS thread id of the allocating thread */
  uint32_t time_ms;                 /* ms after tessera started, modulo 2^32 (49 days) */
} tsri_rec_t;

#define TSRI_REC_EXPECTED 0x80000000u   /* tsr_leak_expect: not a leak */
#define TSRI_TRACKED_ARRAY 0x80000000u  /* tsr_page_t.tracked: the page has `recs` */
#define TSRI_TRACKED_DEBUG 0x40000000u  /* tsr_page_t.tracked: blocks of the slot were handed
                                           out under TESSERA_DEBUG (track/debug.c), which
                                           stays on for the process's life: never cleared */
#define TSRI_TRACKED_COUNT 0x3fffffffu  /* tsr_page_t.tracked: its count of table records */

/* A context: what the blocks of a page recorded from one call stack by one
 * thread share.  Their sequence numbers lie in [seq_base, seq_base + 2^k),
 * k the offset bits of the page's record format (meta.c).  Written by the
 * page's owner, read by walkers: relaxed atomics. */
typedef struct tsri_ctx_s {
  _Atomic uint32_t stack;           /* stack id */
  _Atomic uint32_t thread;          /* OS thread id; 0: the slot is free */
  _Atomic uint64_t seq_base;        /* first record number it covers */
} tsri_ctx_t;

#define TSRI_CTX_SLOTS 128              /* contexts per page (7 bits in a record) */
#define TSRI_REC_NARROW_MAX 128         /* largest blocks with 32-bit records */

/* The record area of a page tracked in full: contexts, a hash index over
 * them, then one record per block (meta.c: rec_* for the formats). */
typedef struct tsri_recs_s {
  uint64_t ctx_used[TSRI_CTX_SLOTS / 64];  /* owner: slots holding a context */
  uint32_t gc_wait;                 /* owner: records to make before the next
                                       search for unused contexts */
  uint32_t has_long;                /* owner: long records were written (meta.c) */
  uint8_t index[TSRI_CTX_SLOTS];    /* owner: hash of (stack, thread) -> 1 + slot; 0 empty */
  tsri_ctx_t ctx[TSRI_CTX_SLOTS];
  _Atomic uint64_t recs[];          /* capacity records (as uint32_t up to 128-byte blocks) */
} tsri_recs_t;

/* Each slot's record area in its arena's reservation: room for the widest
 * records of the most blocks a page has, at an address any OS page size
 * divides. */
#define TSRI_RECS_STRIDE TSR_SLOT_SIZE
_Static_assert(sizeof(tsri_recs_t) + (4 + 8) * TSR_PAGE_MAX_BLOCKS + 8 <= TSRI_RECS_STRIDE,
               "a record area fits its stride, long records included");

typedef struct tsr_page_s {
  /* The first 64 bytes are what the free fast path reads (heap.h, hooks.h). */
  /* Set when the span is carved (arena lock held), fixed while in use. */
  uint8_t kind;                     /* TSR_SLOT_*; meaningful for every slot */
  uint8_t cls;                      /* size class index, HEAD only */
  uint16_t span_slots;              /* slots in the span, HEAD only */
  uint16_t head_slot;               /* TAIL: slot index of the head */
  uint16_t capacity;                /* blocks in the span, <= TSR_PAGE_MAX_BLOCKS */
  uint32_t block_size;              /* bytes, a multiple of TSR_MIN_ALIGN: its class's,
                                       or less on a fitted page (heap.c); set when
                                       the span is carved */
  uint32_t scan;                    /* owner: first bitmap word that may have a free
                                       block; the word of the last free (LIFO reuse) */
  uint64_t magic;                   /* ceil(2^TSR_MAGIC_SHIFT / block_size) */
  uint8_t *start;                   /* address of block 0: the span's first slot, or
                                       one block further in (page.c: the phase) */
  _Atomic(uint64_t) *bits;          /* free bitmaps, word pairs: [2w] local (owner's,
                                       relaxed), [2w+1] remote (others', fetch_or) */
  _Atomic uintptr_t xowner;         /* owning heap | TSR_PAGE_* state */
  _Atomic uint32_t used;            /* owner: live blocks incl. remote frees not yet
                                       merged; relaxed atomic so stats can read it */
  union {
    uint32_t freed_at_ms;           /* FREE slots: clock when freed (low 32 bits),
                                       arena lock held */
    _Atomic uint32_t in_table;      /* a span in use whose `tracked` counts table
                                       records: bit i % 32 set for each block i with
                                       one (meta.c, under its lock; stale bits only
                                       cost lookups); a free of a block whose bit is
                                       clear needs no lookup */
  };
  _Atomic uint32_t tracked;         /* live blocks with a record in meta.c's table,
                                       | TSRI_TRACKED_ARRAY; 0: free needs no lookup */
  _Atomic uint32_t ctx_epoch;       /* changes when contexts of its record area may
                                       have gone, odd while they go; the owner writes
                                       (meta.c: heaps' hints, walkers) */
  /* Owner only (or the abandoned-list lock holder when owner is gone). */
  struct tsr_page_s *next, *prev;   /* links in the owner's queue / abandoned list */
  struct tsr_page_s *notify_next;   /* link in the owner's notify stack */
  uint32_t trimmed_at_used;         /* owner: `used` when the page's free OS pages were
                                       last given back (page.c: tsri_page_trim) */
  uint32_t seen_used;               /* owner: `used` at the heap's last trim pass */
  /* Meshing (mesh.c), written under its lock: OS pages of this span
   * mapped from the shared file, and how many of them share their
   * physical page with another span's.  While meshed > 0 the page is
   * frozen: FULL, in the full queue, never allocated from. */
  _Atomic uint16_t filed;
  _Atomic uint16_t meshed;
  uint32_t mesh_seen_used;          /* owner: `used` at the heap's last meshing pass */
  uint32_t recs_committed;          /* bytes of this slot's record area committed;
                                       kept from span to span until the slot is
                                       purged (meta.c) */
  /* Record area of a page tracked in full (meta.c): set by the owner,
   * cleared when the span goes back to the arena.  A record is block i's
   * while it is not 0 (a free clears it). */
  _Atomic(tsri_recs_t *) recs;      /* or NULL */
} __attribute__((aligned(64))) tsr_page_t;

_Static_assert(offsetof(tsr_page_t, ctx_epoch) + sizeof(uint32_t) <= 64,
               "a full-tracking allocation reads one line of its page");



/* The local and remote free words w of a page: side by side, so a free
 * that checks both touches one cache line. */
static inline _Atomic(uint64_t) *tsri_local(const tsr_page_t *pg, size_t w) { return &pg->bits[2 * w]; }
static inline _Atomic(uint64_t) *tsri_remote(const tsr_page_t *pg, size_t w) { return &pg->bits[2 * w + 1]; }

/* ---- arena ------------------------------------------------------------- */

typedef struct tsr_arena_s {
  _Atomic(struct tsr_arena_s *) next;   /* all arenas, append only: walked without the lock (arena.c) */
  size_t slots;                     /* slots of its reservation: TSR_ARENA_SLOTS, or
                                       fewer (arena.c: sizing); the rest of its
                                       TSR_ARENA_SIZE window is not ours */
  size_t meta_slots;                /* slots used by these records */
  size_t free_slots;                /* slots not in a span */
  uint64_t free_map[TSR_ARENA_SLOTS / 64];       /* bit set: slot is FREE */
  uint64_t commit_map[TSR_ARENA_SLOTS / 64];     /* bit set: slot committed */
  uint64_t dirty_map[TSR_ARENA_SLOTS / 64];      /* FREE and committed, awaiting purge */
  uint64_t transit_map[TSR_ARENA_SLOTS / 64];    /* being committed or decommitted
                                                    outside the lock (arena.c) */
  _Atomic(uint8_t *) recs;          /* reservation for the record areas of its
                                       pages, TSRI_RECS_STRIDE bytes per slot, or
                                       NULL until a page is tracked in full (meta.c) */
  /* Pages' bitmaps (tsr_page_t.bits), arena lock: the unused end of the
   * newest bitmap area, and bitmaps given back, by length (index: 64-byte
   * lines - 1), linked through their first word. */
  uint8_t *bits_next, *bits_end;
  _Atomic(uint64_t) *bits_free[2 * TSR_BITMAP_WORDS * sizeof(uint64_t) / 64];
  tsr_page_t pages[TSR_ARENA_SLOTS];             /* one descriptor per slot */
} tsr_arena_t;


/* ---- heap -------------------------------------------------------------- */

/* A heap's note of the context its last record in a class used, so that
 * the next record from the same stack needs no look at the page's table. */
typedef struct tsri_ctx_hint_s {
  const struct tsr_page_s *page;    /* NULL: none */
  tsri_recs_t *area;                /* page->recs when noted */
  uint64_t seq_base;                /* the context's first record number */
  uint64_t seq_span;                /* numbers from seq_base its records can name;
                                       0: records go long, naming slot (meta.c) */
  uint32_t stack;                   /* the context's stack id */
  uint32_t epoch;                   /* page->ctx_epoch when noted */
  uint32_t slot;                    /* the context's slot in the page's table */
  uint32_t fits_from;               /* the smallest request whose waste the
                                       page's record format holds */
} tsri_ctx_hint_t;

typedef struct tsr_queue_s {
  tsr_page_t *first, *last;
} tsr_queue_t;

typedef struct tsr_heap_s {
  /* Bytes that may still be asked for before the next allocation goes
   * to tracking's hook (core/hooks.h: a sample is due, or tracking is
   * full: -1).  Owner reads and writes; tracking (tsr_track_set,
   * tsri_hook_options) may store to it from elsewhere. */
  _Atomic int64_t sample_left;
  _Atomic uint64_t allocs;            /* blocks handed out by this heap (owner writes) */
  _Atomic uint64_t frees;             /* blocks freed by this heap's thread (owner writes) */
  /* Hot: cur[c] == avail[c].first, or the empty page (no free blocks) so
   * that the fast path needs no NULL test. */
  tsr_page_t *cur[TSR_CLASS_COUNT];
  tsr_queue_t avail[TSR_CLASS_COUNT];
  tsr_queue_t full;                   /* FULL and QUEUED pages of all classes */
  /* Block size of the pages it carves for class c from TSRI_FIT_FIRST on
   * (heap.c: fitted pages): 0 until its first, then its first request's
   * size, rounded up to TSR_MIN_ALIGN, until a request of the class needs
   * more; from then on the class's.  Owner only. */
  uint32_t fit[TSR_CLASS_COUNT];
  _Atomic(tsr_page_t *) notify;       /* pages with remote frees while full */
  _Atomic uint32_t pushers;           /* remote threads between reading FULL and the end
                                         of their push (heap.c: heap_abandon waits) */
  _Atomic uint32_t slow_calls;        /* alloc slow paths, drives purge checks (owner
                                         writes; the reclaimer reads: idle when unchanged) */
  /* The page the owner is moving outside its queues: taken out to be
   * given back, carved or adopted and not queued yet, or going from one
   * queue to another.  Whoever holds the park writes (the owner, or the
   * reclaimer thawing a parked heap); a fork child hands it over with the
   * heap's queues (heap.c: heap_take_loose). */
  _Atomic(tsr_page_t *) loose;
  _Atomic int park;                   /* who may touch the queues and the pages that are
                                         not current: open, the owner (a slow path) or the
                                         reclaimer (queue.h: parking) */
  uint32_t reclaim_seen;              /* slow_calls at the reclaimer's last look (reclaimer only) */
  uint64_t reclaim_allocs;            /* allocs at the reclaimer's last look, and when */
  uint64_t reclaim_at_ms;             /* (reclaimer only) */
  uint64_t next_trim_ms;              /* clock at which to trim our sparse pages next */
  uint64_t next_mesh_ms;              /* clock at which to mesh its pages next (mesh.c) */
  bool mesh_more;                     /* its last meshing pass stopped with pages left to
                                         look at: the reclaimer comes back soon (mesh.c) */
  uint64_t rng;                       /* sampling random state (meta.c, guarded.c) */
  uint64_t guard_seen;                /* allocs when guarded sampling last looked (guarded.c) */
  uint64_t seq_next, seq_end;         /* record numbers this heap may hand out (meta.c) */
  uint32_t seq_ms;                    /* coarse clock when they were taken */
  tsri_ctx_hint_t ctx_hint[TSR_CLASS_COUNT];   /* per class (meta.c) */
  tsri_os_stack_memo_t stack_memo;    /* stacks this thread captured last (meta.c) */
  uint32_t thread;                    /* OS thread id of the owner */
  bool in_use;                        /* owned by a live thread */
  struct tsr_heap_s *next_all;        /* every heap ever made (heap.c) */
} tsr_heap_t;

/* ---- large block ------------------------------------------------------- */

typedef struct tsri_seg_s tsri_seg_t;   /* a large segment (segment.c) */

typedef struct tsr_large_s {
  uintptr_t block;                    /* address handed to the user; 0: empty */
  uintptr_t base;                     /* start of its run or mapping */
  size_t mapped;                      /* bytes from base it holds */
  size_t usable;                      /* bytes from block the user may use */
  tsri_seg_t *seg;                    /* segment it is a run of; NULL: a mapping
                                         of its own */
} tsr_large_t;

#endif /* TSR_TYPES_H */
