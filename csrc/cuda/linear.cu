// Fused slt_linear on CUDA: y = x @ W_eff[rows]^T (+ bias) with W_eff regenerated from the
// contract (core/slt_contract.h) and the mask inside the kernel, never written to memory.
//
//  - GEMV (batch <= 8): one warp per output row; lane l owns mask word 32b + l of offset block b,
//    so a warp step is one coalesced 128-byte load of mask words and, for the signed constant,
//    one hash per lane serves its 32 weights. Frozen: lanes scan their free counts (warp prefix
//    sum) from the row's offset-table entry. K is split across blocks when rows are few.
//  - GEMM (batch > 8): 64x64 output tiles, K steps of one mask word (32 columns). The block
//    regenerates its 64x32 weight tile into shared memory (two threads per row, 16 columns each),
//    then fp16/bf16 WMMA tensor-core fragments with fp32 accumulators; fp32 activations use FMA.
//
// The kernels are also compiled at run time by NVRTC (slt_hw/backends/cupy.py, from the copy
// installed as slt_hw/csrc): host code sits behind __CUDACC_RTC__ and the entry points are
// templates named by name expressions.
#include "core/slt_contract.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#ifndef SLT_HW_NO_WMMA  // NVRTC callers without the toolkit's mma.h: FMA GEMM for every dtype
#include <mma.h>
#endif

#ifndef __CUDACC_RTC__
#include "cuda/launch.h"
#endif

