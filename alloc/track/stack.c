/* stack.c: the call-stack table.  Each distinct allocation call stack is
 * stored once and named by a small id, which is what a block record holds.
 *
 * Owns: the frames of every stack end to end, one entry per stack (its
 * hash, where its frames are, its depth), and an open-addressing index
 * from hash to id that doubles when half full, all taken from the OS
 * (never the heap) as they fill: entries and frames in chunks of
 * STACK_CHUNK_BYTES, so that a program with few stacks holds a few
 * hundred KiB of address space for them, not the bound's worth (which
 * under a cap on the address space would be memory its blocks could not
 * have).  A stack's frames lie in one chunk.
 * Lookup of a known stack takes no lock: an entry and its frames (and
 * their chunks) are written before its id is published in the index with
 * a release store, and are never changed after; an index that was
 * outgrown stays valid for readers still in it (the old ones add up to
 * less than the current one).  Inserting takes stack_lock.  Bounds:
 * TSRI_STACKS_MAX stacks and STACK_FRAMES_MAX frames in all; past either,
 * or when the OS refuses a chunk, new stacks get id 0 ("no stack").
 */
#include "track.h"

#if UINTPTR_MAX > 0xFFFFFFFFu
#define TSRI_STACKS_MAX ((size_t)1 << 20)
#else
#define TSRI_STACKS_MAX ((size_t)1 << 16)
#endif
#define STACK_INDEX_FIRST 512                           /* slots of the first index (a page) */
#define STACK_FRAMES_MAX (TSRI_STACKS_MAX * 16)        /* 16 frames a stack on average */
#define STACK_CHUNK_BYTES ((size_t)256 * 1024)

typedef struct stack_entry_s {
  uint64_t hash;
  uint32_t first;      /* index of its first frame (chunk * FRAMES_PER_CHUNK + offset) */
  uint32_t depth;
} stack_entry_t;

#define ENTRIES_PER_CHUNK (STACK_CHUNK_BYTES / sizeof(stack_entry_t))
#define FRAMES_PER_CHUNK (STACK_CHUNK_BYTES / sizeof(void *))
_Static_assert(TSRI_STACK_DEPTH <= FRAMES_PER_CHUNK, "a stack's frames fit a chunk");

typedef struct stack_index_s {
  size_t mask;                  /* slots - 1 */
  _Atomic uint32_t ids[];       /* 0: empty */
} stack_index_t;

_Atomic uint64_t tsri_stacks_lost;

static tsri_lock_t stack_lock;
static _Atomic(stack_index_t *) stack_index;      /* load <= 1/2 */
/* Chunks, made under stack_lock before an id that needs them is
 * published; entry id is entry_chunks[id / ENTRIES_PER_CHUNK][id % ...]. */
static stack_entry_t *entry_chunks[TSRI_STACKS_MAX / ENTRIES_PER_CHUNK];
static void **frame_chunks[STACK_FRAMES_MAX / FRAMES_PER_CHUNK];
static _Atomic uint32_t stack_count;
static size_t stack_frames_used;                  /* stack_lock */

static inline stack_entry_t *stack_entry(uint32_t id) {
  return &entry_chunks[id / ENTRIES_PER_CHUNK][id % ENTRIES_PER_CHUNK];
}

static inline void **stack_frame(size_t first) {
  return &frame_chunks[first / FRAMES_PER_CHUNK][first % FRAMES_PER_CHUNK];
}

static uint64_t stack_hash(void *const *frames, size_t n) {
  uint64_t h = 0x9e3779b97f4a7c15ull ^ n;
  for (size_t i = 0; i < n; i++) {
    h ^= (uint64_t)(uintptr_t)frames[i];
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 32;
  }
  return h | 1;   /* never 0 */
}

static size_t index_bytes(size_t slots) {
  return tsri_align_up(sizeof(stack_index_t) + slots * sizeof(uint32_t), tsri_os_page_size());
}

static stack_index_t *index_make(size_t slots) {
  void *mem;
  if (tsri_os_alloc(index_bytes(slots), tsri_os_page_size(), &mem) != 0) return NULL;
  tsri_count(&tsri_counters.os_reserves, 1);
  tsri_count(&tsri_counters.reserved, (int64_t)index_bytes(slots));
  tsri_count(&tsri_counters.committed, (int64_t)index_bytes(slots));
  tsri_count(&tsri_counters.metadata, (int64_t)index_bytes(slots));
  tsri_own_add(mem, index_bytes(slots), TSRI_OWN_META);
  stack_index_t *ix = mem;
  ix->mask = slots - 1;
  return ix;
}

/* Make the first index.  stack_lock held. */
static bool stack_setup(void) {
  if (atomic_load_explicit(&stack_index, memory_order_relaxed) != NULL) return true;
  stack_index_t *ix = index_make(STACK_INDEX_FIRST);
  if (ix == NULL) return false;
  atomic_store_explicit(&stack_index, ix, memory_order_release);
  return true;
}

/* Make room for stack `id` (ids below it are in the index): double the
 * index when it would be more than half full.  stack_lock held. */
static bool index_grow(stack_index_t **ixp, uint32_t id) {
  stack_index_t *ix = *ixp;
  if ((size_t)id * 2 <= ix->mask + 1) return true;
  stack_index_t *bigger = index_make(2 * (ix->mask + 1));
  if (bigger == NULL) return false;
  for (uint32_t k = 1; k < id; k++) {
    size_t i = (size_t)stack_entry(k)->hash & bigger->mask;
    while (atomic_load_explicit(&bigger->ids[i], memory_order_relaxed) != 0) i = (i + 1) & bigger->mask;
    atomic_store_explicit(&bigger->ids[i], k, memory_order_relaxed);
  }
  atomic_store_explicit(&stack_index, bigger, memory_order_release);
  *ixp = bigger;
  return true;
}

