// The int8 table lookups' last step (linear_avx2lut.cpp, linear_avx512lut8.cpp): a block of weight
// rows' exact int32 sums to y, rounded as every int8 kernel rounds them (rows_int8_impl,
// linear_rowdesc.inc), so that the lookups give those kernels' bits. One definition for both.
#pragma once

#include <cstdint>

#include "linear.h"
#include "quantize.h"

namespace slt {
namespace cpu {

// Weight rows [n, n + nr) of y; sum(r, i): the int32 sum of activation row r and weight row
// n + i. Sliced float activations (p.slices = D): a y row from its D slice rows' sums, the exact
// integer first, then one rounding; else y = (g * float(sum)) * scale * xscale + b.
template <class Sum>
inline void store_int8_sums(const LinearProblem& p, int64_t n, int64_t nr, Sum sum) {
  const float g = p.coat_scales[0];
  const float* bias = p.bias ? p.bias + n - p.row_begin : nullptr;
  if (p.slices) {
    const int D = p.slices;
    for (int64_t r = 0; r < p.M / D; ++r) {
      float* y = p.y + r * p.ldy + n - p.row_begin;
      const double f = double(g) * double(p.scale) * double(p.xscale[r]);
      for (int64_t i = 0; i < nr; ++i) {
        int64_t v = 0;
        for (int d = 0; d < D; ++d) v += int64_t(sum(r * D + d, i)) * slice_weight(d, D);
        y[i] = float(double(v) * f) + (bias ? bias[i] : 0.0f);
      }
    }
    return;
  }
  for (int64_t r = 0; r < p.M; ++r) {
    float* y = p.y + r * p.ldy + n - p.row_begin;
    for (int64_t i = 0; i < nr; ++i) {
      const float acc = g * float(sum(r, i));
      y[i] = acc * p.scale * p.xscale[r] + (bias ? bias[i] : 0.0f);
    }
  }
}

}  // namespace cpu
}  // namespace slt
