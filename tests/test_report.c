/* test_report.c: the report API (tessera.h, "Tracking" to "Reports") and
 * the reports tessera writes by itself.
 *
 * This program's own malloc is the C library's; only its tsr_ calls reach
 * tessera, so tessera's heap holds exactly the blocks a test made, and the
 * totals, sites and diffs can be checked to the byte.  Every test runs in
 * a process of its own (Criterion), so it starts from an empty heap.
 *
 * Sites are told apart by the function that called tsr_malloc: each
 * allocating function below is noinline, and a site belongs to it when the
 * site's innermost frame (the return address of that call) lies inside it
 * (see in_function).  Reports name the functions through the symbol table
 * (this program is built with -g).  JSON is validated against
 * docs/report-schema.json by python3 and jsonschema, through report.py,
 * which this file writes out.  The exit and signal reports are made by
 * report_helper (TESSERA_* settings are read at start-up), and by
 * report_libc_helper, linked to the override, for the blocks the C library
 * keeps.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "tsr_criterion.h"

#include "tsr_test.h"
#include "tsr_sites.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "track/track.h"   /* the broken-record test reaches a page's record area */

/* ------------------------------------------------------------------------
 * Allocating functions, and which one a return address lies in
 * ---------------------------------------------------------------------- */

enum { A_N = 300, A_SIZE = 40, B_N = 7, B_SIZE = 5000, C_N = 2, C_SIZE = 300000 };
enum { D_N = 50, D_SIZE = 100, BASE_N = 10, BASE_SIZE = 3000 };

static void *a_blocks[A_N], *b_blocks[B_N], *c_blocks[C_N], *d_blocks[D_N], *base_blocks[BASE_N];

static TSR_ALLOC_FN void alloc_a(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(A_N); i++) {
    a_blocks[i] = tsr_malloc(A_SIZE);
    TSR_KEEP(a_blocks[i]);
  }
}

static TSR_ALLOC_FN void alloc_b(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(B_N); i++) {
    b_blocks[i] = tsr_malloc(B_SIZE);
    TSR_KEEP(b_blocks[i]);
  }
}

static TSR_ALLOC_FN void alloc_c(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(C_N); i++) {
    c_blocks[i] = tsr_malloc(C_SIZE);
    TSR_KEEP(c_blocks[i]);
  }
}

static TSR_ALLOC_FN void alloc_d(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(D_N); i++) {
    d_blocks[i] = tsr_malloc(D_SIZE);
    TSR_KEEP(d_blocks[i]);
  }
}

/* One allocating function reached through two parents at the same stack
 * depth, so that both calls start from the same frame address: the stack
 * memo must still tell them apart. */
enum { LEAF_SIZE = 24, LEAF_ROUNDS = 3000 };
static void *leaf_blocks[LEAF_ROUNDS];

static TSR_ALLOC_FN void *alloc_leaf(void) {
  void *p = tsr_malloc(LEAF_SIZE);
  TSR_KEEP(p);
  return p;
}

static TSR_ALLOC_FN void *parent_x(void) {
  void *p = alloc_leaf();
  TSR_KEEP(p);
  return p;
}

static TSR_ALLOC_FN void *parent_y(void) {
  void *p = alloc_leaf();
  TSR_KEEP(p);
  return p;
}

static TSR_ALLOC_FN void alloc_base(void) {
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(BASE_N); i++) {
    base_blocks[i] = tsr_malloc(BASE_SIZE);
    TSR_KEEP(base_blocks[i]);
  }
}

/* Many sites: site k (of SPREAD_SITES) is spread_a's chain of SPREAD_BITS
 * calls for k (TSR_STACK_PER_K), with a call stack of its own.  Site k
 * grows by spread_count(k) blocks: counts out of k's order, each shared by
 * two or three sites. */
enum { SPREAD_BITS = 7, SPREAD_SITES = 1 << SPREAD_BITS, SPREAD_SIZE = 48, SPREAD_MAX = 61 };
static void *spread_blocks[SPREAD_SITES * SPREAD_MAX];

static int spread_count(unsigned k) { return (int)(k * 37 % SPREAD_MAX) + 1; }

TSR_STACK_PER_K(spread, spread_count(k), SPREAD_SIZE)

/* The sampling workload: one block per call, from two functions. */
static TSR_ALLOC_FN void *sample_kib(void) {
  void *p = tsr_malloc(1024);
  TSR_KEEP(p);
  return p;
}

static TSR_ALLOC_FN void *sample_small(void) {
  void *p = tsr_malloc(64);
  TSR_KEEP(p);
  return p;
}

static void free_all(void **v, size_t n) {
  for (size_t i = 0; i < n; i++) {
    tsr_free(v[i]);
    v[i] = NULL;
  }
}

typedef void (*fn_t)(void);

static const struct {
  const char *name;
  fn_t fn;
} known_fns[] = {
  { "alloc_a", alloc_a }, { "alloc_b", alloc_b }, { "alloc_c", alloc_c }, { "alloc_d", alloc_d },
  { "alloc_base", alloc_base }, { "sample_kib", (fn_t)sample_kib },
  { "sample_small", (fn_t)sample_small }, { "alloc_leaf", (fn_t)alloc_leaf },
  { "parent_x", (fn_t)parent_x }, { "parent_y", (fn_t)parent_y },
  { "spread_a", (fn_t)spread_a }, { "spread_b", (fn_t)spread_b },
};
#define KNOWN_FNS (sizeof known_fns / sizeof known_fns[0])

/* Is pc inside fn?  After fn's first byte, closer to fn than to any other
 * function of this table that starts before pc, and within 4 KiB (the
 * functions above are a few hundred bytes even in sanitizer builds). */
static bool in_function(const void *pc, fn_t fn) {
  uintptr_t p = (uintptr_t)pc, f = (uintptr_t)(void *)fn;
  if (p <= f || p - f >= 4096) return false;
  for (size_t i = 0; i < KNOWN_FNS; i++) {
    uintptr_t g = (uintptr_t)(void *)known_fns[i].fn;
    if (g > f && g <= p) return false;
  }
  return true;
}

static size_t usable_of(size_t size) {
  void *p = tsr_malloc(size);
  size_t u = tsr_usable_size(p);
  tsr_free(p);
  return u;
}

static void heap_is_sound(void) { cr_assert_eq(tsr_check(), 0, "tsr_check found problems"); }

/* The site whose innermost frame is in fn, or NULL; more than one such
 * site fails the test. */
static const tsr_site_t *site_of(const tsr_site_t *sites, size_t n, fn_t fn, const char *name) {
  const tsr_site_t *found = NULL;
  for (size_t i = 0; i < n; i++) {
    if (sites[i].depth == 0 || !in_function(sites[i].frames[0], fn)) continue;
    cr_assert_null(found, "two sites in %s", name);
    found = &sites[i];
  }
  return found;
}

/* ------------------------------------------------------------------------
 * Reports into memory, and report.py
 * ---------------------------------------------------------------------- */

typedef struct text_s {
  char *buf;
  size_t len, cap;
  size_t calls;
} text_t;

/* An output function: appends to a text_t (the C library's heap). */
static void to_text(const char *piece, size_t len, void *arg) {
  text_t *t = arg;
  t->calls++;
  if (t->len + len + 1 > t->cap) {
    size_t cap = t->cap ? t->cap : 4096;
    while (t->len + len + 1 > cap) cap *= 2;
    t->buf = realloc(t->buf, cap);
    if (t->buf == NULL) abort();
    t->cap = cap;
  }
  memcpy(t->buf + t->len, piece, len);
  t->len += len;
  t->buf[t->len] = 0;
}

static text_t report_text(tsr_format_t format) {
  text_t t = { 0 };
  cr_assert_eq(tsr_report(format, to_text, &t), 0);
  cr_assert_gt(t.len, 0, "format %d: empty report", (int)format);
  cr_assert_eq(strlen(t.buf), t.len, "format %d: a NUL inside the report", (int)format);
  return t;
}

/* report.py REPORTS: validates every line of the file REPORTS against the
 * schema and prints, per report, what the C side compares:
 *   report REASON TRACK LIVE_BLOCKS ALLOCATED REQUESTED SITES SITES_TOTAL
 *   site FUNCTION BLOCKS BYTES REQUESTED ESTIMATED     (innermost frame's)
 *   leaks BLOCKS BYTES EXPECTED_BLOCKS LIBC_BLOCKS
 *   leak FUNCTION BLOCKS BYTES REQUESTED           (per site, innermost frame's)
 *   leakfn FUNCTION BLOCKS BYTES REQUESTED         (per allocating function)
 *   meshable BYTES                                 (pins.meshable)
 *   mesh STATE MESHED_PAGES SAVED MESHES UNMESHES PASSES TIME_NS PAUSE_MAX_NS   (pins.mesh)
 *   errors ERRORS KIND=COUNT...     (the kinds with any, of stats.errors_by_kind,
 *                                    whose counts must add up to ERRORS)
 * and "valid N" at the end; any failure is a traceback and exit status 1. */
static const char report_py[] =
  "import json, sys\n"
  "import jsonschema\n"
  "schema = json.load(open(sys.argv[1]))\n"
  "def fn(site):\n"
  "    f = site['frames']\n"
  "    return f[0].get('function', '?') or '?' if f else '-'\n"
  "n = 0\n"
  "for line in open(sys.argv[2]):\n"
  "    doc = json.loads(line)\n"
  "    jsonschema.validate(doc, schema)\n"
  "    s = doc['stats']\n"
  "    print('report', doc['reason'], doc['track'], s['live_blocks'], s['allocated'], s['requested'],\n"
  "          len(doc['sites']), doc['sites_total'])\n"
  "    for site in doc['sites']:\n"
  "        print('site', fn(site), site['blocks'], site['bytes'], site['requested'], int(site['estimated']))\n"
  "    if 'leaks' in doc:\n"
  "        l = doc['leaks']\n"
  "        print('leaks', l['blocks'], l['bytes'], l['expected_blocks'], l['libc_blocks'])\n"
  "        for site in l['sites']:\n"
  "            print('leak', fn(site), site['blocks'], site['bytes'], site['requested'])\n"
  "        for f in l['functions']:\n"
  "            print('leakfn', f['function'], f['blocks'], f['bytes'], f['requested'])\n"
  "    p = doc.get('pins', {})\n"
  "    if 'meshable' in p:\n"
  "        print('meshable', p['meshable'])\n"
  "    if 'mesh' in p:\n"
  "        m = p['mesh']\n"
  "        print('mesh', m['state'], m['meshed_pages'], m['saved'], m['meshes'], m['unmeshes'], m['passes'],\n"
  "              m['time_ns'], m['pause_max_ns'])\n"
  "    k = s.get('errors_by_kind')\n"
  "    if k is not None:\n"
  "        assert sum(k.values()) == s['errors'], (k, s['errors'])\n"
  "        print(' '.join(['errors', str(s['errors'])] + ['%s=%d' % (n, v) for n, v in k.items() if v]))\n"
  "    n += 1\n"
  "print('valid', n)\n";

static void write_file(const char *path, const char *text, size_t len) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "cannot write %s", path);
  cr_assert_eq(fwrite(text, 1, len, f), len);
  fclose(f);
}

/* A fresh temporary path (the file exists, empty). */
static void temp_path(char *path, size_t size, const char *tag) {
  snprintf(path, size, "/tmp/tsr_report_%s_XXXXXX", tag);
  int fd = mkstemp(path);
  cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
  close(fd);
}

