#include "generate.h"

#include <cmath>
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

void check_geometry(int64_t n, int64_t K) {
  if (n < 1 || K < 1 || !geometry_ok(uint64_t(n), uint64_t(K)))
    throw std::invalid_argument("shape (" + std::to_string(n) + ", " + std::to_string(K) +
                                "): need n, K >= 1 and n * 32 * ceil(K/32) <= 2**32");
}

void check_rows(int64_t n, int64_t row_begin, int64_t row_end) {
  if (row_begin < 0 || row_begin > row_end || row_end > n)
    throw std::invalid_argument("row range [" + std::to_string(row_begin) + ", " +
                                std::to_string(row_end) + ") not within [0, " +
                                std::to_string(n) + "]");
}

void check_dist_scale(int dist, float scale) {
  if (dist != kSignedConstant && dist != kUniform && dist != kNormal)
    throw std::invalid_argument("dist code " + std::to_string(dist) + ": expected 0, 1 or 2");
  if (!std::isfinite(scale) || !(scale > 0.0f))
    throw std::invalid_argument("scale: expected a finite float32 > 0");
}

void check_thresholds(uint32_t prune_thr, uint32_t lock_thr) {
  if (prune_thr > lock_thr || lock_thr > 65536u)
    throw std::invalid_argument("freeze thresholds: expected 0 <= prune_thr <= lock_thr <= 65536");
}

void check_ptr(const void* p, const char* what) {
  if (p == nullptr) throw std::invalid_argument(std::string(what) + ": null pointer");
}

int resolve_threads(int threads) {
#ifdef _OPENMP
  return threads > 0 ? threads : omp_get_max_threads();
#else
  (void)threads;
  return 1;
#endif
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

void generate_weights(float* out, int64_t n, int64_t K, uint32_t k0, uint32_t k1, int dist,
                      float scale, int64_t row_begin, int64_t row_end, int threads) {
  check_geometry(n, K);
  check_rows(n, row_begin, row_end);
  check_dist_scale(dist, scale);
  const int64_t rows = row_end - row_begin;
  if (rows == 0) return;
  check_ptr(out, "out");
  for_each_block(rows, K, threads, [&](int64_t r, int64_t, int64_t lo, int64_t hi) {
    generate_block(out + r * K + lo, uint32_t(row_begin + r), uint32_t(lo), uint32_t(hi),
                   uint32_t(K), k0, k1, dist, scale);
    return true;
  });
}

void freeze_states(uint8_t* out, int64_t n, int64_t K, uint32_t fk0, uint32_t fk1,
                   uint32_t prune_thr, uint32_t lock_thr, int threads) {
  check_geometry(n, K);
  check_thresholds(prune_thr, lock_thr);
  check_ptr(out, "out");
  const uint32_t half = padded_cols(uint32_t(K)) / 2u;
  for_each_block(n, K, threads, [&](int64_t r, int64_t, int64_t lo, int64_t hi) {
    uint8_t* d = out + r * K;
    const uint32_t base = uint32_t(r) * half;
    for (int64_t k = lo; k < hi; k += 2) {
      const uint32_t h = hash32(fk0, fk1, base + uint32_t(k) / 2u);
      d[k] = state_from_chunk(h & 0xFFFFu, prune_thr, lock_thr);
      if (k + 1 < hi) d[k + 1] = state_from_chunk(h >> 16, prune_thr, lock_thr);
    }
    return true;
  });
}

void materialize_planes(float* out, const int32_t* planes, int64_t C, const float* coat_scales,
                        int64_t n, int64_t K, uint32_t k0, uint32_t k1, int dist, float scale,
                        int64_t row_begin, int64_t row_end, int threads) {
  check_geometry(n, K);
  check_rows(n, row_begin, row_end);
  check_dist_scale(dist, scale);
  if (C < 1) throw std::invalid_argument("planes: expected at least one coat");
  const int64_t rows = row_end - row_begin;
  if (rows == 0) return;
  check_ptr(out, "out");
  check_ptr(planes, "planes");
  check_ptr(coat_scales, "coat_scales");
  const int64_t W = words_per_row(uint32_t(K));
  const int64_t plane_stride = n * W;
  for_each_block(rows, K, threads, [&](int64_t r, int64_t, int64_t lo, int64_t hi) {
    const int64_t row = row_begin + r;
    float* d = out + r * K;
    generate_block(d + lo, uint32_t(row), uint32_t(lo), uint32_t(hi), uint32_t(K), k0, k1, dist,
                   scale);
    for (int64_t w = lo / 32; w * 32 < hi; ++w) {
      const int64_t end = hi - w * 32 < 32 ? hi - w * 32 : 32;
      const int32_t* p = planes + row * W + w;
      for (int64_t j = 0; j < end; ++j) {
        float m = 0.0f;
        for (int64_t i = 0; i < C; ++i)
          m = accumulate_coat(m, coat_scales[i], (uint32_t(p[i * plane_stride]) >> j) & 1u);
        d[w * 32 + j] = apply_factor(d[w * 32 + j], m);
      }
    }
    return true;
  });
}

void materialize_frozen(float* out, const int32_t* free_bits, int64_t free_words,
                        const int64_t* offsets, int64_t n, int64_t K, uint32_t k0, uint32_t k1,
                        uint32_t fk0, uint32_t fk1, uint32_t prune_thr, uint32_t lock_thr,
                        int dist, float scale, int64_t row_begin, int64_t row_end, int threads) {
  check_geometry(n, K);
  check_rows(n, row_begin, row_end);
  check_dist_scale(dist, scale);
  check_thresholds(prune_thr, lock_thr);
  if (free_words < 0) throw std::invalid_argument("free_bits: negative length");
  const int64_t rows = row_end - row_begin;
  if (rows == 0) return;
  check_ptr(out, "out");
  check_ptr(offsets, "offsets");
  if (free_words > 0) check_ptr(free_bits, "free_bits");
  const int64_t nb = (K + kBlock - 1) / kBlock;  // == ceil(W / 32)
  const int64_t total_bits = free_words * 32;
  const uint32_t half = padded_cols(uint32_t(K)) / 2u;
  const bool bad = for_each_block(rows, K, threads, [&](int64_t r, int64_t b, int64_t lo, int64_t hi) {
    bool ok = true;
    const int64_t row = row_begin + r;
    float* d = out + r * K;
    generate_block(d + lo, uint32_t(row), uint32_t(lo), uint32_t(hi), uint32_t(K), k0, k1, dist,
                   scale);
    int64_t idx = offsets[row * nb + b];
    if (idx < 0) ok = false;
    const uint32_t base = uint32_t(row) * half;
    for (int64_t k = lo; k < hi; k += 2) {
      const uint32_t h = hash32(fk0, fk1, base + uint32_t(k) / 2u);
      for (int64_t q = k; q < k + 2 && q < hi; ++q) {
        const uint8_t st = state_from_chunk(chunk_half(h, uint32_t(q)), prune_thr, lock_thr);
        if (st == kPruned) {
          d[q] = 0.0f;
        } else if (st == kFree) {
          uint32_t bit = 0;
          if (idx >= 0 && idx < total_bits)
            bit = (uint32_t(free_bits[idx >> 5]) >> (idx & 31)) & 1u;
          else
            ok = false;
          ++idx;
          if (!bit) d[q] = 0.0f;
        }  // locked: keep w0
      }
    }
    return ok;
  });
  if (bad)
    throw std::invalid_argument(
        "free_bits/offsets: a free weight's stream index is negative or past the end of "
        "free_bits (offsets do not match the freeze key/thresholds, or the stream is short)");
}

}  // namespace cpu
}  // namespace slt
