/* test_inject.c: the OS refusing at every call tessera makes of it
 * (TESSERA_FAIL, alloc/os/inject.c).  For each injection point,
 * inject_helper's workload runs in a child process under the settings that
 * make it reach that point (full tracking; default sampling with guarded
 * blocks; meshing on), with the failure at the first call, at a call half
 * way through, and at every call from the first or from half way on.  Each
 * run must end normally (no signal, no hang: the child has a deadline),
 * with every check of the helper held: a NULL comes with ENOMEM, what was
 * handed out keeps its contents, what tracking lost is counted, tsr_check
 * is clean.  A run with the failure set past the last call first counts
 * the calls each point gets, and shows that the workload reaches it.
 */
#include "tsr_criterion.h"

#include "tsr_test.h"

#define DEADLINE_S 120   /* a hang turns into SIGALRM */
#ifndef TSR_INJECT_FEWER
#define TSR_INJECT_FEWER 0
#endif

typedef struct config_s {
  const char *name;
  const char *env[4];
} config_t;

/* Full tracking with meshing on, and the default sampling with guarded
 * blocks (one allocation in 20). */
static const config_t configs[] = {
  { "full+mesh", { "TESSERA_TRACK=full", "TESSERA_MESH=on", NULL } },
  { "sample", { "TESSERA_GUARD_SAMPLE=20", NULL } },
};
#define CONFIGS (sizeof configs / sizeof configs[0])

#define POINTS 19

typedef struct run_s {
  tsr_child_t child;
  char out[16384];
  uint64_t calls[POINTS], failed[POINTS];
  char names[POINTS][32];
  uint64_t records_lost, stacks_lost, nulls;
} run_t;

static uint64_t line_value(const char *out, const char *key) {
  const char *s = strstr(out, key);
  return s != NULL ? strtoull(s + strlen(key), NULL, 10) : 0;
}

/* Run the workload with TESSERA_FAIL=fail under cfg. */
static void run_workload(const config_t *cfg, const char *fail, run_t *r) {
  memset(r, 0, sizeof *r);
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  int fd = -1;
  pid_t pid = tsr_test_fork_captured(&fd);
  cr_assert_geq(pid, 0, "fork");
  if (pid == 0) {
    dup2(fileno(out), 1);
    static char setting[256];
    snprintf(setting, sizeof setting, "TESSERA_FAIL=%s", fail);
    putenv(setting);
    for (size_t i = 0; cfg->env[i] != NULL; i++) putenv((char *)cfg->env[i]);
    alarm(DEADLINE_S);
    execl(TSR_INJECT_HELPER, TSR_INJECT_HELPER, "workload", (char *)NULL);
    _exit(127);
  }
  tsr_test_collect(pid, fd, &r->child);
  rewind(out);
  size_t n = fread(r->out, 1, sizeof r->out - 1, out);
  r->out[n] = 0;
  fclose(out);
  int st = r->child.status;
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(r->out, "\nok\n") != NULL,
            "TESSERA_FAIL=%s (%s): %s %d\nstdout:\n%s\nstderr:\n%s", fail, cfg->name,
            WIFSIGNALED(st) ? "killed by signal" : "exit status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st),
            r->out, r->child.err);
  r->records_lost = line_value(r->out, "records_lost ");
  r->stacks_lost = line_value(r->out, "stacks_lost ");
  r->nulls = line_value(r->out, "nulls ");
  const char *s = r->out;
  for (size_t p = 0; p < POINTS; p++) {
    s = strstr(s, "point ");
    cr_assert_not_null(s, "no line for point %zu in\n%s", p, r->out);
    unsigned long long c, f;
    cr_assert_eq(sscanf(s, "point %31s %llu %llu", r->names[p], &c, &f), 3);
    r->calls[p] = c;
    r->failed[p] = f;
    s++;
  }
}

static size_t point_index(const run_t *r, const char *name) {
  for (size_t p = 0; p < POINTS; p++)
    if (strcmp(r->names[p], name) == 0) return p;
  cr_assert_fail("no injection point named %s", name);
  return 0;
}

/* Every config that reaches point: the failure at the first call, the
 * second, half way, the last, and every call from the first, the second
 * and half way on.  Returns the runs that injected a failure; *lost:
 * whether any of them lost a record or a stack. */