namespace slt {
namespace cuda {

constexpr int kLinearThreads = 128;
constexpr int kGemvMaxBatch = 8;
constexpr int kTile = 64;      // GEMM: batch rows x weight rows per block
constexpr int kTileK = 32;     // GEMM: one mask word per weight row per step
constexpr int kPadK = kTileK + 8;  // shared-memory row pitch (bank conflicts; WMMA needs % 8)

template <typename T> __device__ __forceinline__ float to_float(T v);
template <> __device__ __forceinline__ float to_float<float>(float v) { return v; }
template <> __device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// What a kernel needs to know about the mask (one struct: the kernels' argument lists stay flat
// for NVRTC callers, the device helpers take this).
struct MaskView {
  const int32_t* planes;  // (C, n, W) binary / multicoat
  int64_t C;
  int64_t plane_stride;
  const float* coat_scales;
  const int32_t* free_bits;  // frozen
  int64_t free_total;        // bits
  const int64_t* offsets;
  uint32_t fk0, fk1, prune_thr, lock_thr;
};

// W0 of columns [32*wd + lo, 32*wd + lo + NCOL) of `row`; lo is 0 or 16, NCOL 16 or 32.
template <int NCOL>
__device__ __forceinline__ void w0_values(float* v, uint32_t k0, uint32_t k1, uint32_t row, uint32_t wd,
                                          uint32_t lo, uint32_t W, uint32_t half, int dist, float scale) {
  if (dist == kSignedConstant) {
    const uint32_t h = hash32(k0, k1, row * W + wd) >> lo;
#pragma unroll
    for (int j = 0; j < NCOL; ++j) v[j] = signed_value((h >> j) & 1u, scale);
  } else {
    const uint32_t c0 = row * half + wd * 16u + lo / 2u;
#pragma unroll
    for (int j = 0; j < NCOL / 2; ++j) {
      const uint32_t h = hash32(k0, k1, c0 + uint32_t(j));
      v[2 * j] = value_from_chunk(h & 0xFFFFu, dist, scale);
      v[2 * j + 1] = value_from_chunk(h >> 16, dist, scale);
    }
  }
}

// Multicoat factor per weight (binary: C = 1), applied in place; `bits_lo` selects the columns.
template <int NCOL>
__device__ __forceinline__ void apply_planes(float* v, const MaskView& mv, uint32_t row, uint32_t wd,
                                             uint32_t lo, uint32_t W) {
  float m[NCOL];
#pragma unroll
  for (int j = 0; j < NCOL; ++j) m[j] = 0.0f;
  const int32_t* p = mv.planes + int64_t(row) * W + wd;
  for (int64_t i = 0; i < mv.C; ++i) {
    const uint32_t word = uint32_t(__ldg(p + i * mv.plane_stride)) >> lo;
    const float g = __ldg(mv.coat_scales + i);
#pragma unroll
    for (int j = 0; j < NCOL; ++j) m[j] = accumulate_coat(m[j], g, (word >> j) & 1u);
  }
#pragma unroll
  for (int j = 0; j < NCOL; ++j) v[j] = apply_factor(v[j], m[j]);
}

// Binary signed constant: W_eff / (scale * g) in {-1, 0, +1}. The sign hash and the mask word
// combine per 32 weights; the factor scale * g (the reference's one rounding of w0 * m) is applied
// once to the accumulator, and +-1 is exact in fp16/bf16 tensor-core tiles.
template <int NCOL>
__device__ __forceinline__ void unit_values(float* v, const MaskView& mv, uint32_t k0, uint32_t k1,
                                            uint32_t row, uint32_t wd, uint32_t lo, uint32_t W) {
  const uint32_t h = hash32(k0, k1, row * W + wd) >> lo;
  const uint32_t mw = uint32_t(__ldg(mv.planes + int64_t(row) * W + wd)) >> lo;
  const uint32_t neg = mw & h, plus = mw ^ neg;
#pragma unroll
  for (int j = 0; j < NCOL; ++j) v[j] = float((plus >> j) & 1u) - float((neg >> j) & 1u);
}

// Free / locked masks of NCOL columns starting at column c0 (bit j = column c0 + j); columns at or
// past K are neither.
template <int NCOL>
__device__ __forceinline__ void freeze_masks(const MaskView& mv, uint32_t row, uint32_t c0, uint32_t K,
                                             uint32_t half, uint32_t& free_m, uint32_t& lock_m) {
  free_m = 0u;
  lock_m = 0u;
#pragma unroll
  for (int j = 0; j < NCOL / 2; ++j) {
    const uint32_t c = c0 + 2u * uint32_t(j);
    if (c >= K) break;
    const uint32_t h = hash32(mv.fk0, mv.fk1, row * half + c / 2u);
    const uint8_t s0 = state_from_chunk(h & 0xFFFFu, mv.prune_thr, mv.lock_thr);
    const uint8_t s1 = c + 1u < K ? state_from_chunk(h >> 16, mv.prune_thr, mv.lock_thr) : uint8_t(kPruned);
    free_m |= uint32_t(s0 == kFree) << (2 * j) | uint32_t(s1 == kFree) << (2 * j + 1);
    lock_m |= uint32_t(s0 == kLocked) << (2 * j) | uint32_t(s1 == kLocked) << (2 * j + 1);
  }
}

// keep mask: locked, or free with its bit set in the stream starting at index `pos`.
__device__ __forceinline__ uint32_t frozen_keep(const MaskView& mv, uint32_t free_m, uint32_t lock_m, int64_t pos) {
  if (free_m == 0u) return lock_m;
  const int64_t wi = pos >> 5;
  const int64_t words = (mv.free_total + 31) / 32;
  const uint64_t lo = wi >= 0 && wi < words ? uint32_t(__ldg(mv.free_bits + wi)) : 0u;
  const uint64_t hi = wi + 1 >= 0 && wi + 1 < words ? uint32_t(__ldg(mv.free_bits + wi + 1)) : 0u;
  const uint32_t stream = uint32_t(((hi << 32) | lo) >> (pos & 31));
  uint32_t keep = lock_m;
  uint32_t i = 0;
  for (uint32_t f = free_m; f != 0u; f &= f - 1u, ++i)  // deposit stream bits at the free columns
    if ((stream >> i) & 1u) keep |= f & (0u - f);
  return keep;
}

__device__ __forceinline__ MaskView make_view(const int32_t* planes, int64_t C, int64_t plane_stride,
                                              const float* coat_scales, const int32_t* free_bits,
                                              int64_t free_total, const int64_t* offsets, uint32_t fk0,
                                              uint32_t fk1, uint32_t prune_thr, uint32_t lock_thr) {
  MaskView mv;
  mv.planes = planes;
  mv.C = C;
  mv.plane_stride = plane_stride;
  mv.coat_scales = coat_scales;
  mv.free_bits = free_bits;
  mv.free_total = free_total;
  mv.offsets = offsets;
  mv.fk0 = fk0;
  mv.fk1 = fk1;
  mv.prune_thr = prune_thr;
  mv.lock_thr = lock_thr;
  return mv;
}

#define SLT_LINEAR_PARAMS                                                                       \
  const T *__restrict__ x, int64_t M, int64_t ldx, float *__restrict__ out,                     \
      const float *__restrict__ bias, const int32_t *__restrict__ planes, int64_t C,            \
      const float *__restrict__ coat_scales, const int32_t *__restrict__ free_bits,             \
      int64_t free_total, const int64_t *__restrict__ offsets, uint32_t fk0, uint32_t fk1,      \
      uint32_t prune_thr, uint32_t lock_thr, int64_t n, uint32_t K, uint32_t k0, uint32_t k1,   \
      int dist, float scale, int64_t row_begin, int64_t rows

// ------------------------------------------------------------------------------------- GEMV
// grid (ceil(rows / 4), splits); split s covers offset blocks [s*bps, (s+1)*bps). With more than
// one split `out` must be zeroed first and partial sums are added atomically.
template <typename T, bool FROZEN>
__global__ void __launch_bounds__(kLinearThreads) slt_gemv(SLT_LINEAR_PARAMS, int64_t blocks_per_split) {
  const MaskView mv = make_view(planes, C, n * int64_t((K + 31u) / 32u), coat_scales, free_bits,
                                free_total, offsets, fk0, fk1, prune_thr, lock_thr);
  const bool unit = !FROZEN && dist == kSignedConstant && C == 1;  // uniform over the grid
  const float unit_factor = unit ? fmul(scale, __ldg(coat_scales)) : 1.0f;
  const uint32_t lane = threadIdx.x & 31u;
  const int64_t r = int64_t(blockIdx.x) * (kLinearThreads / 32) + (threadIdx.x >> 5);
  if (r >= rows) return;  // whole warp
  const uint32_t row = uint32_t(row_begin + r);
  const uint32_t W = words_per_row(K), half = padded_cols(K) / 2u, NB = offset_blocks_per_row(K);
  const int64_t b_lo = int64_t(blockIdx.y) * blocks_per_split;
  const int64_t b_hi = b_lo + blocks_per_split < int64_t(NB) ? b_lo + blocks_per_split : int64_t(NB);
  float acc[kGemvMaxBatch];
#pragma unroll
  for (int m = 0; m < kGemvMaxBatch; ++m) acc[m] = 0.0f;

  for (int64_t b = b_lo; b < b_hi; ++b) {
    const uint32_t wd = uint32_t(b) * 32u + lane;
    const bool live = wd < W;
    float v[32];
    uint32_t free_m = 0u, lock_m = 0u;
    if (FROZEN && live) freeze_masks<32>(mv, row, wd * 32u, K, half, free_m, lock_m);
    if (FROZEN) {  // warp-wide exclusive prefix sum of free counts: every lane takes part
      const uint32_t cnt = __popc(free_m);
      uint32_t incl = cnt;
#pragma unroll
      for (uint32_t d = 1; d < 32u; d <<= 1) {
        const uint32_t t = __shfl_up_sync(0xFFFFFFFFu, incl, d);
        if (lane >= d) incl += t;
      }
      const int64_t pos = __ldg(offsets + int64_t(row) * NB + b) + int64_t(incl - cnt);
      if (live) lock_m = frozen_keep(mv, free_m, lock_m, pos);
    }
    if (!live) continue;
    if (unit) {
      unit_values<32>(v, mv, k0, k1, row, wd, 0u, W);
    } else {
      w0_values<32>(v, k0, k1, row, wd, 0u, W, half, dist, scale);
      if (FROZEN) {
#pragma unroll
        for (int j = 0; j < 32; ++j) v[j] = (lock_m >> j) & 1u ? v[j] : 0.0f;
      } else {
        apply_planes<32>(v, mv, row, wd, 0u, W);
      }
    }
    const uint32_t c0 = wd * 32u;
    const int ncol = K - c0 < 32u ? int(K - c0) : 32;
    for (int64_t m = 0; m < M; ++m) {
      const T* xr = x + m * ldx + c0;
      float s = 0.0f;
#pragma unroll
      for (int j = 0; j < 32; ++j) s += j < ncol ? to_float(__ldg(xr + j)) * v[j] : 0.0f;
#pragma unroll
      for (int mm = 0; mm < kGemvMaxBatch; ++mm) acc[mm] += mm == m ? s : 0.0f;
    }
  }
#pragma unroll
  for (int m = 0; m < kGemvMaxBatch; ++m) {
    float s = acc[m];
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) s += __shfl_xor_sync(0xFFFFFFFFu, s, d);
    if (lane == 0u && m < M) {
      if (unit) s = fmul(s, unit_factor);
      if (bias != nullptr && blockIdx.y == 0) s += bias[r];
      if (gridDim.y == 1)
        out[m * rows + r] = s;
      else
        atomicAdd(out + m * rows + r, s);
    }
  }
}

// ------------------------------------------------------------------------------------- GEMM
// FMA instead of tensor cores: fp32 activations (no exact fp32 MMA), or WMMA compiled out.
template <typename T> struct UseFma {
#ifdef SLT_HW_NO_WMMA
  static constexpr bool value = true;
#else
  static constexpr bool value = false;
#endif
};
template <> struct UseFma<float> { static constexpr bool value = true; };

// grid (ceil(M / 64), ceil(rows / 64)), 128 threads.
template <typename T, bool FROZEN>
__global__ void __launch_bounds__(kLinearThreads) slt_gemm(SLT_LINEAR_PARAMS) {
  __shared__ __align__(32) T xs[kTile][kPadK];  // activations, (batch, k)
  __shared__ __align__(32) T ws[kTile][kPadK];  // W_eff tile, (weight row, k) = B column-major
  __shared__ __align__(32) float cs[kTile][kTile + 4];
  const MaskView mv = make_view(planes, C, n * int64_t((K + 31u) / 32u), coat_scales, free_bits,
                                free_total, offsets, fk0, fk1, prune_thr, lock_thr);
  const bool unit = !FROZEN && dist == kSignedConstant && C == 1;  // uniform over the grid
  const float unit_factor = unit ? fmul(scale, __ldg(coat_scales)) : 1.0f;
  const uint32_t tid = threadIdx.x;
  const int64_t m0 = int64_t(blockIdx.x) * kTile;
  const int64_t r0 = int64_t(blockIdx.y) * kTile;
  const uint32_t W = words_per_row(K), half = padded_cols(K) / 2u, NB = offset_blocks_per_row(K);
  // Weight-tile ownership: thread pair (2i, 2i+1) owns row i, columns [0,16) and [16,32).
  const uint32_t wrow = tid >> 1, lo = (tid & 1u) * 16u;
  const int64_t rr = r0 + wrow;
  const bool row_live = rr < rows;
  const uint32_t row = uint32_t(row_begin + (row_live ? rr : 0));
  int64_t carry = 0;  // frozen: stream index of the row's next free weight

#ifndef SLT_HW_NO_WMMA
  namespace wmma = nvcuda::wmma;
  const uint32_t warp = tid >> 5, wm = (warp >> 1) * 32u, wn = (warp & 1u) * 32u;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> facc[2][2];
#endif
  float sacc[4][8];  // fp32 path: thread computes rows (tid/8)*4.., cols (tid%8)*8..
  if constexpr (UseFma<T>::value) {
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) sacc[i][j] = 0.0f;
  } else {
#ifndef SLT_HW_NO_WMMA
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(facc[i][j], 0.0f);
#endif
  }

