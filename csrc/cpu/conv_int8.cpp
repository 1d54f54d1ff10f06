// See conv_int8.h. Portable: the checks, the tap-major planes' packer, the call's plan (the
// tap-major column order, the output pixels by padding class, their tiles and taps) and the
// tasks; the row sums and the kernel are linear_avx512.cpp's VNNI build's (conv_int8_vnni.inc)
// or, on AVX2, conv_int8_avx2.cpp's (the row sums here).
#include "conv_int8.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <vector>

#include "../core/slt_contract.h"
#include "generate.h"

namespace slt {
namespace cpu {

namespace {

// conv_int8_taps_refusal's reasons but the channels'.
std::string refusal_but_channels(const WeightDesc& w, const ConvInput& g, Isa isa, bool planes) {
  if ((isa != Isa::kAvx512Vnni && isa != Isa::kAvx2) || !isa_supported(isa))
    return "needs AVX-512 VNNI or AVX2 (isa " + std::string(isa_name(isa)) + ")";
  if (g.sc != 1) return "needs channels-contiguous (channels-last) images";
  if (w.frozen() || w.C != 1 || w.dist != kSignedConstant) return "needs a binary signed-constant weight";
  // (AVX2's panels come from the planes only: from the mask it would need the sign hash and a
  // byte permute per call, which its patches' path does no worse)
  if (isa == Isa::kAvx2 && !planes) return "needs the weight's tap-major planes on AVX2 (a mask's second use on)";
  if (g.kh > 64 || g.kw > 64) return "needs a kernel of at most 64 x 64 (its taps' masks are 64-bit)";
  const int64_t M = g.B * conv_out_h(g) * conv_out_w(g);
  if (M < 1) return "needs at least one output pixel";
  if (!planes && M < kConvTapsMinRows)
    return "needs at least " + std::to_string(kConvTapsMinRows) + " output pixels (any with the weight's tap-major "
           "planes)";
  if (M > INT32_MAX) return "needs fewer than 2^31 output pixels";
  return "";
}

}  // namespace

int64_t taps_channels(int64_t C) { return (C + 3) / 4 * 4; }

std::string conv_int8_taps_refusal(const WeightDesc& w, const ConvInput& g, Isa isa, bool planes) {
  if (g.C % 4 != 0 && g.sw != g.C)
    return "needs channels a multiple of 4 (" + std::to_string(g.C) + "), or one group (then padded to " +
           std::to_string(taps_channels(g.C)) + ")";
  return refusal_but_channels(w, g, isa, planes);
}

namespace {
constexpr uint64_t kTapsPlanesMagic = 0x31504e5350415454ULL;  // the bytes "TTAPSNP1"
constexpr int32_t kTapsPlanesVersion = 2;  // (2: the panels' masks)

// The header's taps (in its reserved bytes).
int64_t header_taps(const LutPlanesHeader& h) {
  int64_t taps;
  std::memcpy(&taps, h.reserved, sizeof taps);
  return taps;
}
}  // namespace

int64_t conv_taps_planes_bytes(const WeightDesc& w, int64_t taps) {
  if (taps < 1 || w.K % taps != 0)
    throw std::invalid_argument("taps: expected a divisor of in_features " + std::to_string(w.K) + ", got " +
                                std::to_string(taps));
  const int64_t Kt = taps * taps_channels(w.K / taps);
  return int64_t(sizeof(LutPlanesHeader)) + panel_layout_bytes(w.N, Kt);
}

std::string check_conv_taps_planes(const WeightDesc& w, int64_t taps, const uint8_t* buf, int64_t bytes) {
  const int64_t want = conv_taps_planes_bytes(w, taps);
  if (buf == nullptr || bytes != want)
    return "planes: expected " + std::to_string(want) + " bytes (pack_conv_taps_planes of this weight), got " +
           std::to_string(bytes) + (buf ? "" : " (null)");
  if (reinterpret_cast<uintptr_t>(buf) % 4 != 0) return "planes: expected a 4-byte aligned buffer";
  LutPlanesHeader h;
  std::memcpy(&h, buf, sizeof h);
  if (h.magic != kTapsPlanesMagic || h.version != kTapsPlanesVersion)
    return "planes: not a tap-major planes layout (bad header)";
  if (h.N != w.N || h.K != w.K || h.k0 != w.k0 || h.k1 != w.k1 || header_taps(h) != taps)
    return "planes: built for another weight or kernel (header: shape (" + std::to_string(h.N) + ", " +
           std::to_string(h.K) + "), keys " + std::to_string(h.k0) + "/" + std::to_string(h.k1) + ", " +
           std::to_string(header_taps(h)) + " taps; this call: (" + std::to_string(w.N) + ", " +
           std::to_string(w.K) + "), " + std::to_string(w.k0) + "/" + std::to_string(w.k1) + ", " +
           std::to_string(taps) + " taps)";
  return "";
}

void pack_panel_masks(const WeightDesc& w, int64_t taps, uint8_t* body, int threads) {
  // Per 16-row group g and 4 tap-major columns c: the P mask then the N mask, bit 4 lane + j
  // for row 16 g + lane and column 4 c + j (the VNNI panels' layout, which AVX2 reads 8 rows
  // at a time), in portable C++: once per weight, a cache.
  const int64_t W = (w.K + 31) / 32, C = w.K / taps, Cp = taps_channels(C), Kt = taps * Cp, Wt = (Kt + 31) / 32;
  const int64_t groups = (w.N + 15) / 16, group_words = Wt * 8 * 2;
  const int nt = resolve_threads(threads);
  (void)nt;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (w.N * w.K >= (1 << 18))
#endif
  {
    std::vector<uint32_t> pn(size_t(W) * 2);  // a row's P and N words, the contract's columns
    std::vector<uint32_t> tp(size_t(Wt) * 2);  // ... tap-major
    std::vector<uint64_t> group(static_cast<size_t>(group_words));  // (copied out: dst is 4-byte aligned)
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t gr = 0; gr < groups; ++gr) {
      std::fill(group.begin(), group.end(), uint64_t(0));
      for (int64_t n = 16 * gr; n < std::min<int64_t>(16 * gr + 16, w.N); ++n) {
        const uint32_t* mask = reinterpret_cast<const uint32_t*>(w.planes) + n * W;
        for (int64_t i = 0; i < W; ++i) {
          const uint32_t sg = sign_word(w.k0, w.k1, uint32_t(n), uint32_t(i), uint32_t(w.K));
          pn[size_t(i)] = mask[i] & ~sg, pn[size_t(W + i)] = mask[i] & sg;
        }
        std::fill(tp.begin(), tp.end(), 0u);
        // (a bit at a time, column t Cp + c from the contract's c taps + t, gathered in registers
        // a word at a time; the padding's columns 0. Or'ed into memory bit by bit, with a division
        // per bit, a 512 x 4608 weight had taken 13 ms)
        for (int64_t t = 0; t < taps; ++t) {
          uint32_t p = 0, q = 0;
          for (int64_t c = 0, k = t, k2 = t * Cp; c < C; ++c, k += taps, ++k2) {
            p |= (pn[size_t(k >> 5)] >> (k & 31) & 1u) << (k2 & 31);
            q |= (pn[size_t(W + (k >> 5))] >> (k & 31) & 1u) << (k2 & 31);
            if ((k2 & 31) == 31 || c == C - 1) {
              tp[size_t(k2 >> 5)] |= p, tp[size_t(Wt + (k2 >> 5))] |= q;
              p = q = 0;
            }
          }
        }
        const int lane = int(n % 16);
        for (int64_t c = 0; c < 8 * Wt; ++c) {  // (column group c: a nibble of word c / 8)
          const int shift = int(4 * (c % 8));
          group[size_t(2 * c)] |= uint64_t(tp[size_t(c / 8)] >> shift & 0xFu) << (4 * lane);
          group[size_t(2 * c + 1)] |= uint64_t(tp[size_t(Wt + c / 8)] >> shift & 0xFu) << (4 * lane);
        }
      }
      std::memcpy(body + gr * group_words * 8, group.data(), size_t(group_words) * 8);
    }
  }
}

void pack_conv_taps_planes(const WeightDesc& w, int64_t taps, uint8_t* dst, int64_t bytes, int threads) {
  for (const std::string& e : {check_weight(w, true), check_rows(w.N, 0, w.N)})
    if (!e.empty()) throw std::invalid_argument(e);
  if (w.frozen() || w.C != 1 || w.dist != kSignedConstant)
    throw std::invalid_argument("pack_conv_taps_planes: needs a binary-format signed_constant weight");
  const int64_t want = conv_taps_planes_bytes(w, taps);
  if (dst == nullptr || bytes != want)
    throw std::invalid_argument("dst: expected " + std::to_string(want) + " bytes, got " + std::to_string(bytes) +
                                (dst ? "" : " (null)"));
  if (reinterpret_cast<uintptr_t>(dst) % 4 != 0) throw std::invalid_argument("dst: expected a 4-byte aligned buffer");
  pack_panel_masks(w, taps, dst + sizeof(LutPlanesHeader), threads);
  LutPlanesHeader h{};
  h.magic = kTapsPlanesMagic, h.kind = 0, h.version = kTapsPlanesVersion;
  h.N = w.N, h.K = w.K, h.k0 = w.k0, h.k1 = w.k1;
  std::memcpy(h.reserved, &taps, sizeof taps);
  std::memcpy(dst, &h, sizeof h);
}

namespace {

// Per output row (or column) of g: the bit mask of its kernel rows (columns) inside the image.
std::vector<uint64_t> inside(int64_t out, int64_t taps, int64_t stride, int64_t dil, int64_t pad, int64_t size) {
  std::vector<uint64_t> mask(static_cast<size_t>(out), 0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < taps; ++i) {
      const int64_t at = o * stride + i * dil - pad;
      if (at >= 0 && at < size) mask[size_t(o)] |= uint64_t(1) << i;
    }
  return mask;
}

// The distinct values of v, and each element's index among them.
std::vector<uint64_t> distinct(const std::vector<uint64_t>& v, std::vector<int64_t>& index) {
  std::vector<uint64_t> d;
  for (uint64_t x : v) {
    const auto it = std::find(d.begin(), d.end(), x);
    index.push_back(it - d.begin());
    if (it == d.end()) d.push_back(x);
  }
  return d;
}

}  // namespace

// A call's tables but the row sums (ConvTaps): the tap-major columns' contract columns, the
// output pixels class by class (a counting sort: each class in y's order), their tiles, and
// each tile's taps (one list per set of kernel rows x kernel columns).
struct ConvTapsPlan {
  ConvInput g;  // what they were made for (g.x unused)
  std::vector<int32_t> column;
  std::vector<ConvPixel> pixels;
  std::vector<ConvTile> tiles;
  std::vector<ConvTap> taps;

