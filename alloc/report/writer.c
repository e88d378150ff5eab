/* writer.c: the report writers: text for people, JSON (docs/report-schema.json),
 * OpenMetrics for a /metrics endpoint, and folded stacks for flame graphs.
 *
 * Owns: formatting.  Everything goes through a fixed buffer on the stack
 * that is handed to the caller's output function when full: no heap, no
 * stdio, so a report can be written at exit, from the report thread, or
 * while other threads allocate.  The figures come from stats.c (totals,
 * classes) and report.c (sites, map, address space).
 */
#include "report.h"

/* ------------------------------------------------------------------------
 * The output buffer
 * ---------------------------------------------------------------------- */

typedef struct out_s {
  tsr_output_fn *fn;
  void *arg;
  size_t len;
  char buf[4096];
} out_t;

static void flush(out_t *o) {
  if (o->len != 0) o->fn(o->buf, o->len, o->arg);
  o->len = 0;
}

static void put(out_t *o, const char *s, size_t n) {
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

static void puts_(out_t *o, const char *s) { put(o, s, strlen(s)); }

static void put_u64(out_t *o, uint64_t v) {
  char d[24];
  size_t n = 0;
  do { d[sizeof d - ++n] = (char)('0' + v % 10); v /= 10; } while (v != 0);
  put(o, d + sizeof d - n, n);
}

static void put_i64(out_t *o, int64_t v) {
  if (v < 0) { puts_(o, "-"); put_u64(o, (uint64_t)0 - (uint64_t)v); }
  else put_u64(o, (uint64_t)v);
}

static void put_hex(out_t *o, uint64_t v) {
  char d[24];
  size_t n = 0;
  do { d[sizeof d - ++n] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v != 0);
  puts_(o, "0x");
  put(o, d + sizeof d - n, n);
}

/* A non-negative figure with `decimals` places (negative: 0). */
static void put_fixed(out_t *o, double v, int decimals) {
  if (!(v > 0)) v = 0;
  uint64_t scale = 1;
  for (int i = 0; i < decimals; i++) scale *= 10;
  if (v > 1e15) v = 1e15;
  uint64_t x = (uint64_t)(v * (double)scale + 0.5);
  put_u64(o, x / scale);
  if (decimals == 0) return;
  puts_(o, ".");
  char d[20];
  uint64_t f = x % scale;
  for (int i = decimals - 1; i >= 0; i--) { d[i] = (char)('0' + f % 10); f /= 10; }
  put(o, d, (size_t)decimals);
}

/* Bytes with a unit people read: "12.3 MiB". */
static void put_size(out_t *o, uint64_t bytes) {
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  double v = (double)bytes;
  size_t u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; u++; }
  put_fixed(o, v, u == 0 ? 0 : 1);
  puts_(o, " ");
  puts_(o, units[u]);
}

/* Pad to a column with spaces after text of n characters. */
static void pad(out_t *o, size_t n, size_t width) {
  while (n++ < width) put(o, " ", 1);
}

static size_t u64_len(uint64_t v) {
  size_t n = 1;
  while (v >= 10) { v /= 10; n++; }
  return n;
}

static void put_u64_right(out_t *o, uint64_t v, size_t width) {
  pad(o, u64_len(v), width);
  put_u64(o, v);
}

static void put_json_str(out_t *o, const char *s) {
  puts_(o, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { put(o, "\\", 1); put(o, s, 1); }
    else if (c < 0x20) { puts_(o, "\\u00"); put(o, &"0123456789abcdef"[c >> 4], 1); put(o, &"0123456789abcdef"[c & 15], 1); }
    else put(o, s, 1);
  }
  puts_(o, "\"");
}

static void put_json_key(out_t *o, const char *key) {
  put_json_str(o, key);
  puts_(o, ":");
}

/* OpenMetrics label values: escape \, " and newline. */
static void put_label(out_t *o, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') put(o, "\\", 1);
    if (*s == '\n') { puts_(o, "\\n"); continue; }
    put(o, s, 1);
  }
}

static const char *base_name(const char *path) {
  const char *b = path;
  for (const char *p = path; *p; p++)
    if (*p == '/' || *p == '\\') b = p + 1;
  return b;
}

/* sym's function as reports print it: a C++ name decoded (into buf, 256
 * bytes) where the process can decode it. */
static const char *function_name(const tsri_os_symbol_t *sym, char *buf) {
  return tsri_os_demangle(sym->function, buf, 256) ? buf : sym->function;
}

/* A frame as one token: function+0xoff, or module+0xoff. */
static void put_frame_short(out_t *o, void *addr, bool with_offset) {
  tsri_os_symbol_t sym;
  if (tsri_os_symbolize(addr, &sym) == 0 && sym.function[0]) {
    char buf[256];
    puts_(o, function_name(&sym, buf));
    if (with_offset) { puts_(o, "+"); put_hex(o, sym.offset); }
  } else if (sym.module[0]) {
    puts_(o, base_name(sym.module));
    puts_(o, "+");
    put_hex(o, sym.module_offset);
  } else {
    put_hex(o, (uint64_t)(uintptr_t)addr);
  }
}

