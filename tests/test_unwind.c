/* test_unwind.c: tsri_os_stack_capture against libgcc's _Unwind_Backtrace.
 *
 * The fast walk (alloc/os/unwind_x86.c) promises the frames libgcc
 * reports, in the same order, on code built without frame pointers; this
 * file is built -O2 -fomit-frame-pointer (tests/CMakeLists.txt).  Each case
 * captures one stack three ways from the same frame: libgcc called here,
 * tsri_os_stack_capture, and the fast walk alone, which must answer rather
 * than hand over to libgcc on ordinary stacks.  The stacks run through
 * recursion with RSP- and RBP-based frames (VLAs and alloca make GCC
 * address the frame from RBP), through libc's qsort calling back into
 * this file, on a second thread and on several at once (racing to fill
 * the rule table), from a signal handler (a frame the walk leaves to
 * libgcc), and 10000 times over, where all but the first walk answer from
 * the table.  Through a shared object loaded for the purpose, they also
 * check where the walk reads unwind tables from: the object's file, so
 * that none of the table's pages is mapped into the process, unless the
 * file on disk is no longer the one loaded.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif
#include "tsr_criterion.h"

#include "tsr_test.h"

#include <alloca.h>
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <sys/stat.h>
#include <unwind.h>

#include "os/os.h"
#include "os/unwind_x86.h"

#define DEPTH_MAX 128
#define CHAIN 20

typedef struct stacks_s {
  void *ref[DEPTH_MAX];     /* _Unwind_Backtrace, called here */
  void *capture[DEPTH_MAX]; /* tsri_os_stack_capture */
  void *fast[DEPTH_MAX];    /* tsri_unwind_walk alone */
  size_t nref, ncapture, nfast;
} stacks_t;

/* ------------------------------------------------------------------------
 * The three captures
 * ---------------------------------------------------------------------- */

typedef struct ref_s {
  void **frames;
  size_t max, count, skip;
} ref_t;

static _Unwind_Reason_Code ref_frame(struct _Unwind_Context *ctx, void *arg) {
  ref_t *r = arg;
  uintptr_t ip = (uintptr_t)_Unwind_GetIP(ctx);
  if (ip == 0) return _URC_END_OF_STACK;
  if (r->skip > 0) {
    r->skip--;
    return _URC_NO_REASON;
  }
  r->frames[r->count++] = (void *)ip;
  return r->count == r->max ? _URC_END_OF_STACK : _URC_NO_REASON;
}

/* libgcc's answer, with tsri_os_stack_capture's meaning of skip. */
static __attribute__((noinline)) size_t ref_capture(void **frames, size_t max, size_t skip) {
  ref_t r = { frames, max, 0, skip + 1 }; /* +1: this function's frame */
  _Unwind_Backtrace(ref_frame, &r);
  return r.count;
}

#if TSRI_UNWIND_FAST
static __attribute__((noinline)) size_t fast_capture(void **frames, size_t max, size_t skip) {
  size_t n = tsri_unwind_walk(__builtin_frame_address(0), frames, max, skip, NULL);
  /* the walk must not become a jump that frees this frame before it runs */
  __asm__ volatile("" : "+r"(n));
  return n;
}
#endif

/* All three, dropping this function's frame: frames[0] is where record
 * returns to. */
static __attribute__((noinline)) void record(stacks_t *s) {
  s->nref = ref_capture(s->ref, DEPTH_MAX, 1);
  s->ncapture = tsri_os_stack_capture(s->capture, DEPTH_MAX, 1);
#if TSRI_UNWIND_FAST
  s->nfast = fast_capture(s->fast, DEPTH_MAX, 1);
#else
  s->nfast = 0;
#endif
  __asm__ volatile("" ::: "memory");
}

/* ------------------------------------------------------------------------
 * Comparing
 * ---------------------------------------------------------------------- */

static bool same_frames(void *const *a, size_t na, void *const *b, size_t nb) {
  return na == nb && memcmp(a, b, na * sizeof *a) == 0;
}

