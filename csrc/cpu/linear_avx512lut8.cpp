// Table-lookup kernel of the fused linear for AVX-512 (F/BW): int8 activations (float ones as int8
// slices, quantize.h), binary format (one plane), signed-constant weights. Read
// linear_avx2lut.cpp first: the same idea, another table. Compiled with AVX-512 flags only in
// this TU (or against SIMDe in test builds, avx512_intrin.h) and called after a runtime CPU check.
//
// The weight is ternary, w = s (P - N) with P = mask & ~sign, N = mask & sign, exact bits. Here
// a group is 3 columns, and a row's 3 weights are one base-3 code c = sum_j 3^j (w_j + 1) in
// [0, 26]. Per call, each group of each activation row gets a table of 32 int16 entries, entry c
// the exact sum_j x_j (digit_j(c) - 1) (|.| <= 384), and `vpermw` looks up 32 weight rows (word
// lanes, the index in bits 0-4) at once: 96 products per instruction, exact in int16 over a
// column chunk (kMaxTriples), with no split into low and high parts, no P/N pair and no masking
// of the index. AVX2's 16-entry byte tables (one vpshufb per part and plane, 4 columns) give 32 products
// per instruction; on an AMD Zen 4 vpermw and a 512-bit vpshufb both issue about once a cycle.
//
// The codes: three groups (9 columns) of a row in one uint16, c0 | c1 << 5 | c2 << 10, a 32-row
// block's words side by side (one zmm per 9 columns: 1.78 bits per weight, against the P/N
// planes' 2; rows d and 16 + d in dword d); vpermw reads c0, a shift by 5 or 10 gives the
// others. The caller's cache (LutLayout::kCodes, pack_block) holds them; else each task makes
// its blocks' codes first (the P/N words as the AVX-512 float lookup makes them, pn_words, then
// 3-bit fields through a small table), which costs more than the lookups at few rows: chosen
// automatically, the kernel runs only with the codes given (slt_linear).
//
// The codes' order (Codes below) follows the kernel's sweep, so that a task reads them as one
// sequential stream: the 32-row blocks in groups of a task's most rows, within a group the
// triples in chunks of kChunkTriples, within a chunk the group's blocks one after another. (Block
// after block, each chunk read 16 short runs 29 KiB apart at 4096 columns, which the hardware
// prefetchers do not follow: from DRAM, the case of a model larger than the L3, a call at
// batch 1 ran 2.5x its time with the codes in the L3; it also reads ahead, prefetch_ahead.)
#include <cstring>

#include "../core/slt_contract.h"
#include "avx512_common.h"
#include "linear.h"
#include "lut_epilogue.h"

namespace slt {
namespace cpu {
namespace avx512lut8 {
namespace {

using avx512common::pn_words;

constexpr int kRows = int(kLutBlockRowsInt8);  // weight rows per block (int16 lanes), the layout's
constexpr int kRowGroup = 8;              // activation rows per sweep (an accumulator each)
constexpr int64_t kMaxTriples = 28;       // 84 groups: 84 x 384 < 32768, the int16 sums exact
// The codes' chunks (and the most triples a sweep's tables hold: 8 rows' in kChunkTableBytes). At
// 28 (kMaxTriples) 1-4 rows ran 5-10 % faster and 8 rows, in two pieces a chunk, 9 % slower (8
// layers of 11008 x 4096 and 4096 x 11008 from DRAM, one thread).
constexpr int64_t kChunkTriples = 16;
static_assert(kChunkTriples <= kMaxTriples, "a chunk's int16 sums must stay exact");
constexpr int64_t kChunkTableBytes = 24 << 10;  // a column chunk's tables, in L1
constexpr int64_t kGroupBlocks = kLutTaskRowsInt8Avx512 / kRows;  // the codes' groups: a task's most blocks

// Triples (9 columns) per column chunk: its tables for M rows within kChunkTableBytes.
int64_t chunk_triples(int64_t M) {
  const int64_t t = kChunkTableBytes / (3 * 64 * M);
  return t < 1 ? 1 : t > kChunkTriples ? kChunkTriples : t;
}

inline int64_t triples(int64_t K) { return (K + 8) / 9; }

// Codes of `blocks` 32-row blocks (in groups of kGroupBlocks) at base: at(b, t) is where block b's
// triples of triple t's chunk start, less 32 t0 for the chunk's first triple t0, so that
// at(b, t) + 32 t' addresses triple t' of that chunk. (Divisions by constants: this runs per
// block and chunk, ~60 cycles of lookups at batch 1.)
struct Codes {
  uint16_t* base;
  int64_t T3, blocks;

