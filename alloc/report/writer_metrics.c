/* writer_metrics.c: the report in OpenMetrics text, for a /metrics
 * endpoint: the totals, the ratios, each size class, at most the 20
 * biggest sites, the sparse pages with meshing, and the 20 sites that pin
 * most of them.  There is no diff in this format (tsr_report_diff
 * refuses it).
 *
 * Owns: the metric families, their names and help.  The buffer, numbers,
 * frame names and dispatch are writer.c's.
 */
#include "writer.h"

/* OpenMetrics label values: escape \, " and newline. */
static void put_label(tsri_out_t *o, const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') tsri_put(o, "\\", 1);
    if (*s == '\n') { tsri_puts(o, "\\n"); continue; }
    tsri_put(o, s, 1);
  }
}

/* A family of one sample: its TYPE and HELP lines, and the sample's name
 * (with _total for a counter) up to its value. */
static void om_head(tsri_out_t *o, const char *name, const char *type, const char *help) {
  tsri_puts(o, "# TYPE tessera_"); tsri_puts(o, name); tsri_puts(o, " "); tsri_puts(o, type);
  tsri_puts(o, "\n# HELP tessera_"); tsri_puts(o, name); tsri_puts(o, " "); tsri_puts(o, help);
  tsri_puts(o, "\ntessera_"); tsri_puts(o, name);
  if (strcmp(type, "counter") == 0) tsri_puts(o, "_total");
  tsri_puts(o, " ");
}

static void om_metric(tsri_out_t *o, const char *name, const char *type, const char *help, uint64_t v) {
  om_head(o, name, type, help);
  tsri_put_u64(o, v); tsri_puts(o, "\n");
}

static void om_ratio(tsri_out_t *o, const char *name, const char *help, double v) {
  tsri_puts(o, "# TYPE tessera_"); tsri_puts(o, name); tsri_puts(o, " gauge\n# HELP tessera_");
  tsri_puts(o, name); tsri_puts(o, " "); tsri_puts(o, help);
  tsri_puts(o, "\ntessera_"); tsri_puts(o, name); tsri_puts(o, " "); tsri_put_fixed(o, v, 6); tsri_puts(o, "\n");
}

/* A counter or gauge of seconds, from nanoseconds: exact, nine places. */
static void om_seconds(tsri_out_t *o, const char *name, const char *type, const char *help, uint64_t ns) {
  om_head(o, name, type, help);
  tsri_put_u64(o, ns / 1000000000);
  char frac[9];
  uint64_t f = ns % 1000000000;
  for (int i = 8; i >= 0; i--) { frac[i] = (char)('0' + f % 10); f /= 10; }
  tsri_puts(o, "."); tsri_put(o, frac, sizeof frac); tsri_puts(o, "\n");
}

/* Meshing (mesh.c): its state as a stateset, one sample per state, then
 * what it holds now and did since start. */
static void om_mesh(tsri_out_t *o, const tsr_pins_t *m) {
  tsri_puts(o, "# TYPE tessera_mesh_state stateset\n# HELP tessera_mesh_state Meshing (TESSERA_MESH): off, on, "
               "unsupported by the OS, or paused (SIGSEGV handler replaced, or mapping budget spent).\n");
  for (uint32_t i = TSR_MESH_OFF; i <= TSR_MESH_PAUSED; i++) {
    tsri_puts(o, "tessera_mesh_state{tessera_mesh_state=\""); tsri_puts(o, tsri_mesh_state_names[i]);
    tsri_puts(o, m->mesh_state == i ? "\"} 1\n" : "\"} 0\n");
  }
  om_metric(o, "meshed_pages", "gauge", "OS pages that share their physical page with another now.", m->meshed_pages);
  om_metric(o, "mesh_saved_bytes", "gauge", "Bytes of physical memory that sharing saves now.", m->mesh_saved);
  om_metric(o, "meshes", "counter", "OS pages put onto the physical page of others (up to eight share one).", m->meshes);
  om_metric(o, "unmeshes", "counter", "Meshed OS pages taken off a shared page again (their blocks there all freed).", m->unmeshes);
  om_metric(o, "mesh_passes", "counter", "Meshing passes over a heap.", m->mesh_passes);
  om_seconds(o, "mesh_seconds", "counter", "Time spent in meshing passes.", m->mesh_ns);
  om_seconds(o, "mesh_pause_max_seconds", "gauge", "Longest a page stayed read-only while meshing copied it.",
             m->mesh_pause_max_ns);
}

