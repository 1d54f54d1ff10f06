// What the AVX-512 kernels share: the contract hash (docs/rng.md §3) on sixteen 32-bit lanes, a
// 16 x 16 transpose of dwords in registers, and a binary weight's P and N words with lanes =
// rows. Include it only from translation units compiled
// for AVX-512 (or against SIMDe, avx512_intrin.h); internal linkage, so each keeps its own copy
// behind its runtime CPU check (as avx2_common.h).
#pragma once

#include <cstdint>

#include "../core/weight_desc.h"
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

// The P and N words of rows [n0, n0 + 16), words [w0, w0 + words), lanes = rows:
// pn[32 i + r] = P of word w0 + i of row n0 + r, pn[32 i + 16 + r] its N (zero for rows at or
// past n1), P = mask & ~sign, N = mask & sign. The masks are transposed 16 x 16, the signs
// hashed 16 rows at a time: a pass of its own, so that the table lookups that read it do not
// wait on the hash's ~50-cycle latency (4 vpmulld) per word. (The binary format's one plane.)
static inline void pn_words(const WeightDesc& p, int64_t n0, int64_t n1, int64_t w0, int64_t words, uint32_t* pn) {
  const int64_t W = (p.K + 31) / 32;
  int64_t i = 0;
  if (n1 - n0 == 16) {
    for (; i + 16 <= words; i += 16) {
      __m512i v[16];
      for (int r = 0; r < 16; ++r) v[r] = _mm512_loadu_si512(p.planes + (n0 + r) * W + w0 + i);
      transpose16(v);
      for (int j = 0; j < 16; ++j) _mm512_storeu_si512(pn + 32 * (i + j), v[j]);
    }
  }
  for (; i < words; ++i)
    for (int r = 0; r < 16; ++r) pn[32 * i + r] = n0 + r < n1 ? uint32_t(p.planes[(n0 + r) * W + w0 + i]) : 0u;
  const __m512i k0 = _mm512_set1_epi32(int32_t(p.k0)), k1 = _mm512_set1_epi32(int32_t(p.k1));
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  // counter of row n, word w: n W + w (u32 arithmetic, docs/rng.md §4)
  __m512i c = _mm512_add_epi32(
      _mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32(int32_t(uint32_t(n0))), lanes),
                         _mm512_set1_epi32(int32_t(uint32_t(W)))),
      _mm512_set1_epi32(int32_t(uint32_t(w0))));
  for (i = 0; i < words; ++i, c = _mm512_add_epi32(c, one)) {
    const __m512i m = _mm512_loadu_si512(pn + 32 * i), s = hash_v(c, k0, k1);
    _mm512_storeu_si512(pn + 32 * i, _mm512_andnot_si512(s, m));
    _mm512_storeu_si512(pn + 32 * i + 16, _mm512_and_si512(s, m));
  }
}

}  // namespace avx512common
}  // namespace cpu
}  // namespace slt
