/* writer.c: what the report writers share, and the entry points that pick
 * one: text for people (writer_text.c), JSON, docs/report-schema.json
 * (writer_json.c), OpenMetrics for a /metrics endpoint (writer_metrics.c),
 * and folded stacks for flame graphs (writer_folded.c).
 *
 * Owns: the output buffer, numbers, frame names, the figures every format
 * starts from, the leaks by allocating function, and the report lock.
 * Everything goes through a fixed buffer on the stack that is handed to
 * the caller's output function when full: no heap, no stdio, so a report
 * can be written at exit, from the report thread, or while other threads
 * allocate.  The figures come from stats.c (totals, classes) and report.c
 * (sites, map, address space).
 */
#include "writer.h"

/* ------------------------------------------------------------------------
 * The output buffer
 * ---------------------------------------------------------------------- */

static void flush(tsri_out_t *o) {
  if (o->len != 0) o->fn(o->buf, o->len, o->arg);
  o->len = 0;
}

void tsri_put(tsri_out_t *o, const char *s, size_t n) {
  while (n > 0) {
    if (o->len == sizeof o->buf) flush(o);
    size_t k = sizeof o->buf - o->len;
    if (k > n) k = n;
    memcpy(o->buf + o->len, s, k);
    o->len += k;
    s += k;
    n -= k;
  }
}

void tsri_puts(tsri_out_t *o, const char *s) { tsri_put(o, s, strlen(s)); }

void tsri_put_u64(tsri_out_t *o, uint64_t v) {
  char d[24];
  size_t n = 0;
  do { d[sizeof d - ++n] = (char)('0' + v % 10); v /= 10; } while (v != 0);
  tsri_put(o, d + sizeof d - n, n);
}

void tsri_put_i64(tsri_out_t *o, int64_t v) {
  if (v < 0) { tsri_puts(o, "-"); tsri_put_u64(o, (uint64_t)0 - (uint64_t)v); }
  else tsri_put_u64(o, (uint64_t)v);
}

void tsri_put_hex(tsri_out_t *o, uint64_t v) {
  char d[24];
  size_t n = 0;
  do { d[sizeof d - ++n] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v != 0);
  tsri_puts(o, "0x");
  tsri_put(o, d + sizeof d - n, n);
}

/* A non-negative figure with `decimals` places (negative: 0). */
void tsri_put_fixed(tsri_out_t *o, double v, int decimals) {
  if (!(v > 0)) v = 0;
  uint64_t scale = 1;
  for (int i = 0; i < decimals; i++) scale *= 10;
  if (v > 1e15) v = 1e15;
  uint64_t x = (uint64_t)(v * (double)scale + 0.5);
  tsri_put_u64(o, x / scale);
  if (decimals == 0) return;
  tsri_puts(o, ".");
  char d[20];
  uint64_t f = x % scale;
  for (int i = decimals - 1; i >= 0; i--) { d[i] = (char)('0' + f % 10); f /= 10; }
  tsri_put(o, d, (size_t)decimals);
}

const char *tsri_base_name(const char *path) {
  const char *b = path;
  for (const char *p = path; *p; p++)
    if (*p == '/' || *p == '\\') b = p + 1;
  return b;
}

/* sym's function as reports print it: a C++ name decoded (into buf, 256
 * bytes) where the process can decode it. */
const char *tsri_function_name(const tsri_os_symbol_t *sym, char *buf) {
  return tsri_os_demangle(sym->function, buf, 256) ? buf : sym->function;
}

/* A frame as one token: function+0xoff, or module+0xoff. */
void tsri_put_frame_short(tsri_out_t *o, void *addr, bool with_offset) {
  tsri_os_symbol_t sym;
  if (tsri_os_symbolize(addr, &sym) == 0 && sym.function[0]) {
    char buf[256];
    tsri_puts(o, tsri_function_name(&sym, buf));
    if (with_offset) { tsri_puts(o, "+"); tsri_put_hex(o, sym.offset); }
  } else if (sym.module[0]) {
    tsri_puts(o, tsri_base_name(sym.module));
    tsri_puts(o, "+");
    tsri_put_hex(o, sym.module_offset);
  } else {
    tsri_put_hex(o, (uint64_t)(uintptr_t)addr);
  }
}

/* ------------------------------------------------------------------------
 * What every format starts from
 * ---------------------------------------------------------------------- */

const char *const tsri_track_names[] = { "stats", "sample", "full" };
const char *const tsri_mesh_state_names[] = { "off", "on", "unsupported", "paused" };
const char *const tsri_holder_names[] = { "free", "tessera arenas", "tessera large blocks", "tessera records",
                                          "images", "mapped files", "other heaps", "thread stacks",
                                          "other private" };
const char *const tsri_error_kind_names[TSR_ERROR_KINDS] = {
  "bad_free", "double_free", "overflow", "underflow", "write_after_free", "use_after_free", "other",
};

