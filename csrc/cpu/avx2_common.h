// What the AVX2 kernels share: the contract hash (docs/rng.md §2) on eight 32-bit lanes, a
// word's bits as byte masks, a horizontal sum and an 8 x 8 transpose in registers. Include it
// only from translation units compiled with -mavx2 (linear_avx2.cpp, linear_avx2lut.cpp,
// im2col_avx2.cpp, conv_int8_avx2.cpp, linear_avx2panel.cpp via avx2_panel.h); internal
// linkage, so each keeps its own copy behind its runtime CPU check.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace slt {
namespace cpu {
namespace avx2common {

static inline __m256i lowbias32_v(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7FEB352D));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(int32_t(0x846CA68Bu)));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

// h(k0, k1, c) for eight counters c.
static inline __m256i hash_v(__m256i c, __m256i k0, __m256i k1) {
  return lowbias32_v(_mm256_xor_si256(lowbias32_v(_mm256_xor_si256(c, k0)), k1));
}

// h[j] = hash_v(c[j], k0, k1), j < 4, the four chains interleaved step by step: one hash's
// latency (4 dependent vpmulld) then hides behind the others' work, where a loop of single
// hashes left the multiplier idle (11008 x 4096 sign words, Zen 2: 0.66 -> 0.56 ms).
static inline void hash_v4(const __m256i c[4], __m256i k0, __m256i k1, __m256i h[4]) {
  for (int j = 0; j < 4; ++j) h[j] = lowbias32_v(_mm256_xor_si256(c[j], k0));
  for (int j = 0; j < 4; ++j) h[j] = lowbias32_v(_mm256_xor_si256(h[j], k1));
}

// Byte j of the result is 0xFF iff bit j of the 32 bits at p is set. Broadcast straight from
// memory: a load-port µop, where a word already in a register costs two shuffle-port µops
// (vmovd + vpbroadcastd) on the ports the expansion itself needs (measured: docs/benchmarks.md).
static inline __m256i expand_bytes(const void* p) {
  const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 3, 3,
                                        3, 3, 3, 3, 3, 3);
  const __m256i bitsel = _mm256_set1_epi64x(int64_t(0x8040201008040201ull));
  const __m256i all = _mm256_castps_si256(_mm256_broadcast_ss(static_cast<const float*>(p)));
  return _mm256_cmpeq_epi8(_mm256_and_si256(_mm256_shuffle_epi8(all, shuf), bitsel), bitsel);
}

// The sum of v's eight int32 lanes.
static inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// out[j] lane i = r[i] lane j: the rows of an 8 x 8 tile of 32-bit values become its columns.
static inline void transpose8x8_ps(__m256 r[8], __m256 out[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    out[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
    out[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
  }
}

}  // namespace avx2common
}  // namespace cpu
}  // namespace slt
