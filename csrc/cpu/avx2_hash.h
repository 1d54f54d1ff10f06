// The contract hash (docs/rng.md §2) on eight 32-bit lanes, for the AVX2 kernels. Include it only
// from translation units compiled with -mavx2 (linear_avx2.cpp, linear_avx2lut.cpp); internal
// linkage, so each keeps its own copy behind its runtime CPU check.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace slt {
namespace cpu {
namespace avx2hash {

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

}  // namespace avx2hash
}  // namespace cpu
}  // namespace slt