static void report_gather(tsri_report_t *r, const char *reason, bool need_sites) {
  r->reason = reason;
  r->stats.size = sizeof r->stats;
  tsr_stats_get(&r->stats);
  tsr_class_stats(r->classes, TSR_CLASS_COUNT + 1);
  r->sites = need_sites ? tsri_sites_collect(false, false) : NULL;
  r->leaks = need_sites && strcmp(reason, "exit") == 0 ? tsri_sites_collect(true, false) : NULL;
  r->pins = need_sites ? tsri_pins_collect() : NULL;
  r->pieces.size = sizeof r->pieces;
  r->space_ok = tsr_space_pieces(&r->pieces) == 0;
  r->space = r->pieces.totals;
  tsri_os_program(r->program, sizeof r->program);
}

static void report_release(tsri_report_t *r) {
  tsri_sites_free(r->sites);
  tsri_sites_free(r->leaks);
  tsri_pins_free(r->pins);
}

/* How many of count sites a report lists (TESSERA_REPORT_SITES). */
static size_t listed(size_t count) {
  size_t max = (size_t)tsri_option(TSRI_OPT_REPORT_SITES);
  return count < max ? count : max;
}

size_t tsri_pins_listed(const tsri_pins_t *p) { return p != NULL ? listed(p->count) : 0; }

size_t tsri_sites_listed(const tsri_sites_t *s) { return s != NULL ? listed(s->count) : 0; }

/* ------------------------------------------------------------------------
 * Leaks by allocating function: the function that asked for the block,
 * what a person hunting a leak asks first (sites split it by the whole
 * stack).  That is the innermost frame outside the C and C++ runtimes,
 * which allocate on their callers' behalf: strdup, fopen, getline in the
 * C library, operator new and the standard containers and strings in the
 * C++ one (whose templates may also be compiled into the program).
 * ---------------------------------------------------------------------- */

/* Modules of the C and C++ runtimes, by the start of their file names. */
static const char *const runtime_modules[] = {
  "libc.so", "libc-2.", "ld-linux", "ld-musl", "libm.so", "libpthread", "libstdc++", "libc++", "libgcc_s",
  "msvcrt", "ucrtbase", "api-ms-win-crt",
};

/* Mangled names of operator new and new[] (all overloads), and of what is
 * in namespace std or __gnu_cxx (members, const, volatile and
 * ref-qualified members, lambdas inside them, std's abbreviations Sa, Sb,
 * Ss, Si, So, Sd), in the Itanium C++ ABI. */
static const char *const runtime_functions[] = {
  "_Znw", "_Zna", "_ZSt", "_ZNSt", "_ZNKSt", "_ZNVSt", "_ZNRSt", "_ZNOSt", "_ZNKRSt", "_ZNKOSt",
  "_ZZSt", "_ZZNSt", "_ZZNKSt", "_ZNSa", "_ZNSb", "_ZNKSb", "_ZNSs", "_ZNKSs", "_ZNSi", "_ZNKSi",
  "_ZNSo", "_ZNKSo", "_ZNSd", "_ZNKSd", "_ZN9__gnu_cxx", "_ZNK9__gnu_cxx",
};

