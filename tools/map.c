/* map.c: the map view, an SVG picture of a report's memory.
 *
 * Owns drawing map.arenas (one row per arena, one cell per slot, the slots
 * of a page shaded by how full the page is) and address_space.regions (one
 * strip, widths on a log scale so that a 4 KiB mapping stays visible next
 * to a 100 TiB hole).  The output is plain SVG 1.1: no script, no CSS,
 * colours as attributes and a <title> tooltip per cell, so that any browser
 * or viewer shows it the same.  Loading and checking the report is
 * report.c's job; this file trusts report.h's bounds (every page lies
 * inside its arena's slots).
 */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* ---- layout, in px --------------------------------------------------- */

#define MAP_LEFT 150.0            /* room for the arena addresses */
#define MAP_MARGIN 20.0
#define MAP_ROWS_TOP 112.0        /* first arena row; title, legend and axis above */
#define MAP_ROW 18.0
#define MAP_GAP 6.0
#define MAP_PLOT 1024.0           /* the widest arena row aims at this width */
#define MAP_CELL_MAX 16.0
#define MAP_MIN_WIDTH 860.0       /* the title and the legends fit in this */
#define MAP_STRIP 22.0            /* address space strip height */

/* ---- colours ----------------------------------------------------------- */

#define COLOUR_RECORDS "#756bb1"      /* m: tessera's records */
#define COLOUR_DECOMMITTED "#f0f0f0"  /* .: free, gives no memory */
#define COLOUR_FREE_COMMITTED "#fd8d3c" /* d: free, still costs memory */
#define COLOUR_ORPHAN "#bdbdbd"       /* u without a page row (a torn report) */
#define COLOUR_AS_FREE "#ffffff"
#define COLOUR_AS_RESERVED "#d9d9d9"
#define COLOUR_AS_COMMITTED "#969696"
#define COLOUR_TSR_RESERVED "#9ecae1"
#define COLOUR_TSR_COMMITTED "#3182bd"
#define COLOUR_LARGEST "#e6550d"

/* Page occupancy runs from EMPTY (no live block) to FULL. */
static const int occ_empty[3] = { 222, 235, 247 };
static const int occ_full[3] = { 8, 48, 107 };

static void occupancy_colour(uint64_t live, uint64_t capacity, char out[8]) {
  double t = capacity ? (double)live / (double)capacity : 0.0;
  if (t > 1) t = 1;
  int c[3];
  for (int i = 0; i < 3; i++) c[i] = (int)lround(occ_empty[i] + t * (occ_full[i] - occ_empty[i]));
  snprintf(out, 8, "#%02x%02x%02x", c[0], c[1], c[2]);
}

/* Text for XML: the five special characters as entities, and control
 * characters (not allowed in XML 1.0) as '?'.  The loader has already
 * refused invalid UTF-8. */
static void xml_text(FILE *out, const char *s) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
    case '&': fputs("&amp;", out); break;
    case '<': fputs("&lt;", out); break;
    case '>': fputs("&gt;", out); break;
    case '"': fputs("&quot;", out); break;
    case '\'': fputs("&apos;", out); break;
    default: fputc(c < 0x20 ? '?' : c, out);
    }
  }
}

static void swatch(FILE *out, double x, double y, const char *fill, const char *stroke,
                   const char *label) {
  fprintf(out,
          "<rect class=\"legend\" x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\" "
          "stroke=\"%s\"/>\n<text x=\"%.1f\" y=\"%.1f\">",
          x, y, fill, stroke, x + 16, y + 10);
  xml_text(out, label);
  fputs("</text>\n", out);
}

/* ---- arenas ------------------------------------------------------------ */

