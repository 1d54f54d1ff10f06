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
      slt::WeightDesc w;  // the weight, filled in per format below
      w.N = n; w.K = K; w.k0 = 0xDEADBEEFu; w.k1 = 0x12345678u; w.dist = dist; w.scale = scale;
      std::vector<float> h(rows * K);
      slt::cpu::generate_weights(h.data(), w, rb, re, 1);
      Dev<float> d(rows * K);
      CK(slt::cuda::generate_weights(d.p, w, rb, re, 0));
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
      w.k0 = 7u; w.k1 = 9u; w.planes = planes.data(); w.C = 3; w.coat_scales = hs.data();
      slt::cpu::materialize(hp.data(), w, rb, re, 1);
      Dev<int32_t> dpl(planes); Dev<float> dg(hs); Dev<float> dp(rows * K);
      slt::WeightDesc dw = w;
      dw.planes = dpl.p; dw.coat_scales = dg.p;
      CK(slt::cuda::materialize(dp.p, dw, rb, re, nullptr, 0));
      CK(cudaDeviceSynchronize());
      expect_same(dp.get(rows * K), hp, "materialize_planes", n, K, dist);

      for (auto& t : thr) {
        slt::WeightDesc fz;  // frozen: no planes
        fz.N = n; fz.K = K; fz.k0 = 5u; fz.k1 = 6u; fz.dist = dist; fz.scale = scale; fz.fk0 = 3u; fz.fk1 = 4u;
        fz.prune_thr = t[0]; fz.lock_thr = t[1];
        std::vector<uint8_t> st(n * K);
        slt::cpu::freeze_states(st.data(), fz, 1);
        Dev<uint8_t> dst(n * K);
        CK(slt::cuda::freeze_states(dst.p, fz, 0));
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
        fz.free_bits = stream.data(); fz.free_words = long(stream.size()); fz.offsets = offsets.data();
        slt::cpu::materialize(hf.data(), fz, rb, re, 1);
        Dev<int32_t> dfb(stream); Dev<int64_t> doff(offsets); Dev<float> df(rows * K); Dev<int> err(1);
        CK(cudaMemset(err.p, 0, sizeof(int)));
        slt::WeightDesc df_w = fz;
        df_w.free_bits = dfb.p; df_w.offsets = doff.p;
        CK(slt::cuda::materialize(df.p, df_w, rb, re, err.p, 0));
        CK(cudaDeviceSynchronize());
        expect_same(df.get(rows * K), hf, "materialize_frozen", n, K, dist);
        if (err.get(1)[0] != 0) { std::printf("error flag set n=%ld K=%ld\n", n, K); ++failures; }
        if (f > 64 && rb == 0 && re == n) {  // a short stream must raise the flag
          df_w.free_words = long(stream.size()) - 2;
          CK(slt::cuda::materialize(df.p, df_w, rb, re, err.p, 0));
          CK(cudaDeviceSynchronize());
          if (err.get(1)[0] != 1) { std::printf("short stream not flagged n=%ld K=%ld\n", n, K); ++failures; }
        }
      }
    }
  }
  slt::WeightDesc bad;
  bad.N = 4; bad.K = 40; bad.dist = 7; bad.scale = 0.1f;
  if (slt::cuda::generate_weights(nullptr, bad, 0, 4, 0) != cudaErrorInvalidValue) {
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


LINEAR_SELFTEST = r"""
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <cuda_runtime.h>
#include "core/slt_contract.h"
#include "cpu/generate.h"
#include "cuda/launch.h"

#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) { \
  std::printf("CUDA error %s at line %d\n", cudaGetErrorString(e_), __LINE__); std::exit(2); } } while (0)

static uint32_t g_rng = 99u;
static uint32_t rnd() { g_rng = slt::lowbias32(g_rng + 0x9E3779B9u); return g_rng; }
template <typename T> static T* dev(const std::vector<T>& v) {
  T* p = nullptr; CK(cudaMalloc(&p, (v.size() ? v.size() : 1) * sizeof(T)));
  if (!v.empty()) CK(cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice));
  return p;
}

int main() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) return 77;
  int failures = 0;
  const long n = 70, K = 2100, W = (K + 31) / 32, NB = (W + 31) / 32;
  for (int variant = 0; variant < 3; ++variant)  // binary (C = 1), multicoat (C = 3), frozen
  for (int dist = 0; dist < 3; ++dist) {
    const int frozen = variant == 2;
    const long coats = variant == 0 ? 1 : 3;
    const float scale = 0.03f;
    std::vector<float> weff(size_t(n * K));
    std::vector<int32_t> planes, bits;
    std::vector<float> coat = {0.75f, 1.5f, -0.5f};
    std::vector<int64_t> offs(size_t(n * NB));
    const uint32_t P = 20000u, L = 35000u;
    if (!frozen) {  // three nested planes
      planes.assign(size_t(3 * n * W), 0);
      for (long r = 0; r < n; ++r) for (long w = 0; w < W; ++w) {
        uint32_t a = rnd(), b = a & rnd(), c = b & rnd();
        if (w == W - 1) { uint32_t keep = (K % 32) ? (1u << (K % 32)) - 1u : ~0u; a &= keep; b &= keep; c &= keep; }
        planes[size_t(r * W + w)] = int32_t(a); planes[size_t(n * W + r * W + w)] = int32_t(b);
        planes[size_t(2 * n * W + r * W + w)] = int32_t(c);
      }
      if (coats == 1) coat = {-1.25f};  // a negative binary coat scale flips every sign
      slt::WeightDesc w;
      w.N = n; w.K = K; w.k0 = 5u; w.k1 = 6u; w.dist = dist; w.scale = scale;
      w.planes = planes.data(); w.C = coats; w.coat_scales = coat.data();
      slt::cpu::materialize(weff.data(), w, 0, n, 1);
    } else {
      int64_t f = 0;
      for (long r = 0; r < n; ++r) for (long k = 0; k < K; ++k) {
        if (k % 1024 == 0) offs[size_t(r * NB + k / 1024)] = f;
        if (slt::freeze_state(3u, 4u, uint32_t(r), uint32_t(k), uint32_t(K), P, L) == slt::kFree) ++f;
      }
      bits.resize(size_t((f + 31) / 32));
      for (auto& b : bits) b = int32_t(rnd());
      slt::WeightDesc w;
      w.N = n; w.K = K; w.k0 = 5u; w.k1 = 6u; w.dist = dist; w.scale = scale; w.free_bits = bits.data();
      w.free_words = long(bits.size()); w.offsets = offs.data(); w.fk0 = 3u; w.fk1 = 4u; w.prune_thr = P;
      w.lock_thr = L;
      slt::cpu::materialize(weff.data(), w, 0, n, 1);
    }
    int32_t* dplanes = dev(planes); float* dcoat = dev(coat); int32_t* dbits = dev(bits); int64_t* doffs = dev(offs);
    for (int path = 1; path <= 2; ++path)
    for (long M : {1L, 3L, 8L, 77L}) {
      if (path == 1 && M > 8) continue;
      std::vector<float> x(size_t(M * K));
      for (auto& v : x) v = float(int32_t(rnd() % 2001u) - 1000) / 1000.0f;
      for (long rb : {0L, 13L}) {
        const long re = n - rb / 2;
        float* dx = dev(x); float* dout = nullptr;
        CK(cudaMalloc(&dout, size_t(M * (re - rb)) * sizeof(float)));
        slt::cuda::LinearArgs a;  // the WeightDesc part, then the call's
        a.N = n; a.K = K; a.k0 = 5u; a.k1 = 6u; a.dist = dist; a.scale = scale;
        a.planes = frozen ? nullptr : dplanes; a.C = coats; a.coat_scales = dcoat; a.free_bits = dbits;
        a.free_words = long(bits.size()); a.offsets = doffs; a.fk0 = 3u; a.fk1 = 4u; a.prune_thr = P;
        a.lock_thr = L;
        a.x = dx; a.act = slt::cuda::kActFloat32; a.M = M; a.ldx = K; a.out = dout; a.row_begin = rb; a.row_end = re;
        a.path = path; a.split_k = path == 1 ? 3 : 0;
        CK(slt::cuda::linear(a, 0));
        CK(cudaDeviceSynchronize());
        std::vector<float> y(size_t(M * (re - rb)));
        CK(cudaMemcpy(y.data(), dout, y.size() * sizeof(float), cudaMemcpyDeviceToHost));
        for (long m = 0; m < M; ++m) for (long r = rb; r < re; ++r) {
          double want = 0.0, mag = 1.0;
          for (long k = 0; k < K; ++k) {
            want += double(x[size_t(m * K + k)]) * weff[size_t(r * K + k)];
            mag += std::fabs(double(x[size_t(m * K + k)]) * weff[size_t(r * K + k)]);
          }
          if (std::fabs(y[size_t(m * (re - rb) + r - rb)] - want) > 1e-5 * mag) {
            if (failures < 10) std::printf("variant=%d dist=%d path=%d M=%ld row=%ld: %g vs %g\n", variant, dist,
                                           path, M, r, y[size_t(m * (re - rb) + r - rb)], want);
            ++failures;
          }
        }
        cudaFree(dx); cudaFree(dout);
      }
    }
    cudaFree(dplanes); cudaFree(dcoat); cudaFree(dbits); cudaFree(doffs);
  }
  slt::cuda::LinearArgs bad;
  bad.N = 4; bad.K = 40; bad.row_end = 4; bad.dist = 7;
  if (slt::cuda::linear(bad, 0) != cudaErrorInvalidValue) { std::printf("bad dist accepted\n"); ++failures; }
  if (failures) { std::printf("FAILED %d\n", failures); return 1; }
  std::printf("OK\n");
  return 0;
}
"""


def test_linear_matches_cpu_on_gpu(tmp_path):
    """The fused CUDA slt_linear (both paths, all formats and distributions, row ranges, split-K)
    against the CPU-materialised weight. Built and linked everywhere nvcc is; run on a GPU."""
    (tmp_path / "linear_selftest.cu").write_text(LINEAR_SELFTEST)
    srcs = ["linear_selftest.cu", str(CSRC / "cuda" / "linear.cu"), str(CSRC / "cpu" / "generate.cpp")]
    _run([NVCC, *FLAGS, "-Xcompiler", "-Wno-unknown-pragmas", *srcs, "-o", "linear_selftest"], tmp_path)
    proc = subprocess.run([str(tmp_path / "linear_selftest")], capture_output=True, text=True, timeout=200)
    if proc.returncode == 77:
        pytest.skip("compiled and linked; no CUDA device to run the kernels on")
    assert proc.returncode == 0 and proc.stdout.strip().endswith("OK"), proc.stdout[-4000:] + proc.stderr[-2000:]


def test_module_binds_cuda_kernels(tmp_path):
    """csrc/module.cpp with SLT_HW_WITH_CUDA (the bindings this machine's build leaves out)."""
    pybind11 = pytest.importorskip("pybind11")
    import sysconfig

    cuda_inc = pathlib.Path(NVCC).resolve().parents[1] / "include"
    if not (cuda_inc / "cuda_runtime_api.h").exists():
        cuda_inc = pathlib.Path("/usr/local/cuda/include")
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None or not (cuda_inc / "cuda_runtime_api.h").exists():
        pytest.skip("no host C++ compiler or CUDA headers")
    _run([cxx, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", "-DSLT_HW_WITH_CUDA=1", f"-I{CSRC}",
          f"-I{pybind11.get_include()}", f"-I{sysconfig.get_paths()['include']}", f"-I{cuda_inc}",
          str(CSRC / "module.cpp")], tmp_path)


def test_linear_compiles_without_wmma(tmp_path):
    """The FMA-only GEMM that the CuPy loader falls back to when NVRTC has no <mma.h>."""
    _run([NVCC, *FLAGS, "-DSLT_HW_NO_WMMA", "-c", str(CSRC / "cuda" / "linear.cu"), "-o", "linear_fma.o"], tmp_path)