/* ------------------------------------------------------------------------
 * What every format starts from
 * ---------------------------------------------------------------------- */

typedef struct report_s {
  const char *reason;
  tsr_stats_t stats;
  tsr_class_stats_t classes[TSR_CLASS_COUNT + 1];
  tsri_sites_t *sites;
  tsri_sites_t *leaks;       /* at exit only */
  tsr_address_space_t space;
  bool space_ok;
  char program[256];
} report_t;

static const char *const track_names[] = { "stats", "sample", "full" };

static void report_gather(report_t *r, const char *reason, bool need_sites) {
  r->reason = reason;
  r->stats.size = sizeof r->stats;
  tsr_stats_get(&r->stats);
  tsr_class_stats(r->classes, TSR_CLASS_COUNT + 1);
  r->sites = need_sites ? tsri_sites_collect(false, false) : NULL;
  r->leaks = need_sites && strcmp(reason, "exit") == 0 ? tsri_sites_collect(true, false) : NULL;
  r->space_ok = tsr_address_space(NULL, NULL, &r->space) == 0;
  tsri_os_program(r->program, sizeof r->program);
}

static void report_release(report_t *r) {
  tsri_sites_free(r->sites);
  tsri_sites_free(r->leaks);
}

static size_t sites_listed(const tsri_sites_t *s) {
  if (s == NULL) return 0;
  size_t max = (size_t)tsri_option(TSRI_OPT_REPORT_SITES);
  return s->count < max ? s->count : max;
}

/* ------------------------------------------------------------------------
 * Leaks by allocating function: the function that asked for the block,
 * what a person hunting a leak asks first (sites split it by the whole
 * stack).  That is the innermost frame outside the C and C++ runtimes,
 * which allocate on their callers' behalf: strdup, fopen, getline in the
 * C library, operator new and the standard containers and strings in the
 * C++ one (whose templates may also be compiled into the program).
 * ---------------------------------------------------------------------- */

#define LEAK_FUNCTIONS 256

typedef struct leak_fn_s {
  char name[128];
  uint64_t blocks, bytes, requested;
} leak_fn_t;

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
  const char *base = base_name(sym->module);
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
  const char *fn = function_name(&sym, buf);
  size_t k = strlen(fn);
  if (k > 127) k = 127;
  memcpy(name, fn, k);
  name[k] = 0;
}

/* Fill fns (LEAK_FUNCTIONS room) from the leak sites; biggest first. */
static size_t leak_functions(const tsri_sites_t *leaks, leak_fn_t *fns) {
  size_t n = 0;
  for (size_t i = 0; i < leaks->count; i++) {
    const tsri_site_t *site = &leaks->sites[i];
    char name[128];
    allocating_function(site->id, name);
    size_t j = 0;
    while (j < n && strcmp(fns[j].name, name) != 0) j++;
    if (j == n) {
      if (n == LEAK_FUNCTIONS) continue;
      memset(&fns[n], 0, sizeof fns[n]);
      memcpy(fns[n].name, name, strlen(name) + 1);
      n++;
    }
    fns[j].blocks += tsri_round_u64(site->blocks);
    fns[j].bytes += tsri_round_u64(site->bytes);
    fns[j].requested += tsri_round_u64(site->requested);
  }
  for (size_t i = 1; i < n; i++) {
    leak_fn_t t = fns[i];
    size_t j = i;
    while (j > 0 && fns[j - 1].bytes < t.bytes) { fns[j] = fns[j - 1]; j--; }
    fns[j] = t;
  }
  return n;
}

/* ------------------------------------------------------------------------
 * Text
 * ---------------------------------------------------------------------- */

static void text_line(out_t *o, const char *label, uint64_t bytes) {
  puts_(o, "  ");
  puts_(o, label);
  pad(o, strlen(label), 22);
  put_u64_right(o, bytes, 14);
  puts_(o, " bytes  (");
  put_size(o, bytes);
  puts_(o, ")\n");
}

