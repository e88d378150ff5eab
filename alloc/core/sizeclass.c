/* sizeclass.c: the size-class table.
 *
 * Bound on internal waste (block size minus request, over the request):
 * from 128 bytes up there are eight classes per power of two, so a request
 * r in (p + (k-1)p/8, p + kp/8] gets a block of p + kp/8 and wastes less
 * than p/8 < r/8: at most 12.5 %.  Below 128 bytes the 16-byte alignment
 * that malloc owes on x86-64 forces 16-byte steps: at most 15 bytes (23 %
 * of a 65-byte request, the worst case).  tests/test_sizeclass.c checks
 * both bounds for every size.
 *
 * Span length: the fewest 64 KiB slots that hold at least 8 blocks (4 above
 * 16 KiB) with at most 1/16 of the span left over at its end; above 8 KiB,
 * with at most 1/32 left over where a span of up to TSR_SPAN_MAX_SLOTS
 * slots manages it (a span's unused end is reserved address space, which
 * a 32-bit process or one under RLIMIT_AS runs out of: 40,960-byte blocks
 * fill five slots exactly, where four held six with 1/16 left over).
 * tsri_span_shape applies the same rules to any block size, for fitted
 * pages (heap.c); for each class's size it gives the class's row
 * (tests/test_fit.c checks every row).
 */
#include "internal.h"

const tsri_class_t tsri_classes[TSR_CLASS_COUNT] = {
  /* block size, slots per span, blocks per span */
  /* 16 .. 128: 16-byte steps (the alignment malloc owes on x86-64) */
  {    16,  1, 4096},
  {    32,  1, 2048},
  {    48,  1, 1365},
  {    64,  1, 1024},
  {    80,  1,  819},
  {    96,  1,  682},
  {   112,  1,  585},
  {   128,  1,  512},
  /* 144 .. 256: eighths of 128 */
  {   144,  1,  455},
  {   160,  1,  409},
  {   176,  1,  372},
  {   192,  1,  341},
  {   208,  1,  315},
  {   224,  1,  292},
  {   240,  1,  273},
  {   256,  1,  256},
  /* 288 .. 512: eighths of 256 */
  {   288,  1,  227},
  {   320,  1,  204},
  {   352,  1,  186},
  {   384,  1,  170},
  {   416,  1,  157},
  {   448,  1,  146},
  {   480,  1,  136},
  {   512,  1,  128},
  /* 576 .. 1024: eighths of 512 */
  {   576,  1,  113},
  {   640,  1,  102},
  {   704,  1,   93},
  {   768,  1,   85},
  {   832,  1,   78},
  {   896,  1,   73},
  {   960,  1,   68},
  {  1024,  1,   64},
  /* 1152 .. 2048: eighths of 1024 */
  {  1152,  1,   56},
  {  1280,  1,   51},
  {  1408,  1,   46},
  {  1536,  1,   42},
  {  1664,  1,   39},
  {  1792,  1,   36},
  {  1920,  1,   34},
  {  2048,  1,   32},
  /* 2304 .. 4096: eighths of 2048 */
  {  2304,  1,   28},
  {  2560,  1,   25},
  {  2816,  1,   23},
  {  3072,  1,   21},
  {  3328,  1,   19},
  {  3584,  1,   18},
  {  3840,  1,   17},
  {  4096,  1,   16},
  /* 4608 .. 8192: eighths of 4096 */
  {  4608,  1,   14},
  {  5120,  1,   12},
  {  5632,  1,   11},
  {  6144,  1,   10},
  {  6656,  2,   19},
  {  7168,  1,    9},
  {  7680,  1,    8},
  {  8192,  1,    8},
  /* 9216 .. 16384: eighths of 8192 */
  {  9216,  2,   14},
  { 10240,  3,   19},
  { 11264,  3,   17},
  { 12288,  3,   16},
  { 13312,  5,   24},
  { 14336,  2,    9},
  { 15360,  4,   17},
  { 16384,  2,    8},
  /* 18432 .. 32768: eighths of 16384 */
  { 18432,  2,    7},
  { 20480,  5,   16},
  { 22528,  6,   17},
  { 24576,  3,    8},
  { 26624,  5,   12},
  { 28672,  4,    9},
  { 30720,  8,   17},
  { 32768,  2,    4},
  /* 36864 .. 65536: eighths of 32768 */
  { 36864,  4,    7},
  { 40960,  5,    8},
  { 45056,  7,   10},
  { 49152,  3,    4},
  { 53248,  5,    6},
  { 57344,  7,    8},
  { 61440,  4,    4},
  { 65536,  4,    4},
  /* 73728 .. 131072: eighths of 65536 */
  { 73728,  8,    7},
  { 81920,  5,    4},
  { 90112,  7,    5},
  { 98304,  6,    4},
  {106496, 10,    6},
  {114688,  7,    4},
  {122880,  8,    4},
  {131072,  8,    4},
};

