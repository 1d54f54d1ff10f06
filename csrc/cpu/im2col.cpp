// See im2col.h. The quantizer is quantize.cpp's (SSE2); the gather im2col_avx512.cpp's,
// im2col_avx2.cpp's or a portable loop.
#include "im2col.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "generate.h"
#include "linear.h"
#include "quantize.h"

namespace slt {
namespace cpu {

int64_t conv_out_h(const ConvInput& g) { return (g.H + 2 * g.pad_h - g.dil_h * (g.kh - 1) - 1) / g.stride_h + 1; }
int64_t conv_out_w(const ConvInput& g) { return (g.W + 2 * g.pad_w - g.dil_w * (g.kw - 1) - 1) / g.stride_w + 1; }

std::string check_conv_input(const ConvInput& g) {
  if (g.B < 0 || g.C < 1 || g.H < 1 || g.W < 1)
    return "x: expected batch >= 0, channels, height and width >= 1";
  if (g.kh < 1 || g.kw < 1 || g.stride_h < 1 || g.stride_w < 1 || g.dil_h < 1 || g.dil_w < 1 || g.pad_h < 0 ||
      g.pad_w < 0)
    return "kernel_size/stride/dilation: expected >= 1, padding >= 0";
  if (conv_out_h(g) < 1 || conv_out_w(g) < 1) return "x: smaller than the dilated kernel with this padding";
  if (g.sb < 0 || g.sc < 0 || g.sh < 0 || g.sw < 0) return "x: negative strides";
  if (g.B > 0 && g.x == nullptr) return "x: null pointer";
  return "";
}

void transpose_batched(const float* src, float* dst, int64_t batch, int64_t rows, int64_t cols, int threads) {
  if (batch < 0 || rows < 0 || cols < 0) throw std::invalid_argument("transpose: negative sizes");
  if (batch * rows * cols == 0) return;
  if (src == nullptr || dst == nullptr) throw std::invalid_argument("transpose: null pointer");
  void (*tap_major)(const float*, float*, int64_t, int64_t, int64_t) = to_tap_major;
#if defined(SLT_HW_HAVE_AVX2)
  if (isa_supported(Isa::kAvx2)) tap_major = avx2::to_tap_major;  // (dst[t * ldd + c] = src[c * taps + t])
#endif
  // tasks: whole matrices, or where there are fewer than threads, 8-row-aligned slices of them
  const int nt = resolve_threads(threads);
  const int64_t parts = batch >= nt ? 1 : std::min<int64_t>((nt + batch - 1) / batch, (rows + 7) / 8);
  const int64_t slice = ((rows + parts - 1) / parts + 7) & ~int64_t(7);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (batch * parts > 1 && batch * rows * cols >= (1 << 16))
#endif
  for (int64_t t = 0; t < batch * parts; ++t) {
    const int64_t b = t / parts, r0 = t % parts * slice, r1 = std::min(r0 + slice, rows);
    if (r0 < r1) tap_major(src + (b * rows + r0) * cols, dst + b * rows * cols + r0, r1 - r0, cols, rows);
  }
}

bool patch_vbmi_supported(Isa isa) {
  return (isa == Isa::kAvx512 || isa == Isa::kAvx512Vnni || isa == Isa::kAmx) && isa_supported(isa) &&
         SLT_HW_CPU_HAS_AVX512_EXTENSION("avx512vbmi");
}

namespace {
enum class Gather { kScalar, kAvx2, kAvx2Quantize, kAvx512 };

Gather patch_gather(const ConvInput& g, Isa isa) {
  const int64_t taps = g.kh * g.kw;
  if (g.sc != 1 || isa == Isa::kScalar || !isa_supported(Isa::kAvx2)) return Gather::kScalar;
  if (g.C % 16 == 0 && taps <= kPatchTapsAvx512 && patch_vbmi_supported(isa)) return Gather::kAvx512;
  // (the float patch's stores and reloads had taken ~30 % of a 3 x 3 patch)
  return g.C % 8 == 0 && taps >= 8 ? Gather::kAvx2Quantize : Gather::kAvx2;
}
}  // namespace

const char* patch_gather_name(const ConvInput& g, Isa isa) {
  switch (patch_gather(g, isa)) {
    case Gather::kAvx512:
      return "avx512-vbmi";
    case Gather::kAvx2:
    case Gather::kAvx2Quantize:
      return "avx2";
    case Gather::kScalar:
      break;
  }
  return "scalar";
}

namespace avx512 {
PatchOrder::PatchOrder(int64_t taps_) : taps(taps_) {
  const int64_t bytes = 16 * taps;  // 16 channels' patch columns, channel-major
  outs = int((bytes + 63) / 64);
  for (int j = 0; j < outs; ++j)
    for (int p = 0; p < 2; ++p) {
      uint64_t k = 0;
      for (int i = 0; i < 64; ++i) {
        const int64_t o = 64 * j + i, c = o / taps, t = o % taps, s = t / 4;
        // pack_taps' byte of (tap t, channel c) in source s: 128-bit lane c / 4, then the four
        // taps' 4 bytes each; vpermi2b's bit 6 picks the pair's second source
        index[j][p][i] = o < bytes && s / 2 == p ? uint8_t(64 * (s % 2) + 16 * (c / 4) + 4 * (t % 4) + c % 4) : 0;
        if (o < bytes && s / 2 == p) k |= uint64_t(1) << i;
      }
      mask[j][p] = k;
    }
}

}  // namespace avx512

void im2col_quantize_int8(const ConvInput& g, int64_t m0, int64_t m1, int8_t* q, float* s, int threads, Isa isa) {
  const std::string e = check_conv_input(g);
  if (!e.empty()) throw std::invalid_argument(e);
  const int64_t OH = conv_out_h(g), OW = conv_out_w(g), taps = g.kh * g.kw, K = g.C * taps;
  if (m0 < 0 || m1 < m0 || m1 > g.B * OH * OW)
    throw std::invalid_argument("rows: expected 0 <= m0 <= m1 <= batch * OH * OW = " + std::to_string(g.B * OH * OW));
  if (m1 == m0) return;
  if (q == nullptr || s == nullptr) throw std::invalid_argument("q/s: null pointer");
  // The taps' pointers (null: padding), then the patch in (channel, tap) order: AVX-512 byte
  // permutes or AVX2 transposes where the channels are contiguous (channels last; the caller
  // converts an NCHW x, whose strided reads cost ~3x the conversion), else a loop at the channel
  // stride (patch_gather).
  void (*gather)(const float* const*, int64_t, int64_t, float*) = nullptr;
  void (*gather_quantize)(const float* const*, int64_t, int64_t, int8_t*, float*) = nullptr;
  void (*quantize)(const float*, int64_t, int8_t*, float*) = [](const float* x, int64_t K, int8_t* q, float* s) {
    quantize_int8_rows(x, 1, K, K, q, s);
  };
  const Gather which = patch_gather(g, isa);
  const avx512::PatchOrder* order = nullptr;
#if defined(SLT_HW_HAVE_AVX2)
  if (which != Gather::kScalar) {
    gather = avx2::gather_patch;
    if (which == Gather::kAvx2Quantize) gather_quantize = avx2::gather_quantize_patch;
    quantize = avx2::quantize_row;
  }
#endif
  // AVX-512: each pixel's max |x| over its channels, once for the images these rows read (a
  // patch's maximum is then its taps'), pixel (b - b0, ih, iw) at ((b - b0) H + ih) W + iw
  const int64_t b0 = m0 / (OH * OW), pixels = ((m1 - 1) / (OH * OW) - b0 + 1) * g.H * g.W;
  std::vector<float> pixel_amax;
#if defined(SLT_HW_HAVE_AVX512)
  const avx512::PatchOrder made(which == Gather::kAvx512 ? taps : 1);
  if (which == Gather::kAvx512) order = &made;
  if (order != nullptr) pixel_amax.resize(static_cast<size_t>(pixels));
#endif
#ifdef _OPENMP
  const int nt = resolve_threads(threads);
#pragma omp parallel num_threads(nt) if ((m1 - m0) * K >= (1 << 14))
#endif
  {
#if defined(SLT_HW_HAVE_AVX512)
    if (order != nullptr) {
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
      for (int64_t i = 0; i < pixels; ++i) {
        const int64_t b = b0 + i / (g.H * g.W), ih = i / g.W % g.H, iw = i % g.W;
        pixel_amax[static_cast<size_t>(i)] = avx512::channels_amax(g.x + b * g.sb + ih * g.sh + iw * g.sw, g.C);
      }
    }
#endif
    // the patch zero-padded to whole 32-column words: the quantizer's vector loop takes every
    // column (zeros change neither the row's maximum nor its other values)
    const int64_t Kw = (K + 31) / 32 * 32;
    std::vector<float> patch(static_cast<size_t>(Kw), 0.0f);
    std::vector<int8_t> qrow(static_cast<size_t>(Kw));
    std::vector<const float*> tap(static_cast<size_t>(taps));
    // this thread's share of the rows, one run of them (as a static schedule), the output
    // pixel counted up rather than divided out of m per row (three integer divisions a row)
#ifdef _OPENMP
    const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
#else
    const int64_t parts = 1, part = 0;
#endif
    const int64_t per = (m1 - m0 + parts - 1) / parts, r0 = std::min(m1, m0 + part * per), r1 = std::min(m1, r0 + per);
    int64_t b = r0 / (OH * OW), oh = r0 / OW % OH, ow = r0 % OW;
    for (int64_t m = r0; m < r1; ++m, ++ow) {
      if (ow == OW) ow = 0, ++oh;
      if (oh == OH) oh = 0, ++b;
      float amax = 0.0f;  // (AVX-512: the taps' pixel_amax)
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) {
          const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h, iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
          const bool inside = ih >= 0 && ih < g.H && iw >= 0 && iw < g.W;
          tap[i * g.kw + j] = inside ? g.x + b * g.sb + ih * g.sh + iw * g.sw : nullptr;
          if (inside && !pixel_amax.empty()) {
            const float a = pixel_amax[static_cast<size_t>(((b - b0) * g.H + ih) * g.W + iw)];
            amax = a > amax ? a : amax;
          }
        }
#if defined(SLT_HW_HAVE_AVX512)
      if (order != nullptr) {
        avx512::gather_quantize_patch(tap.data(), g.C, *order, amax, q + (m - m0) * K, s + (m - m0));
        continue;
      }
#endif
      if (gather_quantize != nullptr) {
        gather_quantize(tap.data(), g.C, taps, q + (m - m0) * K, s + (m - m0));
        continue;
      }
      if (gather != nullptr) {
        gather(tap.data(), g.C, taps, patch.data());
      } else {
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t t = 0; t < taps; ++t) patch[c * taps + t] = tap[t] ? tap[t][c * g.sc] : 0.0f;
      }
      quantize(patch.data(), Kw, qrow.data(), s + (m - m0));
      std::memcpy(q + (m - m0) * K, qrow.data(), static_cast<size_t>(K));
    }
  }
  (void)threads;
  (void)order;
}

}  // namespace cpu
}  // namespace slt