/* Everything left in stream f, appended to *t. */
static void read_stream(FILE *f, text_t *t) {
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) to_text(buf, n, t);
}

/* The text report written to path, which is then removed. */
static text_t text_of_file(const char *path) {
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f, "cannot read %s", path);
  text_t t = { 0 };
  read_stream(f, &t);
  fclose(f);
  unlink(path);
  cr_assert_not_null(t.buf, "empty text report");
  return t;
}

/* Run report.py on the file at path; its output into *out (malloc'd). */
static void run_report_py(const char *path, char **out) {
  char script[64];
  temp_path(script, sizeof script, "py");
  write_file(script, report_py, sizeof report_py - 1);
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' '%s' '%s' '%s' 2>&1", TSR_PYTHON3, script, TSR_REPORT_SCHEMA, path);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  text_t t = { 0 };
  read_stream(p, &t);
  int status = pclose(p);
  unlink(script);
  if (t.buf == NULL) to_text("", 0, &t);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
            "report.py on %s failed (status %#x; python3-jsonschema missing?):\n%s", path, status, t.buf);
  *out = t.buf;
}

/* The line of py output that starts with `prefix` and names `fn` as its
 * second word, or NULL. */
static const char *py_line(const char *out, const char *prefix, const char *fn) {
  size_t np = strlen(prefix), nf = fn ? strlen(fn) : 0;
  for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    if (strncmp(l, prefix, np) != 0 || l[np] != ' ') continue;
    if (fn == NULL || (strncmp(l + np + 1, fn, nf) == 0 && l[np + 1 + nf] == ' ')) return l;
  }
  return NULL;
}

static size_t count_lines(const char *out, const char *prefix) {
  size_t n = 0, np = strlen(prefix);
  for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
    if (strncmp(l, prefix, np) == 0 && l[np] == ' ') n++;
  return n;
}

/* ------------------------------------------------------------------------
 * 1. Full tracking: exact sites and totals
 * ---------------------------------------------------------------------- */

Test(report, full_tracking_sites_are_exact) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  cr_assert_eq(tsr_track_get(), TSR_TRACK_FULL);
  cr_assert_eq(tsr_track_set((tsr_track_t)7), EINVAL);
  cr_assert_eq(tsr_track_get(), TSR_TRACK_FULL);
  size_t ua = usable_of(A_SIZE), ub = usable_of(B_SIZE), uc = usable_of(C_SIZE);
  alloc_a();
  alloc_b();
  alloc_c();

  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.version, TSR_STATS_VERSION);
  cr_assert_eq(s.track, TSR_TRACK_FULL);
  cr_assert_eq(s.requested_exact, 1);
  cr_assert_eq(s.live_blocks, A_N + B_N + C_N);
  cr_assert_eq(s.tracked_blocks, A_N + B_N + C_N);
  cr_assert_eq(s.large_live, C_N);
  cr_assert_eq(s.requested, (uint64_t)A_N * A_SIZE + B_N * B_SIZE + C_N * C_SIZE);
  cr_assert_eq(s.allocated, (uint64_t)A_N * ua + B_N * ub + C_N * uc);
  cr_assert_eq(s.allocations - s.frees, A_N + B_N + C_N);
  cr_assert(fabs((s.internal_fragmentation) - ((double)s.allocated / (double)s.requested)) < 1e-9);

  tsr_site_t sites[16];
  size_t n = tsr_sites(sites, 16);
  cr_assert_eq(n, 3, "%zu sites for 3 allocating functions", n);
  const tsr_site_t *sa = site_of(sites, n, alloc_a, "alloc_a");
  const tsr_site_t *sb = site_of(sites, n, alloc_b, "alloc_b");
  const tsr_site_t *sc = site_of(sites, n, alloc_c, "alloc_c");
  cr_assert(sa && sb && sc, "a site is missing: a %p b %p c %p", (void *)sa, (void *)sb, (void *)sc);
  cr_assert_eq(sa->blocks, A_N);
  cr_assert_eq(sa->requested, (uint64_t)A_N * A_SIZE);
  cr_assert_eq(sa->bytes, (uint64_t)A_N * ua);
  cr_assert_eq(sb->blocks, B_N);
  cr_assert_eq(sb->requested, (uint64_t)B_N * B_SIZE);
  cr_assert_eq(sb->bytes, (uint64_t)B_N * ub);
  cr_assert_eq(sc->blocks, C_N);
  cr_assert_eq(sc->requested, (uint64_t)C_N * C_SIZE);
  cr_assert_eq(sc->bytes, (uint64_t)C_N * uc);
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq(sites[i].estimated, 0);
    cr_assert_neq(sites[i].id, 0);
    if (i) cr_assert_geq(sites[i - 1].bytes, sites[i].bytes, "sites not ordered by bytes");
  }
  /* fewer rows than sites: the count is still the whole number */
  cr_assert_eq(tsr_sites(sites, 1), 3);
  cr_assert_eq(tsr_sites(NULL, 0), 3);

  /* every block visible to the walk, with its exact record */
  free_all(b_blocks, B_N);
  free_all(c_blocks, C_N);
  n = tsr_sites(sites, 16);
  cr_assert_eq(n, 1, "%zu sites after freeing alloc_b's and alloc_c's blocks", n);
  cr_assert_not_null(site_of(sites, n, alloc_a, "alloc_a"));
  free_all(a_blocks, A_N);
  cr_assert_eq(tsr_sites(sites, 16), 0, "sites remain with no live block");
  s = tsr_test_stats();
  cr_assert_eq(s.live_blocks, 0);
  cr_assert_eq(s.tracked_blocks, 0);
  cr_assert_eq(s.requested, 0);
  cr_assert_eq(s.allocated, 0);
  heap_is_sound();
}

/* The site of alloc_leaf's blocks reached through parent, or NULL. */
static const tsr_site_t *leaf_site(const tsr_site_t *sites, size_t n, fn_t parent) {
  for (size_t i = 0; i < n; i++)
    if (sites[i].depth >= 2 && in_function(sites[i].frames[0], (fn_t)alloc_leaf) &&
        in_function(sites[i].frames[1], parent))
      return &sites[i];
  return NULL;
}

Test(report, same_frame_two_parents_are_two_sites) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  size_t x = 0;
  /* runs of different lengths, so that each parent follows itself and the
   * other one */
  TSR_ONE_CALL for (int i = 0; i < tsr_opaque_count(LEAF_ROUNDS); i++) {
    bool via_x = (i % 7) < 3;
    leaf_blocks[i] = via_x ? parent_x() : parent_y();
    x += via_x;
  }
  tsr_site_t sites[16];
  size_t n = tsr_sites(sites, 16);
  const tsr_site_t *sx = leaf_site(sites, n, (fn_t)parent_x);
  const tsr_site_t *sy = leaf_site(sites, n, (fn_t)parent_y);
  cr_assert(sx && sy, "a parent's site is missing (%zu sites): x %p y %p", n, (void *)sx, (void *)sy);
  cr_assert_eq(sx->blocks, x, "through parent_x: %llu blocks, %zu made", (unsigned long long)sx->blocks, x);
  cr_assert_eq(sy->blocks, LEAF_ROUNDS - x, "through parent_y: %llu blocks, %zu made",
               (unsigned long long)sy->blocks, LEAF_ROUNDS - x);
  cr_assert_eq(sx->requested + sy->requested, (uint64_t)LEAF_ROUNDS * LEAF_SIZE);
  free_all(leaf_blocks, LEAF_ROUNDS);
  heap_is_sound();
}

/* Per-block records through the walk, and class rows under full tracking. */
typedef struct rec_check_s {
  size_t seen, bad;
  uint64_t last_seq;
} rec_check_t;

static int check_record(const tsr_block_t *b, void *arg) {
  rec_check_t *c = arg;
  c->seen++;
  bool ok = b->tracked == 1 && b->requested == A_SIZE && b->usable == tsr_usable_size(b->ptr) &&
            b->weight == 1.0 && b->depth > 0 && in_function(b->frames[0], alloc_a) && b->seq > 0 &&
            b->thread == (uint32_t)gettid();
  if (!ok) c->bad++;
  return 0;
}

Test(report, full_tracking_records_and_class_rows) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  alloc_a();
  rec_check_t c = { 0 };
  cr_assert_eq(tsr_walk(check_record, &c), 0);
  cr_assert_eq(c.seen, A_N);
  cr_assert_eq(c.bad, 0, "%zu of %zu records wrong", c.bad, c.seen);

  size_t rows = tsr_class_stats(NULL, 0);
  cr_assert_eq(rows, TSR_CLASS_COUNT + 1);
  tsr_class_stats_t *r = calloc(rows, sizeof *r);
  cr_assert_eq(tsr_class_stats(r, rows), rows);
  size_t ua = tsr_usable_size(a_blocks[0]);
  size_t with_blocks = 0;
  for (size_t i = 0; i < rows; i++) {
    cr_assert_eq(r[i].index, i);
    if (r[i].blocks_live == 0) continue;
    with_blocks++;
    cr_assert_eq(r[i].block_size, ua);
    cr_assert_eq(r[i].blocks_live, A_N);
    cr_assert_eq(r[i].bytes_live, (uint64_t)A_N * ua);
    cr_assert_eq(r[i].bytes_requested, (uint64_t)A_N * A_SIZE);
    cr_assert_geq(r[i].blocks_total, A_N);
    cr_assert(fabs((r[i].utilisation) - ((double)A_N / (double)r[i].blocks_total)) < 1e-9);
    uint64_t pages = 0;
    for (size_t k = 0; k < TSR_OCCUPANCY_BUCKETS; k++) pages += r[i].occupancy[k];
    cr_assert_eq(pages, r[i].pages);
  }
  cr_assert_eq(with_blocks, 1);
  cr_assert_eq(r[rows - 1].block_size, 0, "the last row is the large blocks");
  free(r);
  free_all(a_blocks, A_N);
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * 2. Snapshots and their diff
 * ---------------------------------------------------------------------- */

