// See attention.h. Portable C++ vectorised by the compiler: the dot products and the weighted
// sums as lane-wise loops over 16 partial sums, exp as a polynomial on integer bits (no libm
// call per score), bfloat16 widened by a shift. Memory-bound at decode: the keys and values are
// each read once.
#include "attention.h"

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "generate.h"

namespace slt {
namespace cpu {
namespace {

constexpr int kLanes = 16;

inline float to_float(float x) { return x; }
inline float to_float(uint16_t x) {  // (bfloat16 bits: the high half of a float's)
  const uint32_t u = uint32_t(x) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// sum_d a[d] b[d] over n elements: 16 lane sums, then a fixed tree of halves (written out: a loop
// over the widths had kept the lanes on the stack, 0.6x SDPA at 128 keys).
template <typename E>
inline float dot(const float* __restrict a, const E* __restrict b, int64_t n) {
  float acc[kLanes] = {};
  int64_t d = 0;
  for (; d + kLanes <= n; d += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += a[d + l] * to_float(b[d + l]);
  float h8[8], h4[4];
  for (int l = 0; l < 8; ++l) h8[l] = acc[l] + acc[l + 8];
  for (int l = 0; l < 4; ++l) h4[l] = h8[l] + h8[l + 4];
  float s = (h4[0] + h4[2]) + (h4[1] + h4[3]);
  for (; d < n; ++d) s += a[d] * to_float(b[d]);
  return s;
}

// exp(x) for x <= 0 (a score less its row's max), relative error ~2e-7; 0 below -87 (and for
// -inf, a masked key), NaN for NaN. 2^n r's polynomial, n = round(x / ln 2), r = x - n ln 2 in
// [-ln2/2, ln2/2].
inline float exp_nonpositive(float x) {
  const float xc = x > -87.0f ? x : -87.0f;  // (NaN too: the conversions below stay defined)
  const int32_t ni = -int32_t(0.5f - xc * 1.44269504f);  // (round(x / ln 2): truncation of a positive)
  const float n = float(ni);
  const float r = (xc - n * 0.693145752f) - n * 1.42860677e-6f;  // (ln 2 in two parts: r exact enough)
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = (ni + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, sizeof two_n);
  const float e = p * two_n;
  return x >= -87.0f ? e : (x == x ? 0.0f : x);
}

// The (batch, head) pair bh: its T queries' scores over the S keys, their softmax, the weighted
// sum of the values, in float32 (E: the inputs' element). scores: T S floats; acc: T DV; qf: T D
// (the queries as float32). Inlined into head_f32 / head_bf16, which are compiled also for AVX2
// and AVX-512 and picked at load time by the CPU's features (GCC/Clang target_clones on x86-64
// Linux): in L2 (a 128-key cache) the SSE2 loops were the bound, 0.7x torch's SDPA.
template <typename E>
__attribute__((always_inline)) inline void head(const AttentionArgs& a, int64_t bh, float* scores, float* acc,
                                                float* qf) {
  const int64_t b = bh / a.H, h = bh % a.H, T = a.T, S = a.S;
  const float neg_inf = -std::numeric_limits<float>::infinity();
  const bool* pad = a.key_padding ? a.key_padding + b * S : nullptr;
  const E* q = static_cast<const E*>(a.q) + b * a.sq[0] + h * a.sq[2];
  const E* kb = static_cast<const E*>(a.k) + b * a.sk[0] + h * a.sk[2];
  const E* vb = static_cast<const E*>(a.v) + b * a.sv[0] + h * a.sv[2];
  for (int64_t t = 0; t < T; ++t)
    for (int64_t d = 0; d < a.D; ++d) qf[t * a.D + d] = to_float(q[t * a.sq[1] + d]);
  for (int64_t s = 0; s < S; ++s) {  // keys: one pass, every query's score
    const E* ks = kb + s * a.sk[1];
    for (int64_t t = 0; t < T; ++t) {
      const bool masked = (pad && pad[s]) || (a.causal && s > S - T + t) || (a.mask_bool && a.mask_bool[t * S + s]);
      const float add = a.mask_add ? a.mask_add[t * S + s] : 0.0f;  // (the reference's order: scaled, then added)
      scores[t * S + s] = masked ? neg_inf : dot(qf + t * a.D, ks, a.D) * a.scale + add;
    }
  }
  float norm[kDecodeQueries];
  for (int64_t t = 0; t < T; ++t) {  // softmax numerators, their sum
    float* st = scores + t * S;
    float m = neg_inf;
    for (int64_t s = 0; s < S; ++s) m = st[s] > m || st[s] != st[s] ? st[s] : m;  // (a NaN score: NaN out)
    float l = 0.0f;
    if (m != neg_inf)
      for (int64_t s = 0; s < S; ++s) {
        st[s] = exp_nonpositive(st[s] - m);
        l += st[s];
      }
    norm[t] = m == neg_inf ? 0.0f : 1.0f / l;  // (no key left: zeros)
  }
  std::memset(acc, 0, size_t(T * a.DV) * sizeof(float));
  for (int64_t s = 0; s < S; ++s) {  // values: one pass
    const E* __restrict vs = vb + s * a.sv[1];
    for (int64_t t = 0; t < T; ++t) {
      const float p = scores[t * S + s];
      if (p == 0.0f || norm[t] == 0.0f) continue;
      float* __restrict at = acc + t * a.DV;
      for (int64_t d = 0; d < a.DV; ++d) at[d] += p * to_float(vs[d]);
    }
  }
  for (int64_t t = 0; t < T; ++t) {
    float* o = a.out + ((b * T + t) * a.H + h) * a.DV;
    for (int64_t d = 0; d < a.DV; ++d) o[d] = acc[t * a.DV + d] * norm[t];
  }
}

#if defined(__x86_64__) && defined(__linux__) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(SLT_HW_AVX512_EMULATED)
#define SLT_HW_ATTENTION_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SLT_HW_ATTENTION_CLONES
#endif
SLT_HW_ATTENTION_CLONES void head_f32(const AttentionArgs& a, int64_t bh, float* scores, float* acc, float* qf) {
  head<float>(a, bh, scores, acc, qf);
}
SLT_HW_ATTENTION_CLONES void head_bf16(const AttentionArgs& a, int64_t bh, float* scores, float* acc, float* qf) {
  head<uint16_t>(a, bh, scores, acc, qf);
}
#undef SLT_HW_ATTENTION_CLONES

}  // namespace

void attention_decode(const AttentionArgs& a, int threads) {
  if (a.B < 0 || a.T < 1 || a.S < 0 || a.H < 1 || a.D < 1 || a.DV < 1)
    throw std::invalid_argument("attention_decode: expected B >= 0, T >= 1, S >= 0, H, D, DV >= 1");
  if (a.T > kDecodeQueries)
    throw std::invalid_argument("attention_decode: at most " + std::to_string(kDecodeQueries) + " queries, got " +
                                std::to_string(a.T));
  if (a.causal && a.T > a.S)
    throw std::invalid_argument("attention_decode: causal needs T <= S (the queries are the last T positions)");
  if (a.mask_bool != nullptr && a.mask_add != nullptr)
    throw std::invalid_argument("attention_decode: expected one attn_mask, bool or float, not both");
  if (a.B == 0) return;
  if (a.q == nullptr || a.out == nullptr || (a.S > 0 && (a.k == nullptr || a.v == nullptr)))
    throw std::invalid_argument("attention_decode: null pointer");
  const int nt = resolve_threads(threads);
  const int64_t pairs = a.B * a.H;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt) if (pairs > 1 && pairs * a.S * (a.D + a.DV) >= (int64_t(1) << 16))
#endif
  {
    std::vector<float> scores(static_cast<size_t>(a.T * a.S)), acc(static_cast<size_t>(a.T * a.DV));
    std::vector<float> qf(static_cast<size_t>(a.T * a.D));
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t bh = 0; bh < pairs; ++bh)
      (a.bf16 ? head_bf16 : head_f32)(a, bh, scores.data(), acc.data(), qf.data());
  }
  (void)nt;
}

}  // namespace cpu
}  // namespace slt