static void draw_legend(FILE *out, double y) {
  double x = MAP_MARGIN;
  swatch(out, x, y, COLOUR_RECORDS, "#888888", "tessera's records (m)");
  swatch(out, x + 170, y, COLOUR_FREE_COMMITTED, "#888888", "free, committed (d)");
  swatch(out, x + 320, y, COLOUR_DECOMMITTED, "#888888", "free, decommitted (.)");
  x += 490;
  fprintf(out,
          "<text x=\"%.1f\" y=\"%.1f\">pages by live/capacity: 0%%</text>\n"
          "<rect class=\"legend\" x=\"%.1f\" y=\"%.1f\" width=\"120\" height=\"12\" "
          "fill=\"url(#occupancy)\" stroke=\"#888888\"/>\n"
          "<text x=\"%.1f\" y=\"%.1f\">100%%</text>\n",
          x, y + 10, x + 172, y, x + 298, y + 10);
}

/* Ticks along the top of the rows, every power-of-two multiple of a slot
 * that gives at most 8 of them, labelled in MiB. */
static void draw_axis(FILE *out, const report_t *r, size_t max_slots, double cell) {
  double slot = r->slot_size ? (double)r->slot_size : 1.0;
  double span = (double)max_slots * slot, tick = slot;
  while (span / tick > 8) tick *= 2;
  double bottom = MAP_ROWS_TOP + (double)(r->narenas ? r->narenas : 1) * (MAP_ROW + MAP_GAP);
  for (double at = 0; at <= span; at += tick) {
    double x = MAP_LEFT + at / slot * cell;
    fprintf(out,
            "<line x1=\"%.2f\" y1=\"%.1f\" x2=\"%.2f\" y2=\"%.1f\" stroke=\"#cccccc\"/>\n"
            "<text x=\"%.2f\" y=\"%.1f\" text-anchor=\"middle\">%g</text>\n",
            x, MAP_ROWS_TOP - 6, x, bottom - MAP_GAP, x, MAP_ROWS_TOP - 10,
            at / (1024.0 * 1024.0));
  }
  fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">slot offset (MiB)</text>\n",
          MAP_LEFT - 8, MAP_ROWS_TOP - 10);
}

/* One rect per slot, then an outline per page wide enough to show one. */
static void draw_arena(FILE *out, const report_t *r, const arena_t *a, double y, double cell) {
  size_t *page_of = tool_calloc(a->nslots, sizeof *page_of);
  for (size_t s = 0; s < a->nslots; s++) page_of[s] = SIZE_MAX;
  for (size_t j = 0; j < a->npages; j++)
    for (uint64_t s = a->pages[j].first; s < a->pages[j].first + a->pages[j].slots; s++)
      page_of[s] = j;
  fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n", MAP_LEFT - 8,
          y + MAP_ROW - 5, a->base);
  for (size_t s = 0; s < a->nslots; s++) {
    char fill[8];
    const mpage_t *p = page_of[s] == SIZE_MAX ? NULL : &a->pages[page_of[s]];
    char kind = a->slots[s];
    const char *cls = kind == 'm' ? "records" : kind == '.' ? "decommitted"
                      : kind == 'd' ? "free" : "page";
    if (kind == 'm') strcpy(fill, COLOUR_RECORDS);
    else if (kind == '.') strcpy(fill, COLOUR_DECOMMITTED);
    else if (kind == 'd') strcpy(fill, COLOUR_FREE_COMMITTED);
    else if (p == NULL) strcpy(fill, COLOUR_ORPHAN);
    else occupancy_colour(p->live, p->capacity, fill);
    fprintf(out,
            "<rect class=\"slot %s\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" "
            "fill=\"%s\"><title>%s slot %zu (+%s): ",
            cls, MAP_LEFT + (double)s * cell, y, cell, MAP_ROW, fill, a->base,
            s, tool_bytes((uint64_t)s * r->slot_size));
    if (kind == 'm') fputs("tessera's records", out);
    else if (kind == '.') fputs("free, decommitted", out);
    else if (kind == 'd') fputs("free, still committed", out);
    else if (p == NULL) fputs("in use, no page listed", out);
    else
      fprintf(out,
              "class %" PRIu64 ", block %s, %" PRIu64 " of %" PRIu64 " blocks live (%.1f%%), "
              "page of %" PRIu64 " slots",
              p->cls, tool_bytes(p->block_size), p->live, p->capacity,
              p->capacity ? 100.0 * (double)p->live / (double)p->capacity : 0.0, p->slots);
    fputs("</title></rect>\n", out);
  }
  for (size_t j = 0; j < a->npages; j++) {
    const mpage_t *p = &a->pages[j];
    if ((double)p->slots * cell < 4) continue;
    fprintf(out,
            "<rect class=\"page\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" "
            "fill=\"none\" stroke=\"#ffffff\"/>\n",
            MAP_LEFT + (double)p->first * cell, y, (double)p->slots * cell, MAP_ROW);
  }
  free(page_of);
}