Test(report, snapshot_diff_is_exact) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  size_t ud = usable_of(D_SIZE), ubase = usable_of(BASE_SIZE);
  cr_assert_neq(ud, ubase);
  alloc_base();   /* live in both snapshots: must not show */
  tsr_snapshot_t *s1 = tsr_snapshot_take();
  cr_assert_not_null(s1);
  alloc_d();
  tsr_snapshot_t *s2 = tsr_snapshot_take();
  cr_assert_not_null(s2);

  tsr_delta_t d[16];
  size_t n = tsr_snapshot_diff(s1, s2, d, 16);
  cr_assert_eq(n, 2, "%zu changes; one site and one class grew", n);
  const tsr_delta_t *site = d[0].is_site ? &d[0] : &d[1];
  const tsr_delta_t *cls = d[0].is_site ? &d[1] : &d[0];
  cr_assert_eq(site->is_site, 1);
  cr_assert_eq(cls->is_site, 0);
  cr_assert_gt(site->depth, 0);
  cr_assert(in_function(site->frames[0], alloc_d), "the site that grew is not alloc_d's");
  cr_assert_eq(site->blocks, D_N);
  cr_assert_eq(site->bytes, (int64_t)(D_N * ud));
  cr_assert_eq(site->blocks_after, D_N);
  cr_assert_eq(site->bytes_after, D_N * ud);
  cr_assert_eq(cls->block_size, ud);
  cr_assert_eq(cls->blocks, D_N);
  cr_assert_eq(cls->bytes, (int64_t)(D_N * ud));
  cr_assert_eq(cls->blocks_after, D_N);

  /* the same snapshot twice: no change */
  cr_assert_eq(tsr_snapshot_diff(s2, s2, d, 16), 0);

  /* as reports */
  text_t t = { 0 };
  cr_assert_eq(tsr_report_diff(s1, s2, TSR_FORMAT_TEXT, to_text, &t), 0);
  cr_assert_not_null(strstr(t.buf, "alloc_d"), "text diff does not name alloc_d:\n%s", t.buf);
  cr_assert_null(strstr(t.buf, "alloc_base"), "text diff names alloc_base, which did not grow:\n%s", t.buf);
  free(t.buf);
  text_t f = { 0 };
  cr_assert_eq(tsr_report_diff(s1, s2, TSR_FORMAT_FOLDED, to_text, &f), 0);
  char want[64];
  snprintf(want, sizeof want, "alloc_d %zu\n", D_N * ud);
  cr_assert_eq(strchr(f.buf, '\n'), f.buf + f.len - 1, "folded diff: one line for one site:\n%s", f.buf);
  cr_assert(f.len >= strlen(want) && strcmp(f.buf + f.len - strlen(want), want) == 0,
            "folded diff does not end in \"%s\":\n%s", want, f.buf);
  free(f.buf);
  text_t j = { 0 };
  cr_assert_eq(tsr_report_diff(s1, s2, TSR_FORMAT_JSON, to_text, &j), 0);
  cr_assert_eq(strncmp(j.buf, "{\"schema\":\"tessera-diff\"", 24), 0, "%s", j.buf);
  free(j.buf);
  text_t om = { 0 };
  cr_assert_eq(tsr_report_diff(s1, s2, TSR_FORMAT_OPENMETRICS, to_text, &om), EINVAL);
  cr_assert_eq(om.len, 0);

  /* and back: alloc_d's blocks freed */
  free_all(d_blocks, D_N);
  tsr_snapshot_t *s3 = tsr_snapshot_take();
  n = tsr_snapshot_diff(s2, s3, d, 16);
  cr_assert_eq(n, 2, "%zu changes after freeing alloc_d's blocks", n);
  site = d[0].is_site ? &d[0] : &d[1];
  cls = d[0].is_site ? &d[1] : &d[0];
  cr_assert(site->is_site && in_function(site->frames[0], alloc_d));
  cr_assert_eq(site->blocks, -D_N);
  cr_assert_eq(site->bytes, -(int64_t)(D_N * ud));
  cr_assert_eq(site->blocks_after, 0);
  cr_assert_eq(cls->blocks, -D_N);
  cr_assert_eq(tsr_snapshot_diff(s1, s3, d, 16), 0, "s1 and s3 hold the same blocks");

  tsr_snapshot_free(s1);
  tsr_snapshot_free(s2);
  tsr_snapshot_free(s3);
  free_all(base_blocks, BASE_N);
  heap_is_sound();
}

/* Does a come before b in the documented order of a diff? */
static bool delta_first(const tsr_delta_t *a, const tsr_delta_t *b) {
  if (a->bytes != b->bytes) return a->bytes > b->bytes;
  if (a->is_site != b->is_site) return a->is_site > b->is_site;
  return a->id < b->id;
}

/* SPREAD_SITES sites and alloc_b's grow between two snapshots: the diff
 * holds each of them once, with its live figures (nothing was live
 * before), and two classes, in the documented order: most growth first;
 * at equal growth, sites before classes, each by id.  alloc_b is the only
 * site in its class, so its site and its class tie. */
Test(report, snapshot_diff_orders_many_sites) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  size_t ub = usable_of(B_SIZE);
  tsr_snapshot_t *s1 = tsr_snapshot_take();
  cr_assert_not_null(s1);
  size_t used = 0;
  for (unsigned k = 0; k < SPREAD_SITES; k++) {
    spread_a(k, SPREAD_BITS, spread_blocks + used);
    used += (size_t)spread_count(k);
  }
  alloc_b();
  tsr_snapshot_t *s2 = tsr_snapshot_take();
  cr_assert_not_null(s2);

  enum { ROWS = SPREAD_SITES + 1, CHANGES = ROWS + 2 };
  tsr_site_t live[ROWS + 1];
  cr_assert_eq(tsr_sites(live, ROWS + 1), ROWS, "live sites: one per call stack");
  tsr_delta_t d[CHANGES + 1];
  size_t n = tsr_snapshot_diff(s1, s2, d, CHANGES + 1);
  cr_assert_eq(n, CHANGES, "%zu changes for %d sites and 2 classes", n, ROWS);
  size_t sites = 0, ties = 0, b_site = n, b_class = n;
  bool seen[ROWS] = { false };
  for (size_t i = 0; i < n; i++) {
    if (i) {
      cr_assert(delta_first(&d[i - 1], &d[i]), "changes %zu and %zu out of order: %lld bytes (site %d, id %u), "
                "%lld bytes (site %d, id %u)", i - 1, i, (long long)d[i - 1].bytes, d[i - 1].is_site,
                d[i - 1].id, (long long)d[i].bytes, d[i].is_site, d[i].id);
      ties += d[i - 1].bytes == d[i].bytes;
    }
    if (!d[i].is_site) {
      /* alloc_b's class: its blocks may be fitted to B_SIZE, less than
       * an eighth smaller than the class's (docs/design.md) */
      if (d[i].block_size >= ub && d[i].block_size - ub < ub / 8) b_class = i;
      continue;
    }
    sites++;
    size_t j = 0;
    while (j < ROWS && live[j].id != d[i].id) j++;
    cr_assert_lt(j, ROWS, "change %zu names site %u, which holds no block", i, d[i].id);
    cr_assert_not(seen[j], "site %u changes twice", d[i].id);
    seen[j] = true;
    const tsr_site_t *s = &live[j];
    cr_assert_eq(d[i].blocks, (int64_t)s->blocks);
    cr_assert_eq(d[i].bytes, (int64_t)s->bytes);
    cr_assert_eq(d[i].blocks_after, s->blocks);
    cr_assert_eq(d[i].bytes_after, s->bytes);
    if (d[i].depth > 0 && in_function(d[i].frames[0], alloc_b)) b_site = i;
  }
  cr_assert_eq(sites, ROWS, "%zu site changes for %d sites (one change per site)", sites, ROWS);
  cr_assert_gt(ties, SPREAD_SITES / 4, "only %zu ties: the order of equals is not tested", ties);
  cr_assert(b_site < n && b_class == b_site + 1, "alloc_b's site (%zu) is not right before its class (%zu)",
            b_site, b_class);
  cr_assert_eq(d[b_site].bytes, (int64_t)(B_N * ub));
  /* the other sites grew by spread_count(k) blocks, one k each */
  int counts[SPREAD_MAX + 1] = { 0 };
  for (unsigned k = 0; k < SPREAD_SITES; k++) counts[spread_count(k)]++;
  for (size_t i = 0; i < n; i++) {
    if (!d[i].is_site || i == b_site) continue;
    cr_assert(d[i].blocks >= 1 && d[i].blocks <= SPREAD_MAX, "a site grew by %lld blocks", (long long)d[i].blocks);
    counts[d[i].blocks]--;
  }
  for (int c = 1; c <= SPREAD_MAX; c++) cr_assert_eq(counts[c], 0, "sites grown by %d blocks: %d missing", c, counts[c]);

  tsr_snapshot_free(s1);
  tsr_snapshot_free(s2);
  free_all(spread_blocks, used);
  free_all(b_blocks, B_N);
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * 3. Sampling: estimates within a stated tolerance
 * ---------------------------------------------------------------------- */

/* 384 MiB from each of two functions, in 1 KiB and 64-byte blocks, with
 * the default TESSERA_SAMPLE_BYTES (512 KiB).  The sample points form a
 * Poisson process over the bytes asked for, so each function gets about
 * 384 MiB / 512 KiB = 768 samples and its estimate (samples x 1/p) has a
 * relative standard error of about 1/sqrt(768) = 3.6%.  15% is more than
 * 4 standard errors: a correct sampler fails this about once in 30000
 * runs, a biased one (say 1/p off by 20%) nearly always. */
#define SAMPLE_TOTAL ((size_t)384 << 20)
#define SAMPLE_TOLERANCE 0.15

static void within(const char *what, double estimate, double truth) {
  double err = fabs(estimate - truth) / truth;
  cr_assert_leq(err, SAMPLE_TOLERANCE, "%s: estimate %.0f, truth %.0f (%.1f%% off)", what, estimate, truth,
                100 * err);
}

Test(report, sample_estimates_within_tolerance) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_SAMPLE), 0);
  size_t nk = SAMPLE_TOTAL / 1024, ns = SAMPLE_TOTAL / 64;
  void **k = malloc(nk * sizeof *k), **sm = malloc(ns * sizeof *sm);
  cr_assert(k && sm);
  size_t ik = 0, is = 0;
  while (ik < nk || is < ns) {   /* interleaved, 16 small to 1 big */
    if (ik < nk) k[ik++] = sample_kib();
    for (int r = 0; r < 16 && is < ns; r++) sm[is++] = sample_small();
  }
  size_t uk = tsr_usable_size(k[0]), us = tsr_usable_size(sm[0]);

  tsr_site_t sites[16];
  size_t n = tsr_sites(sites, 16);
  cr_assert_eq(n, 2, "%zu sites for 2 allocating functions", n);
  const tsr_site_t *sk = site_of(sites, n, (fn_t)sample_kib, "sample_kib");
  const tsr_site_t *ss = site_of(sites, n, (fn_t)sample_small, "sample_small");
  cr_assert(sk && ss);
  cr_assert_eq(sk->estimated, 1);
  cr_assert_eq(ss->estimated, 1);
  within("sample_kib blocks", (double)sk->blocks, (double)nk);
  within("sample_kib bytes", (double)sk->bytes, (double)nk * (double)uk);
  within("sample_kib requested", (double)sk->requested, (double)nk * 1024);
  within("sample_small blocks", (double)ss->blocks, (double)ns);
  within("sample_small bytes", (double)ss->bytes, (double)ns * (double)us);
  within("sample_small requested", (double)ss->requested, (double)ns * 64);

  tsr_stats_t s = tsr_test_stats();
  cr_assert_eq(s.track, TSR_TRACK_SAMPLE);
  cr_assert_eq(s.requested_exact, 0);
  cr_assert_eq(s.live_blocks, nk + ns);
  cr_assert_eq(s.allocated, (uint64_t)nk * uk + (uint64_t)ns * us);
  cr_assert_lt(s.tracked_blocks, s.live_blocks / 100, "%llu records for sampling",
               (unsigned long long)s.tracked_blocks);
  within("requested total", (double)s.requested, (double)SAMPLE_TOTAL * 2);

  free_all(k, nk);
  free_all(sm, ns);
  free(k);
  free(sm);
  cr_assert_eq(tsr_sites(sites, 16), 0);
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * 4. The walk, while other threads allocate and free
 * ---------------------------------------------------------------------- */

enum { WALK_N = 20000, WALK_ROUNDS = 3 };

typedef struct walk_s {
  uintptr_t *addr;          /* sorted */
  size_t *usable, *size;    /* by index in addr */
  uint32_t *hits;
  size_t visited, wrong_usable, wrong_record, reentered;
  bool full;
} walk_t;

static int cmp_addr(const void *x, const void *y) {
  uintptr_t a = *(const uintptr_t *)x, b = *(const uintptr_t *)y;
  return a < b ? -1 : a > b;
}

static long find_addr(const walk_t *w, uintptr_t p) {
  size_t lo = 0, hi = WALK_N;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (w->addr[mid] < p) lo = mid + 1;
    else hi = mid;
  }
  return lo < WALK_N && w->addr[lo] == p ? (long)lo : -1;
}

