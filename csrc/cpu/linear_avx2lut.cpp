// Table-lookup (T-MAC / bitnet.cpp style) AVX2 kernel of the fused linear (linear.h), for the
// binary format (one plane) with signed-constant weights and a few activation rows. Compiled
// with -mavx2 -mfma only in this TU and called only after a runtime CPU check (linear.cpp).
//
// A signed-constant weight is ternary: w = s * (P - N) with P = mask & ~sign, N = mask & sign
// (sign bit 1 is -s, docs/rng.md §5), and both planes are exact bits, so the weights this
// kernel implies are the contract's bit for bit; only the order of the sums differs.
//
// Once per call, every group of G consecutive columns of each activation row gets a table of its
// 2^G partial sums, T[b] = sum_{i: bit i of b} x[k + i]. A weight row's dot product is then
// the sum over groups of T[P bits] - T[N bits]: two lookups per G weights instead of building
// every weight. The sign words of eight rows are hashed eight at a time (counter n*W + w in
// each lane, as the contract numbers them: one dword per row), the mask words of the task's
// rows are transposed 8 x 8 into the same layout once per task.
//   float activations: lanes are weight rows (one dword each, no bit transposition), G = 3: an
//     8-entry float table per group, one vpermps per lookup serves eight rows; 11 groups per
//     32-column word (the last covers 2 columns). (G = 2 with in-lane vpermilps and 4-entry
//     tables measured 12 % slower on Zen 2; vpermd on int32 tables for int8 activations was
//     slower than the vpshufb kernel below.)
//   int8 activations: lanes are bytes (32 weight rows per ymm after a byte transposition),
//     G = 4: 16-entry byte tables, one vpshufb per lookup serves 32 rows (below).
// Given the weight's planes in the kernel's layout (LutPlanesHeader, pack_block_*: what the hash
// and the transposes make, kept by the caller), both read P and N from there instead.
#include <immintrin.h>

#include <cstring>

#include "../core/slt_contract.h"
#include "avx2_common.h"
#include "linear.h"

namespace slt {
namespace cpu {
namespace avx2lut {
namespace {

using avx2common::hash_v;  // the contract hash on 8 lanes (avx2_common.h)
using avx2common::transpose8x8_ps;

constexpr int kGroups = 11;  // groups of 3 columns per 32-column word (10 of 3, one of 2)
constexpr int64_t kLanes = kLutBlockRowsFloat;  // float activations: weight rows per lookup

// Words per column chunk of the float kernel: M rows' tables of a chunk in ~11 KiB of L1.
int64_t chunk_words(int64_t M) { return M >= 4 ? 8 : 32 / M; }

// mt[stride * i + r] = mask word w0 + i of row n0 + r, i < words, r < 8 (zero for rows at or
// past n1): eight rows' mask words with lanes = rows.
void transpose_masks(const WeightDesc& p, int64_t n0, int64_t n1, uint32_t* mt, int64_t stride, int64_t w0,
                     int64_t words) {
  const int64_t W = (p.K + 31) / 32;
  const uint32_t* rows[8];
  for (int r = 0; r < 8; ++r)
    rows[r] = n0 + r < n1 ? reinterpret_cast<const uint32_t*>(p.planes + (n0 + r) * W + w0) : nullptr;
  int64_t w = 0;
  if (n1 - n0 == 8) {
    for (; w + 8 <= words; w += 8) {
      __m256 v[8], c[8];
      for (int r = 0; r < 8; ++r) v[r] = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + w)));
      transpose8x8_ps(v, c);
      float* dst = reinterpret_cast<float*>(mt + stride * w);
      for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + stride * i, c[i]);
    }
  }
  for (; w < words; ++w)
    for (int r = 0; r < 8; ++r) mt[stride * w + r] = rows[r] ? rows[r][w] : 0u;
}

// The 8-entry table at t looked up by the low 3 bits of each lane of idx (vpermps ignores the rest).
inline __m256 lookup(const float* t, __m256i idx) { return _mm256_permutevar8x32_ps(_mm256_loadu_ps(t), idx); }

