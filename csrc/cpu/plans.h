// Prepared calls' kernel sequences held in C++, made once per input shape and run with one call
// from Python: a linear's (LinearPlan: the int8 path's quantizer, then slt_linear) and an int8
// convolution's (ConvInt8Plan). Each runs the same kernels with the same arguments as the op's
// Python path, so the same bits; what a call then costs in Python is its checks, the output's
// allocation and one call (~25 µs of op layer and argument conversion a linear, ~60 + 20 µs a
// convolution, otherwise).
//
// ConvInt8Plan: slt_conv2d_int8's kernel calls for one convolution and one input shape, in order:
// what slt_hw/backends/cpu.py's TapsCall or PatchesCall derives (the weight, the geometry, the
// ISA and threads, the cached layouts, the chunks, the epilogue's scale and bias). The op makes
// one per call; a prepared call (SLTFusedConv2d's) makes one once and runs it every forward,
// the implicit GEMM's pixel classes and tiles (conv_taps_plan) included.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "conv_int8.h"
#include "im2col.h"
#include "linear.h"

namespace slt {
namespace cpu {

struct LinearPlanSpec {
  WeightDesc w;  // the packed weight (its masks stay the caller's to keep alive, as every pointer here)
  int64_t M = 0;  // activation rows, K floats each, contiguous
  int64_t row_begin = 0, row_end = 0;
  bool int8 = false;  // x quantized per row first (slt_linear_int8)
  Isa isa = Isa::kScalar;  // parse_isa's; isa_auto: the caller said "auto" (auto_isa's choice)
  bool isa_auto = false;
  LutMode lut = LutMode::kAuto;
  int threads = 0;
  const uint8_t* lut_planes = nullptr;  // the table lookup's layout for M rows, or null
  int64_t lut_planes_bytes = 0;
  const float* bias = nullptr;  // row_end - row_begin, or null
};

class LinearPlan {
 public:
  // Throws std::invalid_argument for a bad weight, rows or M.
  explicit LinearPlan(LinearPlanSpec spec);
  // y (M rows of row_end - row_begin floats) = x W_eff[row_begin:row_end]^T + bias, x: M rows of
  // K floats, contiguous. Safe to call from several threads at once (its scratch is the call's).
  void run(const float* x, float* y) const;

 private:
  LinearPlanSpec s_;
};

struct ConvInt8PlanSpec {
  WeightDesc w;        // the packed weight (its masks stay the caller's to keep alive, as every pointer here)
  ConvInput x;         // x: float32, its shape (B, C, H, W) and element strides, the geometry (x.x unused)
  int64_t groups = 1;
  bool taps = false;   // the implicit GEMM (act_scale "image"), else the patch matrix
  bool image = false;  // the patch matrix's act_scale: "image", else "patch"
  Isa isa = Isa::kScalar;  // parse_isa's; isa_auto: the caller said "auto" (slt_linear's choice per chunk)
  bool isa_auto = false;
  LutMode lut = LutMode::kAuto;
  int threads = 0;
  const uint8_t* taps_planes = nullptr;  // the implicit GEMM's tap-major planes, or null
  int64_t taps_planes_bytes = 0;
  int64_t chunk = 0;  // the patch matrix's rows per chunk
  // the table lookup's planes per chunk rows (the last chunk's may be fewer), where cached
  std::vector<int64_t> lut_rows;
  std::vector<const uint8_t*> lut_planes;
  std::vector<int64_t> lut_planes_bytes;
  const float* bias = nullptr;   // N, or null
  const float* scale = nullptr;  // the epilogue's, N, or null
  bool relu = false;
};

class ConvInt8Plan {
 public:
  // Throws std::invalid_argument where the spec is not one the op layer would run (the kernels'
  // own checks, made once here).
  explicit ConvInt8Plan(ConvInt8PlanSpec spec);
  int64_t out_h() const { return OH_; }
  int64_t out_w() const { return OW_; }
  // y: (B OH OW) rows of N float32 (a channels-last output); residual: the same, or null. x:
  // the spec's shape and strides. Safe to call from several threads at once (its scratch is
  // the call's).
  void run(const float* x, float* y, const float* residual) const;

 private:
  void run_taps(const float* x, float* y, const float* residual) const;
  void run_patches(const float* x, float* y, const float* residual) const;

  ConvInt8PlanSpec s_;
  int64_t OH_ = 0, OW_ = 0, N_ = 0, og_ = 0, cin_g_ = 0;
  ConvInput framed_;  // the implicit GEMM's: one group of the framed int8 images (byte strides)
  int64_t framed_bytes_ = 0;
  std::shared_ptr<const ConvTapsPlan> taps_plan_;
};

}  // namespace cpu
}  // namespace slt
