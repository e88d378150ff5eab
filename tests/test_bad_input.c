/* test_bad_input.c: deliberate misuse, one case per test.
 *
 * With the default TESSERA_ON_ERROR (abort), each bad call must kill the
 * process with SIGABRT after printing a message that names tessera and the
 * address.  Each test checks that twice: in a child it forks (stderr sent
 * to a pipe, so the message can be read), and then in the test process
 * itself, which Criterion expects to die of SIGABRT.
 *
 * With TESSERA_ON_ERROR=continue the call is ignored instead; those cases
 * run in bad_input_helper (see there for what it checks), started with the
 * setting in its environment, since options are read once at start-up.
 */
#include "tsr_criterion.h"

#include <pthread.h>

#include "tsr_test.h"

/* ------------------------------------------------------------------------
 * Abort mode
 * ---------------------------------------------------------------------- */

typedef enum { DO_FREE, DO_REALLOC, DO_USABLE, DO_FREE_IN_THREAD } action_t;

typedef struct misuse_s {
  action_t action;
  void *bad;
} misuse_t;

static void *thread_free(void *p) {
  tsr_free(p);
  return NULL;
}

static void free_in_thread(void *p) {
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, thread_free, p), 0);
  pthread_join(t, NULL);
}

static void misuse_run(void *arg) {
  const misuse_t *m = arg;
  switch (m->action) {
  case DO_FREE: tsr_free(m->bad); break;
  case DO_REALLOC: {
    void *q = tsr_realloc(m->bad, 100);
    (void)q;
    break;
  }
  case DO_USABLE: {
    volatile size_t u = tsr_usable_size(m->bad);
    (void)u;
    break;
  }
  case DO_FREE_IN_THREAD: free_in_thread(m->bad); break;
  }
}

/* The bad call must abort with a message naming the address: first in a
 * child (to read the message), then here (Criterion checks the signal). */
static void expect_abort(action_t action, void *bad) {
  misuse_t m = { action, bad };
  tsr_child_t child;
  cr_assert(tsr_test_run_child(misuse_run, &m, &child), "fork failed");
  cr_assert(WIFSIGNALED(child.status) && WTERMSIG(child.status) == SIGABRT,
            "the bad call did not abort (status %#x); stderr:\n%s", child.status, child.err);
  cr_assert_not_null(strstr(child.err, "tessera"), "no message from tessera; stderr:\n%s",
                     child.err);
  char addr[32];
  tsr_test_addr(addr, sizeof addr, bad);
  cr_assert(tsr_test_names_addr(child.err, bad), "the message does not name %s; stderr:\n%s", addr,
            child.err);
  tsr_test_no_core();
  misuse_run(&m);
  cr_assert_fail("the bad call returned");
}

#define ABORTS .signal = SIGABRT

Test(bad_input, free_of_stack_pointer, ABORTS) {
  char buf[64];
  memset(buf, 0, sizeof buf);
  expect_abort(DO_FREE, buf + 16);
}

Test(bad_input, free_of_libc_pointer, ABORTS) {
  void *foreign = malloc(100);   /* the C library's heap */
  cr_assert_not_null(foreign);
  expect_abort(DO_FREE, foreign);
}

Test(bad_input, free_of_large_libc_pointer, ABORTS) {
  void *foreign = malloc(4 << 20);   /* mmap'ed by the C library */
  cr_assert_not_null(foreign);
  expect_abort(DO_FREE, foreign);
}

Test(bad_input, free_of_wild_pointer, ABORTS) {
  expect_abort(DO_FREE, (void *)(uintptr_t)0x1000);
}

Test(bad_input, free_of_interior_pointer_plus_1, ABORTS) {
  uint8_t *p = tsr_malloc(64);
  expect_abort(DO_FREE, p + 1);
}

Test(bad_input, free_of_interior_pointer_plus_16, ABORTS) {
  uint8_t *p = tsr_malloc(64);
  expect_abort(DO_FREE, p + 16);
}

Test(bad_input, free_of_interior_pointer_of_large_block, ABORTS) {
  uint8_t *l = tsr_malloc(2 << 20);
  cr_assert_not_null(l);
  expect_abort(DO_FREE, l + 4096);
}

