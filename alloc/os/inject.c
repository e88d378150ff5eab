/* inject.c: failures made on purpose at the OS calls (os.h: failure
 * injection), for the tests of what tessera does when the OS refuses
 * (tests/test_inject.c).  Shared by the backends: posix.c, posix_mesh.c
 * and windows.c ask TSRI_OS_FAIL(point) first in each call that can fail
 * for want of memory or address space, and answer ENOMEM without asking
 * the OS when it says so.
 *
 * The setting (TESSERA_FAIL, read by core/options.c and handed over here
 * once while tessera comes up) is a list of up to OS_FAIL_RULES rules,
 * separated by commas, each point[:nth[:count]]: the nth call at point
 * (from 1; default 1) and the count-1 calls after it fail (default 1;
 * 0 or '*': every call from the nth on).  Calls are counted per point,
 * by every thread together, from the moment a setting is in force.
 * Unset, the only cost is the load of one flag in calls that go to the
 * kernel anyway.
 */
#include "os.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#define OS_FAIL_RULES 8

static const char *const os_point_names[TSRI_OS_POINTS] = {
  [TSRI_OS_POINT_RESERVE] = "reserve",
  [TSRI_OS_POINT_RESERVE_OPEN] = "reserve_open",
  [TSRI_OS_POINT_ALLOC] = "alloc",
  [TSRI_OS_POINT_ALLOC_HIGH] = "alloc_high",
  [TSRI_OS_POINT_COMMIT] = "commit",
  [TSRI_OS_POINT_DECOMMIT] = "decommit",
  [TSRI_OS_POINT_RESET] = "reset",
  [TSRI_OS_POINT_REMAP] = "remap",
  [TSRI_OS_POINT_THREAD_KEY] = "thread_key",
  [TSRI_OS_POINT_THREAD_SET] = "thread_set",
  [TSRI_OS_POINT_THREAD_START] = "thread_start",
  [TSRI_OS_POINT_SHARE_OPEN] = "share_open",
  [TSRI_OS_POINT_SHARE_SIZE] = "share_size",
  [TSRI_OS_POINT_SHARE_WRITE] = "share_write",
  [TSRI_OS_POINT_SHARE_MAP] = "share_map",
  [TSRI_OS_POINT_SHARE_PUNCH] = "share_punch",
  [TSRI_OS_POINT_PRIVATE_MAP] = "private_map",
  [TSRI_OS_POINT_PROTECT] = "protect",
  [TSRI_OS_POINT_GUARD] = "guard",
};

typedef struct os_fail_rule_s {
  unsigned point;     /* tsri_os_point_t */
  uint64_t nth;       /* first call that fails, from 1 */
  uint64_t count;     /* calls that fail from there; 0: all */
} os_fail_rule_t;

_Atomic int tsri_os_fail_armed;
static os_fail_rule_t os_rules[OS_FAIL_RULES];
static size_t os_rule_count;
static _Atomic uint64_t os_calls[TSRI_OS_POINTS];
static _Atomic uint64_t os_failed[TSRI_OS_POINTS];

const char *tsri_os_point_name(tsri_os_point_t point) {
  return (unsigned)point < TSRI_OS_POINTS ? os_point_names[point] : "";
}

/* A decimal number of s up to the first ':' or ',' (its end in *end);
 * '*' reads as 0.  false for anything else. */
static bool os_fail_number(const char *s, const char **end, uint64_t *out) {
  if (*s == '*') {
    *out = 0;
    *end = s + 1;
    return true;
  }
  uint64_t v = 0;
  const char *d = s;
  for (; *d >= '0' && *d <= '9'; d++) {
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + (uint64_t)(*d - '0');
  }
  *out = v;
  *end = d;
  return d != s;
}

/* One rule at s, up to the next ',' or the end (*end). */
static bool os_fail_rule(const char *s, const char **end, os_fail_rule_t *rule) {
  size_t n = strcspn(s, ":,");
  unsigned p = 0;
  while (p < TSRI_OS_POINTS && !(strlen(os_point_names[p]) == n && strncmp(os_point_names[p], s, n) == 0)) p++;
  if (p == TSRI_OS_POINTS) return false;
  *rule = (os_fail_rule_t){ p, 1, 1 };
  s += n;
  if (*s == ':' && (!os_fail_number(s + 1, &s, &rule->nth) || rule->nth == 0)) return false;
  if (*s == ':' && !os_fail_number(s + 1, &s, &rule->count)) return false;
  *end = s;
  return *s == 0 || *s == ',';
}

int tsri_os_fail_set(const char *spec) {
  os_fail_rule_t rules[OS_FAIL_RULES];
  size_t n = 0;
  for (const char *s = spec; s != NULL && *s != 0;) {
    if (n == OS_FAIL_RULES || !os_fail_rule(s, &s, &rules[n])) return EINVAL;
    n++;
    if (*s == ',') s++;
  }
  atomic_store_explicit(&tsri_os_fail_armed, 0, memory_order_release);
  memcpy(os_rules, rules, n * sizeof rules[0]);
  os_rule_count = n;
  atomic_store_explicit(&tsri_os_fail_armed, n != 0, memory_order_release);
  return 0;
}

bool tsri_os_fail_now(tsri_os_point_t point) {
  if (!atomic_load_explicit(&tsri_os_fail_armed, memory_order_acquire)) return false;
  uint64_t call = atomic_fetch_add_explicit(&os_calls[point], 1, memory_order_relaxed) + 1;
  for (size_t i = 0; i < os_rule_count; i++) {
    const os_fail_rule_t *r = &os_rules[i];
    if (r->point == (unsigned)point && call >= r->nth && (r->count == 0 || call - r->nth < r->count)) {
      atomic_fetch_add_explicit(&os_failed[point], 1, memory_order_relaxed);
      return true;
    }
  }
  return false;
}

void tsri_os_fail_counts(tsri_os_point_t point, uint64_t *calls, uint64_t *failed) {
  *calls = atomic_load_explicit(&os_calls[point], memory_order_relaxed);
  *failed = atomic_load_explicit(&os_failed[point], memory_order_relaxed);
}
