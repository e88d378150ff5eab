/* tessera-report.c: reads tessera's JSON reports and shows them to people.
 *
 * Owns the command line and the text views: summary, sites, classes, leaks,
 * pins and diff.  Loading and checking a report is report.c's, the SVG map is
 * map.c's.  The tool does not link tessera: it reads files another process
 * wrote, maybe on another machine.
 *
 * A report file is JSON Lines, because processes append a line per report:
 * the tool takes the last report in it, or the last one of --pid N.
 * Exit status: 0 done; 2 bad usage or bad input (not JSON, not a report,
 * no report, unreadable file); 1 when the output could not be written.
 */
#if !defined(_GNU_SOURCE)
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* ------------------------------------------------------------------------
 * Naming frames and sites
 * ---------------------------------------------------------------------- */

/* The name of a frame for a person: function+0xoff (file:line), or
 * module+0xoffset without a function, or the bare address. */
static void frame_text(const frame_t *f, char *buf, size_t size) {
  const char *sym = f->function ? f->function : f->module;
  int n;
  if (sym == NULL) n = snprintf(buf, size, "%s", f->addr);
  else if (f->has_offset) n = snprintf(buf, size, "%s+0x%" PRIx64, sym, f->offset);
  else n = snprintf(buf, size, "%s", sym);
  if (f->function && f->file && n >= 0 && (size_t)n < size)
    snprintf(buf + n, size - (size_t)n, " (%s:%" PRIu64 ")", f->file, f->line);
}

/* The short name of a frame: the function, else module+offset, else the
 * address.  Stable across runs of the same binary (no ASLR in it), so the
 * diff matches sites with it. */
static void frame_key(const frame_t *f, char *buf, size_t size) {
  if (f->function) snprintf(buf, size, "%s", f->function);
  else if (f->module && f->has_offset) snprintf(buf, size, "%s+0x%" PRIx64, f->module, f->offset);
  else snprintf(buf, size, "%s", f->module ? f->module : f->addr);
}

/* The frames' short names joined with sep, up to max frames; malloc'ed. */
static char *site_key(const site_t *s, const char *sep, size_t max) {
  size_t cap = 64, n = 0;
  char *key = tool_calloc(cap, 1);
  for (size_t i = 0; i < s->nframes && i < max; i++) {
    char part[512];
    frame_key(&s->frames[i], part, sizeof part);
    size_t need_len = n + strlen(sep) + strlen(part) + 1;
    if (need_len > cap) {
      while (cap < need_len) cap *= 2;
      char *bigger = realloc(key, cap);
      if (bigger == NULL) tool_die("out of memory");
      key = bigger;
    }
    n += (size_t)sprintf(key + n, "%s%s", i ? sep : "", part);
  }
  return key;
}

/* "s" unless n is 1: "1 page", "2 pages". */
static const char *plural(uint64_t n) { return n == 1 ? "" : "s"; }

static double percent(uint64_t part, uint64_t whole) {
  return whole ? 100.0 * (double)part / (double)whole : 0.0;
}

/* ------------------------------------------------------------------------
 * summary, sites, classes, leaks, pins
 * ---------------------------------------------------------------------- */

/* A site's call stack, one frame a line, under its figures. */
static void print_frames(const frame_t *frames, size_t n) {
  for (size_t i = 0; i < n; i++) {
    char text[1024];
    frame_text(&frames[i], text, sizeof text);
    printf("       %s\n", text);
  }
  if (n == 0) printf("       (no call stack)\n");
}

static void print_site(size_t rank, const site_t *s) {
  const char *e = s->estimated ? "~" : "";
  int64_t waste = (int64_t)(s->bytes - s->requested);
  printf("#%-3zu bytes %s%" PRIu64 " (%s)  blocks %s%" PRIu64 "  requested %s%" PRIu64
         "  waste %s%" PRId64 "\n",
         rank, e, s->bytes, tool_bytes(s->bytes), e, s->blocks, e, s->requested, e, waste);
  print_frames(s->frames, s->nframes);
}

