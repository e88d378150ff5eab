/* test_mesh.c: meshing (TESSERA_MESH=on, set by tests/CMakeLists.txt).
 *
 * Sparse pages are made by filling many spans of one class and keeping a
 * block in `keep` at random; tsr_collect meshes all it can.  The tests
 * check that memory goes back and every kept block keeps its contents
 * (survivors at random, or every other block as a program left them);
 * that no write is lost while other threads write to the pages being
 * copied; that freeing takes pairs apart and the pages serve allocations
 * again; that a fork child gets memory of its own, as it was at fork,
 * while the parent keeps writing; and that faults that are not meshing's
 * reach the program's own SIGSEGV handler.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#include "../bench/bench.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define COUNT 60000

typedef struct sparse_s {
  unsigned char **kept;
  size_t n, size;
} sparse_t;

/* COUNT blocks of `size`, one in `keep` kept at random, each kept block
 * filled with its own pattern; the rest freed. */
static sparse_t make_sparse(size_t size, unsigned keep, uint64_t seed) {
  unsigned char **all = tsr_malloc(COUNT * sizeof *all);
  sparse_t s = { tsr_malloc(COUNT * sizeof *s.kept), 0, size };
  cr_assert(all != NULL && s.kept != NULL);
  for (size_t i = 0; i < COUNT; i++) {
    all[i] = tsr_malloc(size);
    cr_assert(all[i] != NULL);
    memset(all[i], 0x5a, size);
  }
  for (size_t i = 0; i < COUNT; i++) {
    if (tsr_test_rand(&seed) % keep == 0) {
      s.kept[s.n] = all[i];
      tsr_test_fill(all[i], size, s.n);
      s.n++;
    } else {
      tsr_free(all[i]);
    }
  }
  tsr_free(all);
  return s;
}

static void free_sparse(sparse_t *s) {
  for (size_t i = 0; i < s->n; i++) tsr_free(s->kept[i]);
  tsr_free(s->kept);
  s->n = 0;
}

/* Kept blocks whose contents changed. */
static size_t damaged(const sparse_t *s) {
  size_t bad = 0;
  for (size_t i = 0; i < s->n; i++) bad += tsr_test_verify(s->kept[i], s->size, i) != s->size;
  return bad;
}

static tsr_pins_t figures(void) {
  tsr_pins_t t;
  tsr_pins(&t, NULL, 0);
  return t;
}

/* The resident set counting a page mapped twice once, in KiB: the
 * benchmarks' own figure (bench/bench.h), VmRSS less RssShmem plus
 * Pss_Shmem. */
static long resident_kib(void) { return (long)(bench_rss_bytes() / 1024); }

Test(mesh, gives_back_pages_and_keeps_every_block) {
  sparse_t s = make_sparse(64, 16, 1);
  long before = resident_kib();
  tsr_collect();
  tsr_pins_t t = figures();
  cr_assert_eq(t.mesh_state, TSR_MESH_ON, "meshing state %u", t.mesh_state);
  cr_assert_gt(t.meshes, 100, "only %llu pairs among %zu sparse spans' OS pages", (unsigned long long)t.meshes,
               s.n);
  /* n virtual pages on one physical page save n - 1 */
  uint64_t saved_pages = t.mesh_saved / (uint64_t)sysconf(_SC_PAGESIZE);
  cr_assert(t.meshed_pages > saved_pages && t.meshed_pages <= 2 * saved_pages, "%llu pages meshed, %llu saved",
            (unsigned long long)t.meshed_pages, (unsigned long long)saved_pages);
  cr_assert_gt(t.mesh_passes, 0);
  long after = resident_kib();
#if !TSR_TEST_SHADOW
  cr_assert_lt(after, before - (long)(t.mesh_saved / 1024) / 2,
               "resident %ld KiB -> %ld KiB; meshing says %llu KiB saved", before, after,
               (unsigned long long)(t.mesh_saved / 1024));
#else
  (void)before;
  (void)after;
#endif
  cr_assert_eq(damaged(&s), 0);
  cr_assert_eq(tsr_check(), 0);
  /* written after meshing, each block through its own address */
  for (size_t i = 0; i < s.n; i++) tsr_test_fill(s.kept[i], s.size, i + 7);
  for (size_t i = 0; i < s.n; i++)
    cr_assert_eq(tsr_test_verify(s.kept[i], s.size, i + 7), s.size, "block %zu damaged", i);
  free_sparse(&s);
  t = figures();
  cr_assert_eq(t.meshed_pages, 0, "%llu OS pages still meshed with every block freed",
               (unsigned long long)t.meshed_pages);
  cr_assert_eq(t.unmeshes, t.meshes);
  cr_assert_eq(tsr_check(), 0);
}

