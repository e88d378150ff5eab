/* writer_text.c: the report for people: the totals, the biggest sites with
 * their stacks, the leaks at exit, the size classes and the address space,
 * in aligned columns; and the growth between two snapshots, a line each.
 *
 * Owns: the layout and the sizes people read ("12.3 MiB").  The buffer,
 * numbers, frame names, leaks by function and dispatch are writer.c's.
 */
#include "writer.h"

/* Bytes with a unit people read: "12.3 MiB". */
static void put_size(tsri_out_t *o, uint64_t bytes) {
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
  double v = (double)bytes;
  size_t u = 0;
  while (v >= 1024 && u < 4) { v /= 1024; u++; }
  tsri_put_fixed(o, v, u == 0 ? 0 : 1);
  tsri_puts(o, " ");
  tsri_puts(o, units[u]);
}

/* Pad to a column with spaces after text of n characters. */
static void pad(tsri_out_t *o, size_t n, size_t width) {
  while (n++ < width) tsri_put(o, " ", 1);
}

static size_t u64_len(uint64_t v) {
  size_t n = 1;
  while (v >= 10) { v /= 10; n++; }
  return n;
}

static void put_u64_right(tsri_out_t *o, uint64_t v, size_t width) {
  pad(o, u64_len(v), width);
  tsri_put_u64(o, v);
}

static void text_line(tsri_out_t *o, const char *label, uint64_t bytes) {
  tsri_puts(o, "  ");
  tsri_puts(o, label);
  pad(o, strlen(label), 22);
  put_u64_right(o, bytes, 14);
  tsri_puts(o, " bytes  (");
  put_size(o, bytes);
  tsri_puts(o, ")\n");
}

/* After the count of errors, the kinds that have any: " (double_free 1,
 * overflow 2)"; nothing when there are none. */
static void text_error_kinds(tsri_out_t *o, const tsr_stats_t *s) {
  const char *sep = " (";
  for (size_t k = 0; k < TSR_ERROR_KINDS; k++) {
    if (s->errors_by_kind[k] == 0) continue;
    tsri_puts(o, sep);
    tsri_puts(o, tsri_error_kind_names[k]);
    tsri_puts(o, " ");
    tsri_put_u64(o, s->errors_by_kind[k]);
    sep = ", ";
  }
  if (s->errors != 0) tsri_puts(o, ")");
}

/* The frames of stack id, a line each, or a note that there are none. */
static void text_frames(tsri_out_t *o, uint32_t id) {
  void *const *frames;
  size_t depth = tsri_stack_frames(id, &frames);
  if (depth == 0) tsri_puts(o, "      (no call stack recorded)\n");
  for (size_t f = 0; f < depth; f++) {
    tsri_os_symbol_t sym;
    tsri_puts(o, "      ");
    int rc = tsri_os_symbolize(frames[f], &sym);
    tsri_put_hex(o, (uint64_t)(uintptr_t)frames[f]);
    tsri_puts(o, " ");
    if (rc == 0 && sym.function[0]) {
      char buf[256];
      tsri_puts(o, tsri_function_name(&sym, buf));
      tsri_puts(o, "+");
      tsri_put_hex(o, sym.offset);
    } else if (rc == 0) {
      tsri_puts(o, "?? ");
    }
    if (rc == 0 && sym.file[0]) {
      tsri_puts(o, " (");
      tsri_puts(o, sym.file);
      tsri_puts(o, ":");
      tsri_put_u64(o, sym.line);
      tsri_puts(o, ")");
    }
    if (rc == 0) {
      tsri_puts(o, " in ");
      tsri_puts(o, tsri_base_name(sym.module));
    }
    tsri_puts(o, "\n");
  }
}

static void text_sites(tsri_out_t *o, const tsri_sites_t *s, size_t listed) {
  for (size_t i = 0; i < listed; i++) {
    const tsri_site_t *site = &s->sites[i];
    tsri_puts(o, "  #");
    tsri_put_u64(o, i + 1);
    tsri_puts(o, site->estimated ? "  ~" : "  ");
    tsri_put_u64(o, tsri_round_u64(site->bytes));
    tsri_puts(o, " bytes in ");
    tsri_put_u64(o, tsri_round_u64(site->blocks));
    tsri_puts(o, tsri_round_u64(site->blocks) == 1 ? " block" : " blocks");
    tsri_puts(o, ", requested ");
    tsri_put_u64(o, tsri_round_u64(site->requested));
    tsri_puts(o, ", waste ");
    tsri_put_u64(o, tsri_round_u64(site->bytes - site->requested));
    tsri_puts(o, "\n");
    text_frames(o, site->id);
  }
}

