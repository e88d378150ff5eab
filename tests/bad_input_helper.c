/* bad_input_helper.c: one deliberate misuse per run, for test_bad_input.c.
 *
 *   TESSERA_ON_ERROR=continue bad_input_helper CASE
 *
 * Options are read once, when tessera comes up (a constructor may do it
 * before main), so the setting has to be in the environment when the
 * process starts: that is why these cases live in a program of their own
 * rather than in the Criterion worker.
 *
 * Each case surrounds a victim with neighbour blocks holding a pattern,
 * makes one bad call, and then checks that the call was ignored: counted
 * once in tsr_stats_t.errors, under the kind the case expects (its
 * errors_by_kind), the neighbours intact, the heap sound
 * (tsr_check), the allocator still working, and every live byte accounted
 * for.  It prints "addr=0x..." (the address the bad call passed, which
 * tessera's message must name) and "ok" on stdout and exits 0; on a
 * failed check it prints "FAIL: ..." and exits 1.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include <pthread.h>

#include "tsr_helper.h"

#define NEIGHBOURS 64


typedef struct neighbours_s {
  uint8_t *small[NEIGHBOURS];
  size_t small_size;
  uint8_t *large;
  size_t large_size;
} neighbours_t;

static void neighbours_make(neighbours_t *n, size_t size) {
  n->small_size = size;
  for (int i = 0; i < NEIGHBOURS; i++) {
    n->small[i] = tsr_malloc(size);
    tsr_test_fill(n->small[i], size, 1000 + (uint64_t)i);
  }
  n->large_size = (size_t)1 << 20;
  n->large = tsr_malloc(n->large_size);
  tsr_test_fill(n->large, n->large_size, 999);
}

static void neighbours_check_and_free(neighbours_t *n) {
  for (int i = 0; i < NEIGHBOURS; i++) {
    size_t at = tsr_test_verify(n->small[i], n->small_size, 1000 + (uint64_t)i);
    CHECK(at == n->small_size, "neighbour %d (%p) changed at byte %zu\n", i, (void *)n->small[i], at);
    tsr_free(n->small[i]);
  }
  size_t at = tsr_test_verify(n->large, n->large_size, 999);
  CHECK(at == n->large_size, "large neighbour changed at byte %zu\n", at);
  tsr_free(n->large);
}

static void show(const void *bad) {
  char addr[32];
  tsr_test_addr(addr, sizeof addr, bad);
  printf("addr=%s\n", addr);
}

/* ------------------------------------------------------------------------
 * The bad calls
 * ---------------------------------------------------------------------- */

typedef enum { CALL_FREE, CALL_REALLOC, CALL_USABLE } call_t;

/* The error kinds a case accepts, as a mask of tsr_error_kind_t bits. */
#define KIND(k) (1u << TSR_ERROR_##k)

/* The errors went up by one, of a kind in kinds (errors is the sum of the
 * kinds' counts). */
static void counted_once(const tsr_stats_t *before, const tsr_stats_t *after, unsigned kinds) {
  CHECK(after->errors == before->errors + 1, "errors counter went %llu -> %llu, expected +1\n",
        (unsigned long long)before->errors, (unsigned long long)after->errors);
  for (int k = 0; k < TSR_ERROR_KINDS; k++) {
    uint64_t rose = after->errors_by_kind[k] - before->errors_by_kind[k];
    CHECK(rose == 0 || ((kinds >> k) & 1) != 0, "errors of kind %d went up by %llu, a kind not expected\n", k,
          (unsigned long long)rose);
  }
}

/* Make the bad call and check its answer and the kind of error counted. */
static void bad_call(call_t call, void *bad, unsigned kinds) {
  show(bad);
  fflush(stdout);
  tsr_stats_t before = tsr_test_stats();
  switch (call) {
  case CALL_FREE:
    tsr_free(bad);
    break;
  case CALL_REALLOC: {
    errno = 0;
    void *q = tsr_realloc(bad, 100);
    CHECK(q == NULL, "realloc of a bad pointer returned %p\n", q);
    CHECK(errno == EINVAL, "realloc of a bad pointer: errno %d, not EINVAL\n", errno);
    break;
  }
  case CALL_USABLE: {
    size_t u = tsr_usable_size(bad);
    CHECK(u == 0, "usable_size of a bad pointer returned %zu\n", u);
    break;
  }
  }
  tsr_stats_t after = tsr_test_stats();
  counted_once(&before, &after, kinds);
}