static void print_site_line(const site_t *s) {
  char *key = site_key(s, " < ", 4);
  const char *e = s->estimated ? "~" : "";
  char bytes[40], blocks[40];
  snprintf(bytes, sizeof bytes, "%s%s", e, tool_bytes(s->bytes));
  snprintf(blocks, sizeof blocks, "%s%" PRIu64, e, s->blocks);
  printf("  %11s %10s blocks  %s\n", bytes, blocks, key[0] ? key : "(no call stack)");
  free(key);
}

static const char *sites_count(const report_t *r) {
  char *buf = tool_scratch();
  if (r->sites_total >= 0) snprintf(buf, 64, "%zu of %" PRId64, r->nsites, r->sites_total);
  else snprintf(buf, 64, "%zu", r->nsites);
  return buf;
}

/* One character per occupancy bucket: blank when no page is in it, else
 * one of nine shades, '@' for the fullest bucket. */
static void histogram(const uint64_t occ[10], char out[11]) {
  static const char shades[] = " .:-=+*#%@";
  uint64_t max = 0;
  for (int i = 0; i < 10; i++) max = occ[i] > max ? occ[i] : max;
  for (int i = 0; i < 10; i++)
    out[i] = occ[i] == 0 ? ' ' : shades[1 + (int)((double)occ[i] * 8 / (double)max)];
  out[10] = 0;
}

static const char *block_label(uint64_t block_size) {
  char *buf = tool_scratch();
  if (block_size == 0) snprintf(buf, 64, "large");
  else snprintf(buf, 64, "%" PRIu64, block_size);
  return buf;
}

static void print_classes(const report_t *r, bool full) {
  if (full)
    printf("%8s %6s %10s %15s %6s %10s %6s  %s\n", "block", "pages", "committed", "live/total",
           "util", "requested", "waste", "occupancy 0..100%");
  else
    printf("  %8s %6s %10s %15s %6s %6s\n", "block", "pages", "committed", "live/total", "util",
           "waste");
  for (size_t i = 0; i < r->nclasses; i++) {
    const class_t *c = &r->classes[i];
    char lt[48], hist[11];
    snprintf(lt, sizeof lt, "%" PRIu64 "/%" PRIu64, c->blocks_live, c->blocks_total);
    double waste = c->bytes_live > c->bytes_requested
                       ? percent(c->bytes_live - c->bytes_requested, c->bytes_live)
                       : 0.0;
    histogram(c->occupancy, hist);
    if (full)
      printf("%8s %6" PRIu64 " %10s %15s %5.1f%% %10s %5.1f%%  [%s]\n",
             block_label(c->block_size), c->pages, tool_bytes(c->committed), lt,
             100 * c->utilisation, tool_bytes(c->bytes_requested), waste, hist);
    else
      printf("  %8s %6" PRIu64 " %10s %15s %5.1f%% %5.1f%%\n", block_label(c->block_size),
             c->pages, tool_bytes(c->committed), lt, 100 * c->utilisation, waste);
  }
  if (r->nclasses == 0) printf("  (no class has pages)\n");
}

/* The leak section: by allocating function, then (full) by call stack;
 * the summary shows the first ten functions only. */
static void print_leaks(const report_t *r, bool full) {
  if (!r->has_leaks) {
    printf("no leak section (the report was not written at exit)\n");
    return;
  }
  printf("leaks: %" PRIu64 " blocks, %" PRIu64 " bytes (%s); %" PRIu64
         " expected blocks left out\n",
         r->leak_blocks, r->leak_bytes, tool_bytes(r->leak_bytes), r->leak_expected);
  if (r->nleak_functions > 0)
    printf("%sby allocating function\n", full ? "\n" : "");
  size_t shown = full || r->nleak_functions < 10 ? r->nleak_functions : 10;
  for (size_t i = 0; i < shown; i++) {
    const leak_fn_t *f = &r->leak_functions[i];
    printf("  %12" PRIu64 " B %10s %9" PRIu64 " blocks  requested %" PRIu64 "  %s\n", f->bytes,
           tool_bytes(f->bytes), f->blocks, f->requested, f->function);
  }
  if (shown < r->nleak_functions)
    printf("  (%zu more: tessera-report leaks)\n", r->nleak_functions - shown);
  if (!full) return;
  if (r->nleak_sites > 0) printf("\nby call stack\n");
  for (size_t i = 0; i < r->nleak_sites; i++) print_site(i + 1, &r->leak_sites[i]);
}

