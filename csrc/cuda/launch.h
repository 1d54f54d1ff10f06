// Host launchers of the CUDA kernels (csrc/cuda/generate.cu). Raw device pointers, torch-free;
// the semantics are those of csrc/cpu/generate.h. Each call validates its arguments
// (cudaErrorInvalidValue, nothing launched), enqueues one kernel on `stream` and returns
// cudaGetLastError(). Output rows are [row_begin, row_end) of the (n, K) tensor, contiguous.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace slt {
namespace cuda {

cudaError_t generate_weights(float* out, int64_t n, int64_t K, uint32_t k0, uint32_t k1, int dist,
                             float scale, int64_t row_begin, int64_t row_end, cudaStream_t stream);

cudaError_t freeze_states(uint8_t* out, int64_t n, int64_t K, uint32_t fk0, uint32_t fk1,
                          uint32_t prune_thr, uint32_t lock_thr, cudaStream_t stream);

// planes: (C, n, W) int32 words; coat_scales: C float32, both on the device.
cudaError_t materialize_planes(float* out, const int32_t* planes, int64_t C,
                               const float* coat_scales, int64_t n, int64_t K, uint32_t k0,
                               uint32_t k1, int dist, float scale, int64_t row_begin,
                               int64_t row_end, cudaStream_t stream);

// free_bits: free_words int32 words; offsets: (n, ceil(W/32)) int64. A free weight whose stream
// index is out of range reads bit 0 and, if error_flag (device int, may be null) is given,
// sets *error_flag to 1: check it after the stream when offsets may be untrusted.
cudaError_t materialize_frozen(float* out, const int32_t* free_bits, int64_t free_words,
                               const int64_t* offsets, int64_t n, int64_t K, uint32_t k0,
                               uint32_t k1, uint32_t fk0, uint32_t fk1, uint32_t prune_thr,
                               uint32_t lock_thr, int dist, float scale, int64_t row_begin,
                               int64_t row_end, int* error_flag, cudaStream_t stream);

// Fused slt_linear (csrc/cuda/linear.cu): out (M, row_end - row_begin) float32, contiguous,
// = x (M, K; row stride ldx; dtype `act`) @ W_eff[row_begin:row_end]^T (+ bias, float32, one
// value per computed row). Binary / multicoat: planes (C, n, W) + coat_scales; frozen: free_bits,
// offsets (n, ceil(W/32)) and the freeze key/thresholds. path: 0 auto (GEMV up to 8 rows of x,
// else GEMM), 1 GEMV, 2 GEMM; split_k: GEMV K splits, <= 0 to fill the GPU (then `out` is
// zeroed and partial sums are added atomically, so the last bits may vary run to run).
enum Activation : int { kActFloat32 = 0, kActFloat16 = 1, kActBFloat16 = 2 };

struct LinearArgs {
  const void* x = nullptr;
  int act = kActFloat32;
  int64_t M = 0, ldx = 0;
  float* out = nullptr;
  const float* bias = nullptr;
  int64_t n = 0, K = 0;
  uint32_t k0 = 0, k1 = 0;
  int dist = 0;
  float scale = 1.0f;
  int64_t row_begin = 0, row_end = 0;
  bool frozen = false;
  const int32_t* planes = nullptr;
  int64_t C = 0;
  const float* coat_scales = nullptr;
  const int32_t* free_bits = nullptr;
  int64_t free_words = 0;
  const int64_t* offsets = nullptr;
  uint32_t fk0 = 0, fk1 = 0, prune_thr = 0, lock_thr = 0;
  int path = 0;
  int64_t split_k = 0;
};

cudaError_t linear(const LinearArgs& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace slt