/* A time people read: "850 ns", "35.2 us", "12.3 ms", "4.1 s". */
static void put_duration(tsri_out_t *o, uint64_t ns) {
  static const char *const units[] = { "ns", "us", "ms", "s" };
  double v = (double)ns;
  size_t u = 0;
  while (v >= 1000 && u < 3) { v /= 1000; u++; }
  tsri_put_fixed(o, v, u == 0 ? 0 : 1);
  tsri_puts(o, " ");
  tsri_puts(o, units[u]);
}

/* Meshing's line (mesh.c): its state, what it holds now, what it did since
 * start.  Off, or unsupported, and never having meshed: the state alone,
 * unsupported with what the OS lacks where the OS layer can say. */
static void text_mesh(tsri_out_t *o, const tsr_pins_t *m) {
  static const char *const states[] = {
    [TSR_MESH_OFF] = "off",
    [TSR_MESH_ON] = "on",
    [TSR_MESH_UNSUPPORTED] = "unsupported by this OS",
    [TSR_MESH_PAUSED] = ("paused (tessera's SIGSEGV handler is not in front, the mapping budget is spent, or "
                         "the program forbade itself system calls)"),
  };
  tsri_puts(o, "  meshing: ");
  tsri_puts(o, states[m->mesh_state]);
  const char *why = m->mesh_state == TSR_MESH_UNSUPPORTED ? tsri_os_share_why() : NULL;
  if (why != NULL) {
    tsri_puts(o, ": ");
    tsri_puts(o, why);
  }
  if (m->meshes == 0 && (m->mesh_state == TSR_MESH_OFF || m->mesh_state == TSR_MESH_UNSUPPORTED)) {
    tsri_puts(o, "\n");
    return;
  }
  /* up to eight OS pages share one physical page: n of them save n - 1 */
  tsri_puts(o, "; ");
  tsri_put_u64(o, m->meshed_pages);
  tsri_puts(o, " OS pages share physical pages now, ");
  put_size(o, m->mesh_saved);
  tsri_puts(o, " saved; ");
  tsri_put_u64(o, m->meshes);
  tsri_puts(o, " meshed since start, ");
  tsri_put_u64(o, m->unmeshes);
  tsri_puts(o, " taken apart, in ");
  tsri_put_u64(o, m->mesh_passes);
  tsri_puts(o, m->mesh_passes == 1 ? " pass, " : " passes, ");
  put_duration(o, m->mesh_ns);
  tsri_puts(o, " in all, longest page pause ");
  put_duration(o, m->mesh_pause_max_ns);
  tsri_puts(o, "\n");
}

/* Who pins the sparse pages: the totals, what meshing pairs of them
 * could give back and what meshing does, then the sites by bytes held. */
static void text_pins(tsri_out_t *o, const tsri_pins_t *p) {
  tsri_puts(o, "\nsparse pages (at most half their blocks live): ");
  tsri_put_u64(o, p->pages);
  tsri_puts(o, p->pages == 1 ? " page, " : " pages, ");
  put_size(o, p->bytes);
  tsri_puts(o, " holding ");
  put_size(o, p->live);
  tsri_puts(o, " of live blocks; ");
  put_size(o, p->meshable);
  tsri_puts(o, " meshable (pairs whose live blocks miss each other)\n");
  text_mesh(o, &p->mesh);
  size_t listed = tsri_pins_listed(p);
  if (listed == 0) return;
  tsri_puts(o, "  held by (");
  tsri_put_u64(o, p->count);
  tsri_puts(o, " sites in all; each live block holds an equal share of its page):\n");
  for (size_t i = 0; i < listed; i++) {
    const tsri_pin_t *pin = &p->pins[i];
    tsri_puts(o, "  #");
    tsri_put_u64(o, i + 1);
    tsri_puts(o, pin->estimated ? "  ~" : "  ");
    tsri_put_u64(o, tsri_round_u64(pin->pinned));
    tsri_puts(o, " bytes held by ");
    tsri_put_u64(o, tsri_round_u64(pin->blocks));
    tsri_puts(o, tsri_round_u64(pin->blocks) == 1 ? " block, " : " blocks, ");
    tsri_put_u64(o, tsri_round_u64(pin->idle));
    tsri_puts(o, " of them free\n");
    if (pin->id == 0) tsri_puts(o, "      (blocks without a record)\n");
    else text_frames(o, pin->id);
  }
}