/* Larger blocks straddle OS pages: a block live on two pages pins both. */
Test(mesh, keeps_blocks_that_straddle_os_pages) {
  sparse_t s = make_sparse(1008, 6, 2);
  tsr_collect();
  cr_assert_gt(figures().meshes, 10);
  cr_assert_eq(damaged(&s), 0);
  free_sparse(&s);
  cr_assert_eq(figures().meshed_pages, 0);
  cr_assert_eq(tsr_check(), 0);
}

/* Survivors in allocation order: every other block of a class kept, so
 * that each span holds a block at every other offset.  Without phases
 * (page.c) the survivors of every span would sit at the same offsets of
 * their OS pages and none would pair; with them half the spans are one
 * block further in, and each pairs with a span of the other phase. */
static void every_other_meshes(size_t size) {
  const size_t total = (size_t)16 << 20, n = total / size;
  unsigned char **v = tsr_malloc(n * sizeof *v);
  cr_assert(v != NULL);
  size_t at_slot_start = 0;
  for (size_t i = 0; i < n; i++) {
    v[i] = tsr_malloc(size);
    cr_assert(v[i] != NULL);
    cr_assert_eq((uintptr_t)v[i] % size, 0, "block %p of %zu bytes lost its natural alignment", (void *)v[i], size);
    at_slot_start += ((uintptr_t)v[i] & 0xffff) == 0;
  }
  /* the spans of phase 0 begin with a block, those of phase 1 do not */
  size_t spans = total / 65536;
  cr_assert(at_slot_start > spans / 8 && at_slot_start < spans - spans / 8,
            "%zu of about %zu spans of %zu-byte blocks start with a block", at_slot_start, spans, size);
  sparse_t s = { v, 0, size };
  for (size_t i = 0; i < n; i++) {
    if (i % 2 == 0) {
      tsr_free(v[i]);
      continue;
    }
    v[s.n] = v[i];
    tsr_test_fill(v[s.n], size, s.n);
    s.n++;
  }
  tsr_pins_t before = figures();
  tsr_collect();
  tsr_pins_t t = figures();
  /* a pair per two spans of opposite phase: half the spans' pages back,
   * a quarter at least as phases fall */
  cr_assert_geq(t.mesh_saved - before.mesh_saved, total / 4, "%llu KiB of %zu KiB saved",
                (unsigned long long)((t.mesh_saved - before.mesh_saved) / 1024), total / 1024);
  cr_assert_eq(damaged(&s), 0);
  cr_assert_eq(tsr_check(), 0);
  free_sparse(&s);
  cr_assert_eq(figures().meshed_pages, 0);
}

Test(mesh, survivors_of_every_other_block_mesh) {
  every_other_meshes(512);
  every_other_meshes(1024);
  every_other_meshes(64);
}

/* ---- writers while pages are copied ------------------------------------ */

typedef struct writer_s {
  pthread_t thread;
  sparse_t *s;
  size_t from, to;              /* its blocks */
  uint64_t *count;              /* what each of them must hold */
  atomic_int *stop;
} writer_t;