// The P and N words of rows [n0, n0 + 8) (zero at or past n1), words [w0, w0 + words):
// pn[16 i + r] P of word w0 + i of row n0 + r, pn[16 i + 8 + r] its N. The masks are transposed
// 8 x 8, the signs hashed eight rows at a time, in a pass of its own so that the lookups do not
// wait on the hash's latency (4 vpmulld) word after word.
void prepare(const WeightDesc& p, int64_t n0, int64_t n1, int64_t w0, int64_t words, uint32_t* pn) {
  transpose_masks(p, n0, n1, pn, 16, w0, words);
  const int64_t W = (p.K + 31) / 32;
  const __m256i k0 = _mm256_set1_epi32(int32_t(p.k0)), k1 = _mm256_set1_epi32(int32_t(p.k1));
  const __m256i one = _mm256_set1_epi32(1);
  __m256i c = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_add_epi32(_mm256_set1_epi32(int32_t(uint32_t(n0))),
                                                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                                                  _mm256_set1_epi32(int32_t(uint32_t(W)))),
                               _mm256_set1_epi32(int32_t(uint32_t(w0))));
  // word i's mask words (in place) -> its P and N words, given its sign words s
  auto split = [pn](int64_t i, __m256i s) {
    __m256i* v = reinterpret_cast<__m256i*>(pn + 16 * i);
    const __m256i m = _mm256_loadu_si256(v);
    _mm256_storeu_si256(v, _mm256_andnot_si256(s, m));
    _mm256_storeu_si256(v + 1, _mm256_and_si256(s, m));
  };
  int64_t i = 0;
  for (; i + 4 <= words; i += 4) {
    __m256i cs[4], s[4];
    for (int j = 0; j < 4; ++j, c = _mm256_add_epi32(c, one)) cs[j] = c;
    avx2common::hash_v4(cs, k0, k1, s);
    for (int j = 0; j < 4; ++j) split(i + j, s[j]);
  }
  for (; i < words; ++i, c = _mm256_add_epi32(c, one)) split(i, hash_v(c, k0, k1));
}

// Words [w0, w1) of eight rows against M activation rows: acc[8 r + i] (lanes = the rows) +=
// the sum of T_r[P bits] - T_r[N bits]. pn: the rows' P and N words from w0 (prepare).
template <int M>
void lut_chunk(const float* tables, const uint32_t* pn, int64_t w0, int64_t w1, float* acc) {
  // one accumulator pair per activation row; two pairs for a single row (the add latency)
  constexpr int A = M == 1 ? 2 : 1;
  __m256 accp[M][A], accn[M][A];
  for (int r = 0; r < M; ++r)
    for (int a = 0; a < A; ++a) accp[r][a] = accn[r][a] = _mm256_setzero_ps();
  for (int64_t w = w0; w < w1; ++w) {
    const __m256i pw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pn + 16 * (w - w0)));
    const __m256i nw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(pn + 16 * (w - w0) + 8));
    const float* tw = tables + w * kGroups * M * 8;
#pragma GCC unroll 16
    for (int j = 0; j < kGroups; ++j) {
      const __m256i ip = _mm256_srli_epi32(pw, 3 * j), in = _mm256_srli_epi32(nw, 3 * j);
      for (int r = 0; r < M; ++r) {
        const float* t = tw + (j * M + r) * 8;
        accp[r][j % A] = _mm256_add_ps(accp[r][j % A], lookup(t, ip));
        accn[r][j % A] = _mm256_add_ps(accn[r][j % A], lookup(t, in));
        // in order, one lookup pair at a time: else GCC hoists the lookups and spills them
        __asm__("" : "+x"(accp[r][j % A]), "+x"(accn[r][j % A]));
      }
    }
  }
  for (int r = 0; r < M; ++r) {
    __m256 sp = accp[r][0], sn = accn[r][0];
    for (int a = 1; a < A; ++a) {
      sp = _mm256_add_ps(sp, accp[r][a]);
      sn = _mm256_add_ps(sn, accn[r][a]);
    }
    _mm256_storeu_ps(acc + 8 * r, _mm256_add_ps(_mm256_loadu_ps(acc + 8 * r), _mm256_sub_ps(sp, sn)));
  }
}

