/* test_win_vm.c: what tessera does to the address space, seen through
 * VirtualQuery: arenas are single reservations aligned to their size,
 * pages are committed when a page of blocks is carved and decommitted
 * (back to MEM_RESERVE) when they stay free, and tsr_address_space lists
 * the same regions as a VirtualQuery walk of our own, tessera's arenas
 * marked.  Runs with TESSERA_PURGE_DELAY_MS=0 (ctest). */
#include "win_test.h"

#include <stdint.h>
#include <tessera.h>
#include <windows.h>

#include "core/types.h"   /* TSR_ARENA_SIZE, tsr_arena_t */

static MEMORY_BASIC_INFORMATION query(const void *p) {
  MEMORY_BASIC_INFORMATION m;
  memset(&m, 0, sizeof m);
  VirtualQuery(p, &m, sizeof m);
  return m;
}

static void arena_is_one_aligned_reservation(void) {
  char *p = tsr_malloc(200);
  CHECK(p != NULL);
  uintptr_t arena = (uintptr_t)p & ~(uintptr_t)(TSR_ARENA_SIZE - 1);
  MEMORY_BASIC_INFORMATION m = query(p);
  CHECK(m.State == MEM_COMMIT);
  CHECK(m.Type == MEM_PRIVATE);
  CHECK(m.Protect == PAGE_READWRITE);
  CHECK_MSG((uintptr_t)m.AllocationBase == arena, "block %p: allocation base %p, arena %p", (void *)p,
            m.AllocationBase, (void *)arena);
  /* every region of the arena (its slots: arenas start smaller than
   * their aligned window, alloc/core/arena.c) belongs to that one
   * reservation, some of it committed, most of it only reserved */
  uintptr_t end = arena + ((const tsr_arena_t *)arena)->slots * TSR_SLOT_SIZE;
  uintptr_t at = arena;
  size_t committed = 0, reserved = 0;
  while (at < end) {
    m = query((void *)at);
    CHECK((uintptr_t)m.AllocationBase == arena);
    CHECK(m.State == MEM_COMMIT || m.State == MEM_RESERVE);
    if (m.State == MEM_COMMIT) committed += m.RegionSize;
    else reserved += m.RegionSize;
    at = (uintptr_t)m.BaseAddress + m.RegionSize;
  }
  CHECK(at == end);
  CHECK(committed > 0 && reserved > committed);
  tsr_free(p);
}

static void commit_and_decommit_are_visible(void) {
  /* a block of its own slots (a 96 KiB class spans several 64 KiB slots) */
  char *p = tsr_malloc(96 * 1024);
  CHECK(p != NULL);
  memset(p, 1, 96 * 1024);
  char *last = p + 96 * 1024 - 1;
  CHECK(query(p).State == MEM_COMMIT);
  CHECK(query(last).State == MEM_COMMIT);
  tsr_free(p);
  tsr_collect();   /* empty pages back to the arena, free slots decommitted */
  MEMORY_BASIC_INFORMATION m = query(last);
  CHECK_MSG(m.State == MEM_RESERVE, "after free and collect: state %#lx, expected MEM_RESERVE",
            (unsigned long)m.State);
  CHECK(m.Type == MEM_PRIVATE);
  /* the same slots are carved again: committed again, and zero where the
   * OS gave fresh pages */
  char *q = tsr_malloc(96 * 1024);
  CHECK(q != NULL);
  CHECK(query(q).State == MEM_COMMIT);
  memset(q, 2, 96 * 1024);
  tsr_free(q);
  tsr_collect();
  tsr_stats_t s;
  memset(&s, 0, sizeof s);
  s.size = sizeof s;
  CHECK(tsr_stats_get(&s) == 0);
  CHECK(s.os_decommits >= 2 && s.purges >= 2);
}

typedef struct seen_s {
  uintptr_t arena;               /* the arena to find */
  const void *block;
  uintptr_t last_end;
  int ordered, arena_regions, arena_private, block_committed, exe_image;
  uint64_t reserved, committed, free;
} seen_t;