/* The first word of kept block i, which writers count in; read and
 * written relaxed, so that a reader in another thread is no data race. */
static uint64_t count_at(const sparse_t *s, size_t i) {
  return __atomic_load_n((const uint64_t *)(const void *)s->kept[i], __ATOMIC_RELAXED);
}

/* Add one to the first word of each of its blocks, round after round (a
 * load and a store, as a plain increment is): a write lost in a copy
 * leaves the block behind its count for good. */
static void *writer_main(void *arg) {
  writer_t *w = arg;
  while (!atomic_load_explicit(w->stop, memory_order_relaxed)) {
    for (size_t i = w->from; i < w->to; i++) {
      __atomic_store_n((uint64_t *)(void *)w->s->kept[i], count_at(w->s, i) + 1, __ATOMIC_RELAXED);
      w->count[i]++;
    }
  }
  return NULL;
}

static void start_writers(writer_t *w, int n, sparse_t *s, uint64_t *count, atomic_int *stop) {
  atomic_store(stop, 0);
  for (int t = 0; t < n; t++) {
    w[t] = (writer_t){ 0, s, s->n * (size_t)t / (size_t)n, s->n * (size_t)(t + 1) / (size_t)n, count, stop };
    cr_assert_eq(pthread_create(&w[t].thread, NULL, writer_main, &w[t]), 0);
  }
}

static void stop_writers(writer_t *w, int n, atomic_int *stop) {
  atomic_store(stop, 1);
  for (int t = 0; t < n; t++) pthread_join(w[t].thread, NULL);
}

Test(mesh, no_write_is_lost_while_pages_are_copied) {
  enum { WRITERS = 2, BATCHES = 6 };
  uint64_t meshed = 0;
  for (int b = 0; b < BATCHES; b++) {
    sparse_t s = make_sparse(64, 12, 100 + (uint64_t)b);
    uint64_t *count = calloc(s.n, sizeof *count);
    cr_assert(count != NULL);
    for (size_t i = 0; i < s.n; i++) *(uint64_t *)(void *)s.kept[i] = 0;
    writer_t w[WRITERS];
    atomic_int stop;
    start_writers(w, WRITERS, &s, count, &stop);
    uint64_t before = figures().meshes;
    tsr_collect();   /* meshes this batch's pages while they are written */
    meshed += figures().meshes - before;
    stop_writers(w, WRITERS, &stop);
    for (size_t i = 0; i < s.n; i++)
      cr_assert_eq(*(uint64_t *)(void *)s.kept[i], count[i], "batch %d block %zu holds %llu, written %llu times",
                   b, i, (unsigned long long)*(uint64_t *)(void *)s.kept[i], (unsigned long long)count[i]);
    free(count);
    free_sparse(&s);
  }
  cr_assert_gt(meshed, 0, "nothing was meshed while written");
  cr_assert_eq(tsr_check(), 0);
}

/* ---- freeing ------------------------------------------------------------- */

static void *free_odd(void *arg) {
  sparse_t *s = arg;
  for (size_t i = 1; i < s->n; i += 2) tsr_free(s->kept[i]);
  return NULL;
}

Test(mesh, freeing_takes_pairs_apart_and_pages_serve_again) {
  sparse_t s = make_sparse(48, 16, 3);
  tsr_collect();
  tsr_pins_t t = figures();
  cr_assert_gt(t.meshes, 0);
  /* half the blocks freed by another thread (remote frees into frozen
   * pages), the rest here */
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, free_odd, &s), 0);
  pthread_join(th, NULL);
  for (size_t i = 0; i < s.n; i += 2) {
    cr_assert_eq(tsr_test_verify(s.kept[i], s.size, i), s.size, "block %zu damaged", i);
    tsr_free(s.kept[i]);
  }
  tsr_free(s.kept);
  tsr_collect();
  t = figures();
  cr_assert_eq(t.meshed_pages, 0, "%llu OS pages still meshed", (unsigned long long)t.meshed_pages);
  cr_assert_eq(t.unmeshes, t.meshes);
  /* every page serves allocations again, none overlapping another */
  unsigned char **again = tsr_malloc(COUNT * sizeof *again);
  for (size_t i = 0; i < COUNT; i++) {
    again[i] = tsr_malloc(48);
    tsr_test_fill(again[i], 48, i);
  }
  for (size_t i = 0; i < COUNT; i++) {
    cr_assert_eq(tsr_test_verify(again[i], 48, i), 48, "block %zu overwritten", i);
    tsr_free(again[i]);
  }
  tsr_free(again);
  cr_assert_eq(tsr_check(), 0);
}