  for (uint32_t wd = 0; wd < W; ++wd) {
    const uint32_t c0 = wd * 32u;
    // activations: 64 x 32, 16 per thread
#pragma unroll
    for (int e = 0; e < (kTile * kTileK) / kLinearThreads; ++e) {
      const uint32_t i = tid + uint32_t(e) * kLinearThreads;
      const uint32_t bm = i / kTileK, kk = i % kTileK;
      const int64_t gm = m0 + bm;
      xs[bm][kk] = gm < M && c0 + kk < K ? x[gm * ldx + c0 + kk] : from_float<T>(0.0f);
    }
    // weights: 16 columns per thread
    float v[16] = {};
    uint32_t free_m = 0u, lock_m = 0u;
    if (FROZEN) {
      if (row_live) freeze_masks<16>(mv, row, c0 + lo, K, half, free_m, lock_m);
      if (wd % 32u == 0u && row_live) carry = __ldg(offsets + int64_t(row) * NB + wd / 32u);
      const uint32_t cnt = __popc(free_m);
      const uint32_t other = __shfl_xor_sync(0xFFFFFFFFu, cnt, 1);
      const int64_t pos = carry + (lo ? other : 0u);
      if (row_live) lock_m = frozen_keep(mv, free_m, lock_m, pos);
      carry += cnt + other;
    }
    if (row_live && unit) {
      unit_values<16>(v, mv, k0, k1, row, wd, lo, W);
    } else if (row_live) {
      w0_values<16>(v, k0, k1, row, wd, lo, W, half, dist, scale);
      if (FROZEN) {
#pragma unroll
        for (int j = 0; j < 16; ++j) v[j] = (lock_m >> j) & 1u ? v[j] : 0.0f;
      } else {
        apply_planes<16>(v, mv, row, wd, lo, W);
      }
    }
#pragma unroll
    for (int j = 0; j < 16; ++j)
      ws[wrow][lo + j] = from_float<T>(row_live && c0 + lo + j < K ? v[j] : 0.0f);
    __syncthreads();

    if constexpr (UseFma<T>::value) {
      const uint32_t ti = (tid / 8u) * 4u, tj = (tid % 8u) * 8u;
#pragma unroll 4
      for (int kk = 0; kk < kTileK; ++kk)
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j)
            sacc[i][j] += to_float(xs[ti + i][kk]) * to_float(ws[tj + j][kk]);
    } else {
#ifndef SLT_HW_NO_WMMA
#pragma unroll
      for (int kk = 0; kk < kTileK; kk += 16) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> fa[2];
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) wmma::load_matrix_sync(fa[i], &xs[wm + 16 * i][kk], kPadK);
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::load_matrix_sync(fb[j], &ws[wn + 16 * j][kk], kPadK);
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(facc[i][j], fa[i], fb[j], facc[i][j]);
      }
