/* stack.c: the call-stack table.  Each distinct allocation call stack is
 * stored once and named by a small id, which is what a block record holds.
 *
 * Owns: three regions reserved at first use and committed as they fill
 * (never the heap): the frames of every stack end to end, and one entry
 * per stack (its hash, where its frames are, its depth); and an
 * open-addressing index from hash to id that doubles when half full.
 * Lookup of a known stack takes no lock: an entry and its frames are
 * written before its id is published in the index with a release store,
 * and are never changed after; an index that was outgrown stays valid for
 * readers still in it (the old ones add up to less than the current one).
 * Inserting takes stack_lock.  Bounds: TSRI_STACKS_MAX stacks and STACK_FRAMES_MAX frames
 * in all; past either, new stacks get id 0 ("no stack").
 */
#include "track.h"

#if UINTPTR_MAX > 0xFFFFFFFFu
#define TSRI_STACKS_MAX ((size_t)1 << 20)
#else
#define TSRI_STACKS_MAX ((size_t)1 << 16)
#endif
#define STACK_INDEX_FIRST 512                           /* slots of the first index (a page) */
#define STACK_FRAMES_MAX (TSRI_STACKS_MAX * 16)        /* 16 frames a stack on average */
#define STACK_COMMIT_STEP ((size_t)256 * 1024)

typedef struct stack_entry_s {
  uint64_t hash;
  uint32_t first;      /* index of its first frame in stack_frames */
  uint32_t depth;
} stack_entry_t;

typedef struct stack_index_s {
  size_t mask;                  /* slots - 1 */
  _Atomic uint32_t ids[];       /* 0: empty */
} stack_index_t;

static tsri_lock_t stack_lock;
static _Atomic(stack_index_t *) stack_index;      /* load <= 1/2 */
static stack_entry_t *stack_entries;              /* [1..stack_count] */
static void **stack_frames;
static _Atomic uint32_t stack_count;
static size_t stack_frames_used;                  /* stack_lock */
static size_t entries_committed, frames_committed; /* bytes, stack_lock */

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
  tsri_own_add(mem, index_bytes(slots));
  stack_index_t *ix = mem;
  ix->mask = slots - 1;
  return ix;
}

/* Make the regions exist.  stack_lock held. */
static bool stack_setup(void) {
  if (atomic_load_explicit(&stack_index, memory_order_relaxed) != NULL) return true;
  void *entries, *frames;
  if (tsri_os_reserve(TSRI_STACKS_MAX * sizeof(stack_entry_t), tsri_os_granularity(), &entries) != 0)
    return false;
  if (tsri_os_reserve(STACK_FRAMES_MAX * sizeof(void *), tsri_os_granularity(), &frames) != 0) {
    tsri_os_release(entries, TSRI_STACKS_MAX * sizeof(stack_entry_t));
    return false;
  }
  stack_index_t *ix = index_make(STACK_INDEX_FIRST);
  if (ix == NULL) {
    tsri_os_release(entries, TSRI_STACKS_MAX * sizeof(stack_entry_t));
    tsri_os_release(frames, STACK_FRAMES_MAX * sizeof(void *));
    return false;
  }
  stack_entries = entries;
  stack_frames = frames;
  tsri_own_add(entries, TSRI_STACKS_MAX * sizeof(stack_entry_t));
  tsri_own_add(frames, STACK_FRAMES_MAX * sizeof(void *));
  tsri_count(&tsri_counters.reserved, (int64_t)(TSRI_STACKS_MAX * sizeof(stack_entry_t) +
                                                STACK_FRAMES_MAX * sizeof(void *)));
  tsri_count(&tsri_counters.os_reserves, 2);
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
    size_t i = (size_t)stack_entries[k].hash & bigger->mask;
    while (atomic_load_explicit(&bigger->ids[i], memory_order_relaxed) != 0) i = (i + 1) & bigger->mask;
    atomic_store_explicit(&bigger->ids[i], k, memory_order_relaxed);
  }
  atomic_store_explicit(&stack_index, bigger, memory_order_release);
  *ixp = bigger;
  return true;
}

/* Commit region base up to `need` bytes (committed: bytes so far). */
static bool stack_grow(void *base, size_t *committed, size_t need, size_t limit) {
  if (need <= *committed) return true;
  size_t to = tsri_align_up(need, STACK_COMMIT_STEP);
  if (to > limit) to = limit;
  if (tsri_os_commit((uint8_t *)base + *committed, to - *committed) != 0) return false;
  tsri_count(&tsri_counters.os_commits, 1);
  tsri_count(&tsri_counters.committed, (int64_t)(to - *committed));
  tsri_count(&tsri_counters.metadata, (int64_t)(to - *committed));
  *committed = to;
  return true;
}

/* A loop rather than memcmp: a program that never calls memcmp itself (an
 * allocation benchmark) would otherwise map 64 KiB of the C library's
 * string code for sampling (the kernel maps pages around each first run). */
static bool stack_equal(uint32_t id, uint64_t h, void *const *frames, size_t n) {
  const stack_entry_t *e = &stack_entries[id];
  if (e->hash != h || e->depth != n) return false;
  void *const *known = &stack_frames[e->first];
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
  if (!stack_setup()) goto out;
  ix = atomic_load_explicit(&stack_index, memory_order_relaxed);
  found = index_find(ix, h, frames, n, &slot);
  if (found != 0) goto out;
  uint32_t id = atomic_load_explicit(&stack_count, memory_order_relaxed) + 1;
  if (id >= TSRI_STACKS_MAX || stack_frames_used + n > STACK_FRAMES_MAX ||
      !stack_grow(stack_entries, &entries_committed, (id + 1) * sizeof(stack_entry_t),
                  TSRI_STACKS_MAX * sizeof(stack_entry_t)) ||
      !stack_grow(stack_frames, &frames_committed, (stack_frames_used + n) * sizeof(void *),
                  STACK_FRAMES_MAX * sizeof(void *)) ||
      !index_grow(&ix, id)) {
    goto out;
  }
  memcpy(&stack_frames[stack_frames_used], frames, n * sizeof(void *));
  stack_entries[id] = (stack_entry_t){ h, (uint32_t)stack_frames_used, (uint32_t)n };
  stack_frames_used += n;
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
  *frames = &stack_frames[stack_entries[id].first];
  return stack_entries[id].depth;
}

uint32_t tsri_stack_count(void) { return atomic_load_explicit(&stack_count, memory_order_acquire); }



void tsri_stack_fork_prepare(void) { tsri_lock(&stack_lock); }
void tsri_stack_fork_parent(void) { tsri_unlock(&stack_lock); }
void tsri_stack_fork_child(void) { tsri_unlock(&stack_lock); }