static void text_sites(out_t *o, const tsri_sites_t *s, size_t listed) {
  for (size_t i = 0; i < listed; i++) {
    const tsri_site_t *site = &s->sites[i];
    puts_(o, "  #");
    put_u64(o, i + 1);
    puts_(o, site->estimated ? "  ~" : "  ");
    put_u64(o, tsri_round_u64(site->bytes));
    puts_(o, " bytes in ");
    put_u64(o, tsri_round_u64(site->blocks));
    puts_(o, tsri_round_u64(site->blocks) == 1 ? " block" : " blocks");
    puts_(o, ", requested ");
    put_u64(o, tsri_round_u64(site->requested));
    puts_(o, ", waste ");
    put_u64(o, tsri_round_u64(site->bytes - site->requested));
    puts_(o, "\n");
    void *const *frames;
    size_t depth = tsri_stack_frames(site->id, &frames);
    if (depth == 0) puts_(o, "      (no call stack recorded)\n");
    for (size_t f = 0; f < depth; f++) {
      tsri_os_symbol_t sym;
      puts_(o, "      ");
      int rc = tsri_os_symbolize(frames[f], &sym);
      put_hex(o, (uint64_t)(uintptr_t)frames[f]);
      puts_(o, " ");
      if (rc == 0 && sym.function[0]) {
        char buf[256];
        puts_(o, function_name(&sym, buf));
        puts_(o, "+");
        put_hex(o, sym.offset);
      } else if (rc == 0) {
        puts_(o, "?? ");
      }
      if (rc == 0 && sym.file[0]) {
        puts_(o, " (");
        puts_(o, sym.file);
        puts_(o, ":");
        put_u64(o, sym.line);
        puts_(o, ")");
      }
      if (rc == 0) {
        puts_(o, " in ");
        puts_(o, base_name(sym.module));
      }
      puts_(o, "\n");
    }
  }
}

static void write_text(out_t *o, report_t *r) {
  const tsr_stats_t *s = &r->stats;
  puts_(o, "== tessera report: ");
  puts_(o, r->program);
  puts_(o, " (pid ");
  put_u64(o, tsri_os_process_id());
  puts_(o, "), ");
  puts_(o, r->reason);
  puts_(o, " after ");
  put_fixed(o, (double)(tsri_os_clock_ms() - tsri_start_ms) / 1000.0, 1);
  puts_(o, " s; tracking: ");
  puts_(o, track_names[s->track]);
  if (s->track == TSR_TRACK_SAMPLE) {
    puts_(o, " (one block per ");
    put_size(o, (uint64_t)tsri_option(TSRI_OPT_SAMPLE_BYTES));
    puts_(o, ", site figures are estimates marked ~)");
  }
  puts_(o, "\n\ntotals\n");
  text_line(o, s->requested_exact ? "requested" : "requested (estimate)", s->requested);
  text_line(o, "allocated", s->allocated);
  text_line(o, "committed", s->committed);
  text_line(o, "reserved", s->reserved);
  text_line(o, "metadata", s->metadata);
  puts_(o, "  live blocks           ");
  put_u64(o, s->live_blocks);
  puts_(o, " (");
  put_u64(o, s->tracked_blocks);
  puts_(o, " with a record, ");
  put_u64(o, s->large_live);
  puts_(o, " large)\n  allocations, frees    ");
  put_u64(o, s->allocations);
  puts_(o, ", ");
  put_u64(o, s->frees);
  puts_(o, "\n  OS calls              ");
  put_u64(o, s->os_reserves);
  puts_(o, " reserve, ");
  put_u64(o, s->os_commits);
  puts_(o, " commit, ");
  put_u64(o, s->os_decommits);
  puts_(o, " decommit, ");
  put_u64(o, s->os_resets);
  puts_(o, " reset, ");
  put_u64(o, s->os_releases);
  puts_(o, " release; ");
  put_u64(o, s->purges);
  puts_(o, " slots purged\n  internal fragmentation ");
  put_fixed(o, s->internal_fragmentation, 3);
  puts_(o, "  (allocated / requested)\n  external fragmentation ");
  put_fixed(o, s->external_fragmentation, 3);
  puts_(o, "  (committed / allocated)\n  metadata overhead      ");
  put_fixed(o, s->metadata_overhead * 100, 1);
  puts_(o, " %  (metadata / allocated)\n  efficiency             ");
  put_fixed(o, s->efficiency * 100, 1);
  puts_(o, " %  (requested / committed)\n  errors reported        ");
  put_u64(o, s->errors);
  puts_(o, "\n");

  if (r->sites != NULL) {
    puts_(o, "\nsites by live bytes (");
    put_u64(o, r->sites->count);
    puts_(o, " in all)\n");
    text_sites(o, r->sites, sites_listed(r->sites));
  }
  if (r->leaks != NULL) {
    puts_(o, "\nleaks at exit: ");
    put_u64(o, r->leaks->blocks);
    puts_(o, " blocks, ");
    put_u64(o, r->leaks->bytes);
    puts_(o, " bytes still live (");
    put_u64(o, r->leaks->expected_blocks - r->leaks->libc_blocks);
    puts_(o, " more marked expected, ");
    put_u64(o, r->leaks->libc_blocks);
    puts_(o, " kept by the C library)");
    if (s->track != TSR_TRACK_FULL) puts_(o, "; estimates: with TESSERA_TRACK=full every leaked block is counted");
    puts_(o, "\n  by allocating function:\n");
    leak_fn_t *fns = tsri_scratch(LEAK_FUNCTIONS * sizeof(leak_fn_t));
    size_t nf = fns ? leak_functions(r->leaks, fns) : 0;
    for (size_t i = 0; i < nf; i++) {
      puts_(o, "    ");
      puts_(o, fns[i].name);
      puts_(o, ": ");
      put_u64(o, fns[i].blocks);
      puts_(o, fns[i].blocks == 1 ? " block, " : " blocks, ");
      put_u64(o, fns[i].requested);
      puts_(o, " bytes requested (");
      put_u64(o, fns[i].bytes);
      puts_(o, " usable)\n");
    }
    tsri_scratch_free(fns);
    puts_(o, "  by call stack:\n");
    text_sites(o, r->leaks, sites_listed(r->leaks));
  }

  puts_(o, "\nsize classes\n    size   pages     committed    live / total    util      requested   waste  occupancy 0-100%\n");
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    const tsr_class_stats_t *k = &r->classes[c];
    if (k->pages == 0) continue;
    if (c == TSR_CLASS_COUNT) puts_(o, "   large");
    else put_u64_right(o, k->block_size, 8);
    put_u64_right(o, k->pages, 8);
    put_u64_right(o, k->committed, 14);
    put_u64_right(o, k->blocks_live, 8);
    puts_(o, " / ");
    put_u64(o, k->blocks_total);
    pad(o, u64_len(k->blocks_total), 8);
    put_fixed(o, k->utilisation * 100, 1);
    puts_(o, " %");
    put_u64_right(o, k->bytes_requested, 15);
    double waste = k->bytes_live ? 100.0 * (double)(k->bytes_live - (k->bytes_requested < k->bytes_live ? k->bytes_requested : k->bytes_live)) / (double)k->bytes_live : 0;
    pad(o, 0, 3);
    put_fixed(o, waste, 1);
    puts_(o, " %  ");
    for (size_t b = 0; b < TSR_OCCUPANCY_BUCKETS && c < TSR_CLASS_COUNT; b++) {
      if (b) puts_(o, " ");
      put_u64(o, k->occupancy[b]);
    }
    puts_(o, "\n");
  }

  if (r->space_ok) {
    puts_(o, "\naddress space\n");
    text_line(o, "reserved (no access)", r->space.reserved);
    text_line(o, "mapped", r->space.committed);
    text_line(o, "of these, tessera's", r->space.tessera_reserved);
    text_line(o, "free", r->space.free);
    text_line(o, "largest free range", r->space.largest_free);
    puts_(o, "  largest free range at ");
    put_hex(o, r->space.largest_free_at);
    puts_(o, "\n");
  }
  puts_(o, "\n");
}

