// What AVX2's int8 panel GEMMs share (conv_int8_avx2.cpp: the implicit-GEMM convolution;
// linear_avx2panel.cpp: the linear past the table lookup's rows): a task's panel from the
// panels' layout (the VNNI panels' masks, read 8 rows at a time), the vpmaddubsw micro-kernel
// and the int8 store in vectors. Include it only from translation units compiled with -mavx2;
// internal linkage, as avx2_common.h.
//
// Without VNNI a dword of 4 weights times 4 bytes of x is a vpmaddubsw (u = t + 1 unsigned, x
// signed: two int16 pair sums per row) added in int16, widened by vpmaddwd every kStepsInt16
// dwords. The sums are exact integers, scaled back with int8_output's arithmetic: the bits of
// every other int8 kernel.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "avx2_common.h"
#include "conv_int8.h"
#include "linear.h"

namespace slt {
namespace cpu {
namespace avx2panel {
namespace {

constexpr int kMr = 4;                // activation rows (pixels) a micro-tile
constexpr int kNr = 2;                // 8-row blocks of weight rows a micro-tile
constexpr int64_t kStepsInt16 = 64;   // dwords summed in int16: |pair sums| <= 2 * 2 * 127 = 508 a step

// The task's panel, [Kt / 4][kTaskRows] dwords (row n0 + i at dword i: its 4 columns' u), from
// the layout's masks (bits: the body; per 16-row group, per 4 columns c, the P then the N
// 64-bit masks, bit 4 lane + j for row 16 g + lane, column 4 c + j). Rows past n1 get u = 1.
// Coats sharing a scale (coat_levels; `coats` layouts, coat_bytes apart): u = sum of the coats'
// u = coats + t, t = +-level (u <= 2 coats: micro_taps' steps16 shrinks to match).
inline void panel_from_bits(const uint8_t* bits, int64_t Kt, int64_t n0, int64_t n1, uint32_t* panel,
                            int64_t coats = 1, int64_t coat_bytes = 0) {
  const int64_t C4 = Kt / 4, gbytes = panel_group_bytes(Kt);
  const __m256i base = _mm256_set1_epi8(int8_t(coats));
  for (int64_t r0 = n0; r0 < n1; r0 += 8) {
    uint32_t* dst = panel + (r0 - n0);
    if (r0 % 8 == 0) {  // (8 rows: one half of a group's masks)
      const uint8_t* pn = bits + r0 / 16 * gbytes + 4 * (r0 % 16 / 8);
      for (int64_t c = 0; c < C4; ++c) {
        __m256i u = base;
        for (int64_t l = 0; l < coats; ++l)
          u = _mm256_add_epi8(_mm256_sub_epi8(u, avx2common::expand_bytes(pn + l * coat_bytes + 16 * c)),
                              avx2common::expand_bytes(pn + l * coat_bytes + 16 * c + 8));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c * kTaskRows), u);
      }
      continue;
    }
    for (int64_t i = 0; i < 8; ++i) {  // (a task off an 8-row boundary: a group of odd size, row by row)
      const int64_t n = r0 + i;
      for (int64_t c = 0; c < C4; ++c) {
        uint32_t word = 0x01010101u * uint32_t(coats);
        for (int64_t l = 0; l < coats && n < n1; ++l) {
          uint64_t p, q;
          std::memcpy(&p, bits + l * coat_bytes + n / 16 * gbytes + 16 * c, 8);
          std::memcpy(&q, bits + l * coat_bytes + n / 16 * gbytes + 16 * c + 8, 8);
          for (int j = 0; j < 4; ++j)
            word += ((uint32_t(p >> (4 * (n % 16) + j)) & 1u) - (uint32_t(q >> (4 * (n % 16) + j)) & 1u)) << (8 * j);
        }
        dst[c * kTaskRows + i] = word;
      }
    }
  }
}

// Rows (pixels) [0, MR) (base: each one's tap (0, 0)) against NR 8-row blocks of the panel:
// s[r][8 j + i] = sum_k u x of row r and weight row 8 j + i, exact. A linear is one tap. The
// int16 sums are widened every steps16 dwords: kStepsInt16 for u <= 2, kStepsInt16 / C for
// coats' levels (u <= 2 C).
template <int MR, int NR>
void micro_taps(const int8_t* const* base, const ConvTap* tap, int64_t taps, const uint32_t* panel,
                int32_t (*s)[kNr * 8], int64_t steps16) {
  const __m256i zero = _mm256_setzero_si256(), ones = _mm256_set1_epi16(1);
  __m256i acc[MR][NR], wide[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) acc[r][j] = wide[r][j] = zero;
  int64_t steps = 0;
  auto widen = [&]() {
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) wide[r][j] = _mm256_add_epi32(wide[r][j], _mm256_madd_epi16(acc[r][j], ones));
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] = zero;
    steps = 0;
  };
  for (int64_t t = 0; t < taps; ++t) {
    const int8_t* x[MR];
    for (int r = 0; r < MR; ++r) x[r] = base[r] + tap[t].offset;
    const uint32_t* pt = panel + tap[t].panel;
    for (int64_t c = 0, C4 = tap[t].dwords; c < C4;) {
      const int64_t end = C4 - c < steps16 - steps ? C4 : c + (steps16 - steps);
      steps += end - c;
      for (; c < end; ++c) {
        __m256i wv[NR];
        for (int j = 0; j < NR; ++j)
          wv[j] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pt + c * kTaskRows + 8 * j));
        for (int r = 0; r < MR; ++r) {
          int32_t four;
          std::memcpy(&four, x[r] + 4 * c, 4);
          const __m256i xv = _mm256_set1_epi32(four);
          for (int j = 0; j < NR; ++j) acc[r][j] = _mm256_add_epi16(acc[r][j], _mm256_maddubs_epi16(wv[j], xv));
        }
      }
      if (steps == steps16) widen();
    }
  }
  widen();
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(s[r] + 8 * j), wide[r][j]);
}