static int walk_visit(const tsr_block_t *b, void *arg) {
  walk_t *w = arg;
  if (w->visited++ == 0) {   /* the visitor may allocate and free */
    void *p = tsr_malloc(777);
    if (p != NULL) {
      memset(p, 7, 777);
      w->reentered++;
    }
    tsr_free(p);
  }
  long i = find_addr(w, (uintptr_t)b->ptr);
  if (i < 0) return 0;
  w->hits[i]++;
  if (b->usable != w->usable[i]) w->wrong_usable++;
  if (w->full && (b->tracked != 1 || b->requested != w->size[i] || b->weight != 1.0)) w->wrong_record++;
  return 0;
}

static atomic_int churn_stop;

static void *churn(void *arg) {
  uint64_t rng = (uint64_t)(uintptr_t)arg * 0x2545F4914F6CDD1Dull + 7;
  enum { SLOTS = 1024 };
  void **slot = calloc(SLOTS, sizeof *slot);
  while (!atomic_load_explicit(&churn_stop, memory_order_relaxed)) {
    size_t i = tsr_test_rand(&rng) % SLOTS;
    tsr_free(slot[i]);
    uint64_t r = tsr_test_rand(&rng);
    size_t size = (r % 64 == 0) ? 131073 + r % 200000 : 1 + r % 20000;
    slot[i] = tsr_malloc(size);
    if (slot[i] != NULL) *(volatile char *)slot[i] = 1;
  }
  for (size_t i = 0; i < SLOTS; i++) tsr_free(slot[i]);
  free(slot);
  return NULL;
}

static size_t walk_size(size_t i) {
  static const size_t sizes[] = { 16, 48, 100, 512, 2000, 9000, 40000 };
  if (i % 1000 == 999) return 200000;   /* 20 large blocks */
  return sizes[i % 7] + i % 13;
}

static void walk_under_churn(tsr_track_t level) {
  cr_assert_eq(tsr_track_set(level), 0);
  walk_t w = { 0 };
  w.full = level == TSR_TRACK_FULL;
  w.addr = malloc(WALK_N * sizeof *w.addr);
  w.usable = malloc(WALK_N * sizeof *w.usable);
  w.size = malloc(WALK_N * sizeof *w.size);
  w.hits = malloc(WALK_N * sizeof *w.hits);
  cr_assert(w.addr && w.usable && w.size && w.hits);
  uintptr_t *unsorted = malloc(WALK_N * sizeof *unsorted);
  for (size_t i = 0; i < WALK_N; i++) {
    void *p = tsr_malloc(walk_size(i));
    cr_assert_not_null(p);
    unsorted[i] = w.addr[i] = (uintptr_t)p;
  }
  qsort(w.addr, WALK_N, sizeof *w.addr, cmp_addr);
  for (size_t i = 0; i < WALK_N; i++) {
    long at = find_addr(&w, unsorted[i]);
    cr_assert_geq(at, 0);
    w.size[at] = walk_size(i);
    w.usable[at] = tsr_usable_size((void *)unsorted[i]);
  }

  enum { THREADS = 3 };
  pthread_t t[THREADS];
  atomic_store(&churn_stop, 0);
  for (uintptr_t i = 0; i < THREADS; i++) cr_assert_eq(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
  tsr_test_sleep_ms(50);
  for (int round = 0; round < WALK_ROUNDS; round++) {
    memset(w.hits, 0, WALK_N * sizeof *w.hits);
    w.visited = w.wrong_usable = w.wrong_record = w.reentered = 0;
    cr_assert_eq(tsr_walk(walk_visit, &w), 0);
    size_t missed = 0, twice = 0;
    for (size_t i = 0; i < WALK_N; i++) {
      if (w.hits[i] == 0) missed++;
      if (w.hits[i] > 1) twice++;
    }
    cr_assert_eq(missed, 0, "round %d: %zu of %d live blocks not visited", round, missed, WALK_N);
    cr_assert_eq(twice, 0, "round %d: %zu blocks visited more than once", round, twice);
    cr_assert_eq(w.wrong_usable, 0, "round %d: %zu blocks with the wrong usable size", round, w.wrong_usable);
    cr_assert_eq(w.wrong_record, 0, "round %d: %zu blocks with a wrong record", round, w.wrong_record);
    cr_assert_eq(w.reentered, 1);
    cr_assert_geq(w.visited, WALK_N);
  }
  atomic_store(&churn_stop, 1);
  for (int i = 0; i < THREADS; i++) pthread_join(t[i], NULL);

  /* a stop value ends the walk and comes back */
  for (size_t i = 0; i < WALK_N; i++) tsr_free((void *)unsorted[i]);
  cr_assert_eq(tsr_walk(NULL, NULL), EINVAL);
  free(unsorted);
  free(w.addr);
  free(w.usable);
  free(w.size);
  free(w.hits);
  heap_is_sound();
}

Test(report, walk_sees_each_live_block_once_sampling) { walk_under_churn(TSR_TRACK_SAMPLE); }

Test(report, walk_sees_each_live_block_once_full) { walk_under_churn(TSR_TRACK_FULL); }

static int stop_at_third(const tsr_block_t *b, void *arg) {
  (void)b;
  return ++*(int *)arg == 3 ? 42 : 0;
}

Test(report, walk_stops_on_nonzero) {
  void *p[10];
  for (int i = 0; i < 10; i++) p[i] = tsr_malloc(64);
  int calls = 0;
  cr_assert_eq(tsr_walk(stop_at_third, &calls), 42);
  cr_assert_eq(calls, 3);
  for (int i = 0; i < 10; i++) tsr_free(p[i]);
}

/* ------------------------------------------------------------------------
 * 5. The report formats
 * ---------------------------------------------------------------------- */

Test(report, json_report_matches_schema_and_stats) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  alloc_a();
  alloc_b();
  alloc_c();
  tsr_stats_t s = tsr_test_stats();
  text_t t = report_text(TSR_FORMAT_JSON);
  cr_assert_eq(t.buf[t.len - 1], '\n');
  cr_assert_eq(strchr(t.buf, '\n'), t.buf + t.len - 1, "JSON report on more than one line");
  cr_assert_not_null(strstr(t.buf, "\"errors\":0,\"errors_by_kind\":{\"bad_free\":0,\"double_free\":0,"),
                     "no errors_by_kind after errors:\n%s", t.buf);
  char path[64];
  temp_path(path, sizeof path, "json");
  write_file(path, t.buf, t.len);
  char *out;
  run_report_py(path, &out);
  unlink(path);

  cr_assert_not_null(strstr(out, "valid 1\n"), "%s", out);
  char reason[16], track[16];
  unsigned long long live, allocated, requested, listed, total;
  const char *r = py_line(out, "report", NULL);
  cr_assert_not_null(r, "%s", out);
  cr_assert_eq(sscanf(r, "report %15s %15s %llu %llu %llu %llu %llu", reason, track, &live, &allocated,
                      &requested, &listed, &total), 7, "%s", out);
  cr_assert(strcmp(reason, "api") == 0, "%s", reason);
  cr_assert(strcmp(track, "full") == 0, "%s", track);
  cr_assert_eq(live, s.live_blocks);
  cr_assert_eq(allocated, s.allocated);
  cr_assert_eq(requested, s.requested);
  cr_assert_eq(listed, 3);
  cr_assert_eq(total, 3);
  cr_assert_null(py_line(out, "leaks", NULL), "a report made by tsr_report has leaks:\n%s", out);
  static const struct {
    const char *fn;
    unsigned long long blocks, requested;
  } want[] = { { "alloc_a", A_N, A_N * A_SIZE }, { "alloc_b", B_N, B_N * B_SIZE }, { "alloc_c", C_N, C_N * C_SIZE } };
  for (size_t i = 0; i < 3; i++) {
    const char *l = py_line(out, "site", want[i].fn);
    cr_assert_not_null(l, "no site names %s:\n%s", want[i].fn, out);
    unsigned long long blocks, bytes, req;
    int est;
    char fn[64];
    cr_assert_eq(sscanf(l, "site %63s %llu %llu %llu %d", fn, &blocks, &bytes, &req, &est), 5);
    cr_assert_eq(blocks, want[i].blocks, "%s", want[i].fn);
    cr_assert_eq(req, want[i].requested, "%s", want[i].fn);
    cr_assert_eq(est, 0);
  }
  free(out);
  free(t.buf);
  free_all(a_blocks, A_N);
  free_all(b_blocks, B_N);
  free_all(c_blocks, C_N);
}

Test(report, text_openmetrics_folded) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  alloc_a();
  alloc_b();
  alloc_c();
  tsr_stats_t s = tsr_test_stats();

  text_t txt = report_text(TSR_FORMAT_TEXT);
  cr_assert_not_null(strstr(txt.buf, "totals"), "%s", txt.buf);
  cr_assert_not_null(strstr(txt.buf, "  errors reported        0\n"), "kinds named without errors:\n%s", txt.buf);
  cr_assert_not_null(strstr(txt.buf, "alloc_b"), "text report does not name alloc_b:\n%s", txt.buf);
  free(txt.buf);

  text_t om = report_text(TSR_FORMAT_OPENMETRICS);
  cr_assert(om.len >= 6 && strcmp(om.buf + om.len - 6, "# EOF\n") == 0, "OpenMetrics does not end in # EOF");
  cr_assert_eq(strstr(om.buf, "# EOF"), om.buf + om.len - 6, "# EOF before the end");
  char want[64];
  snprintf(want, sizeof want, "\ntessera_allocated_bytes %llu\n", (unsigned long long)s.allocated);
  cr_assert_not_null(strstr(om.buf, want), "no \"%s\" in:\n%s", want + 1, om.buf);
  snprintf(want, sizeof want, "\ntessera_live_blocks %llu\n", (unsigned long long)s.live_blocks);
  cr_assert_not_null(strstr(om.buf, want), "no \"%s\" in:\n%s", want + 1, om.buf);
  /* one family of errors by kind, a sample for each kind */
  cr_assert_not_null(strstr(om.buf, "\n# TYPE tessera_errors_by_kind counter\n# HELP tessera_errors_by_kind "),
                     "%s", om.buf);
  size_t kinds = 0;
  for (const char *k = strstr(om.buf, "\ntessera_errors_by_kind_total{kind=\""); k != NULL;
       k = strstr(k + 1, "\ntessera_errors_by_kind_total{kind=\""))
    kinds++;
  cr_assert_eq(kinds, TSR_ERROR_KINDS, "%s", om.buf);
  cr_assert_not_null(strstr(om.buf, "\ntessera_errors_by_kind_total{kind=\"write_after_free\"} 0\n"), "%s",
                     om.buf);
  free(om.buf);

  tsr_site_t sites[8];
  size_t n = tsr_sites(sites, 8);
  cr_assert_eq(n, 3);
  text_t f = report_text(TSR_FORMAT_FOLDED);
  cr_assert_eq(f.buf[f.len - 1], '\n');
  /* one line per site, in the same order, "...;innermost bytes" */
  const char *line = f.buf;
  for (size_t i = 0; i < n; i++) {
    const char *end = strchr(line, '\n');
    cr_assert_not_null(end, "folded: %zu lines for %zu sites:\n%s", i, n, f.buf);
    const char *sp = end;
    while (sp > line && sp[-1] != ' ') sp--;
    cr_assert(sp > line && sp < end, "folded line without a number:\n%.*s", (int)(end - line), line);
    char *num_end;
    unsigned long long bytes = strtoull(sp, &num_end, 10);
    cr_assert_eq(num_end, end, "folded line does not end in a number:\n%.*s", (int)(end - line), line);
    cr_assert_eq(bytes, sites[i].bytes, "folded line %zu: %llu bytes, site has %llu", i, bytes,
                 (unsigned long long)sites[i].bytes);
    const char *name = in_function(sites[i].frames[0], alloc_a)   ? "alloc_a"
                       : in_function(sites[i].frames[0], alloc_b) ? "alloc_b"
                                                                  : "alloc_c";
    size_t nl = strlen(name);
    cr_assert((size_t)(sp - 1 - line) >= nl && strncmp(sp - 1 - nl, name, nl) == 0 &&
                  (sp - 1 - nl == line || sp[-2 - (long)nl] == ';'),
              "folded line %zu does not end in %s:\n%.*s", i, name, (int)(end - line), line);
    line = end + 1;
  }
  cr_assert_eq(*line, 0, "folded: more lines than sites:\n%s", f.buf);
  free(f.buf);

  cr_assert_eq(tsr_report((tsr_format_t)9, to_text, NULL), EINVAL);
  cr_assert_eq(tsr_report(TSR_FORMAT_TEXT, NULL, NULL), EINVAL);
  free_all(a_blocks, A_N);
  free_all(b_blocks, B_N);
  free_all(c_blocks, C_N);
}