/* ------------------------------------------------------------------------
 * JSON
 * ---------------------------------------------------------------------- */

static void json_u64(out_t *o, const char *key, uint64_t v, bool comma) {
  put_json_key(o, key);
  put_u64(o, v);
  if (comma) puts_(o, ",");
}

static void json_ratio(out_t *o, const char *key, double v, bool comma) {
  put_json_key(o, key);
  put_fixed(o, v, 6);
  if (comma) puts_(o, ",");
}

static void json_sites(out_t *o, const tsri_sites_t *s, size_t listed) {
  puts_(o, "[");
  for (size_t i = 0; i < listed; i++) {
    const tsri_site_t *site = &s->sites[i];
    if (i) puts_(o, ",");
    puts_(o, "{");
    json_u64(o, "id", site->id, true);
    json_u64(o, "blocks", tsri_round_u64(site->blocks), true);
    json_u64(o, "bytes", tsri_round_u64(site->bytes), true);
    json_u64(o, "requested", tsri_round_u64(site->requested), true);
    put_json_key(o, "estimated");
    puts_(o, site->estimated ? "true," : "false,");
    put_json_key(o, "frames");
    puts_(o, "[");
    void *const *frames;
    size_t depth = tsri_stack_frames(site->id, &frames);
    for (size_t f = 0; f < depth; f++) {
      if (f) puts_(o, ",");
      puts_(o, "{\"addr\":\"");
      put_hex(o, (uint64_t)(uintptr_t)frames[f]);
      puts_(o, "\"");
      tsri_os_symbol_t sym;
      if (tsri_os_symbolize(frames[f], &sym) == 0) {
        if (sym.function[0]) {
          char buf[256];
          puts_(o, ",");
          put_json_key(o, "function");
          put_json_str(o, function_name(&sym, buf));
          puts_(o, ",");
          json_u64(o, "offset", sym.offset, false);
        }
        puts_(o, ",");
        put_json_key(o, "module");
        put_json_str(o, sym.module);
        if (sym.file[0]) {
          puts_(o, ",");
          put_json_key(o, "file");
          put_json_str(o, sym.file);
          puts_(o, ",");
          json_u64(o, "line", sym.line, false);
        }
      }
      puts_(o, "}");
    }
    puts_(o, "]}");
  }
  puts_(o, "]");
}

typedef struct json_map_s {
  out_t *o;
  uint32_t arena;            /* arena being written, UINT32_MAX before the first */
  char slots[TSR_ARENA_SLOTS + 1];
  size_t pages;
  tsr_map_entry_t page_list[TSR_ARENA_SLOTS];
} json_map_t;

