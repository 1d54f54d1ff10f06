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
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>

#include "avx512_intrin.h"
#include "im2col.h"
#include "quantize.h"

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

// PatchOrder's indices and masks of S outputs read where used (the quantizing gather: its
// registers are taken) ...
struct OrderInMemory {
  const PatchOrder& order;
  __m512i index_at(int j, int p) const { return _mm512_load_si512(order.index[j][p]); }
  slt_mask64 mask_at(int j, int p) const { return order.mask[j][p]; }
};

// ... or held in registers for a whole patch (read from the order per group of channels, GCC
// reloaded them after every store through int8_t*: the int8 gather 1.2x slower).
template <int S>
struct OrderInRegisters {
  __m512i indices[S][2];
  slt_mask64 masks[S][2];
  explicit OrderInRegisters(const PatchOrder& order) {
    for (int j = 0; j < S; ++j)
      for (int p = 0; p < (S > 2 ? 2 : 1); ++p) {
        indices[j][p] = _mm512_load_si512(order.index[j][p]);
        masks[j][p] = order.mask[j][p];
      }
  }
  __m512i index_at(int j, int p) const { return indices[j][p]; }
  slt_mask64 mask_at(int j, int p) const { return masks[j][p]; }
};

// 16 channels' bytes in (channel, tap) order from S sources (pack_taps' or load_taps'), 16 T
// bytes at dst (T = order.taps, a constant where the caller's is: then so are the stores' sizes).
template <int S, class Order>
inline void reorder_store(const __m512i (&src)[4], const Order& perm, int64_t T, int8_t* dst) {
  const int64_t bytes = 16 * T;
  for (int j = 0; j < S; ++j) {  // (S outputs: 16 T bytes, 64 a vector)
    __m512i out = _mm512_maskz_permutex2var_epi8(perm.mask_at(j, 0), src[0], perm.index_at(j, 0), src[1]);
    if constexpr (S > 2)
      out = _mm512_or_si512(
          out, _mm512_maskz_permutex2var_epi8(perm.mask_at(j, 1), src[2], perm.index_at(j, 1), src[3]));
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
  const OrderInMemory perm{order};
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
    reorder_store<S>(src, perm, T, q + c0 * T);
  }
}

// Four taps' 16 int8 channels (from c0), tap 4 k + i in 128-bit lane i (PatchOrder kLanes).
template <int T>
inline __m512i load_taps(const int8_t* const* tap, int k, int64_t c0) {
  const auto lane = [&](int i) {
    return 4 * k + i < T ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(tap[4 * k + i] + c0))
                         : _mm_setzero_si128();
  };
  __m512i v = _mm512_castsi128_si512(lane(0));
  v = _mm512_inserti32x4(v, lane(1), 1);
  v = _mm512_inserti32x4(v, lane(2), 2);
  return _mm512_inserti32x4(v, lane(3), 3);
}

// T taps, a constant: no branch per tap or per store.
template <int T>
void reorder_int8(const int8_t* const* tap, int64_t C, const PatchOrder& order, int8_t* q) {
  constexpr int S = (T + 3) / 4;
  const OrderInRegisters<S> perm(order);
  for (int64_t c0 = 0; c0 < C; c0 += 16) {
    __m512i src[4];
    for (int k = 0; k < 4; ++k) src[k] = k < S ? load_taps<T>(tap, k, c0) : _mm512_setzero_si512();
    reorder_store<S>(src, perm, T, q + c0 * T);
  }
}

using ReorderInt8 = void (*)(const int8_t* const*, int64_t, const PatchOrder&, int8_t*);
template <int... T>
constexpr std::array<ReorderInt8, sizeof...(T)> reorders(std::integer_sequence<int, T...>) {
  return {reorder_int8<T + 1>...};
}

}  // namespace

void gather_patch_int8(const int8_t* const* tap, int64_t C, const PatchOrder& order, int8_t* q) {
  static constexpr std::array<ReorderInt8, kPatchTapsAvx512> kReorder =
      reorders(std::make_integer_sequence<int, kPatchTapsAvx512>{});
  kReorder[static_cast<size_t>(order.taps - 1)](tap, C, order, q);
}

float abs_max(const float* x, int64_t n) {
  const __m512 zero = _mm512_setzero_ps();
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  // four chains (vmaxps's latency), named: an array indexed by c at run time had GCC keep them
  // on the stack (a store-forwarding chain per vector)
  __m512 m0 = zero, m1 = zero, m2 = zero, m3 = zero;
  const auto abs16 = [&](const float* p) {  // (a NaN lane loses to the maximum: no chain holds one)
    return _mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(p), abs_mask));
  };
  int64_t c = 0;
  for (; c + 64 <= n; c += 64) {
    m0 = _mm512_max_ps(abs16(x + c), m0);
    m1 = _mm512_max_ps(abs16(x + c + 16), m1);
    m2 = _mm512_max_ps(abs16(x + c + 32), m2);
    m3 = _mm512_max_ps(abs16(x + c + 48), m3);
  }
  for (; c + 16 <= n; c += 16) m0 = _mm512_max_ps(abs16(x + c), m0);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, _mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
  float amax = 0.0f;
  for (float v : lanes) amax = v > amax ? v : amax;
  for (; c < n; ++c) amax = std::fmax(amax, std::fabs(x[c]));
  return amax;
}

void quantize_scaled(const float* x, int64_t n, float sc, int8_t* q) {
  const Quantizer quant(sc);
  // pack_taps' bytes are four values of each source per 128-bit lane: dword 4 l + i holds source
  // i's values 4 l .. 4 l + 3; in order, dword j is source j / 4's group j % 4
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  int64_t k = 0;
  for (; k + 64 <= n; k += 64) {
    const __m512i packed = pack_taps(quant(_mm512_loadu_ps(x + k)), quant(_mm512_loadu_ps(x + k + 16)),
                                     quant(_mm512_loadu_ps(x + k + 32)), quant(_mm512_loadu_ps(x + k + 48)));
    _mm512_storeu_si512(q + k, _mm512_permutexvar_epi32(order, packed));
  }
  if (k < n) cpu::quantize_scaled(x + k, n - k, sc, q + k);  // (the same bits, 4 lanes wide)
}

void gather_quantize_patch(const float* const* tap, int64_t C, const PatchOrder& order, float amax, int8_t* q,
                           float* s) {
  const int64_t T = order.taps;
  const float sc = row_scale(amax);
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