/* ------------------------------------------------------------------------
 * The address space: why a request fails with most of it free
 * ---------------------------------------------------------------------- */

/* The map of a user address space of at most 4 GiB (a 32-bit process):
 * MAP_CELLS characters, one per cell, named by the holder with the most
 * bytes in it; upper case when it holds half the cell or more, '.' when
 * the cell is all free. */
#define MAP_CELLS 512
#define MAP_LINE 64
static const char map_letters[] = ".altimhsp";   /* by tsr_holder_t */

typedef struct space_map_s {
  uint64_t cell;                                /* bytes per character */
  uint64_t held[MAP_CELLS][TSR_HOLDER_COUNT];
} space_map_t;

static int map_region(const tsr_region_t *reg, void *arg) {
  space_map_t *m = arg;
  for (uintptr_t at = reg->start; at < reg->end;) {
    uint64_t i = at / m->cell;
    if (i >= MAP_CELLS) break;
    uintptr_t cell_end = (uintptr_t)((i + 1) * m->cell);
    uintptr_t end = reg->end < cell_end ? reg->end : cell_end;
    m->held[i][reg->state == TSR_REGION_FREE ? TSR_HOLDER_FREE : reg->holder] += end - at;
    at = end;
  }
  return 0;
}

static void text_map(tsri_out_t *o, const tsr_space_pieces_t *p) {
  uint64_t span = p->totals.free + p->totals.reserved + p->totals.committed;
  if (span == 0 || span > ((uint64_t)1 << 32)) return;
  space_map_t *m = tsri_scratch(sizeof(space_map_t));
  if (m == NULL) return;
  /* from address 0: the space walked starts at the OS's lowest user
   * address, 64 KiB on Windows and Linux */
  m->cell = (span + 65536 + MAP_CELLS - 1) / MAP_CELLS;
  m->cell = (m->cell + 65535) & ~(uint64_t)65535;
  tsr_address_space(map_region, m, NULL);
  tsri_puts(o, "  map, a character per ");
  put_size(o, m->cell);
  tsri_puts(o, " ('.' free; upper case: held for half the cell or more; a arenas, l large\n"
               "  blocks, t tessera's records, i images, m mapped files, h other heaps, s stacks,\n"
               "  p other private)\n");
  char line[MAP_LINE + 1];
  for (size_t i = 0; i < MAP_CELLS; i++) {
    const uint64_t *h = m->held[i];
    size_t best = TSR_HOLDER_FREE;
    for (size_t k = 1; k < TSR_HOLDER_COUNT; k++)
      if (h[k] > 0 && (best == TSR_HOLDER_FREE || h[k] > h[best])) best = k;
    char c = map_letters[best];
    if (best != TSR_HOLDER_FREE && h[best] * 2 >= m->cell) c = (char)(c - 'a' + 'A');
    line[i % MAP_LINE] = c;
    if (i % MAP_LINE == MAP_LINE - 1) {
      line[MAP_LINE] = 0;
      tsri_puts(o, "  ");
      tsri_put_hex(o, (uint64_t)(i + 1 - MAP_LINE) * m->cell);
      tsri_puts(o, " ");
      tsri_puts(o, line);
      tsri_puts(o, "\n");
    }
  }
  tsri_scratch_free(m);
}

