// The weight-generation contract v1 (docs/rng.md) for C++ (g++/clang) and CUDA (nvcc).
// One header so host and device code cannot drift apart. Torch-free on purpose.
//
// Bit-exactness notes:
//  - every float op below is a single IEEE binary32 operation; build without -ffast-math and
//    with -ffp-contract=off (host). Device code uses __fmul_rn/__fadd_rn so nvcc cannot fuse.
//  - `lock_thr` is the cumulative threshold P + L (as slt_hw.contract.freeze_thresholds returns).
#pragma once

#include <cstdint>
#ifndef __CUDA_ARCH__
#include <cstring>
#endif

#include "slt_normal_table.h"

#if defined(__CUDACC__)
#define SLT_HD __host__ __device__ __forceinline__
#else
// static: every translation unit keeps its own copy. The CPU kernels compile some TUs with
// AVX2/AVX-512 flags; with external linkage the linker could pick such a copy for all callers.
#define SLT_HD static inline
#endif

namespace slt {

constexpr int kContractVersion = 1;

enum Dist : int { kSignedConstant = 0, kUniform = 1, kNormal = 2 };
enum FreezeState : uint8_t { kPruned = 0, kLocked = 1, kFree = 2 };

constexpr int kOffsetBlockWeights = 1024;  // frozen format: one offset per 32 words
constexpr uint64_t kMaxWeightsPadded = uint64_t(1) << 32;

// Host copy: a C++17 inline variable, one definition across all TUs.
inline constexpr uint32_t kNormalTableBits[4096] = SLT_NORMAL_TABLE_BITS_INIT;

#if defined(__CUDACC__)
// Device copy in global memory (read through L1), not __constant__: table indices differ
// across a warp and the constant cache would serialise them. `static` gives each TU its own
// copy, so -rdc builds have no duplicate symbols either.
static __device__ const uint32_t kNormalTableBitsDevice[4096] = SLT_NORMAL_TABLE_BITS_INIT;
#endif

SLT_HD float bits_to_float(uint32_t b) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(b);
#else
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
#endif
}

SLT_HD uint32_t float_to_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
#endif
}

// Round-to-nearest-even float ops that a compiler may not contract into an FMA.
SLT_HD float fmul(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

SLT_HD float fadd(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

SLT_HD uint32_t normal_table_bits(uint32_t i) {
#ifdef __CUDA_ARCH__
  return __ldg(&kNormalTableBitsDevice[i]);
#else
  return kNormalTableBits[i];
#endif
}

// ---------------------------------------------------------------------------- hash (§3)

SLT_HD uint32_t lowbias32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7FEB352Du;
  x ^= x >> 15;
  x *= 0x846CA68Bu;
  x ^= x >> 16;
  return x;
}

SLT_HD uint32_t hash32(uint32_t k0, uint32_t k1, uint32_t c) {
  return lowbias32(lowbias32(c ^ k0) ^ k1);
}

// ---------------------------------------------------------------------------- geometry (§4)

SLT_HD uint32_t words_per_row(uint32_t K) { return (K + 31u) / 32u; }
SLT_HD uint32_t padded_cols(uint32_t K) { return 32u * words_per_row(K); }
SLT_HD uint32_t offset_blocks_per_row(uint32_t K) { return (words_per_row(K) + 31u) / 32u; }

// N * Kp <= 2^32 keeps every counter in 32 bits.
SLT_HD bool geometry_ok(uint64_t N, uint64_t K) {
  if (N < 1 || K < 1 || K > 0xFFFFFFFFull) return false;
  return N * (32ull * ((K + 31ull) / 32ull)) <= kMaxWeightsPadded;
}

SLT_HD uint32_t sign_counter(uint32_t n, uint32_t k, uint32_t K) {
  return n * words_per_row(K) + k / 32u;
}

SLT_HD uint32_t chunk_counter(uint32_t n, uint32_t k, uint32_t K) {
  return n * (padded_cols(K) / 2u) + k / 2u;
}

// Sign word of (n, 32w .. 32w+31): one hash serves 32 weights.
SLT_HD uint32_t sign_word(uint32_t k0, uint32_t k1, uint32_t n, uint32_t w, uint32_t K) {
  return hash32(k0, k1, n * words_per_row(K) + w);
}

SLT_HD uint32_t sign_bit(uint32_t k0, uint32_t k1, uint32_t n, uint32_t k, uint32_t K) {
  return (hash32(k0, k1, sign_counter(n, k, K)) >> (k % 32u)) & 1u;
}

// Half `k & 1` of a hash: low 16 bits for even k, high for odd.
SLT_HD uint32_t chunk_half(uint32_t h, uint32_t k) { return (h >> ((k & 1u) * 16u)) & 0xFFFFu; }

SLT_HD uint32_t chunk16(uint32_t k0, uint32_t k1, uint32_t n, uint32_t k, uint32_t K) {
  return chunk_half(hash32(k0, k1, chunk_counter(n, k, K)), k);
}

// ---------------------------------------------------------------------------- values (§5)

// Sign applied by setting the sign bit: exactly -s / +s for any finite s.
SLT_HD float signed_value(uint32_t bit, float scale) {
  return bits_to_float(float_to_bits(scale) ^ (bit << 31));
}

SLT_HD float uniform_value(uint32_t x, float scale) {
  // (2x - 65535) is odd and |.| <= 65535 < 2^24, so the conversion and * 2^-16 are exact;
  // the multiply by the scale is the single rounding.
  const float v = static_cast<float>(static_cast<int32_t>(2u * x) - 65535);
  return fmul(fmul(v, 0x1p-16f), scale);
}

SLT_HD float normal_value(uint32_t x, float scale) {
  return fmul(bits_to_float(normal_table_bits(x >> 4)), scale);
}

SLT_HD float value_from_chunk(uint32_t x, int dist, float scale) {
  return dist == kUniform ? uniform_value(x, scale) : normal_value(x, scale);
}

SLT_HD float weight_value(uint32_t k0, uint32_t k1, uint32_t n, uint32_t k, uint32_t K, int dist,
                          float scale) {
  if (dist == kSignedConstant) return signed_value(sign_bit(k0, k1, n, k, K), scale);
  return value_from_chunk(chunk16(k0, k1, n, k, K), dist, scale);
}

// ---------------------------------------------------------------------------- freeze (§7)

SLT_HD uint8_t state_from_chunk(uint32_t x, uint32_t prune_thr, uint32_t lock_thr) {
  return x < prune_thr ? uint8_t(kPruned) : (x < lock_thr ? uint8_t(kLocked) : uint8_t(kFree));
}

SLT_HD uint8_t freeze_state(uint32_t fk0, uint32_t fk1, uint32_t n, uint32_t k, uint32_t K,
                            uint32_t prune_thr, uint32_t lock_thr) {
  return state_from_chunk(chunk16(fk0, fk1, n, k, K), prune_thr, lock_thr);
}

// ---------------------------------------------------------------------------- masks (§7)

// Multicoat factor m = sum_i g_i * bit_i in float32, in coat order. A clear bit adds nothing
// (not g * 0, which would be NaN for an infinite g), as in slt_hw.reference.masks.
SLT_HD float accumulate_coat(float m, float g, uint32_t bit) { return bit ? fadd(m, g) : m; }

// w_eff = w0 * m, but +0.0 (never -0.0) where m == 0.
SLT_HD float apply_factor(float w0, float m) { return m == 0.0f ? 0.0f : fmul(w0, m); }

}  // namespace slt