using MicroTaps = void (*)(const int8_t* const*, const ConvTap*, int64_t, const uint32_t*, int32_t (*)[kNr * 8],
                          int64_t);
constexpr MicroTaps kMicroTaps[kMr + 1][kNr + 1] = {{nullptr, nullptr, nullptr},
                                                    {nullptr, micro_taps<1, 1>, micro_taps<1, 2>},
                                                    {nullptr, micro_taps<2, 1>, micro_taps<2, 2>},
                                                    {nullptr, micro_taps<3, 1>, micro_taps<3, 2>},
                                                    {nullptr, micro_taps<4, 1>, micro_taps<4, 2>}};

// y[n] = int8_output(g, s[n] - xsum, scale, xscale, es, bias, res, n, relu) for n < cols: eight
// at a time in the same order of float32 steps (no FMA), so the same bits; the rest one by one.
inline void store_int8_row(float* y, const int32_t* s, int64_t cols, int32_t xsum, float g, float scale,
                           float xscale, const float* es, const float* bias, const float* res, bool relu) {
  const __m256i vx = _mm256_set1_epi32(xsum);
  const __m256 vg = _mm256_set1_ps(g), vs = _mm256_set1_ps(scale), vxs = _mm256_set1_ps(xscale),
               zero = _mm256_setzero_ps();
  int64_t n = 0;
  for (; n + 8 <= cols; n += 8) {
    const __m256i d = _mm256_sub_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + n)), vx);
    __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_mul_ps(vg, _mm256_cvtepi32_ps(d)), vs), vxs);
    if (es) v = _mm256_mul_ps(v, _mm256_loadu_ps(es + n));
    v = _mm256_add_ps(v, bias ? _mm256_loadu_ps(bias + n) : zero);
    if (res) v = _mm256_add_ps(v, _mm256_loadu_ps(res + n));
    if (relu) v = _mm256_max_ps(zero, v);  // (the second operand on NaN, as int8_output keeps it)
    _mm256_storeu_ps(y + n, v);
  }
  for (; n < cols; ++n) y[n] = int8_output(g, s[n] - xsum, scale, xscale, es, bias, res, n, relu);
}

}  // namespace
}  // namespace avx2panel
}  // namespace cpu
}  // namespace slt