using LutChunk = void (*)(const float*, const uint32_t*, int64_t, int64_t, float*);
constexpr LutChunk kLutChunk[kLutMaxRows + 1] = {nullptr, lut_chunk<1>, lut_chunk<2>, lut_chunk<3>, lut_chunk<4>};

// The P and N words of rows [n0, n0 + kLanes) from word w0 in the caller's planes (prepare's
// layout, every word of the row), or null: none given, or a block that does not start on kLanes rows.
const uint32_t* block_planes(const LinearProblem& p, int64_t n0, int64_t w0) {
  if (p.lut_planes == nullptr || n0 % kLanes != 0) return nullptr;
  const int64_t W = (p.K + 31) / 32;
  return reinterpret_cast<const uint32_t*>(p.lut_planes + sizeof(LutPlanesHeader)) + ((n0 / kLanes) * W + w0) * 2 * kLanes;
}

#include "linear_lutrows.inc"

// ---------------------------------------------------------------------------- int8 activations
// Lanes are bytes: 32 weight rows per ymm, so one vpshufb looks up 32 rows. Groups of 4 columns
// (a nibble of the P or N word), 16-entry tables per group and activation row: an entry T in
// [-508, 508] (a sum of up to 4 int8 values) is stored as T = lo + 32 hi, lo = T & 31 in [0, 31]
// and hi = T >> 5 in [-16, 15], one 16-byte vpshufb table each. The P lookups minus the N
// lookups of 4 groups stay in [-124, 124]: exact in int8 (wrapping adds, the final value in
// range); vpmaddubsw by (1, 32) joins lo and hi into int16, |.| <= 4092 per 4 groups, 4096 per
// word: int16 sums over 4 words, then int32. Per 4 weights and activation row: two vpshufb
// (both 32 rows), where the register kernel spends a vpmaddubsw per 32 weights and row.
constexpr int kI8Rows = int(kLutBlockRowsInt8);  // weight rows per block
constexpr int kI8WordsInt16 = 4;  // words summed in int16 before widening
constexpr int kI8RowGroup = 4;    // activation rows per sweep of a word's indices (2 byte accumulators each)
constexpr int64_t kI8Ahead = 2;   // a word's P/N bytes are made this many words before its lookups

// Byte position of weight row i (0..31) after transpose_bytes: rows 8q + 4L + j sit at 16L + 4q + j.
inline int byte_of_row(int i) { return 16 * ((i >> 2) & 1) + 4 * (i >> 3) + (i & 3); }

// a[q]: dword j of 128-bit lane L = the word of row 8q + 4L + j. Returns b[k]: byte k of every
// row's word, row 8q + 4L + j at byte 16L + 4q + j.
inline void transpose_bytes(const __m256i* a, __m256i* b) {
  const __m256i gather = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,  //
                                          0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m256i a0 = _mm256_shuffle_epi8(a[0], gather), a1 = _mm256_shuffle_epi8(a[1], gather);
  const __m256i a2 = _mm256_shuffle_epi8(a[2], gather), a3 = _mm256_shuffle_epi8(a[3], gather);
  const __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1);
  const __m256i t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
  b[0] = _mm256_unpacklo_epi64(t0, t2);
  b[1] = _mm256_unpackhi_epi64(t0, t2);
  b[2] = _mm256_unpacklo_epi64(t1, t3);
  b[3] = _mm256_unpackhi_epi64(t1, t3);
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

inline __m256i bcast16(const uint8_t* p) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

// Rows [n0, min(n0 + 32, n1)) (zero masks past them): mt[32 w + 8 q + r] = mask word w of row
// n0 + 8 q + r, every word of the row (make_pn's layout).
void transpose_block_masks(const WeightDesc& p, int64_t n0, int64_t n1, uint32_t* mt) {
  for (int q = 0; q < 4; ++q) {
    const int64_t a = n0 + 8 * q < n1 ? n0 + 8 * q : n1, b = n0 + 8 * q + 8 < n1 ? n0 + 8 * q + 8 : n1;
    transpose_masks(p, a, b, mt + 8 * q, kI8Rows, 0, (p.K + 31) / 32);
  }
}

