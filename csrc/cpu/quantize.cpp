// See quantize.h. No ISA flags: SSE2 (every x86-64) where the compiler has it, else scalar code
// of the same arithmetic. GCC does not vectorize the scalar loops itself (the NaN semantics of
// the max and of the conversion), and a division per element one at a time cost more than the
// torch calls this replaces at 8 rows. quantize_int8_rows_isa calls the ISA files' copies
// (im2col_avx2.cpp, im2col_avx512.cpp) after a runtime CPU check.
#include "quantize.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "generate.h"
#include "im2col.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace slt {
namespace cpu {

namespace {

// Rounds a float of magnitude <= 2^22 to an integer, half to even (the default rounding mode,
// as torch.round): add and take off 1.5 * 2^23. Clamping to the integer bounds before rounding
// gives what rounding before clamping gives.
inline int8_t quantize_one(float x, float s) {
  constexpr float kRound = 12582912.0f;
  float v = x / s;
  if (v != v) return 0;
  v = v < -127.0f ? -127.0f : v;
  v = v > 127.0f ? 127.0f : v;
  return int8_t((v + kRound) - kRound);
}

}  // namespace

float abs_max(const float* x, int64_t n) {
  float amax = 0.0f;
  int64_t k = 0;
#if defined(__SSE2__)
  const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7FFFFFFF));
  __m128 vmax = _mm_setzero_ps();
  for (; k + 4 <= n; k += 4) vmax = _mm_max_ps(vmax, _mm_and_ps(_mm_loadu_ps(x + k), abs_mask));
  alignas(16) float lanes[4];
  _mm_store_ps(lanes, vmax);
  for (float v : lanes) amax = std::fmax(amax, v);
#endif
  for (; k < n; ++k) amax = std::fmax(amax, std::fabs(x[k]));
  return amax;
}

float row_scale(float amax) {
  const float sc = amax / 127.0f;
  return sc > 0.0f ? sc : 1.0f;
}

void quantize_scaled(const float* x, int64_t n, float sc, int8_t* q) {
  int64_t k = 0;
#if defined(__SSE2__)
  // _mm_cvtps_epi32 rounds as MXCSR says: to nearest, half to even, by default
  const __m128 vs = _mm_set1_ps(sc), lo = _mm_set1_ps(-127.0f), hi = _mm_set1_ps(127.0f);
  auto one = [&](int64_t i) {
    __m128 v = _mm_div_ps(_mm_loadu_ps(x + i), vs);
    v = _mm_and_ps(v, _mm_cmpord_ps(v, v));  // NaN -> 0
    return _mm_cvtps_epi32(_mm_min_ps(_mm_max_ps(v, lo), hi));
  };
  for (; k + 16 <= n; k += 16) {
    const __m128i a = _mm_packs_epi32(one(k), one(k + 4)), b = _mm_packs_epi32(one(k + 8), one(k + 12));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + k), _mm_packs_epi16(a, b));
  }
#endif
  for (; k < n; ++k) q[k] = quantize_one(x[k], sc);
}

void quantize_int8_rows(const float* x, int64_t M, int64_t K, int64_t ldx, int8_t* q, float* s) {
  for (int64_t m = 0; m < M; ++m) {
    s[m] = row_scale(abs_max(x + m * ldx, K));
    quantize_scaled(x + m * ldx, K, s[m], q + m * K);
  }
}