/* r's count of errors of kind; NULL when r does not list the kind. */
static const error_kind_t *error_kind(const report_t *r, const char *kind) {
  for (size_t i = 0; i < r->nerror_kinds; i++)
    if (strcmp(r->error_kinds[i].kind, kind) == 0) return &r->error_kinds[i];
  return NULL;
}

/* After the count of errors, the kinds that have any: " (double_free 1,
 * overflow 2)"; nothing when there are none or the report predates them. */
static void print_error_kinds(const report_t *r) {
  const char *sep = " (";
  for (size_t i = 0; i < r->nerror_kinds; i++) {
    if (r->error_kinds[i].count == 0) continue;
    printf("%s%s %" PRIu64, sep, r->error_kinds[i].kind, r->error_kinds[i].count);
    sep = ", ";
  }
  if (sep[0] == ',') printf(")");
}

static void cmd_summary(const report_t *r, size_t top) {
  const stats_t *s = &r->stats;
  const char *est = s->requested_exact ? "" : "  (estimates)";
  printf("%s (pid %" PRId64 ")\n", r->program, r->pid);
  printf("  reason %s, uptime %s, tessera %s, track %s", r->reason, tool_uptime(r->uptime_ms),
         r->version, r->track);
  if (strcmp(r->track, "sample") == 0) printf(" (one sample per %s)", tool_bytes(r->sample_bytes));
  printf("\n\ntotals\n");
  printf("  requested    %10s  %" PRIu64 " B%s\n", tool_bytes(s->requested), s->requested, est);
  printf("  allocated    %10s  %" PRIu64 " B\n", tool_bytes(s->allocated), s->allocated);
  printf("  committed    %10s  %" PRIu64 " B\n", tool_bytes(s->committed), s->committed);
  printf("  reserved     %10s  %" PRIu64 " B\n", tool_bytes(s->reserved), s->reserved);
  printf("  metadata     %10s  %" PRIu64 " B\n", tool_bytes(s->metadata), s->metadata);
  if (r->has_pins)
    printf("  sparse pages %10s  %" PRIu64 " B in %" PRIu64 " page%s, %s of it live "
           "(tessera-report pins)\n",
           tool_bytes(r->pin_bytes), r->pin_bytes, r->pin_pages, plural(r->pin_pages),
           tool_bytes(r->pin_live));
  printf("  live blocks  %10" PRIu64 "  (%" PRIu64 " large, %" PRIu64 " tracked)\n",
         s->live_blocks, s->large_live, s->tracked_blocks);
  printf("  arenas %" PRIu64 ", allocations %" PRIu64 ", frees %" PRIu64 ", purges %" PRIu64
         ", errors %" PRIu64,
         s->arenas, s->allocations, s->frees, s->purges, s->errors);
  print_error_kinds(r);
  printf("\n");
  if (s->records_lost != 0 || s->stacks_lost != 0)
    printf("  lost for want of memory: %" PRIu64 " record%s, %" PRIu64 " stack%s (blocks without a "
           "record, or naming site 0)\n",
           s->records_lost, plural(s->records_lost), s->stacks_lost, plural(s->stacks_lost));
  printf("\nratios\n");
  printf("  internal fragmentation %7.3f   allocated / requested%s\n",
         s->internal_fragmentation, est);
  printf("  external fragmentation %7.3f   committed / allocated\n", s->external_fragmentation);
  printf("  metadata overhead      %6.1f%%   metadata / allocated\n", 100 * s->metadata_overhead);
  printf("  efficiency             %6.1f%%   requested / committed%s\n", 100 * s->efficiency,
         est);
  printf("\ntop sites (%s)\n", sites_count(r));
  for (size_t i = 0; i < r->nsites && i < top; i++) print_site_line(&r->sites[i]);
  if (r->nsites == 0) printf("  (none: the report has no call stacks at track %s)\n", r->track);
  printf("\nclasses\n");
  print_classes(r, false);
  if (r->has_leaks) {
    printf("\n");
    print_leaks(r, false);
  }
  printf("\naddress space\n");
  printf("  reserved %s, committed %s, free %s (tessera reserved %s)\n", tool_bytes(r->as_reserved),
         tool_bytes(r->as_committed), tool_bytes(r->as_free), tool_bytes(r->as_tessera_reserved));
  printf("  largest free range %s at %s\n", tool_bytes(r->as_largest_free), r->as_largest_free_at);
}