/* The two lists side by side, named where dladdr can, for a failure. */
static const char *side_by_side(void *const *a, size_t na, void *const *b, size_t nb) {
  static char text[16384];
  size_t len = 0, n = na > nb ? na : nb;
  for (size_t i = 0; i < n && len < sizeof text - 200; i++) {
    const void *pc = i < na ? a[i] : b[i];
    Dl_info info;
    const char *name = dladdr(pc, &info) != 0 && info.dli_sname ? info.dli_sname : "?";
    len += (size_t)snprintf(text + len, sizeof text - len, "  %2zu %18p %18p %s %s\n", i,
                            i < na ? a[i] : NULL, i < nb ? b[i] : NULL,
                            (i < na && i < nb && a[i] == b[i]) ? "  " : "<>", name);
  }
  return text;
}

/* Whether s holds one answer three times; fast_must_answer: the fast walk
 * may not have handed the stack to libgcc.  why gets the difference. */
static bool stacks_agree(const stacks_t *s, bool fast_must_answer, char *why, size_t size) {
  why[0] = 0;
  if (s->nref == 0) {
    snprintf(why, size, "libgcc found no frames");
    return false;
  }
  if (!same_frames(s->ref, s->nref, s->capture, s->ncapture)) {
    snprintf(why, size, "tsri_os_stack_capture (right) differs from libgcc (left):\n%s",
             side_by_side(s->ref, s->nref, s->capture, s->ncapture));
    return false;
  }
#if TSRI_UNWIND_FAST
  if (s->nfast == TSRI_UNWIND_FALLBACK) {
    if (!fast_must_answer) return true;
    snprintf(why, size, "the fast walk fell back to libgcc on an ordinary stack:\n%s",
             side_by_side(s->ref, s->nref, s->ref, s->nref));
    return false;
  }
  if (!same_frames(s->ref, s->nref, s->fast, s->nfast)) {
    snprintf(why, size, "the fast walk (right) differs from libgcc (left):\n%s",
             side_by_side(s->ref, s->nref, s->fast, s->nfast));
    return false;
  }
#endif
  return true;
}

static void expect_agree(const stacks_t *s, bool fast_must_answer, const char *where) {
  static char why[20000];
  bool ok = stacks_agree(s, fast_must_answer, why, sizeof why);
  cr_assert(ok, "%s: %s", where, why);
}

/* Does some frame of the list lie in a module whose path contains part? */
static bool has_frame_in(void *const *frames, size_t n, const char *part) {
  for (size_t i = 0; i < n; i++) {
    Dl_info info;
    if (dladdr(frames[i], &info) != 0 && info.dli_fname && strstr(info.dli_fname, part))
      return true;
  }
  return false;
}

/* ------------------------------------------------------------------------
 * The stacks
 * ---------------------------------------------------------------------- */

static volatile int sink;

/* The empty asm statements claim to read p, so the optimiser must keep the
 * array p points to and the frame holding it alive across the call. */
#define KEEP(p) __asm__ volatile("" : : "r"(p) : "memory")

static int chain(int depth, stacks_t *s);

/* A VLA: GCC keeps the CFA in RBP since RSP moves by a run-time amount. */
static __attribute__((noinline)) int vla_link(int depth, stacks_t *s) {
  char buf[32 + (depth & 3) * 48];
  KEEP(buf);
  int r = chain(depth - 1, s);
  KEEP(buf);
  return r + 1;
}

/* alloca: the same, through a different builtin. */
static __attribute__((noinline)) int alloca_link(int depth, stacks_t *s) {
  char *p = alloca(64 + (size_t)depth * 24);
  KEEP(p);
  int r = chain(depth - 1, s);
  KEEP(p);
  return r + 1;
}

/* depth frames of this and the two above, then record.  The opaque KEEP
 * after each call stops GCC from turning the recursion into a loop or a
 * call into a jump, either of which would drop frames. */
