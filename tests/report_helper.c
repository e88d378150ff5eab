/* report_helper.c: the reports tessera writes by itself (TESSERA_REPORT at
 * exit, TESSERA_REPORT_SIGNAL), for test_report.c, which starts it with
 * those settings in its environment (they are read once, at start-up) and
 * reads the file it names.
 *
 *   TESSERA_TRACK=full TESSERA_REPORT=/tmp/r.json TESSERA_REPORT_FORMAT=json \
 *     report_helper leaks
 *
 * Cases:
 *   leaks     leaves 3 x 64 bytes from leak_one and 2 x 1000 from leak_two
 *             live, frees everything else, marks one more block expected
 *   leaks_fn  the same, and 4 x 256 bytes from expected_fn, whose name is
 *             given to tsr_leak_expect_function
 *   signal    4 threads allocate and free for about 1.5 s while the main
 *             thread sends itself SIGUSR2 twice and waits, each time, for
 *             a report with reason "signal" to appear in the file
 *   plain     allocates, frees and exits (the report at exit is the test)
 *   errors    under TESSERA_ON_ERROR=continue: frees a pointer into its
 *             stack, frees a block twice, and asks malloc_usable_size of
 *             the freed block (one error of each of three kinds), checks
 *             tsr_stats_get's counts of them, and exits
 *   secure    run set-user-ID by a user without its privileges: the report
 *             it asks for names the settings tessera ignored (prints
 *             "not secure" and exits 0 where the OS did not make it so)
 *   rewrite_env  overwrites every environment string in place, as a
 *             server that sets its process title does (Redis, nginx,
 *             PostgreSQL), then allocates and exits: the report at exit
 *             must still go to the file TESSERA_REPORT named
 *   fork_signal  forks; in the child two threads allocate at once (both
 *             may take the slow path that restarts the report thread the
 *             parent had), the child sends itself SIGUSR2 and waits for a
 *             signal report with its own pid; with the threads joined, it
 *             must have one thread more than it had at birth: the report
 *             thread, once
 *   mesh      40000 blocks of 64 bytes, all but one in sixteen freed at
 *             random (live blocks at different offsets in every span),
 *             then tsr_collect, which meshes under TESSERA_MESH=on; writes
 *             the text, JSON and OpenMetrics reports to the path
 *             TSR_TEST_REPORT_BASE names plus .text, .json and .om, and
 *             prints tsr_pins's figures, as they were when they were written:
 *               mesh STATE MESHED_PAGES SAVED MESHES UNMESHES PASSES NS PAUSE_MAX_NS MESHABLE
 *   failure   under TESSERA_RESERVE_LIMIT: 8 MiB blocks until NULL (the
 *             report at failure is written then), small blocks until
 *             NULL, then everything freed; tsr_space_pieces must count
 *             both refusals and name the last
 *
 * Prints "ok" and exits 0, or prints "FAIL: ..." and exits 1.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "tsr_helper.h"
#include "tsr_sites.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/auxv.h>
#include <sys/wait.h>

static void *leaked[16];

static TSR_ALLOC_FN void leak_one(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(3); i++) {
    leaked[i] = tsr_malloc(64);
    if (leaked[i] != NULL) memset(leaked[i], 1, 64);
    TSR_KEEP(leaked[i]);
  }
}

static TSR_ALLOC_FN void leak_two(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(2); i++) {
    leaked[3 + i] = tsr_malloc(1000);
    if (leaked[3 + i] != NULL) memset(leaked[3 + i], 2, 1000);
    TSR_KEEP(leaked[3 + i]);
  }
}

static TSR_ALLOC_FN void expected_fn(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(4); i++) {
    leaked[8 + i] = tsr_malloc(256);
    TSR_KEEP(leaked[8 + i]);
  }
}

static TSR_ALLOC_FN void *keep_cache(void) {
  void *p = tsr_malloc(4096);
  TSR_KEEP(p);
  return p;
}

/* Blocks that are all given back before exit: none may show as a leak. */
static TSR_ALLOC_FN void churn_and_free(void) {
  void *b[200];
  for (int i = 0; i < 200; i++) b[i] = tsr_malloc((size_t)(i * 37 % 5000) + 1);
  void *big = tsr_malloc(600000);
  void *grown = tsr_realloc(tsr_malloc(10), 70000);
  for (int i = 0; i < 200; i++) tsr_free(b[i]);
  tsr_free(big);
  tsr_free(grown);
}

