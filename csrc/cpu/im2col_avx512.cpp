// AVX-512 (F/BW + VBMI) gather and quantization of a patch from a channels-last input (im2col.h),
// 16 channels at a time. Read im2col_avx2.cpp first: the same bits, another way to reorder.
//
// AVX2 transposes 8 x 8 floats and stores the quantized bytes 8 at a time. Here each tap's 16
// channels are quantized as loaded (lane = channel), four taps' int32 are packed into one zmm
// of bytes, and the (tap, channel) -> (channel, tap) reorder of 16 T bytes is done on the bytes:
// one `vpermi2b` per pair of packed zmm (128 bytes of source) per 64 output bytes. Per value: a
// load, a division, four other instructions, ~1/10 of a pack and of a permute; ~0.6 cycles a
// value on AMD Zen 4 (the division alone ~0.37), where AVX2's 8 x 8 transposes took ~1.3.
// Compiled with AVX-512 flags only in this TU (or against SIMDe in test builds) and called after
// a runtime CPU check (patch_vbmi_supported).
#include <cstdint>
#include <cstring>

#include "avx512_intrin.h"
#include "im2col.h"

namespace slt {
namespace cpu {
namespace avx512 {

namespace {

// quantize_row's arithmetic (im2col_avx2.cpp, quantize.cpp) 16 lanes at a time: x / s (a true
// division, as torch's), NaN -> 0, clamp to [-127, 127], round half to even (adding and taking
// off 1.5 * 2^23, as quantize.cpp's scalar tail; SIMDe 0.7.4 has no 512-bit cvtps_epi32).
// Only the lower clamp is done here: pack_taps' saturation is the upper one. (The quotient
// passes 127 only where s is subnormal and inexact, and then stays below 191.) A multiplication
// by 1/s, checked against the half-integers, measured 1.2x slower than the division.
struct Quantizer {
  __m512 vs, lo = _mm512_set1_ps(-127.0f), round = _mm512_set1_ps(12582912.0f);
  __m512i bias = _mm512_set1_epi32(0x4B400000);  // the bits of 1.5 * 2^23
  explicit Quantizer(float sc) : vs(_mm512_set1_ps(sc)) {}
  __m512i operator()(__m512 x) const {
    const __m512 v = _mm512_div_ps(x, vs);
    const __m512 r = _mm512_add_ps(_mm512_max_ps(v, lo), round);  // (max: a NaN lane becomes lo ...)
    return _mm512_maskz_sub_epi32(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), _mm512_castps_si512(r), bias);  // (... then 0)
  }
};

// Four taps' 16 channels (int32 in [-127, 190], saturated to 127 here) as 64 bytes: per
// 128-bit lane l, tap a's channels 4 l .. 4 l + 3, then b's, c's, d's (the packs work per lane;
// PatchOrder's indices undo it).
inline __m512i pack_taps(__m512i a, __m512i b, __m512i c, __m512i d) {
  return _mm512_packs_epi16(_mm512_packs_epi32(a, b), _mm512_packs_epi32(c, d));
}

// 16 channels' bytes in (channel, tap) order from S packed sources (pack_taps), 16 T bytes at dst.
template <int S>
inline void reorder_store(const __m512i (&src)[4], const PatchOrder& order, int8_t* dst) {
  const int64_t bytes = 16 * order.taps;
  for (int j = 0; j < order.outs; ++j) {
    __m512i out = _mm512_maskz_permutex2var_epi8(order.mask[j][0], src[0], _mm512_load_si512(order.index[j][0]),
                                                 src[1]);
    if constexpr (S > 2)
      out = _mm512_or_si512(out, _mm512_maskz_permutex2var_epi8(order.mask[j][1], src[2],
                                                                _mm512_load_si512(order.index[j][1]), src[3]));
    int8_t* o = dst + 64 * j;
    const int64_t n = bytes - 64 * j;  // 16, 32, 48 or (not the last) 64 and more
    if (n >= 64) {
      _mm512_storeu_si512(o, out);
      continue;
    }
    if (n >= 32) _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), _mm512_castsi512_si256(out));
    if (n == 16) _mm_storeu_si128(reinterpret_cast<__m128i*>(o), _mm512_castsi512_si128(out));
    if (n == 48) _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 32), _mm512_extracti32x4_epi32(out, 2));
  }
}

// S = ceil(taps / 4) sources, unrolled (a runtime count had GCC keep them on the stack).
template <int S>
void quantize_reorder(const float* const* tap, int64_t C, const PatchOrder& order, float sc, int8_t* q) {
  const int64_t T = order.taps;
  const Quantizer quant(sc);
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    __m512i src[4];
    for (int k = 0; k < 4; ++k) {
      if (k >= S) {
        src[k] = _mm512_setzero_si512();
        continue;
      }
      __m512i v[4];
      for (int i = 0; i < 4; ++i) {
        const int64_t t = 4 * k + i;
        v[i] = t < T && tap[t] != nullptr ? quant(_mm512_loadu_ps(tap[t] + c0)) : _mm512_setzero_si512();
      }
      src[k] = pack_taps(v[0], v[1], v[2], v[3]);
    }
    reorder_store<S>(src, order, q + c0 * T);
  }
}

}  // namespace

float channels_amax(const float* x, int64_t C) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  // four chains (vmaxps's latency), named: an array indexed by c at run time had GCC keep them
  // on the stack (a store-forwarding chain per vector)
  __m512 m0 = zero, m1 = zero, m2 = zero, m3 = zero;
  const auto abs16 = [&](const float* p) {  // (a NaN lane loses to the maximum: no chain holds one)
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(p), abs_mask));
  };
  int64_t c = 0;
  for (; c + 64 <= C; c += 64) {
    m0 = _mm512_max_ps(abs16(x + c), m0);
    m1 = _mm512_max_ps(abs16(x + c + 16), m1);
    m2 = _mm512_max_ps(abs16(x + c + 32), m2);
    m3 = _mm512_max_ps(abs16(x + c + 48), m3);
  }
  for (; c < C; c += 16) m0 = _mm512_max_ps(abs16(x + c), m0);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
  float amax = 0.0f;
  for (float v : lanes) amax = v > amax ? v : amax;
  return amax;
}

void gather_quantize_patch(const float* const* tap, int64_t C, const PatchOrder& order, float amax, int8_t* q,
                           float* s) {
  const int64_t T = order.taps;
  const float sc0 = amax / 127.0f, sc = sc0 > 0.0f ? sc0 : 1.0f;  // quantize.cpp's row scale
  *s = sc;
  switch ((T + 3) / 4) {
    case 1:
      return quantize_reorder<1>(tap, C, order, sc, q);
    case 2:
      return quantize_reorder<2>(tap, C, order, sc, q);
    case 3:
      return quantize_reorder<3>(tap, C, order, sc, q);
    default:
      return quantize_reorder<4>(tap, C, order, sc, q);
  }
}

}  // namespace avx512
}  // namespace cpu
}  // namespace slt
