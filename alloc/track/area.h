/* area.h: the record areas of pages tracked in full, as meta.c and area.c
 * read and write them.
 *
 * A record is one word: valid and expected bits, the context slot, the
 * bytes of the block not asked for (waste) and the offset of its sequence
 * number from the context's.  Two formats, chosen by block size so that a
 * record costs a quarter of the smallest block and a sixteenth at most
 * from 144 bytes on:
 *   narrow, 32 bits (blocks of 16..128 bytes): waste 4 bits, offset 19;
 *   wide, 64 bits (larger blocks): waste 18 bits, offset 37.
 * A block whose waste does not fit (an aligned or shrunk block) gets a
 * table record instead (meta.c).  A free clears the record; 0 is no record.
 *
 * Long records.  A page whose blocks were allocated far apart in time (a
 * cache's, in a long-running process) needs a context per 2^19 numbers of
 * each stack: when its table is full of contexts live blocks still name,
 * a narrow record names context REC_LONG instead and the block's number
 * goes, with the real context, into a long record (64 bits) in a second
 * array after the narrow one, committed when first needed: 12 bytes for
 * such a block instead of a table record's 64.  Only the narrow word is
 * cleared by a free; the long array is cleared when the page retires.
 */
#ifndef TSR_AREA_H
#define TSR_AREA_H

#include "track.h"

#define REC_CTX_BITS 7
_Static_assert((1u << REC_CTX_BITS) == TSRI_CTX_SLOTS, "a record names every context slot");

typedef struct rec_fmt_s {
  unsigned width, waste_bits, off_bits;
} rec_fmt_t;

#define REC_FMT(width, waste_bits) ((rec_fmt_t){ (width), (waste_bits), (width) - 2 - REC_CTX_BITS - (waste_bits) })
#define REC_NARROW REC_FMT(32, 4)
#define REC_WIDE REC_FMT(64, 18)

static inline rec_fmt_t rec_fmt(size_t block_size) {
  return block_size <= TSRI_REC_NARROW_MAX ? REC_NARROW : REC_WIDE;
}

typedef struct rec_fields_s {
  bool valid, expected;
  uint32_t ctx, waste;
  uint64_t off;
} rec_fields_t;

static inline uint64_t rec_pack(rec_fmt_t f, uint32_t ctx, uint32_t waste, uint64_t off) {
  return (uint64_t)1 << (f.width - 1) | (uint64_t)ctx << (f.width - 2 - REC_CTX_BITS) |
         (uint64_t)waste << f.off_bits | off;
}

static inline rec_fields_t rec_unpack(rec_fmt_t f, uint64_t v) {
  rec_fields_t r;
  r.valid = (v >> (f.width - 1)) & 1;
  r.expected = (v >> (f.width - 2)) & 1;
  r.ctx = (uint32_t)(v >> (f.width - 2 - REC_CTX_BITS)) & (TSRI_CTX_SLOTS - 1);
  r.waste = (uint32_t)(v >> f.off_bits) & ((1u << f.waste_bits) - 1);
  r.off = v & (((uint64_t)1 << f.off_bits) - 1);
  return r;
}

static inline uint64_t rec_expected_bit(rec_fmt_t f) { return (uint64_t)1 << (f.width - 2); }

#define REC_LONG (TSRI_CTX_SLOTS - 1)   /* narrow ctx: see the long record */
#define LONG_SEQ_BITS 53

static inline uint64_t long_pack(uint32_t ctx, uint32_t waste, uint64_t seq) {
  return (uint64_t)ctx << 57 | (uint64_t)waste << LONG_SEQ_BITS | (seq & (((uint64_t)1 << LONG_SEQ_BITS) - 1));
}

/* A long record as fields: ctx, waste, and the whole number in `off`. */
static inline rec_fields_t long_unpack(uint64_t v, bool expected) {
  rec_fields_t r = { true, expected, (uint32_t)(v >> 57), (uint32_t)(v >> LONG_SEQ_BITS) & 15,
                     v & (((uint64_t)1 << LONG_SEQ_BITS) - 1) };
  return r;
}

