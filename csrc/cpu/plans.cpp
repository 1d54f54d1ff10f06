// See plans.h. LinearPlan: slt_hw/backends/cpu.py's linear() for contiguous float32 x.
// ConvInt8Plan's run_taps: the images quantized into a zero frame of the padding, then the
// implicit GEMM per group; run_patches: per chunk of output rows and group, the patch gather and
// slt_linear's int8 kernel, then the epilogue in one pass.
#include "plans.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "quantize.h"

namespace slt {
namespace cpu {

namespace {

// A call's scratch of `bytes`, 64-byte aligned (as torch.empty's, which the Python calls used).
struct Scratch {
  explicit Scratch(int64_t bytes) : p(aligned64(buf, size_t(bytes))) {}
  template <typename T>
  T* as() const {
    return reinterpret_cast<T*>(p);
  }
  std::unique_ptr<uint8_t[]> buf;
  uint8_t* p;
};

// (a dimension of size 1 never steps, so its stride is any: torch gives a channels-last
// (B, C, 1, 1) tensor the strides (C, 1, 1, 1))
bool channels_last_contiguous(const ConvInput& g) {
  return (g.C == 1 || g.sc == 1) && (g.W == 1 || g.sw == g.C) && (g.H == 1 || g.sh == g.W * g.C) &&
         (g.B == 1 || g.sb == g.H * g.W * g.C);
}

}  // namespace

LinearPlan::LinearPlan(LinearPlanSpec spec) : s_(std::move(spec)) {
  for (const std::string& e : {check_weight(s_.w, true), check_rows(s_.w.N, s_.row_begin, s_.row_end)})
    if (!e.empty()) throw std::invalid_argument(e);
  if (s_.M < 0) throw std::invalid_argument("M: expected at least 0 rows, got " + std::to_string(s_.M));
}

void LinearPlan::run(const float* x, float* y) const {
  if (s_.M == 0 || s_.row_end == s_.row_begin) return;
  if (x == nullptr || y == nullptr) throw std::invalid_argument("x/y: null pointer");
  const int64_t K = s_.w.K;
  LinearProblem p;
  static_cast<WeightDesc&>(p) = s_.w;
  p.M = s_.M, p.ldx = K, p.y = y, p.ldy = s_.row_end - s_.row_begin;
  p.row_begin = s_.row_begin, p.row_end = s_.row_end, p.bias = s_.bias, p.lut = s_.lut;
  p.lut_planes = s_.lut_planes, p.lut_planes_bytes = s_.lut_planes_bytes;
  const Scratch xq(s_.int8 ? s_.M * K : 0), xs(s_.int8 ? s_.M * int64_t(sizeof(float)) : 0);
  if (s_.int8) {
    quantize_int8_rows_isa(x, s_.M, K, K, xq.as<int8_t>(), xs.as<float>(), s_.threads, s_.isa);
    p.xq = xq.as<int8_t>(), p.xscale = xs.as<float>();
  } else {
    p.x = x;
  }
  slt_linear(p, s_.isa_auto ? auto_isa(p, s_.threads) : s_.isa, s_.threads);
}

ConvInt8Plan::ConvInt8Plan(ConvInt8PlanSpec spec) : s_(std::move(spec)) {
  const ConvInput& g = s_.x;
  for (const std::string& e : {check_conv_input(g), check_weight(s_.w, true)})
    if (!e.empty()) throw std::invalid_argument(e);
  if (s_.groups < 1 || g.C % s_.groups != 0 || s_.w.N % s_.groups != 0)
    throw std::invalid_argument("groups: expected a divisor of the channels (" + std::to_string(g.C) +
                                ") and of the weight's rows (" + std::to_string(s_.w.N) + "), got " +
                                std::to_string(s_.groups));
  N_ = s_.w.N, og_ = N_ / s_.groups, cin_g_ = g.C / s_.groups;
  if (s_.w.K != cin_g_ * g.kh * g.kw)
    throw std::invalid_argument("weight: expected in_features = channels / groups * kh * kw = " +
                                std::to_string(cin_g_ * g.kh * g.kw) + ", got " + std::to_string(s_.w.K));
  OH_ = conv_out_h(g), OW_ = conv_out_w(g);
  if ((s_.taps || s_.image) && !channels_last_contiguous(g))
    throw std::invalid_argument("x: expected contiguous channels-last strides for act_scale 'image'");
  if (s_.taps || s_.image)  // (the kernels below read x as these strides say)
    s_.x.sc = 1, s_.x.sw = g.C, s_.x.sh = g.W * g.C, s_.x.sb = g.H * g.W * g.C;
  if (s_.taps) {
    const int64_t Cq = s_.groups == 1 ? taps_channels(g.C) : g.C;
    const int64_t Hf = g.H + 2 * g.pad_h, Wf = g.W + 2 * g.pad_w;
    framed_ = g;
    framed_.x = nullptr, framed_.C = cin_g_;
    framed_.sb = Hf * Wf * Cq, framed_.sc = 1, framed_.sh = Wf * Cq, framed_.sw = Cq;
    framed_bytes_ = g.B * Hf * Wf * Cq;
    ConvInput one = g;  // (one group of x, as the caller's refusal check saw it)
    one.C = cin_g_;
    const std::string why = conv_int8_taps_refusal(s_.w, one, s_.isa, s_.taps_planes != nullptr);
    if (!why.empty()) throw std::invalid_argument("conv2d_int8_taps: " + why);
    if (s_.taps_planes != nullptr) {
      const std::string bad = check_conv_taps_planes(s_.w, g.kh * g.kw, s_.taps_planes, s_.taps_planes_bytes);
      if (!bad.empty()) throw std::invalid_argument(bad);
    }
    taps_plan_ = conv_taps_plan(framed_);
  } else {
    if (s_.chunk < 1) throw std::invalid_argument("chunk: expected at least one row");
    if (s_.lut_rows.size() != s_.lut_planes.size() || s_.lut_rows.size() != s_.lut_planes_bytes.size())
      throw std::invalid_argument("lut planes: expected one pointer and size per chunk rows");
  }
}

void ConvInt8Plan::run(const float* x, float* y, const float* residual) const {
  if (s_.x.B * OH_ * OW_ == 0) return;
  if (x == nullptr || y == nullptr) throw std::invalid_argument("x/y: null pointer");
  if (s_.taps)
    run_taps(x, y, residual);
  else
    run_patches(x, y, residual);
}

void ConvInt8Plan::run_taps(const float* x, float* y, const float* residual) const {
  const ConvInput& g = s_.x;
  const Scratch images(framed_bytes_), image_scale(g.B * int64_t(sizeof(float)));
  quantize_images_padded(x, g.B, g.H, g.W, g.C, g.pad_h, g.pad_w, images.as<int8_t>(), image_scale.as<float>(),
                         s_.threads, s_.isa, framed_.sw);
  for (int64_t grp = 0; grp < s_.groups; ++grp) {
    const int64_t at = grp * og_;
    LinearProblem p;
    static_cast<WeightDesc&>(p) = s_.w;
    p.y = y + at, p.ldy = N_, p.row_begin = at, p.row_end = at + og_;
    p.bias = s_.bias ? s_.bias + at : nullptr;
    Epilogue e;
    e.scale = s_.scale ? s_.scale + at : nullptr, e.residual = residual ? residual + at : nullptr, e.ldr = N_;
    e.relu = s_.relu;
    conv2d_int8_taps(p, framed_, images.as<int8_t>() + grp * cin_g_, image_scale.as<float>(), s_.threads, s_.isa,
                     s_.taps_planes, s_.taps_planes_bytes, e, taps_plan_.get());
  }
}

void ConvInt8Plan::run_patches(const float* x, float* y, const float* residual) const {
  const ConvInput& g = s_.x;
  const int64_t M = g.B * OH_ * OW_, K = s_.w.K, n_img = g.C * g.H * g.W;
  // act_scale "image": the images quantized per image, their bytes gathered (channels-last)
  const Scratch images(s_.image ? g.B * n_img : 0), image_scale(s_.image ? g.B * int64_t(sizeof(float)) : 0);
  if (s_.image)
    quantize_int8_rows_isa(x, g.B, n_img, n_img, images.as<int8_t>(), image_scale.as<float>(), s_.threads, s_.isa);
  // (with an epilogue scale the bias comes after it, as composite.split_bias)
  const float* conv_bias = s_.scale ? nullptr : s_.bias;
  const float* late_bias = s_.scale ? s_.bias : nullptr;
  const Scratch xq(s_.chunk * K), xs(s_.chunk * int64_t(sizeof(float)));
  ConvInput one = g;  // one group's channels
  one.C = cin_g_;
  for (int64_t m0 = 0; m0 < M; m0 += s_.chunk) {
    const int64_t rows = std::min(s_.chunk, M - m0);
    const uint8_t* planes = nullptr;
    int64_t planes_bytes = 0;
    for (size_t i = 0; i < s_.lut_rows.size(); ++i)
      if (s_.lut_rows[i] == rows) planes = s_.lut_planes[i], planes_bytes = s_.lut_planes_bytes[i];
    for (int64_t grp = 0; grp < s_.groups; ++grp) {
      const int64_t at = grp * og_;
      if (s_.image) {
        im2col_int8(one, images.as<int8_t>() + grp * cin_g_, image_scale.as<float>(), m0, m0 + rows,
                    xq.as<int8_t>(), xs.as<float>(), s_.threads, s_.isa);
      } else {
        one.x = x + grp * cin_g_ * g.sc;
        im2col_quantize_int8(one, m0, m0 + rows, xq.as<int8_t>(), xs.as<float>(), s_.threads, s_.isa);
      }
      LinearProblem p;
      static_cast<WeightDesc&>(p) = s_.w;
      p.M = rows, p.ldx = K, p.y = y + m0 * N_ + at, p.ldy = N_, p.row_begin = at, p.row_end = at + og_;
      p.bias = conv_bias ? conv_bias + at : nullptr;
      p.xq = xq.as<int8_t>(), p.xscale = xs.as<float>(), p.lut = s_.lut;
      p.lut_planes = planes, p.lut_planes_bytes = planes_bytes;
      slt_linear(p, s_.isa_auto ? auto_isa(p, s_.threads) : s_.isa, s_.threads);
    }
  }
  if (s_.scale || residual || s_.relu) {
    Epilogue e;
    e.scale = s_.scale, e.residual = residual, e.ldr = N_, e.relu = s_.relu;
    apply_epilogue(y, M, N_, N_, late_bias, e, s_.threads);
  }
}

}  // namespace cpu
}  // namespace slt
