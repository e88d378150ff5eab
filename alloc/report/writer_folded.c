/* writer_folded.c: folded stacks for flame graphs, one line per site of
 * live bytes, and per site that grew between two snapshots.
 *
 * Owns: the folded line.  The buffer, frame names and dispatch are
 * writer.c's.
 */
#include "writer.h"

/* "outermost;...;innermost bytes": the order flame-graph tools read. */
static void folded_line(tsri_out_t *o, uint32_t id, uint64_t bytes) {
  void *const *frames;
  size_t depth = tsri_stack_frames(id, &frames);
  if (depth == 0) tsri_puts(o, "[no stack]");
  for (size_t f = depth; f-- > 0;) {
    tsri_put_frame_short(o, frames[f], false);
    if (f) tsri_puts(o, ";");
  }
  tsri_puts(o, " ");
  tsri_put_u64(o, bytes);
  tsri_puts(o, "\n");
}

void tsri_write_folded(tsri_out_t *o, tsri_report_t *r) {
  if (r->sites == NULL) return;
  for (size_t i = 0; i < r->sites->count; i++)
    folded_line(o, r->sites->sites[i].id, tsri_round_u64(r->sites->sites[i].bytes));
}

/* Only growth: a flame graph has no negative widths. */
void tsri_diff_folded(tsri_out_t *o, const tsr_delta_t *d, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const tsr_delta_t *e = &d[i];
    if (e->is_site && e->bytes > 0) folded_line(o, e->id, (uint64_t)e->bytes);
  }
}
