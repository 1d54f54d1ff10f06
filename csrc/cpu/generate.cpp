#include "generate.h"

#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "../core/slt_contract.h"

namespace slt {
namespace cpu {
namespace {

constexpr int64_t kBlock = kOffsetBlockWeights;  // columns per task; a multiple of 32
constexpr int64_t kMinParallel = 1 << 13;  // weights; below this a thread team costs more than it saves

void require(const std::string& error) {
  if (!error.empty()) throw std::invalid_argument(error);
}


// Calls fn(r, b, lo, hi) for every task (row r of [0, rows), column block b = [lo, hi) of
// kBlock columns), in parallel; rows x blocks so that few, very wide rows still use every
// thread. Returns true if any call returned false.
template <class F>
bool for_each_block(int64_t rows, int64_t K, int threads, F&& fn) {
  const int64_t nb = (K + kBlock - 1) / kBlock;
  const int64_t tasks = rows * nb;
  const int nt = resolve_threads(threads);
  (void)nt;
  int failed = 0;
#pragma omp parallel for schedule(static) num_threads(nt) reduction(| : failed) \
    if (tasks > 1 && rows * K >= kMinParallel)
  for (int64_t t = 0; t < tasks; ++t) {
    const int64_t r = t / nb, b = t % nb;
    const int64_t lo = b * kBlock, hi = lo + kBlock < K ? lo + kBlock : K;
    if (!fn(r, b, lo, hi)) failed = 1;
  }
  return failed != 0;
}

// W0 of row n, columns [lo, hi) into dst[0 .. hi-lo). lo is a multiple of 32.
void generate_block(float* dst, uint32_t n, uint32_t lo, uint32_t hi, uint32_t K, uint32_t k0,
                    uint32_t k1, int dist, float scale) {
  if (dist == kSignedConstant) {
    const uint32_t sbits = float_to_bits(scale);
    for (uint32_t w0 = lo; w0 < hi; w0 += 32) {
      const uint32_t h = sign_word(k0, k1, n, w0 / 32u, K);  // one hash per 32 weights
      const uint32_t end = hi - w0 < 32u ? hi - w0 : 32u;
      float* d = dst + (w0 - lo);
      for (uint32_t j = 0; j < end; ++j) d[j] = bits_to_float(sbits ^ (((h >> j) & 1u) << 31));
    }
    return;
  }
  const uint32_t base = n * (padded_cols(K) / 2u);
  for (uint32_t k = lo; k < hi; k += 2) {  // lo even: one hash per pair
    const uint32_t h = hash32(k0, k1, base + k / 2u);
    dst[k - lo] = value_from_chunk(h & 0xFFFFu, dist, scale);
    if (k + 1 < hi) dst[k + 1 - lo] = value_from_chunk(h >> 16, dist, scale);
  }
}

}  // namespace

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

int openmp_max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void generate_weights(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, int threads) {
  require(check_values(w));
  require(check_rows(w.N, row_begin, row_end));
  const int64_t rows = row_end - row_begin, K = w.K;
  if (rows == 0) return;
  if (out == nullptr) require("out: null pointer");
  for_each_block(rows, K, threads, [&](int64_t r, int64_t, int64_t lo, int64_t hi) {
    generate_block(out + r * K + lo, uint32_t(row_begin + r), uint32_t(lo), uint32_t(hi),
                   uint32_t(K), w.k0, w.k1, w.dist, w.scale);
    return true;
  });
}

void freeze_states(uint8_t* out, const WeightDesc& w, int threads) {
  require(check_geometry(w.N, w.K));
  require(check_thresholds(w.prune_thr, w.lock_thr));
  if (out == nullptr) require("out: null pointer");
  const int64_t K = w.K;
  const uint32_t half = padded_cols(uint32_t(K)) / 2u;
  for_each_block(w.N, K, threads, [&](int64_t r, int64_t, int64_t lo, int64_t hi) {
    uint8_t* d = out + r * K;
    const uint32_t base = uint32_t(r) * half;
    for (int64_t k = lo; k < hi; k += 2) {
      const uint32_t h = hash32(w.fk0, w.fk1, base + uint32_t(k) / 2u);
      d[k] = state_from_chunk(h & 0xFFFFu, w.prune_thr, w.lock_thr);
      if (k + 1 < hi) d[k + 1] = state_from_chunk(h >> 16, w.prune_thr, w.lock_thr);
    }
    return true;
  });
}

namespace {

// Multiplies the coat factor m = sum_i g_i * bit_i into W0 (binary / multicoat).
void apply_planes(float* d, const WeightDesc& w, int64_t row, int64_t lo, int64_t hi) {
  const int64_t W = words_per_row(uint32_t(w.K)), plane_stride = w.N * W;
  for (int64_t wd = lo / 32; wd * 32 < hi; ++wd) {
    const int64_t end = hi - wd * 32 < 32 ? hi - wd * 32 : 32;
    const int32_t* p = w.planes + row * W + wd;
    for (int64_t j = 0; j < end; ++j) {
      float m = 0.0f;
      for (int64_t i = 0; i < w.C; ++i)
        m = accumulate_coat(m, w.coat_scales[i], (uint32_t(p[i * plane_stride]) >> j) & 1u);
      d[wd * 32 + j] = apply_factor(d[wd * 32 + j], m);
    }
  }
}

// Zeroes W0 where the freeze pattern prunes or the free-bit stream says 0 (frozen); block b of
// the row starts at the offset table's stream index. False if the stream does not cover it.
bool apply_frozen(float* d, const WeightDesc& w, int64_t row, int64_t b, int64_t lo, int64_t hi) {
  const int64_t nb = (w.K + kBlock - 1) / kBlock;  // == ceil(W / 32)
  const int64_t total_bits = w.free_words * 32;
  const uint32_t base = uint32_t(row) * (padded_cols(uint32_t(w.K)) / 2u);
  int64_t idx = w.offsets[row * nb + b];
  bool ok = idx >= 0;
  for (int64_t k = lo; k < hi; k += 2) {
    const uint32_t h = hash32(w.fk0, w.fk1, base + uint32_t(k) / 2u);
    for (int64_t q = k; q < k + 2 && q < hi; ++q) {
      const uint8_t st = state_from_chunk(chunk_half(h, uint32_t(q)), w.prune_thr, w.lock_thr);
      if (st == kPruned) {
        d[q] = 0.0f;
      } else if (st == kFree) {
        uint32_t bit = 0;
        if (idx >= 0 && idx < total_bits)
          bit = (uint32_t(w.free_bits[idx >> 5]) >> (idx & 31)) & 1u;
        else
          ok = false;
        ++idx;
        if (!bit) d[q] = 0.0f;
      }  // locked: keep w0
    }
  }
  return ok;
}

}  // namespace

void materialize(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, int threads) {
  const int64_t rows = row_end - row_begin;
  require(check_weight(w, rows > 0));
  require(check_rows(w.N, row_begin, row_end));
  if (rows == 0) return;
  if (out == nullptr) require("out: null pointer");
  const int64_t K = w.K;
  const bool bad = for_each_block(rows, K, threads, [&](int64_t r, int64_t b, int64_t lo, int64_t hi) {
    const int64_t row = row_begin + r;
    float* d = out + r * K;
    generate_block(d + lo, uint32_t(row), uint32_t(lo), uint32_t(hi), uint32_t(K), w.k0, w.k1, w.dist,
                   w.scale);
    if (!w.frozen()) {
      apply_planes(d, w, row, lo, hi);
      return true;
    }
    return apply_frozen(d, w, row, b, lo, hi);
  });
  if (bad)
    require("free_bits/offsets: a free weight's stream index is negative or past the end of "
            "free_bits (offsets do not match the freeze key/thresholds, or the stream is short)");
}

int resolve_threads(int threads) {
#ifdef _OPENMP
  return threads > 0 ? threads : omp_get_max_threads();
#else
  (void)threads;
  return 1;
#endif
}

}  // namespace cpu
}  // namespace slt
