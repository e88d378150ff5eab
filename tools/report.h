/* report.h: a tessera report in memory, shared by tessera-report's views.
 *
 * Owns the structs that mirror docs/report-schema.json, the loader that
 * fills them (tool_load: reading the file, picking the report, checking it
 * against the schema), and the number formatting every view uses.  The
 * views themselves live in tessera-report.c (text) and map.c (SVG).
 * Every string in these structs points into the JSON tree (jansson's) the
 * report owns, and lives until tool_report_free.
 */
#ifndef TSR_TOOLS_REPORT_H
#define TSR_TOOLS_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* ------------------------------------------------------------------------
 * The report, as the schema defines it
 * ---------------------------------------------------------------------- */

/* Every integer in "stats", in schema order; 1 marks byte counts (shown
 * with units).  The struct, the loader, the summary and the diff expand it. */
#define STAT_COUNTS(X)                                                                   \
  X(requested, 1) X(allocated, 1) X(committed, 1) X(reserved, 1) X(metadata, 1)          \
  X(live_blocks, 0) X(tracked_blocks, 0) X(large_live, 0) X(arenas, 0) X(allocations, 0) \
  X(frees, 0) X(purges, 0) X(os_commits, 0) X(os_decommits, 0) X(os_reserves, 0)         \
  X(os_releases, 0) X(os_resets, 0) X(errors, 0)

typedef struct stats_s {
#define X(name, bytes) uint64_t name;
  STAT_COUNTS(X)
#undef X
  bool requested_exact;          /* false: requested (and ratios using it) are estimates */
  double internal_fragmentation; /* allocated / requested */
  double external_fragmentation; /* committed / allocated */
  double metadata_overhead;      /* metadata / allocated */
  double efficiency;             /* requested / committed */
  /* Counted from version 4 of tsr_stats_t on: 0 in older reports. */
  uint64_t records_lost;         /* blocks left without the record they were meant to have */
  uint64_t stacks_lost;          /* call stacks not stored: their blocks name site 0 */
} stats_t;

typedef struct frame_s {
  const char *addr;              /* "0x...", always there */
  const char *function;          /* NULL when the symbol is unknown */
  const char *module;            /* NULL when unknown */
  const char *file;              /* NULL without line information */
  uint64_t offset;               /* from the function, or from the module without one */
  uint64_t line;
  bool has_offset;
} frame_t;

typedef struct site_s {
  uint64_t blocks, bytes, requested;
  bool estimated;                /* scaled up from samples */
  size_t nframes;
  frame_t *frames;               /* innermost first */
} site_t;

/* One row of pins.sites: what a site's live blocks hold of the sparse
 * pages (docs/report.md, "Who pins the pages"). */
typedef struct pin_s {
  uint64_t id;                   /* call stack id, as in sites; 0: the blocks without a record */
  uint64_t blocks;               /* its live blocks in sparse pages */
  uint64_t pinned;               /* bytes: the sum of those blocks' shares of their pages */
  uint64_t idle;                 /* bytes: the free part of those shares */
  bool estimated;                /* scaled up from samples */
  size_t nframes;
  frame_t *frames;               /* innermost first; none for site 0 */
} pin_t;

/* One member of stats.errors_by_kind: a kind of error and its count. */
typedef struct error_kind_s {
  const char *kind;              /* "double_free", "overflow", ... as the report names it */
  uint64_t count;
} error_kind_t;

/* One row of leaks.functions: leaked blocks by the allocator's caller. */
typedef struct leak_fn_s {
  const char *function;
  uint64_t blocks, bytes, requested;
} leak_fn_t;

typedef struct class_s {
  uint64_t block_size;           /* 0: the large blocks */
  uint64_t pages, committed, blocks_live, blocks_total, bytes_live, bytes_requested;
  double utilisation;            /* 0..1 */
  uint64_t occupancy[10];        /* pages by live/capacity decile */
} class_t;

/* One row of map.arenas[].pages; slots are checked to lie in the arena. */
typedef struct mpage_s {
  uint64_t first, slots;         /* the slots [first, first + slots) of its arena */
  uint64_t cls, block_size;      /* size class index and that class's block size */
  uint64_t capacity, live;       /* blocks the page holds; how many are live */
} mpage_t;

typedef struct arena_s {
  const char *base;              /* "0x...", the arena's address */
  const char *slots;             /* one of "m.du" per slot */
  size_t nslots;                 /* strlen(slots) */
  size_t npages;
  mpage_t *pages;                /* in the report's order */
} arena_t;

