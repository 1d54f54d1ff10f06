// AVX2 + FMA row kernels of the fused linear (linear.h). Compiled with -mavx2 -mfma only in this
// TU and called only after a runtime CPU check (linear.cpp).
#include <immintrin.h>

#include <cstring>

#include "../core/slt_contract.h"
#include "avx2_common.h"
#include "generate.h"
#include "linear.h"

namespace slt {
namespace cpu {
namespace avx2 {
namespace {

using avx2common::hash_v;  // the contract hash on 8 lanes (avx2_common.h)
using avx2common::transpose8x8_ps;

// out[i] = h(k0, k1, base + i): 32 counters per step (four interleaved hashes), then eight.
inline void hash_range(uint32_t k0, uint32_t k1, uint32_t base, uint32_t count, uint32_t* out) {
  const __m256i vk0 = _mm256_set1_epi32(int32_t(k0)), vk1 = _mm256_set1_epi32(int32_t(k1));
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  uint32_t i = 0;
  for (; i + 32 <= count; i += 32) {
    __m256i c[4], h[4];
    for (int j = 0; j < 4; ++j) c[j] = _mm256_add_epi32(_mm256_set1_epi32(int32_t(base + i + 8 * j)), lanes);
    avx2common::hash_v4(c, vk0, vk1, h);
    for (int j = 0; j < 4; ++j) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 8 * j), h[j]);
  }
  for (; i + 8 <= count; i += 8) {
    const __m256i c = _mm256_add_epi32(_mm256_set1_epi32(int32_t(base + i)), lanes);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), hash_v(c, vk0, vk1));
  }
  for (; i < count; ++i) out[i] = hash32(k0, k1, base + i);
}

// vals[2i], vals[2i + 1] = the contract's uniform values of the low and high halves of h[i],
// eight hashes per step, bit-identical to uniform_value (the int conversion is exact and the two
// products are separate roundings, as in the contract); 2.4x faster rows at batch 1. Returns
// how many hashes it converted. Normal values are left to row_values' table lookups one by one
// (vpgatherdd measured no faster on Zen 3, and is microcoded on older cores).
inline uint32_t simd_values(const uint32_t* h, uint32_t count, int dist, float scale, float* vals) {
  uint32_t i = 0;
  if (dist == kUniform) {
    const __m256 vs = _mm256_set1_ps(scale), k = _mm256_set1_ps(0x1p-16f);
    const __m256i lo16 = _mm256_set1_epi32(0xFFFF), odd = _mm256_set1_epi32(65535);
    for (; i + 8 <= count; i += 8) {
      const __m256i hv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(h + i));
      const __m256i a = _mm256_and_si256(hv, lo16), b = _mm256_srli_epi32(hv, 16);
      __m256 va = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_slli_epi32(a, 1), odd));
      __m256 vb = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_slli_epi32(b, 1), odd));
      va = _mm256_mul_ps(_mm256_mul_ps(va, k), vs);
      vb = _mm256_mul_ps(_mm256_mul_ps(vb, k), vs);
      const __m256 lo = _mm256_unpacklo_ps(va, vb), hi = _mm256_unpackhi_ps(va, vb);  // a0 b0 a1 b1 | a4 b4 a5 b5
      _mm256_storeu_ps(vals + 2 * i, _mm256_permute2f128_ps(lo, hi, 0x20));
      _mm256_storeu_ps(vals + 2 * i + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
  }
  return i;  // row_values converts the rest
}

constexpr int64_t kI8Rows = 8;  // activation rows per int8 pass (one int16 accumulator each)

using avx2common::expand_bytes;
using avx2common::hsum_epi32;

// Int8 activations, kI8Rows rows per pass (rows [m0, m0 + M) of the call's Mt). Weights
// t in {-1, 0, +1} enter as u = t + 1 in {0, 1, 2} (unsigned bytes), one vpmaddubsw per 32
// weights and activation row (u unsigned, x signed, straight from memory): sum_k x t =
// sum_k x u - sum_k x, the row sums of x taken once per call. u is built 256 columns (8 words)
// at a time, bit-sliced: byte i of the block's 32 mask bytes holds columns 8i .. 8i + 7, so
// "bit q of every byte" is 32 weights, columns = q mod 8 (slice q). u = 2P + Z (P = mask & ~sign,
// Z = ~mask) is spread by two vpshufb nibble tables into 2-bit codes, four per byte, and a slice
// is then a shift and an and: ~3.5 instructions per 32 weights, where expanding each word's bits
// to bytes took ~11 (docs/benchmarks.md). x comes packed to match (pack_int8): row r of slice q
// of block B at 32 ((8 B + q) Mt + r), byte i = column 256 B + 8 i + q; then the Mt row sums.
// Up to kSmallBatchInt8Avx2 rows, a row's pass after pass rebuilds its codes (~10 % of a pass)
// and reads x from L2: still faster than the blocked kernel's byte tiles (docs/benchmarks.md).
// Pair sums |x0 u0 + x1 u1| <= 512 stay in int16 for 63 slices (|sum| <= 32256): 7 blocks.
constexpr int64_t kI8StretchBlocks = 7;

