/* writer_json.c: the report in JSON, one line as docs/report-schema.json
 * gives it (the totals, classes, sites with their frames, who pins the
 * sparse pages and meshing, leaks at exit, the arena map and the address
 * space), and the diff of two snapshots
 * ("tessera-diff").
 *
 * Owns: the keys and their order, and string escapes.  The buffer,
 * numbers, frame names, leaks by function and dispatch are writer.c's.
 */
#include "writer.h"

static void put_json_str(tsri_out_t *o, const char *s) {
  tsri_puts(o, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') { tsri_put(o, "\\", 1); tsri_put(o, s, 1); }
    else if (c < 0x20) { tsri_puts(o, "\\u00"); tsri_put(o, &"0123456789abcdef"[c >> 4], 1); tsri_put(o, &"0123456789abcdef"[c & 15], 1); }
    else tsri_put(o, s, 1);
  }
  tsri_puts(o, "\"");
}

static void put_json_key(tsri_out_t *o, const char *key) {
  put_json_str(o, key);
  tsri_puts(o, ":");
}

static void json_u64(tsri_out_t *o, const char *key, uint64_t v, bool comma) {
  put_json_key(o, key);
  tsri_put_u64(o, v);
  if (comma) tsri_puts(o, ",");
}

static void json_ratio(tsri_out_t *o, const char *key, double v, bool comma) {
  put_json_key(o, key);
  tsri_put_fixed(o, v, 6);
  if (comma) tsri_puts(o, ",");
}

/* "frames":[...] of stack id, each frame with what symbolising finds. */
static void json_frames(tsri_out_t *o, uint32_t id) {
  put_json_key(o, "frames");
  tsri_puts(o, "[");
  void *const *frames;
  size_t depth = tsri_stack_frames(id, &frames);
  for (size_t f = 0; f < depth; f++) {
    if (f) tsri_puts(o, ",");
    tsri_puts(o, "{\"addr\":\"");
    tsri_put_hex(o, (uint64_t)(uintptr_t)frames[f]);
    tsri_puts(o, "\"");
    tsri_os_symbol_t sym;
    if (tsri_os_symbolize(frames[f], &sym) == 0) {
      if (sym.function[0]) {
        char buf[256];
        tsri_puts(o, ",");
        put_json_key(o, "function");
        put_json_str(o, tsri_function_name(&sym, buf));
        tsri_puts(o, ",");
        json_u64(o, "offset", sym.offset, false);
      }
      tsri_puts(o, ",");
      put_json_key(o, "module");
      put_json_str(o, sym.module);
      if (sym.file[0]) {
        tsri_puts(o, ",");
        put_json_key(o, "file");
        put_json_str(o, sym.file);
        tsri_puts(o, ",");
        json_u64(o, "line", sym.line, false);
      }
    }
    tsri_puts(o, "}");
  }
  tsri_puts(o, "]");
}

static void json_sites(tsri_out_t *o, const tsri_sites_t *s, size_t listed) {
  tsri_puts(o, "[");
  for (size_t i = 0; i < listed; i++) {
    const tsri_site_t *site = &s->sites[i];
    if (i) tsri_puts(o, ",");
    tsri_puts(o, "{");
    json_u64(o, "id", site->id, true);
    json_u64(o, "blocks", tsri_round_u64(site->blocks), true);
    json_u64(o, "bytes", tsri_round_u64(site->bytes), true);
    json_u64(o, "requested", tsri_round_u64(site->requested), true);
    put_json_key(o, "estimated");
    tsri_puts(o, site->estimated ? "true," : "false,");
    json_frames(o, site->id);
    tsri_puts(o, "}");
  }
  tsri_puts(o, "]");
}

/* "mesh": meshing's state and figures (mesh.c), without the C names'
 * mesh_ prefix; "why" after an unsupported state where the OS layer can
 * say what the OS lacks. */