Test(bad_input, free_of_interior_pointer_of_large_block_unaligned, ABORTS) {
  uint8_t *l = tsr_malloc(2 << 20);
  cr_assert_not_null(l);
  expect_abort(DO_FREE, l + 24);
}

/* A pointer into the arena's own records (its first slots). */
Test(bad_input, free_of_pointer_into_arena_records, ABORTS) {
  uint8_t *p = tsr_malloc(64);
  uintptr_t arena = (uintptr_t)p & ~(((uintptr_t)1 << 26) - 1);
  cr_assert_neq(arena, (uintptr_t)p);
  expect_abort(DO_FREE, (void *)(arena + 64));
}

Test(bad_input, double_free, ABORTS) {
  void *keep = tsr_malloc(64);   /* keeps the page live */
  void *p = tsr_malloc(64);
  tsr_free(p);
  (void)keep;
  expect_abort(DO_FREE, p);
}

/* First free by the owner, second by another thread. */
Test(bad_input, double_free_from_another_thread, ABORTS) {
  void *keep = tsr_malloc(64);
  void *p = tsr_malloc(64);
  tsr_free(p);
  (void)keep;
  expect_abort(DO_FREE_IN_THREAD, p);
}

/* First free by another thread, second by yet another thread. */
Test(bad_input, double_free_by_two_other_threads, ABORTS) {
  void *keep = tsr_malloc(64);
  void *p = tsr_malloc(64);
  free_in_thread(p);
  (void)keep;
  expect_abort(DO_FREE_IN_THREAD, p);
}

/* First free by another thread, second by the owner. */
Test(bad_input, double_free_remote_then_owner, ABORTS) {
  void *keep = tsr_malloc(64);
  void *p = tsr_malloc(64);
  free_in_thread(p);
  (void)keep;
  expect_abort(DO_FREE, p);
}

Test(bad_input, double_free_of_large_block, ABORTS) {
  void *l = tsr_malloc(2 << 20);
  tsr_free(l);
  expect_abort(DO_FREE, l);
}

/* The block's page went back to the arena before the second free. */
Test(bad_input, double_free_after_page_returned, ABORTS) {
  enum { N = 3000 };
  static void *b[N];
  for (int i = 0; i < N; i++) b[i] = tsr_malloc(64);
  for (int i = 0; i < N; i++) tsr_free(b[i]);
  expect_abort(DO_FREE, b[0]);
}

Test(bad_input, realloc_of_freed_block, ABORTS) {
  void *keep = tsr_malloc(64);
  void *p = tsr_malloc(64);
  tsr_free(p);
  (void)keep;
  expect_abort(DO_REALLOC, p);
}

Test(bad_input, realloc_of_freed_large_block, ABORTS) {
  void *l = tsr_malloc(2 << 20);
  tsr_free(l);
  expect_abort(DO_REALLOC, l);
}

Test(bad_input, realloc_of_interior_pointer, ABORTS) {
  uint8_t *p = tsr_malloc(200);
  expect_abort(DO_REALLOC, p + 32);
}

Test(bad_input, realloc_of_foreign_pointer, ABORTS) {
  void *foreign = malloc(100);
  expect_abort(DO_REALLOC, foreign);
}

Test(bad_input, usable_size_of_freed_block, ABORTS) {
  void *keep = tsr_malloc(64);
  void *p = tsr_malloc(64);
  tsr_free(p);
  (void)keep;
  expect_abort(DO_USABLE, p);
}

Test(bad_input, usable_size_of_freed_large_block, ABORTS) {
  void *l = tsr_malloc(2 << 20);
  tsr_free(l);
  expect_abort(DO_USABLE, l);
}

Test(bad_input, usable_size_of_foreign_pointer, ABORTS) {
  int local = 0;
  expect_abort(DO_USABLE, &local);
}

/* Good calls next to bad ones must not be reported: tsr_owns never
 * reports, usable_size of a live block does not. */
