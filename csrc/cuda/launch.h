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

}  // namespace cuda
}  // namespace slt
