// Table-lookup (T-MAC / bitnet.cpp style) AVX2 kernel of the fused linear (linear.h), for the
// binary and multicoat formats (a P/N pair of planes per coat, their lookups sharing one call's
// tables) with signed-constant weights and int8 activations (float
// activations come as int8 slices: slt_linear, quantize.h). Compiled with -mavx2 -mfma only in
// this TU and called only after a runtime CPU check (linear.cpp).
//
// A signed-constant weight is ternary: w = s * (P - N) with P = mask & ~sign, N = mask & sign
// (sign bit 1 is -s, docs/rng.md §5), and both planes are exact bits, so the weights this
// kernel implies are the contract's bit for bit, and its integer sums are exact.
//
// Once per call, every group of 4 consecutive columns of each activation row gets a table of its
// 16 partial sums, T[b] = sum_{i: bit i of b} x[k + i]. A weight row's dot product is then the
// sum over groups of T[P bits] - T[N bits]: two lookups per 4 weights instead of building every
// weight. Lanes are bytes: 32 weight rows per ymm after a byte transposition, so one vpshufb
// looks up 32 rows. The sign words of 32 rows are hashed eight at a time (counter n*W + w in
// each lane, as the contract numbers them: one dword per row) and the mask words transposed to
// the same order, per call; or, given the weight's planes in that order (LutPlanesHeader,
// pack_block_int8: what the hash and the transposes make, kept by the caller), read from there.
// (A float kernel with 8-entry float tables and vpermps, 8 rows per lookup, ran here until the
// int8 slices of float activations measured about twice as fast at 1-4 rows: docs/benchmarks.md.)
#include <immintrin.h>

#include <cstring>

#include "../core/slt_contract.h"
#include "avx2_common.h"
#include "linear.h"
#include "lut_epilogue.h"

namespace slt {
namespace cpu {
namespace avx2lut {
namespace {

using avx2common::transpose8x8_ps;

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
    __m256i* pw = pn + 8 * (w % (kI8Ahead + 1));
    // (the planes copied to the ring first: read in place they made the general row loop, M
    // not a multiple of 4, 1.5-2x slower, 11008 x 4096)
    if (kPlanes) {
      prefetch_ahead(planes + 8 * w, 4);  // (the blocks' planes are one stream: linear.h)
      for (int k = 0; k < 8; ++k) pw[k] = _mm256_load_si256(planes + 8 * w + k);
    }
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

int64_t plane_block_bytes(int64_t K) { return ((K + 31) / 32) * 8 * 32; }

int64_t pack_scratch_floats(int64_t K) { return 32 * ((K + 31) / 32); }

// Rows [n0, min(n0 + 32, n1)) (zero masks past them), coat after coat: dst + c plane_block_bytes(K)
// + 256 w holds make_pn's 8 ymm of word w of coat c.
void pack_block_int8(const WeightDesc& p, int64_t n0, int64_t n1, float* scratch, uint8_t* dst) {
  const int64_t W = (p.K + 31) / 32;
  uint32_t* mt = reinterpret_cast<uint32_t*>(scratch);
  const __m256i k0 = _mm256_set1_epi32(int32_t(p.k0)), k1 = _mm256_set1_epi32(int32_t(p.k1));
  __m256i c[4], pn[8];
  block_counters(n0, W, c);
  for (int64_t coat = 0; coat < p.C; ++coat) {
    transpose_block_masks(coat_desc(p, coat), n0, n1, mt);
    uint8_t* out = dst + coat * plane_block_bytes(p.K);
    for (int64_t w = 0; w < W; ++w) {
      make_pn(mt + 32 * w, c, k0, k1, w, pn);
      for (int k = 0; k < 8; ++k) _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 256 * w + 32 * k), pn[k]);
    }
  }
}

int64_t scratch_floats_int8(int64_t K, int64_t M, int64_t C) {
  return 32 * ((K + 31) / 32) + 8 + 8 * 6 * M + kI8Rows * M * C;
}

bool rows_int8(const LinearProblem& p, const uint8_t* tables, float* scratch, int64_t n0, int64_t n1) {
  // scratch: a block's mask words (unless given packed), its sums (6 M ymm, 32-byte aligned), its
  // results (per coat: the coats' lookups share the tables, their sums join in the store)
  const int64_t W = (p.K + 31) / 32, C = p.C, coat_sums = kI8Rows * p.M;
  uint32_t* mt = reinterpret_cast<uint32_t*>(scratch);
  __m256i* work = reinterpret_cast<__m256i*>((reinterpret_cast<uintptr_t>(mt + 32 * W) + 31) & ~uintptr_t(31));
  int32_t* sums = reinterpret_cast<int32_t*>(work + 6 * p.M);
  const int fixed = p.M <= kI8RowGroup ? int(p.M) : 0;
  for (int64_t n = n0; n < n1; n += kI8Rows) {
    const int64_t nr = n1 - n < kI8Rows ? n1 - n : kI8Rows;
    for (int64_t c = 0; c < C; ++c) {
      if (p.lut_planes != nullptr && n % kI8Rows == 0) {
        const uint8_t* planes =
            p.lut_planes + sizeof(LutPlanesHeader) + ((n / kI8Rows) * C + c) * plane_block_bytes(p.K);
        kLutI8Block[1][fixed](p, tables, planes, n, work, sums + c * coat_sums);
      } else {
        transpose_block_masks(coat_desc(p, c), n, n + nr, mt);
        kLutI8Block[0][fixed](p, tables, mt, n, work, sums + c * coat_sums);
      }
    }
    store_int8_sums(p, n, nr, [&](int64_t c, int64_t r, int64_t i) {
      return sums[c * coat_sums + kI8Rows * r + byte_of_row(int(i))];
    });
  }
  return true;
}

}  // namespace avx2lut
}  // namespace cpu
}  // namespace slt
