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

__attribute__((target("avx2"))) void vpshufb_ymm(long iters) {
  __m256i acc[kChains], tab[kChains];
  __m256i idx = _mm256_set1_epi8(3);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_setzero_si256(), tab[c] = _mm256_set1_epi8(char(c));
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_add_epi8(acc[c], _mm256_shuffle_epi8(tab[c], idx));
    asm volatile("" : "+x"(idx));  // (a fresh index each step, as the kernel's next group)
  }
  __m256i s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_xor_si256(s, acc[c]);
  sink = uint64_t(_mm256_extract_epi64(s, 0));
}

__attribute__((target("avx2"))) void vpmaddubsw_ymm(long iters) {
  __m256i acc[kChains], w[kChains];
  __m256i x = _mm256_set1_epi8(3);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_setzero_si256(), w[c] = _mm256_set1_epi8(char(c));
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_add_epi16(acc[c], _mm256_maddubs_epi16(w[c], x));
    asm volatile("" : "+x"(x));
  }
  __m256i s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_xor_si256(s, acc[c]);
  sink = uint64_t(_mm256_extract_epi64(s, 0));
}

__attribute__((target("avx2,fma"))) void fma_ymm(long iters) {
  __m256 acc[kChains];
  __m256 x = _mm256_set1_ps(1.0f), w = _mm256_set1_ps(1e-9f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm256_setzero_ps();
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(w, x, acc[c]);
    asm volatile("" : "+x"(x));
  }
  __m256 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
  sink = uint64_t(_mm256_cvtss_f32(s));
}

__attribute__((target("avx512f,avx512bw"))) void vpermw_zmm(long iters) {
  __m512i acc[kChains], tab[kChains];
  __m512i idx = _mm512_set1_epi16(5);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_setzero_si512(), tab[c] = _mm512_set1_epi16(short(c));
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_add_epi16(acc[c], _mm512_permutexvar_epi16(idx, tab[c]));
    asm volatile("" : "+v"(idx));
  }
  __m512i s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_xor_si512(s, acc[c]);
  sink = uint64_t(_mm512_reduce_add_epi64(s));
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void vpdpbusd_zmm(long iters) {
  __m512i acc[kChains], w[kChains];
  __m512i x = _mm512_set1_epi8(3);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_setzero_si512(), w[c] = _mm512_set1_epi8(char(c));
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbusd_epi32(acc[c], w[c], x);
    asm volatile("" : "+v"(x));
  }
  __m512i s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_xor_si512(s, acc[c]);
  sink = uint64_t(_mm512_reduce_add_epi64(s));
}

__attribute__((target("avx512f,avx512bw,avx512bf16"))) void vdpbf16ps_zmm(long iters) {
  __m512 acc[kChains];
  __m512bh w = (__m512bh)_mm512_set1_epi16(0x3f80), x = (__m512bh)_mm512_set1_epi16(0x3000);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_setzero_ps();
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], w, x);
    asm volatile("" : "+v"(x));
  }
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  sink = uint64_t(_mm512_reduce_add_ps(s));
}

__attribute__((target("avx512f"))) void fma_zmm(long iters) {
  __m512 acc[kChains];
  __m512 x = _mm512_set1_ps(1.0f), w = _mm512_set1_ps(1e-9f);
  for (int c = 0; c < kChains; ++c) acc[c] = _mm512_setzero_ps();
  for (long i = 0; i < iters; ++i) {
#pragma GCC unroll 12
    for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(w, x, acc[c]);
    asm volatile("" : "+v"(x));
  }
  __m512 s = acc[0];
  for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
  sink = uint64_t(_mm512_reduce_add_ps(s));
}

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