inline __m256i load8(const uint32_t* w) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w)); }

// The 2-bit codes u = 2P + Z of a block: c[0] byte i = codes of bits 0..3 of byte i (bits 2j,
// 2j + 1 for bit j), c[1] of bits 4..7.
inline void block_codes(__m256i m, __m256i s, __m256i c[2]) {
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  // nibble -> its bits at the odd (P) / even (Z) positions of a byte, in both 128-bit lanes
  const __m256i tp = _mm256_setr_epi8(0, 2, 8, 10, 32, 34, 40, 42, -128, -126, -120, -118, -96, -94, -88, -86,  //
                                      0, 2, 8, 10, 32, 34, 40, 42, -128, -126, -120, -118, -96, -94, -88, -86);
  const __m256i tz = _mm256_setr_epi8(0, 1, 4, 5, 16, 17, 20, 21, 64, 65, 68, 69, 80, 81, 84, 85,  //
                                      0, 1, 4, 5, 16, 17, 20, 21, 64, 65, 68, 69, 80, 81, 84, 85);
  const __m256i P = _mm256_andnot_si256(s, m), Z = _mm256_andnot_si256(m, _mm256_set1_epi8(-1));
  c[0] = _mm256_or_si256(_mm256_shuffle_epi8(tp, _mm256_and_si256(P, lo4)),
                         _mm256_shuffle_epi8(tz, _mm256_and_si256(Z, lo4)));
  c[1] = _mm256_or_si256(_mm256_shuffle_epi8(tp, _mm256_and_si256(_mm256_srli_epi16(P, 4), lo4)),
                         _mm256_shuffle_epi8(tz, _mm256_and_si256(_mm256_srli_epi16(Z, 4), lo4)));
}

template <int M>
void dot_i8_m(const int8_t* xq, int64_t Mt, int64_t m0, const uint32_t* sw, const uint32_t* mw, int64_t W,
              int32_t* out) {
  const __m256i three = _mm256_set1_epi8(3), ones16 = _mm256_set1_epi16(1);
  const int64_t blocks = (W + 7) / 8;
  alignas(32) uint32_t tail_m[8] = {}, tail_s[8] = {};  // a last, partial block (its x is zero past W)
  if (W % 8) {
    std::memcpy(tail_m, mw + 8 * (blocks - 1), size_t(W % 8) * 4);
    std::memcpy(tail_s, sw + 8 * (blocks - 1), size_t(W % 8) * 4);
  }
  int32_t sums[M] = {};  // horizontal sums per stretch: no int32 vectors held in the loop
  for (int64_t b0 = 0; b0 < blocks; b0 += kI8StretchBlocks) {
    const int64_t b1 = b0 + kI8StretchBlocks < blocks ? b0 + kI8StretchBlocks : blocks;
    __m256i acc16[M];
    for (int r = 0; r < M; ++r) acc16[r] = _mm256_setzero_si256();
    for (int64_t b = b0; b < b1; ++b) {  // no skip of empty words: they add sum x, taken off below
      const bool part = 8 * b + 8 > W;
      __m256i c[2];
      block_codes(load8(part ? tail_m : mw + 8 * b), load8(part ? tail_s : sw + 8 * b), c);
      const int8_t* xs = xq + 256 * Mt * b + 32 * m0;  // slice q: xs advanced by q slices
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q, xs += 32 * Mt) {  // (offsets 32 (Mt q + r) made GCC spill at M = 8)
        const __m256i u = _mm256_and_si256(q % 4 ? _mm256_srli_epi16(c[q / 4], 2 * (q % 4)) : c[q / 4], three);
        for (int r = 0; r < M; ++r) {
          const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(xs + 32 * r));
          acc16[r] = _mm256_add_epi16(_mm256_maddubs_epi16(u, x), acc16[r]);
          __asm__("" : "+x"(acc16[r]));  // one temporary at a time (else GCC spills accumulators at M = 8)
        }
      }
    }
    for (int r = 0; r < M; ++r) sums[r] += hsum_epi32(_mm256_madd_epi16(acc16[r], ones16));
  }
  const int32_t* xsum = reinterpret_cast<const int32_t*>(xq + 256 * Mt * blocks) + m0;
  for (int r = 0; r < M; ++r) out[r] = sums[r] - xsum[r];
}

inline void dot_i8(const int8_t* xq, int64_t Kp, int64_t Mt, int64_t m0, int64_t mb, const uint32_t* sw,
                   const uint32_t* mw, int64_t W, int32_t* out) {
  (void)Kp;
  switch (mb) {
    case 1: return dot_i8_m<1>(xq, Mt, m0, sw, mw, W, out);
    case 2: return dot_i8_m<2>(xq, Mt, m0, sw, mw, W, out);
    case 3: return dot_i8_m<3>(xq, Mt, m0, sw, mw, W, out);
    case 4: return dot_i8_m<4>(xq, Mt, m0, sw, mw, W, out);
    case 5: return dot_i8_m<5>(xq, Mt, m0, sw, mw, W, out);
    case 6: return dot_i8_m<6>(xq, Mt, m0, sw, mw, W, out);
    case 7: return dot_i8_m<7>(xq, Mt, m0, sw, mw, W, out);
    default: return dot_i8_m<8>(xq, Mt, m0, sw, mw, W, out);
  }
}

