/* table.c: hash tables keyed by a block's address, for the records that
 * must be found from a pointer: large.c's mappings and meta.c's sampled
 * and large-block records.
 *
 * Open addressing with linear probing, at most half full, and removal by
 * backward shift, so no tombstones pile up and a lookup stops at the first
 * empty slot.  Each entry begins with its key (a uintptr_t; 0 marks an
 * empty slot).  Storage comes from the OS, doubles when needed and is
 * counted as tessera's metadata.  The owner of a table holds its own lock
 * around every call.
 */
#include "internal.h"

static inline size_t table_hash(uintptr_t key) {
  /* blocks are 16-byte aligned, large ones page aligned: the multiply
   * spreads what the low bits lack into the bits taken */
  return (size_t)(((uint64_t)key * 0x9e3779b97f4a7c15ull) >> 20);
}

static inline uintptr_t *key_at(const tsri_table_t *t, size_t i) {
  return (uintptr_t *)(void *)(t->slots + i * t->entry_size);
}

/* The entry of key, or the empty slot where it would go.  capacity > 0. */
static size_t table_slot(const tsri_table_t *t, uintptr_t key) {
  size_t mask = t->capacity - 1;
  size_t i = table_hash(key) & mask;
  while (*key_at(t, i) != 0 && *key_at(t, i) != key) i = (i + 1) & mask;
  return i;
}

void *tsri_table_find(const tsri_table_t *t, uintptr_t key) {
  if (t->count == 0) return NULL;
  uintptr_t *e = key_at(t, table_slot(t, key));
  return *e == key ? e : NULL;
}

static size_t table_bytes(const tsri_table_t *t, size_t capacity) {
  return tsri_align_up(capacity * t->entry_size, tsri_os_page_size());
}

static bool table_grow(tsri_table_t *t) {
  size_t cap = t->capacity ? t->capacity * 2 : t->first_capacity;
  size_t bytes = table_bytes(t, cap);
  void *mem;
  if (tsri_os_alloc(bytes, tsri_os_page_size(), &mem) != 0) return false;
  tsri_table_t old = *t;
  t->slots = mem;
  t->capacity = cap;
  for (size_t i = 0; i < old.capacity; i++)
    if (*key_at(&old, i) != 0)
      memcpy(key_at(t, table_slot(t, *key_at(&old, i))), key_at(&old, i), t->entry_size);
  int64_t delta = (int64_t)bytes;
  tsri_own_add(mem, bytes, TSRI_OWN_META);
  if (old.slots != NULL) {
    tsri_own_remove(old.slots);
    tsri_os_release(old.slots, table_bytes(&old, old.capacity));
    delta -= (int64_t)table_bytes(&old, old.capacity);
  }
  tsri_count(&tsri_counters.metadata, delta);
  tsri_count(&tsri_counters.committed, delta);
  tsri_count(&tsri_counters.reserved, delta);
  return true;
}

void *tsri_table_insert(tsri_table_t *t, uintptr_t key) {
  if ((t->count + 1) * 2 > t->capacity && !table_grow(t)) return NULL;
  uintptr_t *e = key_at(t, table_slot(t, key));
  tsr_assert_internal(*e == 0);
  *e = key;
  t->count++;
  return e;
}

void tsri_table_remove(tsri_table_t *t, void *entry) {
  size_t mask = t->capacity - 1;
  size_t i = (size_t)((uint8_t *)entry - t->slots) / t->entry_size;
  t->count--;
  for (size_t j = (i + 1) & mask; *key_at(t, j) != 0; j = (j + 1) & mask) {
    size_t home = table_hash(*key_at(t, j)) & mask;
    /* move j into the hole at i unless its home lies in (i, j] */
    if (((j - home) & mask) >= ((j - i) & mask)) {
      memcpy(key_at(t, i), key_at(t, j), t->entry_size);
      i = j;
    }
  }
  *key_at(t, i) = 0;
}

void *tsri_table_next(const tsri_table_t *t, size_t *cursor) {
  for (; *cursor < t->capacity; (*cursor)++) {
    uintptr_t *e = key_at(t, *cursor);
    if (*e != 0) {
      (*cursor)++;
      return e;
    }
  }
  return NULL;
}

void tsri_table_clear(tsri_table_t *t) {
  if (t->slots != NULL) memset(t->slots, 0, t->capacity * t->entry_size);
  t->count = 0;
}