Test(report, report_to_file_appends) {
  void *p = tsr_malloc(100);
  char path[64];
  temp_path(path, sizeof path, "append");
  cr_assert_eq(tsr_report_to(TSR_FORMAT_JSON, path), 0);
  cr_assert_eq(tsr_report_to(TSR_FORMAT_JSON, path), 0);
  char *out;
  run_report_py(path, &out);
  unlink(path);
  cr_assert_not_null(strstr(out, "valid 2\n"), "%s", out);
  cr_assert_eq(count_lines(out, "report"), 2);
  free(out);
  tsr_free(p);
}

/* ------------------------------------------------------------------------
 * 6, 7. Reports tessera writes by itself: report_helper
 * ---------------------------------------------------------------------- */

/* Run the program argv (one argument at most) with env added to the
 * environment and its stdout into text (size bytes): it must print "ok"
 * and exit 0. */
static void run_program_text(char *const argv[], char *const env[], char *text, size_t size) {
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  tsr_child_t child;
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &child), "could not start %s", argv[0]);
  rewind(out);
  size_t n = fread(text, 1, size - 1, out);
  text[n] = 0;
  fclose(out);
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0,
            "%s %s: status %#x\nstdout:\n%s\nstderr:\n%s", argv[0], argv[1] ? argv[1] : "", child.status, text,
            child.err);
  cr_assert_not_null(strstr(text, "ok\n"), "%s", text);
}

static void run_program(char *const argv[], char *const env[]) {
  char text[4096];
  run_program_text(argv, env, text, sizeof text);
}

static void run_helper(const char *name, char *const env[], const char *report_path) {
  char *argv[] = { (char *)TSR_REPORT_HELPER, (char *)name, NULL };
  run_program(argv, env);
  (void)report_path;
}

static void setting(char *buf, size_t size, const char *name, const char *value) {
  snprintf(buf, size, "%s=%s", name, value);
}

static void expect_leak(const char *out, const char *fn, unsigned long long blocks, unsigned long long bytes,
                        unsigned long long requested) {
  const char *l = py_line(out, "leak", fn);
  cr_assert_not_null(l, "no leak site names %s:\n%s", fn, out);
  char name[64];
  unsigned long long b, y, r;
  cr_assert_eq(sscanf(l, "leak %63s %llu %llu %llu", name, &b, &y, &r), 4);
  cr_assert_eq(b, blocks, "%s: %llu blocks leaked", fn, b);
  cr_assert_eq(y, bytes, "%s: %llu bytes", fn, y);
  cr_assert_eq(r, requested, "%s: %llu requested", fn, r);
}

static void leak_run(const char *name, unsigned long long expected_blocks) {
  char path[64], report[128];
  temp_path(path, sizeof path, "leak");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { "TESSERA_TRACK=full", report, "TESSERA_REPORT_FORMAT=json", NULL };
  run_helper(name, env, path);
  char *out;
  run_report_py(path, &out);
  cr_assert_not_null(strstr(out, "valid 1\n"), "one report at exit:\n%s", out);
  cr_assert_not_null(strstr(out, "report exit full "), "%s", out);
  /* the prefixed library sees only the helper's tsr_ calls: exactly 5 */
  unsigned long long blocks, bytes, expected;
  const char *l = py_line(out, "leaks", NULL);
  cr_assert_not_null(l, "no leaks in the exit report:\n%s", out);
  cr_assert_eq(sscanf(l, "leaks %llu %llu %llu", &blocks, &bytes, &expected), 3);
  size_t u64 = usable_of(64), u1000 = usable_of(1000);
  cr_assert_eq(blocks, 5, "%llu blocks leaked:\n%s", blocks, out);
  cr_assert_eq(bytes, 3 * u64 + 2 * u1000, "%s", out);
  cr_assert_eq(expected, expected_blocks, "%llu expected blocks:\n%s", expected, out);
  cr_assert_eq(count_lines(out, "leak"), 2, "%s", out);
  expect_leak(out, "leak_one", 3, 3 * u64, 3 * 64);
  expect_leak(out, "leak_two", 2, 2 * u1000, 2 * 1000);
  cr_assert_null(py_line(out, "leak", "expected_fn"), "%s", out);
  cr_assert_null(py_line(out, "leak", "keep_cache"), "%s", out);
  free(out);
  unlink(path);
}

Test(report, leaks_at_exit_json) { leak_run("leaks", 1); }

/* expected_fn's 4 blocks are left out by name and counted as expected */
Test(report, leaks_at_exit_expected_function) { leak_run("leaks_fn", 5); }

Test(report, leaks_at_exit_text) {
  char path[64], report[128];
  temp_path(path, sizeof path, "leaktxt");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { "TESSERA_TRACK=full", report, "TESSERA_REPORT_FORMAT=text", NULL };
  run_helper("leaks", env, path);
  text_t t = text_of_file(path);
  cr_assert_not_null(strstr(t.buf, "leaks at exit: 5 blocks"), "%s", t.buf);
  cr_assert_not_null(strstr(t.buf, "leak_one: 3 blocks, 192 bytes requested"), "%s", t.buf);
  cr_assert_not_null(strstr(t.buf, "leak_two: 2 blocks, 2000 bytes requested"), "%s", t.buf);
  free(t.buf);
}

#ifdef TSR_REPORT_LIBC_HELPER
/* Run report_libc_helper with a report at exit in format into path (a
 * fresh temporary file). */
static void libc_helper_run(const char *format, char *path, size_t size) {
  char report[128], fmt[64];
  temp_path(path, size, "libc");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  setting(fmt, sizeof fmt, "TESSERA_REPORT_FORMAT", format);
  char *env[] = { "TESSERA_TRACK=full", report, fmt, NULL };
  char *argv[] = { (char *)TSR_REPORT_LIBC_HELPER, NULL };
  run_program(argv, env);
}

/* report_libc_helper, linked to the override, leaks a strdup and a malloc
 * and prints to stdout, whose buffer the C library keeps: the report at
 * exit lists the two leaks and counts the buffer as kept by the C library. */
Test(report, leaks_at_exit_leave_out_c_library_blocks) {
  char path[64];
  libc_helper_run("text", path, sizeof path);
  text_t t = text_of_file(path);
  const char *leaks = strstr(t.buf, "\nleaks at exit: ");
  cr_assert_not_null(leaks, "%s", t.buf);
  const char *end = strstr(leaks, "\nsize classes");
  cr_assert_not_null(end, "%s", t.buf);
  int len = (int)(end - leaks);
  unsigned long long blocks, marked, libc;
  cr_assert_eq(sscanf(leaks, "\nleaks at exit: %llu blocks, %*u bytes still live (%llu more marked expected, "
                      "%llu kept by the C library)", &blocks, &marked, &libc), 3, "%.*s", len, leaks);
  cr_assert_eq(blocks, 2, "%.*s", len, leaks);
  cr_assert_eq(marked, 0, "%.*s", len, leaks);
  cr_assert_geq(libc, 1, "the stdout buffer is not counted as the C library's:\n%.*s", len, leaks);
  cr_assert_not_null(memmem(leaks, (size_t)len, "leak_string", 11), "%.*s", len, leaks);
  cr_assert_not_null(memmem(leaks, (size_t)len, "leak_block", 10), "%.*s", len, leaks);
  cr_assert_null(memmem(leaks, (size_t)len, "_IO_file_doallocate", 19), "%.*s", len, leaks);
  cr_assert_not_null(memmem(t.buf, (size_t)(leaks - t.buf), "_IO_file_doallocate", 19),
                     "the stdout buffer is not among the live sites:\n%s", t.buf);
  free(t.buf);

  libc_helper_run("json", path, sizeof path);
  char *out;
  run_report_py(path, &out);
  unlink(path);
  cr_assert_not_null(strstr(out, "valid 1\n"), "%s", out);
  unsigned long long bytes, expected;
  const char *l = py_line(out, "leaks", NULL);
  cr_assert_not_null(l, "%s", out);
  cr_assert_eq(sscanf(l, "leaks %llu %llu %llu %llu", &blocks, &bytes, &expected, &libc), 4, "%s", out);
  cr_assert_eq(blocks, 2, "%s", out);
  cr_assert_geq(libc, 1, "%s", out);
  cr_assert_eq(expected, libc, "%s", out);
  cr_assert_eq(count_lines(out, "leak"), 2, "%s", out);
  expect_leak(out, "leak_block", 1, usable_of(100), 100);
  free(out);
}
#endif

#ifdef TSR_REPORT_CXX_HELPER
/* One leakfn line of report.py's output names fn, with these figures. */
static void expect_leak_function(const char *out, const char *fn, unsigned long long blocks,
                                 unsigned long long bytes, unsigned long long requested) {
  const char *l = py_line(out, "leakfn", fn);
  cr_assert_not_null(l, "no leaks under the function %s:\n%s", fn, out);
  unsigned long long b, y, r;
  cr_assert_eq(sscanf(l + strlen("leakfn ") + strlen(fn), "%llu %llu %llu", &b, &y, &r), 3, "%s", out);
  cr_assert_eq(b, blocks, "%s: %llu blocks leaked:\n%s", fn, b, out);
  cr_assert_eq(y, bytes, "%s: %llu bytes:\n%s", fn, y, out);
  cr_assert_eq(r, requested, "%s: %llu requested:\n%s", fn, r, out);
}

/* report_cxx_helper, a C++ program linked to the override, leaks seven
 * blocks from four functions through operator new, new[] and
 * std::string: the report at exit lists those seven, under the program's
 * functions rather than operator new or std::string's (a member
 * function's name decoded), and not the C++ library's pool for
 * exceptions, which it keeps until exit. */
static char *cxx_helper_report(const char *arg) {
  char path[64], report[128];
  temp_path(path, sizeof path, "cxx");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { "TESSERA_TRACK=full", report, "TESSERA_REPORT_FORMAT=json", NULL };
  char *argv[] = { (char *)TSR_REPORT_CXX_HELPER, (char *)arg, NULL };
  run_program(argv, env);
  char *out;
  run_report_py(path, &out);
  unlink(path);
  return out;
}

