// AVX-512 (F/BW/VL/DQ + FMA) row kernels of the fused linear (linear.h). Compiled with those
// flags only in this TU and called only after a runtime CPU check (linear.cpp).
// A mask word is two __mmask16 (k registers): a weight is zeroed by maskz and its sign picked
// by a mask blend, one instruction each per 16 weights instead of AVX2's shift-and-blend.
// linear_avx512vnni.cpp compiles this file again with SLT_HW_AVX512_VNNI (+ -mavx512vnni): the
// int8 sums then take one vpdpbusd per 64 products instead of maddubs + add.
// Test builds compile both against SIMDe (SLT_HW_AVX512_EMULATED, CMakeLists.txt), so the
// variants are checked against the reference on CPUs without AVX-512.
#include <cstring>

#include "../core/slt_contract.h"
#include "avx512_common.h"
#include "conv_int8.h"
#include "generate.h"
#include "linear.h"

#if defined(SLT_HW_AVX512_VNNI)
#define SLT_AVX512_NS avx512vnni
#else
#define SLT_AVX512_NS avx512
#endif

namespace slt {
namespace cpu {
namespace SLT_AVX512_NS {
namespace {

#if defined(SLT_HW_AVX512_VNNI)
constexpr bool kVnni = true;
#else
constexpr bool kVnni = false;
#endif

using avx512common::lowbias32_v;  // avx512_common.h

// out[i] = h(k0, k1, base + i), sixteen counters per step.
inline void hash_range(uint32_t k0, uint32_t k1, uint32_t base, uint32_t count, uint32_t* out) {
  const __m512i vk0 = _mm512_set1_epi32(int32_t(k0)), vk1 = _mm512_set1_epi32(int32_t(k1));
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  uint32_t i = 0;
  for (; i + 16 <= count; i += 16) {
    const __m512i c = _mm512_add_epi32(_mm512_set1_epi32(int32_t(base + i)), lanes);
    const __m512i h = lowbias32_v(_mm512_xor_si512(lowbias32_v(_mm512_xor_si512(c, vk0)), vk1));
    _mm512_storeu_si512(reinterpret_cast<void*>(out + i), h);
  }
  for (; i < count; ++i) out[i] = hash32(k0, k1, base + i);
}

// vals[2i], vals[2i + 1] = the contract's uniform values of the low and high halves of h[i],
// sixteen hashes per step, bit-identical to uniform_value (exact int conversion, two separate
// products); returns how many hashes it converted (normal values: row_values, as for AVX2).
inline uint32_t simd_values(const uint32_t* h, uint32_t count, int dist, float scale, float* vals) {
  uint32_t i = 0;
  if (dist == kUniform) {
    // float(2x) - 65535: both exact (< 2^24), so equal to the contract's float(int(2x) - 65535);
    // unsigned conversion because SIMDe (the test build) lacks _mm512_cvtepi32_ps
    const __m512 vs = _mm512_set1_ps(scale), k = _mm512_set1_ps(0x1p-16f), odd = _mm512_set1_ps(65535.0f);
    const __m512i lo16 = _mm512_set1_epi32(0xFFFF);
    const __m512i first = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i second = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    for (; i + 16 <= count; i += 16) {
      const __m512i hv = _mm512_loadu_si512(reinterpret_cast<const void*>(h + i));
      const __m512i a = _mm512_and_si512(hv, lo16), b = _mm512_srli_epi32(hv, 16);
      __m512 va = _mm512_sub_ps(_mm512_cvtepu32_ps(_mm512_slli_epi32(a, 1)), odd);
      __m512 vb = _mm512_sub_ps(_mm512_cvtepu32_ps(_mm512_slli_epi32(b, 1)), odd);
      va = _mm512_mul_ps(_mm512_mul_ps(va, k), vs);
      vb = _mm512_mul_ps(_mm512_mul_ps(vb, k), vs);
      _mm512_storeu_ps(vals + 2 * i, _mm512_permutex2var_ps(va, first, vb));
      _mm512_storeu_ps(vals + 2 * i + 16, _mm512_permutex2var_ps(va, second, vb));
    }
  }
  return i;  // row_values converts the rest
}

inline int32_t hsum_epi32(__m512i v) {
  const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

inline float hsum(__m512 v) {
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(v), hi);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---------------------------------------------------------------------------- int8
// 64 int8 weights {-1, 0, +1} from two mask words and two sign words (the blocked kernel's tiles).
inline __m512i tile64(uint64_t m, uint64_t s) {
  return _mm512_maskz_mov_epi8(slt_mask64(m), _mm512_mask_blend_epi8(slt_mask64(s), _mm512_set1_epi8(1),
                                                                     _mm512_set1_epi8(-1)));
}

// The same weights as u = t + 1 in {0, 1, 2}: 1 where masked, else 0 (sign -) or 2 (sign +).
// Two blends on the words as mask registers (loaded straight into k): mask-register logic
// (kandn, kmov to and from GPRs) made this 1.7x slower on Zen 4.
inline __m512i tile64_u(uint64_t m, uint64_t s) {
  const __m512i signed2 = _mm512_mask_blend_epi8(slt_mask64(s), _mm512_set1_epi8(2), _mm512_setzero_si512());
  return _mm512_mask_blend_epi8(slt_mask64(m), _mm512_set1_epi8(1), signed2);
}

// A row's odd last word as u in the low 32 bytes, zeros above (where the 64-byte load of x runs
// into the next row or the slack).
inline __m512i tile32_u(uint32_t m, uint32_t s) {
  return _mm512_maskz_mov_epi8(slt_mask64(0xFFFFFFFFull), tile64_u(m, s));
}

inline int32_t tile_sum(uint32_t m, uint32_t s) { return __builtin_popcount(m & ~s) - __builtin_popcount(m & s); }

#if defined(SLT_HW_AVX512_VNNI)
// acc + the four products a (uint8) * b (int8) of each int32 lane. Natively as inline asm: GCC 12
// keeps arrays of accumulators fed by the vpdpbusd intrinsic in memory as well, storing every
// one on each step (the int8 micro-kernels ran at a third of their speed).
inline __m512i dpbusd(__m512i acc, __m512i a, __m512i b) {
#if defined(SLT_HW_AVX512_EMULATED)
  return _mm512_dpbusd_epi32(acc, a, b);
#else
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b));
  return acc;
#endif
}

// dpbusd(acc, a, the int32 at b broadcast): natively the broadcast is the instruction's memory
// operand ({1to16}), which the load unit does; a separate vpbroadcastd took a vector slot
// beside each vpdpbusd on AMD Zen 4 (the panels' 8 x 16 tiles ran at ~60 % of one a cycle).
inline __m512i dpbusd_bcast(__m512i acc, __m512i a, const int8_t* b) {
#if defined(SLT_HW_AVX512_EMULATED)
  int32_t four;
  std::memcpy(&four, b, sizeof four);
  return _mm512_dpbusd_epi32(acc, a, _mm512_set1_epi32(four));
#else
  // (the address in a register: an "m" operand had GCC 12 keep every accumulator on the stack;
  // b is never written while a kernel reads it)
  asm("vpdpbusd (%2)%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "r"(b));
  return acc;
#endif
}

// dpbusd_bcast(acc, a, b + i), the address as base + index: rows at unrelated addresses walked
// by one index (b + i in a register had cost an lea beside each vpdpbusd: ~1/4 more instructions
// where a weight vector feeds one row).
inline __m512i dpbusd_bcast_at(__m512i acc, __m512i a, const int8_t* b, int64_t i) {
#if defined(SLT_HW_AVX512_EMULATED)
  return dpbusd_bcast(acc, a, b + i);
#else
  asm("vpdpbusd (%2,%3)%{1to16%}, %1, %0" : "+v"(acc) : "v"(a), "r"(b), "r"(i));
  return acc;
#endif
}
#endif

// acc += a * b for 64 (uint8, int8) pairs. VNNI: int32 lanes, one instruction. Otherwise
// int16 lanes of pair sums (|.| <= 512 per step), which the caller widens with widen() in time.
inline __m512i mac_u8i8(__m512i acc, __m512i a, __m512i b) {
#if defined(SLT_HW_AVX512_VNNI)
  return dpbusd(acc, a, b);
#else
  return _mm512_add_epi16(acc, _mm512_maddubs_epi16(a, b));
#endif
}

inline __m512i widen(__m512i acc) { return kVnni ? acc : _mm512_madd_epi16(acc, _mm512_set1_epi16(1)); }

constexpr int64_t kI8Rows = 8;  // activation rows per int8 pass (small batch)

inline uint64_t words64(const uint32_t* w) {
  uint64_t v;
  std::memcpy(&v, w, sizeof v);  // (little endian: word w in the low half)
  return v;
}

// Up to kSmallBatchInt8 rows: sum_k t x as sum_k (t + 1) x - sum_k x, the weights as unsigned
// bytes u = t + 1 (vpdpbusd / maddubs take one unsigned operand), x signed as it is, its row
// sums taken once per call (after the rows: int8_row_sums in linear.h). Two mask-register
// blends build 64 weights: no popcounts and no per-step sign sums, and every word is taken
// (a masked word's u = 1 is in the row sum too). A accumulators per row hide vpdpbusd's
// latency where M is small. Without VNNI, int16 pair sums for up to 32 steps, then widened.
template <int M, int A>
void dot_i8_m(const int8_t* xq, int64_t Kp, int64_t Mt, int64_t m0, const uint32_t* sw, const uint32_t* mw,
              int64_t W, int32_t* out) {
  __m512i acc[M][A], wide[M];
  for (int r = 0; r < M; ++r) {
    wide[r] = _mm512_setzero_si512();
    for (int a = 0; a < A; ++a) acc[r][a] = _mm512_setzero_si512();
  }
  const int8_t* x = xq + m0 * Kp;
  int64_t w = 0;
  int pending = 0;
  while (w + 2 <= W) {
    for (int a = 0; a < A && w + 2 <= W; ++a, w += 2) {
      const __m512i u = tile64_u(words64(mw + w), words64(sw + w));
      for (int r = 0; r < M; ++r) acc[r][a] = mac_u8i8(acc[r][a], u, _mm512_loadu_si512(x + r * Kp + 32 * w));
    }
    if (!kVnni && ++pending == 32) {  // (each accumulator took one step per pass)
      for (int r = 0; r < M; ++r)
        for (int a = 0; a < A; ++a) {
          wide[r] = _mm512_add_epi32(wide[r], widen(acc[r][a]));
          acc[r][a] = _mm512_setzero_si512();
        }
      pending = 0;
    }
  }
  if (w < W) {  // an odd last word
    const __m512i u = tile32_u(mw[w], sw[w]);
    for (int r = 0; r < M; ++r) acc[r][0] = mac_u8i8(acc[r][0], u, _mm512_loadu_si512(x + r * Kp + 32 * w));
  }
  const int32_t* xsum = int8_row_sums(xq, Kp, Mt) + m0;
  for (int r = 0; r < M; ++r) {
    __m512i s = wide[r];
    for (int a = 0; a < A; ++a) s = _mm512_add_epi32(s, widen(acc[r][a]));
    out[r] = hsum_epi32(s) - xsum[r];
  }
}

inline void dot_i8(const int8_t* xq, int64_t Kp, int64_t Mt, int64_t m0, int64_t mb, const uint32_t* sw,
                   const uint32_t* mw, int64_t W, int32_t* out) {
  switch (mb) {
    case 1: return dot_i8_m<1, 4>(xq, Kp, Mt, m0, sw, mw, W, out);
    case 2: return dot_i8_m<2, 2>(xq, Kp, Mt, m0, sw, mw, W, out);
    case 3: return dot_i8_m<3, 2>(xq, Kp, Mt, m0, sw, mw, W, out);
    case 4: return dot_i8_m<4, 2>(xq, Kp, Mt, m0, sw, mw, W, out);
    case 5: return dot_i8_m<5, 1>(xq, Kp, Mt, m0, sw, mw, W, out);
    case 6: return dot_i8_m<6, 1>(xq, Kp, Mt, m0, sw, mw, W, out);
    case 7: return dot_i8_m<7, 1>(xq, Kp, Mt, m0, sw, mw, W, out);
    default: return dot_i8_m<8, 1>(xq, Kp, Mt, m0, sw, mw, W, out);
  }
}

#include "linear_rowdesc.inc"

#if defined(SLT_HW_AVX512_VNNI)
// Up to kSmallBatchInt8 rows, binary signed-constant weights: kI8WeightRows weight rows at a
// time share each 64-byte load of x, as dot_i8_m's sums otherwise (u = t + 1, the row sums
// after xq). At 8 rows x 4096 columns x fills L1, and one weight row at a time read it from L2
// again for every row.
constexpr int64_t kI8WeightRows = 3;  // 3 x 8 accumulators, 3 tiles and x: 28 of the 32 zmm

template <int M, int R>
void dot_i8_rows(const int8_t* xq, int64_t Kp, int64_t Mt, int64_t m0, const uint32_t* const* sw,
                 const uint32_t* const* mw, int64_t W, int32_t* out /* R x M */) {
  __m512i acc[R][M];
  for (int j = 0; j < R; ++j)
    for (int r = 0; r < M; ++r) acc[j][r] = _mm512_setzero_si512();
  const int8_t* x = xq + m0 * Kp;
  int64_t w = 0;
  for (; w + 2 <= W; w += 2) {
    __m512i u[R];
    for (int j = 0; j < R; ++j) u[j] = tile64_u(words64(mw[j] + w), words64(sw[j] + w));
    for (int r = 0; r < M; ++r) {
      const __m512i xv = _mm512_loadu_si512(x + r * Kp + 32 * w);
      for (int j = 0; j < R; ++j) acc[j][r] = dpbusd(acc[j][r], u[j], xv);
    }
  }
  if (w < W) {  // an odd last word
    for (int j = 0; j < R; ++j) {
      const __m512i u = tile32_u(mw[j][w], sw[j][w]);
      for (int r = 0; r < M; ++r) acc[j][r] = dpbusd(acc[j][r], u, _mm512_loadu_si512(x + r * Kp + 32 * w));
    }
  }
  const int32_t* xsum = int8_row_sums(xq, Kp, Mt) + m0;
  for (int j = 0; j < R; ++j)
    for (int r = 0; r < M; ++r) out[j * M + r] = hsum_epi32(acc[j][r]) - xsum[r];
}

using DotI8Rows = void (*)(const int8_t*, int64_t, int64_t, int64_t, const uint32_t* const*, const uint32_t* const*,
                           int64_t, int32_t*);
#define SLT_I8_ROWS(m) {nullptr, dot_i8_rows<m, 1>, dot_i8_rows<m, 2>, dot_i8_rows<m, 3>}
static_assert(kI8WeightRows == 3, "kDotI8Rows' columns");
constexpr DotI8Rows kDotI8Rows[kI8Rows + 1][kI8WeightRows + 1] = {
    {nullptr, nullptr, nullptr, nullptr}, SLT_I8_ROWS(1), SLT_I8_ROWS(2), SLT_I8_ROWS(3), SLT_I8_ROWS(4),
    SLT_I8_ROWS(5), SLT_I8_ROWS(6), SLT_I8_ROWS(7), SLT_I8_ROWS(8)};
#undef SLT_I8_ROWS

// The driver: as rows_int8_impl, kI8WeightRows weight rows at a time (scratch: their sign words).
bool rows_int8_multi(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1) {
  const int64_t W = (p.K + 31) / 32, Kp = 32 * W;
  uint32_t* sw_rows = reinterpret_cast<uint32_t*>(scratch);
  const float g = p.coat_scales[0];
  int32_t sums[kI8WeightRows * kI8Rows];
  for (int64_t n = n0; n < n1; n += kI8WeightRows) {
    const int64_t nr = n1 - n < kI8WeightRows ? n1 - n : kI8WeightRows;
    const uint32_t* sw[kI8WeightRows];
    const uint32_t* mw[kI8WeightRows];
    for (int64_t j = 0; j < nr; ++j) {
      sign_words(p, n + j, 0, uint32_t(W), sw_rows + j * W);
      sw[j] = sw_rows + j * W;
      mw[j] = reinterpret_cast<const uint32_t*>(p.planes + (n + j) * W);
    }
    for (int64_t m0 = 0; m0 < p.M; m0 += kI8Rows) {
      const int64_t mb = p.M - m0 < kI8Rows ? p.M - m0 : kI8Rows;
      kDotI8Rows[mb][nr](xq, Kp, p.M, m0, sw, mw, W, sums);
      for (int64_t j = 0; j < nr; ++j) {
        const float b = p.bias ? p.bias[n + j - p.row_begin] : 0.0f;
        for (int64_t r = 0; r < mb; ++r)  // as rows_int8_impl: (0 + g * sum) * scale * xscale + b
          p.y[(m0 + r) * p.ldy + n + j - p.row_begin] =
              (0.0f + g * float(sums[j * mb + r])) * p.scale * p.xscale[m0 + r] + b;
      }
    }
  }
  return true;
}
#endif

// ---------------------------------------------------------------------------- float weights
struct RowDesc {
  const uint32_t* sw;         // sign words (signed constant)
  const float* vals;          // values (uniform / normal)
  const uint32_t* em;         // effective mask words (frozen)
  const int32_t* row_planes;  // planes + n*W (binary / multicoat)
  int64_t plane_stride;       // N * W
  int64_t C;
  const float* coat_scales;
  __m512 g0;                  // the single coat's scale (uniform / normal values)
  float factor;               // applied to each sum: the signed-constant scale (times g0)
};

constexpr int64_t kCodeRows = 0;  // mask registers build the weights: no sign codes

RowDesc make_desc(const LinearProblem& p, const RowScratch& s, int64_t n, uint32_t /*w0*/, uint32_t /*w1*/,
                  bool /*codes*/) {
  const int64_t W = (p.K + 31) / 32;
  const bool frozen = p.planes == nullptr;
  const float g0 = frozen ? 1.0f : p.coat_scales[0];
  const bool one = frozen || p.C == 1;
  const bool sc = p.dist == kSignedConstant;
  return RowDesc{s.sw, s.vals, s.em, frozen ? nullptr : p.planes + n * W, p.N * W, p.C, p.coat_scales,
                 _mm512_set1_ps(one && !sc ? g0 : 1.0f), sc ? (one ? p.scale * g0 : p.scale) : 1.0f};
}

template <bool FRZ>
inline uint32_t word_mask(const RowDesc& d, int64_t w, int64_t wl) {
  return FRZ ? d.em[wl] : uint32_t(d.row_planes[w]);  // coats are nested: the first has every bit
}

// The 32 effective weights of word w (wl: its index in the descriptor) in two zmm; all zero
// where the mask is. Signed constant: +-1 (scaled by d.factor at the end).
template <bool SC, bool ONE, bool FRZ>
inline void word_weights(const RowDesc& d, int64_t w, int64_t wl, __m512* wv) {
  __m512 base[2];
  if (SC) {
    const uint32_t s = d.sw[wl];
    const __m512 pos = _mm512_set1_ps(1.0f), neg = _mm512_set1_ps(-1.0f);
    base[0] = _mm512_mask_blend_ps(slt_mask16(s), pos, neg);
    base[1] = _mm512_mask_blend_ps(slt_mask16(s >> 16), pos, neg);
  } else {
    base[0] = _mm512_loadu_ps(d.vals + 32 * wl);
    base[1] = _mm512_loadu_ps(d.vals + 32 * wl + 16);
  }
  if (ONE) {
    const uint32_t m = word_mask<FRZ>(d, w, wl);
    for (int j = 0; j < 2; ++j) {
      const slt_mask16 k = slt_mask16(m >> (16 * j));
      wv[j] = SC ? _mm512_maskz_mov_ps(k, base[j]) : _mm512_maskz_mul_ps(k, base[j], d.g0);
    }
    return;
  }
  // several coats: each lane sums the scales of the coats that keep it (the reference's order)
  __m512 g[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  for (int64_t i = 0; i < d.C; ++i) {
    const uint32_t m = uint32_t(d.row_planes[i * d.plane_stride + w]);
    const __m512 gi = _mm512_set1_ps(d.coat_scales[i]);
    for (int j = 0; j < 2; ++j) g[j] = _mm512_mask_add_ps(g[j], slt_mask16(m >> (16 * j)), g[j], gi);
  }
  for (int j = 0; j < 2; ++j) wv[j] = _mm512_mul_ps(base[j], g[j]);
}

// ---------------------------------------------------------------------------- small batch
// Row n against activation rows [m0, m0 + M), two words (64 weights) per step so that A
// accumulator chains per activation row hide the FMA latency when M is small.
template <int M, int A, bool SC, bool ONE, bool FRZ>
void row_dot(const float* xp, int64_t Kp, int64_t m0, const RowDesc& d, float* out) {
  const int64_t W = Kp / 32;
  __m512 acc[M][A];
  for (int r = 0; r < M; ++r)
    for (int a = 0; a < A; ++a) acc[r][a] = _mm512_setzero_ps();
  __m512 wv[4];
  int64_t w = 0;
  for (; w + 2 <= W; w += 2) {
    if (!(word_mask<FRZ>(d, w, w) | word_mask<FRZ>(d, w + 1, w + 1))) continue;
    word_weights<SC, ONE, FRZ>(d, w, w, wv);
    word_weights<SC, ONE, FRZ>(d, w + 1, w + 1, wv + 2);
    for (int r = 0; r < M; ++r) {
      const float* xr = xp + (m0 + r) * Kp + 32 * w;
      for (int j = 0; j < 4; ++j) acc[r][j % A] = _mm512_fmadd_ps(wv[j], _mm512_loadu_ps(xr + 16 * j), acc[r][j % A]);
    }
  }
  if (w < W && word_mask<FRZ>(d, w, w)) {
    word_weights<SC, ONE, FRZ>(d, w, w, wv);
    for (int r = 0; r < M; ++r) {
      const float* xr = xp + (m0 + r) * Kp + 32 * w;
      for (int j = 0; j < 2; ++j) acc[r][j % A] = _mm512_fmadd_ps(wv[j], _mm512_loadu_ps(xr + 16 * j), acc[r][j % A]);
    }
  }
  for (int r = 0; r < M; ++r) {
    __m512 s = acc[r][0];
    for (int a = 1; a < A; ++a) s = _mm512_add_ps(s, acc[r][a]);
    out[r] = hsum(s) * d.factor;
  }
}

using RowDot = void (*)(const float*, int64_t, int64_t, const RowDesc&, float*);

template <bool SC, bool ONE, bool FRZ>
RowDot row_dot_for(int64_t m) {
  constexpr RowDot table[9] = {nullptr,
                               row_dot<1, 4, SC, ONE, FRZ>, row_dot<2, 4, SC, ONE, FRZ>,
                               row_dot<3, 4, SC, ONE, FRZ>, row_dot<4, 4, SC, ONE, FRZ>,
                               row_dot<5, 2, SC, ONE, FRZ>, row_dot<6, 2, SC, ONE, FRZ>,
                               row_dot<7, 2, SC, ONE, FRZ>, row_dot<8, 2, SC, ONE, FRZ>};
  return table[m];
}

using WordWeights = void (*)(const RowDesc&, int64_t, int64_t, __m512*);

#include "linear_pick.inc"

// ---------------------------------------------------------------------------- large batch
// 8 activation rows x 3 weight rows: 24 accumulators + 3 weight vectors + 1 activation vector
// of the 32 zmm.
constexpr int64_t kMr = 8, kNr = 3;

template <int MR, int NR>
void micro(const float* xp, int64_t Kp, const float* wb, int64_t len, float* out /* MR x NR */) {
  __m512 acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_ps();
  for (int64_t k = 0; k < len; k += 16) {
    __m512 wv[NR];
    for (int c = 0; c < NR; ++c) wv[c] = _mm512_load_ps(wb + c * kBlockCols + k);
    for (int r = 0; r < MR; ++r) {
      const __m512 xv = _mm512_loadu_ps(xp + r * Kp + k);
      for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) out[r * NR + c] = hsum(acc[r][c]);
}

using Micro = void (*)(const float*, int64_t, const float*, int64_t, float*);
#define SLT_MICRO_ROW(f, r) {nullptr, f<r, 1>, f<r, 2>, f<r, 3>}
constexpr Micro kMicro[kMr + 1][kNr + 1] = {
    {nullptr, nullptr, nullptr, nullptr}, SLT_MICRO_ROW(micro, 1), SLT_MICRO_ROW(micro, 2),
    SLT_MICRO_ROW(micro, 3), SLT_MICRO_ROW(micro, 4), SLT_MICRO_ROW(micro, 5), SLT_MICRO_ROW(micro, 6),
    SLT_MICRO_ROW(micro, 7), SLT_MICRO_ROW(micro, 8)};


// Row n's effective weights for words [w0, w1) into dst (32 (w1 - w0) floats, 64-byte aligned).
bool build_block(const LinearProblem& p, int64_t n, uint32_t w0, uint32_t w1, uint32_t* desc, float* dst) {
  const RowScratch s = row_scratch(desc, kBlockWords);
  if (!describe(p, n, w0, w1, s)) return false;
  const RowDesc d = make_desc(p, s, n, w0, w1, false);
  const WordWeights word = pick_word_weights(p);
  const __m512 factor = _mm512_set1_ps(d.factor);
  __m512 wv[2];
  for (uint32_t w = w0; w < w1; ++w) {
    word(d, w, w - w0, wv);
    for (int j = 0; j < 2; ++j) _mm512_store_ps(dst + 32 * (w - w0) + 16 * j, _mm512_mul_ps(wv[j], factor));
  }
  return true;
}

// Int8, 64 bytes per step: a 1024-column block is 16 steps, so int16 pair sums (|.| <= 510)
// cannot overflow before the block's end. 8 x 3: 24 accumulators of the 32 zmm.
constexpr int64_t kMrI8 = 8, kNrI8 = 3;
// columns of weights |t| <= 1 a micro-kernel call holds: VNNI's int32 sums any, int16 pair sums 64 steps
constexpr int64_t kI8TileCols = kVnni ? int64_t(1) << 30 : 64 * 64;

template <int MR, int NR>
void micro_i8(const int8_t* xq, int64_t Kp, const int8_t* tb, int64_t len, int32_t* out /* MR x NR */) {
  __m512i acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) acc[r][c] = _mm512_setzero_si512();
  for (int64_t k = 0; k < len; k += 64) {  // len may end half-way: the tile is zero-padded
    __m512i t[NR];
    for (int c = 0; c < NR; ++c) t[c] = _mm512_load_si512(tb + c * kBlockCols + k);
    for (int r = 0; r < MR; ++r) {
      const __m512i xv = _mm512_loadu_si512(xq + r * Kp + k);  // xq + 128
      for (int c = 0; c < NR; ++c) acc[r][c] = mac_u8i8(acc[r][c], xv, t[c]);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int c = 0; c < NR; ++c) out[r * NR + c] = hsum_epi32(widen(acc[r][c]));
}

using MicroI8 = void (*)(const int8_t*, int64_t, const int8_t*, int64_t, int32_t*);
constexpr MicroI8 kMicroI8[kMrI8 + 1][kNrI8 + 1] = {
    {nullptr, nullptr, nullptr, nullptr}, SLT_MICRO_ROW(micro_i8, 1), SLT_MICRO_ROW(micro_i8, 2),
    SLT_MICRO_ROW(micro_i8, 3), SLT_MICRO_ROW(micro_i8, 4), SLT_MICRO_ROW(micro_i8, 5), SLT_MICRO_ROW(micro_i8, 6),
    SLT_MICRO_ROW(micro_i8, 7), SLT_MICRO_ROW(micro_i8, 8)};
#undef SLT_MICRO_ROW

// Whole 64-byte pairs of words (an odd last word pairs with zeros, inside the 1024-byte tile).
int32_t build_tile_i8(const uint32_t* sw, const uint32_t* mw, int64_t words, int8_t* dst) {
  int32_t sum = 0;
  for (int64_t w = 0; w < words; w += 2) {
    const uint32_t m_lo = mw[w], m_hi = w + 1 < words ? mw[w + 1] : 0u;
    const uint32_t s_lo = sw[w], s_hi = w + 1 < words ? sw[w + 1] : 0u;
    _mm512_store_si512(dst + 32 * w, tile64(m_lo | uint64_t(m_hi) << 32, s_lo | uint64_t(s_hi) << 32));
    sum += tile_sum(m_lo, s_lo) + tile_sum(m_hi, s_hi);
  }
  return sum;
}

#include "linear_blocked.inc"

#if defined(SLT_HW_AVX512_VNNI)
// ---------------------------------------------------------------------------- bf16 dot products
// bf16 activations past kSmallBatch rows, binary signed-constant weights, where the CPU has
// AVX512-BF16 (this TU is also compiled with -mavx512bf16; called only after that check). The
// weights {-1, 0, +1} are exact in bf16: a task's kTaskRows rows are built once per 1024-column
// block into a panel of bf16 column pairs, and vdpbf16ps multiplies two columns per fp32 lane,
// twice the products of an fp32 FMA (the signed-constant scale multiplies the float sums).
// Panel: for each column pair c of the block, the task's rows side by side, one uint32 each
// (low half column 2c, high half 2c + 1): kBfNr zmm of 16 rows per pair.
constexpr int64_t kBfNr = kTaskRows / 16, kBfMr = 8;  // micro-tile: 8 activation rows x 48 weight rows
static_assert(kTaskRows % 16 == 0, "a task's rows are whole 16-row groups");

inline __m512bh as_bh(__m512i v) {
  __m512bh b;
  std::memcpy(&b, &v, sizeof b);  // (a register move natively; SIMDe's bf16 vector is another type)
  return b;
}

// The task's positive (mask & ~sign) and negative (mask & sign) words of the whole row,
// transposed: pos[w][row], neg[w][row] (kTaskRows rows, zero past n1), then one row's sign
// words: task_words_size(K) uint32. Whole rows, one after another: block by block, the mask
// reads (48 rows x 128 bytes, 512 bytes apart) had waited on memory (~15 % of a batch-64 call).
inline int64_t task_words_size(int64_t K) { return (2 * kTaskRows + 1) * ((K + 31) / 32); }

void task_words(const LinearProblem& p, int64_t n0, int64_t n1, uint32_t* scratch) {
  const int64_t W = (p.K + 31) / 32;
  uint32_t* pos = scratch;
  uint32_t* neg = pos + W * kTaskRows;
  uint32_t* sw = neg + W * kTaskRows;
  for (int64_t r = 0; r < kTaskRows; ++r) {
    const int64_t n = n0 + r;
    if (n >= n1) {
      for (int64_t w = 0; w < W; ++w) pos[w * kTaskRows + r] = neg[w * kTaskRows + r] = 0u;
      continue;
    }
    sign_words(p, n, 0, uint32_t(W), sw);
    const uint32_t* mw = reinterpret_cast<const uint32_t*>(p.planes + n * W);
    for (int64_t w = 0; w < W; ++w) {
      pos[w * kTaskRows + r] = mw[w] & ~sw[w];
      neg[w * kTaskRows + r] = mw[w] & sw[w];
    }
  }
}

// A 4-bit table index of bits (j, j + 1) of a and b: a's at 0, 1 and b's at 2, 3 (vpermd reads
// the low 4 bits only: the rest is left as it falls).
inline __m512i pair_index(__m512i a, __m512i b, int j) {
  const __m512i bs = j >= 2 ? _mm512_srli_epi32(b, unsigned(j - 2)) : _mm512_slli_epi32(b, unsigned(2 - j));
  return _mm512_ternarylogic_epi32(_mm512_srli_epi32(a, unsigned(j)), bs, _mm512_set1_epi32(3), 0xE4);
}

// Words [w0, w1) of the task's panel from its transposed words (task_words).
void build_panel_bf16(const uint32_t* words_t, int64_t W, int64_t w0, int64_t w1, uint32_t* panel) {
  const int64_t words = w1 - w0;
  const uint32_t* pos = words_t + w0 * kTaskRows;
  const uint32_t* neg = words_t + (W + w0) * kTaskRows;
  // index = pos bits (2c, 2c + 1) | neg bits << 2 -> the pair's two bf16 (+1 0x3F80, -1 0xBF80)
  alignas(64) uint32_t table[16];
  for (uint32_t i = 0; i < 16; ++i) {
    const uint32_t lo = (i & 1) ? 0x3F80u : (i & 4) ? 0xBF80u : 0u, hi = (i & 2) ? 0x3F80u : (i & 8) ? 0xBF80u : 0u;
    table[i] = lo | hi << 16;
  }
  const __m512i lut = _mm512_load_si512(reinterpret_cast<const void*>(table));
  for (int64_t w = 0; w < words; ++w)
    for (int64_t g = 0; g < kBfNr; ++g) {
      const __m512i a = _mm512_loadu_si512(reinterpret_cast<const void*>(pos + w * kTaskRows + 16 * g));
      const __m512i b = _mm512_loadu_si512(reinterpret_cast<const void*>(neg + w * kTaskRows + 16 * g));
      for (int c = 0; c < 16; ++c)
        _mm512_store_si512(reinterpret_cast<void*>(panel + ((w * 16 + c) * kTaskRows + 16 * g)),
                           _mm512_permutexvar_epi32(pair_index(a, b, 2 * c), lut));
    }
}

// int8 activations past kSmallBatchInt8 rows, binary signed-constant weights: the same panels
// with four columns per dword, the weights as u = t + 1 in {0, 1, 2} (vpdpbusd's unsigned
// operand; x signed, broadcast), sum_k t x = sum_k u x - sum_k x (each 8-row tile sums its rows
// of x). A task's panel covers the whole row (kTaskRows x Kp bytes), built once, read by every
// tile. Rows past n1 (the last task's) are zero words: u = 1, and their outputs never written.
void build_panel_i8(const uint32_t* words_t, int64_t W, uint32_t* panel) {
  alignas(64) uint32_t table[16];  // two columns' bytes u from their pos/neg bits (pair_index)
  for (uint32_t i = 0; i < 16; ++i)
    table[i] = ((i & 1) ? 2u : (i & 4) ? 0u : 1u) | ((i & 2) ? 2u : (i & 8) ? 0u : 1u) << 8;
  const __m512i lut = _mm512_load_si512(reinterpret_cast<const void*>(table));
  const uint32_t* pos = words_t;
  const uint32_t* neg = words_t + W * kTaskRows;
  for (int64_t w = 0; w < W; ++w)
    for (int64_t g = 0; g < kBfNr; ++g) {
      const __m512i a = _mm512_loadu_si512(reinterpret_cast<const void*>(pos + w * kTaskRows + 16 * g));
      const __m512i b = _mm512_loadu_si512(reinterpret_cast<const void*>(neg + w * kTaskRows + 16 * g));
      for (int q = 0; q < 8; ++q) {
        const __m512i lo = _mm512_permutexvar_epi32(pair_index(a, b, 4 * q), lut);
        const __m512i hi = _mm512_permutexvar_epi32(pair_index(a, b, 4 * q + 2), lut);
        _mm512_store_si512(reinterpret_cast<void*>(panel + ((w * 8 + q) * kTaskRows + 16 * g)),
                           _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
      }
    }
}

// The int8 panels' layout (LutLayout::kPanels) of a mask used again: per 16-row group of the
// weight, per 4-column group c, the two byte masks of its panel zmm (byte 4 lane + j: row
// 16 g + lane, column 4 c + j), u = 2 (P) then u = 0 (N): 2 bits a weight, the contract's sign
// hash and the masks' transposes done once. From the mask as stored, the hash, a scalar
// transpose and 8 vpermd a zmm had cost ~27 % of a 32-row call (11008 x 4096, one thread);
// from the layout the first tile's pass makes the panel as it goes (two blends a zmm).

// The panel zmm of 4-column group c from a group's masks (pn: its P and N mask pairs).
inline __m512i panel_zmm(const uint64_t* pn, int64_t c) {
  return _mm512_mask_blend_epi8(pn[2 * c + 1], _mm512_mask_blend_epi8(pn[2 * c], _mm512_set1_epi8(1),
                                                                       _mm512_set1_epi8(2)),
                                _mm512_setzero_si512());
}

// A task's panel (W words a row) from the layout's masks of its `groups` 16-row groups (bits:
// the first group's).
void panel_from_bits(const uint8_t* bits, int64_t W, int64_t groups, uint32_t* panel) {
  for (int64_t g = 0; g < groups; ++g) {
    const uint64_t* pn = reinterpret_cast<const uint64_t*>(bits + g * panel_group_bytes(32 * W));
    for (int64_t c = 0; c < 8 * W; ++c) {
      if (c % 4 == 0) prefetch_ahead(pn + 2 * c, 1);
      _mm512_store_si512(reinterpret_cast<void*>(panel + c * kTaskRows + 16 * g), panel_zmm(pn, c));
    }
  }
}

// The masks of a task's panel (build_panel_i8's) as the layout's groups (dst: the first's).
void store_panel_masks(const uint32_t* panel, int64_t W, int64_t groups, uint8_t* dst) {
  const __m512i two = _mm512_set1_epi8(2), zero = _mm512_setzero_si512();
  for (int64_t g = 0; g < groups; ++g) {
    uint64_t* pn = reinterpret_cast<uint64_t*>(dst + g * panel_group_bytes(32 * W));
    for (int64_t c = 0; c < 8 * W; ++c) {
      const __m512i u = _mm512_load_si512(reinterpret_cast<const void*>(panel + c * kTaskRows + 16 * g));
      pn[2 * c] = _mm512_cmpeq_epi8_mask(u, two);
      pn[2 * c + 1] = _mm512_cmpeq_epi8_mask(u, zero);
    }
  }
}

// Rows [0, MR) of xq (Kp apart) against the panel's first NR 16-row groups (a task of fewer
// rows, a convolution's 64 channels: 48 + 16, skips the empty ones): exact int32 sums
// sum_k u x, kTaskRows a row; and each row's sum_k x (xsum), for u = t + 1. The kernel needs no
// row sums from the caller, so any range of rows can run on its own. They are taken here, the
// rows' chains side by side: taken a row after another, each row's chain of Kp / 64 vpdpbusd
// ran at the instruction's latency (~1/8 of a convolution's GEMM, 64 channels at batch 8).
// Expand: the panel made from the layout's masks (bits: the task's first group, groups
// panel_group_bytes(Kp) apart) as the pass goes, and stored for the passes after it.
template <int MR, int NR, bool Expand>
void micro_i8_panel(const int8_t* x, int64_t Kp, uint32_t* panel, const uint8_t* bits,
                    int32_t* out /* MR x kTaskRows */, int32_t* xsum /* MR */) {
  __m512i acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) acc[r][j] = _mm512_setzero_si512();
  const int64_t groups = Kp / 4;
  const uint64_t* pn[NR];
  for (int j = 0; j < NR; ++j) pn[j] = Expand ? reinterpret_cast<const uint64_t*>(bits + j * panel_group_bytes(Kp)) : nullptr;
  for (int64_t c = 0; c < groups; ++c) {
    __m512i wv[NR];
    for (int j = 0; j < NR; ++j) {
      uint32_t* at = panel + c * kTaskRows + 16 * j;
      if (Expand) {
        if (c % 4 == 0) prefetch_ahead(pn[j] + 2 * c, 1);
        wv[j] = panel_zmm(pn[j], c);
        _mm512_store_si512(reinterpret_cast<void*>(at), wv[j]);
      } else {
        wv[j] = _mm512_load_si512(reinterpret_cast<const void*>(at));
      }
    }
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < NR; ++j) acc[r][j] = dpbusd_bcast(acc[r][j], wv[j], x + r * Kp + 4 * c);
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j)
      _mm512_storeu_si512(reinterpret_cast<void*>(out + r * kTaskRows + 16 * j), acc[r][j]);
  const __m512i ones = _mm512_set1_epi8(1);
  __m512i xs[MR];
  for (int r = 0; r < MR; ++r) xs[r] = _mm512_setzero_si512();
  int64_t k = 0;
  for (; k + 64 <= Kp; k += 64)
    for (int r = 0; r < MR; ++r)
      xs[r] = dpbusd(xs[r], ones, _mm512_loadu_si512(reinterpret_cast<const void*>(x + r * Kp + k)));
  if (k < Kp)  // (the last 32 bytes of a row on their own: xq may be the caller's rows, read in place)
    for (int r = 0; r < MR; ++r) {
      const __m256i tail = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + r * Kp + k));
      xs[r] = dpbusd(xs[r], ones, _mm512_inserti64x4(_mm512_setzero_si512(), tail, 0));
    }
  for (int r = 0; r < MR; ++r) xsum[r] = hsum_epi32(xs[r]);
}

using MicroI8Panel = void (*)(const int8_t*, int64_t, uint32_t*, const uint8_t*, int32_t*, int32_t*);
#define SLT_I8_PANEL_ROW(e, mr) {nullptr, micro_i8_panel<mr, 1, e>, micro_i8_panel<mr, 2, e>, micro_i8_panel<mr, 3, e>}
#define SLT_I8_PANEL_ROWS(e)                                                                                       \
  {{nullptr, nullptr, nullptr, nullptr}, SLT_I8_PANEL_ROW(e, 1), SLT_I8_PANEL_ROW(e, 2), SLT_I8_PANEL_ROW(e, 3), \
   SLT_I8_PANEL_ROW(e, 4), SLT_I8_PANEL_ROW(e, 5), SLT_I8_PANEL_ROW(e, 6), SLT_I8_PANEL_ROW(e, 7),              \
   SLT_I8_PANEL_ROW(e, 8)}
static_assert(kBfNr == 3, "kMicroI8Panel's columns");
constexpr MicroI8Panel kMicroI8Panel[2][kBfMr + 1][kBfNr + 1] = {SLT_I8_PANEL_ROWS(false), SLT_I8_PANEL_ROWS(true)};
#undef SLT_I8_PANEL_ROWS
#undef SLT_I8_PANEL_ROW

// A tile's outputs: y rows rows[0 .. mr), weight rows [n0, n1), from int32 sums and the rows'
// xsums as rows_int8_impl makes them, (g * float(sum - xsum)) * scale * xscale + b (+ 0.0f
// without a bias), in that order (so its bits); e (or null): a convolution's epilogue around
// the bias.
struct I8TileOut {
  I8TileOut(const LinearProblem& p_, const int32_t* xsums_, const float* xscale_, const int64_t* rows_,
            int64_t n0_, int64_t n1_, const Epilogue* e_)
      : p(p_), xsums(xsums_), xscale(xscale_), rows(rows_), n0(n0_), n1(n1_), g(p_.coat_scales[0]),
        es(e_ && e_->scale ? e_->scale + n0_ - p_.row_begin : nullptr),
        bias(p_.bias ? p_.bias + n0_ - p_.row_begin : nullptr), e(e_), relu(e_ && e_->relu) {}
  float* y(int64_t r) const { return p.y + rows[r] * p.ldy + n0 - p.row_begin; }
  const float* residual(int64_t r) const {
    return e && e->residual ? e->residual + rows[r] * e->ldr + n0 - p.row_begin : nullptr;
  }
  const LinearProblem& p;
  const int32_t* xsums;
  const float* xscale;
  const int64_t* rows;
  int64_t n0, n1;
  float g;
  const float* es;    // the epilogue's scale at n0, or null
  const float* bias;  // at n0, or null
  const Epilogue* e;
  bool relu;
};

#if !defined(SLT_HW_AVX512_EMULATED)  // (SIMDe lacks _mm512_cvtepi32_ps)
// Row r's 16 outputs from column n (of the tile's n1 - n0) on, their sums in s: store_i8_tile's
// step, and the convolution micro-kernel's from its accumulators (conv_int8_vnni.inc).
inline void store_i8_vec(const I8TileOut& o, int64_t r, int64_t n, __m512i s) {
  const __m512i d = _mm512_sub_epi32(s, _mm512_set1_epi32(o.xsums[r]));
  __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(o.g), _mm512_cvtepi32_ps(d)),
                                         _mm512_set1_ps(o.p.scale)),
                           _mm512_set1_ps(o.xscale[r]));
  if (o.es) v = _mm512_mul_ps(v, _mm512_loadu_ps(o.es + n));
  v = _mm512_add_ps(v, o.bias ? _mm512_loadu_ps(o.bias + n) : _mm512_setzero_ps());
  if (const float* rr = o.residual(r)) v = _mm512_add_ps(v, _mm512_loadu_ps(rr + n));
  if (o.relu) v = _mm512_max_ps(_mm512_setzero_ps(), v);  // (max returns its second operand on NaN, as torch.relu)
  _mm512_storeu_ps(o.y(r) + n, v);
}
#endif