static void text_space(tsri_out_t *o, const tsr_space_pieces_t *p, bool at_failure) {
  static const char *const bucket_names[TSR_FREE_BUCKETS] = {
    "below 1 MiB", "1 to 4 MiB", "4 to 16 MiB", "16 to 64 MiB", "64 to 256 MiB", "256 MiB and more"
  };
  const tsr_address_space_t *t = &p->totals;
  tsri_puts(o, "\naddress space\n");
  text_line(o, "reserved (no access)", t->reserved);
  text_line(o, "mapped", t->committed);
  text_line(o, "of these, tessera's", t->tessera_reserved);
  text_line(o, "free", t->free);
  text_line(o, "largest free range", t->largest_free);
  tsri_puts(o, "  largest free range at ");
  tsri_put_hex(o, t->largest_free_at);
  tsri_puts(o, "\n");
  text_line(o, "largest reservation", p->reservable);
  tsri_puts(o, p->reservable > ((uint64_t)4 << 30) - 1 ? "    (the biggest the OS grants now, probed up to 4 GiB)\n"
                                                      : "    (the biggest the OS grants now, probed)\n");
  if (p->reserve_left != UINT64_MAX) text_line(o, "left under the cap", p->reserve_left);
  if (p->refusals != 0 && at_failure) {
    tsri_puts(o, "  why the request failed: ");
    put_size(o, p->refused_size);
    tsri_puts(o, p->refused_large ? " (a large block) needed a free range of its size"
                                  : " (small blocks) needed a new arena");
    tsri_puts(o, "; the largest free range is ");
    put_size(o, p->reservable);
    if (p->reserve_left != UINT64_MAX) {
      tsri_puts(o, " and the cap leaves ");
      put_size(o, p->reserve_left);
    }
    tsri_puts(o, ", though ");
    put_size(o, t->free);
    tsri_puts(o, " are free in ");
    tsri_put_u64(o, p->free_ranges);
    tsri_puts(o, " pieces\n");
  } else if (p->refusals != 0) {
    tsri_puts(o, "  requests refused      ");
    tsri_put_u64(o, p->refusals);
    tsri_puts(o, ", the last ");
    put_size(o, p->refused_size);
    tsri_puts(o, p->refused_large ? " (a large block) at " : " (small blocks) at ");
    tsri_put_fixed(o, (double)p->refused_ms / 1000.0, 1);
    tsri_puts(o, " s\n");
  }
  tsri_puts(o, "  free space in ");
  tsri_put_u64(o, p->free_ranges);
  tsri_puts(o, " pieces\n");
  for (size_t b = 0; b < TSR_FREE_BUCKETS; b++) {
    if (p->pieces[b] == 0) continue;
    tsri_puts(o, "    ");
    tsri_puts(o, bucket_names[b]);
    pad(o, strlen(bucket_names[b]), 18);
    put_u64_right(o, p->pieces[b], 8);
    tsri_puts(o, " pieces, ");
    put_size(o, p->pieces_bytes[b]);
    tsri_puts(o, "\n");
  }
  tsri_puts(o, "  biggest free ranges  ");
  for (size_t i = 0; i < TSR_LARGEST_LISTED && p->largest[i] != 0; i++) {
    if (i) tsri_puts(o, i % 3 == 0 ? ",\n                       " : ", ");
    put_size(o, p->largest[i]);
    tsri_puts(o, " at ");
    tsri_put_hex(o, p->largest_at[i]);
  }
  tsri_puts(o, "\n  held by                      bytes   regions\n");
  for (size_t h = 1; h < TSR_HOLDER_COUNT; h++) {
    if (p->held[h] == 0) continue;
    tsri_puts(o, "    ");
    tsri_puts(o, tsri_holder_names[h]);
    pad(o, strlen(tsri_holder_names[h]), 22);
    put_u64_right(o, p->held[h], 14);
    put_u64_right(o, p->held_regions[h], 10);
    tsri_puts(o, "  (");
    put_size(o, p->held[h]);
    tsri_puts(o, ")\n");
  }
  text_map(o, p);
}

