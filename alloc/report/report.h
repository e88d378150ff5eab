/* report.h: the report layer's own declarations: what report.c (sites,
 * snapshots, scratch memory) gives the writers (writer.h, writer*.c) and
 * the triggers (trigger.c).
 *
 * Layer: alloc/report/ owns tsr_stats_get and the class rows (stats.c),
 * the report API over the records (report.c), the writers, one file per
 * format, and the triggers.  It may call tracking, the core and the OS
 * layer; nothing below calls it. */
#ifndef TSR_REPORT_H
#define TSR_REPORT_H

#include "track/track.h"

/* One site while aggregating: sums of weights, so samples scale up. */
typedef struct tsri_site_s {
  uint32_t id;
  bool estimated;
  double blocks, bytes, requested;
} tsri_site_t;

typedef struct tsri_sites_s {
  tsri_site_t *sites;        /* biggest first, or by id (tsri_sites_collect) */
  size_t count;
  uint64_t blocks, bytes;    /* over all the sites, each rounded as listed */
  uint64_t expected_blocks;  /* leaks: blocks left out as expected */
  uint64_t libc_blocks;      /* leaks: of those, the ones the C library keeps */
} tsri_sites_t;

/* A scaled-up figure as a count: rounded, never negative. */
static inline uint64_t tsri_round_u64(double v) { return v <= 0 ? 0 : (uint64_t)(v + 0.5); }

/* visit(arg, pg, live, capacity) for every span head, the arena lock
 * held (stats.c): live counts the blocks other threads freed into the
 * page and its owner has not merged yet as free.  The passes built on it
 * keep little on the stack: a program may ask from a thread with a small
 * one. */
typedef void tsri_page_visit_fn(void *arg, const tsr_page_t *pg, uint32_t live, uint32_t capacity);
tsri_hidden void tsri_pages_each(tsri_page_visit_fn *visit, void *arg);

/* Memory from the OS for report tables; never the heap reported on. */
tsri_hidden void *tsri_scratch(size_t bytes);
tsri_hidden void tsri_scratch_free(void *p);

/* Does a come before b?  A strict total order, so that a sort's result is
 * one order whatever the input's. */
typedef bool tsri_order_fn(const void *a, const void *b);
/* Sort the n elements of size bytes at base into `before` order. */
tsri_hidden void tsri_heap_sort(void *base, size_t n, size_t size, tsri_order_fn *before);

/* Live blocks by site, biggest first (by_id: in stack id order); leaks:
 * without blocks and sites marked expected or kept by the C library. */
tsri_hidden tsri_sites_t *tsri_sites_collect(bool leaks, bool by_id);
tsri_hidden void tsri_sites_free(tsri_sites_t *s);
tsri_hidden void tsri_site_public(const tsri_site_t *s, tsr_site_t *out);

/* Who pins the pages (pins.c): the sparse small-block pages, at most half
 * their blocks live, and the sites whose live blocks hold them. */
typedef struct tsri_pin_s {
  uint32_t id;               /* stack id; 0: blocks without a record */
  bool estimated;
  double blocks, pinned, idle;   /* idle: the free bytes of its share */
} tsri_pin_t;

typedef struct tsri_pins_s {
  tsri_pin_t *pins;          /* most pinned bytes first */
  size_t count;
  uint64_t pages, bytes, live;   /* the sparse pages, their bytes, their live bytes */
  uint64_t meshable;         /* bytes meshing pairs of them would give back */
  tsr_pins_t mesh;           /* meshing's figures (its mesh_* and meshed_* fields) */
} tsri_pins_t;

tsri_hidden tsri_pins_t *tsri_pins_collect(void);
tsri_hidden void tsri_pins_free(tsri_pins_t *p);

tsri_hidden bool tsri_snapshot_valid(const tsr_snapshot_t *s);
/* Every change from a to b, most growth first (equal growth: sites before
 * classes, each by id), in scratch memory. */
tsri_hidden tsr_delta_t *tsri_snapshot_deltas(const tsr_snapshot_t *a, const tsr_snapshot_t *b, size_t *count);

/* Write a report; reason: "api", "exit" (adds the leaks), "signal", "interval". */
tsri_hidden int tsri_report_write(tsr_format_t format, const char *reason, tsr_output_fn *out, void *arg);
tsri_hidden int tsri_report_to(tsr_format_t format, const char *dest, const char *reason);

#endif /* TSR_REPORT_H */
