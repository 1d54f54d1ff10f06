// im2col for the int8 convolution: each output pixel's patch gathered in the contract's column
// order and quantized as one activation row (quantize.h), so that slt_conv2d_int8 is
// slt_linear_int8 over F.unfold's rows without F.unfold's float patch matrix (9x the input for
// a 3x3 kernel, written and read back once more by the quantizer).
#pragma once

#include <cstdint>
#include <string>

namespace slt {
namespace cpu {

// One group's input: C channels of x (float32) at element strides (sb, sc, sh, sw), so any
// layout (NCHW, channels last, a channel slice) is read in place.
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
void im2col_quantize_int8(const ConvInput& g, int64_t m0, int64_t m1, int8_t* q, float* s, int threads);

// dst[b] = src[b]^T for `batch` float32 matrices of rows x cols (contiguous, one after the
// other): NCHW <-> channels last, (C, H*W) <-> (H*W, C), in 8 x 8 register transposes where the
// CPU has AVX2. Threads take whole matrices.
void transpose_batched(const float* src, float* dst, int64_t batch, int64_t rows, int64_t cols, int threads);

// One patch from channels-contiguous taps (tap[t]: C floats, or null for padding) into
// patch[c * taps + t]: 8 x 8 register transposes (im2col_avx2.cpp).
namespace avx2 {
void gather_patch(const float* const* tap, int64_t C, int64_t taps, float* patch);
// quantize_int8_rows of one row, 8 lanes wide: its bits for finite x (NaN still quantizes to 0).
void quantize_row(const float* x, int64_t K, int8_t* q, float* s);
// gather_patch and quantize_row in one, the patch never stored as floats: q[c * taps + t] and
// *s, quantize_row's bits for finite x (the maximum taken in another order). C a multiple of 8,
// taps >= 8 (a 3 x 3 convolution's).
void gather_quantize_patch(const float* const* tap, int64_t C, int64_t taps, int8_t* q, float* s);
}

}  // namespace cpu
}  // namespace slt