static void json_mesh(tsri_out_t *o, const tsr_pins_t *m) {
  tsri_puts(o, "\"mesh\":{");
  put_json_key(o, "state");
  put_json_str(o, tsri_mesh_state_names[m->mesh_state]);
  tsri_puts(o, ",");
  const char *why = m->mesh_state == TSR_MESH_UNSUPPORTED ? tsri_os_share_why() : NULL;
  if (why != NULL) {
    put_json_key(o, "why");
    put_json_str(o, why);
    tsri_puts(o, ",");
  }
  json_u64(o, "meshed_pages", m->meshed_pages, true);
  json_u64(o, "saved", m->mesh_saved, true);
  json_u64(o, "meshes", m->meshes, true);
  json_u64(o, "unmeshes", m->unmeshes, true);
  json_u64(o, "passes", m->mesh_passes, true);
  json_u64(o, "time_ns", m->mesh_ns, true);
  json_u64(o, "pause_max_ns", m->mesh_pause_max_ns, false);
  tsri_puts(o, "},");
}

/* "pins": who holds the sparse pages (pins.c), and meshing. */
static void json_pins(tsri_out_t *o, const tsri_pins_t *p) {
  tsri_puts(o, "\"pins\":{");
  json_u64(o, "pages", p->pages, true);
  json_u64(o, "bytes", p->bytes, true);
  json_u64(o, "live", p->live, true);
  json_u64(o, "meshable", p->meshable, true);
  json_mesh(o, &p->mesh);
  tsri_puts(o, "\"sites\":[");
  size_t listed = tsri_pins_listed(p);
  for (size_t i = 0; i < listed; i++) {
    const tsri_pin_t *pin = &p->pins[i];
    if (i) tsri_puts(o, ",");
    tsri_puts(o, "{");
    json_u64(o, "id", pin->id, true);
    json_u64(o, "blocks", tsri_round_u64(pin->blocks), true);
    json_u64(o, "pinned", tsri_round_u64(pin->pinned), true);
    json_u64(o, "idle", tsri_round_u64(pin->idle), true);
    put_json_key(o, "estimated");
    tsri_puts(o, pin->estimated ? "true," : "false,");
    json_frames(o, pin->id);
    tsri_puts(o, "}");
  }
  tsri_puts(o, "],");
  json_u64(o, "sites_total", p->count, false);
  tsri_puts(o, "},");
}

typedef struct json_map_s {
  tsri_out_t *o;
  uint32_t arena;            /* arena being written, UINT32_MAX before the first */
  char slots[TSR_ARENA_SLOTS + 1];
  size_t slot_count;         /* slots of the arena (arenas may be smaller than the window) */
  size_t pages;
  tsr_map_entry_t page_list[TSR_ARENA_SLOTS];
} json_map_t;

static void json_map_arena_end(json_map_t *m) {
  if (m->arena == UINT32_MAX) return;
  tsri_out_t *o = m->o;
  tsri_puts(o, "\"slots\":\"");
  tsri_put(o, m->slots, m->slot_count);
  tsri_puts(o, "\",\"pages\":[");
  for (size_t i = 0; i < m->pages; i++) {
    const tsr_map_entry_t *e = &m->page_list[i];
    if (i) tsri_puts(o, ",");
    tsri_puts(o, "[");
    tsri_put_u64(o, e->slot); tsri_puts(o, ",");
    tsri_put_u64(o, e->slots); tsri_puts(o, ",");
    tsri_put_u64(o, e->cls); tsri_puts(o, ",");
    tsri_put_u64(o, e->block_size); tsri_puts(o, ",");
    tsri_put_u64(o, e->capacity); tsri_puts(o, ",");
    tsri_put_u64(o, e->live);
    tsri_puts(o, "]");
  }
  tsri_puts(o, "]}");
}

static int json_map_entry(const tsr_map_entry_t *e, void *arg) {
  json_map_t *m = arg;
  if (e->arena != m->arena) {
    json_map_arena_end(m);
    if (m->arena != UINT32_MAX) tsri_puts(m->o, ",");
    m->arena = e->arena;
    m->pages = 0;
    m->slot_count = 0;
    tsri_puts(m->o, "{\"base\":\"");
    tsri_put_hex(m->o, (uint64_t)((uintptr_t)e->start & ~(uintptr_t)TSR_ARENA_MASK));
    tsri_puts(m->o, "\",");
  }
  static const char state_char[] = { 'm', '.', 'd', 'u' };
  for (uint32_t s = e->slot; s < e->slot + e->slots && s < TSR_ARENA_SLOTS; s++) m->slots[s] = state_char[e->state];
  if (e->slot + e->slots > m->slot_count) m->slot_count = e->slot + e->slots < TSR_ARENA_SLOTS ? e->slot + e->slots : TSR_ARENA_SLOTS;
  if (e->state == TSR_SLOT_STATE_USED && e->capacity != 0) m->page_list[m->pages++] = *e;
  return 0;
}