// The tile's outputs from its int32 sums (kTaskRows a row).
void store_i8_tile(const I8TileOut& o, const int32_t* sums, int64_t mr) {
  for (int64_t r = 0; r < mr; ++r) {
    const int32_t xsum = o.xsums[r];
    float* yr = o.y(r);
    const float* rr = o.residual(r);
    const int32_t* sr = sums + r * kTaskRows;
    int64_t n = 0;
#if !defined(SLT_HW_AVX512_EMULATED)
    for (; n + 16 <= o.n1 - o.n0; n += 16)
      store_i8_vec(o, r, n, _mm512_loadu_si512(reinterpret_cast<const void*>(sr + n)));
#endif
    for (; n < o.n1 - o.n0; ++n)
      yr[n] = int8_output(o.g, sr[n] - xsum, o.p.scale, o.xscale[r], o.es, o.bias, rr, n, o.relu);
  }
}

// acc + w * (the bf16 pair at x, broadcast), as dpbusd_bcast: the broadcast in the instruction's
// memory operand (the products are the same either way round, so are the sums' bits).
inline __m512 dpbf16_bcast(__m512 acc, __m512bh w, const uint16_t* x) {
#if defined(SLT_HW_AVX512_EMULATED)
  uint32_t pair;
  std::memcpy(&pair, x, sizeof pair);
  return _mm512_dpbf16_ps(acc, w, as_bh(_mm512_set1_epi32(int32_t(pair))));
#else
  asm("vdpbf16ps (%2)%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "r"(x));
  return acc;
#endif
}

// y[r][16 j + lane] += factor * sum over `pairs` column pairs, rows [0, MR) of x (bf16, ldx
// apart) against the panel's kBfNr groups; cols: valid weight rows (the last task's may be fewer).
template <int MR>
void micro_bf16(const uint16_t* x, int64_t ldx, const uint32_t* panel, int64_t pairs, float factor, float* y,
                int64_t ldy, int64_t cols) {
  __m512 acc[MR][kBfNr];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < kBfNr; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t c = 0; c < pairs; ++c) {
    __m512bh wv[kBfNr];
    for (int j = 0; j < kBfNr; ++j)
      wv[j] = as_bh(_mm512_load_si512(reinterpret_cast<const void*>(panel + c * kTaskRows + 16 * j)));
    for (int r = 0; r < MR; ++r)
      for (int j = 0; j < kBfNr; ++j) acc[r][j] = dpbf16_bcast(acc[r][j], wv[j], x + r * ldx + 2 * c);
  }
  const __m512 f = _mm512_set1_ps(factor);
  for (int j = 0; j < kBfNr; ++j) {
    const int64_t left = cols - 16 * j;
    if (left <= 0) break;
    for (int r = 0; r < MR; ++r) {
      float* dst = y + r * ldy + 16 * j;
      if (left >= 16) {
        _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), _mm512_mul_ps(acc[r][j], f)));
      } else {  // the last task's last rows (no masked loads and stores: SIMDe lacks them)
        alignas(64) float part[16];
        _mm512_store_ps(part, _mm512_mul_ps(acc[r][j], f));
        for (int64_t i = 0; i < left; ++i) dst[i] += part[i];
      }
    }
  }
}