// c[q]: the sign counters of rows n0 + 8q .. n0 + 8q + 7 at word 0 (row * W, lanes = rows).
inline void block_counters(int64_t n0, int64_t W, __m256i c[4]) {
  for (int q = 0; q < 4; ++q)
    c[q] = _mm256_mullo_epi32(_mm256_add_epi32(_mm256_set1_epi32(int32_t(uint32_t(n0 + 8 * q))),
                                               _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)),
                              _mm256_set1_epi32(int32_t(uint32_t(W))));
}

// Word w of 32 weight rows: pn[k] = byte k of the rows' P words, pn[4 + k] of their N words
// (transpose_bytes' order). m: the word's 32 mask words, lanes = rows (transpose_block_masks);
// c: block_counters. The signs are hashed with lanes = rows, split there, P and N transposed.
inline void make_pn(const uint32_t* m, const __m256i c[4], __m256i k0, __m256i k1, int64_t w, __m256i* pn) {
  __m256i cs[4], s[4], pw[4], nw[4];
  const __m256i wv = _mm256_set1_epi32(int32_t(uint32_t(w)));
  for (int q = 0; q < 4; ++q) cs[q] = _mm256_add_epi32(c[q], wv);
  avx2common::hash_v4(cs, k0, k1, s);
  for (int q = 0; q < 4; ++q) {
    const __m256i mq = load32(m + 8 * q);
    pw[q] = _mm256_andnot_si256(s[q], mq);
    nw[q] = _mm256_and_si256(s[q], mq);
  }
  transpose_bytes(pw, pn);
  transpose_bytes(nw, pn + 4);
}