void tsri_write_text(tsri_out_t *o, tsri_report_t *r) {
  const tsr_stats_t *s = &r->stats;
  tsri_puts(o, "== tessera report: ");
  tsri_puts(o, r->program);
  tsri_puts(o, " (pid ");
  tsri_put_u64(o, tsri_os_process_id());
  tsri_puts(o, "), ");
  tsri_puts(o, r->reason);
  tsri_puts(o, " after ");
  tsri_put_fixed(o, (double)(tsri_os_clock_ms() - tsri_start_ms) / 1000.0, 1);
  tsri_puts(o, " s; tracking: ");
  tsri_puts(o, tsri_track_names[s->track]);
  if (s->track == TSR_TRACK_SAMPLE) {
    tsri_puts(o, " (one block per ");
    put_size(o, (uint64_t)tsri_option(TSRI_OPT_SAMPLE_BYTES));
    tsri_puts(o, ", site figures are estimates marked ~)");
  }
  uint32_t ignored = tsri_options_ignored();
  if (ignored != 0) {
    tsri_puts(o, "\nsecure mode (set-user-ID or the like): ignored");
    for (int i = 0; i < TSRI_OPT_COUNT; i++)
      if (ignored & ((uint32_t)1 << i)) {
        tsri_puts(o, " ");
        tsri_puts(o, tsri_option_name((tsri_option_t)i));
      }
  }
  tsri_puts(o, "\n\ntotals\n");
  text_line(o, s->requested_exact ? "requested" : "requested (estimate)", s->requested);
  text_line(o, "allocated", s->allocated);
  text_line(o, "committed", s->committed);
  text_line(o, "reserved", s->reserved);
  text_line(o, "metadata", s->metadata);
  tsri_puts(o, "  live blocks           ");
  tsri_put_u64(o, s->live_blocks);
  tsri_puts(o, " (");
  tsri_put_u64(o, s->tracked_blocks);
  tsri_puts(o, " with a record, ");
  tsri_put_u64(o, s->large_live);
  tsri_puts(o, " large)\n  allocations, frees    ");
  tsri_put_u64(o, s->allocations);
  tsri_puts(o, ", ");
  tsri_put_u64(o, s->frees);
  tsri_puts(o, "\n  OS calls              ");
  tsri_put_u64(o, s->os_reserves);
  tsri_puts(o, " reserve, ");
  tsri_put_u64(o, s->os_commits);
  tsri_puts(o, " commit, ");
  tsri_put_u64(o, s->os_decommits);
  tsri_puts(o, " decommit, ");
  tsri_put_u64(o, s->os_resets);
  tsri_puts(o, " reset, ");
  tsri_put_u64(o, s->os_releases);
  tsri_puts(o, " release; ");
  tsri_put_u64(o, s->purges);
  tsri_puts(o, " slots purged\n");
  if (s->records_lost != 0 || s->stacks_lost != 0) {
    tsri_puts(o, "  lost for want of memory ");
    tsri_put_u64(o, s->records_lost);
    tsri_puts(o, " records, ");
    tsri_put_u64(o, s->stacks_lost);
    tsri_puts(o, " stacks\n");
  }
  tsri_puts(o, "  internal fragmentation ");
  tsri_put_fixed(o, s->internal_fragmentation, 3);
  tsri_puts(o, "  (allocated / requested)\n  external fragmentation ");
  tsri_put_fixed(o, s->external_fragmentation, 3);
  tsri_puts(o, "  (committed / allocated)\n  metadata overhead      ");
  tsri_put_fixed(o, s->metadata_overhead * 100, 1);
  tsri_puts(o, " %  (metadata / allocated)\n  efficiency             ");
  tsri_put_fixed(o, s->efficiency * 100, 1);
  tsri_puts(o, " %  (requested / committed)\n  errors reported        ");
  tsri_put_u64(o, s->errors);
  text_error_kinds(o, s);
  tsri_puts(o, "\n");

  if (r->sites != NULL) {
    tsri_puts(o, "\nsites by live bytes (");
    tsri_put_u64(o, r->sites->count);
    tsri_puts(o, " in all)\n");
    text_sites(o, r->sites, tsri_sites_listed(r->sites));
  }
  if (r->pins != NULL) text_pins(o, r->pins);
  if (r->leaks != NULL) {
    tsri_puts(o, "\nleaks at exit: ");
    tsri_put_u64(o, r->leaks->blocks);
    tsri_puts(o, " blocks, ");
    tsri_put_u64(o, r->leaks->bytes);
    tsri_puts(o, " bytes still live (");
    tsri_put_u64(o, r->leaks->expected_blocks - r->leaks->libc_blocks);
    tsri_puts(o, " more marked expected, ");
    tsri_put_u64(o, r->leaks->libc_blocks);
    tsri_puts(o, " kept by the C library)");
    if (s->track != TSR_TRACK_FULL) tsri_puts(o, "; estimates: with TESSERA_TRACK=full every leaked block is counted");
    tsri_puts(o, "\n  by allocating function:\n");
    tsri_leak_fn_t *fns = tsri_scratch(TSRI_LEAK_FUNCTIONS * sizeof(tsri_leak_fn_t));
    size_t nf = fns ? tsri_leak_functions(r->leaks, fns) : 0;
    for (size_t i = 0; i < nf; i++) {
      tsri_puts(o, "    ");
      tsri_puts(o, fns[i].name);
      tsri_puts(o, ": ");
      tsri_put_u64(o, fns[i].blocks);
      tsri_puts(o, fns[i].blocks == 1 ? " block, " : " blocks, ");
      tsri_put_u64(o, fns[i].requested);
      tsri_puts(o, " bytes requested (");
      tsri_put_u64(o, fns[i].bytes);
      tsri_puts(o, " usable)\n");
    }
    tsri_scratch_free(fns);
    tsri_puts(o, "  by call stack:\n");
    text_sites(o, r->leaks, tsri_sites_listed(r->leaks));
  }

  tsri_puts(o, "\nsize classes\n    size   pages     committed    live / total    util      requested   waste  occupancy 0-100%\n");
  for (size_t c = 0; c <= TSR_CLASS_COUNT; c++) {
    const tsr_class_stats_t *k = &r->classes[c];
    if (k->pages == 0) continue;
    if (c == TSR_CLASS_COUNT) tsri_puts(o, "   large");
    else put_u64_right(o, k->block_size, 8);
    put_u64_right(o, k->pages, 8);
    put_u64_right(o, k->committed, 14);
    put_u64_right(o, k->blocks_live, 8);
    tsri_puts(o, " / ");
    tsri_put_u64(o, k->blocks_total);
    pad(o, u64_len(k->blocks_total), 8);
    tsri_put_fixed(o, k->utilisation * 100, 1);
    tsri_puts(o, " %");
    put_u64_right(o, k->bytes_requested, 15);
    double waste = k->bytes_live ? 100.0 * (double)(k->bytes_live - (k->bytes_requested < k->bytes_live ? k->bytes_requested : k->bytes_live)) / (double)k->bytes_live : 0;
    pad(o, 0, 3);
    tsri_put_fixed(o, waste, 1);
    tsri_puts(o, " %  ");
    for (size_t b = 0; b < TSR_OCCUPANCY_BUCKETS && c < TSR_CLASS_COUNT; b++) {
      if (b) tsri_puts(o, " ");
      tsri_put_u64(o, k->occupancy[b]);
    }
    tsri_puts(o, "\n");
  }

  if (r->space_ok) text_space(o, &r->pieces, strcmp(r->reason, "failure") == 0);
  tsri_puts(o, "\n");
}