static void json_map_arena_end(json_map_t *m) {
  if (m->arena == UINT32_MAX) return;
  out_t *o = m->o;
  puts_(o, "\"slots\":\"");
  put(o, m->slots, TSR_ARENA_SLOTS);
  puts_(o, "\",\"pages\":[");
  for (size_t i = 0; i < m->pages; i++) {
    const tsr_map_entry_t *e = &m->page_list[i];
    if (i) puts_(o, ",");
    puts_(o, "[");
    put_u64(o, e->slot); puts_(o, ",");
    put_u64(o, e->slots); puts_(o, ",");
    put_u64(o, e->cls); puts_(o, ",");
    put_u64(o, e->block_size); puts_(o, ",");
    put_u64(o, e->capacity); puts_(o, ",");
    put_u64(o, e->live);
    puts_(o, "]");
  }
  puts_(o, "]}");
}

static int json_map_entry(const tsr_map_entry_t *e, void *arg) {
  json_map_t *m = arg;
  if (e->arena != m->arena) {
    json_map_arena_end(m);
    if (m->arena != UINT32_MAX) puts_(m->o, ",");
    m->arena = e->arena;
    m->pages = 0;
    puts_(m->o, "{\"base\":\"");
    put_hex(m->o, (uint64_t)((uintptr_t)e->start & ~(uintptr_t)TSR_ARENA_MASK));
    puts_(m->o, "\",");
  }
  static const char state_char[] = { 'm', '.', 'd', 'u' };
  for (uint32_t s = e->slot; s < e->slot + e->slots && s < TSR_ARENA_SLOTS; s++) m->slots[s] = state_char[e->state];
  if (e->state == TSR_SLOT_STATE_USED && e->capacity != 0) m->page_list[m->pages++] = *e;
  return 0;
}

typedef struct json_space_s {
  out_t *o;
  bool first;
} json_space_t;

static int json_region(const tsr_region_t *r, void *arg) {
  json_space_t *j = arg;
  out_t *o = j->o;
  if (!j->first) puts_(o, ",");
  j->first = false;
  puts_(o, "{\"start\":\"");
  put_hex(o, r->start);
  puts_(o, "\",\"end\":\"");
  put_hex(o, r->end);
  puts_(o, "\",\"state\":");
  puts_(o, r->state == TSR_REGION_FREE ? "\"free\"" : r->state == TSR_REGION_RESERVED ? "\"reserved\"" : "\"committed\"");
  puts_(o, ",\"prot\":\"");
  puts_(o, (r->prot & TSR_PROT_READ) ? "r" : "-");
  puts_(o, (r->prot & TSR_PROT_WRITE) ? "w" : "-");
  puts_(o, (r->prot & TSR_PROT_EXEC) ? "x" : "-");
  puts_(o, "\",\"tessera\":");
  puts_(o, r->tessera ? "true" : "false");
  puts_(o, ",\"name\":");
  put_json_str(o, r->name);
  puts_(o, "}");
  return 0;
}