using MicroBf16 = void (*)(const uint16_t*, int64_t, const uint32_t*, int64_t, float, float*, int64_t, int64_t);
constexpr MicroBf16 kMicroBf16[kBfMr + 1] = {nullptr, micro_bf16<1>, micro_bf16<2>, micro_bf16<3>, micro_bf16<4>,
                                             micro_bf16<5>, micro_bf16<6>, micro_bf16<7>, micro_bf16<8>};
#endif

}  // namespace

bool weight_rows(const LinearProblem& p, float* scratch, int64_t n0, int64_t n1, float* out) {
  return weight_rows_impl(p, scratch, n0, n1, out);
}

bool rows(const LinearProblem& p, const float* xp, float* scratch, int64_t n0, int64_t n1) {
  return p.M > kSmallBatch ? gemm_rows(p, xp, scratch, n0, n1) : small_rows(p, xp, scratch, n0, n1);
}

bool rows_int8(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1) {
  if (p.M > kSmallBatchInt8) return gemm_rows_int8(p, xq, scratch, n0, n1);
#if defined(SLT_HW_AVX512_VNNI)
  if (p.planes != nullptr && p.C == 1) return rows_int8_multi(p, xq, scratch, n0, n1);
#endif
  return rows_int8_impl(p, xq, scratch, n0, n1);
}