static __attribute__((noinline)) int chain(int depth, stacks_t *s) {
  if (depth == 0) {
    record(s);
    return 0;
  }
  int r;
  if (depth % 7 == 3) r = vla_link(depth, s);
  else if (depth % 7 == 5) r = alloca_link(depth, s);
  else r = chain(depth - 1, s);
  KEEP(s);
  return r + 1;
}

static stacks_t sorted_stacks, sorted_bad;
static int sorted_calls, sorted_mismatches;

static int by_value(const void *a, const void *b) {
  record(&sorted_stacks);
  char why[64];
  if (!stacks_agree(&sorted_stacks, true, why, sizeof why) && sorted_mismatches++ == 0)
    sorted_bad = sorted_stacks;
  sorted_calls++;
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

static stacks_t signal_stacks;

static void on_signal(int sig) {
  (void)sig;
  record(&signal_stacks);
}

static void *thread_main(void *arg) {
  sink = chain(CHAIN, arg);
  return NULL;
}

/* A thread of the sharing test: rounds walks, counting disagreements. */
typedef struct worker_s {
  int rounds, result, mismatches;
  stacks_t s;
} worker_t;

static void *worker_main(void *arg) {
  worker_t *w = arg;
  char why[64];
  for (int i = 0; i < w->rounds; i++) {
    w->result = chain(CHAIN, &w->s);
    if (!stacks_agree(&w->s, true, why, sizeof why)) w->mismatches++;
  }
  return NULL;
}

/* skip 0 and 1 from one frame, a capture cut to two frames, and one that
 * skips past the end of the stack. */
typedef struct skips_s {
  void *zero[DEPTH_MAX], *one[DEPTH_MAX], *ref_zero[DEPTH_MAX], *two_frames[2];
  size_t nzero, none, nref_zero, ntwo, nbeyond;
} skips_t;

static __attribute__((noinline)) void skip_probe(skips_t *k) {
  void *beyond[4];
  k->nzero = tsri_os_stack_capture(k->zero, DEPTH_MAX, 0);
  k->none = tsri_os_stack_capture(k->one, DEPTH_MAX, 1);
  k->ntwo = tsri_os_stack_capture(k->two_frames, 2, 1);
  k->nbeyond = tsri_os_stack_capture(beyond, 4, 100000);
  k->nref_zero = ref_capture(k->ref_zero, DEPTH_MAX, 0);
  __asm__ volatile("" ::: "memory");
}


/* ------------------------------------------------------------------------
 * Where the tables are read from
 * ---------------------------------------------------------------------- */

#if TSRI_UNWIND_FAST
/* The loaded segment holding an object's .eh_frame_hdr (and, as linkers
 * lay it out, its .eh_frame), page-aligned. */
typedef struct segment_s {
  uintptr_t inside; /* in: an address of the object */
  uintptr_t lo, hi;
} segment_t;

static int find_tables(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  segment_t *g = arg;
  bool holds = false;
  uintptr_t hdr = 0;
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type == PT_LOAD && g->inside - (info->dlpi_addr + ph->p_vaddr) < ph->p_memsz) holds = true;
    if (ph->p_type == PT_GNU_EH_FRAME) hdr = info->dlpi_addr + ph->p_vaddr;
  }
  if (!holds || hdr == 0) return 0;
  for (size_t i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    uintptr_t start = info->dlpi_addr + ph->p_vaddr;
    if (ph->p_type == PT_LOAD && hdr - start < ph->p_memsz) {
      g->lo = start & ~(uintptr_t)4095;
      g->hi = start + ph->p_memsz;
    }
  }
  return 1;
}

/* Pages of g mapped into this process now (/proc/self/pagemap's present
 * bit), or -1 when pagemap cannot be read. */
static long pages_present(const segment_t *g) {
  int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  long n = 0;
  for (uintptr_t a = g->lo; a < g->hi; a += 4096) {
    uint64_t e;
    if (pread(fd, &e, sizeof e, (off_t)(a / 4096 * sizeof e)) != (ssize_t)sizeof e) {
      n = -1;
      break;
    }
    n += (long)(e >> 63);
  }
  close(fd);
  return n;
}