static void write_json(out_t *o, report_t *r) {
  const tsr_stats_t *s = &r->stats;
  puts_(o, "{\"schema\":\"tessera-report\",\"version\":1,\"tessera_version\":\"");
  put_u64(o, TSR_VERSION_MAJOR); puts_(o, ".");
  put_u64(o, TSR_VERSION_MINOR); puts_(o, ".");
  put_u64(o, TSR_VERSION_PATCH);
  puts_(o, "\",");
  json_u64(o, "pid", tsri_os_process_id(), true);
  put_json_key(o, "program");
  put_json_str(o, r->program);
  puts_(o, ",");
  put_json_key(o, "reason");
  put_json_str(o, r->reason);
  puts_(o, ",");
  json_u64(o, "uptime_ms", tsri_os_clock_ms() - tsri_start_ms, true);
  put_json_key(o, "track");
  put_json_str(o, track_names[s->track]);
  puts_(o, ",");
  json_u64(o, "sample_bytes", (uint64_t)tsri_option(TSRI_OPT_SAMPLE_BYTES), true);
  puts_(o, "\"stats\":{");
  json_u64(o, "allocated", s->allocated, true);
  json_u64(o, "requested", s->requested, true);
  put_json_key(o, "requested_exact");
  puts_(o, s->requested_exact ? "true," : "false,");
  json_u64(o, "committed", s->committed, true);
  json_u64(o, "reserved", s->reserved, true);
  json_u64(o, "metadata", s->metadata, true);
  json_u64(o, "live_blocks", s->live_blocks, true);
  json_u64(o, "tracked_blocks", s->tracked_blocks, true);
  json_u64(o, "large_live", s->large_live, true);
  json_u64(o, "arenas", s->arenas, true);
  json_u64(o, "allocations", s->allocations, true);
  json_u64(o, "frees", s->frees, true);
  json_u64(o, "purges", s->purges, true);
  json_u64(o, "os_commits", s->os_commits, true);
  json_u64(o, "os_decommits", s->os_decommits, true);
  json_u64(o, "os_reserves", s->os_reserves, true);
  json_u64(o, "os_releases", s->os_releases, true);
  json_u64(o, "os_resets", s->os_resets, true);
  json_u64(o, "errors", s->errors, true);
  json_ratio(o, "internal_fragmentation", s->internal_fragmentation, true);
  json_ratio(o, "external_fragmentation", s->external_fragmentation, true);
  json_ratio(o, "metadata_overhead", s->metadata_overhead, true);
  json_ratio(o, "efficiency", s->efficiency, false);
  puts_(o, "},\"classes\":[");
  bool first = true;
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    const tsr_class_stats_t *k = &r->classes[c];
    if (k->pages == 0) continue;
    if (!first) puts_(o, ",");
    first = false;
    puts_(o, "{");
    json_u64(o, "index", k->index, true);
    json_u64(o, "block_size", k->block_size, true);
    json_u64(o, "pages", k->pages, true);
    json_u64(o, "committed", k->committed, true);
    json_u64(o, "blocks_live", k->blocks_live, true);
    json_u64(o, "blocks_total", k->blocks_total, true);
    json_u64(o, "bytes_live", k->bytes_live, true);
    json_u64(o, "bytes_requested", k->bytes_requested, true);
    json_ratio(o, "utilisation", k->utilisation, true);
    puts_(o, "\"occupancy\":[");
    for (size_t b = 0; b < TSR_OCCUPANCY_BUCKETS; b++) {
      if (b) puts_(o, ",");
      put_u64(o, k->occupancy[b]);
    }
    puts_(o, "]}");
  }
  puts_(o, "],\"sites\":");
  json_sites(o, r->sites, sites_listed(r->sites));
  puts_(o, ",");
  json_u64(o, "sites_total", r->sites ? r->sites->count : 0, true);
  if (r->leaks != NULL) {
    puts_(o, "\"leaks\":{");
    json_u64(o, "blocks", r->leaks->blocks, true);
    json_u64(o, "bytes", r->leaks->bytes, true);
    json_u64(o, "expected_blocks", r->leaks->expected_blocks, true);
    json_u64(o, "libc_blocks", r->leaks->libc_blocks, true);
    puts_(o, "\"functions\":[");
    leak_fn_t *fns = tsri_scratch(LEAK_FUNCTIONS * sizeof(leak_fn_t));
    size_t nf = fns ? leak_functions(r->leaks, fns) : 0;
    for (size_t i = 0; i < nf; i++) {
      if (i) puts_(o, ",");
      puts_(o, "{");
      put_json_key(o, "function");
      put_json_str(o, fns[i].name);
      puts_(o, ",");
      json_u64(o, "blocks", fns[i].blocks, true);
      json_u64(o, "bytes", fns[i].bytes, true);
      json_u64(o, "requested", fns[i].requested, false);
      puts_(o, "}");
    }
    tsri_scratch_free(fns);
    puts_(o, "],\"sites\":");
    json_sites(o, r->leaks, sites_listed(r->leaks));
    puts_(o, "},");
  }
  puts_(o, "\"map\":{");
  json_u64(o, "arena_size", TSR_ARENA_SIZE, true);
  json_u64(o, "slot_size", TSR_SLOT_SIZE, true);
  puts_(o, "\"arenas\":[");
  json_map_t *m = tsri_scratch(sizeof(json_map_t));
  if (m != NULL) {
    m->o = o;
    m->arena = UINT32_MAX;
    tsr_map_walk(json_map_entry, m);
    json_map_arena_end(m);
    tsri_scratch_free(m);
  }
  puts_(o, "]},\"address_space\":{");
  json_u64(o, "reserved", r->space.reserved, true);
  json_u64(o, "committed", r->space.committed, true);
  json_u64(o, "free", r->space.free, true);
  json_u64(o, "largest_free", r->space.largest_free, true);
  puts_(o, "\"largest_free_at\":\"");
  put_hex(o, r->space.largest_free_at);
  puts_(o, "\",");
  json_u64(o, "tessera_reserved", r->space.tessera_reserved, true);
  puts_(o, "\"regions\":[");
  json_space_t js = { o, true };
  if (r->space_ok) tsr_address_space(json_region, &js, NULL);
  puts_(o, "]}}\n");
}

/* ------------------------------------------------------------------------
 * OpenMetrics
 * ---------------------------------------------------------------------- */

static void om_metric(out_t *o, const char *name, const char *type, const char *help, uint64_t v) {
  puts_(o, "# TYPE tessera_"); puts_(o, name); puts_(o, " "); puts_(o, type);
  puts_(o, "\n# HELP tessera_"); puts_(o, name); puts_(o, " "); puts_(o, help);
  puts_(o, "\ntessera_"); puts_(o, name);
  if (strcmp(type, "counter") == 0) puts_(o, "_total");
  puts_(o, " "); put_u64(o, v); puts_(o, "\n");
}