/* ---- address space ------------------------------------------------------- */

/* A region's share of the strip: log2 of its size in 4 KiB pages, plus
 * one, so the smallest mapping still gets a sliver. */
static double region_weight(const region_t *g) {
  double pages = g->end > g->start ? (double)(g->end - g->start) / 4096.0 : 0.0;
  return 1.0 + log2(1.0 + pages);
}

static const char *region_fill(const region_t *g) {
  bool committed = strcmp(g->state, "committed") == 0;
  if (g->tessera) return committed ? COLOUR_TSR_COMMITTED : COLOUR_TSR_RESERVED;
  if (committed) return COLOUR_AS_COMMITTED;
  return strcmp(g->state, "free") == 0 ? COLOUR_AS_FREE : COLOUR_AS_RESERVED;
}

static void draw_address_space(FILE *out, const report_t *r, double y, double width) {
  fprintf(out, "<text x=\"%.1f\" y=\"%.1f\" font-weight=\"bold\">address space: reserved %s, "
          "committed %s, free %s; tessera reserved %s (widths on a log scale)</text>\n",
          MAP_MARGIN, y, tool_bytes(r->as_reserved), tool_bytes(r->as_committed),
          tool_bytes(r->as_free), tool_bytes(r->as_tessera_reserved));
  double top = y + 10, total = 0, x = MAP_MARGIN;
  for (size_t i = 0; i < r->nregions; i++) total += region_weight(&r->regions[i]);
  uint64_t largest_at = strtoull(r->as_largest_free_at + 2, NULL, 16);
  double largest_x = -1, largest_w = 0;
  for (size_t i = 0; i < r->nregions; i++) {
    const region_t *g = &r->regions[i];
    double w = region_weight(g) / total * width;
    if (strcmp(g->state, "free") == 0 && g->start == largest_at) {
      largest_x = x;
      largest_w = w;
    }
    fprintf(out,
            "<rect class=\"region\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" "
            "fill=\"%s\" stroke=\"#bbbbbb\" stroke-width=\"0.5\"><title>%s-%s (%s) %s %s%s ",
            x, top, w, MAP_STRIP, region_fill(g), g->start_s, g->end_s,
            tool_bytes(g->end > g->start ? g->end - g->start : 0), g->state, g->prot,
            g->tessera ? " tessera" : "");
    xml_text(out, g->name);
    fputs("</title></rect>\n", out);
    x += w;
  }
  /* Drawn last so that no neighbour covers its outline. */
  if (largest_x >= 0)
    fprintf(out,
            "<rect class=\"largest\" x=\"%.2f\" y=\"%.1f\" width=\"%.2f\" height=\"%.1f\" "
            "fill=\"none\" stroke=\"%s\" stroke-width=\"2\"/>\n",
            largest_x, top, largest_w, MAP_STRIP, COLOUR_LARGEST);
  if (r->nregions == 0)
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">(the report lists no regions)</text>\n", MAP_MARGIN,
            top + 15);
  double ly = top + MAP_STRIP + 12;
  swatch(out, MAP_MARGIN, ly, COLOUR_AS_COMMITTED, "#888888", "committed");
  swatch(out, MAP_MARGIN + 100, ly, COLOUR_AS_RESERVED, "#888888", "reserved");
  swatch(out, MAP_MARGIN + 200, ly, COLOUR_AS_FREE, "#888888", "free");
  swatch(out, MAP_MARGIN + 270, ly, COLOUR_TSR_COMMITTED, "#888888", "tessera, committed");
  swatch(out, MAP_MARGIN + 420, ly, COLOUR_TSR_RESERVED, "#888888", "tessera, reserved");
  swatch(out, MAP_MARGIN + 570, ly, COLOUR_AS_FREE, COLOUR_LARGEST, "largest free range");
  fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">largest free range: %s at %s</text>\n", MAP_MARGIN,
          ly + 34, tool_bytes(r->as_largest_free), r->as_largest_free_at);
}