#if defined(SLT_HW_AVX512_VNNI)
int64_t scratch_floats_i8_panel(int64_t K) {
  return kTaskRows * ((K + 31) / 32) * 8 + task_words_size(K) + kBfMr * kTaskRows + 16;
}

bool rows_int8_panel(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1) {
  const int64_t W = (p.K + 31) / 32, Kp = 32 * W;
  uint32_t* panel = align64<uint32_t>(scratch);  // kTaskRows x Kp bytes
  uint32_t* words_t = panel + kTaskRows * W * 8;
  int32_t* sums = reinterpret_cast<int32_t*>(words_t + task_words_size(p.K));
  // the layout's 16-row groups (from one; else the panel made here)
  const uint8_t* bits = p.lut_planes != nullptr && n0 % 16 == 0
                            ? p.lut_planes + sizeof(LutPlanesHeader) + n0 / 16 * panel_group_bytes(p.K)
                            : nullptr;
  if (bits == nullptr) {
    task_words(p, n0, n1, words_t);
    build_panel_i8(words_t, W, panel);
  }
  int32_t xsums[kBfMr];
  int64_t rows[kBfMr];
  for (int64_t m = 0; m < p.M; m += kBfMr) {
    const int64_t mr = p.M - m < kBfMr ? p.M - m : kBfMr;
    kMicroI8Panel[bits != nullptr && m == 0][mr][(n1 - n0 + 15) / 16](xq + m * Kp, Kp, panel, bits, sums, xsums);
    for (int64_t r = 0; r < mr; ++r) rows[r] = m + r;
    store_i8_tile(I8TileOut(p, xsums, p.xscale + m, rows, n0, n1, nullptr), sums, mr);
  }
  return true;
}