// Coats sharing a scale (coat_levels): the coats' codes summed, u = sum_c u_c = C + t with
// t = +-level in [-C, C], and one vpmaddubsw pass: sum_k x t = sum_k x u - C sum_k x. Each
// coat's codes (block_codes) are split into two 4-bit fields a byte, the codes of bits 0 and
// 2 (e) and of bits 1 and 3 (o), and summed there (u <= 2C <= 14 fits); a slice is then a
// shift and an and of a sum, as for one coat. The codes cost ~24 instructions per coat and
// 256 weights; the products, the part that grows with the rows, one pass in all. Pair sums
// |x0 u0 + x1 u1| <= 512 C stay in int16 for kI8StretchBlocks / C blocks: up to
// kI8StretchBlocks coats.
template <int M>
void dot_i8_levels_m(const int8_t* xq, int64_t Mt, int64_t m0, const uint32_t* sw, const uint32_t* planes,
                     int64_t stride, int64_t C, int64_t W, int32_t* out) {
  const __m256i pairs = _mm256_set1_epi8(0x33), lo4 = _mm256_set1_epi8(0x0F), ones16 = _mm256_set1_epi16(1);
  const int64_t blocks = (W + 7) / 8, stretch = kI8StretchBlocks / C;
  alignas(32) uint32_t tail_m[8] = {}, tail_s[8] = {};  // a last, partial block (its x is zero past W)
  if (W % 8) std::memcpy(tail_s, sw + 8 * (blocks - 1), size_t(W % 8) * 4);
  int32_t sums[M] = {};
  for (int64_t b0 = 0; b0 < blocks; b0 += stretch) {
    const int64_t b1 = b0 + stretch < blocks ? b0 + stretch : blocks;
    __m256i acc16[M];
    for (int r = 0; r < M; ++r) acc16[r] = _mm256_setzero_si256();
    for (int64_t b = b0; b < b1; ++b) {
      const bool part = 8 * b + 8 > W;
      const __m256i s = load8(part ? tail_s : sw + 8 * b);
      __m256i e[2], o[2];
      for (int64_t c = 0; c < C; ++c) {
        const uint32_t* mw = planes + c * stride + 8 * b;
        if (part) std::memcpy(tail_m, mw, size_t(W % 8) * 4);
        __m256i cc[2];
        block_codes(load8(part ? tail_m : mw), s, cc);
        for (int h = 0; h < 2; ++h) {
          const __m256i ce = _mm256_and_si256(cc[h], pairs), co = _mm256_and_si256(_mm256_srli_epi16(cc[h], 2), pairs);
          e[h] = c ? _mm256_add_epi8(e[h], ce) : ce;
          o[h] = c ? _mm256_add_epi8(o[h], co) : co;
        }
      }
      const int8_t* xs = xq + 256 * Mt * b + 32 * m0;
#pragma GCC unroll 8
      for (int q = 0; q < 8; ++q, xs += 32 * Mt) {
        const __m256i f = q % 2 ? o[q / 4] : e[q / 4];
        const __m256i u = _mm256_and_si256(q % 4 >= 2 ? _mm256_srli_epi16(f, 4) : f, lo4);
        for (int r = 0; r < M; ++r) {
          const __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(xs + 32 * r));
          acc16[r] = _mm256_add_epi16(_mm256_maddubs_epi16(u, x), acc16[r]);
          __asm__("" : "+x"(acc16[r]));
        }
      }
    }
    for (int r = 0; r < M; ++r) sums[r] += hsum_epi32(_mm256_madd_epi16(acc16[r], ones16));
  }
  const int32_t* xsum = reinterpret_cast<const int32_t*>(xq + 256 * Mt * blocks) + m0;
  for (int r = 0; r < M; ++r) out[r] = sums[r] - int32_t(C) * xsum[r];
}
inline bool dot_i8_levels(const int8_t* xq, int64_t Kp, int64_t Mt, int64_t m0, int64_t mb, const uint32_t* sw,
                          const uint32_t* planes, int64_t stride, int64_t C, int64_t W, int32_t* out) {
  (void)Kp;
  if (C > kI8StretchBlocks) return false;
  switch (mb) {
    case 1: dot_i8_levels_m<1>(xq, Mt, m0, sw, planes, stride, C, W, out); break;
    case 2: dot_i8_levels_m<2>(xq, Mt, m0, sw, planes, stride, C, W, out); break;
    case 3: dot_i8_levels_m<3>(xq, Mt, m0, sw, planes, stride, C, W, out); break;
    case 4: dot_i8_levels_m<4>(xq, Mt, m0, sw, planes, stride, C, W, out); break;
    case 5: dot_i8_levels_m<5>(xq, Mt, m0, sw, planes, stride, C, W, out); break;
    case 6: dot_i8_levels_m<6>(xq, Mt, m0, sw, planes, stride, C, W, out); break;
    case 7: dot_i8_levels_m<7>(xq, Mt, m0, sw, planes, stride, C, W, out); break;
    default: dot_i8_levels_m<8>(xq, Mt, m0, sw, planes, stride, C, W, out); break;
  }
  return true;
}

