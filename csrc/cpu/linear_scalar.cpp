// Portable row kernels of the fused linear (linear.h): the fallback on any CPU, and the
// yardstick the SIMD variants are tested against.
#include "../core/slt_contract.h"
#include "linear.h"

namespace slt {
namespace cpu {
namespace scalar {
namespace {

inline void hash_range(uint32_t k0, uint32_t k1, uint32_t base, uint32_t count, uint32_t* out) {
  for (uint32_t i = 0; i < count; ++i) out[i] = hash32(k0, k1, base + i);
}

constexpr int64_t kI8Rows = 4;

inline void dot_i8(const int8_t* xq, int64_t Kp, int64_t Mt, int64_t m0, int64_t mb, const uint32_t* sw,
                   const uint32_t* mw, int64_t W, int32_t* out) {
  (void)Mt;  // rows are Kp apart here
  for (int64_t r = 0; r < mb; ++r) {
    const int8_t* x = xq + (m0 + r) * Kp;
    int32_t s = 0;
    for (int64_t w = 0; w < W; ++w)
      for (uint32_t m = mw[w]; m; m &= m - 1) {
        const int j = __builtin_ctz(m);
        s += ((sw[w] >> j) & 1u) ? -int32_t(x[32 * w + j]) : int32_t(x[32 * w + j]);
      }
    out[r] = s;
  }
}

// No vector conversion of values: row_values converts every hash itself.
inline uint32_t simd_values(const uint32_t*, uint32_t, int, float, float*) { return 0; }

#include "linear_rowdesc.inc"

}  // namespace

bool rows(const LinearProblem& p, const float* xp, float* scratch, int64_t n0, int64_t n1) {
  const int64_t W = words_per_row(uint32_t(p.K)), Kp = 32 * W;
  const bool frozen = p.planes == nullptr;
  const RowScratch s = row_scratch(scratch, W);
  const uint32_t* sw = s.sw;
  const uint32_t* em = s.em;
  const float* vals = s.vals;
  float wv[32];
  for (int64_t n = n0; n < n1; ++n) {
    if (!describe(p, n, 0, uint32_t(W), s)) return false;
    const int32_t* row_planes = frozen ? nullptr : p.planes + n * W;
    for (int64_t m = 0; m < p.M; ++m) p.y[m * p.ldy + n - p.row_begin] = 0.0f;
    for (int64_t w = 0; w < W; ++w) {
      const uint32_t any = frozen ? em[w] : uint32_t(row_planes[w]);
      if (!any) continue;
      for (int j = 0; j < 32; ++j) {
        const float base = p.dist == kSignedConstant ? signed_value((sw[w] >> j) & 1u, p.scale)
                                                     : vals[32 * w + j];
        float g = 0.0f;
        if (frozen) {
          g = float((any >> j) & 1u);
        } else {
          for (int64_t i = 0; i < p.C; ++i)
            if ((uint32_t(row_planes[i * p.N * W + w]) >> j) & 1u) g += p.coat_scales[i];
        }
        wv[j] = base * g;
      }
      for (int64_t m = 0; m < p.M; ++m) {
        const float* xr = xp + m * Kp + 32 * w;
        float s = 0.0f;
        for (int j = 0; j < 32; ++j) s += wv[j] * xr[j];
        p.y[m * p.ldy + n - p.row_begin] += s;
      }
    }
    if (p.bias)
      for (int64_t m = 0; m < p.M; ++m) p.y[m * p.ldy + n - p.row_begin] += p.bias[n - p.row_begin];
  }
  return true;
}

bool rows_int8(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1) {
  return rows_int8_impl(p, xq, scratch, n0, n1);
}

bool frozen_mask_rows(const LinearProblem& p, int64_t n0, int64_t n1, uint32_t* h, int32_t* out) {
  const uint32_t W = words_per_row(uint32_t(p.K));
  for (int64_t n = n0; n < n1; ++n)
    if (!frozen_mask_words(p, n, 0, W, h, reinterpret_cast<uint32_t*>(out + n * W))) return false;
  return true;
}

}  // namespace scalar
}  // namespace cpu
}  // namespace slt
