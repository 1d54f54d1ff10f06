// AMX kernels of the fused linear for bf16 activations (tdpbf16ps) and int8 activations
// (tdpbssd, exact int32 sums): binary format (one plane), signed-constant weights, at least
// kAmxMinRows activation rows. Compiled with AVX-512 + AMX flags only in this
// TU (or against SIMDe and amx_intrin.h's stand-in in test builds), and run only where the user
// forces the "amx" ISA (SLT_HW_CPU_ISA=amx): it stays out of the automatic choice until it has
// run and passed on a CPU with AMX (docs/benchmarks.md).
//
// The weight is s * (P - N) with P = mask & ~sign, N = mask & sign: exact in bf16 as {-1, 0, +1},
// as are bf16 activations, and their products; tdpbf16ps adds them in fp32, so the result is the
// reference's up to the order of the fp32 sums (the scale s is applied to each sum at the end).
// Each task regenerates the B tiles of its 32 weight rows once, for every column (VNNI layout:
// a tile row holds the bf16 pair of two adjacent columns for each of 16 weight rows), then runs
// every 32-row pair of activation tiles against them: the regeneration is amortised over the
// batch. Masks come from mask registers (two masked moves per 32 weights), the VNNI layout from
// a 16 x 16 transpose of dwords.
#include <cstring>

#if defined(__linux__) && !defined(SLT_HW_AVX512_EMULATED)
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "../core/slt_contract.h"
#include "amx_intrin.h"
#include "avx512_common.h"
#include "linear.h"