// Word w against activation rows [r0, r0 + R): d[2 r], d[2 r + 1] (int16, the byte order of
// transpose_bytes split by vpunpckl/hbw) += the 32 weight rows' exact sums over the word.
template <int R>
inline void word_rows(const uint8_t* tables, int64_t M, int64_t w, int64_t r0, const __m256i* pn, __m256i* d) {
  const __m256i lo4 = _mm256_set1_epi8(0x0F), zero = _mm256_setzero_si256();
  const __m256i join = _mm256_set1_epi16(int16_t(1 | (32 << 8)));  // bytes 1, 32: lo + 32 hi
#pragma GCC unroll 2
  for (int half = 0; half < 2; ++half) {
    __m256i dl[R], dh[R];
    for (int r = 0; r < R; ++r) dl[r] = dh[r] = zero;
#pragma GCC unroll 2
    for (int kk = 0; kk < 2; ++kk) {
      const int k = 2 * half + kk;
      const __m256i P = pn[k], N = pn[4 + k];
#pragma GCC unroll 2
      for (int nib = 0; nib < 2; ++nib) {
        const __m256i ip = nib ? _mm256_and_si256(_mm256_srli_epi16(P, 4), lo4) : _mm256_and_si256(P, lo4);
        const __m256i in = nib ? _mm256_and_si256(_mm256_srli_epi16(N, 4), lo4) : _mm256_and_si256(N, lo4);
        const uint8_t* t = tables + ((w * 8 + 2 * k + nib) * M + r0) * 32;
        for (int r = 0; r < R; ++r) {
          const __m256i tl = bcast16(t + 32 * r), th = bcast16(t + 32 * r + 16);
          dl[r] = _mm256_sub_epi8(_mm256_add_epi8(dl[r], _mm256_shuffle_epi8(tl, ip)), _mm256_shuffle_epi8(tl, in));
          dh[r] = _mm256_sub_epi8(_mm256_add_epi8(dh[r], _mm256_shuffle_epi8(th, ip)), _mm256_shuffle_epi8(th, in));
          __asm__("" : "+x"(dl[r]), "+x"(dh[r]));  // one row's lookups at a time (else GCC hoists and spills)
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      d[2 * r] = _mm256_add_epi16(d[2 * r], _mm256_maddubs_epi16(join, _mm256_unpacklo_epi8(dl[r], dh[r])));
      d[2 * r + 1] = _mm256_add_epi16(d[2 * r + 1], _mm256_maddubs_epi16(join, _mm256_unpackhi_epi8(dl[r], dh[r])));
    }
  }
}

// Rows [n0, n0 + 32) against M activation rows: out[32 r + byte_of_row(i)] = the exact int sum
// of row n0 + i. src, kPlanes: the block's P/N bytes, 256 per word (pack_block_int8), read as
// they are; else the block's mask words (transpose_block_masks, make_pn's input): a word's P/N
// bytes (hash, transposes) are made kI8Ahead words before its lookups, in a ring, so that they
// overlap earlier lookups instead of delaying their own (1.69 -> 1.63 ms at one row, 4.64 ->
// 4.27 ms at eight, 11008 x 4096).
// work: 6 M ymm (the rows' int16 and int32 sums). kM: M known at compile time, one row group
// (1..kI8RowGroup): the sums in local variables, no row loop (11008 x 4096: 1.43 / 1.78 / 2.13 /
// 2.51 -> 1.18 / 1.56 / 1.93 / 2.31 ms at 1 / 2 / 3 / 4 rows); 0: any M, the sums in work.
template <bool kPlanes, int kM>
void lut_i8_block(const LinearProblem& p, const uint8_t* tables, const void* src, int64_t n0, __m256i* work,
                  int32_t* out) {
  static_assert(kM >= 0 && kM <= kI8RowGroup, "kM: one row group at most");
  const int64_t W = (p.K + 31) / 32, M = kM ? kM : p.M;
  __m256i local[6 * (kM ? kM : 1)];
  if (kM) work = local;
  const __m256i k0 = _mm256_set1_epi32(int32_t(p.k0)), k1 = _mm256_set1_epi32(int32_t(p.k1));
  __m256i c[4];
  block_counters(n0, W, c);
  const uint32_t* masks = static_cast<const uint32_t*>(src);
  const __m256i* planes = static_cast<const __m256i*>(src);
  __m256i pn[8 * (kI8Ahead + 1)];
  __m256i* d16 = work;  // 2 per row
  __m256i (*acc32)[4] = reinterpret_cast<__m256i(*)[4]>(work + 2 * M);  // 4 per row
  const __m256i zero = _mm256_setzero_si256();
  for (int64_t r = 0; r < M; ++r) {
    d16[2 * r] = d16[2 * r + 1] = zero;
    for (int i = 0; i < 4; ++i) acc32[r][i] = zero;
  }
  auto widen = [&]() {
    for (int64_t r = 0; r < M; ++r) {
      acc32[r][0] = _mm256_add_epi32(acc32[r][0], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(d16[2 * r])));
      acc32[r][1] = _mm256_add_epi32(acc32[r][1], _mm256_cvtepi16_epi32(_mm256_castsi256_si128(d16[2 * r + 1])));
      acc32[r][2] = _mm256_add_epi32(acc32[r][2], _mm256_cvtepi16_epi32(_mm256_extracti128_si256(d16[2 * r], 1)));
      acc32[r][3] = _mm256_add_epi32(acc32[r][3], _mm256_cvtepi16_epi32(_mm256_extracti128_si256(d16[2 * r + 1], 1)));
      d16[2 * r] = d16[2 * r + 1] = zero;
    }
  };
  if (!kPlanes)
    for (int64_t w = 0; w < kI8Ahead && w < W; ++w) make_pn(masks + 32 * w, c, k0, k1, w, pn + 8 * w);
  for (int64_t w = 0; w < W; ++w) {
    const int64_t ahead = w + kI8Ahead;
    if (!kPlanes && ahead < W) make_pn(masks + 32 * ahead, c, k0, k1, ahead, pn + 8 * (ahead % (kI8Ahead + 1)));
    const __m256i* pw = kPlanes ? planes + 8 * w : pn + 8 * (w % (kI8Ahead + 1));
    if (kM) {
      word_rows<kM ? kM : 1>(tables, kM, w, 0, pw, d16);
    } else {
      for (int64_t r0 = 0; r0 < M; r0 += kI8RowGroup) {
        __m256i* d = d16 + 2 * r0;
        switch (M - r0 < kI8RowGroup ? M - r0 : kI8RowGroup) {
          case 1: word_rows<1>(tables, M, w, r0, pw, d); break;
          case 2: word_rows<2>(tables, M, w, r0, pw, d); break;
          case 3: word_rows<3>(tables, M, w, r0, pw, d); break;
          default: word_rows<4>(tables, M, w, r0, pw, d); break;
        }
      }
    }
    if (w % kI8WordsInt16 == kI8WordsInt16 - 1) widen();
  }
  widen();
  for (int64_t r = 0; r < M; ++r)
    for (int i = 0; i < 4; ++i) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 32 * r + 8 * i), acc32[r][i]);
}