typedef struct probe_s {
  segment_t tables;
  stacks_t s;
  long present_after_fast, present_after_libgcc;
} probe_t;

/* record's three walks, the fast one first, each followed by a look at
 * which of the tables' pages are mapped. */
static __attribute__((noinline)) void record_fast_first(probe_t *p) {
  p->s.nfast = fast_capture(p->s.fast, DEPTH_MAX, 1);
  p->present_after_fast = pages_present(&p->tables);
  p->s.ncapture = tsri_os_stack_capture(p->s.capture, DEPTH_MAX, 1);
  p->s.nref = ref_capture(p->s.ref, DEPTH_MAX, 1);
  p->present_after_libgcc = pages_present(&p->tables);
  __asm__ volatile("" ::: "memory");
}

static void probe_from_helper(void *arg) { record_fast_first(arg); }

typedef int (*helper_call_t)(void (*)(void *), void *);

/* Walk from four frames down in the helper loaded as handle, whose file
 * name contains name. */
static void probe_helper(void *handle, const char *name, probe_t *p) {
  helper_call_t call = (helper_call_t)dlsym(handle, "unwind_helper_call");
  cr_assert_not_null(call, "%s", dlerror());
  memset(p, 0, sizeof *p);
  p->tables.inside = (uintptr_t)call;
  cr_assert_eq(dl_iterate_phdr(find_tables, &p->tables), 1, "the helper has no .eh_frame_hdr");
  long before = pages_present(&p->tables);
  cr_assert_neq(before, -1, "/proc/self/pagemap cannot be read");
  cr_assert_eq(before, 0, "the helper's tables are mapped before any walk: the test cannot tell who read them");
  sink = call(probe_from_helper, p);
  expect_agree(&p->s, true, "through the helper");
  cr_assert(has_frame_in(p->s.ref, p->s.nref, name), "no frame in %s", name);
  cr_assert_neq(p->present_after_fast, -1, "/proc/self/pagemap cannot be read");
  /* libgcc reads the tables in place: if that maps nothing either, a page
   * count of 0 says nothing about the fast walk */
  cr_assert_gt(p->present_after_libgcc, 0, "libgcc's walk mapped none of the tables' pages");
}

/* A return address in the helper: one just past its entry point. */
static uintptr_t helper_pc(void *handle) {
  void *call = dlsym(handle, "unwind_helper_call");
  cr_assert_not_null(call, "%s", dlerror());
  return (uintptr_t)call + 1;
}

static void copy_file(const char *from, const char *to) {
  int in = open(from, O_RDONLY | O_CLOEXEC);
  cr_assert_geq(in, 0, "%s: %s", from, strerror(errno));
  int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
  cr_assert_geq(out, 0, "%s: %s", to, strerror(errno));
  char buf[65536];
  ssize_t n;
  while ((n = read(in, buf, sizeof buf)) > 0) cr_assert_eq(write(out, buf, (size_t)n), n);
  cr_assert_eq(n, 0);
  close(in);
  close(out);
}
#endif

/* ------------------------------------------------------------------------
 * Tests
 * ---------------------------------------------------------------------- */

Test(unwind, recursion_without_frame_pointers) {
  stacks_t s;
  sink = chain(CHAIN, &s);
  expect_agree(&s, true, "recursion");
  /* chain(20..0), three VLA and three alloca frames: all there */
  cr_assert_geq(s.nref, CHAIN + 7, "only %zu frames", s.nref);
}

Test(unwind, table_hits_answer_as_misses_did) {
  stacks_t s;
  for (int i = 0; i < 10000; i++) {
    sink = chain(CHAIN, &s);
    expect_agree(&s, true, "repeated walk");
  }
}