static void cmd_sites(const report_t *r, size_t top) {
  printf("%s (pid %" PRId64 "): sites %s, most bytes first", r->program, r->pid, sites_count(r));
  printf("%s\n", strcmp(r->track, "sample") == 0 ? " (~: estimated from samples)" : "");
  for (size_t i = 0; i < r->nsites && i < top; i++) print_site(i + 1, &r->sites[i]);
  if (r->nsites == 0) printf("(none: the report has no call stacks at track %s)\n", r->track);
}

static void cmd_classes(const report_t *r) {
  printf("%s (pid %" PRId64 "): %zu classes\n", r->program, r->pid, r->nclasses);
  print_classes(r, true);
}

/* "850 ns", "35.2 us", "12.3 ms", "4.1 s", as the text report writes them. */
static const char *duration(uint64_t ns) {
  static const char *const units[] = { "ns", "us", "ms", "s" };
  double v = (double)ns;
  size_t u = 0;
  while (v >= 1000 && u < 3) {
    v /= 1000;
    u++;
  }
  char *buf = tool_scratch();
  snprintf(buf, 64, "%.*f %s", u == 0 ? 0 : 1, v, units[u]);
  return buf;
}

/* Meshing's line, as the text report has it (docs/report.md, "Meshing"):
 * the state (unsupported with why, where the report says), and unless it
 * is off or unsupported and never meshed, what it holds now and did since
 * start. */
static void print_mesh(const mesh_t *m) {
  const char *state = m->state;
  if (strcmp(state, "unsupported") == 0) state = "unsupported by this OS";
  else if (strcmp(state, "paused") == 0)
    state = "paused (tessera's SIGSEGV handler is not in front, the mapping budget is spent, or the "
            "program forbade itself system calls)";
  printf("  meshing: %s", state);
  if (m->why != NULL) printf(": %s", m->why);
  if (m->meshes == 0 && (strcmp(m->state, "off") == 0 || strcmp(m->state, "unsupported") == 0)) {
    printf("\n");
    return;
  }
  /* up to eight OS pages share one physical page: n of them save n - 1 */
  printf("; %" PRIu64 " OS pages share physical pages now, %" PRIu64 " B (%s) saved; %"
         PRIu64 " meshed since start, %" PRIu64 " taken apart, in %" PRIu64 " pass%s, %s in all, "
         "longest page pause %s\n",
         m->meshed_pages, m->saved, tool_bytes(m->saved), m->meshes, m->unmeshes, m->passes,
         m->passes == 1 ? "" : "es",
         duration(m->time_ns), duration(m->pause_max_ns));
}

/* The pins section: the sparse pages' exact totals, what meshing pairs of
 * them could give back and what meshing does, then the sites by the bytes
 * of those pages their live blocks hold (docs/report.md, "Who pins the
 * pages").  Site 0 is the blocks without a record. */