/* ---- the document ---------------------------------------------------- */

bool tool_map_svg(const report_t *r, FILE *out) {
  size_t max_slots = 1;
  for (size_t i = 0; i < r->narenas; i++)
    if (r->arenas[i].nslots > max_slots) max_slots = r->arenas[i].nslots;
  double cell = MAP_PLOT / (double)max_slots;
  if (cell > MAP_CELL_MAX) cell = MAP_CELL_MAX;
  if (cell < 1) cell = 1;
  double width = MAP_LEFT + cell * (double)max_slots + MAP_MARGIN;
  if (width < MAP_MIN_WIDTH) width = MAP_MIN_WIDTH;
  double rows_end = MAP_ROWS_TOP + (double)(r->narenas ? r->narenas : 1) * (MAP_ROW + MAP_GAP);
  double height = rows_end + 110;

  fprintf(out,
          "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
          "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
          "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" "
          "font-size=\"12\">\n<title>tessera memory map: ",
          width, height, width, height);
  xml_text(out, r->program);
  fprintf(out,
          "</title>\n<defs><linearGradient id=\"occupancy\" x1=\"0\" y1=\"0\" x2=\"1\" y2=\"0\">"
          "<stop offset=\"0\" stop-color=\"rgb(%d,%d,%d)\"/>"
          "<stop offset=\"1\" stop-color=\"rgb(%d,%d,%d)\"/></linearGradient></defs>\n"
          "<rect class=\"background\" width=\"100%%\" height=\"100%%\" fill=\"#ffffff\"/>\n"
          "<text x=\"%.1f\" y=\"24\" font-size=\"16\" font-weight=\"bold\">tessera memory map: ",
          occ_empty[0], occ_empty[1], occ_empty[2], occ_full[0], occ_full[1], occ_full[2],
          MAP_MARGIN);
  xml_text(out, r->program);
  fprintf(out,
          " (pid %" PRId64 ")</text>\n<text x=\"%.1f\" y=\"44\">committed %s, allocated %s, "
          "requested %s%s; %zu arenas of %s in %s slots; report on ",
          r->pid, MAP_MARGIN, tool_bytes(r->stats.committed), tool_bytes(r->stats.allocated),
          r->stats.requested_exact ? "" : "~", tool_bytes(r->stats.requested), r->narenas,
          tool_bytes(r->arena_size), tool_bytes(r->slot_size));
  fprintf(out, "%s after %s</text>\n", r->reason, tool_uptime(r->uptime_ms));
  draw_legend(out, 60);
  draw_axis(out, r, max_slots, cell);
  for (size_t i = 0; i < r->narenas; i++)
    draw_arena(out, r, &r->arenas[i], MAP_ROWS_TOP + (double)i * (MAP_ROW + MAP_GAP), cell);
  if (r->narenas == 0)
    fprintf(out, "<text x=\"%.1f\" y=\"%.1f\">(no arenas)</text>\n", MAP_LEFT,
            MAP_ROWS_TOP + MAP_ROW - 5);
  draw_address_space(out, r, rows_end + 20, width - 2 * MAP_MARGIN);
  fputs("</svg>\n", out);
  return fflush(out) == 0 && !ferror(out);
}