/* ---- fork ---------------------------------------------------------------- */

/* The child: its blocks hold what they held at fork and stay so while
 * the parent keeps writing; what it writes stays its own. */
static int child_checks(sparse_t *s, const uint64_t *at_fork_min) {
  uint64_t *now = tsr_malloc(s->n * sizeof *now);
  if (now == NULL) return 1;
  for (size_t i = 0; i < s->n; i++) {
    now[i] = *(uint64_t *)(void *)s->kept[i];
    if (now[i] < at_fork_min[i]) return 2;
  }
  tsr_test_sleep_ms(100);
  for (size_t i = 0; i < s->n; i++)
    if (*(uint64_t *)(void *)s->kept[i] != now[i]) return 3;
  for (size_t i = 0; i < s->n; i++) memset(s->kept[i], 0xee, s->size);
  tsr_free(now);
  return tsr_check() == 0 ? 0 : 4;
}

Test(mesh, fork_child_gets_its_own_memory_as_it_was) {
  sparse_t s = make_sparse(64, 12, 4);
  for (size_t i = 0; i < s.n; i++) *(uint64_t *)(void *)s.kept[i] = 0;
  tsr_collect();
  cr_assert_gt(figures().meshes, 0);
  uint64_t *count = calloc(s.n, sizeof *count), *seen = calloc(s.n, sizeof *seen);
  cr_assert(count != NULL && seen != NULL);
  writer_t w[2];
  atomic_int stop;
  start_writers(w, 2, &s, count, &stop);
  for (int round = 0; round < 3; round++) {
    for (size_t i = 0; i < s.n; i++) seen[i] = count_at(&s, i);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) _exit(child_checks(&s, seen));
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child of round %d: status %#x", round, status);
  }
  stop_writers(w, 2, &stop);
  for (size_t i = 0; i < s.n; i++) {
    const uint64_t *word = (const uint64_t *)(void *)s.kept[i];
    cr_assert_eq(word[0], count[i], "block %zu: %llu, written %llu times", i, (unsigned long long)word[0],
                 (unsigned long long)count[i]);
    for (size_t j = sizeof(uint64_t); j < s.size; j++)
      cr_assert_eq(s.kept[i][j], tsr_test_byte(i, j), "block %zu byte %zu: the child's write reached the parent", i,
                   j);
  }
  free(count);
  free(seen);
  free_sparse(&s);
  cr_assert_eq(tsr_check(), 0);
}

/* Fork after fork while threads write to meshed pages: each fork's fence
 * stops the writers in tessera's fault handler, which reads who forked,
 * and the next fork sets that again while a writer that saw the last
 * fence may still be reading it.  With nothing else between the writers
 * and the forking thread, ThreadSanitizer found that a data race (the
 * tsan stage's meshing pass, once in 22 runs).  Every write lands. */