static void cmd_pins(const report_t *r, size_t top) {
  printf("%s (pid %" PRId64 "): sparse pages (at most half their blocks live)\n", r->program,
         r->pid);
  if (!r->has_pins) {
    printf("this report has no pins section (it was written by a tessera from before the "
           "section, or one that could not gather it)\n");
    return;
  }
  uint64_t idle = r->pin_bytes > r->pin_live ? r->pin_bytes - r->pin_live : 0;
  printf("  %" PRIu64 " page%s, %" PRIu64 " B (%s), holding %" PRIu64 " B (%s) of live blocks; %"
         PRIu64 " B (%s) free\n",
         r->pin_pages, plural(r->pin_pages), r->pin_bytes, tool_bytes(r->pin_bytes), r->pin_live,
         tool_bytes(r->pin_live), idle, tool_bytes(idle));
  if (r->has_meshable)
    printf("  %" PRIu64 " B (%s) meshable (pairs whose live blocks miss each other)\n", r->pin_meshable,
           tool_bytes(r->pin_meshable));
  if (r->has_mesh) print_mesh(&r->mesh);
  if (r->npins == 0) {
    printf("(no site: no page is that sparse)\n");
    return;
  }
  const char *note = strcmp(r->track, "sample") == 0 ? " (~: estimated from samples)" : "";
  printf("held by %" PRIu64 " site%s (%zu listed), most pinned bytes first%s\n", r->pins_total,
         plural(r->pins_total), r->npins, note);
  printf("(each live block holds an equal share of its page; idle: the free bytes of the "
         "shares)\n");
  size_t shown = r->npins < top ? r->npins : top;
  for (size_t i = 0; i < shown; i++) {
    const pin_t *p = &r->pins[i];
    const char *e = p->estimated ? "~" : "";
    printf("#%-3zu pinned %s%" PRIu64 " (%s)  idle %s%" PRIu64 " (%s)  blocks %s%" PRIu64 "\n",
           i + 1, e, p->pinned, tool_bytes(p->pinned), e, p->idle, tool_bytes(p->idle), e,
           p->blocks);
    if (p->id == 0) printf("       (blocks without a record)\n");
    else print_frames(p->frames, p->nframes);
  }
  if (shown < r->npins)
    printf("(%zu more: tessera-report pins -n %zu)\n", r->npins - shown, r->npins);
}


/* ------------------------------------------------------------------------
 * diff
 *
 * Sites are matched by site_key, the frames' names, because addresses move
 * between processes (ASLR); several sites with one key (one function, two
 * call lines) are summed.  Classes are matched by block size.  A report
 * lists only its top sites, so a site "new" in NEW may merely have been
 * below OLD's cut: the header says when a list was cut.
 * ---------------------------------------------------------------------- */

typedef struct change_s {
  char *key;                     /* sites: the frames' names; classes: NULL */
  uint64_t block_size;           /* classes */
  uint64_t old_bytes, old_blocks, new_bytes, new_blocks;
  bool in_old, in_new, estimated;
} change_t;

typedef struct changes_s {
  change_t *v;
  size_t n, cap;
} changes_t;

/* The entry for key (or block_size when key is NULL); takes key. */
static change_t *change_find(changes_t *c, char *key, uint64_t block_size) {
  for (size_t i = 0; i < c->n; i++) {
    change_t *e = &c->v[i];
    if (key ? strcmp(e->key, key) == 0 : e->block_size == block_size) {
      free(key);
      return e;
    }
  }
  if (c->n == c->cap) {
    c->cap = c->cap ? c->cap * 2 : 16;
    change_t *bigger = realloc(c->v, c->cap * sizeof *c->v);
    if (bigger == NULL) tool_die("out of memory");
    c->v = bigger;
  }
  change_t *e = &c->v[c->n++];
  memset(e, 0, sizeof *e);
  e->key = key;
  e->block_size = block_size;
  return e;
}

static int64_t delta(uint64_t before, uint64_t after) { return (int64_t)(after - before); }

/* Most growth first: bytes, then blocks, then name, so output is stable. */
static int change_order(const void *a, const void *b) {
  const change_t *x = a, *y = b;
  int64_t dx = delta(x->old_bytes, x->new_bytes), dy = delta(y->old_bytes, y->new_bytes);
  if (dx != dy) return dx > dy ? -1 : 1;
  dx = delta(x->old_blocks, x->new_blocks);
  dy = delta(y->old_blocks, y->new_blocks);
  if (dx != dy) return dx > dy ? -1 : 1;
  if (x->key && y->key) return strcmp(x->key, y->key);
  return x->block_size < y->block_size ? -1 : x->block_size > y->block_size;
}