static void om_class_family(tsri_out_t *o, tsri_report_t *r, const char *name, const char *help, int which) {
  tsri_puts(o, "# TYPE tessera_class_"); tsri_puts(o, name); tsri_puts(o, " gauge\n# HELP tessera_class_");
  tsri_puts(o, name); tsri_puts(o, " "); tsri_puts(o, help); tsri_puts(o, "\n");
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    const tsr_class_stats_t *k = &r->classes[c];
    if (k->pages == 0) continue;
    tsri_puts(o, "tessera_class_"); tsri_puts(o, name); tsri_puts(o, "{size=\"");
    if (c == TSR_CLASS_COUNT) tsri_puts(o, "large");
    else tsri_put_u64(o, k->block_size);
    tsri_puts(o, "\"} ");
    if (which == 0) tsri_put_u64(o, k->bytes_live);
    else if (which == 1) tsri_put_u64(o, k->bytes_requested);
    else if (which == 2) tsri_put_u64(o, k->committed);
    else tsri_put_fixed(o, k->utilisation, 6);
    tsri_puts(o, "\n");
  }
}

/* One sample of a per-site family: the stack id and its innermost
 * function (or module) as labels. */
static void om_site_sample(tsri_out_t *o, const char *family, uint32_t id, uint64_t value) {
  void *const *frames;
  size_t depth = id ? tsri_stack_frames(id, &frames) : 0;
  tsri_puts(o, family);
  tsri_puts(o, "{site=\"");
  tsri_put_u64(o, id);
  tsri_puts(o, "\",function=\"");
  tsri_os_symbol_t sym;
  char buf[256];
  if (depth > 0 && tsri_os_symbolize(frames[0], &sym) == 0)
    put_label(o, sym.function[0] ? tsri_function_name(&sym, buf) : tsri_base_name(sym.module));
  tsri_puts(o, "\"} ");
  tsri_put_u64(o, value);
  tsri_puts(o, "\n");
}

void tsri_write_openmetrics(tsri_out_t *o, tsri_report_t *r) {
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
  om_metric(o, "errors", "counter", "Errors reported, of every kind.", s->errors);
  tsri_puts(o, "# TYPE tessera_errors_by_kind counter\n# HELP tessera_errors_by_kind Errors reported, by kind "
               "(bad_free, double_free, overflow, ...).\n");
  for (size_t k = 0; k < TSR_ERROR_KINDS; k++) {
    tsri_puts(o, "tessera_errors_by_kind_total{kind=\"");
    tsri_puts(o, tsri_error_kind_names[k]);
    tsri_puts(o, "\"} ");
    tsri_put_u64(o, s->errors_by_kind[k]); tsri_puts(o, "\n");
  }
  om_metric(o, "records_lost", "counter", "Blocks left without a record for want of memory.", s->records_lost);
  om_metric(o, "stacks_lost", "counter", "Call stacks not stored for want of memory or room.", s->stacks_lost);
  tsri_puts(o, "# TYPE tessera_os_calls counter\n# HELP tessera_os_calls Calls to the OS memory functions.\n");
  const char *calls[] = { "reserve", "commit", "decommit", "reset", "release" };
  uint64_t counts[] = { s->os_reserves, s->os_commits, s->os_decommits, s->os_resets, s->os_releases };
  for (size_t i = 0; i < 5; i++) {
    tsri_puts(o, "tessera_os_calls_total{call=\""); tsri_puts(o, calls[i]); tsri_puts(o, "\"} ");
    tsri_put_u64(o, counts[i]); tsri_puts(o, "\n");
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
    size_t listed = tsri_sites_listed(r->sites);
    if (listed > 20) listed = 20;
    tsri_puts(o, "# TYPE tessera_site_live_bytes gauge\n# HELP tessera_site_live_bytes Live bytes of the biggest allocation sites.\n");
    for (size_t i = 0; i < listed; i++) {
      const tsri_site_t *site = &r->sites->sites[i];
      om_site_sample(o, "tessera_site_live_bytes", site->id, tsri_round_u64(site->bytes));
    }
  }
  if (r->pins != NULL) {
    om_metric(o, "sparse_pages", "gauge",
              "Pages of small blocks at most half used, which a live block keeps from the OS.", r->pins->pages);
    om_metric(o, "sparse_page_bytes", "gauge", "Bytes of those pages.", r->pins->bytes);
    om_metric(o, "sparse_page_live_bytes", "gauge", "Bytes of the live blocks in them.", r->pins->live);
    om_metric(o, "sparse_page_meshable_bytes", "gauge",
              "Bytes that meshing pairs of them (live blocks at different offsets) could give back.",
              r->pins->meshable);
    om_mesh(o, &r->pins->mesh);
    size_t listed = tsri_pins_listed(r->pins);
    if (listed > 20) listed = 20;
    tsri_puts(o, "# TYPE tessera_site_pinned_bytes gauge\n# HELP tessera_site_pinned_bytes Bytes of sparse pages the "
                 "live blocks of the biggest sites hold (site 0: blocks without a record).\n");
    for (size_t i = 0; i < listed; i++) {
      const tsri_pin_t *pin = &r->pins->pins[i];
      om_site_sample(o, "tessera_site_pinned_bytes", pin->id, tsri_round_u64(pin->pinned));
    }
  }
  tsri_puts(o, "# EOF\n");
}