  explicit ConvTapsPlan(const ConvInput& g_) : g(g_) {
    g.x = nullptr;
    const int64_t OH = conv_out_h(g), OW = conv_out_w(g);
    const int64_t T = g.kh * g.kw, M = g.B * OH * OW, Cp = taps_channels(g.C);
    for (int64_t t = 0; t < T; ++t)  // (the padding's channels: any column, their x are 0)
      for (int64_t ch = 0; ch < Cp; ++ch) column.push_back(int32_t(ch < g.C ? ch * T + t : 0));
    std::vector<int64_t> row_class, col_class;
    const std::vector<uint64_t> rows_in = distinct(inside(OH, g.kh, g.stride_h, g.dil_h, g.pad_h, g.H), row_class);
    const std::vector<uint64_t> cols_in = distinct(inside(OW, g.kw, g.stride_w, g.dil_w, g.pad_w, g.W), col_class);
    const int64_t n_cols = int64_t(cols_in.size()), n_classes = int64_t(rows_in.size()) * n_cols;
    const auto class_of = [&](int64_t oh, int64_t ow) {
      return size_t(row_class[size_t(oh)] * n_cols + col_class[size_t(ow)]);
    };
    std::vector<int64_t> next(static_cast<size_t>(n_classes) + 1, 0);  // (counts, then each class's next slot)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) next[class_of(oh, ow) + 1] += g.B;
    for (int64_t k = 0; k < n_classes; ++k) next[size_t(k) + 1] += next[size_t(k)];
    pixels.resize(static_cast<size_t>(M));
    std::vector<uint64_t> rows_of(static_cast<size_t>(M)), cols_of(static_cast<size_t>(M));  // (by slot)
    for (int64_t m = 0, b = 0; b < g.B; ++b)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow, ++m) {
          const int64_t i = next[class_of(oh, ow)]++;
          pixels[size_t(i)] = {b * g.sb + oh * g.stride_h * g.sh + ow * g.stride_w * g.sw, int32_t(m), int32_t(b)};
          rows_of[size_t(i)] = rows_in[size_t(row_class[size_t(oh)])];
          cols_of[size_t(i)] = cols_in[size_t(col_class[size_t(ow)])];
        }
    struct TapSet {
      uint64_t rows, cols;
      int64_t tap0, taps;
    };
    std::vector<TapSet> sets;
    for (int64_t i = 0; i < M; i += 8) {
      const int64_t end = std::min(i + 8, M);
      uint64_t rows = 0, cols = 0;
      for (int64_t j = i; j < end; ++j) rows |= rows_of[size_t(j)], cols |= cols_of[size_t(j)];
      auto set = std::find_if(sets.begin(), sets.end(),
                              [&](const TapSet& s) { return s.rows == rows && s.cols == cols; });
      if (set == sets.end()) {
        const int64_t tap0 = int64_t(taps.size());
        // a kernel row's adjacent taps as one where their bytes follow each other in the image
        // (dilation 1, a pixel's bytes the group's padded channels) as their panel blocks do:
        // the stem's 4-byte taps had run one dword a tap, each tap's pointer set-up as its dot
        // products' cost
        const bool runs = g.dil_w == 1 && g.sw == Cp;
        for (int64_t a = 0; a < g.kh; ++a)
          for (int64_t b = 0; b < g.kw; ++b) {
            if (!(rows >> a & 1) || !(cols >> b & 1)) continue;
            ConvTap* last = taps.size() > size_t(tap0) ? &taps.back() : nullptr;
            if (runs && last != nullptr && b > 0 && (cols >> (b - 1) & 1) &&
                last->panel + last->dwords * kTaskRows == (a * g.kw + b) * (Cp / 4) * kTaskRows) {
              last->dwords += Cp / 4;  // (tap (a, b - 1) was the last pushed: the run goes on)
              continue;
            }
            taps.push_back({a * g.dil_h * g.sh + b * g.dil_w * g.sw, (a * g.kw + b) * (Cp / 4) * kTaskRows, Cp / 4});
          }
        sets.push_back({rows, cols, tap0, int64_t(taps.size()) - tap0});
        set = sets.end() - 1;
      }
      tiles.push_back({i, end, set->tap0, set->taps});
    }
  }
};