namespace slt {
namespace cpu {
namespace amx {
namespace {

using avx512common::hash_v;
using avx512common::transpose16;

constexpr int64_t kTile = 16;           // rows of every tile, 64 bytes each
constexpr int64_t kTileDwords = 16 * 16;

// bt[256 w + 16 kk + r]: B tile of word w for weight rows [n0, n0 + 16) (zero at or past n1),
// row kk = the bf16 pair of columns 32 w + 2 kk, + 1 of weight row n0 + r.
void build_b(const LinearProblem& p, int64_t n0, int64_t n1, uint32_t* bt) {
  const int64_t W = (p.K + 31) / 32;
  const __m512i k0 = _mm512_set1_epi32(int32_t(p.k0)), k1 = _mm512_set1_epi32(int32_t(p.k1));
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  __m512i c = _mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32(int32_t(uint32_t(n0))), lanes),
                                 _mm512_set1_epi32(int32_t(uint32_t(W))));  // counter n W + w (§4)
  const __m512i plus = _mm512_set1_epi16(0x3F80), minus = _mm512_set1_epi16(int16_t(0xBF80));  // bf16 +-1
  alignas(64) uint32_t m[16], pw[16], nw[16];
  for (int64_t w = 0; w < W; ++w, c = _mm512_add_epi32(c, _mm512_set1_epi32(1))) {
    for (int r = 0; r < 16; ++r) m[r] = n0 + r < n1 ? uint32_t(p.planes[(n0 + r) * W + w]) : 0u;
    const __m512i mv = _mm512_load_si512(m), s = hash_v(c, k0, k1);
    _mm512_store_si512(pw, _mm512_andnot_si512(s, mv));
    _mm512_store_si512(nw, _mm512_and_si512(s, mv));
    __m512i v[16];  // v[r]: row r's 32 weights, dword j = columns 2 j, 2 j + 1
    for (int r = 0; r < 16; ++r)
      v[r] = _mm512_mask_mov_epi16(_mm512_maskz_mov_epi16(slt_mask32(pw[r]), plus), slt_mask32(nw[r]), minus);
    transpose16(v);
    for (int kk = 0; kk < 16; ++kk) _mm512_storeu_si512(bt + kTileDwords * w + 16 * kk, v[kk]);
  }
}

// bt[256 v + 16 kk + r]: int8 B tile of word pair v (columns 64 v ..) for weight rows
// [n0, n0 + 16) (zero at or past n1), row kk = the 4 int8 weights of columns 64 v + 4 kk .. + 3
// of weight row n0 + r. A pair's second word past the last is zero.
void build_b_i8(const LinearProblem& p, int64_t n0, int64_t n1, uint32_t* bt) {
  const int64_t W = (p.K + 31) / 32;
  const __m512i k0 = _mm512_set1_epi32(int32_t(p.k0)), k1 = _mm512_set1_epi32(int32_t(p.k1));
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i c0 = _mm512_mullo_epi32(_mm512_add_epi32(_mm512_set1_epi32(int32_t(uint32_t(n0))), lanes),
                                        _mm512_set1_epi32(int32_t(uint32_t(W))));
  const __m512i plus = _mm512_set1_epi8(1), minus = _mm512_set1_epi8(-1);
  alignas(64) uint32_t m[2][16], pw[2][16], nw[2][16];
  for (int64_t v = 0; 2 * v < W; ++v) {
    for (int h = 0; h < 2; ++h) {
      const int64_t w = 2 * v + h;
      for (int r = 0; r < 16; ++r) m[h][r] = w < W && n0 + r < n1 ? uint32_t(p.planes[(n0 + r) * W + w]) : 0u;
      const __m512i mv = _mm512_load_si512(m[h]);
      const __m512i s = hash_v(_mm512_add_epi32(c0, _mm512_set1_epi32(int32_t(uint32_t(w)))), k0, k1);
      _mm512_store_si512(pw[h], _mm512_andnot_si512(s, mv));
      _mm512_store_si512(nw[h], _mm512_and_si512(s, mv));
    }
    __m512i t[16];  // t[r]: row r's 64 weights, dword j = columns 4 j .. 4 j + 3
    for (int r = 0; r < 16; ++r) {
      const uint64_t pm = pw[0][r] | uint64_t(pw[1][r]) << 32, nm = nw[0][r] | uint64_t(nw[1][r]) << 32;
      t[r] = _mm512_mask_mov_epi8(_mm512_maskz_mov_epi8(slt_mask64(pm), plus), slt_mask64(nm), minus);
    }
    transpose16(t);
    for (int kk = 0; kk < 16; ++kk) _mm512_storeu_si512(bt + kTileDwords * v + 16 * kk, t[kk]);
  }
}

// Palette 1, eight tiles of 16 rows x 64 bytes.
struct alignas(64) TileConfig {
  uint8_t palette = 1, start_row = 0, reserved[14] = {};
  uint16_t colsb[16] = {};
  uint8_t rows[16] = {};
  TileConfig() {
    for (int t = 0; t < 8; ++t) colsb[t] = 64, rows[t] = kTile;
  }
};

}  // namespace

bool request_permission() {
#if defined(__linux__) && !defined(SLT_HW_AVX512_EMULATED)
  // Linux hands out the tile state on request (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
  // without it the first tile instruction faults.
  static const bool ok = syscall(SYS_arch_prctl, 0x1023, 18) == 0;
  return ok;
#elif defined(SLT_HW_AVX512_EMULATED)
  return true;
#else
  return false;
#endif
}

int64_t scratch_floats(int64_t K) { return 2 * kTileDwords * ((K + 31) / 32) + 4 * kTileDwords + 16; }

int64_t padded_cols_int8(int64_t K) { return (K + 63) / 64 * 64; }

namespace {

// C = A B for every pair of 16-row activation tiles: A has Mp rows of lda bytes, `steps` steps of
// 64 bytes (32 bf16 or 64 int8 columns) against the B tiles b0, b1 (16 weight rows each); then
// epilogue(m, col, i) for each activation row m < M and weight column col < cols (< 32), i the
// element's index in cb (the 4 C tiles, 16 x 16 each). Tiles 0-3 C[2 i + j] += A[i] B[j], 4-5
// A, 6-7 B.
template <bool INT8, class Epilogue>
void tile_pairs(const uint8_t* a, int64_t lda, int64_t steps, const uint32_t* b0, const uint32_t* b1, int64_t Mp,
                int64_t M, int64_t cols, void* cb, Epilogue epilogue) {
  const TileConfig cfg;
  _tile_loadconfig(&cfg);
  char* c = static_cast<char*>(cb);
  for (int64_t m0 = 0; m0 < Mp; m0 += 2 * kTile) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t s = 0; s < steps; ++s) {
      _tile_loadd(4, a + m0 * lda + 64 * s, lda);
      _tile_loadd(5, a + (m0 + kTile) * lda + 64 * s, lda);
      _tile_loadd(6, b0 + kTileDwords * s, 64);
      _tile_loadd(7, b1 + kTileDwords * s, 64);
      if constexpr (INT8) {
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
      } else {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
      }
    }
    _tile_stored(0, c, 64);
    _tile_stored(1, c + 4 * kTileDwords, 64);
    _tile_stored(2, c + 8 * kTileDwords, 64);
    _tile_stored(3, c + 12 * kTileDwords, 64);
    for (int i = 0; i < 2; ++i)
      for (int64_t r = 0; r < kTile && m0 + kTile * i + r < M; ++r)
        for (int j = 0; j < 2; ++j)
          for (int64_t col = 0; col < kTile && kTile * j + col < cols; ++col)
            epilogue(m0 + kTile * i + r, kTile * j + col, (2 * i + j) * kTileDwords + kTile * r + col);
  }
  _tile_release();
}

}  // namespace

