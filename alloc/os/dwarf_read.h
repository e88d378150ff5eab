/* dwarf_read.h: a bounded reader for the binary encodings of DWARF and
 * .eh_frame (fixed-size numbers, LEB128), shared by dwarf_line.c (line
 * tables) and unwind_eh.c (call-frame information).  Private to
 * alloc/os/.  A read past the end sets bad, moves the cursor to the end
 * and yields 0, so a parser may do a run of reads and check once.
 */
#ifndef TSR_DWARF_READ_H
#define TSR_DWARF_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tsri_dw_reader_s {
  const uint8_t *p, *end;
  bool bad;
} tsri_dw_reader_t;

static inline size_t tsri_dw_left(const tsri_dw_reader_t *r) { return (size_t)(r->end - r->p); }

static inline bool tsri_dw_skip(tsri_dw_reader_t *r, uint64_t n) {
  if (r->bad || n > tsri_dw_left(r)) {
    r->bad = true;
    r->p = r->end;
    return false;
  }
  r->p += n;
  return true;
}

/* An n-byte unsigned number, n <= 8, in the host's byte order (the
 * callers take only objects whose byte order is ours). */
static inline uint64_t tsri_dw_fixed(tsri_dw_reader_t *r, size_t n) {
  const uint8_t *p = r->p;
  if (!tsri_dw_skip(r, n)) return 0;
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) {
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = v << 8 | p[i];
#else
    v |= (uint64_t)p[i] << (8 * i);
#endif
  }
  return v;
}

/* LEB128.  Bits past the 64th are dropped: no field read is wider, and a
 * malformed run of continuation bytes only costs its length. */
static inline uint64_t tsri_dw_leb(tsri_dw_reader_t *r, bool is_signed) {
  uint64_t v = 0;
  unsigned shift = 0;
  uint8_t b;
  do {
    if (r->bad || r->p == r->end) {
      r->bad = true;
      return 0;
    }
    b = *r->p++;
    if (shift < 64) {
      v |= (uint64_t)(b & 0x7f) << shift;
      shift += 7;
    }
  } while (b & 0x80);
  if (is_signed && shift < 64 && (b & 0x40)) v |= ~(uint64_t)0 << shift;
  return v;
}

static inline uint64_t tsri_dw_uleb(tsri_dw_reader_t *r) { return tsri_dw_leb(r, false); }
static inline int64_t tsri_dw_sleb(tsri_dw_reader_t *r) { return (int64_t)tsri_dw_leb(r, true); }

#endif /* TSR_DWARF_READ_H */