Test(mesh, writers_stopped_by_one_fork_while_the_next_is_made) {
  enum { FORKS = 20 };
  sparse_t s = make_sparse(64, 12, 5);
  for (size_t i = 0; i < s.n; i++) *(uint64_t *)(void *)s.kept[i] = 0;
  tsr_collect();
  cr_assert_gt(figures().meshes, 0);
  uint64_t *count = calloc(s.n, sizeof *count);
  cr_assert(count != NULL);
  writer_t w[2];
  atomic_int stop;
  start_writers(w, 2, &s, count, &stop);
  for (int round = 0; round < FORKS; round++) {
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) _exit(0);
    int status = 0;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child of round %d: status %#x", round, status);
  }
  stop_writers(w, 2, &stop);
  for (size_t i = 0; i < s.n; i++)
    cr_assert_eq(*(uint64_t *)(void *)s.kept[i], count[i], "block %zu: %llu, written %llu times", i,
                 (unsigned long long)*(uint64_t *)(void *)s.kept[i], (unsigned long long)count[i]);
  free(count);
  free_sparse(&s);
  cr_assert_eq(tsr_check(), 0);
}

/* Meshing, then everything freed (nothing meshed at fork), then a fork:
 * parent and child mesh again, each into a file of its own.  Sharing the
 * parent's, both would take the same file pages and write into each
 * other's blocks. */
static int mesh_again_and_check(uint64_t seed) {
  sparse_t s = make_sparse(64, 16, seed);
  tsr_collect();
  if (figures().meshed_pages == 0) return 1;
  tsr_test_sleep_ms(100);   /* the other process meshes and writes meanwhile */
  size_t bad = damaged(&s);
  free_sparse(&s);
  return bad == 0 ? 0 : 2;
}

Test(mesh, fork_after_everything_unmeshed_meshes_apart) {
  sparse_t s = make_sparse(64, 16, 7);
  tsr_collect();
  cr_assert_gt(figures().meshes, 0);
  free_sparse(&s);
  cr_assert_eq(figures().meshed_pages, 0);
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) _exit(mesh_again_and_check(8));
  int mine = mesh_again_and_check(9);
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert_eq(mine, 0, "the parent's kept blocks changed (%d)", mine);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the child: status %#x", status);
}

/* ---- the program's own fault handler ------------------------------------- */

static sigjmp_buf fault_jump;
static volatile sig_atomic_t program_faults;

static void program_handler(int sig) {
  (void)sig;
  program_faults++;
  siglongjmp(fault_jump, 1);
}

static bool faults_at(volatile unsigned char *p) {
  if (sigsetjmp(fault_jump, 1) == 0) {
    *p = 1;
    return false;
  }
  return true;
}

/* Crash handlers as servers write them, installed after tessera's, which
 * meshing then puts back in front: each must run once and the process
 * end by the fault, as without tessera.  In a child, with a deadline. */
static volatile sig_atomic_t *crash_reports;   /* shared with the parent */
static struct sigaction crash_prev;

/* One report, then back to the default action (SA_RESETHAND): the access
 * faults again and the process ends. */
static void crash_once(int sig) {
  (void)sig;
  ++*crash_reports;
}

/* A report, then on to the handler it replaced (tessera's), as handlers
 * that chain do. */
static void crash_chain(int sig, siginfo_t *info, void *ctx) {
  ++*crash_reports;
  if (crash_prev.sa_flags & SA_SIGINFO) crash_prev.sa_sigaction(sig, info, ctx);
  else if (crash_prev.sa_handler != SIG_DFL && crash_prev.sa_handler != SIG_IGN) crash_prev.sa_handler(sig);
  else signal(sig, SIG_DFL);
}

/* A report, then the action it replaced (tessera's) put back and the
 * signal raised again, as Python's faulthandler does; a second call, once
 * it is done, returns at once.  Before tessera's two entry points, the
 * one put back passed the raised signal on to this handler again, which
 * returned, and the fault came back for ever. */
static volatile sig_atomic_t crash_done;

static void crash_restore(int sig) {
  if (crash_done) return;
  crash_done = 1;
  ++*crash_reports;
  sigaction(sig, &crash_prev, NULL);
  raise(sig);
}