using LutI8Block = void (*)(const LinearProblem&, const uint8_t*, const void*, int64_t, __m256i*, int32_t*);
// [planes given][M if at most kI8RowGroup, else 0]
constexpr LutI8Block kLutI8Block[2][kI8RowGroup + 1] = {
    {lut_i8_block<false, 0>, lut_i8_block<false, 1>, lut_i8_block<false, 2>, lut_i8_block<false, 3>,
     lut_i8_block<false, 4>},
    {lut_i8_block<true, 0>, lut_i8_block<true, 1>, lut_i8_block<true, 2>, lut_i8_block<true, 3>,
     lut_i8_block<true, 4>}};

}  // namespace

int64_t table_bytes_int8(int64_t K, int64_t M) { return ((K + 31) / 32) * 8 * M * 32 + 64; }

// Word w, group g (columns 32 w + 4 g ... + 3), activation row r: 32 bytes at ((w * 8 + g) * M + r) * 32,
// the 16 entries' low parts (T & 31), then their high parts (T >> 5, arithmetic): T = lo + 32 hi.
// Entry b = sum of the group's x_i over the set bits i of b: vpmaddubsw of the bit patterns
// (bytes 0/1, four per entry) and the four x (int8) repeated, then pairs added.
void build_tables_int8(const int8_t* xq, int64_t Kp, int64_t M, uint8_t* t) {
  alignas(32) static const uint8_t kBits[2][32] = {
      {0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1, 0},
      {0, 0, 0, 1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1}};
  const __m256i bits0 = load32(kBits[0]), bits1 = load32(kBits[1]), ones16 = _mm256_set1_epi16(1);
  const __m256i low5 = _mm256_set1_epi16(31);
  const int64_t W = Kp / 32;
  for (int64_t w = 0; w < W; ++w)
    for (int g = 0; g < 8; ++g)
      for (int64_t r = 0; r < M; ++r) {
        int32_t four;
        std::memcpy(&four, xq + r * Kp + 32 * w + 4 * g, sizeof four);
        const __m256i x = _mm256_set1_epi32(four);
        const __m256i lo8 = _mm256_madd_epi16(_mm256_maddubs_epi16(bits0, x), ones16);  // entries 0..7, int32
        const __m256i hi8 = _mm256_madd_epi16(_mm256_maddubs_epi16(bits1, x), ones16);  // entries 8..15
        const __m256i e = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo8, hi8), 0xD8);  // int16, in order
        const __m256i parts = _mm256_packs_epi16(_mm256_and_si256(e, low5), _mm256_srai_epi16(e, 5));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(t + ((w * 8 + g) * M + r) * 32),
                            _mm256_permute4x64_epi64(parts, 0xD8));
      }
}

int64_t plane_block_bytes(int64_t K, bool int8) { return ((K + 31) / 32) * (int8 ? 8 * 32 : 2 * kLanes * 4); }

int64_t pack_scratch_floats(int64_t K) { return 32 * ((K + 31) / 32); }

// Rows [n0, min(n0 + 32, n1)) (zero masks past them): dst + 256 w holds make_pn's 8 ymm of word w.
void pack_block_int8(const WeightDesc& p, int64_t n0, int64_t n1, float* scratch, uint8_t* dst) {
  const int64_t W = (p.K + 31) / 32;
  uint32_t* mt = reinterpret_cast<uint32_t*>(scratch);
  transpose_block_masks(p, n0, n1, mt);
  const __m256i k0 = _mm256_set1_epi32(int32_t(p.k0)), k1 = _mm256_set1_epi32(int32_t(p.k1));
  __m256i c[4], pn[8];
  block_counters(n0, W, c);
  for (int64_t w = 0; w < W; ++w) {
    make_pn(mt + 32 * w, c, k0, k1, w, pn);
    for (int k = 0; k < 8; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 256 * w + 32 * k), pn[k]);
  }
}