namespace {

// quantize_int8_rows_isa's work, its rows written where dst(m, k) says: row m's columns from k
// on, `run` of them (K a multiple of run) contiguous there.
template <class Dst>
void quantize_rows_to(const float* x, int64_t M, int64_t K, int64_t ldx, int64_t run, Dst&& dst, float* s, int threads,
                      Isa isa) {
  // a row quantizer's two halves, this ISA's (the same bits for finite x)
  float (*amax_of)(const float*, int64_t) = abs_max;
  void (*quantize)(const float*, int64_t, float, int8_t*) = quantize_scaled;
#if defined(SLT_HW_HAVE_AVX2)
  if (isa != Isa::kScalar && isa_supported(Isa::kAvx2)) amax_of = avx2::abs_max, quantize = avx2::quantize_scaled;
#endif
#if defined(SLT_HW_HAVE_AVX512)
  if ((isa == Isa::kAvx512 || isa == Isa::kAvx512Vnni || isa == Isa::kAmx) && isa_supported(isa))
    amax_of = avx512::abs_max, quantize = avx512::quantize_scaled;
#endif
  // tasks: rows, or slices of them (64-value multiples) for every thread where the rows are
  // fewer; their maxima first, then each row's scale, then the slices quantized
  const int nt = resolve_threads(threads);
  const int64_t per_row = M >= nt || K < (1 << 16) ? 1 : (nt + M - 1) / M;
  const int64_t slice = ((K + per_row - 1) / per_row + 63) / 64 * 64, tasks = M * per_row;
  std::vector<float> part(static_cast<size_t>(tasks), 0.0f);
  const auto slices = [&](auto&& fn) {  // fn(task, row, first column, columns), this thread's share
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t t = 0; t < tasks; ++t) {
      const int64_t m = t / per_row, k0 = std::min(K, t % per_row * slice);
      fn(t, m, k0, std::min(K, k0 + slice) - k0);
    }
  };
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (tasks > 1 && M * K >= (1 << 16))
#endif
  {
    slices([&](int64_t t, int64_t m, int64_t k0, int64_t n) { part[size_t(t)] = amax_of(x + m * ldx + k0, n); });
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t m = 0; m < M; ++m) {
      float amax = 0.0f;
      for (int64_t i = 0; i < per_row; ++i) amax = std::max(amax, part[static_cast<size_t>(m * per_row + i)]);
      s[m] = row_scale(amax);
    }
    slices([&](int64_t, int64_t m, int64_t k0, int64_t n) {
      for (int64_t k = k0, len = 0; k < k0 + n; k += len) {
        len = std::min(run - k % run, k0 + n - k);
        quantize(x + m * ldx + k, len, s[m], dst(m, k));
      }
    });
  }
}

}  // namespace

void quantize_int8_rows_isa(const float* x, int64_t M, int64_t K, int64_t ldx, int8_t* q, float* s, int threads,
                            Isa isa) {
  if (M < 0 || K < 0 || ldx < K) throw std::invalid_argument("quantize_int8_rows_isa: negative sizes or ldx < K");
  if (M * K == 0) return;
  if (x == nullptr || q == nullptr || s == nullptr) throw std::invalid_argument("x/q/s: null pointer");
  quantize_rows_to(x, M, K, ldx, K, [&](int64_t m, int64_t k) { return q + m * K + k; }, s, threads, isa);
}

