// AVX2 gather of a patch from a channels-last input (im2col.h): the taps' channel vectors
// transposed 8 x 8 in registers into the contract's (channel, tap) column order; and the row
// quantizer of quantize.cpp, 8 lanes wide (the same bits for finite x).
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

#include "avx2_common.h"
#include "im2col.h"
#include "quantize.h"

namespace slt {
namespace cpu {
namespace avx2 {

void gather_patch(const float* const* tap, int64_t C, int64_t taps, float* patch) {
  int64_t c0 = 0;
  for (; c0 + 8 <= C; c0 += 8) {
    int64_t t0 = 0;
    for (; t0 + 8 <= taps; t0 += 8) {  // r[i]: tap t0 + i's 8 channels; out[j]: channel c0 + j's 8 taps
      __m256 r[8], out[8];
      for (int i = 0; i < 8; ++i) r[i] = tap[t0 + i] ? _mm256_loadu_ps(tap[t0 + i] + c0) : _mm256_setzero_ps();
      avx2common::transpose8x8_ps(r, out);
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(patch + (c0 + j) * taps + t0, out[j]);
    }
    for (; t0 < taps; ++t0)
      for (int64_t i = 0; i < 8; ++i) patch[(c0 + i) * taps + t0] = tap[t0] ? tap[t0][c0 + i] : 0.0f;
  }
  for (; c0 < C; ++c0)
    for (int64_t t = 0; t < taps; ++t) patch[c0 * taps + t] = tap[t] ? tap[t][c0] : 0.0f;
}

namespace {

// 16 x 16 bytes per 128-bit lane, transposed: r[i]'s byte j -> r[j]'s byte i. Each round
// interleaves vector i with i + 8 (out 2 i, 2 i + 1), which rotates the 8 bits (vector,
// byte) left by one; four rounds swap them.
inline void transpose16x16_epi8(__m256i (&r)[16]) {
  for (int round = 0; round < 4; ++round) {
    __m256i out[16];
    for (int i = 0; i < 8; ++i) {
      out[2 * i] = _mm256_unpacklo_epi8(r[i], r[i + 8]);
      out[2 * i + 1] = _mm256_unpackhi_epi8(r[i], r[i + 8]);
    }
    for (int i = 0; i < 16; ++i) r[i] = out[i];
  }
}

}  // namespace

void gather_patch_int8(const int8_t* const* tap, int64_t C, int64_t taps, int8_t* q) {
  for (int64_t c0 = 0; c0 < C; c0 += 32) {
    const bool two = c0 + 32 <= C;  // lane 1: channels c0 + 16 .. c0 + 31 (else C's last 16 in lane 0 only)
    __m256i r[16];
    for (int i = 0; i < 16; ++i) {
      const int8_t* p = i < taps ? tap[i] : nullptr;
      r[i] = p == nullptr ? _mm256_setzero_si256()
             : two       ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + c0))
                         : _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + c0)));
    }
    transpose16x16_epi8(r);
    // channel c's 16 bytes (its taps, then zeros) stored whole, in order, so the next channel's
    // store overwrites the zeros; exactly where 16 bytes would pass the row's end (a row may end
    // another thread's rows: with fewer than 8 taps the last two or more channels' stores had
    // reached into the next row, which another thread may have written already)
    for (int h = 0; h < (two ? 2 : 1); ++h)
      for (int j = 0; j < 16; ++j) {
        const int64_t c = c0 + 16 * h + j;
        const __m128i v = h == 0 ? _mm256_castsi256_si128(r[j]) : _mm256_extracti128_si256(r[j], 1);
        if (c * taps + 16 <= C * taps) {
          _mm_storeu_si128(reinterpret_cast<__m128i*>(q + c * taps), v);
        } else {
          alignas(16) int8_t last[16];
          _mm_store_si128(reinterpret_cast<__m128i*>(last), v);
          std::memcpy(q + c * taps, last, static_cast<size_t>(taps));
        }
      }
  }
}

namespace {

// The max of the 8 lanes of vmax and amax (std::fmax: NaN lanes are skipped).
inline float lanes_max(__m256 vmax, float amax) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vmax);
  for (float v : lanes) amax = std::fmax(amax, v);
  return amax;
}

// quantize.cpp's arithmetic 8 lanes at a time: x / s (a true division, as torch's), NaN -> 0,
// clamp, round half to even (_mm256_cvtps_epi32 in the default rounding mode).
struct Quantizer {
  __m256 vs, lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
  explicit Quantizer(float sc) : vs(_mm256_set1_ps(sc)) {}
  __m256i operator()(__m256 x) const {
    __m256 v = _mm256_div_ps(x, vs);
    v = _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
  }
};

