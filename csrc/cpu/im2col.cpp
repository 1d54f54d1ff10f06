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

Gather patch_gather(const ConvInput& g, Isa isa, bool quantized) {
  const int64_t taps = g.kh * g.kw;
  if (g.sc != 1 || isa == Isa::kScalar || !isa_supported(Isa::kAvx2)) return Gather::kScalar;
  if (g.C % 16 == 0 && taps <= kPatchTapsAvx512 && patch_vbmi_supported(isa)) return Gather::kAvx512;
  if (quantized) return g.C % 16 == 0 && taps <= 16 ? Gather::kAvx2 : Gather::kScalar;
  // (the float patch's stores and reloads had taken ~30 % of a 3 x 3 patch)
  return g.C % 8 == 0 && taps >= 8 ? Gather::kAvx2Quantize : Gather::kAvx2;
}

// The taps' offsets within an image, separably: tap (i, j) of output pixel (oh, ow) is at
// element row[oh kh + i] + col[ow kw + j] from the image's first (ih sh + iw sw), and is pixel
// row_pix[..] + col_pix[..] (ih W + iw); an entry of -1 (padding) in either makes the tap
// padding. Made once per call, (OH kh + OW kw) entries: the taps' offsets computed per row
// had been ~40 % of a gather of int8 bytes, a table of every output pixel's ~15 % (per chunk).
struct PatchTaps {
  explicit PatchTaps(const ConvInput& g) {
    const int64_t OH = conv_out_h(g), OW = conv_out_w(g);
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t i = 0; i < g.kh; ++i) {
        const int64_t ih = oh * g.stride_h - g.pad_h + i * g.dil_h;
        const bool inside = ih >= 0 && ih < g.H;
        row.push_back(inside ? ih * g.sh : -1);
        row_pix.push_back(inside ? ih * g.W : -1);
      }
    for (int64_t ow = 0; ow < OW; ++ow)
      for (int64_t j = 0; j < g.kw; ++j) {
        const int64_t iw = ow * g.stride_w - g.pad_w + j * g.dil_w;
        const bool inside = iw >= 0 && iw < g.W;
        col.push_back(inside ? iw * g.sw : -1);
        col_pix.push_back(inside ? iw : -1);
      }
  }
  std::vector<int64_t> row, col, row_pix, col_pix;
};

// Runs row(m, b, rel, pix) for this thread's share of rows [m0, m1) (inside a parallel region,
// one run of rows as a static schedule would give it): rel[t] tap t's element offset within
// image b and pix[t] its pixel ih W + iw, both -1 for padding (PatchTaps). The output pixel is
// counted up rather than divided out of m per row.
template <class Row>
void for_each_patch(const ConvInput& g, const PatchTaps& taps, int64_t m0, int64_t m1, Row&& row) {
  const int64_t OH = conv_out_h(g), OW = conv_out_w(g), T = g.kh * g.kw;
#ifdef _OPENMP
  const int64_t parts = omp_get_num_threads(), part = omp_get_thread_num();
#else
  const int64_t parts = 1, part = 0;
#endif
  const int64_t per = (m1 - m0 + parts - 1) / parts, r0 = std::min(m1, m0 + part * per), r1 = std::min(m1, r0 + per);
  std::vector<int64_t> rel(static_cast<size_t>(T)), pix(static_cast<size_t>(T));
  int64_t b = r0 / (OH * OW), oh = r0 / OW % OH, ow = r0 % OW;
  for (int64_t m = r0; m < r1; ++m, ++ow) {
    if (ow == OW) ow = 0, ++oh;
    if (oh == OH) oh = 0, ++b;
    const int64_t* rr = taps.row.data() + oh * g.kh;
    const int64_t* rp = taps.row_pix.data() + oh * g.kh;
    const int64_t* cr = taps.col.data() + ow * g.kw;
    const int64_t* cp = taps.col_pix.data() + ow * g.kw;
    for (int64_t i = 0, t = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j, ++t) {
        const bool pad = (rr[i] | cr[j]) < 0;
        rel[t] = pad ? -1 : rr[i] + cr[j];
        pix[t] = pad ? -1 : rp[i] + cp[j];
      }
    row(m, b, rel.data(), pix.data());
  }
}

