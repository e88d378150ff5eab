/* report.c: loading a tessera report and checking it against the schema.
 *
 * Owns reading a report file, picking the report to show, and turning its
 * JSON tree into the structs of report.h.  The check of
 * docs/report-schema.json is made by the same typed reads that fill the
 * structs, so there is no second description of the schema to drift from
 * the first, and every view can trust types and bounds afterwards.  Also
 * the shared formatting of numbers.
 *
 * JSON syntax is jansson's business.  It is as strict as the tool needs
 * (RFC 8259: no comments, trailing commas or leading zeros, valid UTF-8,
 * no lone surrogates, nesting capped), and it keeps integers as 64-bit
 * integers, which the byte counts need: a double rounds them above 2^53.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Failing
 * ---------------------------------------------------------------------- */

void tool_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tessera-report: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

void *tool_calloc(size_t n, size_t size) {
  void *p = calloc(n == 0 ? 1 : n, size);
  if (p == NULL) tool_die("out of memory");
  return p;
}

/* ------------------------------------------------------------------------
 * Loading: typed reads that double as the schema check
 *
 * Each read names the member it wants, with the path that leads to it, so
 * that a bad file is answered with "line 3: stats.allocated: missing"
 * rather than a crash or a silent zero.
 * ---------------------------------------------------------------------- */

typedef struct loader_s {
  const char *name;
  size_t line;                   /* where the report starts in the file */
} loader_t;

__attribute__((noreturn, format(printf, 3, 4))) static void
bad(const loader_t *ld, const char *at, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "tessera-report: %s: line %zu: not a valid tessera report: %s: ", ld->name,
          ld->line, at);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

/* Paths only name places in messages: one too long is cut to end in "...". */
static void path_fit(char *buf, size_t size, int n) {
  if (n >= 0 && (size_t)n >= size && size > 4) strcpy(buf + size - 4, "...");
}

static void path_join(char *buf, size_t size, const char *where, const char *key) {
  path_fit(buf, size, snprintf(buf, size, "%s%s%s", where, where[0] ? "." : "", key));
}

static void path_index(char *buf, size_t size, const char *where, size_t i) {
  path_fit(buf, size, snprintf(buf, size, "%s[%zu]", where, i));
}

/* The types as the schema names them: jansson's, with its integer and
 * real joined into number, and true and false into boolean. */
typedef enum kind_e {
  KIND_NULL,
  KIND_BOOL,
  KIND_NUMBER,
  KIND_STRING,
  KIND_ARRAY,
  KIND_OBJECT,
} kind_t;

static kind_t kind_of(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return KIND_OBJECT;
  case JSON_ARRAY: return KIND_ARRAY;
  case JSON_STRING: return KIND_STRING;
  case JSON_INTEGER:
  case JSON_REAL: return KIND_NUMBER;
  case JSON_TRUE:
  case JSON_FALSE: return KIND_BOOL;
  case JSON_NULL: break;
  }
  return KIND_NULL;
}

/* For messages: "must be an object, not an array". */
static const char *kind_name(kind_t kind) {
  switch (kind) {
  case KIND_NULL: return "null";
  case KIND_BOOL: return "a boolean";
  case KIND_NUMBER: return "a number";
  case KIND_STRING: return "a string";
  case KIND_ARRAY: return "an array";
  case KIND_OBJECT: return "an object";
  }
  return "?";
}

static const json_t *need(const loader_t *ld, const json_t *obj, const char *where,
                          const char *key, kind_t kind, bool required) {
  char at[256];
  path_join(at, sizeof at, where, key);
  const json_t *v = json_object_get(obj, key);
  if (v == NULL) {
    if (required) bad(ld, at, "missing");
    return NULL;
  }
  if (kind_of(v) != kind) bad(ld, at, "must be %s, not %s", kind_name(kind), kind_name(kind_of(v)));
  return v;
}

/* json_integer_value is where the exact counts come from. */
_Static_assert(sizeof(json_int_t) == sizeof(int64_t), "jansson's integers must be 64-bit");

/* A JSON Schema integer: any number without a fraction (5.0 counts).
 * False for anything that is not a number. */
static bool integer_of(const json_t *v, int64_t *out) {
  if (json_is_integer(v)) {
    *out = (int64_t)json_integer_value(v);
    return true;
  }
  double d = json_real_value(v);
  if (!json_is_real(v) || d < -9.2e18 || d > 9.2e18 || (double)(int64_t)d != d) return false;
  *out = (int64_t)d;
  return true;
}

