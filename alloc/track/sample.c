/* sample.c: the two functions of the sampling arithmetic (meta.c draws
 * the bytes to the next sample, and weighs a sampled block, with them),
 * written here so that the library needs no libm, whose pages would add
 * to every process's RSS.  Both are good to about 1e-12, far below what
 * sampling can resolve.
 */
#include "meta.h"

#define LN2 0.6931471805599453

/* -ln(u) for u in (0, 1]: u = m 2^e with m in [sqrt(1/2), sqrt(2)), and
 * ln(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| < 0.172. */
double tsri_neg_log(double u) {
  uint64_t bits;
  memcpy(&bits, &u, sizeof bits);
  int e = (int)((bits >> 52) & 0x7ff) - 1023;
  bits = (bits & 0x000fffffffffffffull) | 0x3ff0000000000000ull;
  double m;
  memcpy(&m, &bits, sizeof m);
  if (m > 1.4142135623730951) {
    m *= 0.5;
    e++;
  }
  double s = (m - 1.0) / (m + 1.0), s2 = s * s;
  double series = 1.0 + s2 * (1.0 / 3 + s2 * (1.0 / 5 + s2 * (1.0 / 7 + s2 * (1.0 / 9 + s2 * (1.0 / 11 + s2 / 13)))));
  return -((double)e * LN2 + 2.0 * s * series);
}

/* 1 - exp(-x) for x >= 0, without the cancellation near 0. */
double tsri_one_minus_exp(double x) {
  if (x > 40.0) return 1.0;
  double sum = 0.0, term = 1.0;
  if (x < 0.5) {   /* x - x^2/2! + x^3/3! - ... */
    for (int n = 1; n <= 24; n++) {
      term *= (n == 1 ? x : -x / n);
      sum += term;
    }
    return sum;
  }
  int k = (int)(x / LN2);          /* exp(-x) = 2^-k exp(-r), r in [0, ln 2) */
  double r = x - k * LN2;
  for (int n = 1; n <= 24; n++) {  /* exp(-r) */
    sum += term;
    term *= -r / n;
  }
  uint64_t bits = (uint64_t)(1023 - k) << 52;   /* 2^-k, k <= 57 */
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return 1.0 - sum * scale;
}