  int64_t at(int64_t b, int64_t t) const {
    const int64_t g = b / kGroupBlocks, bi = b % kGroupBlocks;
    const int64_t nbg = blocks - g * kGroupBlocks < kGroupBlocks ? blocks - g * kGroupBlocks : kGroupBlocks;
    const int64_t c0 = t / kChunkTriples * kChunkTriples, len = T3 - c0 < kChunkTriples ? T3 - c0 : kChunkTriples;
    return (g * kGroupBlocks * T3 + c0 * nbg + bi * len - c0) * 32;
  }
};

// The codes of rows [n0, n1) (at most 32; zero masks past them) as block b of out: per triple, 16
// dwords, dword d = the word of row d | the word of row 16 + d << 16 (so that the kernel's int32
// sums come out in row order from one vpmaddwd each). pn: scratch of 64 (W + 1) words.
void make_codes(const WeightDesc& w, int64_t n0, int64_t n1, uint32_t* pn, const Codes& out, int64_t b) {
  const int64_t W = (w.K + 31) / 32, T3 = triples(w.K);
  // B(f) = f0 + 3 f1 + 9 f2: a 3-bit field of P (or N) as its base-3 weight
  const __m512i base3 = _mm512_setr_epi32(0, 1, 3, 4, 9, 10, 12, 13, 0, 1, 3, 4, 9, 10, 12, 13);
  const __m512i seven = _mm512_set1_epi32(7), bias = _mm512_set1_epi32(13), nine = _mm512_set1_epi32(0x1FF);
  uint32_t* half[2] = {pn, pn + 32 * (W + 1)};
  for (int h = 0; h < 2; ++h) {
    const int64_t a = n0 + 16 * h < n1 ? n0 + 16 * h : n1, b = a + 16 < n1 ? a + 16 : n1;
    pn_words(w, a, b, 0, W, half[h]);
    std::memset(half[h] + 32 * W, 0, 32 * sizeof(uint32_t));  // the word past the last (a triple may span it)
  }
  for (int64_t t = 0; t < T3; ++t) {
    const int64_t s = 9 * t, wi = s / 32;
    const __m512i o = _mm512_set1_epi32(int32_t(s % 32)), o2 = _mm512_set1_epi32(int32_t(32 - s % 32));
    __m512i word[2];
    for (int h = 0; h < 2; ++h) {
      const uint32_t* q = half[h];
      // the triple's 9 P bits and 9 N bits (from words wi and wi + 1; a shift by 32 gives 0)
      const __m512i fp = _mm512_and_si512(_mm512_or_si512(_mm512_srlv_epi32(_mm512_loadu_si512(q + 32 * wi), o),
                                                          _mm512_sllv_epi32(_mm512_loadu_si512(q + 32 * wi + 32), o2)),
                                          nine);
      const __m512i fn = _mm512_and_si512(
          _mm512_or_si512(_mm512_srlv_epi32(_mm512_loadu_si512(q + 32 * wi + 16), o),
                          _mm512_sllv_epi32(_mm512_loadu_si512(q + 32 * wi + 48), o2)),
          nine);
      word[h] = _mm512_setzero_si512();
      for (int j = 0; j < 3; ++j) {
        const __m512i bp = _mm512_and_si512(_mm512_srli_epi32(fp, 3 * j), seven);
        const __m512i bn = _mm512_and_si512(_mm512_srli_epi32(fn, 3 * j), seven);
        const __m512i c = _mm512_sub_epi32(_mm512_add_epi32(bias, _mm512_permutexvar_epi32(bp, base3)),
                                           _mm512_permutexvar_epi32(bn, base3));
        word[h] = _mm512_or_si512(word[h], _mm512_slli_epi32(c, 5 * j));
      }
    }
    _mm512_storeu_si512(out.base + out.at(b, t) + 32 * t, _mm512_or_si512(word[0], _mm512_slli_epi32(word[1], 16)));
  }
}

// Triples [t0, t1) of a block of 32 weight rows (codes: its words) against activation rows
// [m0, m0 + R): acc[32 r + i] += the exact sum of weight row i and activation row m0 + r. At
// most kMaxTriples triples (the int16 sums). (Two blocks per table load measured 1.2-1.5x
// slower on Zen 4, GCC keeping their 16 accumulators on the stack, and 1.1x at two rows without
// spills: the table loads are not what bounds it.)
template <int R>
void lookup(const uint16_t* codes, const int16_t* tables, int64_t M, int64_t m0, int64_t t0, int64_t t1,
            int32_t* acc) {
  __m512i a[R];
  for (int r = 0; r < R; ++r) a[r] = _mm512_setzero_si512();
  for (int64_t t = t0; t < t1; ++t) {
    const __m512i idx = _mm512_loadu_si512(codes + 32 * t);
#pragma GCC unroll 3
    for (int j = 0; j < 3; ++j) {
      const __m512i ij = j == 0 ? idx : _mm512_srli_epi16(idx, 5 * j);  // (vpermw reads bits 0-4)
      const int16_t* tg = tables + ((3 * t + j) * M + m0) * 32;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        a[r] = _mm512_add_epi16(a[r], _mm512_permutexvar_epi16(ij, _mm512_loadu_si512(tg + 32 * r)));
    }
  }
  // word 2 d: row d, word 2 d + 1: row 16 + d (make_codes), each sign-extended by a vpmaddwd
  const __m512i even = _mm512_set1_epi32(1), odd = _mm512_set1_epi32(1 << 16);
  for (int r = 0; r < R; ++r) {
    int32_t* o = acc + 32 * r;
    const __m512i lo = _mm512_madd_epi16(a[r], even), hi = _mm512_madd_epi16(a[r], odd);
    _mm512_storeu_si512(o, _mm512_add_epi32(_mm512_loadu_si512(o), lo));
    _mm512_storeu_si512(o + 16, _mm512_add_epi32(_mm512_loadu_si512(o + 16), hi));
  }
}

using Lookup = void (*)(const uint16_t*, const int16_t*, int64_t, int64_t, int64_t, int64_t, int32_t*);
constexpr Lookup kLookup[kRowGroup + 1] = {nullptr,   lookup<1>, lookup<2>, lookup<3>, lookup<4>,
                                           lookup<5>, lookup<6>, lookup<7>, lookup<8>};

}  // namespace

int64_t block_bytes(int64_t K) { return triples(K) * kRows * int64_t(sizeof(uint16_t)); }

int64_t pack_scratch_floats(int64_t K) { return 64 * ((K + 31) / 32 + 1); }

void pack_block(const WeightDesc& w, int64_t n0, int64_t n1, float* scratch, uint8_t* body) {
  const Codes codes{reinterpret_cast<uint16_t*>(body), triples(w.K), (w.N + kRows - 1) / kRows};
  make_codes(w, n0, n1, reinterpret_cast<uint32_t*>(scratch), codes, n0 / kRows);
}

int64_t table_groups(int64_t K) { return 3 * triples(K); }

int64_t table_bytes(int64_t K, int64_t M) { return table_groups(K) * M * 64; }

// Group g (columns 3 g .. 3 g + 2), activation row r: 32 int16 at (g M + r) 32, entry c (< 27)
// the sum_j x[3 g + j] (digit_j(c) - 1), entries 27 .. 31 zero; columns at or past K count as 0.
void build_tables(const int8_t* xq, int64_t ldq, int64_t K, int64_t M, int64_t g0, int64_t g1, int16_t* t) {
  alignas(64) int16_t digit[3][32];  // digit_j(c) - 1 in {-1, 0, 1}, 0 past 26
  for (int c = 0; c < 32; ++c)
    for (int j = 0, v = c; j < 3; ++j, v /= 3) digit[j][c] = c < 27 ? int16_t(v % 3 - 1) : int16_t(0);
  const __m512i d0 = _mm512_loadu_si512(digit[0]), d1 = _mm512_loadu_si512(digit[1]);
  const __m512i d2 = _mm512_loadu_si512(digit[2]);
  for (int64_t g = g0; g < g1; ++g)
    for (int64_t r = 0; r < M; ++r) {
      const int8_t* x = xq + r * ldq + 3 * g;
      const int64_t k = 3 * g;
      const __m512i x0 = _mm512_set1_epi16(k < K ? x[0] : 0), x1 = _mm512_set1_epi16(k + 1 < K ? x[1] : 0);
      const __m512i x2 = _mm512_set1_epi16(k + 2 < K ? x[2] : 0);
      const __m512i e = _mm512_add_epi16(_mm512_add_epi16(_mm512_mullo_epi16(d0, x0), _mm512_mullo_epi16(d1, x1)),
                                         _mm512_mullo_epi16(d2, x2));
      _mm512_storeu_si512(t + (g * M + r) * 32, e);
    }
}

int64_t task_rows(int64_t rows, int threads) {
  const int64_t per = (rows + threads - 1) / threads, r = (per + kRows - 1) / kRows * kRows;
  return r < kLutTaskRowsInt8Avx512 ? r : kLutTaskRowsInt8Avx512;
}

// The task's int32 sums, then (where the codes are not given) its codes and the P/N words.
int64_t scratch_floats(int64_t K, int64_t M, int64_t task_rows, bool codes_given) {
  const int64_t blocks = (task_rows + kRows - 1) / kRows, sums = blocks * kRows * M;
  return codes_given ? sums : sums + blocks * block_bytes(K) / 4 + pack_scratch_floats(K);
}

// A task's rows: each column chunk's tables (in L1) run over all its 32-row blocks before the next
// chunk, so a task reads the tables once (tasks of kLutTaskRowsAvx512 = 128 rows, four reads of
// them per 512 rows, had made the tables' traffic ~30 % of a call at 8 rows).
bool rows(const LinearProblem& p, const int16_t* tables, float* scratch, int64_t n0, int64_t n1) {
  const int64_t blocks = (n1 - n0 + kRows - 1) / kRows, T3 = triples(p.K), bb = block_bytes(p.K);
  int32_t* acc = reinterpret_cast<int32_t*>(scratch);
  uint16_t* made = reinterpret_cast<uint16_t*>(scratch + blocks * kRows * p.M);
  uint32_t* pn = reinterpret_cast<uint32_t*>(scratch + blocks * kRows * p.M + blocks * bb / 4);
  // the cached layout's codes (block b0 + b), or the task's own (block b; one group: a task has
  // at most kGroupBlocks)
  const bool given = p.lut_planes != nullptr && n0 % kRows == 0;
  const int64_t b0 = given ? n0 / kRows : 0;
  const Codes codes = given ? Codes{reinterpret_cast<uint16_t*>(const_cast<uint8_t*>(p.lut_planes + sizeof(LutPlanesHeader))),
                                    T3, (p.N + kRows - 1) / kRows}
                            : Codes{made, T3, blocks};
  if (!given)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t n = n0 + kRows * b;
      make_codes(p, n, n + kRows < n1 ? n + kRows : n1, pn, codes, b);
    }
  const int64_t M = p.M, ct = chunk_triples(M);
  std::memset(acc, 0, size_t(blocks * kRows * M) * sizeof(int32_t));
  // the codes' chunks, each in pieces whose tables stay in L1 (ct triples)
  for (int64_t c0 = 0; c0 < T3; c0 += kChunkTriples)
    for (int64_t t0 = c0, c1 = c0 + kChunkTriples < T3 ? c0 + kChunkTriples : T3; t0 < c1; t0 += ct) {
      const int64_t t1 = t0 + ct < c1 ? t0 + ct : c1;
      for (int64_t b = 0; b < blocks; ++b) {
        const uint16_t* cb = codes.base + codes.at(b0 + b, t0);
        prefetch_ahead(cb + 32 * t0, t1 - t0);  // (the stream: from DRAM, batch 4 15.5 -> 7.9 ms)
        for (int64_t m0 = 0; m0 < M; m0 += kRowGroup) {
          const int R = M - m0 < kRowGroup ? int(M - m0) : kRowGroup;
          kLookup[R](cb, tables, M, m0, t0, t1, acc + (b * M + m0) * kRows);  // (acc: [block][row][32])
        }
      }
    }
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t n = n0 + kRows * b, nr = n1 - n < kRows ? n1 - n : kRows;
    const int32_t* s = acc + b * M * kRows;
#if defined(SLT_HW_AVX512_EMULATED)  // (SIMDe 0.7.4 lacks the float conversion and masked moves)
    const bool vector = false;
#else
    const bool vector = !p.slices;
#endif
    if (!vector) {
      store_int8_sums(p, n, nr, [&](int64_t, int64_t r, int64_t i) { return s[r * kRows + i]; });
      continue;
    }
#if !defined(SLT_HW_AVX512_EMULATED)
    // store_int8_sums' y = ((g * float(sum)) * scale) * xscale + b, 16 at a time: the same
    // roundings in the same order (no FMA contraction), so the same bits (natively tested)
    const __m512 g = _mm512_set1_ps(p.coat_scales[0]), scale = _mm512_set1_ps(p.scale);
    const float* bias = p.bias ? p.bias + n - p.row_begin : nullptr;
    for (int64_t r = 0; r < M; ++r) {
      float* y = p.y + r * p.ldy + n - p.row_begin;
      const __m512 xs = _mm512_set1_ps(p.xscale[r]);
      for (int64_t i = 0; i < nr; i += 16) {
        const slt_mask16 k = nr - i >= 16 ? slt_mask16(0xFFFF) : slt_mask16((1u << (nr - i)) - 1);
        __m512 v = _mm512_mul_ps(g, _mm512_cvtepi32_ps(_mm512_loadu_si512(s + r * kRows + i)));
        v = _mm512_mul_ps(_mm512_mul_ps(v, scale), xs);
        v = _mm512_add_ps(v, bias ? _mm512_maskz_loadu_ps(k, bias + i) : _mm512_setzero_ps());  // (+ 0: -0 to +0)
        _mm512_mask_storeu_ps(y + i, k, v);
      }
    }
#endif
  }
  return true;
}

}  // namespace avx512lut8
}  // namespace cpu
}  // namespace slt
