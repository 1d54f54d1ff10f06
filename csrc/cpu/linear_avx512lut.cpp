// Table-lookup kernel of the fused linear for AVX-512 (F/BW/VL/DQ): float activations, binary
// format (one plane), signed-constant weights, a few activation rows. The AVX-512 counterpart
// of linear_avx2lut.cpp (read that first); compiled with AVX-512 flags only in this TU, or
// against SIMDe in test builds (avx512_intrin.h), and called only after a runtime CPU check.
//
// The weight is ternary, w = s (P - N) with P = mask & ~sign, N = mask & sign, exact bits, so
// the kernel implies the contract's weights bit for bit; only the order of the sums differs.
// Lanes are 16 weight rows (one dword each: the hash gives a row's sign word directly, the mask
// words are transposed 16 x 16 per chunk, both in a pass before the lookups), groups are G = 4
// columns: one 16-entry float table per group and activation row fills a zmm, and vpermps takes
// its index from the low 4 bits of each lane, so a group's lookup for 16 rows is one shift and
// one vpermps per plane. Per 16 rows x 32 columns and activation row: 16 lookups and 16 adds,
// against 2 FMAs and ~4 builder instructions (kmov, blend, maskz) per 16 weights in the
// register kernel.
//
// The task driver (column chunks shared by the task's 16-row blocks) is lut_rows_impl below.
#include "../core/slt_contract.h"
#include "avx512_common.h"
#include "linear.h"