typedef enum { CRASH_NONE, CRASH_ONCE, CRASH_CHAIN, CRASH_RESTORE } crash_kind_t;

/* kind: the program's handler (CRASH_NONE: none); raised: the crash is a
 * raise(SIGSEGV) (faulthandler's own test), not a fault */
static void crash_child(crash_kind_t kind, bool raised) {
  alarm(10);   /* a handler going round for ever dies of SIGALRM instead */
  /* no handler under the program's (AddressSanitizer's runtime has one,
   * which a raised signal would reach, as without tessera, and exit 1) */
  signal(SIGSEGV, SIG_DFL);
  sparse_t s = make_sparse(64, 16, 9);
  tsr_collect();   /* tessera's handler is in place */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  if (kind == CRASH_CHAIN) {
    sa.sa_sigaction = crash_chain;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  } else if (kind == CRASH_RESTORE) {
    sa.sa_handler = crash_restore;
    sa.sa_flags = SA_NODEFER;
  } else {
    sa.sa_handler = crash_once;
    sa.sa_flags = SA_NODEFER | SA_RESETHAND;
  }
  if (kind != CRASH_NONE) sigaction(SIGSEGV, &sa, &crash_prev);
  sparse_t more = make_sparse(64, 16, 10);
  tsr_collect();   /* meshing puts tessera's back in front */
  if (figures().mesh_state != TSR_MESH_ON) _exit(3);
  if (raised) {
    raise(SIGSEGV);
  } else {
    volatile unsigned char *guard = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    *guard = 1;
  }
  (void)s;
  (void)more;
  _exit(4);   /* not reached: the write cannot succeed, the signal raised ends the process */
}

static void crash_handler_runs_once(crash_kind_t kind, bool raised) {
  crash_reports = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  cr_assert(crash_reports != MAP_FAILED);
  *crash_reports = 0;
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) crash_child(kind, raised);
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
            "the child did not end by SIGSEGV: %s %d (SIGALRM: its handler went round)",
            WIFSIGNALED(status) ? "signal" : "exit", WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
  cr_assert_eq(*crash_reports, kind == CRASH_NONE ? 0 : 1, "the program's crash handler ran %d times",
               (int)*crash_reports);
  munmap((void *)crash_reports, 4096);
}

Test(mesh, a_crash_handler_with_resethand_runs_once_and_the_process_ends) {
  crash_handler_runs_once(CRASH_ONCE, false);
}
Test(mesh, a_crash_handler_that_chains_to_tesseras_ends_the_process) { crash_handler_runs_once(CRASH_CHAIN, false); }
Test(mesh, a_crash_handler_that_puts_tesseras_back_and_raises_ends_the_process) {
  crash_handler_runs_once(CRASH_RESTORE, false);
  crash_handler_runs_once(CRASH_RESTORE, true);
}
/* Before, tessera's handler set the default action and returned, which
 * ends a fault (it runs again) but swallowed a signal sent. */
Test(mesh, a_sigsegv_raised_ends_the_process) { crash_handler_runs_once(CRASH_NONE, true); }