/* A new chunk, or NULL when the OS refuses.  stack_lock held. */
static void *chunk_new(void) {
  void *mem;
  if (tsri_os_alloc(STACK_CHUNK_BYTES, tsri_os_page_size(), &mem) != 0) return NULL;
  tsri_own_add(mem, STACK_CHUNK_BYTES, TSRI_OWN_META);
  tsri_count(&tsri_counters.os_reserves, 1);
  tsri_count(&tsri_counters.reserved, (int64_t)STACK_CHUNK_BYTES);
  tsri_count(&tsri_counters.committed, (int64_t)STACK_CHUNK_BYTES);
  tsri_count(&tsri_counters.metadata, (int64_t)STACK_CHUNK_BYTES);
  return mem;
}

/* The chunks that entry id and frames [first, first + n) lie in exist.
 * stack_lock held. */
static bool chunks_ready(uint32_t id, size_t first) {
  stack_entry_t **e = &entry_chunks[id / ENTRIES_PER_CHUNK];
  void ***f = &frame_chunks[first / FRAMES_PER_CHUNK];
  if (*e == NULL && (*e = chunk_new()) == NULL) return false;
  return *f != NULL || (*f = chunk_new()) != NULL;
}

/* A loop rather than memcmp: a program that never calls memcmp itself (an
 * allocation benchmark) would otherwise map 64 KiB of the C library's
 * string code for sampling (the kernel maps pages around each first run). */
static bool stack_equal(uint32_t id, uint64_t h, void *const *frames, size_t n) {
  const stack_entry_t *e = stack_entry(id);
  if (e->hash != h || e->depth != n) return false;
  void *const *known = stack_frame(e->first);
  for (size_t i = 0; i < n; i++)
    if (known[i] != frames[i]) return false;
  return true;
}

/* The id of the stack in ix, or 0; *slot: where it would go. */
static uint32_t index_find(const stack_index_t *ix, uint64_t h, void *const *frames, size_t n, size_t *slot) {
  for (size_t i = (size_t)h & ix->mask;; i = (i + 1) & ix->mask) {
    uint32_t id = atomic_load_explicit(&ix->ids[i], memory_order_acquire);
    if (id == 0 || stack_equal(id, h, frames, n)) {
      *slot = i;
      return id;
    }
  }
}

uint32_t tsri_stack_capture_from(void *caller) {
  void *frames[TSRI_STACK_DEPTH + 8];
  size_t n = tsri_os_stack_capture(frames, TSRI_STACK_DEPTH + 8, 0);
  size_t first = 0;
  while (first < n && frames[first] != caller) first++;
  if (first == n) {   /* the unwinder lost the way: the caller is known */
    frames[0] = caller;
    first = 0;
    n = 1;
  }
  size_t depth = n - first < TSRI_STACK_DEPTH ? n - first : TSRI_STACK_DEPTH;
  return tsri_stack_intern(frames + first, depth);
}

uint32_t tsri_stack_intern(void *const *frames, size_t n) {
  if (n == 0) return 0;
  if (n > TSRI_STACK_DEPTH) n = TSRI_STACK_DEPTH;
  uint64_t h = stack_hash(frames, n);
  size_t slot;
  stack_index_t *ix = atomic_load_explicit(&stack_index, memory_order_acquire);
  if (ix != NULL) {
    uint32_t id = index_find(ix, h, frames, n, &slot);
    if (id != 0) return id;
  }
  tsri_lock(&stack_lock);
  uint32_t found = 0;
  if (!stack_setup()) {
    tsri_count(&tsri_stacks_lost, 1);
    goto out;
  }
  ix = atomic_load_explicit(&stack_index, memory_order_relaxed);
  found = index_find(ix, h, frames, n, &slot);
  if (found != 0) goto out;
  uint32_t id = atomic_load_explicit(&stack_count, memory_order_relaxed) + 1;
  size_t first = stack_frames_used;
  if (first % FRAMES_PER_CHUNK + n > FRAMES_PER_CHUNK) first = tsri_align_up(first, FRAMES_PER_CHUNK);
  if (id >= TSRI_STACKS_MAX || first + n > STACK_FRAMES_MAX ||
      !chunks_ready(id, first) || !index_grow(&ix, id)) {
    tsri_count(&tsri_stacks_lost, 1);
    goto out;
  }
  memcpy(stack_frame(first), frames, n * sizeof(void *));
  *stack_entry(id) = (stack_entry_t){ h, (uint32_t)first, (uint32_t)n };
  stack_frames_used = first + n;
  atomic_store_explicit(&stack_count, id, memory_order_release);
  index_find(ix, h, frames, n, &slot);
  atomic_store_explicit(&ix->ids[slot], id, memory_order_release);
  found = id;
out:
  tsri_unlock(&stack_lock);
  return found;
}

size_t tsri_stack_frames(uint32_t id, void *const **frames) {
  if (id == 0 || id > atomic_load_explicit(&stack_count, memory_order_acquire)) {
    *frames = NULL;
    return 0;
  }
  const stack_entry_t *e = stack_entry(id);
  *frames = stack_frame(e->first);
  return e->depth;
}

uint32_t tsri_stack_count(void) { return atomic_load_explicit(&stack_count, memory_order_acquire); }

void tsri_stack_fork_prepare(void) { tsri_lock(&stack_lock); }
void tsri_stack_fork_parent(void) { tsri_unlock(&stack_lock); }
void tsri_stack_fork_child(void) { tsri_unlock(&stack_lock); }