// Four vectors of 8 int32 (each in [-127, 127]) as 32 bytes in order.
inline __m256i pack_bytes(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // (the packs work per 128-bit lane)
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d)), order);
}

}  // namespace

float abs_max(const float* x, int64_t n) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 vmax = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= n; k += 8) vmax = _mm256_max_ps(vmax, _mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask));
  float amax = lanes_max(vmax, 0.0f);
  for (; k < n; ++k) amax = std::fmax(amax, std::fabs(x[k]));
  return amax;
}

void quantize_scaled(const float* x, int64_t n, float sc, int8_t* q) {
  const Quantizer quant(sc);
  int64_t k = 0;
  for (; k + 32 <= n; k += 32)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + k),
                        pack_bytes(quant(_mm256_loadu_ps(x + k)), quant(_mm256_loadu_ps(x + k + 8)),
                                   quant(_mm256_loadu_ps(x + k + 16)), quant(_mm256_loadu_ps(x + k + 24))));
  constexpr float kRound = 12582912.0f;  // 1.5 * 2^23: adding and taking it off rounds half to even
  for (; k < n; ++k) {
    float v = x[k] / sc;
    v = v != v ? 0.0f : v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
    q[k] = int8_t((v + kRound) - kRound);
  }
}

void quantize_row(const float* x, int64_t K, int8_t* q, float* s) {
  *s = row_scale(abs_max(x, K));
  quantize_scaled(x, K, *s, q);
}

void gather_quantize_patch(const float* const* tap, int64_t C, int64_t taps, int8_t* q, float* s) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF)), zero = _mm256_setzero_ps();
  // four chains (vmaxps's latency), named: indexed by c at run time GCC kept them on the stack
  __m256 m0 = zero, m1 = zero, m2 = zero, m3 = zero;
  const auto abs8 = [&](const float* p) { return _mm256_and_ps(_mm256_loadu_ps(p), abs_mask); };
  for (int64_t t = 0; t < taps; ++t) {
    const float* p = tap[t];
    if (p == nullptr) continue;
    int64_t c = 0;
    for (; c + 32 <= C; c += 32) {
      m0 = _mm256_max_ps(m0, abs8(p + c));
      m1 = _mm256_max_ps(m1, abs8(p + c + 8));
      m2 = _mm256_max_ps(m2, abs8(p + c + 16));
      m3 = _mm256_max_ps(m3, abs8(p + c + 24));
    }
    for (; c < C; c += 8) m0 = _mm256_max_ps(m0, abs8(p + c));
  }
  const float sc = row_scale(lanes_max(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)), 0.0f));
  *s = sc;
  const Quantizer quant(sc);  // quantize_row's arithmetic per lane, on the transposed registers
  for (int64_t c0 = 0; c0 < C; c0 += 8) {
    int64_t t0 = 0;
    for (; t0 + 8 <= taps; t0 += 8) {  // r[i]: tap t0 + i's 8 channels; out[j]: channel c0 + j's 8 taps
      __m256 r[8], out[8];
      for (int i = 0; i < 8; ++i) r[i] = tap[t0 + i] ? _mm256_loadu_ps(tap[t0 + i] + c0) : zero;
      avx2common::transpose8x8_ps(r, out);
      for (int h = 0; h < 8; h += 4) {  // four channels' 8 bytes, in order
        alignas(32) int8_t bytes[32];
        _mm256_store_si256(reinterpret_cast<__m256i*>(bytes),
                           pack_bytes(quant(out[h]), quant(out[h + 1]), quant(out[h + 2]), quant(out[h + 3])));
        for (int j = 0; j < 4; ++j) std::memcpy(q + (c0 + h + j) * taps + t0, bytes + 8 * j, 8);
      }
    }
    for (; t0 < taps; ++t0) {  // the taps past the last 8 (3 x 3: one), a channel vector each
      alignas(32) int32_t v[8];
      _mm256_store_si256(reinterpret_cast<__m256i*>(v), quant(tap[t0] ? _mm256_loadu_ps(tap[t0] + c0) : zero));
      for (int j = 0; j < 8; ++j) q[(c0 + j) * taps + t0] = int8_t(v[j]);
    }
  }
}

}  // namespace avx2
}  // namespace cpu
}  // namespace slt