static void leaks_case(bool by_function) {
  CHECK(tsr_track_get() == TSR_TRACK_FULL, "TESSERA_TRACK=full did not take: level %d\n", (int)tsr_track_get());
  churn_and_free();
  leak_one();
  leak_two();
  if (by_function) {
    CHECK(tsr_leak_expect_function("expected_fn") == 0, "tsr_leak_expect_function failed\n");
    expected_fn();
  }
  void *cache = keep_cache();
  CHECK(tsr_leak_expect(cache) == 0, "tsr_leak_expect refused a live tracked block\n");
  void *gone = tsr_malloc(48);
  tsr_free(gone);
  CHECK(tsr_leak_expect(gone) == EINVAL, "tsr_leak_expect accepted a freed block\n");
  CHECK(tsr_check() == 0, "tsr_check found problems\n");
}

/* ------------------------------------------------------------------------
 * signal
 * ---------------------------------------------------------------------- */

static atomic_int stop_threads;

static void *churn_thread(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
  enum { SLOTS = 512 };
  void *slot[SLOTS] = { 0 };
  size_t size[SLOTS] = { 0 };
  long bad = 0;
  while (!atomic_load(&stop_threads)) {
    for (int k = 0; k < 1000; k++) {
      size_t i = tsr_test_rand(&rng) % SLOTS;
      if (slot[i] != NULL) {
        if (tsr_test_verify(slot[i], size[i] < 64 ? size[i] : 64, (uint64_t)(uintptr_t)slot[i]) !=
            (size[i] < 64 ? size[i] : 64))
          bad++;
        tsr_free(slot[i]);
      }
      uint64_t r = tsr_test_rand(&rng);
      size[i] = (r % 100 == 0) ? 150000 + r % 100000 : 1 + r % 3000;
      slot[i] = tsr_malloc(size[i]);
      if (slot[i] == NULL) {
        bad++;
        continue;
      }
      tsr_test_fill(slot[i], size[i] < 64 ? size[i] : 64, (uint64_t)(uintptr_t)slot[i]);
    }
  }
  for (size_t i = 0; i < SLOTS; i++) tsr_free(slot[i]);
  return (void *)bad;
}

/* Reports with reason "signal" that are whole lines in the file. */
static int signal_reports(const char *path) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  int n = 0;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) > 0)
    if (line[len - 1] == '\n' && strstr(line, "\"reason\":\"signal\"") != NULL) n++;
  free(line);
  fclose(f);
  return n;
}

static void signal_case(void) {
  const char *path = getenv("TESSERA_REPORT");
  CHECK(path != NULL, "TESSERA_REPORT is not set\n");
  if (path == NULL) return;
  enum { THREADS = 4 };
  pthread_t t[THREADS];
  for (uintptr_t i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, churn_thread, (void *)(i + 1));
  double start = tsr_test_now();
  for (int round = 1; round <= 2; round++) {
    tsr_test_sleep_ms(250);
    kill(getpid(), SIGUSR2);
    double sent = tsr_test_now();
    while (signal_reports(path) < round && tsr_test_now() - sent < 10.0) tsr_test_sleep_ms(10);
    CHECK(signal_reports(path) >= round, "no report %d within 10 s of SIGUSR2\n", round);
  }
  while (tsr_test_now() - start < 1.5) tsr_test_sleep_ms(20);
  atomic_store(&stop_threads, 1);
  for (int i = 0; i < THREADS; i++) {
    void *bad;
    pthread_join(t[i], &bad);
    CHECK(bad == NULL, "thread %d saw %ld damaged or missing blocks\n", i, (long)(intptr_t)bad);
  }
  CHECK(signal_reports(path) == 2, "%d signal reports for 2 signals\n", signal_reports(path));
  CHECK(tsr_check() == 0, "tsr_check found problems\n");
}

/* Signal reports of process pid that are whole lines in the file. */
static int signal_reports_of(const char *path, pid_t pid) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return 0;
  char key[32];
  snprintf(key, sizeof key, "\"pid\":%ld,", (long)pid);
  int n = 0;
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  while ((len = getline(&line, &cap, f)) > 0)
    if (line[len - 1] == '\n' && strstr(line, "\"reason\":\"signal\"") != NULL && strstr(line, key) != NULL) n++;
  free(line);
  fclose(f);
  return n;
}