static void om_ratio(out_t *o, const char *name, const char *help, double v) {
  puts_(o, "# TYPE tessera_"); puts_(o, name); puts_(o, " gauge\n# HELP tessera_");
  puts_(o, name); puts_(o, " "); puts_(o, help);
  puts_(o, "\ntessera_"); puts_(o, name); puts_(o, " "); put_fixed(o, v, 6); puts_(o, "\n");
}

static void om_class_family(out_t *o, report_t *r, const char *name, const char *help, int which) {
  puts_(o, "# TYPE tessera_class_"); puts_(o, name); puts_(o, " gauge\n# HELP tessera_class_");
  puts_(o, name); puts_(o, " "); puts_(o, help); puts_(o, "\n");
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    const tsr_class_stats_t *k = &r->classes[c];
    if (k->pages == 0) continue;
    puts_(o, "tessera_class_"); puts_(o, name); puts_(o, "{size=\"");
    if (c == TSR_CLASS_COUNT) puts_(o, "large");
    else put_u64(o, k->block_size);
    puts_(o, "\"} ");
    if (which == 0) put_u64(o, k->bytes_live);
    else if (which == 1) put_u64(o, k->bytes_requested);
    else if (which == 2) put_u64(o, k->committed);
    else put_fixed(o, k->utilisation, 6);
    puts_(o, "\n");
  }
}

static void write_openmetrics(out_t *o, report_t *r) {
  const tsr_stats_t *s = &r->stats;
  om_metric(o, "requested_bytes", "gauge", "Bytes asked for in live blocks (estimated unless tracking is full).", s->requested);
  om_metric(o, "allocated_bytes", "gauge", "Usable bytes of live blocks.", s->allocated);
  om_metric(o, "committed_bytes", "gauge", "Bytes committed from the OS.", s->committed);
  om_metric(o, "reserved_bytes", "gauge", "Bytes of address space reserved.", s->reserved);
  om_metric(o, "metadata_bytes", "gauge", "Bytes committed for tessera's own records.", s->metadata);
  om_metric(o, "live_blocks", "gauge", "Live blocks.", s->live_blocks);
  om_metric(o, "allocations", "counter", "Blocks handed out.", s->allocations);
  om_metric(o, "frees", "counter", "Blocks given back.", s->frees);
  om_metric(o, "purged_slots", "counter", "Free 64 KiB slots decommitted.", s->purges);
  om_metric(o, "errors", "counter", "Bad calls reported.", s->errors);
  puts_(o, "# TYPE tessera_os_calls counter\n# HELP tessera_os_calls Calls to the OS memory functions.\n");
  const char *calls[] = { "reserve", "commit", "decommit", "reset", "release" };
  uint64_t counts[] = { s->os_reserves, s->os_commits, s->os_decommits, s->os_resets, s->os_releases };
  for (size_t i = 0; i < 5; i++) {
    puts_(o, "tessera_os_calls_total{call=\""); puts_(o, calls[i]); puts_(o, "\"} ");
    put_u64(o, counts[i]); puts_(o, "\n");
  }
  om_ratio(o, "internal_fragmentation_ratio", "Allocated / requested bytes.", s->internal_fragmentation);
  om_ratio(o, "external_fragmentation_ratio", "Committed / allocated bytes.", s->external_fragmentation);
  om_ratio(o, "metadata_overhead_ratio", "Metadata / allocated bytes.", s->metadata_overhead);
  om_ratio(o, "efficiency_ratio", "Requested / committed bytes.", s->efficiency);
  om_class_family(o, r, "live_bytes", "Usable bytes of live blocks per size class.", 0);
  om_class_family(o, r, "requested_bytes", "Bytes asked for per size class.", 1);
  om_class_family(o, r, "committed_bytes", "Bytes of the pages of each size class.", 2);
  om_class_family(o, r, "utilisation_ratio", "Live / total blocks of each size class.", 3);
  if (r->sites != NULL) {
    size_t listed = sites_listed(r->sites);
    if (listed > 20) listed = 20;
    puts_(o, "# TYPE tessera_site_live_bytes gauge\n# HELP tessera_site_live_bytes Live bytes of the biggest allocation sites.\n");
    for (size_t i = 0; i < listed; i++) {
      const tsri_site_t *site = &r->sites->sites[i];
      void *const *frames;
      size_t depth = tsri_stack_frames(site->id, &frames);
      puts_(o, "tessera_site_live_bytes{site=\"");
      put_u64(o, site->id);
      puts_(o, "\",function=\"");
      tsri_os_symbol_t sym;
      char buf[256];
      if (depth > 0 && tsri_os_symbolize(frames[0], &sym) == 0)
        put_label(o, sym.function[0] ? function_name(&sym, buf) : base_name(sym.module));
      puts_(o, "\"} ");
      put_u64(o, tsri_round_u64(site->bytes));
      puts_(o, "\n");
    }
  }
  puts_(o, "# EOF\n");
}

/* ------------------------------------------------------------------------
 * Folded stacks
 * ---------------------------------------------------------------------- */