typedef struct json_space_s {
  tsri_out_t *o;
  bool first;
} json_space_t;

static int json_region(const tsr_region_t *r, void *arg) {
  json_space_t *j = arg;
  tsri_out_t *o = j->o;
  if (!j->first) tsri_puts(o, ",");
  j->first = false;
  tsri_puts(o, "{\"start\":\"");
  tsri_put_hex(o, r->start);
  tsri_puts(o, "\",\"end\":\"");
  tsri_put_hex(o, r->end);
  tsri_puts(o, "\",\"state\":");
  tsri_puts(o, r->state == TSR_REGION_FREE ? "\"free\"" : r->state == TSR_REGION_RESERVED ? "\"reserved\"" : "\"committed\"");
  tsri_puts(o, ",\"prot\":\"");
  tsri_puts(o, (r->prot & TSR_PROT_READ) ? "r" : "-");
  tsri_puts(o, (r->prot & TSR_PROT_WRITE) ? "w" : "-");
  tsri_puts(o, (r->prot & TSR_PROT_EXEC) ? "x" : "-");
  tsri_puts(o, "\",\"tessera\":");
  tsri_puts(o, r->tessera ? "true" : "false");
  tsri_puts(o, ",\"holder\":");
  put_json_str(o, tsri_holder_names[r->holder < TSR_HOLDER_COUNT ? r->holder : TSR_HOLDER_OTHER]);
  tsri_puts(o, ",\"name\":");
  put_json_str(o, r->name);
  tsri_puts(o, "}");
  return 0;
}

/* What tsr_space_pieces adds to the address space: the probe, the cap,
 * the free pieces, the biggest free ranges, the holders, the refusals. */
static void json_pieces(tsri_out_t *o, const tsr_space_pieces_t *p) {
  static const uint64_t below[TSR_FREE_BUCKETS] = { 1u << 20, 4u << 20, 16u << 20, 64u << 20, 256u << 20, 0 };
  json_u64(o, "reservable", p->reservable, true);
  if (p->reserve_left != UINT64_MAX) json_u64(o, "reserve_left", p->reserve_left, true);
  json_u64(o, "free_ranges", p->free_ranges, true);
  tsri_puts(o, "\"pieces\":[");
  for (size_t b = 0; b < TSR_FREE_BUCKETS; b++) {
    tsri_puts(o, b ? ",{" : "{");
    json_u64(o, "below", below[b], true);   /* 0: no bound */
    json_u64(o, "count", p->pieces[b], true);
    json_u64(o, "bytes", p->pieces_bytes[b], false);
    tsri_puts(o, "}");
  }
  tsri_puts(o, "],\"largest\":[");
  for (size_t i = 0; i < TSR_LARGEST_LISTED && p->largest[i] != 0; i++) {
    tsri_puts(o, i ? ",{\"at\":\"" : "{\"at\":\"");
    tsri_put_hex(o, p->largest_at[i]);
    tsri_puts(o, "\",");
    json_u64(o, "bytes", p->largest[i], false);
    tsri_puts(o, "}");
  }
  tsri_puts(o, "],\"held\":{");
  for (size_t h = 1; h < TSR_HOLDER_COUNT; h++) {
    if (h > 1) tsri_puts(o, ",");
    put_json_key(o, tsri_holder_names[h]);
    tsri_puts(o, "{");
    json_u64(o, "bytes", p->held[h], true);
    json_u64(o, "regions", p->held_regions[h], false);
    tsri_puts(o, "}");
  }
  tsri_puts(o, "},\"refusals\":{");
  json_u64(o, "count", p->refusals, true);
  json_u64(o, "last_size", p->refused_size, true);
  put_json_key(o, "last_large");
  tsri_puts(o, p->refused_large ? "true," : "false,");
  json_u64(o, "last_ms", p->refused_ms, false);
  tsri_puts(o, "},");
}