#define SLT_HW_DOT_I8_LEVELS
#include "linear_rowdesc.inc"

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Bit (8j + lane) of a broadcast word moved to the lane's sign bit, which blendv reads.
alignas(32) constexpr int32_t kShift[4][8] = {{31, 30, 29, 28, 27, 26, 25, 24},
                                              {23, 22, 21, 20, 19, 18, 17, 16},
                                              {15, 14, 13, 12, 11, 10, 9, 8},
                                              {7, 6, 5, 4, 3, 2, 1, 0}};

inline __m256 bit_select(__m256i word, int j) {
  const __m256i shift = _mm256_load_si256(reinterpret_cast<const __m256i*>(kShift[j]));
  return _mm256_castsi256_ps(_mm256_sllv_epi32(word, shift));
}

// kSigns[b]: +1.0 in lane j if bit j of byte b is clear, -1.0 if set. Signed-constant weights are
// built as +-1 (a table load per 8 lanes instead of a shift and a blend) and the row's sum is
// scaled once at the end.
struct SignTable {
  alignas(32) float v[256][8];
  SignTable() {
    for (int b = 0; b < 256; ++b)
      for (int j = 0; j < 8; ++j) v[b][j] = ((b >> j) & 1) ? -1.0f : 1.0f;
  }
};
const SignTable kSigns;

// Sign codes (signed constant, one mask plane): column c of word w gets two bits, mask and
// sign & mask, at bits 2c and 2c + 1 of the 64-bit code z[w] (two dwords). The row kernel moves
// a column's code into its lane with one variable shift and reads its weight {0, +1, -1} from a
// four-entry vpermilps table: two shuffle-port µops per 8 weights, and no table loads or blends.
// 8 words at once: nibbles spread by vpshufb, the even and odd nibbles' bytes interleaved.
inline void codes8(__m256i m, __m256i s, uint32_t* z) {
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  const __m256i spread = _mm256_setr_epi8(0, 1, 4, 5, 16, 17, 20, 21, 64, 65, 68, 69, 80, 81, 84, 85,  //
                                          0, 1, 4, 5, 16, 17, 20, 21, 64, 65, 68, 69, 80, 81, 84, 85);
  const __m256i spread_s = _mm256_slli_epi16(spread, 1);  // bytes < 128: no carry across bytes
  s = _mm256_and_si256(s, m);
  const __m256i ml = _mm256_and_si256(m, lo4), mh = _mm256_and_si256(_mm256_srli_epi16(m, 4), lo4);
  const __m256i sl = _mm256_and_si256(s, lo4), sh = _mm256_and_si256(_mm256_srli_epi16(s, 4), lo4);
  const __m256i zl = _mm256_or_si256(_mm256_shuffle_epi8(spread, ml), _mm256_shuffle_epi8(spread_s, sl));
  const __m256i zh = _mm256_or_si256(_mm256_shuffle_epi8(spread, mh), _mm256_shuffle_epi8(spread_s, sh));
  // per 128-bit lane: unpacklo gives the codes of its words 0, 1, unpackhi of its words 2, 3
  const __m256i a = _mm256_unpacklo_epi8(zl, zh), b = _mm256_unpackhi_epi8(zl, zh);
  __m128i* out = reinterpret_cast<__m128i*>(z);
  _mm_storeu_si128(out + 0, _mm256_castsi256_si128(a));
  _mm_storeu_si128(out + 1, _mm256_castsi256_si128(b));
  _mm_storeu_si128(out + 2, _mm256_extracti128_si256(a, 1));
  _mm_storeu_si128(out + 3, _mm256_extracti128_si256(b, 1));
}

// Codes of `words` words from their mask and sign words.
inline void sign_codes(const uint32_t* mw, const uint32_t* sw, int64_t words, uint32_t* z) {
  int64_t w = 0;
  for (; w + 8 <= words; w += 8)
    codes8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(mw + w)),
           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(sw + w)), z + 2 * w);
  for (; w < words; ++w) {
    const uint32_t m = mw[w], s = sw[w] & m;
    z[2 * w] = spread_even(m) | (spread_even(s) << 1);
    z[2 * w + 1] = spread_even(m >> 16) | (spread_even(s >> 16) << 1);
  }
}