/* "outermost;...;innermost bytes": the order flame-graph tools read. */
static void folded_line(out_t *o, uint32_t id, uint64_t bytes) {
  void *const *frames;
  size_t depth = tsri_stack_frames(id, &frames);
  if (depth == 0) puts_(o, "[no stack]");
  for (size_t f = depth; f-- > 0;) {
    put_frame_short(o, frames[f], false);
    if (f) puts_(o, ";");
  }
  puts_(o, " ");
  put_u64(o, bytes);
  puts_(o, "\n");
}

static void write_folded(out_t *o, report_t *r) {
  if (r->sites == NULL) return;
  for (size_t i = 0; i < r->sites->count; i++)
    folded_line(o, r->sites->sites[i].id, tsri_round_u64(r->sites->sites[i].bytes));
}

/* ------------------------------------------------------------------------
 * Entry points
 * ---------------------------------------------------------------------- */

static tsri_lock_t report_lock;   /* one report at a time: the symbol cache is shared */

int tsri_report_write(tsr_format_t format, const char *reason, tsr_output_fn *fn, void *arg) {
  if (fn == NULL || (int)format < TSR_FORMAT_TEXT || (int)format > TSR_FORMAT_FOLDED) return EINVAL;
  tsri_init();
  report_t *r = tsri_scratch(sizeof(report_t));
  if (r == NULL) return ENOMEM;
  out_t o;
  o.fn = fn;
  o.arg = arg;
  o.len = 0;
  tsri_lock(&report_lock);
  report_gather(r, reason, true);
  tsri_os_symbols_begin();
  if (format == TSR_FORMAT_TEXT) write_text(&o, r);
  else if (format == TSR_FORMAT_JSON) write_json(&o, r);
  else if (format == TSR_FORMAT_OPENMETRICS) write_openmetrics(&o, r);
  else write_folded(&o, r);
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
  out_t o;
  o.fn = fn;
  o.arg = arg;
  o.len = 0;
  tsri_lock(&report_lock);
  tsri_os_symbols_begin();
  if (format == TSR_FORMAT_JSON) puts_(&o, "{\"schema\":\"tessera-diff\",\"version\":1,\"changes\":[");
  else if (format == TSR_FORMAT_TEXT) puts_(&o, "== tessera growth between two snapshots (bytes, blocks; after)\n");
  bool first = true;
  for (size_t i = 0; i < n; i++) {
    const tsr_delta_t *e = &d[i];
    if (format == TSR_FORMAT_FOLDED) {
      if (e->is_site && e->bytes > 0) folded_line(&o, e->id, (uint64_t)e->bytes);
      continue;
    }
    if (format == TSR_FORMAT_JSON) {
      if (!first) puts_(&o, ",");
      first = false;
      puts_(&o, e->is_site ? "{\"kind\":\"site\"," : "{\"kind\":\"class\",");
      json_u64(&o, "id", e->id, true);
      if (!e->is_site) json_u64(&o, "block_size", e->block_size, true);
      put_json_key(&o, "blocks"); put_i64(&o, e->blocks); puts_(&o, ",");
      put_json_key(&o, "bytes"); put_i64(&o, e->bytes); puts_(&o, ",");
      json_u64(&o, "blocks_after", e->blocks_after, true);
      json_u64(&o, "bytes_after", e->bytes_after, e->is_site);
      if (e->is_site) {
        puts_(&o, "\"frames\":[");
        for (size_t f = 0; f < e->depth; f++) {
          if (f) puts_(&o, ",");
          puts_(&o, "\"");
          put_frame_short(&o, e->frames[f], true);
          puts_(&o, "\"");
        }
        puts_(&o, "]");
      }
      puts_(&o, "}");
      continue;
    }
    puts_(&o, e->bytes >= 0 ? "  +" : "  ");
    put_i64(&o, e->bytes);
    puts_(&o, " bytes, ");
    puts_(&o, e->blocks >= 0 ? "+" : "");
    put_i64(&o, e->blocks);
    puts_(&o, " blocks (now ");
    put_u64(&o, e->bytes_after);
    puts_(&o, " bytes in ");
    put_u64(&o, e->blocks_after);
    puts_(&o, ")  ");
    if (e->is_site) {
      puts_(&o, "site ");
      for (size_t f = 0; f < e->depth && f < 4; f++) {
        if (f) puts_(&o, " < ");
        put_frame_short(&o, e->frames[f], false);
      }
      if (e->depth == 0) puts_(&o, "[no stack]");
    } else if (e->id == TSR_CLASS_COUNT) {
      puts_(&o, "class large");
    } else {
      puts_(&o, "class ");
      put_u64(&o, e->block_size);
    }
    puts_(&o, "\n");
  }
  if (format == TSR_FORMAT_JSON) puts_(&o, "]}\n");
  flush(&o);
  tsri_os_symbols_end();
  tsri_unlock(&report_lock);
  tsri_scratch_free(d);
  return 0;
}