namespace {

// The geometry a plan was made for, against a call's.
bool same_geometry(const ConvInput& a, const ConvInput& b) {
  return a.B == b.B && a.C == b.C && a.H == b.H && a.W == b.W && a.sb == b.sb && a.sc == b.sc && a.sh == b.sh &&
         a.sw == b.sw && a.kh == b.kh && a.kw == b.kw && a.stride_h == b.stride_h && a.stride_w == b.stride_w &&
         a.pad_h == b.pad_h && a.pad_w == b.pad_w && a.dil_h == b.dil_h && a.dil_w == b.dil_w;
}

}  // namespace

std::shared_ptr<const ConvTapsPlan> conv_taps_plan(const ConvInput& g) {
  const std::string bad = check_conv_input(g);
  if (!bad.empty()) throw std::invalid_argument(bad);
  return std::make_shared<const ConvTapsPlan>(g);
}

void conv_row_sums_portable(const ConvTaps& c, int64_t b, int32_t* pixel_sums, int32_t* row_sums) {
  const ConvInput& g = c.g;
  const int64_t H = g.H + 2 * g.pad_h, W = g.W + 2 * g.pad_w;  // (the frame's pixels sum to 0)
  const int8_t* image = c.image + b * g.sb;
  for (int64_t ih = 0; ih < H; ++ih)
    for (int64_t iw = 0; iw < W; ++iw) {
      const int8_t* px = image + ih * g.sh + iw * g.sw;
      int32_t sum = 0;
      for (int64_t ch = 0; ch < g.C; ++ch) sum += px[ch];
      pixel_sums[ih * W + iw] = sum;
    }
  for (int64_t oh = 0; oh < c.OH; ++oh)
    for (int64_t ow = 0; ow < c.OW; ++ow) {
      const int32_t* p0 = pixel_sums + oh * g.stride_h * W + ow * g.stride_w;
      int32_t sum = 0;
      for (int64_t i = 0; i < g.kh; ++i)
        for (int64_t j = 0; j < g.kw; ++j) sum += p0[i * g.dil_h * W + j * g.dil_w];
      row_sums[oh * c.OW + ow] = sum;
    }
}