static void diff_print(changes_t *c, const char *what) {
  qsort(c->v, c->n, sizeof *c->v, change_order);
  size_t shown = 0;
  printf("\n%s that changed, most growth first\n", what);
  for (size_t i = 0; i < c->n; i++) {
    const change_t *e = &c->v[i];
    int64_t db = delta(e->old_bytes, e->new_bytes), dn = delta(e->old_blocks, e->new_blocks);
    if (db == 0 && dn == 0) continue;
    const char *t = e->estimated ? "~" : "";
    char state[96];
    if (!e->in_old) snprintf(state, sizeof state, "new");
    else if (!e->in_new) snprintf(state, sizeof state, "gone");
    else snprintf(state, sizeof state, "now %" PRIu64 " B in %" PRIu64 " blocks", e->new_bytes,
                  e->new_blocks);
    printf("  %s%+" PRId64 " B (%s)  %s%+" PRId64 " blocks  %s  ", t, db, tool_bytes_signed(db), t,
           dn, state);
    if (e->key) printf("%s\n", e->key[0] ? e->key : "(no call stack)");
    else if (e->block_size) printf("block %" PRIu64 "\n", e->block_size);
    else printf("large blocks\n");
    shown++;
  }
  if (shown == 0) printf("  (none)\n");
}

static void diff_sites(changes_t *c, const report_t *r, bool is_new) {
  for (size_t i = 0; i < r->nsites; i++) {
    const site_t *s = &r->sites[i];
    change_t *e = change_find(c, site_key(s, ";", SIZE_MAX), 0);
    e->estimated |= s->estimated;
    if (is_new) {
      e->in_new = true;
      e->new_bytes += s->bytes;
      e->new_blocks += s->blocks;
    } else {
      e->in_old = true;
      e->old_bytes += s->bytes;
      e->old_blocks += s->blocks;
    }
  }
}

static void diff_classes(changes_t *c, const report_t *r, bool is_new) {
  for (size_t i = 0; i < r->nclasses; i++) {
    const class_t *k = &r->classes[i];
    change_t *e = change_find(c, NULL, k->block_size);
    if (is_new) {
      e->in_new = true;
      e->new_bytes += k->bytes_live;
      e->new_blocks += k->blocks_live;
    } else {
      e->in_old = true;
      e->old_bytes += k->bytes_live;
      e->old_blocks += k->blocks_live;
    }
  }
}

static void changes_free(changes_t *c) {
  for (size_t i = 0; i < c->n; i++) free(c->v[i].key);
  free(c->v);
}

/* A row of the totals; a name longer than its column takes room from the
 * first number's, so that the others stay aligned. */
static void diff_total(const char *name, bool bytes, uint64_t before, uint64_t after) {
  int64_t d = delta(before, after);
  char change[32] = "0";
  if (d != 0) snprintf(change, sizeof change, "%+" PRId64, d);
  int over = strlen(name) > 14 ? (int)strlen(name) - 14 : 0;
  printf("  %-14s %*" PRIu64 " %16" PRIu64 " %16s", name, 16 - over, before, after, change);
  if (bytes && d != 0) printf("  (%s)", tool_bytes_signed(d));
  printf("\n");
}

/* Under the errors row, a row for each kind either report has any of:
 * a's kinds in its order, then those only b lists. */
static void diff_error_kinds(const report_t *a, const report_t *b) {
  const report_t *both[2] = { a, b };
  for (int r = 0; r < 2; r++)
    for (size_t i = 0; i < both[r]->nerror_kinds; i++) {
      const char *kind = both[r]->error_kinds[i].kind;
      const error_kind_t *in_a = error_kind(a, kind), *in_b = error_kind(b, kind);
      uint64_t before = in_a ? in_a->count : 0, after = in_b ? in_b->count : 0;
      if ((before == 0 && after == 0) || (r == 1 && in_a != NULL)) continue;
      char name[64];
      snprintf(name, sizeof name, "  %s", kind);
      diff_total(name, false, before, after);
    }
}