void pack_panel_bits(const WeightDesc& w, int64_t n0, int64_t n1, float* scratch, uint8_t* body) {
  LinearProblem p;
  static_cast<WeightDesc&>(p) = w;
  p.row_end = w.N;
  const int64_t W = (w.K + 31) / 32;
  uint32_t* panel = align64<uint32_t>(scratch);
  uint32_t* words_t = panel + kTaskRows * W * 8;
  task_words(p, n0, n1, words_t);
  build_panel_i8(words_t, W, panel);
  store_panel_masks(panel, W, (n1 - n0 + 15) / 16, body + n0 / 16 * panel_group_bytes(w.K));
}

#include "conv_int8_vnni.inc"

int64_t scratch_floats_bf16(int64_t K) {
  return kTaskRows * kBlockCols / 2 + kTaskRows * kYChunkRows + task_words_size(K) + 16;
}

// The products go to a compact tile of the task's outputs (kYChunkRows x kTaskRows, in L2;
// init_tile, store_tile), as AVX2's panel GEMM's do: added into y in place, 4096 outputs put the
// tile's 8 rows in one L1 set (4096 x 4096 at batch 256: 80 % of one vdpbf16ps a cycle, 11008 x
// 4096 93 %). The tile takes each block's sums in order after the bias: y's bits as before.
bool rows_bf16(const LinearProblem& p, const uint16_t* xb, float* scratch, int64_t n0, int64_t n1) {
  const int64_t W = (p.K + 31) / 32, Kp = 32 * W, nt = n1 - n0;
  // scratch: a block's panel (64-byte aligned: kTaskRows x kBlockCols bf16), the output tile, the task's words
  uint32_t* panel = align64<uint32_t>(scratch);
  float* tile = reinterpret_cast<float*>(panel + kTaskRows * kBlockCols / 2);
  uint32_t* words_t = reinterpret_cast<uint32_t*>(tile + kTaskRows * kYChunkRows);
  const float factor = p.scale * p.coat_scales[0];
  task_words(p, n0, n1, words_t);
  for (int64_t mc = 0; mc < p.M; mc += kYChunkRows) {
    const int64_t mend = mc + kYChunkRows < p.M ? mc + kYChunkRows : p.M;
    init_tile(p, mc, mend, n0, n1, tile);
    for (int64_t w0 = 0; w0 < W; w0 += kBlockWords) {
      const int64_t w1 = w0 + kBlockWords < W ? w0 + kBlockWords : W;
      build_panel_bf16(words_t, W, w0, w1, panel);  // (again per chunk: < 4 % of its products at 512 rows)
      for (int64_t m = mc; m < mend; m += kBfMr) {
        const int64_t mr = mend - m < kBfMr ? mend - m : kBfMr;
        kMicroBf16[mr](xb + m * Kp + 32 * w0, Kp, panel, 16 * (w1 - w0), factor, tile + (m - mc) * nt, nt, nt);
      }
    }
    store_tile(p, mc, mend, n0, n1, tile);
  }
  return true;
}
#endif

}  // namespace SLT_AVX512_NS
}  // namespace cpu
}  // namespace slt

#undef SLT_AVX512_NS
