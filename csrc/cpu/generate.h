// CPU kernels of the contract (docs/rng.md): torch-free, raw pointers, OpenMP over
// (row, 1024-column block) tasks so both tall and very wide tensors parallelise.
// Every function runs the contract checks of core/weight_desc.h and throws std::invalid_argument
// (pybind11: ValueError) before touching memory; `threads <= 0` means the OpenMP default.
#pragma once

#include <cstdint>

#include "../core/weight_desc.h"

namespace slt {
namespace cpu {

// Rows [row_begin, row_end) of W0 (w's shape, key, dist, scale) into out ((row_end - row_begin)
// x K, contiguous).
void generate_weights(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, int threads);

// (N x K) states of w's freeze key and thresholds: 0 pruned, 1 locked, 2 free.
void freeze_states(uint8_t* out, const WeightDesc& w, int threads);

// Effective weights of rows [row_begin, row_end), either format. Frozen: a free weight whose
// stream index falls outside free_bits (offsets that do not match the freeze pattern, a short
// stream) throws.
void materialize(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, int threads);

// Hardware/OpenMP facts for build_info().
bool openmp_enabled();
int openmp_max_threads();
// The threads a call with `threads` runs on (<= 0: OpenMP's default; 1 without OpenMP).
int resolve_threads(int threads);

}  // namespace cpu
}  // namespace slt
