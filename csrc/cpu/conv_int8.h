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
#include <memory>
#include <string>

#include "im2col.h"
#include "linear.h"

namespace slt {
namespace cpu {

// The output pixels whose patches have the same taps inside the image form a class (3 x 3,
// padding 1: the inside, 4 edges, 4 corners). The pixels are taken class by class, 8 to a tile,
// and a tile runs only the taps its pixels have inside the image (those of a tile across two
// classes: both's), the others reading the frame's zeros: CIFAR ResNet-18's 4 x 4 outputs
// skip 31 % of their products, 8 x 8 16 %.
struct ConvTap {
  int64_t offset = 0;  // bytes from the pixel's tap (0, 0)
  int64_t panel = 0;   // the tap's block of the tap-major panel (uint32: t C/4 kTaskRows)
  int64_t dwords = 0;  // its 4-byte groups: C/4, or a run of a kernel row's adjacent taps' (contiguous in both)
};
struct ConvTile {
  int64_t begin = 0, end = 0;  // its pixels: [begin, end) of ConvTaps::pixels
  int64_t tap0 = 0, taps = 0;  // its taps: [tap0, tap0 + taps) of ConvTaps::tap
};
struct ConvPixel {
  int64_t offset = 0;  // its tap (0, 0): bytes from ConvTaps::image
  int32_t m = 0, b = 0;  // its output row (b, oh, ow) and image
};

// One group of a convolution over int8 images in a zero frame of g's padding, as the kernel
// reads it.
struct ConvTaps {
  ConvInput g;                         // the convolution; g.sb, g.sh, g.sw: the framed images' bytes
  const int8_t* image = nullptr;       // image 0's frame corner, the group's first channel
  const float* image_scale = nullptr;  // per image
  const int32_t* row_sums = nullptr;   // per output row: its patch's sum of x (conv_row_sums)
  const int32_t* column = nullptr;     // per tap-major column t C + c: the contract's c kh kw + t
  const ConvPixel* pixels = nullptr;   // the output pixels, class by class
  const ConvTile* tiles = nullptr;
  const ConvTap* tap = nullptr;
  int64_t OH = 0, OW = 0;
  int64_t Cp = 0;                      // channels a tap in the images and the panel: g.C padded to 4
  const uint8_t* bits = nullptr;       // or null: the weight's tap-major panel masks (pack_conv_taps_planes)
  Epilogue epilogue;                   // around the bias, in the output tiles' store
};

// Output pixels from this many (batch OH OW) on: below it each task's panel permute costs more
// than the patches' gather saves (Zen 4, one thread, 512 channels: 0.92x the patches at 7 x 7
// and 49 pixels, 0.94x at 4 x 4 and 32; 1.03-1.12x at 64 and 98). With the weight's tap-major
// panel masks given (no permute, no sign hash, two blends a panel zmm) at any number: 512
// channels at 4 x 4, batch 1 (16 pixels), one thread, 0.27 ms against the patches' (and their
// int8 table lookup's) 0.29-0.30.
constexpr int64_t kConvTapsMinRows = 64;

// A binary signed-constant conv weight's planes P = mask & ~sign and N = mask & sign with its
// columns tap-major (column t Cp + c holds the contract's c taps + t for c < C, channels C
// padded to Cp = taps_channels(C); the padding's columns 0), in the int8 panels' layout of
// those Kt = taps Cp columns (LutLayout::kPanels, linear.h: per 16-row group and 4 columns the
// byte masks of P and N), after a 64-byte header (LutPlanesHeader's, its own magic, the taps in
// it): two bits per weight, a cache of the caller's (slt_hw/backends/cpu.py, a mask's second
// use on), which spares each call the sign hash, the panels' permute and their build (a task
// from a 16-row group makes its panel with two blends a zmm).
int64_t conv_taps_planes_bytes(const WeightDesc& w, int64_t taps);
void pack_conv_taps_planes(const WeightDesc& w, int64_t taps, uint8_t* dst, int64_t bytes, int threads);
// "" where buf (bytes long) holds this weight's tap-major planes for `taps` taps, else what is wrong.
std::string check_conv_taps_planes(const WeightDesc& w, int64_t taps, const uint8_t* buf, int64_t bytes);

// Channels a tap in the implicit GEMM's images and panels: C rounded up to a multiple of 4, so
// that a 4-byte group never spans two taps (the images' padding channels are zeros).
int64_t taps_channels(int64_t C);

// "" where conv2d_int8_taps runs this convolution on `isa` (AVX-512 VNNI, or AVX2 with the
// weight's tap-major planes; channels contiguous
// and a multiple of 4, or one group (g.sw == g.C): the caller then frames the images with
// channels padded to taps_channels(C); a binary signed-constant
// weight; a kernel of at most 64 x 64; kConvTapsMinRows (any where the
// weight's tap-major planes come with the call) to 2^31 - 1 output pixels), else why not. (g's
// padding: any.)
std::string conv_int8_taps_refusal(const WeightDesc& w, const ConvInput& g, Isa isa, bool planes = false);

// y rows (b, oh, ow) = the convolution g of images quantized per image (image_scale[b]) into a
// zero frame of g's padding (quantize_images_padded): xq their first frame's corner, g.sb, g.sh,
// g.sw the framed images' strides in bytes, channels contiguous and, for C not a multiple of 4,
// padded with zeros to taps_channels(C) (g.sw at least that); with weight rows [p.row_begin,
// p.row_end): p.y, p.ldy, p.bias and the weight as slt_linear takes them (p.M, p.x, p.xq,
// p.xscale unused); planes: null, or the weight's tap-major planes (pack_conv_taps_planes,
// planes_bytes long); e: the epilogue around the bias (its residual rows as y's, e.ldr apart).
// Throws std::invalid_argument where conv_int8_taps_refusal refuses or an argument is bad
// (planes of another weight or kernel included).
// plan: conv_taps_plan(g)'s (a prepared call's, made once), or null: the call makes its own.
struct ConvTapsPlan;
void conv2d_int8_taps(const LinearProblem& p, const ConvInput& g, const int8_t* xq, const float* image_scale,
                      int threads, Isa isa, const uint8_t* planes = nullptr, int64_t planes_bytes = 0,
                      const Epilogue& e = {}, const ConvTapsPlan* plan = nullptr);
// What conv2d_int8_taps derives from g alone (the tap-major columns' order, the output pixels
// by padding class, their tiles and taps), for calls on inputs of g's shape, strides and
// geometry (any data); conv2d_int8_taps refuses it for another g. Throws std::invalid_argument
// for a bad g.
std::shared_ptr<const ConvTapsPlan> conv_taps_plan(const ConvInput& g);

// Image b's patch sums of x (as avx512vnni::conv_row_sums), in portable C++: AVX2's.
void conv_row_sums_portable(const ConvTaps& c, int64_t b, int32_t* pixel_sums, int32_t* row_sums);

// AVX2 (conv_int8_avx2.cpp): from the weight's tap-major planes only (c.bits), any n0.
namespace avx2 {
int64_t scratch_floats_conv_taps(int64_t Kt);
void conv_rows_int8(const LinearProblem& p, const ConvTaps& c, float* scratch, int64_t n0, int64_t n1, int64_t t0,
                    int64_t t1);
}  // namespace avx2

namespace avx512vnni {
int64_t scratch_floats_conv_taps(int64_t Kt);  // (Kt: the tap-major columns, Cp kh kw)
// Image b's patch sums of x, row_sums[oh OW + ow] (pixel_sums: the framed image's pixels, int32).
void conv_row_sums(const ConvTaps& c, int64_t b, int32_t* pixel_sums, int32_t* row_sums);
// Weight rows [n0, n1) (at most kTaskRows) of tiles [t0, t1).
void conv_rows_int8(const LinearProblem& p, const ConvTaps& c, float* scratch, int64_t n0, int64_t n1, int64_t t0,
                    int64_t t1);
}  // namespace avx512vnni

}  // namespace cpu
}  // namespace slt
