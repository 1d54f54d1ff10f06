// CPU kernels of the contract (docs/rng.md): torch-free, raw pointers, OpenMP over
// (row, 1024-column block) tasks so both tall and very wide tensors parallelise.
// Every function validates its arguments and throws std::invalid_argument (pybind11: ValueError)
// before touching memory; `threads <= 0` means the OpenMP default.
#pragma once

#include <cstdint>

namespace slt {
namespace cpu {

// Rows [row_begin, row_end) of W0 into out ((row_end - row_begin) x K, contiguous).
void generate_weights(float* out, int64_t n, int64_t K, uint32_t k0, uint32_t k1, int dist,
                      float scale, int64_t row_begin, int64_t row_end, int threads);

// (n x K) states: 0 pruned, 1 locked, 2 free. lock_thr is cumulative (P + L).
void freeze_states(uint8_t* out, int64_t n, int64_t K, uint32_t fk0, uint32_t fk1,
                   uint32_t prune_thr, uint32_t lock_thr, int threads);

// Multicoat / binary effective weights: planes (C, n, W) int32 words, coat_scales (C) float32.
void materialize_planes(float* out, const int32_t* planes, int64_t C, const float* coat_scales,
                        int64_t n, int64_t K, uint32_t k0, uint32_t k1, int dist, float scale,
                        int64_t row_begin, int64_t row_end, int threads);

// Partially frozen effective weights. free_bits: the free-bit stream (free_words int32 words);
// offsets: (n, ceil(W/32)) int64, stream index of the first free weight at or after (row, 1024 b).
// A stream index past the end of free_bits (corrupt offsets / short stream) throws.
void materialize_frozen(float* out, const int32_t* free_bits, int64_t free_words,
                        const int64_t* offsets, int64_t n, int64_t K, uint32_t k0, uint32_t k1,
                        uint32_t fk0, uint32_t fk1, uint32_t prune_thr, uint32_t lock_thr,
                        int dist, float scale, int64_t row_begin, int64_t row_end, int threads);

// Hardware/OpenMP facts for build_info().
bool openmp_enabled();
int openmp_max_threads();

}  // namespace cpu
}  // namespace slt