// What one row (or row block) needs to build its effective weights word by word. The
// broadcast constants are made once per row, not per word.
struct RowDesc {
  const uint32_t* sw;         // sign words (signed constant)
  const uint32_t* z;          // sign codes (signed constant, one plane): two dwords per word
  const float* vals;          // values (uniform / normal)
  const uint32_t* em;         // effective mask words (frozen)
  const int32_t* row_planes;  // planes + n*W (binary / multicoat)
  int64_t plane_stride;       // N * W
  int64_t C;
  const float* coat_scales;
  __m256 g0;                  // the single coat's scale (uniform / normal values)
  float factor;               // applied to each sum: the signed-constant scale (times g0)
};

// codes: also build the sign codes (used by word_weights<..., CODES = true>).
RowDesc make_desc(const LinearProblem& p, const RowScratch& s, int64_t n, uint32_t w0, uint32_t w1, bool codes) {
  const int64_t W = (p.K + 31) / 32;
  const bool frozen = p.planes == nullptr;
  const float g0 = frozen ? 1.0f : p.coat_scales[0];
  const bool one = frozen || p.C == 1;
  const bool sc = p.dist == kSignedConstant;
  const int32_t* row_planes = frozen ? nullptr : p.planes + n * W;
  if (codes && sc && one)
    sign_codes(frozen ? s.em : reinterpret_cast<const uint32_t*>(row_planes + w0), s.sw, w1 - w0, s.codes);
  return RowDesc{s.sw, s.codes, s.vals, s.em, row_planes, p.N * W, p.C, p.coat_scales,
                 _mm256_set1_ps(one && !sc ? g0 : 1.0f), sc ? (one ? p.scale * g0 : p.scale) : 1.0f};
}

// The 32 effective weights of word w (wl: its index in the descriptor) in four ymm; false if no
// mask bit is set (the caller skips the word). Specialised on the distribution and format so
// the per-word path has no branches but the skip.
// TABLE: signs from kSigns (fewer vector ops: best when few activation rows share the word) or
// from a shift and a blend (fewer loads: better when many rows keep the load ports busy).
// CODES (signed constant, one plane): from the sign codes, fewest µops per word: faster at one or
// two activation rows, no gain once more rows share the weights (docs/benchmarks.md).
template <bool SC, bool ONE, bool FRZ, bool TABLE = true, bool CODES = false>
inline bool word_weights(const RowDesc& d, int64_t w, int64_t wl, __m256* wv) {
  const uint32_t any = FRZ ? d.em[wl] : uint32_t(d.row_planes[w]);  // coats are nested
  if (!any) return false;
  if (SC && ONE && CODES) {
    const __m256 table = _mm256_setr_ps(0.0f, 1.0f, 0.0f, -1.0f, 0.0f, 1.0f, 0.0f, -1.0f);
    const __m256i lo = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14), hi = _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30);
    const __m256i z0 = _mm256_set1_epi32(int32_t(d.z[2 * wl])), z1 = _mm256_set1_epi32(int32_t(d.z[2 * wl + 1]));
    wv[0] = _mm256_permutevar_ps(table, _mm256_srlv_epi32(z0, lo));
    wv[1] = _mm256_permutevar_ps(table, _mm256_srlv_epi32(z0, hi));
    wv[2] = _mm256_permutevar_ps(table, _mm256_srlv_epi32(z1, lo));
    wv[3] = _mm256_permutevar_ps(table, _mm256_srlv_epi32(z1, hi));
    return true;
  }
  __m256 base[4];
  if (SC) {
    const uint32_t s = d.sw[wl];
    if (TABLE) {
      for (int j = 0; j < 4; ++j) base[j] = _mm256_load_ps(kSigns.v[(s >> (8 * j)) & 0xFFu]);
    } else {
      const __m256 pos = _mm256_set1_ps(1.0f), neg = _mm256_set1_ps(-1.0f);
      const __m256i sv = _mm256_set1_epi32(int32_t(s));
      for (int j = 0; j < 4; ++j) base[j] = _mm256_blendv_ps(pos, neg, bit_select(sv, j));
    }
  } else {
    for (int j = 0; j < 4; ++j) base[j] = _mm256_mul_ps(_mm256_loadu_ps(d.vals + 32 * wl + 8 * j), d.g0);
  }
  const __m256 zero = _mm256_setzero_ps();
  if (ONE) {
    const __m256i mv = _mm256_set1_epi32(int32_t(any));
    for (int j = 0; j < 4; ++j) wv[j] = _mm256_blendv_ps(zero, base[j], bit_select(mv, j));
    return true;
  }
  // several coats: m = sum of the kept coats' scales in coat order, then w0 * m, one rounding
  // (docs/rng.md §7; an FMA per coat would round w0 * g_i each time). A clear bit adds +0.
  __m256 m[4] = {zero, zero, zero, zero};
  for (int64_t i = 0; i < d.C; ++i) {
    const __m256i mv = _mm256_set1_epi32(d.row_planes[i * d.plane_stride + w]);
    const __m256 g = _mm256_set1_ps(d.coat_scales[i]);
    for (int j = 0; j < 4; ++j) m[j] = _mm256_add_ps(m[j], _mm256_blendv_ps(zero, g, bit_select(mv, j)));
  }
  for (int j = 0; j < 4; ++j) wv[j] = _mm256_mul_ps(base[j], m[j]);
  return true;
}