Test(report, leaks_at_exit_of_a_cxx_program) {
  char *out = cxx_helper_report(NULL);
  cr_assert_not_null(strstr(out, "valid 1\n"), "%s", out);
  unsigned long long blocks, bytes, expected, libc;
  const char *l = py_line(out, "leaks", NULL);
  cr_assert_not_null(l, "%s", out);
  cr_assert_eq(sscanf(l, "leaks %llu %llu %llu %llu", &blocks, &bytes, &expected, &libc), 4, "%s", out);
  size_t u48 = usable_of(48), u1000 = usable_of(1000), u32 = usable_of(32), u201 = usable_of(201),
         u64 = usable_of(64);
  cr_assert_eq(blocks, 7, "%s", out);
  cr_assert_eq(bytes, 3 * u48 + u1000 + u32 + u201 + u64, "%s", out);
  cr_assert_eq(count_lines(out, "leakfn"), 4, "%s", out);
  expect_leak_function(out, "leak_nodes", 3, 3 * u48, 3 * 48);
  expect_leak_function(out, "leak_array", 1, u1000, 1000);
  expect_leak_function(out, "leak_text", 2, u32 + u201, 32 + 201);
  expect_leak_function(out, "app::store::keep()", 1, u64, 64);
  free(out);

  /* marked expected by its decoded name, app::store::keep()'s block is
   * left out */
  out = cxx_helper_report("expect");
  l = py_line(out, "leaks", NULL);
  cr_assert_not_null(l, "%s", out);
  cr_assert_eq(sscanf(l, "leaks %llu %llu %llu %llu", &blocks, &bytes, &expected, &libc), 4, "%s", out);
  cr_assert_eq(blocks, 6, "%s", out);
  cr_assert_eq(expected - libc, 1, "%s", out);
  cr_assert_null(py_line(out, "leakfn", "app::store::keep()"), "%s", out);
  free(out);
}

/* A C++ program on the C library's heap, with libtessera.so loaded by
 * dlopen: its report names the allocating C++ function decoded, and the
 * decoder's buffers, which come from the C library's malloc, do not reach
 * tessera's free (which would report a foreign pointer and abort). */
Test(report, decoded_names_in_a_process_on_another_heap) {
  char *argv[] = { (char *)TSR_REPORT_DLOPEN_HELPER, (char *)TSR_LIBTESSERA_SO, NULL };
  char *env[] = { NULL };
  run_program(argv, env);
}
#endif

/* Settings are copied when they are read: a program that overwrites its
 * environment strings (its process title) still gets its report. */
Test(report, report_at_exit_survives_a_rewritten_environment) {
  char path[64], report[128];
  temp_path(path, sizeof path, "rewrite");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { report, "TESSERA_REPORT_FORMAT=json", NULL };
  run_helper("rewrite_env", env, path);
  char *out;
  run_report_py(path, &out);
  unlink(path);
  cr_assert_not_null(strstr(out, "valid 1\n"), "one valid report at exit:\n%s", out);
  cr_assert_not_null(strstr(out, "report exit "), "%s", out);
  free(out);
}

/* Report files are appended to, never truncated, not opened through a
 * symbolic link, and made readable by their owner alone. */
Test(report, report_file_is_appended_private_and_not_through_a_link) {
  char dir[] = "/tmp/tsr-rfile-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[128], report[256], target[128], link[160], cmd[256];
  snprintf(path, sizeof path, "%s/r.json", dir);
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { report, "TESSERA_REPORT_FORMAT=json", NULL };
  run_helper("plain", env, path);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0, "no report file");
  cr_assert_eq(st.st_mode & 0777, 0600, "report file mode %o", (unsigned)(st.st_mode & 0777));
  run_helper("plain", env, path);   /* a second report goes after the first */
  FILE *f = fopen(path, "r");
  cr_assert_not_null(f);
  int lines = 0;
  for (int c; (c = fgetc(f)) != EOF;) lines += c == '\n';
  fclose(f);
  cr_assert_eq(lines, 2, "%d reports in the file after two runs", lines);
  /* through a symbolic link: refused, the file it names left alone */
  snprintf(target, sizeof target, "%s/precious", dir);
  snprintf(link, sizeof link, "%s/link.json", dir);
  f = fopen(target, "w");
  cr_assert_not_null(f);
  fputs("keep\n", f);
  fclose(f);
  cr_assert_eq(symlink(target, link), 0);
  setting(report, sizeof report, "TESSERA_REPORT", link);
  run_helper("plain", env, link);
  f = fopen(target, "r");
  char line[32] = "";
  cr_assert_not_null(fgets(line, sizeof line, f));
  cr_assert_eq(fgetc(f), EOF, "the report went through the link");
  fclose(f);
  cr_assert_eq(strcmp(line, "keep\n"), 0, "the linked file now holds %s", line);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

/* A report stops where its file reaches the process's file size limit
 * (ulimit -f): a write past it raises SIGXFSZ, and the report at exit
 * ended the program that way (status 153 from the shell) after it had
 * done its work. */
Test(report, report_stops_at_the_file_size_limit) {
  char path[64], report[128];
  temp_path(path, sizeof path, "fsize");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { report, NULL };
  struct rlimit was, cut;
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &was), 0);
  cut = was;
  cut.rlim_cur = 3000;   /* the helper inherits it; its report is longer */
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &cut), 0);
  run_helper("plain", env, path);
  run_helper("plain", env, path);   /* a second report finds the file full */
  cr_assert_eq(setrlimit(RLIMIT_FSIZE, &was), 0);
  struct stat st;
  cr_assert_eq(stat(path, &st), 0);
  unlink(path);
  cr_assert_eq(st.st_size, 3000, "report file of %lld bytes under a limit of 3000", (long long)st.st_size);
}

/* Processes that append their reports to one file (forked workers with
 * TESSERA_REPORT naming the same path) under a file size limit: one may
 * take the file to the limit between another's look at its size and that
 * one's write, which then started at the limit and raised SIGXFSZ (70 of
 * 480 writers killed in 30 rounds like these).  None is killed now, and
 * the file stops at the limit. */
#define SHARED_WRITERS 16
#define SHARED_ROUNDS 12

Test(report, writers_of_one_report_file_all_live_at_its_size_limit, .timeout = 120) {
  char path[64];
  temp_path(path, sizeof path, "fshared");
  struct rlimit was;
  cr_assert_eq(getrlimit(RLIMIT_FSIZE, &was), 0);
  int killed = 0;
  for (int round = 0; round < SHARED_ROUNDS; round++) {
    cr_assert_eq(truncate(path, 0), 0);
    struct rlimit cut = was;
    cut.rlim_cur = 100000 + (rlim_t)round * 7777;
    pid_t pids[SHARED_WRITERS];
    for (int i = 0; i < SHARED_WRITERS; i++) {
      pids[i] = fork();
      cr_assert_geq(pids[i], 0);
      if (pids[i] == 0) {
        if (setrlimit(RLIMIT_FSIZE, &cut) != 0) _exit(3);
        for (int k = 0; k < 40; k++) tsr_report_to(TSR_FORMAT_TEXT, path);
        _exit(0);
      }
    }
    for (int i = 0; i < SHARED_WRITERS; i++) {
      int status;
      cr_assert_eq(waitpid(pids[i], &status, 0), pids[i]);
      killed += WIFSIGNALED(status);
      cr_assert(WIFSIGNALED(status) || WEXITSTATUS(status) == 0, "a writer exited %d", WEXITSTATUS(status));
    }
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_leq(st.st_size, (off_t)cut.rlim_cur);
  }
  unlink(path);
  cr_assert_eq(killed, 0, "%d of %d writers killed (SIGXFSZ)", killed, SHARED_WRITERS * SHARED_ROUNDS);
}

/* A set-user-ID program run by a user without its privileges ignores the
 * settings that name files or change how it fails, and its reports say
 * so.  Needs root (to make the helper set-user-ID root and run it as
 * nobody) and setpriv; skipped with a message where either is missing or
 * the OS does not mark the run as secure. */
Test(report, secure_mode_ignores_settings_the_caller_may_not_give) {
  if (geteuid() != 0 || access("/usr/bin/setpriv", X_OK) != 0) {
    cr_skip_test("needs root and /usr/bin/setpriv to run a set-user-ID helper as nobody");
    return;
  }
  char dir[] = "/tmp/tsr-secure-XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char helper[128], path[128], report[160], cmd[512];
  snprintf(helper, sizeof helper, "%s/report_helper", dir);
  snprintf(path, sizeof path, "%s/r.txt", dir);
  snprintf(cmd, sizeof cmd, "chmod 755 %s && cp %s %s && chown root:root %s && chmod 4755 %s", dir,
           TSR_REPORT_HELPER, helper, helper, helper);
  cr_assert_eq(system(cmd), 0, "%s", cmd);
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { report, "TESSERA_ON_ERROR=continue", NULL };
  char *argv[] = { "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", helper, "secure", NULL };
  FILE *out = tmpfile();
  cr_assert_not_null(out);
  tsr_child_t child;
  cr_assert(tsr_test_run_exec(argv, env, fileno(out), &child));
  rewind(out);
  char text[4096];
  size_t n = fread(text, 1, sizeof text - 1, out);
  text[n] = 0;
  fclose(out);
  bool secure = strstr(text, "not secure") == NULL;
  bool wrote = access(path, F_OK) == 0;
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
  if (!secure) {
    cr_skip_test("the OS did not run the set-user-ID helper in secure mode here (a nosuid mount?)");
    return;
  }
  cr_assert(WIFEXITED(child.status) && WEXITSTATUS(child.status) == 0, "status %#x\n%s\n%s", child.status,
            text, child.err);
  cr_assert_not_null(strstr(text, "ok\n"), "%s", text);
  cr_assert_not(wrote, "the set-user-ID helper wrote the report TESSERA_REPORT named");
}

/* Errors under TESSERA_ON_ERROR=continue, by kind in the report at exit. */
Test(report, errors_by_kind_at_exit) {
  char path[64], report[128];
  temp_path(path, sizeof path, "errors");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { "TESSERA_ON_ERROR=continue", report, "TESSERA_REPORT_FORMAT=json", NULL };
  run_helper("errors", env, path);
  char *out;
  run_report_py(path, &out);
  unlink(path);
  cr_assert_not_null(strstr(out, "valid 1\n"), "one report at exit:\n%s", out);
  cr_assert_not_null(strstr(out, "\nerrors 3 bad_free=1 double_free=1 use_after_free=1\n"), "%s", out);
  free(out);
}

