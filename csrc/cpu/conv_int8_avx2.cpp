// The implicit-GEMM int8 convolution (conv_int8.h) on AVX2, from the weight's tap-major planes
// (pack_conv_taps_planes: the VNNI panels' layout, read 8 rows at a time). Compiled with -mavx2
// -mfma only in this TU and called only after a runtime CPU check (conv_int8.cpp).
//
// The panel, the vpmaddubsw micro-kernel and the store are avx2_panel.h's (the linear's too).
// The patches' path (im2col_int8 + the blocked int8 kernel) gathered every patch with byte
// transposes, ~1/5 of a 64-channel convolution on a Zen 3; here each pixel's taps are read where
// they lie in the framed image. The sums are the same integers, the scale-back store_i8_tile's
// arithmetic: the same bits.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "avx2_panel.h"
#include "conv_int8.h"

namespace slt {
namespace cpu {
namespace avx2 {

using avx2panel::kMicroTaps;
using avx2panel::kMr;
using avx2panel::kNr;

int64_t scratch_floats_conv_taps(int64_t Kt) { return kTaskRows * (Kt / 4) + 16; }

void conv_rows_int8(const LinearProblem& p, const ConvTaps& c, float* scratch, int64_t n0, int64_t n1, int64_t t0,
                    int64_t t1) {
  const int64_t Kt = c.Cp * c.g.kh * c.g.kw, rows = n1 - n0;
  uint32_t* panel = align64<uint32_t>(scratch);
  avx2panel::panel_from_bits(c.bits, Kt, n0, n1, panel);
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
        kMicroTaps[mr][nr](base, c.tap + tile.tap0, tile.taps, panel + j0, s, avx2panel::kStepsInt16);
        // store_i8_tile's step (int8_output), eight outputs at a time
        for (int64_t r = 0; r < mr; ++r) {
          const ConvPixel& px = c.pixels[p0 + r];
          float* y = p.y + px.m * p.ldy + n0 - p.row_begin + j0;
          const float* res = e && e->residual ? e->residual + px.m * e->ldr + n0 - p.row_begin + j0 : nullptr;
          avx2panel::store_int8_row(y, s[r], cols, c.row_sums[px.m], g, scale, c.image_scale[px.b],
                                    es ? es + j0 : nullptr, bias ? bias + j0 : nullptr, res, relu);
        }
      }
    }
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace slt
