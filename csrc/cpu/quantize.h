// The int8 activation quantizer of the CPU int8 path, in C++ so that a small call does not pay
// seven torch operator calls (~80 us) before its kernel. The same bits as
// slt_hw/reference/quantize.py for finite x (tests/test_cpu_kernels.py checks it).
#pragma once

#include <cstdint>

#include "linear.h"

namespace slt {
namespace cpu {

// Dynamic per-row symmetric int8: s[m] = max_k |x[m, k]| / 127 (1 where that is 0), q[m, k] =
// round half to even of clamp(x[m, k] / s[m], -127, 127); x rows ldx apart, q rows K apart.
// NaN activations quantize to 0.
void quantize_int8_rows(const float* x, int64_t M, int64_t K, int64_t ldx, int8_t* q, float* s);
// Its two halves, so that threads can split one row: max |x| of n floats (NaN skipped), the
// row's scale from it, x quantized with a given scale. Each ISA's copy (avx2::, avx512:: in
// im2col.h) has these bits for finite x.
float abs_max(const float* x, int64_t n);
float row_scale(float amax);
void quantize_scaled(const float* x, int64_t n, float sc, int8_t* q);
// quantize_int8_rows with isa's vectors (AVX-512's or AVX2's halves: the same bits for finite
// x) on `threads` threads: rows, or slices of each row where the rows are fewer than the threads
// (slt_conv2d_int8's act_scale "image" quantizes each image as one row). Throws
// std::invalid_argument.
void quantize_int8_rows_isa(const float* x, int64_t M, int64_t K, int64_t ldx, int8_t* q, float* s, int threads,
                            Isa isa);
// quantize_int8_rows_isa of B channels-last images (x: B x H x W x C floats, contiguous), an
// image a row, each written into the middle of a zero frame, q: B x (H + 2 pad_h) x (W + 2
// pad_w) x Cq bytes, Cq >= C channels a pixel, those past C zero (slt_conv2d_int8's implicit
// GEMM reads its taps without a padding test, and 4 channels at a time).
void quantize_images_padded(const float* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t pad_h, int64_t pad_w,
                            int8_t* q, float* s, int threads, Isa isa, int64_t Cq = -1);

// Float activations as D int8 rows each (the Ozaki scheme's splitting, for the int8 table
// lookup): row m is v = round(x[m, k] / s[m]) (|v| <= slice_half(D)), with s[m] the float
// nearest max_k |x[m, k]| / slice_half(D) from which that quotient stays within slice_half(D)
// (1 where it is 0), written in balanced base 255: v = sum_d q[m D + d, k] * 255^(D - 1 - d),
// digits in [-127, 127], most significant first (rows K apart). Each x is then within s[m] / 2
// of v s[m]: 2^-24 (D = 3) or 2^-32 (D = 4) of the row's largest value; the int sums of the
// slices recombine exactly (slice_weight).
constexpr int kMinSlices = 3, kMaxSlices = 4;
constexpr int64_t kSliceBase = 255;
constexpr int64_t slice_weight(int d, int D) { return d >= D - 1 ? 1 : kSliceBase * slice_weight(d + 1, D); }
constexpr int64_t slice_half(int D) { return (slice_weight(-1, D) - 1) / 2; }  // (255^D - 1) / 2
void slice_int8_rows(const float* x, int64_t M, int64_t K, int64_t ldx, int D, int8_t* q, float* s);

// How many slices (slice_int8_rows) keep x's rounding error below what float32 sums of x w
// accumulate anyway. The rounding adds a random walk of K steps of s / sqrt(12) to a dot
// product; float32 accumulation one of K roundings of sums that grow as sqrt(k) rms(x); so the
// ratio of the two goes as max|x| / (rms(x) sqrt(K)) 255^(3 - D). 3 slices serve while
// max|x| / rms(x) <= sqrt(K) / 8 in every row, 4 otherwise (far below the bound, since max|x| /
// rms(x) <= sqrt(K)): the constant measured (11008, 4096, 1000 and 64 columns; Gaussian,
// uniform, ReLU, sparse, log-normal and outlier-channel activations: tests/test_lut_planes.py)
// to keep the RMS error within 1.2x that of the float kernels (0.07-1.16x). 0 where a row holds
// a NaN or an infinity (then the float kernels run).
int slice_count(const float* x, int64_t M, int64_t K, int64_t ldx);
}  // namespace cpu
}  // namespace slt
