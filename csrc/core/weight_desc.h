// A packed weight as every kernel receives it: shape, keys, value rule and the mask in one of
// its two layouts. The CPU (cpu::LinearProblem) and CUDA (cuda::LinearArgs) argument structs
// extend it, the materialise entry points take it, and module.cpp binds it to Python once, so
// a weight crosses every layer as one value. Host code only (NVRTC never sees it).
//
// The contract checks below are the only ones: every C++ entry point runs them before touching
// memory (the CPU ones throw the message, the CUDA ones return cudaErrorInvalidValue).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "slt_contract.h"

namespace slt {

struct WeightDesc {
  int64_t N = 0, K = 0;  // out rows, in columns (the conv weight's in/groups*kh*kw)
  uint32_t k0 = 0, k1 = 0;
  int dist = kSignedConstant;
  float scale = 0.0f;
  // binary / multicoat: planes (C, N, W) nested bit-planes, coat_scales (C); null when frozen
  const int32_t* planes = nullptr;
  int64_t C = 0;
  const float* coat_scales = nullptr;
  // frozen: free-bit stream, offsets (N, ceil(W/32)), freeze key and thresholds (lock = P + L)
  const int32_t* free_bits = nullptr;
  int64_t free_words = 0;
  const int64_t* offsets = nullptr;
  uint32_t fk0 = 0, fk1 = 0, prune_thr = 0, lock_thr = 0;

  bool frozen() const { return planes == nullptr; }
};

// Each check returns "" when the arguments are fine, else what is wrong. `static`: every TU
// keeps its own copy (some are compiled with AVX flags; see SLT_HD in slt_contract.h).
static inline std::string check_geometry(int64_t N, int64_t K) {
  if (N >= 1 && K >= 1 && geometry_ok(uint64_t(N), uint64_t(K))) return "";
  return "weight shape (" + std::to_string(N) + ", " + std::to_string(K) +
         "): need N, K >= 1 and N * 32 * ceil(K/32) <= 2**32";
}

static inline std::string check_rows(int64_t N, int64_t row_begin, int64_t row_end) {
  if (0 <= row_begin && row_begin <= row_end && row_end <= N) return "";
  return "rows: expected 0 <= row_begin <= row_end <= " + std::to_string(N) + ", got [" +
         std::to_string(row_begin) + ", " + std::to_string(row_end) + ")";
}

static inline std::string check_thresholds(uint32_t prune_thr, uint32_t lock_thr) {
  if (prune_thr <= lock_thr && lock_thr <= 65536u) return "";
  return "prune_thr/lock_thr: expected 0 <= prune_thr <= lock_thr <= 65536 (lock_thr is P + L), got " +
         std::to_string(prune_thr) + ", " + std::to_string(lock_thr);
}

// Shape, distribution and scale: all that W0 needs.
static inline std::string check_values(const WeightDesc& w) {
  std::string e = check_geometry(w.N, w.K);
  if (!e.empty()) return e;
  if (w.dist != kSignedConstant && w.dist != kUniform && w.dist != kNormal)
    return "dist code " + std::to_string(w.dist) + ": expected 0, 1 or 2";
  if (!std::isfinite(w.scale) || !(w.scale > 0.0f)) return "scale: expected a finite float32 > 0";
  return "";
}

// W0 plus the mask: what an effective weight needs. Null tensors are refused only where a
// kernel would read them (rows to compute).
static inline std::string check_weight(const WeightDesc& w, bool reads_mask) {
  std::string e = check_values(w);
  if (!e.empty()) return e;
  if (!w.frozen()) {
    if (w.C < 1) return "planes: expected at least one coat";
    if (reads_mask && w.coat_scales == nullptr) return "coat_scales: null pointer";
    return "";
  }
  e = check_thresholds(w.prune_thr, w.lock_thr);
  if (!e.empty()) return e;
  if (w.free_words < 0) return "free_bits: negative length";
  if (reads_mask && w.offsets == nullptr) return "offsets: null pointer (frozen format)";
  if (reads_mask && w.free_words > 0 && w.free_bits == nullptr) return "free_bits: null pointer";
  return "";
}

}  // namespace slt