void conv2d_int8_taps(const LinearProblem& p, const ConvInput& g, const int8_t* xq, const float* image_scale,
                      int threads, Isa isa, const uint8_t* planes, int64_t planes_bytes, const Epilogue& e,
                      const ConvTapsPlan* plan) {
  for (const std::string& e : {check_conv_input(g), check_weight(p, true), check_rows(p.N, p.row_begin, p.row_end)})
    if (!e.empty()) throw std::invalid_argument(e);
  if (plan != nullptr && !same_geometry(plan->g, g))
    throw std::invalid_argument("plan: made for another input shape, strides or geometry (conv_taps_plan)");
  if (p.K != g.C * g.kh * g.kw)
    throw std::invalid_argument("weight: expected in_features = channels * kh * kw = " +
                                std::to_string(g.C * g.kh * g.kw) + ", got " + std::to_string(p.K));
  std::string why = refusal_but_channels(p, g, isa, planes != nullptr);
  if (why.empty() && g.sw < taps_channels(g.C))
    why = "needs images of channels padded to " + std::to_string(taps_channels(g.C)) + " (" + std::to_string(g.C) +
          " channels " + std::to_string(g.sw) + " bytes apart)";
  if (!why.empty()) throw std::invalid_argument("conv2d_int8_taps: " + why);
  if (planes != nullptr) {
    const std::string bad = check_conv_taps_planes(p, g.kh * g.kw, planes, planes_bytes);
    if (!bad.empty()) throw std::invalid_argument(bad);
  }
  if (xq == nullptr || image_scale == nullptr || p.y == nullptr)
    throw std::invalid_argument("xq/image_scale/y: null pointer");
  if (p.ldy < p.row_end - p.row_begin)
    throw std::invalid_argument("y: row stride smaller than the number of output rows");
  if (e.residual != nullptr && e.ldr < p.row_end - p.row_begin)
    throw std::invalid_argument("residual: row stride smaller than the number of output rows");
  if (p.row_end == p.row_begin) return;
#if defined(SLT_HW_HAVE_AVX2)
  const bool avx2 = isa == Isa::kAvx2;
  const int64_t OH = conv_out_h(g), OW = conv_out_w(g), M = g.B * OH * OW;
  const int64_t HWf = (g.H + 2 * g.pad_h) * (g.W + 2 * g.pad_w);
  const int nt = resolve_threads(threads);
  std::unique_ptr<const ConvTapsPlan> made;  // (a call without a plan makes its own)
  if (plan == nullptr) made = std::make_unique<const ConvTapsPlan>(g), plan = made.get();
  ConvTaps c;
  c.g = g, c.image = xq, c.image_scale = image_scale, c.OH = OH, c.OW = OW, c.Cp = taps_channels(g.C);
  c.column = plan->column.data(), c.pixels = plan->pixels.data(), c.tiles = plan->tiles.data();
  c.tap = plan->taps.data();
  c.bits = planes ? planes + sizeof(LutPlanesHeader) : nullptr;
  c.epilogue = e;
  // Each output pixel's sum of x (u = t + 1: sum_k t x = sum_k u x - sum_k x), from its pixels'
  // channel sums (the frame's are zero).
  // (scratch below left uninitialised: every element is written before it is read; zeroing the
  // tasks' ~0.4 MiB each had been ~1 % of a ResNet-18 forward)
  const std::unique_ptr<int32_t[]> row_sums(new int32_t[size_t(M)]);
  c.row_sums = row_sums.get();
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (g.B > 1 && g.B * HWf * g.C >= (1 << 18))
#endif
  {
    const std::unique_ptr<int32_t[]> pixel_sums(new int32_t[size_t(HWf)]);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t b = 0; b < g.B; ++b) {
      int32_t* out = row_sums.get() + b * OH * OW;
      if (avx2) {
        conv_row_sums_portable(c, b, pixel_sums.get(), out);
      } else {
        avx512vnni::conv_row_sums(c, b, pixel_sums.get(), out);
      }
    }
  }
  // Weight-row tasks, a thread's contiguous. Where they do not share out evenly among the
  // threads: few tasks (64 channels: a 48-row task and a 16-row one), each thread takes every
  // task over its part of the pixels (and builds every task's panel); many (512: ten of 48 and
  // one of 32, six of them on one of 2 threads), the rows are first split into equal ranges of
  // whole 16-row groups, one a thread (5 x 48 + 16 each): a 16-row task's loop is the slower
  // (at 64 channels two 32-row tasks ran 1.07x the pixel parts' time), a thread's extra task
  // more so (512 at 7 x 7, batch 8: 2.18 -> 1.91 ms on 2 threads).
  const int64_t rows = p.row_end - p.row_begin, whole = (rows + kTaskRows - 1) / kTaskRows;
  const bool even = rows % (kTaskRows * nt) == 0, few = !even && whole < 4 * nt;
  const bool ranged = !even && !few && rows % (16 * nt) == 0;
  const RowRanges split(p.row_begin, p.row_end, ranged ? nt : 1, kTaskRows);
  const int64_t tasks = split.tasks();
  const int64_t parts = few ? std::max<int64_t>(1, std::min<int64_t>(nt, M / kChunkRows)) : 1;
  // (threads from 4 M products, or from 64 K outputs: a small-K layer's time is its stores'
  // and quantizer's, an RGB stem's at batch 1 0.054 -> 0.027 ms on two threads)
  const bool parallel =
      tasks * parts > 1 && (M * rows * p.K >= (int64_t(1) << 22) || M * rows >= (int64_t(1) << 16));
  const int64_t Kt = c.Cp * g.kh * g.kw;
  const int64_t scratch_size =
      avx2 ? avx2::scratch_floats_conv_taps(Kt) : avx512vnni::scratch_floats_conv_taps(Kt);
  const int64_t n_tiles = int64_t(plan->tiles.size());
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (parallel)
#endif
  {
    const std::unique_ptr<float[]> buf(new float[size_t(scratch_size + 16)]);
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t item = 0; item < tasks * parts; ++item) {
      const int64_t part = item / tasks;
      int64_t n0, n1;
      split.rows(item % tasks, &n0, &n1);
      const int64_t t0 = n_tiles * part / parts, t1 = n_tiles * (part + 1) / parts;
      if (avx2) {
        avx2::conv_rows_int8(p, c, buf.get(), n0, n1, t0, t1);
      } else {
        avx512vnni::conv_rows_int8(p, c, buf.get(), n0, n1, t0, t1);
      }
    }
  }
  (void)parallel;
#else
  (void)threads;
#endif
}

}  // namespace cpu
}  // namespace slt