/* Does rec (of format f) name REC_LONG: is its number in a long record? */
static inline bool rec_is_long(rec_fmt_t f, rec_fields_t rec) { return f.width == 32 && rec.ctx == REC_LONG; }

/* Record i of an area: relaxed atomic words, the owner writes, a free
 * clears, walkers and tsr_leak_expect read. */
static inline uint64_t rec_read(const tsri_recs_t *r, rec_fmt_t f, size_t i) {
  if (f.width == 32) return atomic_load_explicit(&((_Atomic uint32_t *)(uintptr_t)r->recs)[i], memory_order_acquire);
  return atomic_load_explicit(&((_Atomic uint64_t *)(uintptr_t)r->recs)[i], memory_order_acquire);
}

static inline void rec_write(tsri_recs_t *r, rec_fmt_t f, size_t i, uint64_t v) {
  /* release: a reader that sees the record sees the context (and long
   * record) written before it */
  if (f.width == 32) atomic_store_explicit(&((_Atomic uint32_t *)(void *)r->recs)[i], (uint32_t)v, memory_order_release);
  else atomic_store_explicit(&r->recs[i], v, memory_order_release);
}

/* Replace record i if it still reads old; false when it changed meanwhile. */
static inline bool rec_swap(tsri_recs_t *r, rec_fmt_t f, size_t i, uint64_t old, uint64_t v) {
  if (f.width == 32) {
    uint32_t o = (uint32_t)old;
    return atomic_compare_exchange_strong_explicit(&((_Atomic uint32_t *)(void *)r->recs)[i], &o, (uint32_t)v,
                                                   memory_order_relaxed, memory_order_relaxed);
  }
  return atomic_compare_exchange_strong_explicit(&r->recs[i], &old, v, memory_order_relaxed,
                                                 memory_order_relaxed);
}

/* The long records of a narrow page: after its narrow ones. */
static inline _Atomic uint64_t *area_long(const tsri_recs_t *r, size_t capacity) {
  return (_Atomic uint64_t *)(uintptr_t)((const uint8_t *)r->recs + tsri_align_up(capacity * 4, 8));
}

static inline uint64_t long_read(const tsri_recs_t *r, size_t capacity, size_t i) {
  return atomic_load_explicit(&area_long(r, capacity)[i], memory_order_relaxed);
}

/* Make the record area of pg; NULL when the OS refuses.  Caller: the
 * owner of pg (nobody else makes areas for it). */
tsri_hidden tsri_recs_t *tsri_area_make(tsr_page_t *pg);

/* The record area of pg, made on first use; NULL when the OS refuses. */
static inline tsri_recs_t *tsri_area(tsr_page_t *pg) {
  tsri_recs_t *r = atomic_load_explicit(&pg->recs, memory_order_acquire);
  return tsr_likely(r != NULL) ? r : tsri_area_make(pg);
}

/* The slot of a context of r (pg's area, format f) for (stack, thread)
 * that covers seq, made when there is none.  When every slot is named by
 * live records: in a narrow page, a context for (stack, thread) of
 * another range with *is_long set (the record must be long, and its array
 * is committed), or -1 when there is none (or no memory). */
tsri_hidden int tsri_area_ctx_find(tsri_recs_t *r, tsr_page_t *pg, rec_fmt_t f, uint32_t stack, uint32_t thread,
                                   uint64_t seq, bool *is_long);
/* The records of pg's area r that cannot belong to their block, as of
 * record number *seq_now; report: say so on stderr.  Arena lock held. */
tsri_hidden size_t tsri_area_check(const tsr_page_t *pg, const tsri_recs_t *r, const _Atomic uint64_t *seq_now,
                                   bool report);

#endif /* TSR_AREA_H */