static void cmd_diff(const report_t *a, const report_t *b) {
  printf("diff: %s (pid %" PRId64 ", %s after %s) -> %s (pid %" PRId64 ", %s after %s)\n", a->name,
         a->pid, a->reason, tool_uptime(a->uptime_ms), b->name, b->pid, b->reason,
         tool_uptime(b->uptime_ms));
  if (strcmp(a->program, b->program) != 0)
    printf("note: the programs differ (%s, %s)\n", a->program, b->program);
  printf("\n%-16s %16s %16s %16s\n", "totals", "old", "new", "change");
#define X(name, bytes) diff_total(#name, bytes, a->stats.name, b->stats.name);
  STAT_COUNTS(X)
#undef X
  diff_error_kinds(a, b);
  if (a->stats.records_lost + b->stats.records_lost != 0)
    diff_total("records_lost", false, a->stats.records_lost, b->stats.records_lost);
  if (a->stats.stacks_lost + b->stats.stacks_lost != 0)
    diff_total("stacks_lost", false, a->stats.stacks_lost, b->stats.stacks_lost);
  const report_t *cut[2] = { a, b };
  for (int i = 0; i < 2; i++)
    if (cut[i]->sites_total > (int64_t)cut[i]->nsites)
      printf("note: %s lists %zu of its %" PRId64 " sites; changes below the cut are not seen\n",
             cut[i]->name, cut[i]->nsites, cut[i]->sites_total);
  changes_t sites = { 0 }, classes = { 0 };
  diff_sites(&sites, a, false);
  diff_sites(&sites, b, true);
  diff_print(&sites, "sites");
  diff_classes(&classes, a, false);
  diff_classes(&classes, b, true);
  diff_print(&classes, "classes");
  changes_free(&sites);
  changes_free(&classes);
}

/* ------------------------------------------------------------------------
 * The command line
 * ---------------------------------------------------------------------- */

static void usage(FILE *out) {
  fputs("usage: tessera-report [COMMAND] [OPTIONS] FILE...\n"
        "\n"
        "Shows the JSON reports tessera writes (TESSERA_REPORT_FORMAT=json).  A file\n"
        "may hold many reports, one per line: the last one is used.  FILE - reads\n"
        "standard input.\n"
        "\n"
        "commands:\n"
        "  summary FILE          totals, ratios, top sites, classes, leaks, address\n"
        "                        space (the default command)\n"
        "  sites [-n N] FILE     the N sites with the most bytes, with call stacks\n"
        "                        (default 20)\n"
        "  classes FILE          one row per size class, with an occupancy histogram\n"
        "  leaks FILE            the blocks still live at exit, by site\n"
        "  pins [-n N] FILE      who holds the sparse pages (at most half their\n"
        "                        blocks live): totals, meshing, then N sites\n"
        "                        (default 20)\n"
        "  diff OLD NEW          what grew or shrank between two reports\n"
        "  map [-o OUT] FILE     draw the arenas and the address space as SVG\n"
        "                        (default OUT: tessera-map.svg; - for stdout)\n"
        "\n"
        "options:\n"
        "  --pid N               use the last report of process N in each file\n"
        "  -n N                  sites to show (sites, pins: 20, summary: 10)\n"
        "  -o OUT                where map writes the picture\n"
        "  -h, --help            this text\n"
        "\n"
        "exit status: 0 done, 1 the output could not be written, 2 bad usage or\n"
        "a file that is missing, not JSON, not a report, or holds no report.\n",
        out);
}

__attribute__((noreturn, format(printf, 1, 2))) static void usage_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("tessera-report: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\n(tessera-report --help shows the usage)\n", stderr);
  va_end(ap);
  exit(2);
}

static int64_t parse_int(const char *opt, const char *s, int64_t min) {
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno != 0 || end == s || *end != 0 || v < min)
    usage_error("%s wants an integer%s, not \"%s\"", opt, min == 0 ? " >= 0" : "", s);
  return v;
}

