/* test_win_space.c: why memory runs out, as the address-space report
 * tells it on Windows (issue 19, items 3 and 5).
 *
 * test_win_space: who holds each region (tessera's arenas and large
 * blocks, the program's image, the stacks of two threads, the process
 * heap, a VirtualAlloc and a file mapping of the test's own), the pieces
 * of tsr_space_pieces adding up, and placement in a 32-bit process:
 * large blocks above the arenas, and the address space they held back
 * once they are freed.
 *
 * test_win_space_failure (built from this file with SPACE_FAILURE): run
 * under TESSERA_RESERVE_LIMIT=96M and TESSERA_REPORT=stderr, it asks for
 * 8 MiB blocks until NULL; the report at failure (checked by ctest's
 * regular expression) tells why, and tsr_space_pieces counts the refusal.
 */
#include "win_test.h"

#include <errno.h>
#include <stdint.h>
#include <tessera.h>
#include <windows.h>

#if !defined(SPACE_FAILURE)

#define FIND 9

typedef struct holders_s {
  uintptr_t at[FIND];
  uint32_t holder[FIND];
  int found[FIND];
} holders_t;

static int holders_visit(const tsr_region_t *r, void *arg) {
  holders_t *h = arg;
  for (size_t i = 0; i < FIND; i++)
    if (r->start <= h->at[i] && h->at[i] < r->end) {
      h->holder[i] = r->holder;
      h->found[i] = 1;
    }
  return 0;
}

static volatile uintptr_t thread_local_at;
static HANDLE thread_stop;

static DWORD WINAPI parked_thread(void *arg) {
  (void)arg;
  volatile char local = 1;
  thread_local_at = (uintptr_t)&local;
  WaitForSingleObject(thread_stop, INFINITE);
  return local;
}

static void holders(void) {
  static const char *const what[FIND] = { "small block", "1 MiB block", "8 MiB block", "program code",
                                          "main stack", "thread stack", "process heap", "VirtualAlloc",
                                          "file mapping" };
  static const uint32_t want[FIND] = { TSR_HOLDER_ARENA, TSR_HOLDER_LARGE, TSR_HOLDER_LARGE, TSR_HOLDER_IMAGE,
                                       TSR_HOLDER_STACK, TSR_HOLDER_STACK, TSR_HOLDER_HEAP, TSR_HOLDER_OTHER,
                                       TSR_HOLDER_MAPPED };
  void *small = tsr_malloc(100);
  void *mid = tsr_malloc(1 << 20);
  void *big = tsr_malloc(8 << 20);
  void *heap = HeapAlloc(GetProcessHeap(), 0, 100);
  void *own = VirtualAlloc(NULL, 1 << 20, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
  HANDLE section = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0, 1 << 20, NULL);
  void *view = section ? MapViewOfFile(section, FILE_MAP_WRITE, 0, 0, 1 << 20) : NULL;
  thread_stop = CreateEventW(NULL, TRUE, FALSE, NULL);
  HANDLE t = CreateThread(NULL, 0, parked_thread, NULL, 0, NULL);
  CHECK(small && mid && big && heap && own && view && thread_stop && t);
  while (thread_local_at == 0) Sleep(1);
  volatile char local = 0;
  holders_t h = { { (uintptr_t)small, (uintptr_t)mid, (uintptr_t)big, (uintptr_t)&holders, (uintptr_t)&local,
                    thread_local_at, (uintptr_t)heap, (uintptr_t)own, (uintptr_t)view }, { 0 }, { 0 } };
  CHECK(tsr_address_space(holders_visit, &h, NULL) == 0);
  SetEvent(thread_stop);
  WaitForSingleObject(t, INFINITE);
  CloseHandle(t);
  CloseHandle(thread_stop);
  for (size_t i = 0; i < FIND; i++)
    CHECK_MSG(h.found[i] && h.holder[i] == want[i], "%s at %p: holder %u, not %u", what[i], (void *)h.at[i],
              h.holder[i], want[i]);
  UnmapViewOfFile(view);
  CloseHandle(section);
  VirtualFree(own, 0, MEM_RELEASE);
  HeapFree(GetProcessHeap(), 0, heap);
  tsr_free(small);
  tsr_free(mid);
  tsr_free(big);
}