static int thread_count(void) {
  DIR *d = opendir("/proc/self/task");
  if (d == NULL) return -1;
  int n = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static void *short_churn(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg;
  double start = tsr_test_now();
  while (tsr_test_now() - start < 0.2) {
    void *p = tsr_malloc(1 + tsr_test_rand(&rng) % 4000);
    TSR_KEEP(p);
    tsr_free(p);
  }
  return NULL;
}

static void fork_signal_case(void) {
  const char *path = getenv("TESSERA_REPORT");
  CHECK(path != NULL, "TESSERA_REPORT is not set\n");
  if (path == NULL) return;
  void *warm = tsr_malloc(100);   /* the parent's heap, and its report thread running */
  TSR_KEEP(warm);
  tsr_free(warm);
  tsr_test_sleep_ms(50);
  pid_t child = fork();
  if (child == 0) {
    int bad = 0;
    int born = thread_count();   /* 1, or more where a sanitizer's runtime starts its own */
    pthread_t t[2];
    for (uintptr_t i = 0; i < 2; i++) pthread_create(&t[i], NULL, short_churn, (void *)(i + 1));
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    if (TSR_TEST_TSAN) _exit(0);   /* the child's threads ran; what follows needs a signal TSan withholds */
    kill(getpid(), SIGUSR2);
    double sent = tsr_test_now();
    while (signal_reports_of(path, getpid()) < 1 && tsr_test_now() - sent < 10.0) tsr_test_sleep_ms(10);
    if (signal_reports_of(path, getpid()) != 1) {
      fprintf(stderr, "child: %d signal reports of its own\n", signal_reports_of(path, getpid()));
      bad = 1;
    }
    if (thread_count() != born + 1) {
      fprintf(stderr, "child: %d threads, born with %d: not one report thread more\n", thread_count(), born);
      bad = 1;
    }
    _exit(bad);
  }
  CHECK(child > 0, "fork failed\n");
  int status = 0;
  CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0,
        "the child failed (status %#x)\n", status);
  CHECK(signal_reports_of(path, getpid()) == 0, "the parent wrote a signal report\n");
}

static void plain_case(void) {
  void *p = tsr_malloc(100);
  TSR_KEEP(p);
  tsr_free(p);
}

static void errors_case(void) {
  int on_stack[4] = { 0 };
  TSR_KEEP(on_stack);
  tsr_free(&on_stack[1]);
  void *p = tsr_malloc(100);
  TSR_KEEP(p);
  tsr_free(p);
  tsr_free(p);
  CHECK(tsr_usable_size(p) == 0, "malloc_usable_size of a freed block is not 0\n");
  tsr_stats_t s = tsr_test_stats();
  CHECK(s.errors == 3, "%llu errors, not 3\n", (unsigned long long)s.errors);
  CHECK(s.errors_by_kind[TSR_ERROR_BAD_FREE] == 1 && s.errors_by_kind[TSR_ERROR_DOUBLE_FREE] == 1 &&
            s.errors_by_kind[TSR_ERROR_USE_AFTER_FREE] == 1,
        "errors by kind: %llu bad free, %llu double free, %llu use after free\n",
        (unsigned long long)s.errors_by_kind[TSR_ERROR_BAD_FREE],
        (unsigned long long)s.errors_by_kind[TSR_ERROR_DOUBLE_FREE],
        (unsigned long long)s.errors_by_kind[TSR_ERROR_USE_AFTER_FREE]);
}

static void text_to_buffer(const char *text, size_t len, void *arg) {
  char *buf = arg;
  size_t have = strlen(buf);
  if (have + len >= 65536) len = 65535 - have;
  memcpy(buf + have, text, len);
  buf[have + len] = 0;
}

static void secure_case(void) {
  if (getauxval(AT_SECURE) == 0) {
    printf("not secure\n");
    return;
  }
  static char text[65536];
  CHECK(tsr_report(TSR_FORMAT_TEXT, text_to_buffer, text) == 0, "tsr_report failed\n");
  CHECK(strstr(text, "secure mode (set-user-ID or the like): ignored TESSERA_ON_ERROR TESSERA_REPORT\n") != NULL,
        "the report does not name the ignored settings:\n%.600s\n", text);
}

static void rewrite_env_case(void) {
  extern char **environ;
  for (char **e = environ; *e != NULL; e++) memset(*e, 'x', strlen(*e));
  void *p = tsr_malloc(100);
  TSR_KEEP(p);
  tsr_free(p);
}

/* ------------------------------------------------------------------------
 * mesh
 * ---------------------------------------------------------------------- */

enum { MESH_BLOCKS = 40000 };
static void *mesh_blocks[MESH_BLOCKS];