Test(mesh, faults_not_meshings_reach_the_program_handler) {
  struct sigaction sa, prev;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = program_handler;
  sigemptyset(&sa.sa_mask);
  cr_assert_eq(sigaction(SIGSEGV, &sa, NULL), 0);
  sparse_t s = make_sparse(64, 16, 5);
  tsr_collect();   /* tessera's handler goes in front of the program's */
  cr_assert_gt(figures().meshes, 0);
  unsigned char *guard = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert(guard != MAP_FAILED);
  cr_assert(faults_at(guard), "a write to a PROT_NONE page did not fault");
  cr_assert_eq(program_faults, 1, "the program's handler ran %d times", (int)program_faults);
  munmap(guard, 4096);
  /* the program puts its handler in tessera's place (as servers do for
   * their crash reports): the next pass puts tessera's back in front,
   * and meshing goes on */
  cr_assert_eq(sigaction(SIGSEGV, &sa, &prev), 0);
  sparse_t more = make_sparse(64, 16, 6);
  uint64_t meshes = figures().meshes;
  tsr_collect();
  tsr_pins_t t = figures();
  cr_assert_eq(t.mesh_state, TSR_MESH_ON, "state %u", t.mesh_state);
  cr_assert_gt(t.meshes, meshes, "no meshing after the program replaced the handler");
  struct sigaction now;
  cr_assert_eq(sigaction(SIGSEGV, NULL, &now), 0);
  cr_assert(now.sa_handler != program_handler, "tessera's handler is not back in front");
  /* and a fault that is not meshing's still reaches the program's handler */
  guard = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  cr_assert(guard != MAP_FAILED);
  cr_assert(faults_at(guard), "a write to a PROT_NONE page did not fault");
  cr_assert_eq(program_faults, 2, "the program's handler ran %d times", (int)program_faults);
  munmap(guard, 4096);
  /* a NULL pointer's field (page 0) is the program's fault, never a
   * writer for meshing to hold */
  cr_assert(faults_at((volatile unsigned char *)16), "a write to address 16 did not fault");
  cr_assert_eq(program_faults, 3, "the program's handler ran %d times", (int)program_faults);
  cr_assert_eq(damaged(&s), 0);
  cr_assert_eq(damaged(&more), 0);
  free_sparse(&more);
  free_sparse(&s);
  cr_assert_eq(tsr_check(), 0);
}

/* A daemon's start: fork, every descriptor past stderr closed, then files
 * of its own (here one file under every number up to 1,023, so that one
 * has the number meshing's file had).  Before, meshing went on with the
 * number it had: its next pass truncated the daemon's file to its own
 * size and wrote heap pages into it.  Now it sees the file gone and, with
 * nothing on it, takes a new one.  In a child; the exit status says what
 * went wrong (0: nothing). */
static int daemon_child(void) {
  alarm(20);
  struct rlimit rl;
  int top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 1024 ? (int)rl.rlim_cur : 1024;
  for (int fd = 3; fd < top; fd++) close(fd);
  char path[] = "/tmp/tsr_mesh_daemon_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return 3;
  unlink(path);
  static const char line[] = "the daemon's own bytes\n";
  size_t len = sizeof line - 1;
  if (write(fd, line, len) != (ssize_t)len) return 3;
  for (int other = fd + 1; other < top; other++) dup2(fd, other);
  sparse_t s = make_sparse(64, 16, 11);
  uint64_t meshes = figures().meshes;
  tsr_collect();   /* on a file of its own again: nothing was on the one closed */
  if (figures().mesh_state != TSR_MESH_ON || figures().meshes <= meshes) return 6;
  struct stat st;
  char back[sizeof line];
  if (fstat(fd, &st) != 0) return 3;
  if (st.st_size != (off_t)len) return 1;
  if (pread(fd, back, len, 0) != (ssize_t)len || memcmp(back, line, len) != 0) return 2;
  if (damaged(&s) != 0) return 4;
  free_sparse(&s);
  return tsr_check() == 0 ? 0 : 5;
}

Test(mesh, a_daemon_that_closes_every_descriptor_keeps_its_files_whole) {
  sparse_t s = make_sparse(64, 16, 12);
  tsr_collect();   /* meshing has its file; the child gets one of its own at fork */
  cr_assert_gt(figures().meshes, 0);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) _exit(daemon_child());
  int status = 0;
  cr_assert_eq(waitpid(pid, &status, 0), pid);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "the child: %s %d (exit 1: meshing changed its file's size, 2: its bytes, 4: kept blocks, "
            "5: tsr_check, 6: meshing stopped)",
            WIFEXITED(status) ? "exit" : "signal", WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  cr_assert_eq(damaged(&s), 0);
  free_sparse(&s);
  cr_assert_eq(tsr_check(), 0);
}