/* "%p" in TESSERA_REPORT becomes the process id */
Test(report, report_path_pid) {
  char dir[64];
  snprintf(dir, sizeof dir, "/tmp/tsr_report_pid_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  char report[128];
  snprintf(report, sizeof report, "TESSERA_REPORT=%s/r.%%p.json", dir);
  char *env[] = { "TESSERA_TRACK=full", report, "TESSERA_REPORT_FORMAT=json", NULL };
  run_helper("leaks", env, NULL);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "ls %s", dir);
  FILE *p = popen(cmd, "r");
  char name[128] = "";
  cr_assert_not_null(fgets(name, sizeof name, p));
  pclose(p);
  unsigned pid;
  char tail[16];
  cr_assert_eq(sscanf(name, "r.%u.%15s", &pid, tail), 2, "report file named %s", name);
  cr_assert(strcmp(tail, "json") == 0, "%s", tail);
  cr_assert_gt(pid, 0);
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

Test(report, report_on_signal_while_busy) {
  char path[64], report[128];
  temp_path(path, sizeof path, "signal");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { report, "TESSERA_REPORT_SIGNAL=usr2", "TESSERA_REPORT_FORMAT=json", NULL };
  run_helper("signal", env, path);
  char *out;
  run_report_py(path, &out);
  unlink(path);
  cr_assert_not_null(strstr(out, "valid 3\n"), "two signal reports and one at exit:\n%s", out);
  cr_assert_eq(count_lines(out, "report"), 3, "%s", out);
  const char *first = py_line(out, "report", NULL);
  cr_assert_eq(strncmp(first, "report signal ", 14), 0, "%s", out);
  cr_assert_not_null(strstr(out, "report exit "), "%s", out);
  free(out);
}

/* A fork child gets the parent's report thread back, once, however many of
 * its threads take the slow path that restarts it. */
Test(report, report_thread_restarts_once_in_a_fork_child) {
  char path[64], report[128];
  temp_path(path, sizeof path, "forksig");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  /* ThreadSanitizer refuses a thread started after a multi-threaded fork
   * unless told; this child starts them on purpose */
  char *env[] = { report, "TESSERA_REPORT_SIGNAL=usr2", "TESSERA_REPORT_FORMAT=json",
                  "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:die_after_fork=0", NULL };
  run_helper("fork_signal", env, path);
  unlink(path);
}

/* Meshing's figures in every format.  report_helper mesh leaves one block
 * in sixteen of many spans live at random and calls tsr_collect, which
 * meshes when TESSERA_MESH (read at start-up) is on; it writes the text,
 * JSON and OpenMetrics reports and prints what tsr_pins said meanwhile.
 * Each report must say the same, JSON valid against the schema, and
 * tessera-report pins must show it. */
typedef struct mesh_figures_s {
  char state[16];
  unsigned long long meshed_pages, saved, meshes, unmeshes, passes, ns, pause_max_ns, meshable;
} mesh_figures_t;

/* The report written to base + suffix, which is then removed. */
static text_t mesh_report(const char *base, const char *suffix) {
  char path[96];
  snprintf(path, sizeof path, "%s%s", base, suffix);
  return text_of_file(path);
}

static void expect_in(const text_t *t, const char *what, const char *want) {
  cr_assert_not_null(strstr(t->buf, want), "%s: no \"%s\" in:\n%s", what, want, t->buf);
}

/* Run report_helper mesh with setting (TESSERA_MESH=...); check its
 * reports against the figures it printed, which come back in f. */
static void mesh_run(const char *setting, mesh_figures_t *f) {
  char base[64], env_base[128];
  temp_path(base, sizeof base, "mesh");
  snprintf(env_base, sizeof env_base, "TSR_TEST_REPORT_BASE=%s", base);
  char *env[] = { (char *)setting, env_base, NULL };
  char *argv[] = { (char *)TSR_REPORT_HELPER, (char *)"mesh", NULL };
  char out[4096];
  run_program_text(argv, env, out, sizeof out);
  unlink(base);
  static const char *const states[] = { "off", "on", "unsupported", "paused" };
  unsigned state;
  cr_assert_eq(sscanf(out, "mesh %u %llu %llu %llu %llu %llu %llu %llu %llu", &state, &f->meshed_pages, &f->saved,
                      &f->meshes, &f->unmeshes, &f->passes, &f->ns, &f->pause_max_ns, &f->meshable),
               9, "%s", out);
  cr_assert_lt(state, 4, "%s", out);
  snprintf(f->state, sizeof f->state, "%s", states[state]);
  char want[256];

  text_t txt = mesh_report(base, ".text");
  snprintf(want, sizeof want, "\n  meshing: %s", f->state);
  expect_in(&txt, "text", want);
  expect_in(&txt, "text", " meshable (pairs whose live blocks miss each other)\n");
  if (f->meshes != 0) {
    snprintf(want, sizeof want, "; %llu OS pages share physical pages now, ", f->meshed_pages);
    expect_in(&txt, "text", want);
    snprintf(want, sizeof want, " saved; %llu meshed since start, %llu taken apart, in %llu pass", f->meshes,
             f->unmeshes, f->passes);
    expect_in(&txt, "text", want);
  }
  free(txt.buf);

  char json[96];
  snprintf(json, sizeof json, "%s.json", base);
  char *py;
  run_report_py(json, &py);
  cr_assert_not_null(strstr(py, "valid 1\n"), "%s", py);
  snprintf(want, sizeof want, "\nmesh %s %llu %llu %llu %llu %llu %llu %llu\n", f->state, f->meshed_pages, f->saved,
           f->meshes, f->unmeshes, f->passes, f->ns, f->pause_max_ns);
  cr_assert_not_null(strstr(py, want), "JSON: no \"%s\" in:\n%s", want + 1, py);
  snprintf(want, sizeof want, "\nmeshable %llu\n", f->meshable);
  cr_assert_not_null(strstr(py, want), "JSON: no \"%s\" in:\n%s", want + 1, py);
  free(py);

  text_t tool = { 0 };
  char cmd[256];
  snprintf(cmd, sizeof cmd, "'%s' pins '%s' 2>&1", TSR_REPORT_TOOL, json);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  read_stream(p, &tool);
  int status = pclose(p);
  unlink(json);
  cr_assert(tool.buf != NULL && WIFEXITED(status) && WEXITSTATUS(status) == 0, "tessera-report pins: status %#x:\n%s",
            status, tool.buf ? tool.buf : "");
  snprintf(want, sizeof want, "\n  %llu B (", f->meshable);
  expect_in(&tool, "tessera-report pins", want);
  snprintf(want, sizeof want, "\n  meshing: %s", f->state);
  expect_in(&tool, "tessera-report pins", want);
  if (f->meshes != 0) {
    snprintf(want, sizeof want, "; %llu OS pages share physical pages now, %llu B (", f->meshed_pages, f->saved);
    expect_in(&tool, "tessera-report pins", want);
  }
  free(tool.buf);

  text_t om = mesh_report(base, ".om");
  for (size_t i = 0; i < 4; i++) {
    snprintf(want, sizeof want, "\ntessera_mesh_state{tessera_mesh_state=\"%s\"} %d\n", states[i], i == state);
    expect_in(&om, "OpenMetrics", want);
  }
  static const char *const counts[] = { "meshed_pages", "mesh_saved_bytes", "meshes_total", "unmeshes_total",
                                        "mesh_passes_total", "sparse_page_meshable_bytes" };
  unsigned long long values[] = { f->meshed_pages, f->saved, f->meshes, f->unmeshes, f->passes, f->meshable };
  for (size_t i = 0; i < 6; i++) {
    snprintf(want, sizeof want, "\ntessera_%s %llu\n", counts[i], values[i]);
    expect_in(&om, "OpenMetrics", want);
  }
  snprintf(want, sizeof want, "\ntessera_mesh_seconds_total %llu.%09llu\n", f->ns / 1000000000, f->ns % 1000000000);
  expect_in(&om, "OpenMetrics", want);
  snprintf(want, sizeof want, "\ntessera_mesh_pause_max_seconds %llu.%09llu\n", f->pause_max_ns / 1000000000,
           f->pause_max_ns % 1000000000);
  expect_in(&om, "OpenMetrics", want);
  expect_in(&om, "OpenMetrics", "\n# TYPE tessera_mesh_state stateset\n");
  expect_in(&om, "OpenMetrics", "\n# TYPE tessera_mesh_seconds counter\n");
  free(om.buf);
}

Test(report, mesh_figures_in_every_format) {
  mesh_figures_t f;
  mesh_run("TESSERA_MESH=on", &f);
  if (strcmp(f.state, "unsupported") == 0) cr_skip_test("the OS cannot map a page twice here");
  cr_assert(strcmp(f.state, "on") == 0, "meshing %s", f.state);
  cr_assert_gt(f.meshes, 0, "survivors at random, and nothing meshed");
  cr_assert_gt(f.meshed_pages, 0);
  cr_assert_gt(f.saved, 0);
  cr_assert_gt(f.passes, 0);
  cr_assert_gt(f.ns, 0);
  cr_assert_gt(f.meshable, 0);
}

Test(report, mesh_off_in_every_format) {
  mesh_figures_t f;
  mesh_run("TESSERA_MESH=off", &f);
  cr_assert(strcmp(f.state, "off") == 0, "meshing %s", f.state);
  cr_assert_eq(f.meshes, 0);
  cr_assert_eq(f.meshed_pages, 0);
  cr_assert_eq(f.passes, 0);
  cr_assert_gt(f.meshable, 0, "survivors at random, and nothing meshable");
}

/* ------------------------------------------------------------------------
 * 8. tsr_check finds a broken record
 * ---------------------------------------------------------------------- */

Test(report, check_finds_broken_record) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);
  alloc_a();
  heap_is_sound();
  void *p = a_blocks[17];
  tsr_page_t *pg = tsri_page_of(p);
  cr_assert_not_null(pg);
  long idx = tsri_block_index(pg, p);
  cr_assert_geq(idx, 0);
  tsri_recs_t *r = atomic_load(&pg->recs);
  cr_assert_not_null(r, "a page allocated from under full tracking has no record area");
  /* the contexts the page's records name: break each in turn */
  size_t named = 0;
  for (size_t k = 0; k < TSRI_CTX_SLOTS; k++) {
    tsri_ctx_t *c = &r->ctx[k];
    uint32_t thread = atomic_load(&c->thread), stack = atomic_load(&c->stack);
    if (thread == 0) continue;
    named++;
    atomic_store(&c->stack, 0x7fffff00u);   /* a stack id never handed out */
    cr_assert_geq(tsr_check(), 1, "tsr_check missed a record naming no stack");
    atomic_store(&c->stack, stack);
    heap_is_sound();
    atomic_store(&c->thread, 0);   /* the context slot reads as free */
    cr_assert_geq(tsr_check(), 1, "tsr_check missed a record naming a free context");
    atomic_store(&c->thread, thread);
    heap_is_sound();
  }
  cr_assert_geq(named, 1, "no context in use on a tracked page");
  free_all(a_blocks, A_N);
  heap_is_sound();
}

/* ------------------------------------------------------------------------
 * 9. The memory map and the address space
 * ---------------------------------------------------------------------- */

typedef struct space_s {
  uintptr_t block, large;
  bool block_ours, large_ours;
  tsr_region_t block_region, large_region;
  size_t regions, tessera, out_of_order, gaps;
  uintptr_t prev_end;
  uint64_t free_sum;
} space_t;

static int space_visit(const tsr_region_t *r, void *arg) {
  space_t *s = arg;
  if (s->regions++ != 0) {
    if (r->start < s->prev_end) s->out_of_order++;
    if (r->start != s->prev_end) s->gaps++;
  }
  if (r->end <= r->start) s->out_of_order++;
  s->prev_end = r->end;
  if (r->tessera) s->tessera++;
  if (r->state == TSR_REGION_FREE) s->free_sum += r->end - r->start;
  if (r->start <= s->block && s->block < r->end) {
    s->block_ours = r->tessera && r->state == TSR_REGION_COMMITTED;
    s->block_region = *r;
  }
  if (r->start <= s->large && s->large < r->end) {
    s->large_ours = r->tessera && r->state == TSR_REGION_COMMITTED;
    s->large_region = *r;
  }
  return 0;
}

typedef struct map_s {
  uintptr_t block;
  size_t block_size, found, entries, out_of_order;
  uintptr_t prev_end;
} map_t;