void tsri_write_json(tsri_out_t *o, tsri_report_t *r) {
  const tsr_stats_t *s = &r->stats;
  tsri_puts(o, "{\"schema\":\"tessera-report\",\"version\":1,\"tessera_version\":\"");
  tsri_put_u64(o, TSR_VERSION_MAJOR); tsri_puts(o, ".");
  tsri_put_u64(o, TSR_VERSION_MINOR); tsri_puts(o, ".");
  tsri_put_u64(o, TSR_VERSION_PATCH);
  tsri_puts(o, "\",");
  json_u64(o, "pid", tsri_os_process_id(), true);
  put_json_key(o, "program");
  put_json_str(o, r->program);
  tsri_puts(o, ",");
  put_json_key(o, "reason");
  put_json_str(o, r->reason);
  tsri_puts(o, ",");
  json_u64(o, "uptime_ms", tsri_os_clock_ms() - tsri_start_ms, true);
  put_json_key(o, "track");
  put_json_str(o, tsri_track_names[s->track]);
  tsri_puts(o, ",");
  json_u64(o, "sample_bytes", (uint64_t)tsri_option(TSRI_OPT_SAMPLE_BYTES), true);
  uint32_t ignored = tsri_options_ignored();
  if (ignored != 0) {
    tsri_puts(o, "\"secure_mode\":{\"ignored\":[");
    bool first = true;
    for (int i = 0; i < TSRI_OPT_COUNT; i++)
      if (ignored & ((uint32_t)1 << i)) {
        if (!first) tsri_puts(o, ",");
        put_json_str(o, tsri_option_name((tsri_option_t)i));
        first = false;
      }
    tsri_puts(o, "]},");
  }
  tsri_puts(o, "\"stats\":{");
  json_u64(o, "allocated", s->allocated, true);
  json_u64(o, "requested", s->requested, true);
  put_json_key(o, "requested_exact");
  tsri_puts(o, s->requested_exact ? "true," : "false,");
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
  tsri_puts(o, "\"errors_by_kind\":{");
  for (size_t k = 0; k < TSR_ERROR_KINDS; k++)
    json_u64(o, tsri_error_kind_names[k], s->errors_by_kind[k], k + 1 < TSR_ERROR_KINDS);
  tsri_puts(o, "},");
  json_u64(o, "records_lost", s->records_lost, true);
  json_u64(o, "stacks_lost", s->stacks_lost, true);
  json_ratio(o, "internal_fragmentation", s->internal_fragmentation, true);
  json_ratio(o, "external_fragmentation", s->external_fragmentation, true);
  json_ratio(o, "metadata_overhead", s->metadata_overhead, true);
  json_ratio(o, "efficiency", s->efficiency, false);
  tsri_puts(o, "},\"classes\":[");
  bool first = true;
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    const tsr_class_stats_t *k = &r->classes[c];
    if (k->pages == 0) continue;
    if (!first) tsri_puts(o, ",");
    first = false;
    tsri_puts(o, "{");
    json_u64(o, "index", k->index, true);
    json_u64(o, "block_size", k->block_size, true);
    json_u64(o, "pages", k->pages, true);
    json_u64(o, "committed", k->committed, true);
    json_u64(o, "blocks_live", k->blocks_live, true);
    json_u64(o, "blocks_total", k->blocks_total, true);
    json_u64(o, "bytes_live", k->bytes_live, true);
    json_u64(o, "bytes_requested", k->bytes_requested, true);
    json_ratio(o, "utilisation", k->utilisation, true);
    tsri_puts(o, "\"occupancy\":[");
    for (size_t b = 0; b < TSR_OCCUPANCY_BUCKETS; b++) {
      if (b) tsri_puts(o, ",");
      tsri_put_u64(o, k->occupancy[b]);
    }
    tsri_puts(o, "]}");
  }
  tsri_puts(o, "],\"sites\":");
  json_sites(o, r->sites, tsri_sites_listed(r->sites));
  tsri_puts(o, ",");
  json_u64(o, "sites_total", r->sites ? r->sites->count : 0, true);
  if (r->pins != NULL) json_pins(o, r->pins);
  if (r->leaks != NULL) {
    tsri_puts(o, "\"leaks\":{");
    json_u64(o, "blocks", r->leaks->blocks, true);
    json_u64(o, "bytes", r->leaks->bytes, true);
    json_u64(o, "expected_blocks", r->leaks->expected_blocks, true);
    json_u64(o, "libc_blocks", r->leaks->libc_blocks, true);
    tsri_puts(o, "\"functions\":[");
    tsri_leak_fn_t *fns = tsri_scratch(TSRI_LEAK_FUNCTIONS * sizeof(tsri_leak_fn_t));
    size_t nf = fns ? tsri_leak_functions(r->leaks, fns) : 0;
    for (size_t i = 0; i < nf; i++) {
      if (i) tsri_puts(o, ",");
      tsri_puts(o, "{");
      put_json_key(o, "function");
      put_json_str(o, fns[i].name);
      tsri_puts(o, ",");
      json_u64(o, "blocks", fns[i].blocks, true);
      json_u64(o, "bytes", fns[i].bytes, true);
      json_u64(o, "requested", fns[i].requested, false);
      tsri_puts(o, "}");
    }
    tsri_scratch_free(fns);
    tsri_puts(o, "],\"sites\":");
    json_sites(o, r->leaks, tsri_sites_listed(r->leaks));
    tsri_puts(o, "},");
  }
  tsri_puts(o, "\"map\":{");
  json_u64(o, "arena_size", TSR_ARENA_SIZE, true);
  json_u64(o, "slot_size", TSR_SLOT_SIZE, true);
  tsri_puts(o, "\"arenas\":[");
  json_map_t *m = tsri_scratch(sizeof(json_map_t));
  if (m != NULL) {
    m->o = o;
    m->arena = UINT32_MAX;
    tsr_map_walk(json_map_entry, m);
    json_map_arena_end(m);
    tsri_scratch_free(m);
  }
  tsri_puts(o, "]},\"address_space\":{");
  json_u64(o, "reserved", r->space.reserved, true);
  json_u64(o, "committed", r->space.committed, true);
  json_u64(o, "free", r->space.free, true);
  json_u64(o, "largest_free", r->space.largest_free, true);
  tsri_puts(o, "\"largest_free_at\":\"");
  tsri_put_hex(o, r->space.largest_free_at);
  tsri_puts(o, "\",");
  json_u64(o, "tessera_reserved", r->space.tessera_reserved, true);
  json_pieces(o, &r->pieces);
  tsri_puts(o, "\"regions\":[");
  json_space_t js = { o, true };
  if (r->space_ok) tsr_address_space(json_region, &js, NULL);
  tsri_puts(o, "]}}\n");
}