static int visit(const tsr_region_t *r, void *arg) {
  seen_t *s = arg;
  if (r->start < s->last_end || r->end <= r->start) s->ordered = 0;
  s->last_end = r->end;
  uint64_t size = r->end - r->start;
  if (r->state == TSR_REGION_FREE) s->free += size;
  else if (r->state == TSR_REGION_RESERVED) s->reserved += size;
  else s->committed += size;
  if (r->start >= s->arena && r->end <= s->arena + TSR_ARENA_SIZE) {
    s->arena_regions += r->tessera == 1 && r->base == s->arena;
    s->arena_private += r->type == TSR_REGION_TYPE_PRIVATE;
    if ((uintptr_t)s->block >= r->start && (uintptr_t)s->block < r->end)
      s->block_committed = r->state == TSR_REGION_COMMITTED && (r->prot & 3) == 3;
  }
  size_t n = strlen(r->name);
  if (r->type == TSR_REGION_TYPE_IMAGE && n >= 15 && _stricmp(r->name + n - 15, "test_win_vm.exe") == 0)
    s->exe_image = 1;
  return 0;
}

static void address_space_lists_the_arenas(void) {
  void *block = tsr_malloc(5000);
  CHECK(block != NULL);
  seen_t s;
  memset(&s, 0, sizeof s);
  s.arena = (uintptr_t)block & ~(uintptr_t)(TSR_ARENA_SIZE - 1);
  s.block = block;
  s.ordered = 1;
  tsr_address_space_t t;
  CHECK(tsr_address_space(visit, &s, &t) == 0);
  CHECK(s.ordered);
  CHECK_MSG(s.arena_regions >= 2, "arena regions marked as tessera's: %d", s.arena_regions);
  CHECK(s.arena_private == s.arena_regions);
  CHECK(s.block_committed);
  CHECK(s.exe_image);
  CHECK(t.reserved == s.reserved && t.committed == s.committed && t.free == s.free);
  CHECK(t.tessera_reserved >= ((const tsr_arena_t *)s.arena)->slots * TSR_SLOT_SIZE);
  CHECK(t.largest_free > 0 && t.largest_free <= t.free);
  /* the user address space, end to end */
  SYSTEM_INFO si;
  GetSystemInfo(&si);
  uint64_t span = (uintptr_t)si.lpMaximumApplicationAddress + 1 - (uintptr_t)si.lpMinimumApplicationAddress;
  CHECK(t.reserved + t.committed + t.free == span);

  /* against a VirtualQuery walk of our own, right after (tessera's walk
   * took a little scratch memory of its own meanwhile).  Under wine,
   * VirtualQuery calls the free parts of wine's own reserved areas
   * MEM_RESERVE though VirtualAlloc grants them: a reservation that can
   * be made again where it lies is free, for tessera's walk and ours. */
  uint64_t reserved = 0, committed = 0, largest = 0, free_run = 0;
  uintptr_t at = (uintptr_t)si.lpMinimumApplicationAddress;
  while (at <= (uintptr_t)si.lpMaximumApplicationAddress) {
    MEMORY_BASIC_INFORMATION m = query((void *)at);
    if (m.RegionSize == 0) break;
    if (m.State == MEM_RESERVE && m.Type == MEM_PRIVATE && m.AllocationBase == m.BaseAddress) {
      void *again = VirtualAlloc(m.BaseAddress, m.RegionSize, MEM_RESERVE, PAGE_NOACCESS);
      if (again != NULL) VirtualFree(again, 0, MEM_RELEASE);
      if (again == m.BaseAddress) m.State = MEM_FREE;
    }
    if (m.State == MEM_RESERVE) reserved += m.RegionSize;
    if (m.State == MEM_COMMIT) committed += m.RegionSize;
    /* a free range may come back in pieces: neighbours add up */
    free_run = m.State == MEM_FREE ? free_run + m.RegionSize : 0;
    if (free_run > largest) largest = free_run;
    at = (uintptr_t)m.BaseAddress + m.RegionSize;
  }
  uint64_t slack = 4u << 20;
  CHECK_MSG(committed + slack >= t.committed && t.committed + slack >= committed,
            "committed: ours %llu, tessera's %llu", (unsigned long long)committed,
            (unsigned long long)t.committed);
  CHECK(reserved + slack >= t.reserved && t.reserved + slack >= reserved);
  CHECK_MSG(largest + slack >= t.largest_free && t.largest_free + slack >= largest,
            "largest free: ours %llu, tessera's %llu", (unsigned long long)largest,
            (unsigned long long)t.largest_free);
  tsr_free(block);
}

WT_MAIN(WT_CASE(arena_is_one_aligned_reservation), WT_CASE(commit_and_decommit_are_visible),
        WT_CASE(address_space_lists_the_arenas))