void quantize_images_padded(const float* x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t pad_h, int64_t pad_w,
                            int8_t* q, float* s, int threads, Isa isa, int64_t Cq) {
  if (Cq < 0) Cq = C;
  if (B < 0 || H < 0 || W < 0 || C < 0 || pad_h < 0 || pad_w < 0)
    throw std::invalid_argument("quantize_images_padded: negative sizes or padding");
  if (Cq < C) throw std::invalid_argument("Cq: expected at least C = " + std::to_string(C) + " channels a pixel");
  const int64_t K = H * W * C, Wp = W + 2 * pad_w, image = (H + 2 * pad_h) * Wp * Cq;
  if (B * image == 0) return;
  if (x == nullptr || q == nullptr || s == nullptr) throw std::invalid_argument("x/q/s: null pointer");
  // the frame: whole rows above and below, pad_w pixels either side of the rows between (all
  // of it where the pixels have channels past C)
  const int nt = resolve_threads(threads);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (B * image >= (1 << 18))
#endif
  for (int64_t b = 0; b < B; ++b) {
    int8_t* qi = q + b * image;
    if (Cq != C) {
      std::fill(qi, qi + image, int8_t(0));
      continue;
    }
    std::fill(qi, qi + pad_h * Wp * C, int8_t(0));
    std::fill(qi + (pad_h + H) * Wp * C, qi + image, int8_t(0));
    for (int64_t h = 0; h < H && pad_w > 0; ++h) {
      int8_t* row = qi + (pad_h + h) * Wp * C;
      std::fill(row, row + pad_w * C, int8_t(0));
      std::fill(row + (pad_w + W) * C, row + Wp * C, int8_t(0));
    }
  }
  if (K == 0) {
    for (int64_t b = 0; b < B; ++b) s[b] = row_scale(0.0f);
    return;
  }
  const int64_t run = W * C;  // (an image row: contiguous in x, and in q where Cq == C)
  if (Cq == C) {
    const auto at = [&](int64_t m, int64_t k) {
      return q + m * image + ((k / run + pad_h) * Wp + pad_w) * C + k % run;
    };
    quantize_rows_to(x, B, K, K, run, at, s, threads, isa);
    return;
  }
  // Padded pixels: the images quantized contiguously first, then each pixel's C bytes moved to
  // its Cq-byte slot (runs of C values had cost a quantizer call a pixel: ~12 ns each)
  std::vector<int8_t> flat(static_cast<size_t>(B * K));
  quantize_rows_to(x, B, K, K, K, [&](int64_t m, int64_t k) { return flat.data() + m * K + k; }, s, threads, isa);
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (B * K >= (1 << 18))
#endif
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const int8_t* src = flat.data() + bh * W * C;
    int8_t* dst = q + bh / H * image + ((bh % H + pad_h) * Wp + pad_w) * Cq;
    for (int64_t w = 0; w < W; ++w)
      for (int64_t c = 0; c < C; ++c) dst[w * Cq + c] = src[w * C + c];
  }
}

namespace {

// The float s closest to amax / slice_half(D) with amax / s <= slice_half(D); 1 where that is 0
// (zero rows; subnormal maxima, whose quotient underflows). (A power of two made x / s exact,
// but its up to 2x coarser step doubled the error half of the time: tests/test_lut_planes.py.)
float slice_scale(float amax, int D) {
  const double half = double(slice_half(D));
  float sc = float(double(amax) / half);
  if (!(sc > 0.0f)) return 1.0f;
  if (double(amax) / sc > half) sc = std::nextafter(sc, 2.0f * sc);
  return sc;
}

}  // namespace

int slice_count(const float* x, int64_t M, int64_t K, int64_t ldx) {
  double worst = 0.0;  // the largest step of 3 slices over rms(x), in units of the step's range
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    float amax = 0.0f;
    double ss = 0.0;
    bool finite = true;
    for (int64_t k = 0; k < K; ++k) {
      const float a = std::fabs(xr[k]);
      finite = finite && a <= 3.4028235e38f;  // false for NaN too
      amax = a > amax ? a : amax;
      ss += double(a) * a;
    }
    if (!finite) return 0;
    if (amax > 0.0f) {
      const double ratio = double(slice_scale(amax, kMinSlices)) * double(slice_half(kMinSlices)) / std::sqrt(ss / double(K));
      worst = ratio > worst ? ratio : worst;
    }
  }
  return worst <= std::sqrt(double(K)) / 8 ? kMinSlices : kMaxSlices;
}

void slice_int8_rows(const float* x, int64_t M, int64_t K, int64_t ldx, int D, int8_t* q, float* s) {
  const double half = double(slice_half(D));
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(xr[k]));
    const float sc = slice_scale(amax, D);
    s[m] = sc;
    const double inv = 1.0 / double(sc), rbase = 1.0 / double(kSliceBase);
    int8_t* qm = q + m * D * K;
    for (int64_t k = 0; k < K; ++k) {
      double v = std::nearbyint(double(xr[k]) * inv);
      v = v > half ? half : (v < -half ? -half : v);
      // v = 255 hi + lo, lo in [-127, 127] (v / 255 is never half-way: 255 is odd), digit by digit
      for (int d = D - 1; d >= 0; --d) {
        const double hi = d ? std::nearbyint(v * rbase) : 0.0;
        qm[d * K + k] = int8_t(v - hi * double(kSliceBase));
        v = hi;
      }
    }
  }
}

}  // namespace cpu
}  // namespace slt