void tsri_diff_json(tsri_out_t *o, const tsr_delta_t *d, size_t n) {
  tsri_puts(o, "{\"schema\":\"tessera-diff\",\"version\":1,\"changes\":[");
  for (size_t i = 0; i < n; i++) {
    const tsr_delta_t *e = &d[i];
    if (i) tsri_puts(o, ",");
    tsri_puts(o, e->is_site ? "{\"kind\":\"site\"," : "{\"kind\":\"class\",");
    json_u64(o, "id", e->id, true);
    if (!e->is_site) json_u64(o, "block_size", e->block_size, true);
    put_json_key(o, "blocks"); tsri_put_i64(o, e->blocks); tsri_puts(o, ",");
    put_json_key(o, "bytes"); tsri_put_i64(o, e->bytes); tsri_puts(o, ",");
    json_u64(o, "blocks_after", e->blocks_after, true);
    json_u64(o, "bytes_after", e->bytes_after, e->is_site);
    if (e->is_site) {
      tsri_puts(o, "\"frames\":[");
      for (size_t f = 0; f < e->depth; f++) {
        if (f) tsri_puts(o, ",");
        tsri_puts(o, "\"");
        tsri_put_frame_short(o, e->frames[f], true);
        tsri_puts(o, "\"");
      }
      tsri_puts(o, "]");
    }
    tsri_puts(o, "}");
  }
  tsri_puts(o, "]}\n");
}