// Rows [n0, min(n0 + kLanes, n1)) (zero masks past them): prepare's words, every word of the row.
void pack_block_float(const WeightDesc& p, int64_t n0, int64_t n1, uint8_t* dst) {
  prepare(p, n0, n1, 0, (p.K + 31) / 32, reinterpret_cast<uint32_t*>(dst));
}

int64_t scratch_floats_int8(int64_t K, int64_t M) { return 32 * ((K + 31) / 32) + 8 + 8 * 6 * M + kI8Rows * M; }

// As rows_int8_impl (linear_rowdesc.inc): y = (g * float(sum)) * scale * xscale + b.

bool rows_int8(const LinearProblem& p, const uint8_t* tables, float* scratch, int64_t n0, int64_t n1) {
  // scratch: a block's mask words (unless given packed), its sums (6 M ymm, 32-byte aligned), its results
  const int64_t W = (p.K + 31) / 32;
  uint32_t* mt = reinterpret_cast<uint32_t*>(scratch);
  __m256i* work = reinterpret_cast<__m256i*>((reinterpret_cast<uintptr_t>(mt + 32 * W) + 31) & ~uintptr_t(31));
  int32_t* sums = reinterpret_cast<int32_t*>(work + 6 * p.M);
  const float g = p.coat_scales[0];
  const int fixed = p.M <= kI8RowGroup ? int(p.M) : 0;
  for (int64_t n = n0; n < n1; n += kI8Rows) {
    const int64_t nr = n1 - n < kI8Rows ? n1 - n : kI8Rows;
    if (p.lut_planes != nullptr && n % kI8Rows == 0) {
      const uint8_t* planes = p.lut_planes + sizeof(LutPlanesHeader) + (n / kI8Rows) * plane_block_bytes(p.K, true);
      kLutI8Block[1][fixed](p, tables, planes, n, work, sums);
    } else {
      transpose_block_masks(p, n, n + nr, mt);
      kLutI8Block[0][fixed](p, tables, mt, n, work, sums);
    }
    for (int64_t r = 0; r < p.M; ++r) {
      float* y = p.y + r * p.ldy + n - p.row_begin;
      for (int64_t i = 0; i < nr; ++i) {
        const float acc = g * float(sums[kI8Rows * r + byte_of_row(int(i))]);
        y[i] = acc * p.scale * p.xscale[r] + (p.bias ? p.bias[n + i - p.row_begin] : 0.0f);
      }
    }
  }
  return true;
}

int64_t table_entries(int64_t K, int64_t M) { return ((K + 31) / 32) * kGroups * M * 8 + 16; }

int64_t scratch_floats(int64_t M) { return lut_task_scratch(M, kLutTaskRows); }

// Word w, group j (columns 32 w + 3 j, + 1, + 2; the last group 2 columns), activation row r:
// 8 floats at ((w * kGroups + j) * M + r) * 8. Each entry one float sum, (x0 + x1) + x2.
void build_tables(const float* xp, int64_t Kp, int64_t M, float* t) {
  const int64_t W = Kp / 32;
  for (int64_t w = 0; w < W; ++w)
    for (int j = 0; j < kGroups; ++j)
      for (int64_t r = 0; r < M; ++r) {
        const float* x = xp + r * Kp + 32 * w + 3 * j;
        float* e = t + ((w * kGroups + j) * M + r) * 8;
        const float x0 = x[0], x1 = x[1], x2 = j + 1 < kGroups ? x[2] : 0.0f;
        e[0] = 0.0f, e[1] = x0, e[2] = x1, e[3] = x0 + x1;
        e[4] = x2, e[5] = x0 + x2, e[6] = x1 + x2, e[7] = (x0 + x1) + x2;
      }
}

bool rows(const LinearProblem& p, const float* tables, float* scratch, int64_t n0, int64_t n1) {
  return lut_rows_impl(p, tables, scratch, n0, n1);
}

}  // namespace avx2lut
}  // namespace cpu
}  // namespace slt