static uint64_t count_value(const loader_t *ld, const json_t *v, const char *at) {
  int64_t n;
  if (!integer_of(v, &n) || n < 0) bad(ld, at, "must be a non-negative integer");
  return (uint64_t)n;
}

static bool opt_count(const loader_t *ld, const json_t *obj, const char *where, const char *key,
                      uint64_t *out) {
  char at[256];
  path_join(at, sizeof at, where, key);
  const json_t *v = json_object_get(obj, key);
  if (v == NULL) return false;
  *out = count_value(ld, v, at);
  return true;
}

static uint64_t get_count(const loader_t *ld, const json_t *obj, const char *where,
                          const char *key) {
  uint64_t n = 0;
  if (!opt_count(ld, obj, where, key, &n)) need(ld, obj, where, key, KIND_NUMBER, true);
  return n;
}

static const char *get_string(const loader_t *ld, const json_t *obj, const char *where,
                              const char *key, bool required) {
  const json_t *v = need(ld, obj, where, key, KIND_STRING, required);
  return v ? json_string_value(v) : NULL;
}

static const char *get_address(const loader_t *ld, const json_t *obj, const char *where,
                               const char *key) {
  const char *s = get_string(ld, obj, where, key, true);
  bool ok = s[0] == '0' && s[1] == 'x' && s[2] != 0;
  for (size_t i = 2; ok && s[i]; i++)
    ok = (s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f');
  if (!ok) {
    char at[256];
    path_join(at, sizeof at, where, key);
    bad(ld, at, "\"%s\" is not an address (0x and lowercase hex)", s);
  }
  return s;
}

static uint64_t address_value(const char *s) { return strtoull(s + 2, NULL, 16); }

static const char *get_enum(const loader_t *ld, const json_t *obj, const char *where,
                            const char *key, const char *const *allowed) {
  const char *s = get_string(ld, obj, where, key, true);
  for (size_t i = 0; allowed[i]; i++)
    if (strcmp(s, allowed[i]) == 0) return s;
  char at[256];
  path_join(at, sizeof at, where, key);
  bad(ld, at, "\"%s\" is not one of the values the schema allows", s);
}

static double get_number(const loader_t *ld, const json_t *obj, const char *where,
                         const char *key) {
  return json_number_value(need(ld, obj, where, key, KIND_NUMBER, true));
}

static bool get_bool(const loader_t *ld, const json_t *obj, const char *where, const char *key) {
  return json_is_true(need(ld, obj, where, key, KIND_BOOL, true));
}

/* Item i of an array member, which must be of the given type; its path
 * ("sites[3]") goes to at. */
static const json_t *item(const loader_t *ld, const json_t *arr, const char *where, size_t i,
                          kind_t kind, char *at, size_t atsize) {
  path_index(at, atsize, where, i);
  const json_t *v = json_array_get(arr, i);
  if (kind_of(v) != kind) bad(ld, at, "must be %s, not %s", kind_name(kind), kind_name(kind_of(v)));
  return v;
}

/* The "frames" member of the site (or pin site) o at path at. */
static void load_frames(const loader_t *ld, const json_t *o, const char *at, frame_t **out,
                        size_t *count) {
  char fpath[256];
  path_join(fpath, sizeof fpath, at, "frames");
  const json_t *frames = need(ld, o, at, "frames", KIND_ARRAY, true);
  *count = json_array_size(frames);
  *out = tool_calloc(*count, sizeof **out);
  for (size_t j = 0; j < *count; j++) {
    char fat[256];
    const json_t *fo = item(ld, frames, fpath, j, KIND_OBJECT, fat, sizeof fat);
    frame_t *f = &(*out)[j];
    f->addr = get_address(ld, fo, fat, "addr");
    f->function = get_string(ld, fo, fat, "function", false);
    f->module = get_string(ld, fo, fat, "module", false);
    f->file = get_string(ld, fo, fat, "file", false);
    f->has_offset = opt_count(ld, fo, fat, "offset", &f->offset);
    opt_count(ld, fo, fat, "line", &f->line);
  }
}

static void load_sites(const loader_t *ld, const json_t *parent, const char *where,
                       const char *key, site_t **out, size_t *count) {
  char path[256];
  path_join(path, sizeof path, where, key);
  const json_t *arr = need(ld, parent, where, key, KIND_ARRAY, true);
  *count = json_array_size(arr);
  *out = tool_calloc(*count, sizeof **out);
  for (size_t i = 0; i < *count; i++) {
    char at[256];
    const json_t *o = item(ld, arr, path, i, KIND_OBJECT, at, sizeof at);
    site_t *s = &(*out)[i];
    get_count(ld, o, at, "id");
    s->blocks = get_count(ld, o, at, "blocks");
    s->bytes = get_count(ld, o, at, "bytes");
    s->requested = get_count(ld, o, at, "requested");
    s->estimated = get_bool(ld, o, at, "estimated");
    load_frames(ld, o, at, &s->frames, &s->nframes);
  }
}

/* "pins.mesh", which reports written before tessera meshed lack: a report
 * without it loads with has_mesh false. */
static void load_mesh(const loader_t *ld, report_t *r, const json_t *pins) {
  static const char *const states[] = { "off", "on", "unsupported", "paused", NULL };
  const json_t *m = need(ld, pins, "pins", "mesh", KIND_OBJECT, false);
  if (m == NULL) return;
  r->has_mesh = true;
  r->mesh.state = get_enum(ld, m, "pins.mesh", "state", states);
  r->mesh.why = get_string(ld, m, "pins.mesh", "why", false);
  r->mesh.meshed_pages = get_count(ld, m, "pins.mesh", "meshed_pages");
  r->mesh.saved = get_count(ld, m, "pins.mesh", "saved");
  r->mesh.meshes = get_count(ld, m, "pins.mesh", "meshes");
  r->mesh.unmeshes = get_count(ld, m, "pins.mesh", "unmeshes");
  r->mesh.passes = get_count(ld, m, "pins.mesh", "passes");
  r->mesh.time_ns = get_count(ld, m, "pins.mesh", "time_ns");
  r->mesh.pause_max_ns = get_count(ld, m, "pins.mesh", "pause_max_ns");
}

/* "pins", which reports written before tessera had it lack: a report
 * without it loads with has_pins false; so with meshable and mesh. */
static void load_pins(const loader_t *ld, report_t *r, const json_t *root) {
  const json_t *pins = need(ld, root, "", "pins", KIND_OBJECT, false);
  if (pins == NULL) return;
  r->has_pins = true;
  r->pin_pages = get_count(ld, pins, "pins", "pages");
  r->pin_bytes = get_count(ld, pins, "pins", "bytes");
  r->pin_live = get_count(ld, pins, "pins", "live");
  r->has_meshable = opt_count(ld, pins, "pins", "meshable", &r->pin_meshable);
  load_mesh(ld, r, pins);
  const json_t *arr = need(ld, pins, "pins", "sites", KIND_ARRAY, true);
  r->npins = json_array_size(arr);
  r->pins = tool_calloc(r->npins, sizeof *r->pins);
  for (size_t i = 0; i < r->npins; i++) {
    char at[256];
    const json_t *o = item(ld, arr, "pins.sites", i, KIND_OBJECT, at, sizeof at);
    pin_t *p = &r->pins[i];
    p->id = get_count(ld, o, at, "id");
    p->blocks = get_count(ld, o, at, "blocks");
    p->pinned = get_count(ld, o, at, "pinned");
    p->idle = get_count(ld, o, at, "idle");
    p->estimated = get_bool(ld, o, at, "estimated");
    load_frames(ld, o, at, &p->frames, &p->nframes);
  }
  r->pins_total = get_count(ld, pins, "pins", "sites_total");
}

static void load_classes(const loader_t *ld, report_t *r, const json_t *root) {
  const json_t *arr = need(ld, root, "", "classes", KIND_ARRAY, true);
  r->nclasses = json_array_size(arr);
  r->classes = tool_calloc(r->nclasses, sizeof *r->classes);
  for (size_t i = 0; i < r->nclasses; i++) {
    char at[256];
    const json_t *o = item(ld, arr, "classes", i, KIND_OBJECT, at, sizeof at);
    class_t *c = &r->classes[i];
    get_count(ld, o, at, "index");
    c->block_size = get_count(ld, o, at, "block_size");
    c->pages = get_count(ld, o, at, "pages");
    c->committed = get_count(ld, o, at, "committed");
    c->blocks_live = get_count(ld, o, at, "blocks_live");
    c->blocks_total = get_count(ld, o, at, "blocks_total");
    c->bytes_live = get_count(ld, o, at, "bytes_live");
    c->bytes_requested = get_count(ld, o, at, "bytes_requested");
    c->utilisation = get_number(ld, o, at, "utilisation");
    if (c->utilisation < 0 || c->utilisation > 1) bad(ld, at, "utilisation must lie in [0, 1]");
    char opath[256];
    path_join(opath, sizeof opath, at, "occupancy");
    const json_t *occ = need(ld, o, at, "occupancy", KIND_ARRAY, true);
    size_t buckets = json_array_size(occ);
    if (buckets != 10) bad(ld, opath, "must have 10 buckets, not %zu", buckets);
    for (size_t j = 0; j < 10; j++) {
      char oat[256];
      path_index(oat, sizeof oat, opath, j);
      c->occupancy[j] = count_value(ld, json_array_get(occ, j), oat);
    }
  }
}

static void load_map(const loader_t *ld, report_t *r, const json_t *root) {
  const json_t *map = need(ld, root, "", "map", KIND_OBJECT, true);
  r->arena_size = get_count(ld, map, "map", "arena_size");
  r->slot_size = get_count(ld, map, "map", "slot_size");
  const json_t *arr = need(ld, map, "map", "arenas", KIND_ARRAY, true);
  r->narenas = json_array_size(arr);
  r->arenas = tool_calloc(r->narenas, sizeof *r->arenas);
  for (size_t i = 0; i < r->narenas; i++) {
    char at[256], ppath[256];
    const json_t *o = item(ld, arr, "map.arenas", i, KIND_OBJECT, at, sizeof at);
    arena_t *a = &r->arenas[i];
    a->base = get_address(ld, o, at, "base");
    a->slots = get_string(ld, o, at, "slots", true);
    a->nslots = strlen(a->slots);
    if (strspn(a->slots, "m.du") != a->nslots) bad(ld, at, "slots may only hold m . d u");
    path_join(ppath, sizeof ppath, at, "pages");
    const json_t *pages = need(ld, o, at, "pages", KIND_ARRAY, true);
    a->npages = json_array_size(pages);
    a->pages = tool_calloc(a->npages, sizeof *a->pages);
    for (size_t j = 0; j < a->npages; j++) {
      char pat[256];
      const json_t *row = item(ld, pages, ppath, j, KIND_ARRAY, pat, sizeof pat);
      size_t numbers = json_array_size(row);
      if (numbers != 6) bad(ld, pat, "must have 6 numbers, not %zu", numbers);
      uint64_t v[6];
      for (size_t k = 0; k < 6; k++) v[k] = count_value(ld, json_array_get(row, k), pat);
      /* Not in the schema, but the drawing indexes slots with these. */
      if (v[0] > a->nslots || v[1] > a->nslots - v[0])
        bad(ld, pat, "slots %" PRIu64 "+%" PRIu64 " run past the arena's %zu slots", v[0], v[1],
            a->nslots);
      a->pages[j] = (mpage_t){ v[0], v[1], v[2], v[3], v[4], v[5] };
    }
  }
}

static void load_address_space(const loader_t *ld, report_t *r, const json_t *root) {
  static const char *const states[] = { "free", "reserved", "committed", NULL };
  const char *w = "address_space";
  const json_t *as = need(ld, root, "", w, KIND_OBJECT, true);
  r->as_reserved = get_count(ld, as, w, "reserved");
  r->as_committed = get_count(ld, as, w, "committed");
  r->as_free = get_count(ld, as, w, "free");
  r->as_largest_free = get_count(ld, as, w, "largest_free");
  r->as_largest_free_at = get_address(ld, as, w, "largest_free_at");
  r->as_tessera_reserved = get_count(ld, as, w, "tessera_reserved");
  const json_t *arr = need(ld, as, w, "regions", KIND_ARRAY, true);
  r->nregions = json_array_size(arr);
  r->regions = tool_calloc(r->nregions, sizeof *r->regions);
  for (size_t i = 0; i < r->nregions; i++) {
    char at[256];
    const json_t *o = item(ld, arr, "address_space.regions", i, KIND_OBJECT, at, sizeof at);
    region_t *g = &r->regions[i];
    g->start_s = get_address(ld, o, at, "start");
    g->end_s = get_address(ld, o, at, "end");
    g->start = address_value(g->start_s);
    g->end = address_value(g->end_s);
    g->state = get_enum(ld, o, at, "state", states);
    g->prot = get_string(ld, o, at, "prot", true);
    g->tessera = get_bool(ld, o, at, "tessera");
    g->name = get_string(ld, o, at, "name", true);
    const char *p = g->prot;
    if (strlen(p) != 3 || (p[0] != 'r' && p[0] != '-') || (p[1] != 'w' && p[1] != '-') ||
        (p[2] != 'x' && p[2] != '-'))
      bad(ld, at, "prot \"%s\" is not of the form rwx", p);
  }
}

/* "stats.errors_by_kind", which reports written before errors were
 * counted by kind lack: such a report loads with no kinds.  Kinds this
 * tool does not know are kept, as the report names them. */
static void load_error_kinds(const loader_t *ld, report_t *r, const json_t *stats) {
  const json_t *kinds = need(ld, stats, "stats", "errors_by_kind", KIND_OBJECT, false);
  if (kinds == NULL) return;
  r->error_kinds = tool_calloc(json_object_size(kinds), sizeof *r->error_kinds);
  const char *kind;
  json_t *v;
  json_object_foreach((json_t *)kinds, kind, v) {
    char at[256];
    path_join(at, sizeof at, "stats.errors_by_kind", kind);
    error_kind_t *e = &r->error_kinds[r->nerror_kinds++];
    e->kind = kind;
    e->count = count_value(ld, v, at);
  }
}

/* Check doc against the schema and fill r; r takes the caller's reference
 * to doc. */
static void load_report(const loader_t *ld, json_t *doc, report_t *r) {
  static const char *const reasons[] = { "api", "exit", "signal", "interval", NULL };
  static const char *const tracks[] = { "stats", "sample", "full", NULL };
  memset(r, 0, sizeof *r);
  r->doc = doc;
  r->name = ld->name;
  int64_t version;
  const json_t *v = need(ld, doc, "", "version", KIND_NUMBER, true);
  if (!integer_of(v, &version) || version != 1)
    bad(ld, "version", "this tool reads version 1 reports, not %g", json_number_value(v));
  r->version = get_string(ld, doc, "", "tessera_version", true);
  v = need(ld, doc, "", "pid", KIND_NUMBER, true);
  if (!integer_of(v, &r->pid)) bad(ld, "pid", "must be an integer");
  r->program = get_string(ld, doc, "", "program", true);
  r->reason = get_enum(ld, doc, "", "reason", reasons);
  r->uptime_ms = get_count(ld, doc, "", "uptime_ms");
  r->track = get_enum(ld, doc, "", "track", tracks);
  r->sample_bytes = get_count(ld, doc, "", "sample_bytes");
  if (r->sample_bytes < 1) bad(ld, "sample_bytes", "must be at least 1");

  const json_t *st = need(ld, doc, "", "stats", KIND_OBJECT, true);
#define X(name, bytes) r->stats.name = get_count(ld, st, "stats", #name);
  STAT_COUNTS(X)
#undef X
  r->stats.requested_exact = get_bool(ld, st, "stats", "requested_exact");
  r->stats.internal_fragmentation = get_number(ld, st, "stats", "internal_fragmentation");
  r->stats.external_fragmentation = get_number(ld, st, "stats", "external_fragmentation");
  r->stats.metadata_overhead = get_number(ld, st, "stats", "metadata_overhead");
  r->stats.efficiency = get_number(ld, st, "stats", "efficiency");
  load_error_kinds(ld, r, st);
  /* reports written before tessera counted them lack both: 0 */
  (void)opt_count(ld, st, "stats", "records_lost", &r->stats.records_lost);
  (void)opt_count(ld, st, "stats", "stacks_lost", &r->stats.stacks_lost);

  load_classes(ld, r, doc);
  load_sites(ld, doc, "", "sites", &r->sites, &r->nsites);
  r->sites_total = -1;
  v = need(ld, doc, "", "sites_total", KIND_NUMBER, false);
  if (v != NULL && !integer_of(v, &r->sites_total)) bad(ld, "sites_total", "must be an integer");
  load_pins(ld, r, doc);
  const json_t *leaks = need(ld, doc, "", "leaks", KIND_OBJECT, false);
  if (leaks != NULL) {
    r->has_leaks = true;
    r->leak_blocks = get_count(ld, leaks, "leaks", "blocks");
    r->leak_bytes = get_count(ld, leaks, "leaks", "bytes");
    r->leak_expected = get_count(ld, leaks, "leaks", "expected_blocks");
    const json_t *fns = need(ld, leaks, "leaks", "functions", KIND_ARRAY, true);
    r->nleak_functions = json_array_size(fns);
    r->leak_functions = tool_calloc(r->nleak_functions, sizeof *r->leak_functions);
    for (size_t i = 0; i < r->nleak_functions; i++) {
      char at[256];
      const json_t *o = item(ld, fns, "leaks.functions", i, KIND_OBJECT, at, sizeof at);
      leak_fn_t *f = &r->leak_functions[i];
      f->function = get_string(ld, o, at, "function", true);
      f->blocks = get_count(ld, o, at, "blocks");
      f->bytes = get_count(ld, o, at, "bytes");
      f->requested = get_count(ld, o, at, "requested");
    }
    load_sites(ld, leaks, "leaks", "sites", &r->leak_sites, &r->nleak_sites);
  }
  load_map(ld, r, doc);
  load_address_space(ld, r, doc);
}

static void free_sites(site_t *sites, size_t n) {
  for (size_t i = 0; i < n; i++) free(sites[i].frames);
  free(sites);
}

void tool_report_free(report_t *r) {
  free(r->error_kinds);
  free(r->classes);
  free_sites(r->sites, r->nsites);
  free(r->leak_functions);
  free_sites(r->leak_sites, r->nleak_sites);
  for (size_t i = 0; i < r->npins; i++) free(r->pins[i].frames);
  free(r->pins);
  for (size_t i = 0; i < r->narenas; i++) free(r->arenas[i].pages);
  free(r->arenas);
  free(r->regions);
  json_decref(r->doc);
}

static char *read_input(const char *file, const char *name, size_t *len) {
  FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb");
  if (f == NULL) tool_die("%s: %s", name, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = tool_calloc(cap, 1);
  for (;;) {
    if (n == cap) {
      char *bigger = realloc(buf, cap * 2);
      if (bigger == NULL) tool_die("out of memory reading %s", name);
      buf = bigger;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    n += got;
    if (got == 0) break;
  }
  if (ferror(f)) tool_die("%s: %s", name, strerror(errno));
  if (f != stdin) fclose(f);
  *len = n;
  return buf;
}

static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Does nothing but whitespace follow the line that text[at] is on?  A
 * process killed while appending its report leaves such a torn last line. */
static bool on_last_line(const char *text, size_t len, size_t at) {
  const char *nl = memchr(text + at, '\n', len - at);
  if (nl == NULL) return true;
  for (size_t i = (size_t)(nl - text); i < len; i++)
    if (!is_space(text[i])) return false;
  return true;
}

/* How every document is parsed.  JSON_DECODE_ANY: a bare number or
 * string is JSON too, and gets "not a tessera report" rather than "not
 * valid JSON".  JSON_DISABLE_EOF_CHECK: stop after one document, since a
 * file holds a sequence of them (JSON Lines).  JSON_REJECT_DUPLICATES: a
 * name given twice makes a report ambiguous, so it is refused rather than
 * silently resolved.  JSON_DECODE_INT_AS_REAL is left out on purpose: the
 * counts must stay exact 64-bit integers.  Without JSON_ALLOW_NUL, a
 * "\u0000" is refused, so every string is a whole C string. */
#define PARSE_FLAGS (JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_REJECT_DUPLICATES)

/* Parse the document that starts at text[start] (not whitespace), on line
 * line of the file, and set *end just past it.  Returns a new reference,
 * or NULL with "line L, column C: what" in msg.  jansson counts lines and
 * columns (in characters, from 1) from the start of the buffer it is
 * given, so they are moved here to count from the start of the file. */
static json_t *parse_document(const char *text, size_t len, size_t start, size_t line,
                              size_t *end, char *msg, size_t msgsize) {
  json_error_t e;
  json_t *doc = json_loadb(text + start, len - start, PARSE_FLAGS, &e);
  if (doc != NULL) {
    /* On success e.position is the bytes read.  It is an int: a document
     * of 2 GiB or more overflows it, and must not send the next parse to
     * the wrong place. */
    if (e.position <= 0 || (size_t)e.position > len - start) {
      json_decref(doc);
      snprintf(msg, msgsize, "line %zu: a document too large to read", line);
      return NULL;
    }
    *end = start + (size_t)e.position;
    return doc;
  }
  if (e.line < 1 || e.column < 0) {
    snprintf(msg, msgsize, "%s", e.text);
    return NULL;
  }
  size_t column = (size_t)e.column;
  if (e.line == 1) {
    /* Characters before the document on its first line: UTF-8 lead bytes. */
    for (size_t i = start; i > 0 && text[i - 1] != '\n'; i--)
      column += ((unsigned char)text[i - 1] & 0xc0) != 0x80;
  }
  snprintf(msg, msgsize, "line %zu, column %zu: %s", line + (size_t)e.line - 1, column, e.text);
  return NULL;
}

/* Read file and load its last report, or the last one whose pid is pid
 * when by_pid.  Every document in the file must be JSON and an object
 * that says it is a tessera report, except a torn last line after at least
 * one good report, which is skipped with a warning; only the chosen report
 * is checked in full. */
void tool_load(const char *file, bool by_pid, int64_t pid, report_t *r) {
  const char *name = strcmp(file, "-") == 0 ? "<stdin>" : file;
  size_t len, pos = 0, line = 1, docs = 0;
  char *text = read_input(file, name, &len);
  json_t *chosen = NULL;
  loader_t ld = { name, 0 };
  for (;;) {
    while (pos < len && is_space(text[pos])) line += text[pos++] == '\n';
    if (pos == len) break;
    size_t start = pos;
    char err[256 + JSON_ERROR_TEXT_LENGTH];
    json_t *doc = parse_document(text, len, start, line, &pos, err, sizeof err);
    if (doc == NULL && docs > 0 && on_last_line(text, len, start)) {
      fprintf(stderr, "tessera-report: %s: line %zu: skipping a torn last report (%s)\n", name,
              line, err);
      break;
    }
    if (doc == NULL) {
      free(text);
      json_decref(chosen);
      tool_die("%s: not valid JSON: %s", name, err);
    }
    const char *schema = json_string_value(json_object_get(doc, "schema"));
    if (schema == NULL || strcmp(schema, "tessera-report") != 0)
      tool_die("%s: line %zu: not a tessera report (no \"schema\": \"tessera-report\")", name,
               line);
    docs++;
    int64_t doc_pid;
    if (!by_pid || (integer_of(json_object_get(doc, "pid"), &doc_pid) && doc_pid == pid)) {
      json_decref(chosen);
      chosen = doc;
      ld.line = line;
    } else {
      json_decref(doc);
    }
    for (size_t i = start; i < pos; i++) line += text[i] == '\n';
  }
  free(text);
  if (docs == 0) tool_die("no report in %s", name);
  if (chosen == NULL) tool_die("no report of pid %" PRId64 " in %s", pid, name);
  load_report(&ld, chosen, r);
}

/* ------------------------------------------------------------------------
 * Formatting
 * ---------------------------------------------------------------------- */

char *tool_scratch(void) {
  static char ring[16][64];
  static unsigned next;
  return ring[next++ % 16];
}

/* n with a binary unit into buf (64 bytes), after the sign (may be ""). */
static const char *bytes_into(char *buf, const char *sign, uint64_t n) {
  static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };
  if (n < 1024) {
    snprintf(buf, 64, "%s%" PRIu64 " B", sign, n);
    return buf;
  }
  double v = (double)n / 1024;
  size_t u = 0;
  while (v >= 1024 && u + 1 < sizeof units / sizeof *units) {
    v /= 1024;
    u++;
  }
  snprintf(buf, 64, "%s%.1f %s", sign, v, units[u]);
  return buf;
}

const char *tool_bytes(uint64_t n) { return bytes_into(tool_scratch(), "", n); }

const char *tool_bytes_signed(int64_t n) {
  uint64_t mag = n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n;
  return bytes_into(tool_scratch(), n < 0 ? "-" : n > 0 ? "+" : "", mag);
}

const char *tool_uptime(uint64_t ms) {
  char *buf = tool_scratch();
  uint64_t s = ms / 1000;
  if (s < 60) snprintf(buf, 64, "%" PRIu64 ".%03" PRIu64 " s", s, ms % 1000);
  else if (s < 3600) snprintf(buf, 64, "%" PRIu64 "m %02" PRIu64 "s", s / 60, s % 60);
  else
    snprintf(buf, 64, "%" PRIu64 "h %02" PRIu64 "m %02" PRIu64 "s", s / 3600, s / 60 % 60, s % 60);
  return buf;
}