static void mesh_case(void) {
  const char *base = getenv("TSR_TEST_REPORT_BASE");
  CHECK(base != NULL, "TSR_TEST_REPORT_BASE is not set\n");
  if (base == NULL) return;
  uint64_t rng = 7;
  for (int i = 0; i < MESH_BLOCKS; i++) mesh_blocks[i] = tsr_malloc(64);
  for (int i = 0; i < MESH_BLOCKS; i++)
    if (tsr_test_rand(&rng) % 16 != 0) {
      tsr_free(mesh_blocks[i]);
      mesh_blocks[i] = NULL;
    }
  tsr_collect();
  tsr_pins_t t;
  tsr_pins(&t, NULL, 0);
  static const struct {
    tsr_format_t format;
    const char *suffix;
  } formats[] = { { TSR_FORMAT_TEXT, ".text" }, { TSR_FORMAT_JSON, ".json" }, { TSR_FORMAT_OPENMETRICS, ".om" } };
  for (size_t i = 0; i < 3; i++) {
    char path[1024];
    snprintf(path, sizeof path, "%s%s", base, formats[i].suffix);
    CHECK(tsr_report_to(formats[i].format, path) == 0, "tsr_report_to %s failed\n", path);
  }
  tsr_pins_t after;
  tsr_pins(&after, NULL, 0);
  CHECK(after.meshes == t.meshes && after.mesh_ns == t.mesh_ns, "meshing ran while the reports were written\n");
  printf("mesh %u %llu %llu %llu %llu %llu %llu %llu %llu\n", t.mesh_state, (unsigned long long)t.meshed_pages,
         (unsigned long long)t.mesh_saved, (unsigned long long)t.meshes, (unsigned long long)t.unmeshes,
         (unsigned long long)t.mesh_passes, (unsigned long long)t.mesh_ns, (unsigned long long)t.mesh_pause_max_ns,
         (unsigned long long)t.meshable);
  for (int i = 0; i < MESH_BLOCKS; i++) tsr_free(mesh_blocks[i]);
  CHECK(tsr_check() == 0, "tsr_check found problems\n");
}

/* ------------------------------------------------------------------------
 * failure
 * ---------------------------------------------------------------------- */

static void failure_case(void) {
  static void *blocks[4096];
  size_t n = 0;
  while (n < 64 && (blocks[n] = tsr_malloc((size_t)8 << 20)) != NULL) n++;
  CHECK(n > 0 && n < 64, "%zu blocks of 8 MiB under the cap\n", n);
  tsr_space_pieces_t p;
  p.size = sizeof p;
  CHECK(tsr_space_pieces(&p) == 0, "tsr_space_pieces failed\n");
  CHECK(p.refusals == 1 && p.refused_size == (size_t)8 << 20 && p.refused_large == 1,
        "refusals %llu, last %llu bytes, large %u\n", (unsigned long long)p.refusals,
        (unsigned long long)p.refused_size, p.refused_large);
  CHECK(p.reserve_left < (size_t)8 << 20, "the cap leaves %llu bytes\n", (unsigned long long)p.reserve_left);
  size_t small_first = n;
  while (n < sizeof blocks / sizeof blocks[0] && (blocks[n] = tsr_malloc(100000)) != NULL) n++;
  CHECK(n > small_first && n < sizeof blocks / sizeof blocks[0], "%zu small blocks under the cap\n", n - small_first);
  CHECK(tsr_space_pieces(&p) == 0, "tsr_space_pieces failed\n");
  CHECK(p.refusals == 2 && p.refused_large == 0, "refusals %llu, large %u\n", (unsigned long long)p.refusals,
        p.refused_large);
  for (size_t i = 0; i < n; i++) tsr_free(blocks[i]);
}

static int run_case(const char *name) {
  if (strcmp(name, "leaks") == 0) leaks_case(false);
  else if (strcmp(name, "leaks_fn") == 0) leaks_case(true);
  else if (strcmp(name, "signal") == 0) signal_case();
  else if (strcmp(name, "fork_signal") == 0) fork_signal_case();
  else if (strcmp(name, "rewrite_env") == 0) rewrite_env_case();
  else if (strcmp(name, "plain") == 0) plain_case();
  else if (strcmp(name, "errors") == 0) errors_case();
  else if (strcmp(name, "secure") == 0) secure_case();
  else if (strcmp(name, "mesh") == 0) mesh_case();
  else if (strcmp(name, "failure") == 0) failure_case();
  else return 2;
  return 0;
}

int main(int argc, char **argv) { return tsr_helper_main(argc, argv, run_case, "TESSERA_REPORT=..."); }