static void pieces_add_up(void) {
  tsr_space_pieces_t p;
  p.size = sizeof p - 1;
  CHECK(tsr_space_pieces(&p) == EINVAL);
  void *small = tsr_malloc(100);
  void *big = tsr_malloc(8 << 20);
  p.size = sizeof p;
  CHECK(tsr_space_pieces(&p) == 0);
  CHECK(p.version == TSR_SPACE_VERSION);
  uint64_t held = 0, pieces = 0, bytes = 0;
  for (size_t k = 1; k < TSR_HOLDER_COUNT; k++) held += p.held[k];
  for (size_t b = 0; b < TSR_FREE_BUCKETS; b++) {
    pieces += p.pieces[b];
    bytes += p.pieces_bytes[b];
  }
  CHECK(held == p.totals.reserved + p.totals.committed);
  CHECK(p.held[TSR_HOLDER_FREE] == p.totals.free);
  CHECK(pieces == p.free_ranges && bytes == p.totals.free);
  CHECK(p.largest[0] == p.totals.largest_free && p.largest_at[0] == p.totals.largest_free_at);
  for (size_t i = 1; i < TSR_LARGEST_LISTED; i++) CHECK(p.largest[i] <= p.largest[i - 1]);
  CHECK(p.held[TSR_HOLDER_ARENA] > 0 && p.held[TSR_HOLDER_LARGE] >= (8u << 20));
  CHECK(p.held[TSR_HOLDER_IMAGE] > 0 && p.held[TSR_HOLDER_STACK] > 0 && p.held[TSR_HOLDER_HEAP] > 0);
  /* what the walk calls free the OS grants (under wine too: the free
   * parts of wine's reserved areas are free in the walk) */
  uint64_t probed = p.largest[0] < ((uint64_t)4 << 30) ? p.largest[0] : (uint64_t)4 << 30;
  CHECK_MSG(p.reservable + 65536 >= probed, "largest reservation %llu, largest free range %llu",
            (unsigned long long)p.reservable, (unsigned long long)p.largest[0]);
  CHECK(p.reserve_left == UINT64_MAX && p.refusals == 0);
  tsr_free(small);
  tsr_free(big);
}

/* A 32-bit process: arenas low, large blocks high; freed large blocks
 * give their address space back (segments released, nothing cached
 * after tsr_collect), so the largest free range is what it was. */
static void placement(void) {
  if (sizeof(void *) != 4) return;
  tsr_collect();
  tsr_space_pieces_t before = { .size = sizeof before };
  CHECK(tsr_space_pieces(&before) == 0);
  void *small = tsr_malloc(64);
  void *blocks[40];
  for (int i = 0; i < 40; i++) {
    blocks[i] = tsr_malloc((size_t)(i % 2 ? 300 << 10 : 6 << 20));
    CHECK(blocks[i] != NULL);
    CHECK_MSG((uintptr_t)blocks[i] > (uintptr_t)small, "large block %p below the arena's %p", blocks[i], small);
  }
  for (int i = 0; i < 40; i += 3) tsr_free(blocks[i]);
  for (int i = 0; i < 40; i++)
    if (i % 3 != 0) tsr_free(blocks[i]);
  tsr_free(small);
  tsr_collect();
  tsr_space_pieces_t after = { .size = sizeof after };
  CHECK(tsr_space_pieces(&after) == 0);
  CHECK_MSG(after.reservable + (8u << 20) >= before.reservable, "largest reservation %llu before, %llu after",
            (unsigned long long)before.reservable, (unsigned long long)after.reservable);
  CHECK_MSG(after.held[TSR_HOLDER_LARGE] <= (16u << 20), "%llu bytes still held for large blocks",
            (unsigned long long)after.held[TSR_HOLDER_LARGE]);
}

WT_MAIN(WT_CASE(holders), WT_CASE(pieces_add_up), WT_CASE(placement))

#else

static void failure(void) {
  const char *v = getenv("TESSERA_RESERVE_LIMIT");
  CHECK_MSG(v != NULL && strcmp(v, "96M") == 0, "run with TESSERA_RESERVE_LIMIT=96M");
  static void *blocks[64];
  size_t n = 0;
  while (n < 64 && (blocks[n] = tsr_malloc((size_t)8 << 20)) != NULL) n++;
  CHECK_MSG(n > 0 && n < 64 && errno == ENOMEM, "%zu blocks, errno %d", n, errno);
  tsr_space_pieces_t p = { .size = sizeof p };
  CHECK(tsr_space_pieces(&p) == 0);
  CHECK_MSG(p.refusals == 1 && p.refused_size == (8u << 20) && p.refused_large == 1,
            "refusals %llu, last %llu bytes, large %u", (unsigned long long)p.refusals,
            (unsigned long long)p.refused_size, p.refused_large);
  CHECK(p.reserve_left < (8u << 20));
  for (size_t i = 0; i < n; i++) tsr_free(blocks[i]);
}

WT_MAIN(WT_CASE(failure))

#endif