/* Class of each request size up to 1024, indexed by (size + 15) / 16. */
const uint8_t tsri_class_small[TSR_SMALL_LUT] = {
  0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
  15, 16, 16, 17, 17, 18, 18, 19, 19, 20, 20, 21, 21, 22, 22, 23,
  23, 24, 24, 24, 24, 25, 25, 25, 25, 26, 26, 26, 26, 27, 27, 27,
  27, 28, 28, 28, 28, 29, 29, 29, 29, 30, 30, 30, 30, 31, 31, 31,
  31,
};

/* Bytes a span of `slots` slots leaves over past its last block of
 * block_size, and its blocks. */
static size_t span_left(size_t slots, size_t block_size, size_t *blocks) {
  size_t bytes = slots * TSR_SLOT_SIZE, n = bytes / block_size;
  if (n > TSR_PAGE_MAX_BLOCKS) n = TSR_PAGE_MAX_BLOCKS;
  *blocks = n;
  return bytes - n * block_size;
}

/* The rules of the table, for any block size: the fewest slots with at
 * least `least` blocks and at most 1/32 left over (above 8 KiB, within
 * TSR_SPAN_MAX_SLOTS slots), else at most 1/16; where no span of up to
 * TSR_SPAN_MAX_SLOTS slots manages 1/16 (a block just above 64 KiB), the
 * one that leaves the smallest part over. */
tsri_shape_t tsri_span_shape(size_t block_size) {
  size_t least = block_size > 16384 ? 4 : 8, blocks;
  for (size_t part = block_size > 8192 ? 32 : 16; part >= 16; part /= 2) {
    for (size_t n = 1; n <= TSR_SPAN_MAX_SLOTS; n++) {
      size_t left = span_left(n, block_size, &blocks);
      if (blocks >= least && left * part <= n * TSR_SLOT_SIZE) return (tsri_shape_t){ n, blocks };
    }
  }
  tsri_shape_t best = { 0, 0 };
  size_t best_left = 0;
  for (size_t n = 1; n <= TSR_SPAN_MAX_SLOTS; n++) {
    size_t left = span_left(n, block_size, &blocks);
    if (blocks >= least && (best.slots == 0 || left * best.slots < best_left * n)) {
      best = (tsri_shape_t){ n, blocks };
      best_left = left;
    }
  }
  return best;
}

bool tsri_fit_pays(size_t block_size, size_t cls) {
  const tsri_class_t *c = &tsri_classes[cls];
  if (block_size >= c->block_size) return false;
  tsri_shape_t s = tsri_span_shape(block_size);
  /* span bytes a block, compared: where they tie (40,000 bytes and the
   * class's 40,960 both take eight blocks to five slots) the smaller
   * blocks still leave the span's end untouched, out of memory */
  return s.slots * c->capacity <= (size_t)c->span_slots * s.capacity;
}
