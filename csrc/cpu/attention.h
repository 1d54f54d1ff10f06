// Attention of a few queries over many keys (a decode step over a KV cache), float32 or bfloat16
// inputs with float32 sums, on the CPU.
//
// torch's CPU scaled_dot_product_attention runs a decode step as its flash kernel's blocks of one
// query row: on a Zen 4 core it read a 16-head cache of 1024 keys (16 MiB) at 8-29 GiB/s from one
// run to the next, one of 4096 at 6.6-8 (a bfloat16 one slower still), where the step is a stream
// over the keys and values. This kernel reads each (batch, head)'s keys once for all its queries,
// then its values once: two sequential passes, the scores of a head in a buffer between them (a
// two-pass softmax, not an online one: the rows are short).
#pragma once

#include <cstdint>

namespace slt {
namespace cpu {

// Queries a head at most (more: the caller's SDPA, whose blocked kernel is the better there: each
// query's scores here are their own dot products and reductions; 1024 keys, 16 heads of 128, one
// Zen 4 core: 2.5x SDPA at 1 query, 2.9x at 2, 1.25x at 4, 0.78x at 8, 0.60x at 16).
constexpr int64_t kDecodeQueries = 4;

struct AttentionArgs {
  // q, k, v: float32, or bfloat16 (as uint16 bits) where bf16 (a half-size KV cache: half the
  // bytes a step streams); sums in float32 either way
  const void* q = nullptr;  // (B, T, H, D), element strides sq (batch, position, head; 1 along D)
  const void* k = nullptr;  // (B, S, H, D), strides sk
  const void* v = nullptr;  // (B, S, H, DV), strides sv
  bool bf16 = false;
  const bool* key_padding = nullptr;  // (B, S), rows S apart, true = ignore the key; or null
  // attn_mask (T, S), rows S apart, or null: bool (true = not allowed), or float32 added to the
  // scaled scores (-inf: not allowed)
  const bool* mask_bool = nullptr;
  const float* mask_add = nullptr;
  float* out = nullptr;      // (B, T, H, DV), contiguous, float32
  int64_t B = 0, T = 0, S = 0, H = 0, D = 0, DV = 0;
  int64_t sq[3] = {0, 0, 0}, sk[3] = {0, 0, 0}, sv[3] = {0, 0, 0};
  bool causal = false;  // query t sees keys up to S - T + t (bottom-right aligned)
  float scale = 1.0f;
};

// out = softmax(q kᵀ scale, masked) v per batch and head; a query with no key left gets zeros.
// Throws std::invalid_argument for bad sizes or pointers (T past kDecodeQueries included).
void attention_decode(const AttentionArgs& a, int threads);

}  // namespace cpu
}  // namespace slt
