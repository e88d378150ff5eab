/* meta.h: what meta.c (making and dropping records) shares with walk.c
 * (reading them back): the time log's marks and lookups in the table of
 * sampled and large records; and sample.c's arithmetic.  Private to
 * alloc/track/. */
#ifndef TSR_META_H
#define TSR_META_H

#include "area.h"

#define TSRI_TIME_LOG 1024           /* marks in the time log */

typedef struct tsri_time_mark_s {
  uint64_t seq;                      /* first number of a block */
  uint32_t ms;                       /* clock (ms after start) when it was taken */
} tsri_time_mark_t;

/* Copy the time log into out (TSRI_TIME_LOG marks); returns the marks
 * copied. */
tsri_hidden size_t tsri_meta_time_log_copy(tsri_time_mark_t *out);
/* The full record of a page's compact one, rec (a narrow one naming
 * REC_LONG: longv, the long record), whose contexts are ctxs, dated by a
 * copy of the time log (marks of them). */
tsri_hidden tsri_rec_t tsri_meta_rec_expand(const tsri_ctx_t *ctxs, rec_fields_t rec, uint64_t longv,
                                            rec_fmt_t f, uint32_t block_size, const tsri_time_mark_t *log,
                                            size_t marks);
/* p's record in the table of sampled and large records, its weight and
 * requested size; false when it has none. */
tsri_hidden bool tsri_meta_table_get(const void *p, tsri_rec_t *rec, double *weight, uint64_t *requested);
/* The lock of the table (held across fork, meta.c); walk.c takes it to
 * add a leak mark. */
tsri_hidden tsri_lock_t *tsri_meta_lock_get(void);
/* Mark p's table record as expected at exit; false when it has none. */
tsri_hidden bool tsri_meta_table_expect(const void *p);
/* -ln(u) for u in (0, 1], and 1 - exp(-x) for x >= 0 (sample.c). */
tsri_hidden double tsri_neg_log(double u);
tsri_hidden double tsri_one_minus_exp(double x);

#endif /* TSR_META_H */