void tsri_diff_text(tsri_out_t *o, const tsr_delta_t *d, size_t n) {
  tsri_puts(o, "== tessera growth between two snapshots (bytes, blocks; after)\n");
  for (size_t i = 0; i < n; i++) {
    const tsr_delta_t *e = &d[i];
    tsri_puts(o, e->bytes >= 0 ? "  +" : "  ");
    tsri_put_i64(o, e->bytes);
    tsri_puts(o, " bytes, ");
    tsri_puts(o, e->blocks >= 0 ? "+" : "");
    tsri_put_i64(o, e->blocks);
    tsri_puts(o, " blocks (now ");
    tsri_put_u64(o, e->bytes_after);
    tsri_puts(o, " bytes in ");
    tsri_put_u64(o, e->blocks_after);
    tsri_puts(o, ")  ");
    if (e->is_site) {
      tsri_puts(o, "site ");
      for (size_t f = 0; f < e->depth && f < 4; f++) {
        if (f) tsri_puts(o, " < ");
        tsri_put_frame_short(o, e->frames[f], false);
      }
      if (e->depth == 0) tsri_puts(o, "[no stack]");
    } else if (e->id == TSR_CLASS_COUNT) {
      tsri_puts(o, "class large");
    } else {
      tsri_puts(o, "class ");
      tsri_put_u64(o, e->block_size);
    }
    tsri_puts(o, "\n");
  }
}