// ---------------------------------------------------------------------------- small batch
constexpr int64_t kCodeRows = 2;  // up to this many activation rows: weights from sign codes

// Row n against activation rows [m0, m0 + M): weights built in registers once per word and
// used for all M rows. A accumulators per activation row hide the FMA latency when M is small.
template <int M, int A, bool SC, bool ONE, bool FRZ>
void row_dot(const float* xp, int64_t Kp, int64_t m0, const RowDesc& d, float* out) {
  const int64_t W = Kp / 32;
  __m256 acc[M][A];
  for (int r = 0; r < M; ++r)
    for (int a = 0; a < A; ++a) acc[r][a] = _mm256_setzero_ps();
  __m256 wv[4];
  for (int64_t w = 0; w < W; ++w) {
    if (!word_weights<SC, ONE, FRZ, (M <= 2), (M <= kCodeRows)>(d, w, w, wv)) continue;
    for (int r = 0; r < M; ++r) {
      const float* xr = xp + (m0 + r) * Kp + 32 * w;
      for (int j = 0; j < 4; ++j) acc[r][j % A] = _mm256_fmadd_ps(wv[j], _mm256_loadu_ps(xr + 8 * j), acc[r][j % A]);
    }
  }
  for (int r = 0; r < M; ++r) {
    __m256 s = acc[r][0];
    for (int a = 1; a < A; ++a) s = _mm256_add_ps(s, acc[r][a]);
    out[r] = hsum(s) * d.factor;
  }
}

using RowDot = void (*)(const float*, int64_t, int64_t, const RowDesc&, float*);

// Up to 8 activation rows per pass: 8 accumulators + 4 weight vectors fit the 16 ymm registers.
template <bool SC, bool ONE, bool FRZ>
RowDot row_dot_for(int64_t m) {
  constexpr RowDot table[9] = {nullptr,
                               row_dot<1, 4, SC, ONE, FRZ>, row_dot<2, 4, SC, ONE, FRZ>,
                               row_dot<3, 2, SC, ONE, FRZ>, row_dot<4, 2, SC, ONE, FRZ>,
                               row_dot<5, 1, SC, ONE, FRZ>, row_dot<6, 1, SC, ONE, FRZ>,
                               row_dot<7, 1, SC, ONE, FRZ>, row_dot<8, 1, SC, ONE, FRZ>};
  return table[m];
}

using WordWeights = bool (*)(const RowDesc&, int64_t, int64_t, __m256*);

#include "linear_pick.inc"

// ---------------------------------------------------------------------------- large batch
// Outer-product micro-kernel (BLIS-style): 6 activation rows x a panel of 16 weight rows, 12 ymm
// accumulators. Per column k, two loads of the k-major panel and six broadcasts of x feed 12
// FMAs, and the 6 x 16 tile is added to y with no horizontal sums (speed: docs/benchmarks.md).
constexpr int64_t kMr = 6, kPanel = 16;

template <int MR>
void micro_panel(const float* xp, int64_t Kp, const float* panel, int64_t len, float* y, int64_t ldy, int64_t nr) {
  __m256 acc[MR][2];
  for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < len; ++k) {
    const __m256 w0 = _mm256_load_ps(panel + kPanel * k), w1 = _mm256_load_ps(panel + kPanel * k + 8);
    for (int r = 0; r < MR; ++r) {
      const __m256 xv = _mm256_broadcast_ss(xp + r * Kp + k);
      acc[r][0] = _mm256_fmadd_ps(xv, w0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(xv, w1, acc[r][1]);
    }
  }
  // Spilled once here, not per k: with the y update in this loop, GCC kept acc in memory.
  alignas(32) float t[MR][kPanel];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) {
    _mm256_store_ps(t[r], acc[r][0]);
    _mm256_store_ps(t[r] + 8, acc[r][1]);
  }
  for (int r = 0; r < MR; ++r)
    for (int64_t c = 0; c < nr; ++c) y[r * ldy + c] += t[r][c];
}

using MicroPanel = void (*)(const float*, int64_t, const float*, int64_t, float*, int64_t, int64_t);
constexpr MicroPanel kMicroPanel[kMr + 1] = {nullptr,        micro_panel<1>, micro_panel<2>, micro_panel<3>,
                                             micro_panel<4>, micro_panel<5>, micro_panel<6>};