/* In the order of the names in main(). */
typedef enum command_e {
  CMD_SUMMARY, CMD_SITES, CMD_CLASSES, CMD_LEAKS, CMD_PINS, CMD_DIFF, CMD_MAP
} command_t;

static int write_map(const report_t *r, const char *path) {
  bool to_stdout = strcmp(path, "-") == 0;
  FILE *out = to_stdout ? stdout : fopen(path, "w");
  if (out == NULL) {
    fprintf(stderr, "tessera-report: %s: %s\n", path, strerror(errno));
    return 1;
  }
  bool ok = tool_map_svg(r, out);
  if (!to_stdout) ok = fclose(out) == 0 && ok;
  if (!ok) {
    fprintf(stderr, "tessera-report: writing %s failed: %s\n", path, strerror(errno));
    return 1;
  }
  if (!to_stdout) {
    size_t slots = 0;
    for (size_t i = 0; i < r->narenas; i++) slots += r->arenas[i].nslots;
    printf("wrote %s: %zu arenas, %zu slots, %zu regions\n", path, r->narenas, slots, r->nregions);
  }
  return 0;
}

int main(int argc, char **argv) {
  static const char *const names[] = { "summary", "sites", "classes", "leaks",
                                       "pins", "diff", "map" };
  command_t cmd = CMD_SUMMARY;
  int i = 1;
  for (size_t k = 0; argc > 1 && k < sizeof names / sizeof *names; k++)
    if (strcmp(argv[1], names[k]) == 0) {
      cmd = (command_t)k;
      i = 2;
    }
  int64_t top = -1, pid = 0;
  bool by_pid = false, only_files = false;
  const char *out = NULL, *files[2];
  size_t nfiles = 0;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (!only_files && strcmp(a, "--") == 0) {
      only_files = true;
    } else if (!only_files && (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)) {
      usage(stdout);
      return 0;
    } else if (!only_files && a[0] == '-' && a[1] != 0) {
      bool is_n = strcmp(a, "-n") == 0, is_o = strcmp(a, "-o") == 0;
      if (!is_n && !is_o && strcmp(a, "--pid") != 0) usage_error("unknown option %s", a);
      if (i + 1 >= argc) usage_error("%s needs a value", a);
      const char *v = argv[++i];
      if (is_n && cmd != CMD_SITES && cmd != CMD_PINS && cmd != CMD_SUMMARY)
        usage_error("-n applies to sites, pins and summary");
      if (is_o && cmd != CMD_MAP) usage_error("-o applies to map");
      if (is_n) top = parse_int(a, v, 0);
      else if (is_o) out = v;
      else {
        pid = parse_int(a, v, INT64_MIN);
        by_pid = true;
      }
    } else {
      if (nfiles == (cmd == CMD_DIFF ? 2u : 1u))
        usage_error("%s takes %s", names[cmd], cmd == CMD_DIFF ? "two files" : "one file");
      files[nfiles++] = a;
    }
  }
  if (nfiles < (cmd == CMD_DIFF ? 2u : 1u))
    usage_error("%s needs %s", names[cmd], cmd == CMD_DIFF ? "two files, OLD and NEW" : "a FILE");

  report_t r, old;
  tool_load(files[0], by_pid, pid, &r);
  int status = 0;
  switch (cmd) {
  case CMD_SUMMARY: cmd_summary(&r, top < 0 ? 10 : (size_t)top); break;
  case CMD_SITES: cmd_sites(&r, top < 0 ? 20 : (size_t)top); break;
  case CMD_CLASSES: cmd_classes(&r); break;
  case CMD_LEAKS: print_leaks(&r, true); break;
  case CMD_PINS: cmd_pins(&r, top < 0 ? 20 : (size_t)top); break;
  case CMD_MAP: status = write_map(&r, out ? out : "tessera-map.svg"); break;
  case CMD_DIFF:
    old = r;
    tool_load(files[1], by_pid, pid, &r);
    cmd_diff(&old, &r);
    tool_report_free(&old);
    break;
  }
  tool_report_free(&r);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "tessera-report: writing the output failed: %s\n", strerror(errno));
    return 1;
  }
  return status;
}