Test(bad_input, good_calls_are_not_reported) {
  int local = 0;
  void *foreign = malloc(10);
  cr_assert_eq(tsr_owns(&local), 0);
  cr_assert_eq(tsr_owns(foreign), 0);
  void *p = tsr_malloc(10);
  cr_assert_geq(tsr_usable_size(p), 10);
  tsr_free(p);
  cr_assert_eq(tsr_owns(p), 0);
  free(foreign);
  cr_assert_eq(tsr_test_stats().errors, 0);
}

/* ------------------------------------------------------------------------
 * Continue mode
 * ---------------------------------------------------------------------- */

static void expect_ignored(const char *name) {
  char *argv[] = { (char *)TSR_BAD_INPUT_HELPER, (char *)name, NULL };
  char *env[] = { (char *)"TESSERA_ON_ERROR=continue", NULL };
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  tsr_child_t child;
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &child), "could not start the helper");
  char text[8192];
  rewind(out);
  size_t n = fread(text, 1, sizeof text - 1, out);
  text[n] = 0;
  fclose(out);
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0,
            "case %s: the helper failed (status %#x)\nstdout:\n%s\nstderr:\n%s", name, child.status,
            text, child.err);
  cr_assert_not_null(strstr(text, "ok\n"), "case %s: no ok\n%s", name, text);
  /* every bad address it used is named in a message */
  size_t reported = 0;
  for (const char *line = strstr(text, "addr="); line != NULL; line = strstr(line + 1, "addr=")) {
    char addr[32];
    sscanf(line + 5, "%31s", addr);
    cr_assert_not_null(strstr(child.err, addr), "case %s: no message names %s; stderr:\n%s", name,
                       addr, child.err);
    reported++;
  }
  cr_assert_gt(reported, 0);
  /* one message per bad call, none for the good ones */
  size_t messages = 0;
  for (const char *s = strstr(child.err, "tessera: error"); s != NULL;
       s = strstr(s + 1, "tessera: error"))
    messages++;
  cr_assert_eq(messages, reported, "case %s: %zu bad calls but %zu error messages:\n%s", name,
               reported, messages, child.err);
}

Test(bad_input_continue, free_of_stack_pointer) { expect_ignored("free_stack"); }
Test(bad_input_continue, free_of_libc_pointer) { expect_ignored("free_libc"); }
Test(bad_input_continue, free_of_interior_pointer) { expect_ignored("free_interior"); }
Test(bad_input_continue, free_of_interior_pointer_of_large_block) { expect_ignored("free_large_interior"); }
Test(bad_input_continue, free_past_last_block_of_span) { expect_ignored("free_past_last_block"); }
Test(bad_input_continue, double_free) { expect_ignored("double_free"); }
Test(bad_input_continue, double_free_from_another_thread) { expect_ignored("double_free_thread"); }
Test(bad_input_continue, double_free_by_two_other_threads) { expect_ignored("double_free_remote_twice"); }
Test(bad_input_continue, double_free_remote_then_owner) { expect_ignored("double_free_remote_then_owner"); }
Test(bad_input_continue, double_free_of_large_block) { expect_ignored("double_free_large"); }
Test(bad_input_continue, double_free_after_page_returned) { expect_ignored("double_free_returned_page"); }
Test(bad_input_continue, realloc_of_freed_block) { expect_ignored("realloc_freed"); }
Test(bad_input_continue, realloc_of_interior_pointer) { expect_ignored("realloc_interior"); }
Test(bad_input_continue, usable_size_of_freed_block) { expect_ignored("usable_size_freed"); }
Test(bad_input_continue, usable_size_of_foreign_pointer) { expect_ignored("usable_size_foreign"); }

/* The helper refuses a case it does not know: the harness itself works. */
Test(bad_input_continue, helper_rejects_unknown_case) {
  char *argv[] = { (char *)TSR_BAD_INPUT_HELPER, (char *)"no_such_case", NULL };
  tsr_child_t child;
  int devnull = open("/dev/null", O_WRONLY);
  cr_assert(tsr_test_run_exec(argv, NULL, devnull, &child));
  close(devnull);
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 2);
}