// dst[8 k + j] = src[j * ld + k] for an 8 x 8 tile: rows of src become columns of dst.
inline void transpose8(const float* src, int64_t ld, float* dst, int64_t ldd) {
  __m256 r[8], c[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_load_ps(src + i * ld);
  transpose8x8_ps(r, c);
  for (int i = 0; i < 8; ++i) _mm256_store_ps(dst + i * ldd, c[i]);
}

// Row n's effective weights for words [w0, w1) into dst (32 (w1 - w0) floats).
bool build_block(const LinearProblem& p, int64_t n, uint32_t w0, uint32_t w1, uint32_t* desc, float* dst) {
  const RowScratch s = row_scratch(desc, kBlockWords);
  if (!describe(p, n, w0, w1, s)) return false;
  const RowDesc d = make_desc(p, s, n, w0, w1, false);
  const WordWeights word = pick_word_weights(p);
  __m256 wv[4];
  for (uint32_t w = w0; w < w1; ++w) {
    const __m256 factor = _mm256_set1_ps(d.factor);
    if (!word(d, w, w - w0, wv))
      for (int j = 0; j < 4; ++j) wv[j] = _mm256_setzero_ps();
    for (int j = 0; j < 4; ++j) _mm256_store_ps(dst + 32 * (w - w0) + 8 * j, _mm256_mul_ps(wv[j], factor));
  }
  return true;
}

// Int8: weights t in {-1, 0, +1} per byte; maddubs(xq + 128, t) pair sums (|.| <= 510) stay in
// int16 over a whole 1024-column block (32 steps: |sum| <= 16320), widened once at its end.
constexpr int64_t kMrI8 = 4, kNrI8 = 2;
constexpr int64_t kI8TileCols = 2048;  // columns of weights |t| <= 1 whose pair sums int16 holds (64 steps)

template <int MR, int NR>
void micro_i8(const int8_t* xq, int64_t Kp, const int8_t* tb, int64_t len, int32_t* out /* MR x NR */) {
  const __m256i flip = _mm256_set1_epi8(int8_t(0x80)), ones16 = _mm256_set1_epi16(1);
  __m256i acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm256_setzero_si256();
  for (int64_t k = 0; k < len; k += 32) {
    __m256i t[NR];
    for (int c = 0; c < NR; ++c) t[c] = _mm256_load_si256(reinterpret_cast<const __m256i*>(tb + c * kBlockCols + k));
    for (int r = 0; r < MR; ++r) {
      const __m256i xv =
          _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + r * Kp + k)), flip);
      for (int c = 0; c < NR; ++c) acc[r][c] = _mm256_add_epi16(_mm256_maddubs_epi16(xv, t[c]), acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) out[r * NR + c] = hsum_epi32(_mm256_madd_epi16(acc[r][c], ones16));
}

using MicroI8 = void (*)(const int8_t*, int64_t, const int8_t*, int64_t, int32_t*);
constexpr MicroI8 kMicroI8[kMrI8 + 1][kNrI8 + 1] = {
    {nullptr, nullptr, nullptr},
    {nullptr, micro_i8<1, 1>, micro_i8<1, 2>},
    {nullptr, micro_i8<2, 1>, micro_i8<2, 2>},
    {nullptr, micro_i8<3, 1>, micro_i8<3, 2>},
    {nullptr, micro_i8<4, 1>, micro_i8<4, 2>}};

int32_t build_tile_i8(const uint32_t* sw, const uint32_t* mw, int64_t words, int8_t* dst) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  int32_t sum = 0;
  for (int64_t w = 0; w < words; ++w) {
    const uint32_t m = mw[w], s = sw[w];
    const __m256i t = _mm256_and_si256(expand_bytes(mw + w), _mm256_or_si256(expand_bytes(sw + w), ones8));
    _mm256_store_si256(reinterpret_cast<__m256i*>(dst + 32 * w), t);
    sum += __builtin_popcount(m & ~s) - __builtin_popcount(m & s);
  }
  return sum;
}

#define SLT_HW_OWN_GEMM_ROWS  // the panel GEMM below
#include "linear_blocked.inc"

// Rows [n, n + 16) (those below n1; the rest zero) of words [w0, w1) as a k-major panel:
// panel[16 k + j] = W[n + j][32 w0 + k]. Built 8 rows at a time into `stage`, then transposed.
bool build_panel(const LinearProblem& p, int64_t n, int64_t n1, uint32_t w0, uint32_t w1, uint32_t* desc,
                 float* stage, float* panel) {
  const int64_t len = 32 * int64_t(w1 - w0);
  for (int64_t half = 0; half < 2; ++half) {
    for (int64_t j = 0; j < 8; ++j) {
      const int64_t row = n + 8 * half + j;
      if (row < n1) {
        if (!build_block(p, row, w0, w1, desc, stage + j * kBlockCols)) return false;
      } else {
        for (int64_t k = 0; k < len; k += 8) _mm256_store_ps(stage + j * kBlockCols + k, _mm256_setzero_ps());
      }
    }
    for (int64_t k = 0; k < len; k += 8) transpose8(stage + k, kBlockCols, panel + kPanel * k + 8 * half, kPanel);
  }
  return true;
}

