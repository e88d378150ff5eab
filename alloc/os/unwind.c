/* unwind.c: call-stack capture for the allocation records (os.h:
 * tsri_os_stack_capture).
 *
 * On x86-64 Linux the walk is unwind_x86.c's: a cache of
 * per-return-address rules read from the objects' own unwind tables, tens
 * of nanoseconds a stack.  Whatever it cannot follow exactly as libgcc
 * would (signal frames, CFA expressions, a frame it finds implausible) it
 * hands back, and the whole capture is redone here by libgcc.
 *
 * libgcc's _Unwind_Backtrace follows the DWARF call-frame information every
 * x86-64 and AArch64 object carries, so it is right where frame pointers
 * are missing, but it costs about a microsecond for a dozen frames.  It
 * does not allocate: since GCC 12 and glibc 2.35 it finds a frame's unwind
 * table through _dl_find_object, which takes no lock.  (glibc's
 * backtrace() is not used: its first call loads libgcc_s with dlopen,
 * which allocates.)
 */
#include "os.h"
#include "unwind_x86.h"

#include <string.h>

#include <unwind.h>

typedef struct capture_s {
  void **frames;
  size_t max, count, skip;
} capture_t;

static _Unwind_Reason_Code capture_frame(struct _Unwind_Context *ctx, void *arg) {
  capture_t *c = arg;
  uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
  if (ip == 0) return _URC_END_OF_STACK;
  if (c->skip > 0) {
    c->skip--;
    return _URC_NO_REASON;
  }
  c->frames[c->count++] = (void *)ip;
  return c->count == c->max ? _URC_END_OF_STACK : _URC_NO_REASON;
}

/* libgcc's walk, inlined into the capture function that calls it, so that
 * the first frame it reports is that function's own: dropped with `skip`. */
static inline __attribute__((always_inline)) size_t libgcc_capture(void **frames, size_t max, size_t skip) {
  capture_t c = { frames, max, 0, skip + 1 };
  _Unwind_Backtrace(capture_frame, &c);
  return c.count;
}

/* noinline: both walks count this function's frame as the first to drop. */
__attribute__((noinline)) size_t tsri_os_stack_capture(void **frames, size_t max, size_t skip) {
  if (max == 0) return 0;
#if TSRI_UNWIND_FAST
  /* taking our own frame address gives this function a frame pointer,
   * which is where the fast walk starts */
  size_t n = tsri_unwind_walk(__builtin_frame_address(0), frames, max, skip, NULL);
  if (n != TSRI_UNWIND_FALLBACK) return n;
#endif
  return libgcc_capture(frames, max, skip);
}

#if TSRI_OS_STACK_MEMO   /* implies TSRI_UNWIND_FAST */
/* noinline: libgcc's walk, when the fast one cannot answer, starts in
 * this function, whose frames the caller drops. */
__attribute__((noinline)) size_t tsri_os_stack_capture_memo(void **frames, size_t max,
                                                            tsri_os_stack_memo_t *memo, void *fp,
                                                            uintptr_t key) {
  memo->pending = 0;
  if (max == 0) return 0;
  size_t i = tsri_os_memo_way((uintptr_t)fp, key);
  tsri_os_memo_way_t *w = &memo->way[i];
  w->fp = 0;
  size_t n = tsri_unwind_walk(fp, frames, max, 0, w);
  if (n != TSRI_UNWIND_FALLBACK) {
    if (w->reads != UINT32_MAX) {
      /* the first return address equal to key is the key's own (os.h);
       * the saved RBPs noted are stack addresses, never equal to it.  Not
       * the first read: fp's function may return to the program directly
       * (entered by a tail jump) or through tessera's frames, and only that
       * read tells which */
      for (uint32_t r = 1; r < w->reads; r++) {
        if (w->val[r] == key) {
          memmove(&w->off[r], &w->off[r + 1], (w->reads - r - 1) * sizeof w->off[0]);
          memmove(&w->val[r], &w->val[r + 1], (w->reads - r - 1) * sizeof w->val[0]);
          w->reads--;
          break;
        }
      }
      w->fp = (uintptr_t)fp;
      w->key = key;
      w->tag = 0;
      memo->pending = (uint32_t)i + 1;
    }
    return n;
  }
  return libgcc_capture(frames, max, 0);
}

void tsri_os_stack_memo_tag(tsri_os_stack_memo_t *memo, uint32_t tag) {
  if (memo->pending != 0) memo->way[memo->pending - 1].tag = tag;
  memo->pending = 0;
}
#endif