// The rows' checks: the geometry's, then the range of rows and the outputs.
void check_rows(const ConvInput& g, int64_t m0, int64_t m1, const void* x, const int8_t* q, const float* s) {
  const std::string e = check_conv_input(g);
  if (!e.empty()) throw std::invalid_argument(e);
  const int64_t rows = g.B * conv_out_h(g) * conv_out_w(g);
  if (m0 < 0 || m1 < m0 || m1 > rows)
    throw std::invalid_argument("rows: expected 0 <= m0 <= m1 <= batch * OH * OW = " + std::to_string(rows));
  if (m1 > m0 && (x == nullptr || q == nullptr || s == nullptr)) throw std::invalid_argument("x/q/s: null pointer");
}
}  // namespace

const char* patch_gather_name(const ConvInput& g, Isa isa, bool quantized) {
  switch (patch_gather(g, isa, quantized)) {
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
PatchOrder::PatchOrder(int64_t taps_, Layout layout) : taps(taps_) {
  const int64_t bytes = 16 * taps;  // 16 channels' patch columns, channel-major
  for (int j = 0; j < (bytes + 63) / 64; ++j)
    for (int p = 0; p < 2; ++p) {
      uint64_t k = 0;
      for (int i = 0; i < 64; ++i) {
        const int64_t o = 64 * j + i, c = o / taps, t = o % taps, s = t / 4;
        // the byte of (tap t, channel c) in source s (pack_taps': 128-bit lane c / 4, then the
        // four taps' 4 bytes each; kLanes: lane t % 4, byte c); vpermi2b's bit 6 picks the
        // pair's second source
        const int64_t at = layout == Layout::kPacked ? 16 * (c / 4) + 4 * (t % 4) + c % 4 : 16 * (t % 4) + c;
        index[j][p][i] = o < bytes && s / 2 == p ? uint8_t(64 * (s % 2) + at) : 0;
        if (o < bytes && s / 2 == p) k |= uint64_t(1) << i;
      }
      mask[j][p] = k;
    }
}

}  // namespace avx512

void im2col_quantize_int8(const ConvInput& g, int64_t m0, int64_t m1, int8_t* q, float* s, int threads, Isa isa) {
  check_rows(g, m0, m1, g.x, q, s);
  if (m1 == m0) return;
  const int64_t OH = conv_out_h(g), OW = conv_out_w(g), taps = g.kh * g.kw, K = g.C * taps;
  // The taps' pointers (null: padding), then the patch in (channel, tap) order: AVX-512 byte
  // permutes or AVX2 transposes where the channels are contiguous (channels last; the caller
  // converts an NCHW x, whose strided reads cost ~3x the conversion), else a loop at the channel
  // stride (patch_gather).
  void (*gather)(const float* const*, int64_t, int64_t, float*) = nullptr;
  void (*gather_quantize)(const float* const*, int64_t, int64_t, int8_t*, float*) = nullptr;
  void (*quantize)(const float*, int64_t, int8_t*, float*) = [](const float* x, int64_t K, int8_t* q, float* s) {
    quantize_int8_rows(x, 1, K, K, q, s);
  };
  const Gather which = patch_gather(g, isa, false);
  const avx512::PatchOrder* order = nullptr;
  const PatchTaps table(g);
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
        pixel_amax[static_cast<size_t>(i)] = avx512::abs_max(g.x + b * g.sb + ih * g.sh + iw * g.sw, g.C);
      }
    }