// The panels of all the task's rows (192 KiB) are built once per 1024-column block and streamed
// from L2 past kMr activation rows held in L1. The products go to a compact tile of the task's
// outputs (kYChunkRows x kTaskRows, in L2), copied to y once per chunk of activation rows: added
// into y directly, a y row stride that is a multiple of 4 KiB (N = 1024, 2048, ...) put the
// 6 rows of every update in one L1 set and cost 30 % (1024 x 1024, batch 128: 83 -> 57 GFLOP/s).
// A chunk rebuilds the panels: < 4 % of its FMAs' time at 512 rows.
bool gemm_rows(const LinearProblem& p, const float* xp, float* scratch, int64_t n0, int64_t n1) {
  const int64_t W = (p.K + 31) / 32, Kp = 32 * W, nt = n1 - n0;
  // scratch: kTaskRows panel rows (64-byte aligned), the output tile, 8 staging rows, one block's descriptor
  float* panels = align64<float>(scratch);
  float* tile = panels + kTaskRows * kBlockCols;
  float* stage = tile + kTaskRows * kYChunkRows;
  uint32_t* desc = reinterpret_cast<uint32_t*>(stage + 8 * kBlockCols);
  for (int64_t mc = 0; mc < p.M; mc += kYChunkRows) {
    const int64_t mend = mc + kYChunkRows < p.M ? mc + kYChunkRows : p.M;
    init_tile(p, mc, mend, n0, n1, tile);
    for (int64_t w0 = 0; w0 < W; w0 += kBlockWords) {
      const int64_t w1 = w0 + kBlockWords < W ? w0 + kBlockWords : W, len = 32 * (w1 - w0);
      for (int64_t n = n0; n < n1; n += kPanel)
        if (!build_panel(p, n, n1, uint32_t(w0), uint32_t(w1), desc, stage, panels + (n - n0) * kBlockCols))
          return false;
      for (int64_t m = mc; m < mend; m += kMr) {
        const int64_t mr = mend - m < kMr ? mend - m : kMr;
        for (int64_t n = n0; n < n1; n += kPanel)
          kMicroPanel[mr](xp + m * Kp + 32 * w0, Kp, panels + (n - n0) * kBlockCols, len,
                          tile + (m - mc) * nt + n - n0, nt, n1 - n < kPanel ? n1 - n : kPanel);
      }
    }
    store_tile(p, mc, mend, n0, n1, tile);
  }
  return true;
}

}  // namespace

int64_t packed_int8_bytes(int64_t Kp, int64_t M) { return M * 256 * ((Kp + 255) / 256) + 4 * M; }

void pack_int8(const int8_t* xq, int64_t Kp, int64_t M, int8_t* dst) {
  const int64_t blocks = (Kp + 255) / 256;
  int32_t* xsum = reinterpret_cast<int32_t*>(dst + M * 256 * blocks);
  for (int64_t m = 0; m < M; ++m) {
    int32_t sum = 0;
    for (int64_t k = 0; k < Kp; ++k) sum += xq[m * Kp + k];
    xsum[m] = sum;
    for (int64_t b = 0; b < blocks; ++b)
      for (int64_t q = 0; q < 8; ++q)
        for (int64_t i = 0; i < 32; ++i) {
          const int64_t k = 256 * b + 8 * i + q;
          dst[256 * M * b + 32 * (M * q + m) + i] = k < Kp ? xq[m * Kp + k] : int8_t(0);
        }
  }
}

bool weight_rows(const LinearProblem& p, float* scratch, int64_t n0, int64_t n1, float* out) {
  return weight_rows_impl(p, scratch, n0, n1, out);
}

void to_tap_major(const float* src, float* dst, int64_t C, int64_t taps, int64_t ldd) {
  int64_t c0 = 0;
  for (; c0 + 8 <= C; c0 += 8) {  // 8 channels x 8 taps at a time: an 8 x 8 transpose in registers
    const float* s = src + c0 * taps;
    int64_t t0 = 0;
    for (; t0 + 8 <= taps; t0 += 8) {
      __m256 r[8], out[8];
      for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(s + i * taps + t0);
      transpose8x8_ps(r, out);
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(dst + (t0 + j) * ldd + c0, out[j]);
    }
    for (; t0 < taps; ++t0)
      for (int64_t i = 0; i < 8; ++i) dst[t0 * ldd + c0 + i] = s[i * taps + t0];
  }
  for (; c0 < C; ++c0)
    for (int64_t t = 0; t < taps; ++t) dst[t * ldd + c0] = src[c0 * taps + t];
}

bool rows(const LinearProblem& p, const float* xp, float* scratch, int64_t n0, int64_t n1) {
  return p.M > kSmallBatch ? gemm_rows(p, xp, scratch, n0, n1) : small_rows(p, xp, scratch, n0, n1);
}

bool rows_int8(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1) {
  if (p.M > kSmallBatchInt8Avx2) return gemm_rows_int8(p, xq, scratch, n0, n1);
  return rows_int8_impl(p, xq, scratch, n0, n1);
}

}  // namespace avx2
}  // namespace cpu
}  // namespace slt
