// Throughput probe of the instructions the CPU kernels' inner loops are built on (docs/benchmarks.md,
// "Physical bounds"): for each, the cycles one instruction takes when many independent ones are
// in flight, the way the kernels issue them, with the add or accumulate the kernel pairs it with.
// Built and run by bench/bench_cpu_bounds.py (plain `c++ -O2`: each probe carries its own target
// attribute and runs only where the CPU reports the features). One JSON object a line.
//
// The core clock comes from a chain of dependent 64-bit adds (one cycle each on every x86 core
// of the last fifteen years), so cycles are this core's, turbo included, without perf counters.
#include <immintrin.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>

namespace {

double now() {
  timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// The fastest of `tries` timings of fn(iters), in seconds.
template <class F>
double best_time(F fn, long iters, int tries = 7) {
  double best = 1e30;
  for (int i = 0; i < tries; ++i) {
    const double t0 = now();
    fn(iters);
    const double t = now() - t0;
    if (t < best) best = t;
  }
  return best;
}

volatile uint64_t sink;

void add_chain(long iters) {
  uint64_t x = 0;
  for (long i = 0; i < iters; ++i) asm volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
  sink = x;
}

double clock_hz() { return 4.0 * 20000000 / best_time(add_chain, 20000000); }

// Every probe: kChains independent accumulators, one instruction (and its pair) each per step:
// enough to cover a 4-6 cycle latency at two a cycle. (Unrolled, so that they stay in registers.)
constexpr int kChains = 12;

// A probe: kChains accumulators, acc[c] = STEP(acc[c], w[c], x) each step, x renewed every step
// (as the kernel's next group or row), w[c] = W of the chain's c (a table or weights apiece, so
// that no two chains' products are the same expression); the accumulators folded into `sink` so
// that nothing is dropped.
#define SLT_PROBE(NAME, TARGET, VEC, ZERO, W, X, STEP)                                         \
  __attribute__((target(TARGET))) void NAME(long iters) {                                      \
    VEC acc[kChains], w[kChains];                                                              \
    VEC x = X;                                                                                 \
    for (int c = 0; c < kChains; ++c) acc[c] = ZERO, w[c] = W;                                 \
    for (long i = 0; i < iters; ++i) {                                                         \
      _Pragma("GCC unroll 12") for (int c = 0; c < kChains; ++c) acc[c] = STEP(acc[c], w[c], x); \
      asm volatile("" : "+v"(x));                                                              \
    }                                                                                          \
    uint64_t s = 0;                                                                            \
    for (int c = 0; c < kChains; ++c) {                                                        \
      uint64_t v;                                                                              \
      std::memcpy(&v, &acc[c], sizeof v);                                                      \
      s ^= v;                                                                                  \
    }                                                                                          \
    sink = s;                                                                                  \
  }

// (w: the table or the weights; x: the index or the activations)
#define VPSHUFB(a, t, i) _mm256_add_epi8(a, _mm256_shuffle_epi8(t, i))
#define VPMADDUBSW(a, w, x) _mm256_add_epi16(a, _mm256_maddubs_epi16(w, x))
#define FMA_YMM(a, w, x) _mm256_fmadd_ps(w, x, a)
#define VPERMW(a, t, i) _mm512_add_epi16(a, _mm512_permutexvar_epi16(i, t))
#define VPDPBUSD(a, w, x) _mm512_dpbusd_epi32(a, w, x)
#define VDPBF16PS(a, w, x) _mm512_dpbf16_ps(a, (__m512bh)(w), (__m512bh)(x))
#define FMA_ZMM(a, w, x) _mm512_fmadd_ps(w, x, a)

SLT_PROBE(vpshufb_ymm, "avx2", __m256i, _mm256_setzero_si256(), _mm256_set1_epi8(char(c)), _mm256_set1_epi8(3), VPSHUFB)
SLT_PROBE(vpmaddubsw_ymm, "avx2", __m256i, _mm256_setzero_si256(), _mm256_set1_epi8(char(c)), _mm256_set1_epi8(3),
          VPMADDUBSW)
SLT_PROBE(fma_ymm, "avx2,fma", __m256, _mm256_setzero_ps(), _mm256_set1_ps(1e-9f * c), _mm256_set1_ps(1.0f), FMA_YMM)
SLT_PROBE(vpermw_zmm, "avx512f,avx512bw", __m512i, _mm512_setzero_si512(), _mm512_set1_epi16(short(c)),
          _mm512_set1_epi16(5), VPERMW)
SLT_PROBE(vpdpbusd_zmm, "avx512f,avx512bw,avx512vnni", __m512i, _mm512_setzero_si512(), _mm512_set1_epi8(char(c)),
          _mm512_set1_epi8(3), VPDPBUSD)
SLT_PROBE(vdpbf16ps_zmm, "avx512f,avx512bw,avx512bf16", __m512, _mm512_setzero_ps(),
          _mm512_castsi512_ps(_mm512_set1_epi16(short(0x3f80 + c))), _mm512_castsi512_ps(_mm512_set1_epi16(0x3000)), VDPBF16PS)
SLT_PROBE(fma_zmm, "avx512f", __m512, _mm512_setzero_ps(), _mm512_set1_ps(1e-9f * c), _mm512_set1_ps(1.0f), FMA_ZMM)

struct Probe {
  const char* name;     // the instruction (and what it is paired with)
  const char* needs;    // features, comma-separated, for __builtin_cpu_supports
  int macs;             // products one instruction contributes in the kernel that uses it
  const char* kernels;  // where slt_hw (or torch) leans on it
  void (*run)(long);
};

const Probe kProbes[] = {
    {"vpshufb ymm + vpaddb", "avx2", 32, "AVX2 int8 table lookup (32 rows x 4 columns, P or N, two parts)",
     vpshufb_ymm},
    {"vpmaddubsw ymm + vpaddw", "avx2", 32, "AVX2 int8 register and blocked kernels", vpmaddubsw_ymm},
    {"vfmadd231ps ymm", "avx2,fma", 8, "AVX2 float kernels", fma_ymm},
    {"vpermw zmm + vpaddw", "avx512bw", 96, "AVX-512 int8 table lookup (32 rows x 3 columns)", vpermw_zmm},
    {"vpdpbusd zmm", "avx512vnni", 64, "VNNI int8 panels, register kernel, implicit GEMM; torch's int8", vpdpbusd_zmm},
    {"vdpbf16ps zmm", "avx512bf16", 32, "bf16 dot products; torch's bf16 linear without AMX", vdpbf16ps_zmm},
    {"vfmadd231ps zmm", "avx512f", 16, "AVX-512 float kernels", fma_zmm},
};

bool supports(const char* needs) {
  char buf[128];
  std::strncpy(buf, needs, sizeof buf - 1);
  buf[sizeof buf - 1] = 0;
  for (char* f = std::strtok(buf, ","); f; f = std::strtok(nullptr, ",")) {
    // (__builtin_cpu_supports takes a string literal only)
    bool ok = false;
    if (!std::strcmp(f, "avx2")) ok = __builtin_cpu_supports("avx2");
    else if (!std::strcmp(f, "fma")) ok = __builtin_cpu_supports("fma");
    else if (!std::strcmp(f, "avx512f")) ok = __builtin_cpu_supports("avx512f");
    else if (!std::strcmp(f, "avx512bw")) ok = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512f");
    else if (!std::strcmp(f, "avx512vnni")) ok = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
    else if (!std::strcmp(f, "avx512bf16")) ok = __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
    if (!ok) return false;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  const long iters = argc > 1 ? std::atol(argv[1]) : 2000000;
  __builtin_cpu_init();
  const double hz = clock_hz();
  std::printf("{\"probe\": \"clock\", \"ghz\": %.4f}\n", hz * 1e-9);
  for (const Probe& p : kProbes) {
    if (!supports(p.needs)) {
      std::printf("{\"probe\": \"%s\", \"needs\": \"%s\", \"available\": false}\n", p.name, p.needs);
      continue;
    }
    const double t = best_time(p.run, iters);
    const double cycles = t * hz / (double(iters) * kChains);
    std::printf(
        "{\"probe\": \"%s\", \"needs\": \"%s\", \"available\": true, \"cycles_per_instr\": %.4f, "
        "\"macs_per_instr\": %d, \"macs_per_cycle\": %.2f, \"kernels\": \"%s\"}\n",
        p.name, p.needs, cycles, p.macs, p.macs / cycles, p.kernels);
  }
  return 0;
}