static void *thread_free(void *p) {
  tsr_free(p);
  return NULL;
}

static void free_in_thread(void *p) {
  pthread_t t;
  pthread_create(&t, NULL, thread_free, p);
  pthread_join(t, NULL);
}

typedef struct remote_bad_s {
  void *bad;
  tsr_stats_t before, after;
} remote_bad_t;

static void *thread_bad_free(void *arg) {
  remote_bad_t *r = arg;
  show(r->bad);
  fflush(stdout);
  r->before = tsr_test_stats();
  tsr_free(r->bad);
  r->after = tsr_test_stats();
  return NULL;
}

/* The bad free (a double free) made by another thread. */
static void bad_free_in_thread(void *bad) {
  remote_bad_t r = { .bad = bad };
  pthread_t t;
  pthread_create(&t, NULL, thread_bad_free, &r);
  pthread_join(t, NULL);
  counted_once(&r.before, &r.after, KIND(DOUBLE_FREE));
}

/* ------------------------------------------------------------------------
 * Cases
 * ---------------------------------------------------------------------- */

static int run_case(const char *name) {
  neighbours_t nb;
  int stack_var[16] = { 0 };
  if (strcmp(name, "free_stack") == 0) {
    neighbours_make(&nb, 64);
    bad_call(CALL_FREE, &stack_var[4], KIND(BAD_FREE));
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "free_libc") == 0) {
    neighbours_make(&nb, 64);
    void *foreign = malloc(64);
    bad_call(CALL_FREE, foreign, KIND(BAD_FREE));
    free(foreign);   /* still the C library's, still valid */
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "free_interior") == 0) {
    neighbours_make(&nb, 64);
    uint8_t *p = tsr_malloc(64);
    tsr_test_fill(p, 64, 5);
    bad_call(CALL_FREE, p + 16, KIND(BAD_FREE));
    bad_call(CALL_FREE, p + 1, KIND(BAD_FREE));
    CHECK(tsr_owns(p), "the block is still live after a bad free of its interior\n");
    CHECK(tsr_test_verify(p, 64, 5) == 64, "the block changed\n");
    tsr_free(p);
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "double_free") == 0) {
    neighbours_make(&nb, 64);
    uint8_t *p = tsr_malloc(64);
    tsr_free(p);
    bad_call(CALL_FREE, p, KIND(DOUBLE_FREE));
    /* the block must be handed out once, not twice */
    void *a = tsr_malloc(64), *b = tsr_malloc(64);
    CHECK(a != b, "after an ignored double free the same block came back twice\n");
    tsr_free(a);
    tsr_free(b);
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "double_free_thread") == 0) {
    /* freed by its owner, freed again by another thread */
    neighbours_make(&nb, 64);
    uint8_t *p = tsr_malloc(64);
    tsr_free(p);
    bad_free_in_thread(p);
    void *a = tsr_malloc(64), *b = tsr_malloc(64);
    CHECK(a != b, "after an ignored double free the same block came back twice\n");
    tsr_free(a);
    tsr_free(b);
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "double_free_remote_twice") == 0) {
    /* freed by another thread, freed again by a third */
    neighbours_make(&nb, 64);
    uint8_t *p = tsr_malloc(64);
    free_in_thread(p);
    bad_free_in_thread(p);
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "double_free_remote_then_owner") == 0) {
    /* freed by another thread, freed again by its owner */
    neighbours_make(&nb, 64);
    uint8_t *p = tsr_malloc(64);
    free_in_thread(p);
    bad_call(CALL_FREE, p, KIND(DOUBLE_FREE));
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "realloc_freed") == 0) {
    neighbours_make(&nb, 64);
    uint8_t *p = tsr_malloc(64);
    tsr_free(p);
    bad_call(CALL_REALLOC, p, KIND(USE_AFTER_FREE));
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "realloc_interior") == 0) {
    neighbours_make(&nb, 200);
    uint8_t *p = tsr_malloc(200);
    tsr_test_fill(p, 200, 6);
    bad_call(CALL_REALLOC, p + 32, KIND(BAD_FREE));
    CHECK(tsr_owns(p) && tsr_test_verify(p, 200, 6) == 200, "the block changed\n");
    tsr_free(p);
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "free_large_interior") == 0) {
    neighbours_make(&nb, 64);
    uint8_t *l = tsr_malloc(2 << 20);
    tsr_test_fill(l, 2 << 20, 7);
    bad_call(CALL_FREE, l + 4096, KIND(BAD_FREE));
    bad_call(CALL_FREE, l + 16, KIND(BAD_FREE));
    CHECK(tsr_owns(l), "the large block is still live\n");
    CHECK(tsr_test_verify(l, 2 << 20, 7) == (size_t)2 << 20, "the large block changed\n");
    tsr_free(l);
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "double_free_large") == 0) {
    neighbours_make(&nb, 64);
    void *l = tsr_malloc(2 << 20);
    tsr_free(l);
    bad_call(CALL_FREE, l, KIND(BAD_FREE));   /* its memory went back: a pointer like any other */
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "usable_size_freed") == 0) {
    neighbours_make(&nb, 64);
    void *p = tsr_malloc(64);
    tsr_free(p);
    bad_call(CALL_USABLE, p, KIND(USE_AFTER_FREE));
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "usable_size_foreign") == 0) {
    neighbours_make(&nb, 64);
    bad_call(CALL_USABLE, &stack_var[2], KIND(BAD_FREE));
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "double_free_returned_page") == 0) {
    /* the page of the block has gone back to its arena meanwhile */
    enum { N = 3000 };
    static void *b[N];
    neighbours_make(&nb, 48);
    for (int i = 0; i < N; i++) b[i] = tsr_malloc(64);
    for (int i = 0; i < N; i++) tsr_free(b[i]);
    /* a block of a page still in use is a double free; one of a page gone
     * back, a pointer into the arena like any other */
    bad_call(CALL_FREE, b[0], KIND(DOUBLE_FREE) | KIND(BAD_FREE));
    bad_call(CALL_FREE, b[N - 1], KIND(DOUBLE_FREE) | KIND(BAD_FREE));
    neighbours_check_and_free(&nb);
  } else if (strcmp(name, "free_past_last_block") == 0) {
    /* the slack at the end of a span, where no block starts */
    neighbours_make(&nb, 106496);
    uint8_t *p = tsr_malloc(106496);
    uint8_t *first = p;
    /* find block 0 of p's span: spans start on 64 KiB boundaries */
    for (int k = 0; k < 6 && (((uintptr_t)first & 0xffff) != 0 || !tsr_owns(first)); k++)
      first -= 106496;
    CHECK(((uintptr_t)first & 0xffff) == 0 && tsr_owns(first), "block 0 of the span not found\n");
    bad_call(CALL_FREE, first + 6 * 106496, KIND(BAD_FREE));
    tsr_free(p);
    neighbours_check_and_free(&nb);
  } else {
    printf("FAIL: unknown case %s\n", name);
    return 2;
  }
  /* the heap is sound and everything is accounted for (after merging
   * the frees other threads made into this thread's pages) */
  tsr_collect();
  size_t problems = tsr_check();
  CHECK(problems == 0, "tsr_check found %zu problems\n", problems);
  tsr_stats_t s = tsr_test_stats();
  CHECK(s.allocated == 0, "%llu bytes still counted live\n", (unsigned long long)s.allocated);
  CHECK(s.large_live == 0, "%llu large blocks still counted live\n", (unsigned long long)s.large_live);
  /* and it keeps working */
  for (int i = 0; i < 1000; i++) {
    void *p = tsr_malloc((size_t)i * 13);
    CHECK(p != NULL, "malloc failed after the bad call\n");
    tsr_free(p);
  }
  CHECK(tsr_check() == 0, "tsr_check failed after more allocations\n");
  return 0;
}

int main(int argc, char **argv) {
  return tsr_helper_main(argc, argv, run_case, "TESSERA_ON_ERROR=continue");
}
