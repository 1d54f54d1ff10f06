// slt_conv2d_int8 of an input quantized per image (act_scale "image") as an implicit GEMM: the
// int8 kernel reads each output pixel's taps where they lie in the image, and no patch matrix is
// written. im2col_int8 + slt_linear write every patch (9x the image for a 3 x 3 kernel) and read
// it back: at 64 channels and batch 8 the gather alone had been ~1/8 of the call, and the GEMM
// read its rows from L3 rather than the image from L2.
//
// The weight's columns are taken tap-major, column t C + c for the contract's c kh kw + t, so
// that a tap's C channels are C consecutive bytes of both the pixel and the panel: each task's
// panel of u = t + 1 bytes is built as the int8 panels build it, then its bytes are permuted
// (vpshufb, per call: the weight is never stored in another order). The sums are the same
// integers as the patch matrix's, the scale-back the same roundings: the same bits.
#pragma once

#include <cstdint>
#include <string>

#include "im2col.h"
#include "linear.h"

namespace slt {
namespace cpu {

// One group of a convolution over int8 images already padded (g.pad_h = g.pad_w = 0), as the
// kernel reads it: output pixel (b, oh, ow)'s tap t = (i, j) is at image + b sb + oh stride_h
// sh + ow stride_w sw + offset[t], offset[t] = i dil_h sh + j dil_w sw (g's strides in bytes,
// channels contiguous).
struct ConvTaps {
  ConvInput g;
  const int8_t* image = nullptr;      // the group's first channel of image 0
  const float* image_scale = nullptr;  // per image
  const int32_t* row_sums = nullptr;  // per output pixel: its patch's sum of x (conv_row_sums)
  const int64_t* offset = nullptr;    // per tap
  const int32_t* column = nullptr;    // per tap-major column t C + c: the contract's c kh kw + t
  int64_t OH = 0, OW = 0;
};

// Output pixels from this many (batch OH OW) on: below it the table lookups and register
// kernels of slt_linear, which take few rows, run on the patches.
constexpr int64_t kConvTapsMinRows = 17;

// "" where conv2d_int8_taps runs this convolution on `isa` (AVX-512 VNNI; channels contiguous
// and a multiple of 4, so that a 4-byte group never spans two taps; a binary signed-constant
// weight; at least kConvTapsMinRows output pixels), else why not. (g's padding: any.)
std::string conv_int8_taps_refusal(const WeightDesc& w, const ConvInput& g, Isa isa);

// y rows (b, oh, ow) = the convolution of images xq (g's geometry and element strides, channels
// contiguous; quantized per image, image_scale[b]; padded already: g's padding 0, see
// quantize_images_padded) with weight rows [p.row_begin, p.row_end): p.y, p.ldy, p.bias and the
// weight as slt_linear takes them (p.M, p.x, p.xq, p.xscale unused). Throws
// std::invalid_argument where conv_int8_taps_refusal refuses or an argument is bad.
void conv2d_int8_taps(const LinearProblem& p, const ConvInput& g, const int8_t* xq, const float* image_scale,
                      int threads, Isa isa);

namespace avx512vnni {
int64_t scratch_floats_conv_taps(int64_t K);
// Image b's patch sums of x, row_sums[oh OW + ow] (pixel_sums: H W int32 of scratch).
void conv_row_sums(const ConvTaps& c, int64_t b, int32_t* pixel_sums, int32_t* row_sums);
// Weight rows [n0, n1) (at most kTaskRows) of output pixels [m0, m1).
void conv_rows_int8(const LinearProblem& p, const ConvTaps& c, float* scratch, int64_t n0, int64_t n1, int64_t m0,
                    int64_t m1);
}  // namespace avx512vnni

}  // namespace cpu
}  // namespace slt
