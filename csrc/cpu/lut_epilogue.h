// The int8 table lookups' last step (linear_avx2lut.cpp, linear_avx512lut8.cpp): a block of weight
// rows' exact int32 sums to y, rounded as every int8 kernel rounds them (rows_int8_impl,
// linear_rowdesc.inc), so that the lookups give those kernels' bits. One definition for both.
#pragma once

#include <cstdint>

#include "linear.h"
#include "quantize.h"

namespace slt {
namespace cpu {

// Weight rows [n, n + nr) of y; sum(c, r, i): the int32 sum of coat c (p.C coats: AVX2's
// lookup takes multicoat weights, AVX-512's binary ones), activation row r and weight row n + i.
// Sliced float activations (p.slices = D): a y row from its D slice rows' sums, the exact
// integer per coat first, then one rounding (in double over the coats); else y = (g *
// float(sum)) * scale * xscale + b, with coats acc = 0, acc += g_c * float(sum_c) first, as the
// register kernel (rows_int8_impl) adds them; coats sharing a scale (coat_levels) as one sum,
// the integers added first.
template <class Sum>
inline void store_int8_sums(const LinearProblem& p, int64_t n, int64_t nr, Sum sum) {
  const float* bias = p.bias ? p.bias + n - p.row_begin : nullptr;
  const int64_t C = p.C;
  const bool one = C == 1 || coat_levels(p);  // one integer sum and scale
  if (p.slices) {
    const int D = p.slices;
    for (int64_t r = 0; r < p.M / D; ++r) {
      float* y = p.y + r * p.ldy + n - p.row_begin;
      const double f = double(p.coat_scales[0]) * double(p.scale) * double(p.xscale[r]);
      const double fc = double(p.scale) * double(p.xscale[r]);  // (coats: after their sum)
      for (int64_t i = 0; i < nr; ++i) {
        double acc = 0.0;
        int64_t total = 0;
        for (int64_t c = 0; c < C; ++c) {
          int64_t v = 0;
          for (int d = 0; d < D; ++d) v += int64_t(sum(c, r * D + d, i)) * slice_weight(d, D);
          if (one)
            total += v;
          else
            acc = acc + double(v) * double(p.coat_scales[c]);
        }
        y[i] = float(one ? double(total) * f : acc * fc) + (bias ? bias[i] : 0.0f);
      }
    }
    return;
  }
  for (int64_t r = 0; r < p.M; ++r) {
    float* y = p.y + r * p.ldy + n - p.row_begin;
    for (int64_t i = 0; i < nr; ++i) {
      float acc = 0.0f;
      if (one) {
        int32_t total = 0;
        for (int64_t c = 0; c < C; ++c) total += sum(c, r, i);
        acc = p.coat_scales[0] * float(total);
      } else {
        for (int64_t c = 0; c < C; ++c) acc += p.coat_scales[c] * float(sum(c, r, i));
      }
      y[i] = acc * p.scale * p.xscale[r] + (bias ? bias[i] : 0.0f);
    }
  }
}

}  // namespace cpu
}  // namespace slt