static int map_visit(const tsr_map_entry_t *e, void *arg) {
  map_t *m = arg;
  uintptr_t start = (uintptr_t)e->start;
  if (m->entries++ != 0 && start < m->prev_end) m->out_of_order++;
  m->prev_end = start + e->size;
  if (e->state == TSR_SLOT_STATE_USED && start <= m->block && m->block < start + e->size) {
    m->found++;
    m->block_size = e->block_size;
    if (e->live < 1 || e->live > e->capacity || e->capacity == 0) m->out_of_order++;
  }
  return 0;
}

Test(report, address_space_and_map) {
  cr_assert_eq(tsr_track_set(TSR_TRACK_FULL), 0);   /* the stack table exists too */
  void *p = tsr_malloc(100);
  void *big = tsr_malloc(1 << 20);
  memset(p, 1, 100);
  memset(big, 1, 1 << 20);
  space_t s = { 0 };
  s.block = (uintptr_t)p;
  s.large = (uintptr_t)big;
  tsr_address_space_t tot;
  memset(&tot, 0xff, sizeof tot);
  cr_assert_eq(tsr_address_space(space_visit, &s, &tot), 0);
  cr_assert_gt(tot.largest_free, 0);
  cr_assert_gt(tot.tessera_reserved, 0);
  cr_assert_eq(tot.regions, s.regions);
  cr_assert_eq(tot.free, s.free_sum);
  cr_assert_leq(tot.largest_free, tot.free);
  cr_assert_gt(s.tessera, 0, "no region is marked as tessera's");
  cr_assert_eq(s.out_of_order, 0, "regions out of address order");
  cr_assert_eq(s.gaps, 0, "the regions, free gaps included, leave holes");
  cr_assert(s.block_ours, "the region [%#lx, %#lx) state %d holding the small block %p is not tessera's",
            (unsigned long)s.block_region.start, (unsigned long)s.block_region.end, (int)s.block_region.state, p);
  cr_assert(s.large_ours, "the region [%#lx, %#lx) state %d holding the large block %p is not tessera's",
            (unsigned long)s.large_region.start, (unsigned long)s.large_region.end, (int)s.large_region.state, big);
  tsr_address_space_t only;
  cr_assert_eq(tsr_address_space(NULL, NULL, &only), 0);
  cr_assert_gt(only.tessera_reserved, 0);
  /* every reservation tessera counts is one the report calls tessera's
   * (arenas, record areas, large blocks, the stack table, heap chunks,
   * tables), give or take the report's own scratch pages */
  tsr_stats_t st = tsr_test_stats();
  uint64_t diff = only.tessera_reserved > st.reserved ? only.tessera_reserved - st.reserved
                                                      : st.reserved - only.tessera_reserved;
  cr_assert_leq(diff, st.reserved / 50, "the address space says tessera holds %llu bytes, tessera's "
                "counters %llu", (unsigned long long)only.tessera_reserved, (unsigned long long)st.reserved);

  map_t m = { 0 };
  m.block = (uintptr_t)p;
  cr_assert_eq(tsr_map_walk(map_visit, &m), 0);
  cr_assert_eq(m.found, 1, "%zu USED map entries hold the block", m.found);
  cr_assert_eq(m.block_size, tsr_usable_size(p));
  cr_assert_eq(m.out_of_order, 0);
  cr_assert_eq(tsr_map_walk(NULL, NULL), EINVAL);
  tsr_free(p);
  tsr_free(big);
}

/* ------------------------------------------------------------------------
 * 10. Why memory runs out: the pieces and their holders (issue 19, item 5)
 * ---------------------------------------------------------------------- */

typedef struct holders_s {
  uintptr_t at[6];            /* addresses to find: small, large, code, stack, thread stack, heap */
  uint32_t holder[6];
  uint64_t held[TSR_HOLDER_COUNT];
  uint64_t free_bytes;
} holders_t;

static int holders_visit(const tsr_region_t *r, void *arg) {
  holders_t *h = arg;
  for (size_t i = 0; i < 6; i++)
    if (r->start <= h->at[i] && h->at[i] < r->end) h->holder[i] = r->holder;
  if (r->state == TSR_REGION_FREE) {
    h->free_bytes += r->end - r->start;
    cr_assert_eq(r->holder, TSR_HOLDER_FREE);
  }
  return 0;
}

static void *parked_thread(void *arg) {
  volatile char local = 1;
  __atomic_store_n((uintptr_t *)arg, (uintptr_t)&local, __ATOMIC_RELEASE);
  while (local) usleep(1000 * 1000);   /* the main thread cancels it */
  return NULL;
}

Test(report, space_pieces_and_holders) {
  tsr_space_pieces_t p;
  p.size = sizeof p - 1;
  cr_assert_eq(tsr_space_pieces(&p), EINVAL);
  void *small = tsr_malloc(100);
  void *large = tsr_malloc(1 << 20);
  char *heap = malloc(100);   /* the C library's heap ([heap]) */
  uintptr_t thread_local_at = 0;
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, parked_thread, &thread_local_at), 0);
  while (__atomic_load_n(&thread_local_at, __ATOMIC_ACQUIRE) == 0) usleep(1000);
  volatile char local = 0;
  holders_t h = { { (uintptr_t)small, (uintptr_t)large, (uintptr_t)&strstr, (uintptr_t)&local,
                    thread_local_at, (uintptr_t)heap }, { 0 }, { 0 }, 0 };
  cr_assert_eq(tsr_address_space(holders_visit, &h, NULL), 0);
  cr_assert_eq(h.holder[0], TSR_HOLDER_ARENA);
  cr_assert_eq(h.holder[1], TSR_HOLDER_LARGE);
  cr_assert_eq(h.holder[2], TSR_HOLDER_IMAGE, "the C library's code: holder %u", h.holder[2]);
  cr_assert_eq(h.holder[3], TSR_HOLDER_STACK, "the main thread's stack: holder %u", h.holder[3]);
  cr_assert_eq(h.holder[4], TSR_HOLDER_STACK, "another thread's stack: holder %u", h.holder[4]);
#if !TSR_TEST_SHADOW
  /* under ThreadSanitizer and AddressSanitizer malloc is the sanitizer's,
   * which does not use the C library's heap */
  cr_assert_eq(h.holder[5], TSR_HOLDER_HEAP, "the C library's heap: holder %u", h.holder[5]);
#endif

  p.size = sizeof p;
  cr_assert_eq(tsr_space_pieces(&p), 0);
  cr_assert_eq(p.version, TSR_SPACE_VERSION);
  uint64_t held = 0, pieces = 0, piece_bytes = 0;
  for (size_t k = 1; k < TSR_HOLDER_COUNT; k++) held += p.held[k];
  for (size_t b = 0; b < TSR_FREE_BUCKETS; b++) {
    pieces += p.pieces[b];
    piece_bytes += p.pieces_bytes[b];
  }
  cr_assert_eq(held, p.totals.reserved + p.totals.committed, "the holders share what is not free");
  cr_assert_eq(p.held[TSR_HOLDER_FREE], p.totals.free);
  cr_assert_eq(pieces, p.free_ranges);
  cr_assert_eq(piece_bytes, p.totals.free);
  cr_assert_eq(p.largest[0], p.totals.largest_free);
  cr_assert_eq(p.largest_at[0], p.totals.largest_free_at);
  for (size_t i = 1; i < TSR_LARGEST_LISTED; i++) cr_assert_leq(p.largest[i], p.largest[i - 1]);
  cr_assert_gt(p.held[TSR_HOLDER_ARENA], 0);
  cr_assert_geq(p.held[TSR_HOLDER_LARGE], 1 << 20);
  cr_assert_gt(p.held[TSR_HOLDER_IMAGE], 0);
  cr_assert_gt(p.held[TSR_HOLDER_STACK], 0);
  /* the probe finds what the map calls free, give or take the pages
   * another thread of this process mapped in between */
  cr_assert_gt(p.reservable, 0);
  cr_assert_leq(p.reservable, p.totals.largest_free + ((uint64_t)64 << 20));
  cr_assert_eq(p.reserve_left, UINT64_MAX);
  pthread_cancel(t);
  pthread_join(t, NULL);
  free(heap);
  tsr_free(small);
  tsr_free(large);
}

/* The report at failure: under TESSERA_RESERVE_LIMIT the helper asks for
 * 8 MiB blocks until NULL; the first refusal writes the report, which
 * tells why: the request, the largest free range, the cap. */
Test(report, report_at_failure) {
  char path[64], report[128];
  temp_path(path, sizeof path, "failure");
  setting(report, sizeof report, "TESSERA_REPORT", path);
  char *env[] = { "TESSERA_TRACK=stats", report, "TESSERA_RESERVE_LIMIT=96M", "TESSERA_PURGE_DELAY_MS=0", NULL };
  run_helper("failure", env, path);
  text_t t = text_of_file(path);
  const char *failure = strstr(t.buf, "), failure after ");
  cr_assert_not_null(failure, "no report at failure:\n%s", t.buf);
  const char *exit_report = strstr(t.buf, "), exit after ");
  cr_assert_not_null(exit_report, "no report at exit:\n%s", t.buf);
  cr_assert_lt(failure, exit_report, "one report at failure, first");
  cr_assert_null(strstr(failure + 1, "), failure after "), "a second report at failure");
  cr_assert_not_null(strstr(failure, "why the request failed: 8.0 MiB (a large block) needed a free range of "
                                     "its size; the largest free range is "), "%s", t.buf);
  cr_assert_not_null(strstr(failure, " and the cap leaves "), "%s", t.buf);
  cr_assert_not_null(strstr(exit_report, "requests refused      2, the last "), "%s", t.buf);
  cr_assert_not_null(strstr(failure, "  held by "), "%s", t.buf);
  cr_assert_not_null(strstr(failure, "    tessera large blocks "), "%s", t.buf);
  cr_assert_not_null(strstr(failure, "  free space in "), "%s", t.buf);
  free(t.buf);

  /* the same as JSON, against the schema */
  char *envj[] = { "TESSERA_TRACK=stats", report, "TESSERA_REPORT_FORMAT=json", "TESSERA_RESERVE_LIMIT=96M",
                   "TESSERA_PURGE_DELAY_MS=0", NULL };
  unlink(path);
  run_helper("failure", envj, path);
  char *out;
  run_report_py(path, &out);
  cr_assert_not_null(strstr(out, "valid 2\n"), "a report at failure and one at exit:\n%s", out);
  cr_assert_not_null(strstr(out, "report failure stats "), "%s", out);
  free(out);
  unlink(path);
}

/* The figures from a thread with the smallest stack POSIX allows: the
 * tables of class rows are built in place or in memory from the OS
 * (docs/report.md, "Limits"); on the stack they took 12 to 27 KB, and
 * these calls crashed such a thread. */
static void *figures_on_a_small_stack(void *arg) {
  (void)arg;
  tsr_stats_t s = { .size = sizeof s };
  if (tsr_stats_get(&s) != 0 || s.allocated == 0) return (void *)1;
  tsr_class_stats_t few[3];
  if (tsr_class_stats(few, 3) != TSR_CLASS_COUNT + 1 || few[2].index != 2) return (void *)2;
  tsr_snapshot_t *snap = tsr_snapshot_take();
  if (snap == NULL) return (void *)3;
  tsr_snapshot_free(snap);
  return NULL;
}

Test(report, figures_on_the_smallest_stack) {
  void *keep = tsr_malloc(100);
  cr_assert_not_null(keep);
  void *rv;
  cr_assert(tsr_test_on_small_stack(figures_on_a_small_stack, &rv));
  cr_assert_null(rv, "step %d failed", (int)(uintptr_t)rv);
  tsr_free(keep);
}
