// See conv_int8.h. Portable: the checks, the call's tables (pixel sums, tap offsets, the
// tap-major column order) and the tasks; the kernel is linear_avx512.cpp's (conv_int8_vnni.inc).
#include "conv_int8.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "generate.h"

namespace slt {
namespace cpu {

std::string conv_int8_taps_refusal(const WeightDesc& w, const ConvInput& g, Isa isa) {
  if (isa != Isa::kAvx512Vnni || !isa_supported(isa)) return "needs AVX-512 VNNI (isa " + std::string(isa_name(isa)) + ")";
  if (g.sc != 1) return "needs channels-contiguous (channels-last) images";
  if (g.C % 4 != 0) return "needs channels a multiple of 4 (" + std::to_string(g.C) + ")";
  if (w.frozen() || w.C != 1 || w.dist != kSignedConstant) return "needs a binary signed-constant weight";
  if (g.B * conv_out_h(g) * conv_out_w(g) < kConvTapsMinRows)
    return "needs at least " + std::to_string(kConvTapsMinRows) + " output pixels";
  return "";
}

void conv2d_int8_taps(const LinearProblem& p, const ConvInput& g, const int8_t* xq, const float* image_scale,
                      int threads, Isa isa) {
  for (const std::string& e : {check_conv_input(g), check_weight(p, true), check_rows(p.N, p.row_begin, p.row_end)})
    if (!e.empty()) throw std::invalid_argument(e);
  if (p.K != g.C * g.kh * g.kw)
    throw std::invalid_argument("weight: expected in_features = channels * kh * kw = " +
                                std::to_string(g.C * g.kh * g.kw) + ", got " + std::to_string(p.K));
  if (g.pad_h != 0 || g.pad_w != 0)
    throw std::invalid_argument("padding: expected 0, the images padded already (quantize_images_padded)");
  const std::string why = conv_int8_taps_refusal(p, g, isa);
  if (!why.empty()) throw std::invalid_argument("conv2d_int8_taps: " + why);
  if (xq == nullptr || image_scale == nullptr || p.y == nullptr)
    throw std::invalid_argument("xq/image_scale/y: null pointer");
  if (p.ldy < p.row_end - p.row_begin)
    throw std::invalid_argument("y: row stride smaller than the number of output rows");
  if (p.row_end == p.row_begin) return;
#if defined(SLT_HW_HAVE_AVX512)
  const int64_t OH = conv_out_h(g), OW = conv_out_w(g), M = g.B * OH * OW, T = g.kh * g.kw, HW = g.H * g.W;
  const int nt = resolve_threads(threads);
  // The call's tables: the taps' offsets, the tap-major columns' contract columns, and each
  // output pixel's sum of x (u = t + 1: sum_k t x = sum_k u x - sum_k x), from its pixels'
  // channel sums (the frame's are zero).
  std::vector<int64_t> offset(static_cast<size_t>(T));
  std::vector<int32_t> column(static_cast<size_t>(p.K));
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) offset[size_t(i * g.kw + j)] = i * g.dil_h * g.sh + j * g.dil_w * g.sw;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t ch = 0; ch < g.C; ++ch) column[size_t(t * g.C + ch)] = int32_t(ch * T + t);
  ConvTaps c;
  c.g = g, c.image = xq, c.image_scale = image_scale, c.offset = offset.data();
  c.column = column.data(), c.OH = OH, c.OW = OW;
  std::vector<int32_t> row_sums(static_cast<size_t>(M));
  c.row_sums = row_sums.data();
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (g.B > 1 && g.B * HW * g.C >= (1 << 18))
#endif
  {
    std::vector<int32_t> pixel_sums(static_cast<size_t>(HW));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t b = 0; b < g.B; ++b) avx512vnni::conv_row_sums(c, b, pixel_sums.data(), row_sums.data() + b * OH * OW);
  }
  // Weight-row tasks; where a few do not share out evenly among the threads (64 channels: a
  // 48-row task and a 16-row one) each thread takes every task over its part of the pixels
  // (and builds every task's panel: with many tasks, a thread's extra task costs less).
  const int64_t rows = p.row_end - p.row_begin, tasks = (rows + kTaskRows - 1) / kTaskRows;
  const bool uneven = rows % (kTaskRows * nt) != 0 && tasks < 4 * nt;
  const int64_t parts = uneven ? std::max<int64_t>(1, std::min<int64_t>(nt, M / kChunkRows)) : 1;
  const bool parallel = tasks * parts > 1 && M * rows * p.K >= (int64_t(1) << 22);
  const int64_t scratch_size = avx512vnni::scratch_floats_conv_taps(p.K);
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (parallel)
#endif
  {
    std::vector<float> buf(static_cast<size_t>(scratch_size + 16));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t item = 0; item < tasks * parts; ++item) {
      const int64_t part = item / tasks, n0 = p.row_begin + item % tasks * kTaskRows;
      const int64_t n1 = std::min(n0 + kTaskRows, p.row_end);
      avx512vnni::conv_rows_int8(p, c, buf.data(), n0, n1, M * part / parts, M * (part + 1) / parts);
    }
  }
  (void)parallel;
#else
  (void)threads;
#endif
}

}  // namespace cpu
}  // namespace slt