#endif
    // the patch zero-padded to whole 32-column words: the quantizer's vector loop takes every
    // column (zeros change neither the row's maximum nor its other values)
    const int64_t Kw = (K + 31) / 32 * 32;
    std::vector<float> patch(static_cast<size_t>(Kw), 0.0f);
    std::vector<int8_t> qrow(static_cast<size_t>(Kw));
    std::vector<const float*> tap(static_cast<size_t>(taps));
    for_each_patch(g, table, m0, m1, [&](int64_t m, int64_t b, const int64_t* rel, const int64_t* pix) {
      float amax = 0.0f;  // (AVX-512: the taps' pixel_amax)
      const float* image = g.x + b * g.sb;
      const float* image_amax = pixel_amax.empty() ? nullptr : pixel_amax.data() + (b - b0) * g.H * g.W;
      for (int64_t t = 0; t < taps; ++t) {
        tap[t] = rel[t] < 0 ? nullptr : image + rel[t];
        if (rel[t] >= 0 && image_amax != nullptr) {
          const float a = image_amax[pix[t]];
          amax = a > amax ? a : amax;
        }
      }
#if defined(SLT_HW_HAVE_AVX512)
      if (order != nullptr) {
        avx512::gather_quantize_patch(tap.data(), g.C, *order, amax, q + (m - m0) * K, s + (m - m0));
        return;
      }
#endif
      if (gather_quantize != nullptr) {
        gather_quantize(tap.data(), g.C, taps, q + (m - m0) * K, s + (m - m0));
        return;
      }
      if (gather != nullptr) {
        gather(tap.data(), g.C, taps, patch.data());
      } else {
        for (int64_t c = 0; c < g.C; ++c)
          for (int64_t t = 0; t < taps; ++t) patch[c * taps + t] = tap[t] ? tap[t][c * g.sc] : 0.0f;
      }
      quantize(patch.data(), Kw, qrow.data(), s + (m - m0));
      std::memcpy(q + (m - m0) * K, qrow.data(), static_cast<size_t>(K));
    });
  }
  (void)threads;
  (void)order;
}

void im2col_int8(const ConvInput& g, const int8_t* xq, const float* image_scale, int64_t m0, int64_t m1, int8_t* q,
                 float* s, int threads, Isa isa) {
  check_rows(g, m0, m1, xq, q, s);
  if (m1 > m0 && image_scale == nullptr) throw std::invalid_argument("image_scale: null pointer");
  if (m1 == m0) return;
  const int64_t taps = g.kh * g.kw, K = g.C * taps;
  const Gather which = patch_gather(g, isa, true);
  const PatchTaps table(g);
#if defined(SLT_HW_HAVE_AVX512)
  const avx512::PatchOrder order(which == Gather::kAvx512 ? taps : 1, avx512::PatchOrder::Layout::kLanes);
#endif
#ifdef _OPENMP
  const int nt = resolve_threads(threads);
#pragma omp parallel num_threads(nt) if ((m1 - m0) * K >= (1 << 16))
#endif
  {
    // padding taps read zeros (a branch per tap and vector otherwise)
    const std::vector<int8_t> zeros(static_cast<size_t>(g.C * g.sc + 64), 0);
    std::vector<const int8_t*> tap(static_cast<size_t>(taps));
    for_each_patch(g, table, m0, m1, [&](int64_t m, int64_t b, const int64_t* rel, const int64_t*) {
      const int8_t* image = xq + b * g.sb;
      int8_t* row = q + (m - m0) * K;
      s[m - m0] = image_scale[b];
      for (int64_t t = 0; t < taps; ++t) tap[t] = rel[t] < 0 ? zeros.data() : image + rel[t];
      if (taps == 1 && g.sc == 1) {  // (a 1 x 1 convolution's patch: the pixel)
        std::memcpy(row, tap[0], static_cast<size_t>(K));
        return;
      }
#if defined(SLT_HW_HAVE_AVX512)
      if (which == Gather::kAvx512) return avx512::gather_patch_int8(tap.data(), g.C, order, row);
#endif
#if defined(SLT_HW_HAVE_AVX2)
      if (which == Gather::kAvx2) return avx2::gather_patch_int8(tap.data(), g.C, taps, row);
#endif
      for (int64_t c = 0; c < g.C; ++c)
        for (int64_t t = 0; t < taps; ++t) row[c * taps + t] = tap[t][c * g.sc];
    });
  }
  (void)threads;
  (void)which;
}

}  // namespace cpu
}  // namespace slt