static size_t drive(const char *point, bool *lost) {
  size_t injected = 0, reached = 0;
  *lost = false;
  static run_t r;
  for (size_t c = 0; c < CONFIGS; c++) {
    char fail[96];
    snprintf(fail, sizeof fail, "%s:1000000000", point);
    run_workload(&configs[c], fail, &r);
    size_t p = point_index(&r, point);
    uint64_t calls = r.calls[p];
    cr_assert_eq(r.failed[p], 0);
    cr_assert_eq(r.nulls, 0, "%s: NULLs with nothing injected", configs[c].name);
    cr_assert_eq(r.records_lost + r.stacks_lost, 0, "%s: lost with nothing injected", configs[c].name);
    if (calls == 0) continue;
    reached++;
    unsigned long long mid = calls / 2 + 1, last = calls;
    char specs[7][96];
    snprintf(specs[0], sizeof specs[0], "%s:1", point);
    snprintf(specs[1], sizeof specs[1], "%s:2", point);
    snprintf(specs[2], sizeof specs[2], "%s:%llu", point, mid);
    snprintf(specs[3], sizeof specs[3], "%s:%llu", point, last);
    snprintf(specs[4], sizeof specs[4], "%s:1:0", point);
    snprintf(specs[5], sizeof specs[5], "%s:2:*", point);
    snprintf(specs[6], sizeof specs[6], "%s:%llu:*", point, mid);
    /* under a sanitizer the first and second calls and every call from
     * each on (the first alloc is made before tracking has a record to
     * lose): the rest is the Debug and Release builds' */
    static const size_t order[7] = { 0, 4, 1, 5, 2, 3, 6 };
    for (size_t k = 0; k < (TSR_INJECT_FEWER ? 4 : 7); k++) {
      run_workload(&configs[c], specs[order[k]], &r);
      if (r.failed[p] > 0) injected++;
      if (r.records_lost + r.stacks_lost > 0) *lost = true;
    }
  }
  cr_assert_gt(reached, 0, "the workload never reaches %s", point);
  return injected;
}

#define POINT_TEST(name)                                                        \
  Test(inject, name) {                                                          \
    bool lost;                                                                  \
    cr_assert_gt(drive(#name, &lost), 0, "no failure injected at " #name);      \
  }

POINT_TEST(reserve_open)
POINT_TEST(alloc_high)
POINT_TEST(decommit)
POINT_TEST(reset)
POINT_TEST(remap)
POINT_TEST(thread_key)
POINT_TEST(thread_set)
POINT_TEST(share_open)
POINT_TEST(share_size)
POINT_TEST(share_write)
POINT_TEST(share_map)
POINT_TEST(share_punch)
POINT_TEST(private_map)
POINT_TEST(protect)
POINT_TEST(guard)

/* Arenas and record areas are reservations, committed as they fill; the
 * stack table, the record table and heaps are plain allocations: failing
 * them must lose records or stacks, and the counts say so. */
Test(inject, reserve) {
  bool lost;
  cr_assert_gt(drive("reserve", &lost), 0);
}

Test(inject, commit) {
  bool lost;
  cr_assert_gt(drive("commit", &lost), 0);
}

Test(inject, alloc_loses_records_and_stacks) {
  bool lost;
  cr_assert_gt(drive("alloc", &lost), 0);
  cr_assert(lost, "no run that failed tsri_os_alloc lost a record or a stack");
}

Test(inject, thread_start) {
  bool lost;
  cr_assert_gt(drive("thread_start", &lost), 0);
}

/* A meshing step that fails after its page was made read-only makes it
 * writable again, through private memory when mprotect is refused too. */
Test(inject, mesh_restores_the_page) {
  static const char *const specs[] = { "share_map:1:0,protect:2:0", "share_write:1:0,protect:2:0" };
  static run_t r;
  for (size_t i = 0; i < 2; i++) {
    run_workload(&configs[0], specs[i], &r);
    cr_assert_gt(r.failed[point_index(&r, "protect")], 0, "%s: meshing never came to protect", specs[i]);
  }
}

/* The setting itself: a bad one is refused with a warning and nothing
 * fails. */
Test(inject, bad_setting_warns) {
  static run_t r;
  run_workload(&configs[0], "nosuchpoint:1", &r);
  cr_assert_not_null(strstr(r.child.err, "TESSERA_FAIL=nosuchpoint:1 is not valid"), "stderr:\n%s", r.child.err);
  cr_assert_eq(r.nulls, 0);
  run_workload(&configs[0], "reserve:0", &r);
  cr_assert_not_null(strstr(r.child.err, "is not valid"), "stderr:\n%s", r.child.err);
  run_workload(&configs[0], "reserve:1:x", &r);
  cr_assert_not_null(strstr(r.child.err, "is not valid"), "stderr:\n%s", r.child.err);
}
