// im2col for the int8 convolution: each output pixel's patch gathered in the contract's column
// order and quantized as one activation row (quantize.h), so that slt_conv2d_int8 is
// slt_linear_int8 over F.unfold's rows without F.unfold's float patch matrix (9x the input for
// a 3x3 kernel, written and read back once more by the quantizer).
#pragma once

#include <cstdint>
#include <string>

#include "linear.h"

namespace slt {
namespace cpu {

// One group's input: C channels of x (float32; im2col_int8: int8, x unused) at element strides
// (sb, sc, sh, sw), so any layout (NCHW, channels last, a channel slice) is read in place.
struct ConvInput {
  const float* x = nullptr;
  int64_t B = 0, C = 0, H = 0, W = 0;
  int64_t sb = 0, sc = 0, sh = 0, sw = 0;
  int64_t kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0, dil_h = 1, dil_w = 1;
};

// Output pixels (F.conv2d's OH, OW of this geometry) and why the geometry is refused ("" if not).
int64_t conv_out_h(const ConvInput& g);
int64_t conv_out_w(const ConvInput& g);
std::string check_conv_input(const ConvInput& g);

// Rows [m0, m1) of the patch matrix (M = B * OH * OW rows, row m = (b, oh, ow); K = C * kh * kw
// columns, column (c * kh + i) * kw + j as F.unfold; zero padding), each quantized as
// quantize_int8_rows quantizes a row: q (m1 - m0) x K, s (m1 - m0). Throws std::invalid_argument.
// isa: the gather's instruction set (patch_gather_name), the same bits whichever.
void im2col_quantize_int8(const ConvInput& g, int64_t m0, int64_t m1, int8_t* q, float* s, int threads,
                          Isa isa = best_isa());

// Rows [m0, m1) of the patch matrix of an input quantized per image (xq: g's geometry and
// element strides, g.x unused), F.unfold's columns byte for byte (zero padding), each row's
// scale its image's image_scale[b] (x quantized per image: quantize_int8_rows_isa, an image a
// row): q (m1 - m0) x K, s (m1 - m0). Throws std::invalid_argument.
void im2col_int8(const ConvInput& g, const int8_t* xq, const float* image_scale, int64_t m0, int64_t m1, int8_t* q,
                 float* s, int threads, Isa isa = best_isa());

// Which gather im2col_quantize_int8 (quantized = true: im2col_int8) runs for this input on
// `isa`: "avx512-vbmi" (AVX-512 with VBMI, channels contiguous and a multiple of 16, at most
// kPatchTapsAvx512 taps), "avx2" (channels contiguous; float: quantized in its transposes where
// they are a multiple of 8 and there are 8 taps or more; int8: channels a multiple of 16, at most
// 16 taps), else "scalar".
constexpr int64_t kPatchTapsAvx512 = 16;
const char* patch_gather_name(const ConvInput& g, Isa isa, bool quantized = false);
// Whether `isa` is an AVX-512 one that this CPU runs with VBMI (emulated builds: always).
bool patch_vbmi_supported(Isa isa);

// dst[b] = src[b]^T for `batch` float32 matrices of rows x cols (contiguous, one after the
// other): NCHW <-> channels last, (C, H*W) <-> (H*W, C), in 8 x 8 register transposes where the
// CPU has AVX2. Threads take whole matrices.
void transpose_batched(const float* src, float* dst, int64_t batch, int64_t rows, int64_t cols, int threads);

// One patch from channels-contiguous taps (tap[t]: C floats, or null for padding) into
// patch[c * taps + t]: 8 x 8 register transposes (im2col_avx2.cpp).
namespace avx2 {
void gather_patch(const float* const* tap, int64_t C, int64_t taps, float* patch);
// quantize_int8_rows of one row, 8 lanes wide: its bits for finite x (NaN still quantizes to 0);
// and its halves (quantize.h's abs_max, quantize_scaled).
void quantize_row(const float* x, int64_t K, int8_t* q, float* s);
float abs_max(const float* x, int64_t n);
void quantize_scaled(const float* x, int64_t n, float sc, int8_t* q);
// gather_patch and quantize_row in one, the patch never stored as floats: q[c * taps + t] and
// *s, quantize_row's bits for finite x (the maximum taken in another order). C a multiple of 8,
// taps >= 8 (a 3 x 3 convolution's).
void gather_quantize_patch(const float* const* tap, int64_t C, int64_t taps, int8_t* q, float* s);
// One patch of int8 taps (tap[t]: C bytes; padding taps point at zeros) into q[c * taps + t]:
// 16 x 16 byte transposes, two at a time. C a multiple of 16, taps <= 16.
void gather_patch_int8(const int8_t* const* tap, int64_t C, int64_t taps, int8_t* q);
}

namespace avx512 {
// vpermi2b indices and masks that take 16 channels' taps, four taps to a zmm of bytes, to the
// contract's (channel, tap) byte order: output zmm j, source pair p (taps 8 p .. 8 p + 7). The
// sources' layout: kPacked, pack_taps' (quantized floats: per 128-bit lane l, each tap's
// channels 4 l .. 4 l + 3); kLanes, tap t % 4's 16 channels in 128-bit lane t % 4 (int8 taps).
// Made once per call (portable code, im2col.cpp); taps <= kPatchTapsAvx512.
struct PatchOrder {
  enum class Layout { kPacked, kLanes };
  explicit PatchOrder(int64_t taps, Layout layout = Layout::kPacked);
  int64_t taps;
  alignas(64) uint8_t index[4][2][64];  // (ceil(taps / 4) output zmm per 16 channels)
  uint64_t mask[4][2];
};
// max |x| of n floats, NaN skipped: a pixel's (its C channels), once per call, so that a patch's
// maximum is its taps' (taking it over the patch's 9 x C values had been ~15 % of the patch's
// time); or a slice of a row's (quantize_int8_rows_isa).
float abs_max(const float* x, int64_t n);
// quantize.h's quantize_scaled 16 lanes wide, 64 values a store: its bits for finite x.
void quantize_scaled(const float* x, int64_t n, float sc, int8_t* q);
// gather_quantize_patch of im2col_avx2.cpp, 16 channels at a time (im2col_avx512.cpp): C a
// multiple of 16, order.taps taps, amax the patch's max |x| (its taps' abs_max);
// q[c * taps + t] and *s, quantize_row's bits for finite x.
void gather_quantize_patch(const float* const* tap, int64_t C, const PatchOrder& order, float amax, int8_t* q,
                           float* s);
// avx2::gather_patch_int8 with byte permutes (order: kLanes): C a multiple of 16, a function
// per tap count.
void gather_patch_int8(const int8_t* const* tap, int64_t C, const PatchOrder& order, int8_t* q);
}

}  // namespace cpu
}  // namespace slt