namespace slt {
namespace cpu {
namespace avx512lut {
namespace {

constexpr int kLanes = 16;                   // weight rows per lookup
constexpr int kGroups = 8;                   // groups of 4 columns per 32-column word
constexpr int64_t kTableFloats = 16;         // one group's table for one activation row
constexpr int64_t kChunkTableBytes = 16 << 10;

// Words per chunk: a multiple of 16 (whole 16 x 16 mask transposes), the chunk's tables for M
// rows within kChunkTableBytes where that leaves 16 words (M <= 2; 64 KiB at M = 8).
int64_t chunk_words(int64_t M) {
  const int64_t w = kChunkTableBytes / (kGroups * kTableFloats * int64_t(sizeof(float)) * M) / 16 * 16;
  return w < 16 ? 16 : w;
}

using avx512common::pn_words;  // the rows' P and N words, lanes = rows (avx512_common.h)

// Words [w0, w1) of rows [n0, n0 + 16) against M activation rows: acc[16 r + i] += the sum over
// T_r[P bits] - T_r[N bits] of row n0 + i. pn: the rows' P and N words (pn_words).
template <int M>
void lut_chunk(const float* tables, const uint32_t* pn, int64_t w0, int64_t w1, float* acc) {
  // accumulator chains per activation row and plane: enough to cover the add latency
  constexpr int A = M == 1 ? 4 : M == 2 ? 2 : 1;
  __m512 accp[M][A], accn[M][A];
  for (int r = 0; r < M; ++r)
    for (int a = 0; a < A; ++a) accp[r][a] = accn[r][a] = _mm512_setzero_ps();
  for (int64_t w = w0; w < w1; ++w) {
    const __m512i pw = _mm512_loadu_si512(pn + 32 * (w - w0)), nw = _mm512_loadu_si512(pn + 32 * (w - w0) + 16);
    const float* tw = tables + w * kGroups * M * kTableFloats;
#pragma GCC unroll 8
    for (int g = 0; g < kGroups; ++g) {
      // vpermps reads the low 4 bits of each index lane: group g is bits 4 g .. 4 g + 3
      const __m512i ip = _mm512_srli_epi32(pw, 4 * g), in = _mm512_srli_epi32(nw, 4 * g);
      for (int r = 0; r < M; ++r) {
        const __m512 t = _mm512_loadu_ps(tw + (g * M + r) * kTableFloats);
        accp[r][g % A] = _mm512_add_ps(accp[r][g % A], _mm512_permutexvar_ps(ip, t));
        accn[r][g % A] = _mm512_add_ps(accn[r][g % A], _mm512_permutexvar_ps(in, t));
#if !defined(SLT_HW_AVX512_EMULATED)
        // in order, one lookup pair at a time: else GCC hoists the lookups and spills from M = 2
        if constexpr (M >= 2) __asm__("" : "+v"(accp[r][g % A]), "+v"(accn[r][g % A]));
#endif
      }
    }
  }
  for (int r = 0; r < M; ++r) {
    __m512 sp = accp[r][0], sn = accn[r][0];
    for (int a = 1; a < A; ++a) {
      sp = _mm512_add_ps(sp, accp[r][a]);
      sn = _mm512_add_ps(sn, accn[r][a]);
    }
    _mm512_storeu_ps(acc + 16 * r, _mm512_add_ps(_mm512_loadu_ps(acc + 16 * r), _mm512_sub_ps(sp, sn)));
  }
}

using LutChunk = void (*)(const float*, const uint32_t*, int64_t, int64_t, float*);
constexpr LutChunk kLutChunk[kLutMaxRowsAvx512 + 1] = {nullptr,        lut_chunk<1>, lut_chunk<2>,
                                                       lut_chunk<3>,   lut_chunk<4>, lut_chunk<5>,
                                                       lut_chunk<6>,   lut_chunk<7>, lut_chunk<8>};

// Scratch of a task of up to task_rows weight rows: one block's P and N words of a chunk, then
// the accumulators of every block.
inline int64_t lut_task_scratch(int64_t M, int64_t task_rows) {
  return 2 * kLanes * chunk_words(M) + (task_rows + kLanes - 1) / kLanes * M * kLanes + 16;
}

// y rows of [n0, n1): column chunks, each run over every kLanes-row block of the task before the
// next, so a chunk's tables are read from L2 once per task; then the sums times the scale, plus
// the bias.
inline bool lut_rows_impl(const LinearProblem& p, const float* tables, float* scratch, int64_t n0, int64_t n1) {
  const int64_t W = (p.K + 31) / 32, M = p.M, words = chunk_words(M);
  uint32_t* pn = reinterpret_cast<uint32_t*>(scratch);
  float* acc = scratch + 2 * kLanes * words;
  const int64_t blocks = (n1 - n0 + kLanes - 1) / kLanes;
  for (int64_t i = 0; i < blocks * M * kLanes; ++i) acc[i] = 0.0f;
  const auto chunk = kLutChunk[M];
  for (int64_t w0 = 0; w0 < W; w0 += words) {
    const int64_t w1 = w0 + words < W ? w0 + words : W;
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t nb = n0 + kLanes * b, ne = nb + kLanes < n1 ? nb + kLanes : n1;
      pn_words(p, nb, ne, w0, w1 - w0, pn);
      chunk(tables, pn, w0, w1, acc + b * M * kLanes);
    }
  }
  const float factor = p.scale * p.coat_scales[0];
  for (int64_t b = 0; b < blocks; ++b)
    for (int64_t r = 0; r < M; ++r) {
      const int64_t nb = n0 + kLanes * b, nr = n1 - nb < kLanes ? n1 - nb : kLanes;
      const float* a = acc + (b * M + r) * kLanes;
      float* y = p.y + r * p.ldy + nb - p.row_begin;
      for (int64_t i = 0; i < nr; ++i) y[i] = a[i] * factor + (p.bias ? p.bias[nb + i - p.row_begin] : 0.0f);
    }
  return true;
}

}  // namespace

int64_t table_entries(int64_t K, int64_t M) { return ((K + 31) / 32) * kGroups * M * kTableFloats + 16; }

int64_t scratch_floats(int64_t M) { return lut_task_scratch(M, kLutTaskRowsAvx512); }

// Word w, group g (columns 32 w + 4 g .. + 3), activation row r: 16 floats at
// ((w * 8 + g) * M + r) * 16, entry b the sum of the columns whose bit is set in b, added left
// to right: T[b] = T[b without its top bit] + x[top bit].
void build_tables(const float* xp, int64_t Kp, int64_t M, float* t) {
  const int64_t W = Kp / 32;
  for (int64_t w = 0; w < W; ++w)
    for (int g = 0; g < kGroups; ++g)
      for (int64_t r = 0; r < M; ++r) {
        const float* x = xp + r * Kp + 32 * w + 4 * g;
        float* e = t + ((w * kGroups + g) * M + r) * kTableFloats;
        e[0] = 0.0f;
        for (int b = 1; b < 16; ++b) {
          const int top = 31 - __builtin_clz(unsigned(b));
          e[b] = e[b & ~(1 << top)] + x[top];
        }
      }
}

bool rows(const LinearProblem& p, const float* tables, float* scratch, int64_t n0, int64_t n1) {
  return lut_rows_impl(p, tables, scratch, n0, n1);
}

}  // namespace avx512lut
}  // namespace cpu
}  // namespace slt
