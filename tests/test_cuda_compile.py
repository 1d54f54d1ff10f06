"""The CUDA sources compile with nvcc for sm_90 (skipped without nvcc). Where a GPU is present a
self-test program also runs the kernels against the CPU kernels (themselves checked bit for bit
against the reference in test_cpp_contract.py); without one it is only compiled and linked."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
ARCH = os.environ.get("SLT_HW_TEST_CUDA_ARCH", "sm_90")


def _nvcc():
    for cand in (os.environ.get("CUDACXX"),
                 os.path.join(os.environ["CUDA_HOME"], "bin", "nvcc") if os.environ.get("CUDA_HOME") else None,
                 shutil.which("nvcc")):
        if cand and os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


NVCC = _nvcc()
pytestmark = [pytest.mark.skipif(NVCC is None, reason="nvcc not found"), pytest.mark.timeout(300)]
FLAGS = ["-std=c++17", f"-arch={ARCH}", "-O3", f"-I{CSRC}", "-Werror", "all-warnings",
         "-Xcompiler", "-Wall,-Wextra,-ffp-contract=off"]


def _run(cmd, cwd):
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.mark.parametrize("src", sorted((CSRC / "cuda").glob("*.cu")), ids=lambda p: p.name)
def test_cu_compiles(src, tmp_path):
    _run([NVCC, *FLAGS, "-c", str(src), "-o", str(tmp_path / (src.stem + ".o"))], tmp_path)


def test_header_compiles_for_host_and_device(tmp_path):
    """slt_contract.h in two TUs of one relocatable-device-code program: no duplicate symbols."""
    body = ('#include "core/slt_contract.h"\n'
            "__global__ void k{i}(float* o, unsigned n) {{ o[threadIdx.x] = "
            "slt::weight_value(1u, 2u, n, threadIdx.x, 100u, 2, 0.5f); }}\n"
            "float h{i}(unsigned n) {{ return slt::weight_value(1u, 2u, n, 3u, 100u, 2, 0.5f); }}\n")
    objs = []
    for i in range(2):
        (tmp_path / f"tu{i}.cu").write_text(body.format(i=i))
        _run([NVCC, *FLAGS, "-rdc=true", "-c", f"tu{i}.cu", "-o", f"tu{i}.o"], tmp_path)
        objs.append(f"tu{i}.o")
    _run([NVCC, f"-arch={ARCH}", "-rdc=true", "-dlink", *objs, "-o", "dlink.o"], tmp_path)


SELFTEST = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <cuda_runtime.h>
#include "core/slt_contract.h"
#include "cpu/generate.h"
#include "cuda/launch.h"

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
  std::printf("CUDA error %s at line %d\n", cudaGetErrorString(e_), __LINE__); std::exit(2); } } while (0)

static uint32_t g_rng = 12345u;
static uint32_t rnd() { g_rng = slt::lowbias32(g_rng + 0x9E3779B9u); return g_rng; }

template <typename T> struct Dev {  // device buffer, poisoned so unwritten outputs show up
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count ? count : 1) {
    CK(cudaMalloc(&p, n * sizeof(T)));
    CK(cudaMemset(p, 0xFF, n * sizeof(T)));
  }
  Dev(const std::vector<T>& v) : Dev(v.size()) {
    if (!v.empty()) CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Dev() { cudaFree(p); }
  std::vector<T> get(size_t count) const {
    std::vector<T> v(count);
    if (count) CK(cudaMemcpy(v.data(), p, count * sizeof(T), cudaMemcpyDeviceToHost));
    return v;
  }
};

static int failures = 0;
template <typename T>
static void expect_same(const std::vector<T>& a, const std::vector<T>& b, const char* what, long n, long K, int dist) {
  if (a.size() != b.size() || (a.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) != 0)) {
    size_t i = 0; while (i < a.size() && std::memcmp(&a[i], &b[i], sizeof(T)) == 0) ++i;
    std::printf("MISMATCH %s n=%ld K=%ld dist=%d first at %zu\n", what, n, K, dist, i);
    ++failures;
  }
}

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) { std::printf("no CUDA device\n"); return 77; }
  const long shapes[][2] = {{1, 1}, {2, 33}, {7, 37}, {64, 31}, {5, 1025}, {3, 2100}, {40, 1100}, {300, 29}, {2, 5000}};
  const uint32_t thr[][2] = {{32768u, 45875u}, {0u, 0u}, {58982u, 65536u}, {65536u, 65536u}};
  const float g[3] = {0.75f, -0.75f, 0.1f};
  for (auto& sh : shapes) {
    const long n = sh[0], K = sh[1], W = (K + 31) / 32, nb = (W + 31) / 32;
    const long rb = n / 3, re = n - n / 4, rows = re - rb;
    for (int dist = 0; dist < 3; ++dist) {
      const float scale = 1.0f / float(K) + 0.01f * float(dist + 1);
      std::vector<float> h(rows * K);
      slt::cpu::generate_weights(h.data(), n, K, 0xDEADBEEFu, 0x12345678u, dist, scale, rb, re, 1);
      Dev<float> d(rows * K);
      CK(slt::cuda::generate_weights(d.p, n, K, 0xDEADBEEFu, 0x12345678u, dist, scale, rb, re, 0));
      CK(cudaDeviceSynchronize());
      expect_same(d.get(rows * K), h, "generate_weights", n, K, dist);

      std::vector<int32_t> planes(3 * n * W, 0);
      for (long r = 0; r < n; ++r) for (long k = 0; k < K; ++k) {
        const uint32_t u = rnd();
        const bool b0 = (u & 7u) < 6u, b1 = b0 && ((u >> 3) & 1u), b2 = b1 && ((u >> 4) & 1u);
        const bool bs[3] = {b0, b1, b2};
        for (int c = 0; c < 3; ++c)
          if (bs[c]) planes[(c * n + r) * W + k / 32] |= int32_t(1u << (k % 32));
      }
      std::vector<float> hs(g, g + 3);
      std::vector<float> hp(rows * K);
      slt::cpu::materialize_planes(hp.data(), planes.data(), 3, hs.data(), n, K, 7u, 9u, dist, scale, rb, re, 1);
      Dev<int32_t> dpl(planes); Dev<float> dg(hs); Dev<float> dp(rows * K);
      CK(slt::cuda::materialize_planes(dp.p, dpl.p, 3, dg.p, n, K, 7u, 9u, dist, scale, rb, re, 0));
      CK(cudaDeviceSynchronize());
      expect_same(dp.get(rows * K), hp, "materialize_planes", n, K, dist);

      for (auto& t : thr) {
        std::vector<uint8_t> st(n * K);
        slt::cpu::freeze_states(st.data(), n, K, 3u, 4u, t[0], t[1], 1);
        Dev<uint8_t> dst(n * K);
        CK(slt::cuda::freeze_states(dst.p, n, K, 3u, 4u, t[0], t[1], 0));
        CK(cudaDeviceSynchronize());
        expect_same(dst.get(n * K), st, "freeze_states", n, K, dist);

        std::vector<int32_t> stream;
        std::vector<int64_t> offsets(n * nb);
        long f = 0;
        for (long r = 0; r < n; ++r) for (long k = 0; k < K; ++k) {
          if (k % 1024 == 0) offsets[r * nb + k / 1024] = f;
          if (st[r * K + k] == slt::kFree) {
            if (f % 32 == 0) stream.push_back(0);
            if (rnd() & 1u) stream.back() |= int32_t(1u << (f % 32));
            ++f;
          }
        }
        std::vector<float> hf(rows * K);
        slt::cpu::materialize_frozen(hf.data(), stream.data(), long(stream.size()), offsets.data(), n, K, 5u, 6u,
                                     3u, 4u, t[0], t[1], dist, scale, rb, re, 1);
        Dev<int32_t> dfb(stream); Dev<int64_t> doff(offsets); Dev<float> df(rows * K); Dev<int> err(1);
        CK(cudaMemset(err.p, 0, sizeof(int)));
        CK(slt::cuda::materialize_frozen(df.p, dfb.p, long(stream.size()), doff.p, n, K, 5u, 6u, 3u, 4u,
                                         t[0], t[1], dist, scale, rb, re, err.p, 0));
        CK(cudaDeviceSynchronize());
        expect_same(df.get(rows * K), hf, "materialize_frozen", n, K, dist);
        if (err.get(1)[0] != 0) { std::printf("error flag set n=%ld K=%ld\n", n, K); ++failures; }
        if (f > 64 && rb == 0 && re == n) {  // a short stream must raise the flag
          CK(slt::cuda::materialize_frozen(df.p, dfb.p, long(stream.size()) - 2, doff.p, n, K, 5u, 6u, 3u, 4u,
                                           t[0], t[1], dist, scale, rb, re, err.p, 0));
          CK(cudaDeviceSynchronize());
          if (err.get(1)[0] != 1) { std::printf("short stream not flagged n=%ld K=%ld\n", n, K); ++failures; }
        }
      }
    }
  }
  if (slt::cuda::generate_weights(nullptr, 4, 40, 1u, 2u, 7, 0.1f, 0, 4, 0) != cudaErrorInvalidValue) {
    std::printf("bad dist accepted\n"); ++failures;
  }
  if (failures) { std::printf("FAILED %d\n", failures); return 1; }
  std::printf("OK\n");
  return 0;
}
"""


def test_kernels_match_cpu_on_gpu(tmp_path):
    """Built everywhere nvcc is (catches link errors); run only where a GPU is."""
    (tmp_path / "selftest.cu").write_text(SELFTEST)
    srcs = ["selftest.cu", str(CSRC / "cuda" / "generate.cu"), str(CSRC / "cpu" / "generate.cpp")]
    # The CPU kernels serially (threads=1): no OpenMP runtime needed, so silence its pragmas.
    _run([NVCC, *FLAGS, "-Xcompiler", "-Wno-unknown-pragmas", *srcs, "-o", "selftest"], tmp_path)
    proc = subprocess.run([str(tmp_path / "selftest")], capture_output=True, text=True, timeout=200)
    if proc.returncode == 77:
        pytest.skip("compiled and linked; no CUDA device to run the kernels on")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout[-4000:] + proc.stderr[-2000:]