typedef struct region_s {
  uint64_t start, end;           /* [start, end) */
  const char *start_s, *end_s;   /* the same, as the report wrote them */
  const char *state;             /* "free", "reserved" or "committed" */
  const char *prot;              /* "rwx" with '-' for what is not allowed */
  const char *name;              /* mapped file or [tag]; may be "" */
  bool tessera;                  /* one of tessera's reservations */
} region_t;

/* pins.mesh: meshing's state and figures (docs/report.md, "Meshing"). */
typedef struct mesh_s {
  const char *state;             /* "off", "on", "unsupported" or "paused" */
  const char *why;               /* unsupported: what the OS lacks; NULL when not said */
  uint64_t meshed_pages;         /* OS pages sharing their physical page now, two to one */
  uint64_t saved;                /* bytes of physical memory that sharing saves now */
  uint64_t meshes, unmeshes;     /* pairs made and taken apart since start */
  uint64_t passes;               /* passes over a heap since start */
  uint64_t time_ns;              /* spent in them */
  uint64_t pause_max_ns;         /* longest a page stayed read-only while copied */
} mesh_t;

typedef struct report_s {
  json_t *doc;                   /* one reference; owns every string below */
  const char *name;              /* the file, for messages */
  const char *version;            /* tessera_version */
  const char *program, *reason, *track;
  int64_t pid;
  uint64_t uptime_ms;
  uint64_t sample_bytes;         /* mean bytes between samples at track "sample" */
  stats_t stats;
  size_t nerror_kinds;           /* 0 in reports written before errors were counted by kind */
  error_kind_t *error_kinds;     /* stats.errors_by_kind, in the report's order */
  size_t nclasses, nsites;
  class_t *classes;
  site_t *sites;                 /* most bytes first */
  int64_t sites_total;           /* -1 when the report leaves it out */
  bool has_leaks;                /* only a report written at exit has them */
  uint64_t leak_blocks, leak_bytes, leak_expected;
  size_t nleak_functions, nleak_sites;
  leak_fn_t *leak_functions;     /* most bytes first */
  site_t *leak_sites;
  bool has_pins;                 /* reports written before the section lack it */
  uint64_t pin_pages, pin_bytes; /* the sparse pages and their bytes: exact */
  uint64_t pin_live;             /* bytes of the live blocks in them: exact */
  bool has_meshable;             /* reports written before pins.meshable lack it */
  uint64_t pin_meshable;         /* bytes pairing the sparse pages could give back */
  bool has_mesh;                 /* reports written before pins.mesh lack it */
  mesh_t mesh;
  uint64_t pins_total;           /* pin sites, those not listed included */
  size_t npins;
  pin_t *pins;                   /* most pinned bytes first */
  uint64_t arena_size, slot_size; /* bytes */
  size_t narenas, nregions;
  arena_t *arenas;               /* map.arenas */
  region_t *regions;             /* address_space.regions, as listed (by address) */
  uint64_t as_reserved, as_committed, as_free, as_largest_free, as_tessera_reserved;
  const char *as_largest_free_at;
} report_t;

/* ------------------------------------------------------------------------
 * Loading
 * ---------------------------------------------------------------------- */

/* Read file ("-": standard input) and load its last report, or the last
 * one whose pid is pid when by_pid.  On any problem (unreadable, not JSON,
 * not a report, no report) prints why on stderr and exits with status 2;
 * a torn last line after good reports only gets a warning. */
void tool_load(const char *file, bool by_pid, int64_t pid, report_t *r);
void tool_report_free(report_t *r);

/* Print "tessera-report: " and the message on stderr, exit with status 2. */
__attribute__((noreturn, format(printf, 1, 2))) void tool_die(const char *fmt, ...);
/* calloc that exits on failure (n == 0 gives a valid pointer). */
void *tool_calloc(size_t n, size_t size);

/* ------------------------------------------------------------------------
 * Formatting
 *
 * Each result lives in a ring of 16 buffers, so one printf may take
 * several, and must be printed before 16 more calls.
 * ---------------------------------------------------------------------- */

/* The next 64-byte buffer of the ring, for a formatter of one's own. */
char *tool_scratch(void);
/* "512 B", "1.5 KiB", "3.0 GiB". */
const char *tool_bytes(uint64_t n);
/* The same with a sign: "+1.5 KiB", "-512 B", "0 B". */
const char *tool_bytes_signed(int64_t n);
/* "2.345 s", "3m 05s", "1h 02m 03s". */
const char *tool_uptime(uint64_t ms);

/* ------------------------------------------------------------------------
 * The map view (map.c)
 * ---------------------------------------------------------------------- */

/* Draw the arenas and the address space of r as an SVG 1.1 document on
 * out.  Returns false when writing failed. */
bool tool_map_svg(const report_t *r, FILE *out);

#endif /* TSR_TOOLS_REPORT_H */
