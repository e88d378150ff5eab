/* writer.h: what the report writers share (private to writer*.c).
 *
 * writer.c defines all but the formats: the output buffer, number
 * formatting, frame naming, the figures a report starts from, and the
 * leaks by allocating function.  Each format is one file, named below
 * with what it defines.
 */
#ifndef TSR_WRITER_H
#define TSR_WRITER_H

#include "report.h"

/* ---- the output buffer ------------------------------------------------ */

/* A fixed buffer, handed to fn whenever it fills and once at the end. */
typedef struct tsri_out_s {
  tsr_output_fn *fn;
  void *arg;
  size_t len;
  char buf[4096];
} tsri_out_t;

tsri_hidden void tsri_put(tsri_out_t *o, const char *s, size_t n);
tsri_hidden void tsri_puts(tsri_out_t *o, const char *s);
tsri_hidden void tsri_put_u64(tsri_out_t *o, uint64_t v);
tsri_hidden void tsri_put_i64(tsri_out_t *o, int64_t v);
tsri_hidden void tsri_put_hex(tsri_out_t *o, uint64_t v);
tsri_hidden void tsri_put_fixed(tsri_out_t *o, double v, int decimals);

/* ---- frames ----------------------------------------------------------- */

tsri_hidden const char *tsri_base_name(const char *path);
tsri_hidden const char *tsri_function_name(const tsri_os_symbol_t *sym, char *buf);
tsri_hidden void tsri_put_frame_short(tsri_out_t *o, void *addr, bool with_offset);

/* ---- what every format starts from ------------------------------------ */

typedef struct tsri_report_s {
  const char *reason;
  tsr_stats_t stats;
  tsr_class_stats_t classes[TSR_CLASS_COUNT + 1];
  tsri_sites_t *sites;
  tsri_sites_t *leaks;       /* at exit only */
  tsri_pins_t *pins;         /* who pins the sparse pages (pins.c) */
  tsr_address_space_t space;
  tsr_space_pieces_t pieces;   /* space is pieces.totals */
  bool space_ok;
  char program[256];
} tsri_report_t;

tsri_hidden extern const char *const tsri_track_names[];   /* by tsr_track_t */
tsri_hidden extern const char *const tsri_mesh_state_names[];   /* by tsr_mesh_state_t */
tsri_hidden extern const char *const tsri_holder_names[];  /* by tsr_holder_t */
tsri_hidden extern const char *const tsri_error_kind_names[];   /* by tsr_error_kind_t */
tsri_hidden size_t tsri_sites_listed(const tsri_sites_t *s);
/* How many of p's sites a report lists (TESSERA_REPORT_SITES). */
tsri_hidden size_t tsri_pins_listed(const tsri_pins_t *p);

/* ---- leaks by allocating function ------------------------------------- */

#define TSRI_LEAK_FUNCTIONS 256

typedef struct tsri_leak_fn_s {
  char name[128];
  uint64_t blocks, bytes, requested;
} tsri_leak_fn_t;

tsri_hidden size_t tsri_leak_functions(const tsri_sites_t *leaks, tsri_leak_fn_t *fns);

/* ---- the formats, a file each ----------------------------------------- */

/* Each writes a whole report, or the diff of two snapshots (d: n deltas,
 * most growth first) where its format has one.  The caller, writer.c,
 * holds the report lock and the symbol cache, and flushes o after. */

tsri_hidden void tsri_write_text(tsri_out_t *o, tsri_report_t *r);                /* writer_text.c */
tsri_hidden void tsri_diff_text(tsri_out_t *o, const tsr_delta_t *d, size_t n);
tsri_hidden void tsri_write_json(tsri_out_t *o, tsri_report_t *r);                /* writer_json.c */
tsri_hidden void tsri_diff_json(tsri_out_t *o, const tsr_delta_t *d, size_t n);
tsri_hidden void tsri_write_openmetrics(tsri_out_t *o, tsri_report_t *r);         /* writer_metrics.c */
tsri_hidden void tsri_write_folded(tsri_out_t *o, tsri_report_t *r);              /* writer_folded.c */
tsri_hidden void tsri_diff_folded(tsri_out_t *o, const tsr_delta_t *d, size_t n);

#endif /* TSR_WRITER_H */