static bool starts_with(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static bool in_runtime(const tsri_os_symbol_t *sym) {
  const char *base = tsri_base_name(sym->module);
  for (size_t i = 0; i < sizeof runtime_modules / sizeof runtime_modules[0]; i++)
    if (starts_with(base, runtime_modules[i])) return true;
  for (size_t i = 0; i < sizeof runtime_functions / sizeof runtime_functions[0]; i++)
    if (starts_with(sym->function, runtime_functions[i])) return true;
  return false;
}

/* The name of the function that allocated through stack id into name
 * (128 bytes): its innermost frame outside the runtimes, or its innermost
 * frame when every frame is theirs. */
static void allocating_function(uint32_t id, char *name) {
  void *const *frames;
  size_t depth = tsri_stack_frames(id, &frames);
  if (depth == 0) {
    memcpy(name, "[no stack]", 11);
    return;
  }
  tsri_os_symbol_t sym;
  int rc = 0;
  size_t f = 0;
  for (; f < depth; f++) {
    rc = tsri_os_symbolize(frames[f], &sym);
    if (rc != 0 || !in_runtime(&sym)) break;
  }
  if (f == depth) rc = tsri_os_symbolize(frames[0], &sym);   /* every frame the runtimes': the innermost */
  if (rc != 0 || sym.function[0] == 0) {
    memcpy(name, "[unknown]", 10);
    return;
  }
  char buf[256];
  const char *fn = tsri_function_name(&sym, buf);
  size_t k = strlen(fn);
  if (k > 127) k = 127;
  memcpy(name, fn, k);
  name[k] = 0;
}

/* Fill fns (TSRI_LEAK_FUNCTIONS room) from the leak sites; biggest first. */
size_t tsri_leak_functions(const tsri_sites_t *leaks, tsri_leak_fn_t *fns) {
  size_t n = 0;
  for (size_t i = 0; i < leaks->count; i++) {
    const tsri_site_t *site = &leaks->sites[i];
    char name[128];
    allocating_function(site->id, name);
    size_t j = 0;
    while (j < n && strcmp(fns[j].name, name) != 0) j++;
    if (j == n) {
      if (n == TSRI_LEAK_FUNCTIONS) continue;
      memset(&fns[n], 0, sizeof fns[n]);
      memcpy(fns[n].name, name, strlen(name) + 1);
      n++;
    }
    fns[j].blocks += tsri_round_u64(site->blocks);
    fns[j].bytes += tsri_round_u64(site->bytes);
    fns[j].requested += tsri_round_u64(site->requested);
  }
  for (size_t i = 1; i < n; i++) {
    tsri_leak_fn_t t = fns[i];
    size_t j = i;
    while (j > 0 && fns[j - 1].bytes < t.bytes) { fns[j] = fns[j - 1]; j--; }
    fns[j] = t;
  }
  return n;
}

/* ------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------- */

static tsri_lock_t report_lock;   /* one report at a time: the symbol cache is shared */

int tsri_report_write(tsr_format_t format, const char *reason, tsr_output_fn *fn, void *arg) {
  if (fn == NULL || (int)format < TSR_FORMAT_TEXT || (int)format > TSR_FORMAT_FOLDED) return EINVAL;
  tsri_init();
  tsri_report_t *r = tsri_scratch(sizeof(tsri_report_t));
  if (r == NULL) return ENOMEM;
  tsri_out_t o;
  o.fn = fn;
  o.arg = arg;
  o.len = 0;
  tsri_lock(&report_lock);
  report_gather(r, reason, true);
  tsri_os_symbols_begin();
  if (format == TSR_FORMAT_TEXT) tsri_write_text(&o, r);
  else if (format == TSR_FORMAT_JSON) tsri_write_json(&o, r);
  else if (format == TSR_FORMAT_OPENMETRICS) tsri_write_openmetrics(&o, r);
  else tsri_write_folded(&o, r);
  flush(&o);
  tsri_os_symbols_end();
  tsri_unlock(&report_lock);
  report_release(r);
  tsri_scratch_free(r);
  return 0;
}

int tsr_report(tsr_format_t format, tsr_output_fn *out, void *arg) {
  return tsri_report_write(format, "api", out, arg);
}

static void to_stderr(const char *text, size_t len, void *arg) {
  (void)arg;
  tsri_os_write_stderr(text, len);
}

static void to_file(const char *text, size_t len, void *arg) { tsri_os_file_write(*(intptr_t *)arg, text, len); }

int tsri_report_to(tsr_format_t format, const char *dest, const char *reason) {
  if (dest == NULL) return EINVAL;
  if (strcmp(dest, "stderr") == 0) return tsri_report_write(format, reason, to_stderr, NULL);
  char path[1024];
  size_t n = 0;
  for (const char *p = dest; *p && n + 12 < sizeof path; p++) {
    if (p[0] == '%' && p[1] == 'p') {
      char d[12];
      size_t k = 0;
      uint32_t pid = tsri_os_process_id();
      do { d[k++] = (char)('0' + pid % 10); pid /= 10; } while (pid != 0);
      while (k > 0) path[n++] = d[--k];
      p++;
    } else {
      path[n++] = *p;
    }
  }
  path[n] = 0;
  intptr_t h;
  int rc = tsri_os_file_append(path, &h);
  if (rc != 0) {
    tsri_warning("cannot open the report file %s", path);
    return rc;
  }
  rc = tsri_report_write(format, reason, to_file, &h);
  tsri_os_file_close(h);
  return rc;
}

int tsr_report_to(tsr_format_t format, const char *path) { return tsri_report_to(format, path, "api"); }

/* ------------------------------------------------------------------------
 * Diff of two snapshots
 * ---------------------------------------------------------------------- */

int tsr_report_diff(const tsr_snapshot_t *before, const tsr_snapshot_t *after,
                    tsr_format_t format, tsr_output_fn *fn, void *arg) {
  if (fn == NULL || !tsri_snapshot_valid(before) || !tsri_snapshot_valid(after) ||
      format == TSR_FORMAT_OPENMETRICS || (int)format < 0 || (int)format > TSR_FORMAT_FOLDED)
    return EINVAL;
  size_t n;
  tsr_delta_t *d = tsri_snapshot_deltas(before, after, &n);
  if (d == NULL) return ENOMEM;
  tsri_out_t o;
  o.fn = fn;
  o.arg = arg;
  o.len = 0;
  tsri_lock(&report_lock);
  tsri_os_symbols_begin();
  if (format == TSR_FORMAT_TEXT) tsri_diff_text(&o, d, n);
  else if (format == TSR_FORMAT_JSON) tsri_diff_json(&o, d, n);
  else tsri_diff_folded(&o, d, n);
  flush(&o);
  tsri_os_symbols_end();
  tsri_unlock(&report_lock);
  tsri_scratch_free(d);
  return 0;
}