Test(unwind, through_libc_callbacks) {
  int values[64];
  for (int i = 0; i < 64; i++) values[i] = (i * 37) % 64;
  qsort(values, 64, sizeof values[0], by_value);
  cr_assert_gt(sorted_calls, 0);
  if (sorted_mismatches > 0) expect_agree(&sorted_bad, true, "qsort comparator");
  cr_assert(has_frame_in(sorted_stacks.ref, sorted_stacks.nref, "libc.so"),
            "no libc frame in the comparator's stack");
  for (int i = 0; i < 64; i++) cr_assert_eq(values[i], i);
}

Test(unwind, on_a_second_thread) {
  static stacks_t s;
  pthread_t t;
  cr_assert_eq(pthread_create(&t, NULL, thread_main, &s), 0);
  cr_assert_eq(pthread_join(t, NULL), 0);
  expect_agree(&s, true, "second thread");
  cr_assert_geq(s.nref, CHAIN + 7, "only %zu frames", s.nref);
}

/* Threads that start together insert the same return addresses at once
 * and read entries while others write them. */
Test(unwind, threads_share_the_table) {
  enum { WORKERS_MAX = 16 };
  static worker_t workers[WORKERS_MAX];
  pthread_t threads[WORKERS_MAX];
  long n = tsr_test_threads() < WORKERS_MAX ? tsr_test_threads() : WORKERS_MAX;
  for (long i = 0; i < n; i++) {
    workers[i].rounds = 2000;
    cr_assert_eq(pthread_create(&threads[i], NULL, worker_main, &workers[i]), 0);
  }
  for (long i = 0; i < n; i++) {
    cr_assert_eq(pthread_join(threads[i], NULL), 0);
    cr_assert_eq(workers[i].mismatches, 0, "thread %ld: %d walks differ from libgcc's", i,
                 workers[i].mismatches);
  }
}

/* The handler returns into the kernel's signal frame, which only libgcc
 * follows; the capture must still give libgcc's answer. */
Test(unwind, in_a_signal_handler) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  cr_assert_eq(sigaction(SIGUSR1, &sa, NULL), 0);
  cr_assert_eq(raise(SIGUSR1), 0);
  expect_agree(&signal_stacks, false, "signal handler");
  cr_assert_geq(signal_stacks.nref, 3);
}

/* skip 0: frames[0] is where tsri_os_stack_capture returns in its caller;
 * each skip drops one frame; max cuts the list; a skip past the end of the
 * stack leaves nothing. */
Test(unwind, skip_and_max) {
  skips_t k;
  skip_probe(&k);
  cr_assert_eq(k.nzero, k.none + 1);
  cr_assert(same_frames(k.zero + 1, k.nzero - 1, k.one, k.none));
  cr_assert(same_frames(k.zero + 1, k.nzero - 1, k.ref_zero + 1, k.nref_zero - 1));
  uintptr_t probe = (uintptr_t)&skip_probe;
  cr_assert_lt((uintptr_t)k.zero[0] - probe, 512, "frames[0] %p is not in skip_probe %p",
               k.zero[0], (void *)probe);
  cr_assert_neq(k.zero[0], k.ref_zero[0]);
  cr_assert_eq(k.ntwo, 2);
  cr_assert(same_frames(k.two_frames, 2, k.one, 2));
  cr_assert_eq(k.nbeyond, 0);
}

#if TSRI_UNWIND_FAST
/* The walk reads a shared object's tables from its file: when it has
 * stepped through the object's frames, none of the tables' pages is
 * mapped (where reading them in place, as libgcc does, maps them). */
Test(unwind, tables_are_read_from_the_file) {
  void *h = dlopen(TSR_UNWIND_HELPER_0, RTLD_NOW | RTLD_LOCAL);
  cr_assert_not_null(h, "%s", dlerror());
  tsri_unwind_reads_t before = tsri_unwind_reads();
  probe_t p;
  probe_helper(h, "unwind_helper_0", &p);
  cr_assert_eq(p.present_after_fast, 0, "the fast walk mapped %ld of the tables' pages",
               p.present_after_fast);
  /* unwind_helper_call and four frames of inner: five new rules */
  tsri_unwind_reads_t after = tsri_unwind_reads();
  cr_assert_geq(after.from_file - before.from_file, 5, "%llu rules read from files",
                (unsigned long long)(after.from_file - before.from_file));
  uint64_t from_file, in_place;
  cr_assert(tsri_unwind_rule_both(helper_pc(h), &from_file, &in_place), "the helper's file gave no rule");
  cr_assert_eq(from_file, in_place);
}

