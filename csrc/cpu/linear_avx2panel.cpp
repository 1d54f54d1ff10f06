// AVX2's int8 panels (linear.h): int8 activations past the table lookup's rows, binary
// signed-constant weights, from the panels' layout (LutLayout::kPanels: the VNNI panels' masks,
// cached by the caller from a mask's second use on). Compiled with -mavx2 -mfma only in this TU
// and called only after a runtime CPU check (linear.cpp).
//
// The implicit-GEMM convolution's micro-kernel (avx2_panel.h) with one tap: a task's panel of
// kTaskRows weight rows (u = t + 1 bytes) is built once from the layout's bits and read by every
// activation row, 4 rows by 16 weight rows a micro-tile. The table lookup reads tables of 8 bytes
// per activation row and column again for every 32 weight rows, which at 128 rows and more of 4096
// columns pass L2 (docs/benchmarks.md, issue 18 step 21).
#include <immintrin.h>

#include <cstdint>

#include "avx2_panel.h"
#include "linear.h"

namespace slt {
namespace cpu {
namespace avx2 {
namespace {

// sum_k x[k] over Kp bytes (a multiple of 32), exact.
int32_t row_sum(const int8_t* x, int64_t Kp) {
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  for (int64_t k = 0; k < Kp; k += 32) {
    const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, v), ones16));
  }
  return avx2common::hsum_epi32(acc);
}

}  // namespace

int64_t scratch_floats_i8_panel(int64_t K) { return scratch_floats_conv_taps((K + 31) / 32 * 32); }  // (one tap)

bool rows_int8_panel(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1) {
  using avx2panel::kMr;
  using avx2panel::kNr;
  const int64_t Kp = (p.K + 31) / 32 * 32, rows = n1 - n0;
  // (coats sharing a scale, i8panel_applies: one panel of their levels, u = C + t)
  const int64_t coats = p.C, steps16 = avx2panel::kStepsInt16 / coats;
  uint32_t* panel = align64<uint32_t>(scratch);
  avx2panel::panel_from_bits(p.lut_planes + sizeof(LutPlanesHeader), Kp, n0, n1, panel, coats,
                             panel_layout_bytes(p.N, p.K));
  const ConvTap tap{0, 0, Kp / 4};  // (one tap: the whole row)
  const float g = p.coat_scales[0];
  const float* bias = p.bias ? p.bias + n0 - p.row_begin : nullptr;
  const int8_t* base[kMr];
  int32_t xsum[kMr];
  alignas(32) int32_t s[kMr][kNr * 8];
  for (int64_t m0 = 0; m0 < p.M; m0 += kMr) {
    const int64_t mr = p.M - m0 < kMr ? p.M - m0 : kMr;
    for (int64_t r = 0; r < mr; ++r) {
      base[r] = xq + (m0 + r) * Kp;
      xsum[r] = int32_t(coats) * row_sum(base[r], Kp);  // (u = t + C: sum u x - C sum x)
    }
    for (int64_t j0 = 0; j0 < rows; j0 += 8 * kNr) {
      const int64_t nr = rows - j0 <= 8 ? 1 : kNr, cols = rows - j0 < 8 * nr ? rows - j0 : 8 * nr;
      avx2panel::kMicroTaps[mr][nr](base, &tap, 1, panel + j0, s, steps16);
      for (int64_t r = 0; r < mr; ++r)
        avx2panel::store_int8_row(p.y + (m0 + r) * p.ldy + n0 - p.row_begin + j0, s[r], cols, xsum[r], g, p.scale,
                                  p.xscale[m0 + r], nullptr, bias ? bias + j0 : nullptr, nullptr, false);
    }
  }
  return true;
}

}  // namespace avx2
}  // namespace cpu
}  // namespace slt