#endif
    }
    __syncthreads();
  }

  if constexpr (UseFma<T>::value) {
    const uint32_t ti = (tid / 8u) * 4u, tj = (tid % 8u) * 8u;
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j) cs[ti + i][tj + j] = sacc[i][j];
  } else {
#ifndef SLT_HW_NO_WMMA
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(&cs[wm + 16 * i][wn + 16 * j], facc[i][j], kTile + 4, wmma::mem_row_major);
#endif
  }
  __syncthreads();
  for (uint32_t i = tid; i < uint32_t(kTile * kTile); i += kLinearThreads) {
    const int64_t gm = m0 + i / kTile, gr = r0 + i % kTile;
    if (gm < M && gr < rows) {
      const float y = cs[i / kTile][i % kTile];
      out[gm * rows + gr] = (unit ? fmul(y, unit_factor) : y) + (bias ? bias[gr] : 0.0f);
    }
  }
}

#undef SLT_LINEAR_PARAMS

// ------------------------------------------------------------------------------------- host
#ifndef __CUDACC_RTC__
namespace {

template <typename T, bool FROZEN>
cudaError_t launch_linear(const LinearArgs& a, cudaStream_t stream) {
  const T* x = static_cast<const T*>(a.x);
  const int64_t rows = a.row_end - a.row_begin;
  const uint32_t K = uint32_t(a.K);
  const bool gemv = a.path == 1 || (a.path == 0 && a.M <= kGemvMaxBatch);
  if (gemv) {
    const int64_t nb = offset_blocks_per_row(K);
    int64_t splits = a.split_k;
    if (splits <= 0) {  // fill the GPU: about two blocks per SM
      int dev = 0, sms = 132;
      cudaGetDevice(&dev);
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
      const int64_t blocks = (rows + 3) / 4;
      splits = (2 * int64_t(sms) + blocks - 1) / blocks;
    }
    splits = splits < 1 ? 1 : (splits > nb ? nb : splits);
    const int64_t bps = (nb + splits - 1) / splits;
    splits = (nb + bps - 1) / bps;
    if (splits > 1) {
      const cudaError_t e = cudaMemsetAsync(a.out, 0, size_t(a.M * rows) * sizeof(float), stream);
      if (e != cudaSuccess) return e;
    }
    const dim3 grid(unsigned((rows + 3) / 4), unsigned(splits));
    slt_gemv<T, FROZEN><<<grid, kLinearThreads, 0, stream>>>(
        x, a.M, a.ldx, a.out, a.bias, a.planes, a.C, a.coat_scales, a.free_bits, a.free_words * 32,
        a.offsets, a.fk0, a.fk1, a.prune_thr, a.lock_thr, a.N, K, a.k0, a.k1, a.dist, a.scale,
        a.row_begin, rows, bps);
  } else {
    const dim3 grid(unsigned((a.M + kTile - 1) / kTile), unsigned((rows + kTile - 1) / kTile));
    slt_gemm<T, FROZEN><<<grid, kLinearThreads, 0, stream>>>(
        x, a.M, a.ldx, a.out, a.bias, a.planes, a.C, a.coat_scales, a.free_bits, a.free_words * 32,
        a.offsets, a.fk0, a.fk1, a.prune_thr, a.lock_thr, a.N, K, a.k0, a.k1, a.dist, a.scale,
        a.row_begin, rows);
  }
  return cudaGetLastError();
}

template <bool FROZEN>
cudaError_t dispatch_dtype(const LinearArgs& a, cudaStream_t stream) {
  switch (a.act) {
    case kActFloat32: return launch_linear<float, FROZEN>(a, stream);
    case kActFloat16: return launch_linear<__half, FROZEN>(a, stream);
    case kActBFloat16: return launch_linear<__nv_bfloat16, FROZEN>(a, stream);
    default: return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t linear(const LinearArgs& a, cudaStream_t stream) {
  if (!check_weight(a, a.M > 0 && a.row_end > a.row_begin).empty() || !check_rows(a.N, a.row_begin, a.row_end).empty())
    return cudaErrorInvalidValue;
  if (a.M < 0 || a.path < 0 || a.path > 2 || (a.path == 1 && a.M > kGemvMaxBatch)) return cudaErrorInvalidValue;
  if (a.M == 0 || a.row_end == a.row_begin) return cudaSuccess;
  if (a.x == nullptr || a.out == nullptr || a.ldx < a.K) return cudaErrorInvalidValue;
  return a.frozen() ? dispatch_dtype<true>(a, stream) : dispatch_dtype<false>(a, stream);
}
#endif  // __CUDACC_RTC__

}  // namespace cuda
}  // namespace slt