/* A library replaced on disk after it was loaded (a package upgrade under
 * a running server): the file's build-id is not the loaded image's, so
 * the walk reads the tables in place, and its answer stays libgcc's. */
Test(unwind, a_library_replaced_on_disk_is_read_in_place) {
  char dir[] = "/tmp/tsr-unwind-XXXXXX", path[64], next[64];
  cr_assert_not_null(mkdtemp(dir), "%s", strerror(errno));
  snprintf(path, sizeof path, "%s/libhelper.so", dir);
  snprintf(next, sizeof next, "%s/libhelper.so.new", dir);
  copy_file(TSR_UNWIND_HELPER_0, path);
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  cr_assert_not_null(h, "%s", dlerror());
  copy_file(TSR_UNWIND_HELPER_1, next);
  cr_assert_eq(rename(next, path), 0, "%s", strerror(errno));
  probe_t p;
  probe_helper(h, "libhelper.so", &p);
  cr_assert_gt(p.present_after_fast, 0, "the tables were not read in place");
  uint64_t from_file, in_place;
  cr_assert_not(tsri_unwind_rule_both(helper_pc(h), &from_file, &in_place),
                "the replaced file was read for the loaded image");
  unlink(path);
  rmdir(dir);
}

/* Code segments of every loaded object, for the comparison below. */
typedef struct code_ranges_s {
  struct { uintptr_t lo, hi; char name[64]; } r[64];
  size_t n;
} code_ranges_t;

static int list_code(struct dl_phdr_info *info, size_t size, void *arg) {
  (void)size;
  code_ranges_t *c = arg;
  for (size_t i = 0; i < info->dlpi_phnum && c->n < 64; i++) {
    const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) continue;
    c->r[c->n].lo = info->dlpi_addr + ph->p_vaddr;
    c->r[c->n].hi = c->r[c->n].lo + ph->p_memsz;
    const char *name = info->dlpi_name != NULL && info->dlpi_name[0] ? info->dlpi_name : "(program)";
    snprintf(c->r[c->n].name, sizeof c->r[c->n].name, "%s", name);
    c->n++;
  }
  return 0;
}

/* Every 64th code address of every loaded object, the C library's and
 * this program's among them: the rule read from the object's file is the
 * rule read in place, for all the addresses whose file gives an answer,
 * which must be nearly all of them (objects without a file, such as the
 * vDSO, and FDEs too long for the walk's buffers give none). */
Test(unwind, file_and_in_place_readings_agree) {
  static code_ranges_t code;
  dl_iterate_phdr(list_code, &code);
  size_t compared = 0, unanswered = 0, libc_compared = 0;
  for (size_t i = 0; i < code.n; i++) {
    for (uintptr_t a = code.r[i].lo; a < code.r[i].hi; a += 64) {
      uint64_t from_file, in_place;
      if (!tsri_unwind_rule_both(a + 1, &from_file, &in_place)) {
        unanswered++;
        continue;
      }
      cr_assert_eq(from_file, in_place, "%s+%#lx: rule %#llx from the file, %#llx in place", code.r[i].name,
                   (unsigned long)(a - code.r[i].lo), (unsigned long long)from_file,
                   (unsigned long long)in_place);
      compared++;
      if (strstr(code.r[i].name, "libc.so")) libc_compared++;
    }
  }
  cr_assert_gt(libc_compared, 10000, "only %zu addresses of the C library compared", libc_compared);
  cr_assert_lt(unanswered, compared / 20, "%zu of %zu addresses without an answer from the file", unanswered,
               unanswered + compared);
}
#endif
