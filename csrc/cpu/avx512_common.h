// What the AVX-512 kernels share: the contract hash (docs/rng.md §3) on sixteen 32-bit lanes and
// a 16 x 16 transpose of dwords in registers. Include it only from translation units compiled
// for AVX-512 (or against SIMDe, avx512_intrin.h); internal linkage, so each keeps its own copy
// behind its runtime CPU check (as avx2_common.h).
#pragma once

#include <cstdint>

#include "avx512_intrin.h"

namespace slt {
namespace cpu {
namespace avx512common {

static inline __m512i lowbias32_v(__m512i x) {
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
  x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7FEB352D));
  x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
  x = _mm512_mullo_epi32(x, _mm512_set1_epi32(int32_t(0x846CA68Bu)));
  return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
}

// h(k0, k1, c) for sixteen counters c.
static inline __m512i hash_v(__m512i c, __m512i k0, __m512i k1) {
  return lowbias32_v(_mm512_xor_si512(lowbias32_v(_mm512_xor_si512(c, k0)), k1));
}

// In place: v[j] lane i = v[i] lane j before (a 16 x 16 tile of dwords).
static inline void transpose16(__m512i v[16]) {
  __m512i t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_epi32(v[i], v[i + 1]);
    t[i + 1] = _mm512_unpackhi_epi32(v[i], v[i + 1]);
  }
  // u[4 i + j], 128-bit lane L: column 4 L + j of rows 4 i .. 4 i + 3
  __m512i u[16];
  for (int i = 0; i < 16; i += 4) {
    u[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
    u[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
    u[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
    u[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
  }
  // column 4 L + j: lane L of u[j], u[4 + j], u[8 + j], u[12 + j] (a 4 x 4 transpose of lanes)
  for (int j = 0; j < 4; ++j) {
    const __m512i a = _mm512_shuffle_i32x4(u[j], u[4 + j], 0x44);
    const __m512i b = _mm512_shuffle_i32x4(u[j], u[4 + j], 0xEE);
    const __m512i c = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0x44);
    const __m512i d = _mm512_shuffle_i32x4(u[8 + j], u[12 + j], 0xEE);
    v[j] = _mm512_shuffle_i32x4(a, c, 0x88);
    v[4 + j] = _mm512_shuffle_i32x4(a, c, 0xDD);
    v[8 + j] = _mm512_shuffle_i32x4(b, d, 0x88);
    v[12 + j] = _mm512_shuffle_i32x4(b, d, 0xDD);
  }
}

}  // namespace avx512common
}  // namespace cpu
}  // namespace slt
