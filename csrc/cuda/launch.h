// Host launchers of the CUDA kernels (csrc/cuda/generate.cu, linear.cu). Raw device pointers,
// torch-free; the semantics are those of csrc/cpu/generate.h. Each call runs the contract checks
// of core/weight_desc.h (cudaErrorInvalidValue, nothing launched), enqueues its kernels on
// `stream` and returns cudaGetLastError(). Output rows are [row_begin, row_end) of the (N, K)
// weight, contiguous.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

#include "core/weight_desc.h"

namespace slt {
namespace cuda {

cudaError_t generate_weights(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end,
                             cudaStream_t stream);

cudaError_t freeze_states(uint8_t* out, const WeightDesc& w, cudaStream_t stream);

// Either format, all pointers on the device. Frozen: a free weight whose stream index is out
// of range reads bit 0 and, if error_flag (device int, may be null) is given, sets *error_flag
// to 1: check it after the stream when offsets may be untrusted.
cudaError_t materialize(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, int* error_flag,
                        cudaStream_t stream);

// Fused slt_linear (csrc/cuda/linear.cu): out (M, row_end - row_begin) float32, contiguous,
// = x (M, K; row stride ldx; dtype `act`) @ W_eff[row_begin:row_end]^T (+ bias, float32, one
// value per computed row). path: 0 auto (GEMV up to 8 rows of x, else GEMM), 1 GEMV, 2 GEMM;
// split_k: GEMV K splits, <= 0 to fill the GPU (then `out` is zeroed and partial sums are added
// atomically, so the last bits may vary run to run).
enum Activation : int { kActFloat32 = 0, kActFloat16 = 1, kActBFloat16 = 2 };

struct LinearArgs : WeightDesc {
  const void* x = nullptr;
  int act = kActFloat32;
  int64_t M = 0, ldx = 0;
  float* out = nullptr;
  const float* bias = nullptr;
  int64_t row_begin = 0, row_end = 0;
  int path = 0;
  int64_t split_k = 0;
};

cudaError_t linear(const LinearArgs& args, cudaStream_t stream);

}  // namespace cuda
}  // namespace slt
