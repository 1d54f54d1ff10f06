// The implicit-GEMM int8 convolution (conv_int8.h) on AVX2, from the weight's tap-major planes
// (pack_conv_taps_planes: the VNNI panels' layout, read 8 rows at a time). Compiled with -mavx2
// -mfma only in this TU and called only after a runtime CPU check (conv_int8.cpp).
//
// Without VNNI a dword of 4 weights times 4 bytes of x is a vpmaddubsw (u = t + 1 unsigned, x
// signed: two int16 pair sums per row) added in int16, widened by vpmaddwd every
// kStepsInt16 dwords. The patches' path (im2col_int8 + the blocked int8 kernel) gathered every
// patch with byte transposes, ~1/5 of a 64-channel convolution on a Zen 3; here each pixel's
// taps are read where they lie in the framed image. The sums are the same integers, the
// scale-back store_i8_tile's arithmetic: the same bits.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "avx2_common.h"
#include "conv_int8.h"

namespace slt {
namespace cpu {
namespace avx2 {
namespace {

using avx2common::expand_bytes;

constexpr int kMr = 4;                // pixels a micro-tile (a plan tile of 8: two)
constexpr int kNr = 2;                // 8-row blocks of weight rows a micro-tile
constexpr int64_t kStepsInt16 = 64;   // dwords summed in int16: |pair sums| <= 2 * 2 * 127 = 508 a step
constexpr int64_t kGroupBytes16(int64_t Kt) { return (Kt + 31) / 32 * 8 * 16; }  // (a 16-row group's masks)

// The task's panel, [Kt / 4][kTaskRows] dwords (row n0 + i at dword i: its 4 columns' u), from
// the layout's masks (bits: the body; per 16-row group, per 4 columns c, the P then the N
// 64-bit masks, bit 4 lane + j for row 16 g + lane, column 4 c + j). Rows past n1 get u = 1.
void panel_from_bits(const uint8_t* bits, int64_t Kt, int64_t n0, int64_t n1, uint32_t* panel) {
  const int64_t C4 = Kt / 4, gbytes = kGroupBytes16(Kt);
  const __m256i one = _mm256_set1_epi8(1);
  for (int64_t r0 = n0; r0 < n1; r0 += 8) {
    uint32_t* dst = panel + (r0 - n0);
    if (r0 % 8 == 0) {  // (8 rows: one half of a group's masks)
      const uint8_t* pn = bits + r0 / 16 * gbytes + 4 * (r0 % 16 / 8);
      for (int64_t c = 0; c < C4; ++c) {
        const __m256i u =
            _mm256_add_epi8(_mm256_sub_epi8(one, expand_bytes(pn + 16 * c)), expand_bytes(pn + 16 * c + 8));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + c * kTaskRows), u);
      }
      continue;
    }
    for (int64_t i = 0; i < 8; ++i) {  // (a task off an 8-row boundary: a group of odd size, row by row)
      const int64_t n = r0 + i;
      for (int64_t c = 0; c < C4; ++c) {
        uint32_t word = 0x01010101u;
        if (n < n1) {
          uint64_t p, q;
          std::memcpy(&p, bits + n / 16 * gbytes + 16 * c, 8);
          std::memcpy(&q, bits + n / 16 * gbytes + 16 * c + 8, 8);
          for (int j = 0; j < 4; ++j)
            word += ((uint32_t(p >> (4 * (n % 16) + j)) & 1u) - (uint32_t(q >> (4 * (n % 16) + j)) & 1u)) << (8 * j);
        }
        dst[c * kTaskRows + i] = word;
      }
    }
  }
}

// Pixels [0, MR) of a tile (base: each one's tap (0, 0)) against NR 8-row blocks of the panel:
// s[r][8 j + i] = sum_k u x of pixel r and row 8 j + i, exact.
template <int MR, int NR>
void micro_taps(const int8_t* const* base, const ConvTap* tap, int64_t taps, const uint32_t* panel,
                int32_t (*s)[kNr * 8]) {
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
      const int64_t end = C4 - c < kStepsInt16 - steps ? C4 : c + (kStepsInt16 - steps);
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
      if (steps == kStepsInt16) widen();
    }
  }
  widen();
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(s[r] + 8 * j), wide[r][j]);
}

using MicroTaps = void (*)(const int8_t* const*, const ConvTap*, int64_t, const uint32_t*, int32_t (*)[kNr * 8]);
constexpr MicroTaps kMicroTaps[kMr + 1][kNr + 1] = {{nullptr, nullptr, nullptr},
                                                    {nullptr, micro_taps<1, 1>, micro_taps<1, 2>},
                                                    {nullptr, micro_taps<2, 1>, micro_taps<2, 2>},
                                                    {nullptr, micro_taps<3, 1>, micro_taps<3, 2>},
                                                    {nullptr, micro_taps<4, 1>, micro_taps<4, 2>}};

}  // namespace

int64_t scratch_floats_conv_taps(int64_t Kt) { return kTaskRows * (Kt / 4) + 16; }

void conv_rows_int8(const LinearProblem& p, const ConvTaps& c, float* scratch, int64_t n0, int64_t n1, int64_t t0,
                    int64_t t1) {
  const int64_t Kt = c.Cp * c.g.kh * c.g.kw, rows = n1 - n0;
  uint32_t* panel = align64<uint32_t>(scratch);
  panel_from_bits(c.bits, Kt, n0, n1, panel);
  const Epilogue* e = c.epilogue.empty() ? nullptr : &c.epilogue;
  const float g = p.coat_scales[0], scale = p.scale;
  const float* es = e && e->scale ? e->scale + n0 - p.row_begin : nullptr;
  const float* bias = p.bias ? p.bias + n0 - p.row_begin : nullptr;
  const bool relu = e && e->relu;
  const int8_t* base[kMr];
  alignas(32) int32_t s[kMr][kNr * 8];
  for (int64_t t = t0; t < t1; ++t) {
    const ConvTile& tile = c.tiles[t];
    for (int64_t p0 = tile.begin; p0 < tile.end; p0 += kMr) {
      const int64_t mr = tile.end - p0 < kMr ? tile.end - p0 : kMr;
      for (int64_t r = 0; r < mr; ++r) base[r] = c.image + c.pixels[p0 + r].offset;
      for (int64_t j0 = 0; j0 < rows; j0 += 8 * kNr) {
        const int64_t nr = rows - j0 <= 8 ? 1 : kNr, cols = rows - j0 < 8 * nr ? rows - j0 : 8 * nr;
        kMicroTaps[mr][nr](base, c.tap + tile.tap0, tile.taps, panel + j0, s);
        // store_i8_tile's step (int8_output), output by output
        for (int64_t r = 0; r < mr; ++r) {
          const ConvPixel& px = c.pixels[p0 + r];
          const int32_t xsum = c.row_sums[px.m];
          const float xscale = c.image_scale[px.b];
          float* y = p.y + px.m * p.ldy + n0 - p.row_begin + j0;
          const float* res = e && e->residual ? e->residual + px.m * e->ldr + n0 - p.row_begin + j0 : nullptr;
          for (int64_t n = 0; n < cols; ++n)
            y[n] = int8_output(g, s[r][n] - xsum, scale, xscale, es ? es + j0 : nullptr, bias ? bias + j0 : nullptr,
                               res, n, relu);
        }
      }
    }
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace slt