// Weight rows [n0, n1) (at most kAmxTaskRows) against the Mp activation rows of xb (bf16, Kp
// columns, zero rows from M up to Mp, a multiple of 32).
bool rows_bf16(const LinearProblem& p, const uint16_t* xb, int64_t Mp, float* scratch, int64_t n0, int64_t n1) {
  const int64_t W = (p.K + 31) / 32;
  uint32_t* b0 = reinterpret_cast<uint32_t*>(scratch);
  uint32_t* b1 = b0 + kTileDwords * W;
  const float* cb = scratch + 2 * kTileDwords * W;
  build_b(p, n0, n1, b0);
  build_b(p, n0 + kTile, n1, b1);
  const float factor = p.scale * p.coat_scales[0];
  tile_pairs<false>(reinterpret_cast<const uint8_t*>(xb), 64 * W, W, b0, b1, Mp, p.M, n1 - n0,
                    const_cast<float*>(cb), [&](int64_t m, int64_t col, int64_t i) {
                      const int64_t n = n0 + col;
                      const float b = p.bias ? p.bias[n - p.row_begin] : 0.0f;
                      p.y[m * p.ldy + n - p.row_begin] = cb[i] * factor + b;
                    });
  return true;
}

// Weight rows [n0, n1) against the Mp int8 activation rows of xq (padded_cols_int8(K) columns,
// zero padded): y = (g * sum) * scale * xscale + bias, the sums exact in int32 (as rows_int8).
bool rows_int8(const LinearProblem& p, const int8_t* xq, int64_t Mp, float* scratch, int64_t n0, int64_t n1) {
  const int64_t V = padded_cols_int8(p.K) / 64;
  uint32_t* b0 = reinterpret_cast<uint32_t*>(scratch);
  uint32_t* b1 = b0 + kTileDwords * V;
  const int32_t* cb = reinterpret_cast<const int32_t*>(scratch + 2 * kTileDwords * V);
  build_b_i8(p, n0, n1, b0);
  build_b_i8(p, n0 + kTile, n1, b1);
  const float g = p.coat_scales[0];
  tile_pairs<true>(reinterpret_cast<const uint8_t*>(xq), 64 * V, V, b0, b1, Mp, p.M, n1 - n0,
                   const_cast<int32_t*>(cb), [&](int64_t m, int64_t col, int64_t i) {
                     const int64_t n = n0 + col;
                     float acc = 0.0f;  // rows_int8_impl's sum over the one coat
                     acc += g * float(cb[i]);
                     const float b = p.bias ? p.bias[n - p.row_begin] : 0.0f;
                     p.y[m * p.ldy + n - p.row_begin] = acc * p.scale * p.xscale[m] + b;
                   });
  return true;
}

}  // namespace amx
}  // namespace cpu
}  // namespace slt
