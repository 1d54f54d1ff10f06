// CUDA kernels of the contract. One warp owns one (row, 1024-column block) task, the unit of
// the frozen format's offset table, and walks it 64 columns at a time (2 per lane):
//  - signed constant: lane l hashes sign word l of the block once; __shfl_sync hands it out,
//    so there is one hash per 32 weights;
//  - frozen: two ballots give each lane its rank among the free weights, so the free-bit
//    stream is read without a serial scan.
// All per-weight arithmetic comes from slt_contract.h, shared with the CPU path.
#include "launch.h"

#include "../core/slt_contract.h"

namespace slt {
namespace cuda {
namespace {

constexpr int kWarpsPerBlock = 8;
constexpr int kThreadsPerBlock = 32 * kWarpsPerBlock;
constexpr unsigned kFullMask = 0xFFFFFFFFu;
constexpr int64_t kMaxGrid = 0x7FFFFFFF;

enum Mode { kGenerate = 0, kPlanes = 1, kFrozen = 2 };

// The weight plus what the launch derives from it (kernel arguments are copied by value).
struct Params : WeightDesc {
  float* out;
  int64_t row_begin, rows, nb;  // nb: 1024-column blocks per row
  uint32_t W, half;             // half = Kp / 2
  int64_t free_bits_total;      // frozen: the stream's length in bits
  int* error_flag;
};

template <int M>
__global__ void __launch_bounds__(kThreadsPerBlock) block_kernel(Params p) {
  const uint32_t lane = threadIdx.x & 31u;
  const int64_t tasks = p.rows * p.nb;
  const int64_t warp0 = int64_t(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5);
  const int64_t wstride = int64_t(gridDim.x) * kWarpsPerBlock;
  const uint32_t K = uint32_t(p.K);

  for (int64_t t = warp0; t < tasks; t += wstride) {  // uniform per warp
    const int64_t r = t / p.nb;
    const uint32_t b = uint32_t(t % p.nb);
    const uint32_t row = uint32_t(p.row_begin + r);
    const uint32_t lo = b * uint32_t(kOffsetBlockWeights);
    float* dst = p.out + r * p.K;

    uint32_t my_sign_word = 0;
    if (p.dist == kSignedConstant) {
      const uint32_t w = lo / 32u + lane;
      if (w < p.W) my_sign_word = hash32(p.k0, p.k1, row * p.W + w);
    }
    int64_t idx = 0;
    if (M == kFrozen) idx = p.offsets[int64_t(row) * p.nb + b];

    for (uint32_t it = 0; it < 16u; ++it) {
      if (lo + it * 64u >= K) break;  // uniform per warp: every lane still takes part below
      const uint32_t c = lo + it * 64u + 2u * lane;  // even; this lane owns columns c, c + 1
      const bool in0 = c < K, in1 = c + 1u < K;

      const uint32_t sw = __shfl_sync(kFullMask, my_sign_word, it * 2u + (lane >> 4));
      float v0, v1;
      if (p.dist == kSignedConstant) {
        v0 = signed_value((sw >> (c & 31u)) & 1u, p.scale);
        v1 = signed_value((sw >> ((c + 1u) & 31u)) & 1u, p.scale);
      } else {
        const uint32_t h = in0 ? hash32(p.k0, p.k1, row * p.half + c / 2u) : 0u;
        v0 = value_from_chunk(h & 0xFFFFu, p.dist, p.scale);
        v1 = value_from_chunk(h >> 16, p.dist, p.scale);
      }

      if (M == kPlanes) {
        const int32_t* pw = p.planes + int64_t(row) * p.W + c / 32u;
        const int64_t stride = p.N * int64_t(p.W);
        float m0 = 0.0f, m1 = 0.0f;
        for (int64_t i = 0; i < p.C; ++i) {
          const uint32_t word = in0 ? uint32_t(__ldg(pw + i * stride)) : 0u;
          const float g = __ldg(p.coat_scales + i);
          m0 = accumulate_coat(m0, g, (word >> (c & 31u)) & 1u);
          m1 = accumulate_coat(m1, g, (word >> ((c + 1u) & 31u)) & 1u);
        }
        v0 = apply_factor(v0, m0);
        v1 = apply_factor(v1, m1);
      }

      if (M == kFrozen) {
        const uint32_t hf = in0 ? hash32(p.fk0, p.fk1, row * p.half + c / 2u) : 0u;
        const uint8_t s0 = in0 ? state_from_chunk(hf & 0xFFFFu, p.prune_thr, p.lock_thr) : kPruned;
        const uint8_t s1 = in1 ? state_from_chunk(hf >> 16, p.prune_thr, p.lock_thr) : kPruned;
        const bool f0 = s0 == kFree, f1 = s1 == kFree;
        const uint32_t b0 = __ballot_sync(kFullMask, f0);
        const uint32_t b1 = __ballot_sync(kFullMask, f1);
        const uint32_t below = (1u << lane) - 1u;  // lanes before this one own earlier columns
        int64_t pos = idx + __popc(b0 & below) + __popc(b1 & below);
        bool keep0 = s0 == kLocked, keep1 = s1 == kLocked;
        bool bad = false;
        if (f0) {
          if (pos >= 0 && pos < p.free_bits_total)
            keep0 = (uint32_t(__ldg(p.free_bits + (pos >> 5))) >> (pos & 31)) & 1u;
          else
            bad = true;
          ++pos;
        }
        if (f1) {
          if (pos >= 0 && pos < p.free_bits_total)
            keep1 = (uint32_t(__ldg(p.free_bits + (pos >> 5))) >> (pos & 31)) & 1u;
          else
            bad = true;
        }
        if (bad && p.error_flag != nullptr) atomicOr(p.error_flag, 1);
        idx += __popc(b0) + __popc(b1);
        v0 = keep0 ? v0 : 0.0f;
        v1 = keep1 ? v1 : 0.0f;
      }

      if (in0) dst[c] = v0;
      if (in1) dst[c + 1u] = v1;
    }
  }
}

__global__ void __launch_bounds__(kThreadsPerBlock)
    freeze_states_kernel(uint8_t* out, int64_t n, uint32_t K, uint32_t half, uint32_t fk0,
                         uint32_t fk1, uint32_t prune_thr, uint32_t lock_thr) {
  const int64_t pairs_per_row = half;  // pair j covers columns 2j, 2j + 1 (padding included)
  const int64_t total = n * pairs_per_row;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t row = uint32_t(i / pairs_per_row);
    const uint32_t c = 2u * uint32_t(i % pairs_per_row);
    if (c >= K) continue;
    const uint32_t h = hash32(fk0, fk1, row * half + c / 2u);
    uint8_t* d = out + int64_t(row) * K;
    d[c] = state_from_chunk(h & 0xFFFFu, prune_thr, lock_thr);
    if (c + 1u < K) d[c + 1u] = state_from_chunk(h >> 16, prune_thr, lock_thr);
  }
}

Params params(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, int* error_flag) {
  Params p{};
  static_cast<WeightDesc&>(p) = w;
  p.out = out;
  p.row_begin = row_begin;
  p.rows = row_end - row_begin;
  p.W = words_per_row(uint32_t(w.K));
  p.nb = offset_blocks_per_row(uint32_t(w.K));
  p.half = padded_cols(uint32_t(w.K)) / 2u;
  p.free_bits_total = w.free_words * 32;
  p.error_flag = error_flag;
  return p;
}

unsigned grid_for_warps(int64_t warps) {
  const int64_t blocks = (warps + kWarpsPerBlock - 1) / kWarpsPerBlock;
  return unsigned(blocks < kMaxGrid ? blocks : kMaxGrid);
}

template <int M>
cudaError_t launch(const Params& p, cudaStream_t stream) {
  if (p.rows == 0) return cudaSuccess;
  block_kernel<M><<<grid_for_warps(p.rows * p.nb), kThreadsPerBlock, 0, stream>>>(p);
  return cudaGetLastError();
}

}  // namespace

cudaError_t generate_weights(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end,
                             cudaStream_t stream) {
  if (!check_values(w).empty() || !check_rows(w.N, row_begin, row_end).empty()) return cudaErrorInvalidValue;
  if (out == nullptr && row_end > row_begin) return cudaErrorInvalidValue;
  return launch<kGenerate>(params(out, w, row_begin, row_end, nullptr), stream);
}

cudaError_t freeze_states(uint8_t* out, const WeightDesc& w, cudaStream_t stream) {
  if (!check_geometry(w.N, w.K).empty() || !check_thresholds(w.prune_thr, w.lock_thr).empty() || out == nullptr)
    return cudaErrorInvalidValue;
  const uint32_t half = padded_cols(uint32_t(w.K)) / 2u;
  const int64_t total = w.N * int64_t(half);
  const int64_t blocks = (total + kThreadsPerBlock - 1) / kThreadsPerBlock;
  freeze_states_kernel<<<unsigned(blocks < kMaxGrid ? blocks : kMaxGrid), kThreadsPerBlock, 0, stream>>>(
      out, w.N, uint32_t(w.K), half, w.fk0, w.fk1, w.prune_thr, w.lock_thr);
  return cudaGetLastError();
}

cudaError_t materialize(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, int* error_flag,
                        cudaStream_t stream) {
  const bool rows = row_end > row_begin;
  if (!check_weight(w, rows).empty() || !check_rows(w.N, row_begin, row_end).empty()) return cudaErrorInvalidValue;
  if (rows && out == nullptr) return cudaErrorInvalidValue;
  const Params p = params(out, w, row_begin, row_end, error_flag);
  return w.frozen() ? launch<kFrozen>(p, stream) : launch<kPlanes>(p, stream);
}

}  // namespace cuda
}  // namespace slt
