// pybind11 module slt_hw._C. Torch-free on purpose: tensors cross as data pointers (Python ints)
// plus sizes, so the extension never depends on the torch C++ ABI and builds without torch.
// A packed weight crosses as one WeightDesc (core/weight_desc.h). The ops (slt_hw/_ops.py)
// check dtypes, shapes and devices; the kernels re-check the contract before touching memory.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/slt_contract.h"
#include "cpu/attention.h"
#include "cpu/conv_int8.h"
#include "cpu/plans.h"
#include "cpu/generate.h"
#include "cpu/im2col.h"
#include "cpu/linear.h"
#include "cpu/quantize.h"

#ifdef SLT_HW_WITH_CUDA
#include "cuda/launch.h"
#endif

#ifndef SLT_HW_CXX_FLAGS
#define SLT_HW_CXX_FLAGS ""
#endif
#ifndef SLT_HW_BUILD_TYPE
#define SLT_HW_BUILD_TYPE ""
#endif
#ifndef SLT_HW_CUDA_ARCHS
#define SLT_HW_CUDA_ARCHS ""
#endif

namespace py = pybind11;

namespace {

template <typename T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

std::string compiler_id() {
#if defined(__clang__)
  return "clang";
#elif defined(__GNUC__)
  return "gcc";
#elif defined(_MSC_VER)
  return "msvc";
#else
  return "unknown";
#endif
}

std::string compiler_version() {
#if defined(__VERSION__)
  return __VERSION__;
#elif defined(_MSC_VER)
  return std::to_string(_MSC_VER);
#else
  return "";
#endif
}

// A CPU kernel fn(out, w, row_begin, row_end, threads) as m.<name>, run without the GIL.
void def_rows(py::module_& m, const char* name, void (*fn)(float*, const slt::WeightDesc&, int64_t, int64_t, int),
              const char* doc) {
  m.def(
      name,
      [fn](uintptr_t out, const slt::WeightDesc& w, int64_t row_begin, int64_t row_end, int threads) {
        py::gil_scoped_release nogil;
        fn(ptr<float>(out), w, row_begin, row_end, threads);
      },
      py::arg("out"), py::arg("w"), py::arg("row_begin"), py::arg("row_end"), py::arg("threads") = 0, doc);
}

// "auto" (the best this CPU has) or an ISA's name.
slt::cpu::Isa parse_isa(const std::string& isa) {
  slt::cpu::Isa which = slt::cpu::best_isa();
  if (isa != "auto" && !slt::cpu::isa_from_name(isa.c_str(), &which)) {
    std::string names = "auto";
    for (auto i : slt::cpu::kAllIsas) names += std::string(", ") + slt::cpu::isa_name(i);
    throw py::value_error("isa: expected one of " + names + ", got " + isa);
  }
  return which;
}

// slt_linear's lut argument.
slt::cpu::LutMode lut_mode(const std::string& lut) {
  if (lut == "auto") return slt::cpu::LutMode::kAuto;
  if (lut == "on") return slt::cpu::LutMode::kOn;
  if (lut == "off") return slt::cpu::LutMode::kOff;
  throw py::value_error("lut: expected 'auto', 'on' or 'off', got " + lut);
}

// A convolution's input geometry from the bindings' lists (x left null).
slt::cpu::ConvInput conv_input(const std::vector<int64_t>& shape, const std::vector<int64_t>& strides,
                               const std::vector<int64_t>& kernel, const std::vector<int64_t>& stride,
                               const std::vector<int64_t>& padding, const std::vector<int64_t>& dilation) {
  for (const auto* v : {&kernel, &stride, &padding, &dilation})
    if (v->size() != 2) throw std::invalid_argument("kernel/stride/padding/dilation: expected pairs");
  if (shape.size() != 4 || strides.size() != 4)
    throw std::invalid_argument("x: expected (batch, channels, H, W) and four strides");
  slt::cpu::ConvInput g;
  g.B = shape[0], g.C = shape[1], g.H = shape[2], g.W = shape[3];
  g.sb = strides[0], g.sc = strides[1], g.sh = strides[2], g.sw = strides[3];
  g.kh = kernel[0], g.kw = kernel[1], g.stride_h = stride[0], g.stride_w = stride[1];
  g.pad_h = padding[0], g.pad_w = padding[1], g.dil_h = dilation[0], g.dil_w = dilation[1];
  return g;
}

// parse_isa, where "auto" is the ISA auto_isa picks for this problem on `threads`.
slt::cpu::Isa problem_isa(const std::string& isa, const slt::cpu::LinearProblem& p, int threads) {
  return isa == "auto" ? slt::cpu::auto_isa(p, threads) : parse_isa(isa);
}

// auto_isa for M rows of int8, float or bf16 activations and an N x 4096 binary signed-constant
// weight (binary=false: a multicoat one) on `threads` (0: OpenMP's default): a stand-in
// problem, whose pointers are never read.
slt::cpu::Isa auto_isa_for(bool int8, int64_t M, bool bf16 = false, bool binary = true, int64_t N = 4096,
                           int threads = 0) {
  static const int32_t plane = 0;
  static const float coat = 1.0f;
  slt::cpu::LinearProblem p;
  p.N = N;
  p.K = 4096;
  p.dist = slt::kSignedConstant;
  p.planes = &plane;
  p.C = binary ? 1 : 3;
  p.coat_scales = &coat;
  p.M = M;
  p.xq = int8 ? reinterpret_cast<const int8_t*>(&plane) : nullptr;
  p.xb = !int8 && bf16 ? reinterpret_cast<const uint16_t*>(&plane) : nullptr;
  return slt::cpu::auto_isa(p, threads);
}

#ifdef SLT_HW_WITH_CUDA
cudaStream_t cuda_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

void check_cuda(cudaError_t e, const char* what) {
  if (e == cudaErrorInvalidValue)
    throw py::value_error(std::string(what) + ": invalid arguments");
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}
#endif

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "slt_hw native kernels (contract v1): torch-free, pointers as ints";

  m.def("contract_version", [] { return slt::kContractVersion; });

  m.def("hash32", [](uint32_t k0, uint32_t k1, uint32_t c) { return slt::hash32(k0, k1, c); },
        py::arg("k0"), py::arg("k1"), py::arg("c"));

  // module_local: a test build of this module (tests/avx512_emulation.py) loads next to it.
  py::class_<slt::WeightDesc>(m, "WeightDesc", py::module_local(),
                              "A packed weight for the kernels: shape, keys, dist, scale and its mask "
                              "(planes for binary/multicoat, else the frozen stream); pointers as ints.")
      .def(py::init([](int64_t n, int64_t k, uint32_t k0, uint32_t k1, int dist, float scale, uintptr_t planes,
                       int64_t C, uintptr_t coat_scales, uintptr_t free_bits, int64_t free_words,
                       uintptr_t offsets, uint32_t fk0, uint32_t fk1, uint32_t prune_thr, uint32_t lock_thr) {
             return slt::WeightDesc{n, k, k0, k1, dist, scale, ptr<const int32_t>(planes), C,
                                    ptr<const float>(coat_scales), ptr<const int32_t>(free_bits), free_words,
                                    ptr<const int64_t>(offsets), fk0, fk1, prune_thr, lock_thr};
           }),
           py::arg("n"), py::arg("k"), py::arg("k0"), py::arg("k1"), py::arg("dist") = 0, py::arg("scale") = 1.0f,
           py::arg("planes") = 0, py::arg("C") = 0, py::arg("coat_scales") = 0, py::arg("free_bits") = 0,
           py::arg("free_words") = 0, py::arg("offsets") = 0, py::arg("fk0") = 0, py::arg("fk1") = 0,
           py::arg("prune_thr") = 0, py::arg("lock_thr") = 0)
      .def_readonly("n", &slt::WeightDesc::N)
      .def_readonly("k", &slt::WeightDesc::K)
      .def_readonly("k0", &slt::WeightDesc::k0)
      .def_readonly("k1", &slt::WeightDesc::k1)
      .def_readonly("C", &slt::WeightDesc::C)
      .def_property_readonly("frozen", &slt::WeightDesc::frozen);

  def_rows(m, "generate_weights", slt::cpu::generate_weights,
           "Rows [row_begin, row_end) of W0 (float32, (row_end-row_begin) x k) into `out`.");
  m.def(
      "materialize",
      [](uintptr_t out, const slt::WeightDesc& w, int64_t row_begin, int64_t row_end, int threads,
         const std::string& isa, int64_t taps) {
        const slt::cpu::Isa which = parse_isa(isa);
        py::gil_scoped_release nogil;
        slt::cpu::materialize_weights(ptr<float>(out), w, row_begin, row_end, which, threads, taps);
      },
      py::arg("out"), py::arg("w"), py::arg("row_begin"), py::arg("row_end"), py::arg("threads") = 0,
      py::arg("isa") = "auto", py::arg("taps") = 1,
      "Effective weights of rows [row_begin, row_end) (float32), either format, built by `isa`'s vector "
      "kernels (scalar: the portable loop); bit-identical whichever. taps > 1: each row tap-major, "
      "[t * (K / taps) + c] = W_eff[c * taps + t] (a conv weight's channels-last order).");
  m.def(
      "frozen_mask_planes",
      [](const slt::WeightDesc& w, uintptr_t out, int threads) {
        py::gil_scoped_release nogil;
        slt::cpu::frozen_mask_planes(w, ptr<int32_t>(out), threads);
      },
      py::arg("w"), py::arg("out"), py::arg("threads") = 0,
      "A frozen weight's effective mask as the (N, ceil(K/32)) int32 plane of the binary weight of the "
      "same weights (its keys, scale and distribution).");
  m.def(
      "freeze_states",
      [](uintptr_t out, const slt::WeightDesc& w, int threads) {
        py::gil_scoped_release nogil;
        slt::cpu::freeze_states(ptr<uint8_t>(out), w, threads);
      },
      py::arg("out"), py::arg("w"), py::arg("threads") = 0,
      "(n x k) uint8 freeze states (0 pruned, 1 locked, 2 free) of w's freeze key and thresholds.");

#ifdef SLT_HW_WITH_CUDA
  // Device pointers and a cudaStream_t as ints; the launch is asynchronous on that stream.
  m.def(
      "cuda_generate_weights",
      [](uintptr_t out, const slt::WeightDesc& w, int64_t row_begin, int64_t row_end, uintptr_t stream) {
        check_cuda(slt::cuda::generate_weights(ptr<float>(out), w, row_begin, row_end, cuda_stream(stream)),
                   "cuda_generate_weights");
      },
      py::arg("out"), py::arg("w"), py::arg("row_begin"), py::arg("row_end"), py::arg("stream") = 0);
  m.def(
      "cuda_freeze_states",
      [](uintptr_t out, const slt::WeightDesc& w, uintptr_t stream) {
        check_cuda(slt::cuda::freeze_states(ptr<uint8_t>(out), w, cuda_stream(stream)), "cuda_freeze_states");
      },
      py::arg("out"), py::arg("w"), py::arg("stream") = 0);
  m.def(
      "cuda_materialize",
      [](uintptr_t out, const slt::WeightDesc& w, int64_t row_begin, int64_t row_end, uintptr_t error_flag,
         uintptr_t stream) {
        check_cuda(slt::cuda::materialize(ptr<float>(out), w, row_begin, row_end, ptr<int>(error_flag),
                                          cuda_stream(stream)),
                   "cuda_materialize");
      },
      py::arg("out"), py::arg("w"), py::arg("row_begin"), py::arg("row_end"), py::arg("error_flag") = 0,
      py::arg("stream") = 0);
  m.def(
      "cuda_linear",
      [](const slt::WeightDesc& w, uintptr_t x, int act, int64_t M, int64_t ldx, uintptr_t out, uintptr_t bias,
         int64_t row_begin, int64_t row_end, int path, int64_t split_k, uintptr_t stream) {
        slt::cuda::LinearArgs a;
        static_cast<slt::WeightDesc&>(a) = w;
        a.x = ptr<const void>(x);
        a.act = act;
        a.M = M;
        a.ldx = ldx;
        a.out = ptr<float>(out);
        a.bias = ptr<const float>(bias);
        a.row_begin = row_begin;
        a.row_end = row_end;
        a.path = path;
        a.split_k = split_k;
        check_cuda(slt::cuda::linear(a, cuda_stream(stream)), "cuda_linear");
      },
      py::arg("w"), py::arg("x"), py::arg("act"), py::arg("M"), py::arg("ldx"), py::arg("out"), py::arg("bias"),
      py::arg("row_begin"), py::arg("row_end"), py::arg("path") = 0, py::arg("split_k") = 0, py::arg("stream") = 0,
      "Fused slt_linear into float32 `out` (M x rows); see csrc/cuda/launch.h.");
#endif

  m.def(
      "cpu_isas",
      [] {
        py::list out;
        for (auto isa : slt::cpu::kAllIsas)
          if (slt::cpu::isa_supported(isa)) out.append(slt::cpu::isa_name(isa));
        return out;
      },
      "Instruction sets the fused CPU kernels can use on this machine, worst first.");

  // A LinearProblem of slt_linear's arguments (lut: "auto", "on" or "off").
  auto problem = [](const slt::WeightDesc& w, uintptr_t x, int64_t M, int64_t ldx, uintptr_t y, int64_t ldy,
                    int64_t row_begin, int64_t row_end, uintptr_t bias, uintptr_t xq, uintptr_t xscale,
                    const std::string& lut, uintptr_t xb) {
    slt::cpu::LinearProblem p;
    static_cast<slt::WeightDesc&>(p) = w;
    p.x = ptr<const float>(x);
    p.xb = ptr<const uint16_t>(xb);
    p.M = M;
    p.ldx = ldx;
    p.y = ptr<float>(y);
    p.ldy = ldy;
    p.row_begin = row_begin;
    p.row_end = row_end;
    p.bias = ptr<const float>(bias);
    p.xq = ptr<const int8_t>(xq);
    p.xscale = ptr<const float>(xscale);
    p.lut = lut_mode(lut);
    return p;
  };

  m.def(
      "slt_linear",
      [problem](const slt::WeightDesc& w, uintptr_t x, int64_t M, int64_t ldx, uintptr_t y, int64_t ldy,
                int64_t row_begin, int64_t row_end, uintptr_t bias, uintptr_t xq, uintptr_t xscale,
                const std::string& isa, int threads, const std::string& lut, uintptr_t xb, uintptr_t lut_planes,
                int64_t lut_planes_bytes) {
        slt::cpu::LinearProblem p = problem(w, x, M, ldx, y, ldy, row_begin, row_end, bias, xq, xscale, lut, xb);
        p.lut_planes = ptr<const uint8_t>(lut_planes);
        p.lut_planes_bytes = lut_planes_bytes;
        const slt::cpu::Isa which = problem_isa(isa, p, threads);
        py::gil_scoped_release release;
        slt::cpu::slt_linear(p, which, threads);
      },
      "Fused y = x W_eff[row_begin:row_end]^T + bias (float32, row-major); xq/xscale: int8 activations; xb (x = "
      "0): bf16 activations; lut_planes: the weight's planes in the table lookup's layout (lut_layout, pack_lut_planes), or 0.",
      py::arg("w"), py::arg("x"), py::arg("M"), py::arg("ldx"), py::arg("y"), py::arg("ldy"), py::arg("row_begin"),
      py::arg("row_end"), py::arg("bias") = 0, py::arg("xq") = 0, py::arg("xscale") = 0, py::arg("isa") = "auto",
      py::arg("threads") = 0, py::arg("lut") = "auto", py::arg("xb") = 0, py::arg("lut_planes") = 0,
      py::arg("lut_planes_bytes") = 0);

  m.def(
      "lut_layout",
      [problem](const slt::WeightDesc& w, int64_t M, const std::string& isa, const std::string& lut, bool int8,
                int threads, bool bf16) {
        // only the kind of activations (float, bf16 or int8) matters here: stand-in pointers, never read
        static const int8_t xq = 0;
        static const float xscale = 0.0f;
        static float y = 0.0f;
        const uintptr_t q = int8 ? reinterpret_cast<uintptr_t>(&xq) : 0;
        const uintptr_t s = int8 ? reinterpret_cast<uintptr_t>(&xscale) : 0;
        const uintptr_t given = reinterpret_cast<uintptr_t>(&xscale);
        slt::cpu::LinearProblem p = problem(w, int8 || bf16 ? 0 : given, M, w.K, reinterpret_cast<uintptr_t>(&y), w.N,
                                            0, w.N, 0, q, s, lut, !int8 && bf16 ? given : 0);
        const slt::cpu::LutLayout kind = slt::cpu::lut_layout(p, problem_isa(isa, p, threads), threads);
        return py::make_tuple(kind == slt::cpu::LutLayout::kNone ? "" : slt::cpu::lut_layout_name(kind),
                              slt::cpu::lut_planes_bytes(w, kind));
      },
      "(kind, bytes) of the planes layout slt_linear would read for M rows of float (int8=False; bf16=True: "
      "bf16) or int8 activations on `threads` (0: OpenMP's default) where given one (pack_lut_planes): ('', 0) "
      "unless it runs an int8 table lookup or AVX-512 VNNI's int8 panels: AVX2's lookup reads the 'int8' layout "
      "(float activations too, as slices), AVX-512's the 'codes' one, the panels the 'panels' one.",
      py::arg("w"), py::arg("M"), py::arg("isa") = "auto", py::arg("lut") = "auto", py::arg("int8") = false,
      py::arg("threads") = 0, py::arg("bf16") = false);

  m.def(
      "pack_lut_planes",
      [](const slt::WeightDesc& w, const std::string& kind, uintptr_t dst, int64_t bytes, int threads) {
        if (kind != "int8" && kind != "codes" && kind != "panels")
          throw py::value_error("kind: expected 'int8', 'codes' or 'panels' (lut_layout's), got '" + kind + "'");
        const slt::cpu::LutLayout k = kind == "int8"    ? slt::cpu::LutLayout::kInt8
                                      : kind == "codes" ? slt::cpu::LutLayout::kCodes
                                                        : slt::cpu::LutLayout::kPanels;
        py::gil_scoped_release release;
        slt::cpu::pack_lut_planes(w, k, ptr<uint8_t>(dst), bytes, threads);
      },
      "The binary signed-constant weight's planes (P = mask & ~sign, N = mask & sign) in the `kind` layout "
      "(a table lookup's or the VNNI panels'), into dst (lut_layout's bytes, 32-byte aligned).",
      py::arg("w"), py::arg("kind"), py::arg("dst"), py::arg("bytes"), py::arg("threads") = 0);

  m.def(
      "quantize_int8",
      [](uintptr_t x, int64_t M, int64_t K, int64_t ldx, uintptr_t q, uintptr_t s) {
        py::gil_scoped_release release;
        slt::cpu::quantize_int8_rows(ptr<const float>(x), M, K, ldx, ptr<int8_t>(q), ptr<float>(s));
      },
      "Per-row symmetric int8 of float32 x (M x K, rows ldx apart) into q (M x K) and s (M): the bits of "
      "slt_hw.reference.quantize.quantize_activations for finite x.",
      py::arg("x"), py::arg("M"), py::arg("K"), py::arg("ldx"), py::arg("q"), py::arg("s"));

  m.def(
      "transpose_batched",
      [](uintptr_t src, uintptr_t dst, int64_t batch, int64_t rows, int64_t cols, int threads) {
        py::gil_scoped_release release;
        slt::cpu::transpose_batched(ptr<const float>(src), ptr<float>(dst), batch, rows, cols, threads);
      },
      "dst[b] = src[b]^T for `batch` contiguous float32 (rows x cols) matrices: NCHW <-> channels last.",
      py::arg("src"), py::arg("dst"), py::arg("batch"), py::arg("rows"), py::arg("cols"), py::arg("threads") = 0);
  m.def(
      "im2col_quantize_int8",
      [](uintptr_t x, std::vector<int64_t> shape, std::vector<int64_t> strides, std::vector<int64_t> kernel,
         std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t m0,
         int64_t m1, uintptr_t q, uintptr_t s, int threads, const std::string& isa) {
        slt::cpu::ConvInput g = conv_input(shape, strides, kernel, stride, padding, dilation);
        g.x = ptr<const float>(x);
        const slt::cpu::Isa which = parse_isa(isa);
        py::gil_scoped_release release;
        slt::cpu::im2col_quantize_int8(g, m0, m1, ptr<int8_t>(q), ptr<float>(s), threads, which);
      },
      "Rows [m0, m1) of the patch matrix of float32 x ((B, C, H, W) at element strides; row = output pixel "
      "(b, oh, ow), column (c, i, j) as F.unfold, zero padding), each quantized as quantize_int8 does a row: "
      "q (m1 - m0) x C*kh*kw int8, s (m1 - m0) float32. isa: the gather's ('auto': the best here; "
      "patch_gather names the one that runs), the same bits whichever.",
      py::arg("x"), py::arg("shape"), py::arg("strides"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("m0"), py::arg("m1"), py::arg("q"), py::arg("s"), py::arg("threads") = 0,
      py::arg("isa") = "auto");

  m.def(
      "quantize_int8_isa",
      [](uintptr_t x, int64_t M, int64_t K, int64_t ldx, uintptr_t q, uintptr_t s, int threads,
         const std::string& isa) {
        const slt::cpu::Isa which = parse_isa(isa);
        py::gil_scoped_release release;
        slt::cpu::quantize_int8_rows_isa(ptr<const float>(x), M, K, ldx, ptr<int8_t>(q), ptr<float>(s), threads,
                                         which);
      },
      "quantize_int8 with isa's vectors ('auto': the best here; the same bits for finite x) on `threads`: rows, "
      "or slices of them where the rows are fewer (slt_conv2d_int8's act_scale 'image': an image a row).",
      py::arg("x"), py::arg("M"), py::arg("K"), py::arg("ldx"), py::arg("q"), py::arg("s"), py::arg("threads") = 0,
      py::arg("isa") = "auto");
  m.def(
      "quantize_images_padded",
      [](uintptr_t x, int64_t B, int64_t H, int64_t W, int64_t C, int64_t pad_h, int64_t pad_w, uintptr_t q,
         uintptr_t s, int threads, const std::string& isa, int64_t Cq) {
        const slt::cpu::Isa which = parse_isa(isa);
        py::gil_scoped_release release;
        slt::cpu::quantize_images_padded(ptr<const float>(x), B, H, W, C, pad_h, pad_w, ptr<int8_t>(q), ptr<float>(s),
                                         threads, which, Cq);
      },
      "quantize_int8_isa of B channels-last float32 images (B x H x W x C, contiguous), an image a row, each "
      "written inside a zero frame: q B x (H + 2 pad_h) x (W + 2 pad_w) x Cq int8 (Cq: -1 for C; channels past C "
      "zero), s (B) float32.",
      py::arg("x"), py::arg("B"), py::arg("H"), py::arg("W"), py::arg("C"), py::arg("pad_h"), py::arg("pad_w"),
      py::arg("q"), py::arg("s"), py::arg("threads") = 0, py::arg("isa") = "auto", py::arg("Cq") = -1);
  m.def(
      "im2col_int8",
      [](uintptr_t xq, std::vector<int64_t> shape, std::vector<int64_t> strides, std::vector<int64_t> kernel,
         std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t m0,
         int64_t m1, uintptr_t q, uintptr_t s, uintptr_t image_scale, int threads, const std::string& isa) {
        const slt::cpu::ConvInput g = conv_input(shape, strides, kernel, stride, padding, dilation);
        const slt::cpu::Isa which = parse_isa(isa);
        py::gil_scoped_release release;
        slt::cpu::im2col_int8(g, ptr<const int8_t>(xq), ptr<const float>(image_scale), m0, m1, ptr<int8_t>(q),
                              ptr<float>(s), threads, which);
      },
      "Rows [m0, m1) of the patch matrix of int8 xq ((B, C, H, W) at element strides, quantized per image: "
      "quantize_int8_isa) as im2col_quantize_int8's, the bytes copied: q (m1 - m0) x C*kh*kw int8, s "
      "(m1 - m0) float32 each row's image_scale[b].",
      py::arg("xq"), py::arg("shape"), py::arg("strides"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("m0"), py::arg("m1"), py::arg("q"), py::arg("s"), py::arg("image_scale"),
      py::arg("threads") = 0, py::arg("isa") = "auto");

  m.def(
      "conv_int8_taps_refusal",
      [](const slt::WeightDesc& w, std::vector<int64_t> shape, std::vector<int64_t> strides,
         std::vector<int64_t> kernel, std::vector<int64_t> stride, std::vector<int64_t> padding,
         std::vector<int64_t> dilation, const std::string& isa, bool planes) {
        const slt::cpu::ConvInput g = conv_input(shape, strides, kernel, stride, padding, dilation);
        return slt::cpu::conv_int8_taps_refusal(w, g, parse_isa(isa), planes);
      },
      "'' where conv2d_int8_taps runs this convolution (one group of x: (B, C, H, W) at element strides) on "
      "isa (planes: with the weight's tap-major planes), else why not.",
      py::arg("w"), py::arg("shape"), py::arg("strides"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("isa") = "auto", py::arg("planes") = false);
  m.def("conv_taps_planes_bytes", &slt::cpu::conv_taps_planes_bytes,
        "Bytes of the weight's tap-major P/N planes for `taps` taps (pack_conv_taps_planes), header included.",
        py::arg("w"), py::arg("taps"));
  m.def("taps_channels", &slt::cpu::taps_channels,
        "Channels a tap in the implicit GEMM's images: C rounded up to a multiple of 4.", py::arg("C"));
  m.def(
      "pack_conv_taps_planes",
      [](const slt::WeightDesc& w, int64_t taps, uintptr_t dst, int64_t bytes, int threads) {
        py::gil_scoped_release release;
        slt::cpu::pack_conv_taps_planes(w, taps, ptr<uint8_t>(dst), bytes, threads);
      },
      "A binary signed-constant conv weight's planes P = mask & ~sign, N = mask & sign, columns tap-major (taps: "
      "kh * kw), per row its P words then its N words, after a 64-byte header: conv2d_int8_taps's cache.",
      py::arg("w"), py::arg("taps"), py::arg("dst"), py::arg("bytes"), py::arg("threads") = 0);
  m.def(
      "attention_decode",
      [](uintptr_t q, uintptr_t k, uintptr_t v, uintptr_t key_padding, uintptr_t out, int64_t B, int64_t T,
         int64_t S, int64_t H, int64_t D, int64_t DV, std::vector<int64_t> sq, std::vector<int64_t> sk,
         std::vector<int64_t> sv, bool causal, float scale, int threads, bool bf16, uintptr_t mask_bool,
         uintptr_t mask_add) {
        slt::cpu::AttentionArgs a;
        a.q = ptr<const void>(q), a.k = ptr<const void>(k), a.v = ptr<const void>(v), a.bf16 = bf16;
        a.key_padding = ptr<const bool>(key_padding), a.out = ptr<float>(out);
        a.mask_bool = ptr<const bool>(mask_bool), a.mask_add = ptr<const float>(mask_add);
        a.B = B, a.T = T, a.S = S, a.H = H, a.D = D, a.DV = DV, a.causal = causal, a.scale = scale;
        for (const auto* st : {&sq, &sk, &sv})
          if (st->size() != 3) throw std::invalid_argument("strides: expected 3 (batch, position, head)");
        for (int i = 0; i < 3; ++i) a.sq[i] = sq[size_t(i)], a.sk[i] = sk[size_t(i)], a.sv[i] = sv[size_t(i)];
        py::gil_scoped_release release;
        slt::cpu::attention_decode(a, threads);
      },
      "out (B, T, H, DV) float32 contiguous = softmax(q k^T scale, masked) v: q (B, T, H, D), k (B, S, H, D), v "
      "(B, S, H, DV) float32 (bfloat16 with bf16) with element strides (batch, position, head) and 1 along the "
      "head dim; attn_mask (T, S) contiguous as mask_bool (true = not allowed) or mask_add (float32 added to the "
      "scaled scores), or 0; key_padding "
      "(B, S) bool contiguous or 0; causal bottom-right aligned; a query with no key left gets zeros. T <= "
      "ATTENTION_DECODE_QUERIES (a decode step: one pass over the keys, one over the values).",
      py::arg("q"), py::arg("k"), py::arg("v"), py::arg("key_padding"), py::arg("out"), py::arg("B"), py::arg("T"),
      py::arg("S"), py::arg("H"), py::arg("D"), py::arg("DV"), py::arg("sq"), py::arg("sk"), py::arg("sv"),
      py::arg("causal"), py::arg("scale"), py::arg("threads") = 0, py::arg("bf16") = false,
      py::arg("mask_bool") = 0, py::arg("mask_add") = 0);
  m.attr("ATTENTION_DECODE_QUERIES") = slt::cpu::kDecodeQueries;
  m.def(
      "apply_epilogue",
      [](uintptr_t y, int64_t M, int64_t N, int64_t ldy, uintptr_t bias, uintptr_t scale, uintptr_t residual,
         int64_t ldr, bool relu, int threads) {
        slt::cpu::Epilogue e;
        e.scale = ptr<const float>(scale), e.residual = ptr<const float>(residual), e.ldr = ldr, e.relu = relu;
        py::gil_scoped_release release;
        slt::cpu::apply_epilogue(ptr<float>(y), M, N, ldy, ptr<const float>(bias), e, threads);
      },
      "y (M x N float32, rows ldy apart) = relu(y * scale[n] + bias[n] + residual[m][n]) in place (scale, bias, "
      "residual: 0 for none; residual rows ldr apart): conv2d_int8_taps's epilogue, the same bits, for outputs "
      "already stored.",
      py::arg("y"), py::arg("M"), py::arg("N"), py::arg("ldy"), py::arg("bias") = 0, py::arg("scale") = 0,
      py::arg("residual") = 0, py::arg("ldr") = 0, py::arg("relu") = false, py::arg("threads") = 0);
  m.def(
      "conv2d_int8_taps",
      [](const slt::WeightDesc& w, uintptr_t xq, std::vector<int64_t> shape, std::vector<int64_t> strides,
         std::vector<int64_t> kernel, std::vector<int64_t> stride, std::vector<int64_t> padding,
         std::vector<int64_t> dilation, uintptr_t y, int64_t ldy, int64_t row_begin, int64_t row_end, uintptr_t bias,
         uintptr_t image_scale, int threads, const std::string& isa, uintptr_t planes, int64_t planes_bytes,
         uintptr_t scale, uintptr_t residual, int64_t ldr, bool relu) {
        const slt::cpu::ConvInput g = conv_input(shape, strides, kernel, stride, padding, dilation);
        slt::cpu::Epilogue e;
        e.scale = ptr<const float>(scale), e.residual = ptr<const float>(residual), e.ldr = ldr, e.relu = relu;
        slt::cpu::LinearProblem p;
        static_cast<slt::WeightDesc&>(p) = w;
        p.y = ptr<float>(y), p.ldy = ldy, p.row_begin = row_begin, p.row_end = row_end;
        p.bias = ptr<const float>(bias);
        const slt::cpu::Isa which = parse_isa(isa);
        py::gil_scoped_release release;
        slt::cpu::conv2d_int8_taps(p, g, ptr<const int8_t>(xq), ptr<const float>(image_scale), threads, which,
                                   ptr<const uint8_t>(planes), planes_bytes, e);
      },
      "slt_conv2d_int8 (one group of x: shape (B, C, H, W)) with weight rows [row_begin, row_end) as an implicit "
      "GEMM, no patch matrix, over xq: x quantized per image (image_scale[b]) into a zero frame of the padding "
      "(quantize_images_padded), its first frame's corner, strides the framed images' (channels contiguous); "
      "y (B OH OW rows, ldy apart) float32, the same bits as im2col_int8 + slt_linear. planes: 0, or the weight's "
      "tap-major planes (pack_conv_taps_planes). conv_int8_taps_refusal says where it runs. The epilogue, in the "
      "output tiles' store: y = relu(y * scale[n] + bias[n] + residual[m][n]) (scale, residual: 0 for none; "
      "residual rows as y's, ldr apart), float32 in that order.",
      py::arg("w"), py::arg("xq"), py::arg("shape"), py::arg("strides"), py::arg("kernel"), py::arg("stride"),
      py::arg("padding"), py::arg("dilation"), py::arg("y"), py::arg("ldy"), py::arg("row_begin"), py::arg("row_end"),
      py::arg("bias") = 0, py::arg("image_scale") = 0, py::arg("threads") = 0, py::arg("isa") = "auto",
      py::arg("planes") = 0, py::arg("planes_bytes") = 0, py::arg("scale") = 0, py::arg("residual") = 0,
      py::arg("ldr") = 0, py::arg("relu") = false);

  py::class_<slt::cpu::LinearPlan, std::shared_ptr<slt::cpu::LinearPlan>>(
      m, "LinearPlan", py::module_local(),
      "slt_linear's calls for one activation shape (linear_plan): run(x, y) runs them in one call.")
      .def(
          "run",
          [](const slt::cpu::LinearPlan& plan, uintptr_t x, uintptr_t y) {
            py::gil_scoped_release release;
            plan.run(ptr<const float>(x), ptr<float>(y));
          },
          "y (M rows of row_end - row_begin float32) = x W_eff[row_begin:row_end]^T + bias, x: M rows of K "
          "float32, contiguous.",
          py::arg("x"), py::arg("y"));
  m.def(
      "linear_plan",
      [](const slt::WeightDesc& w, int64_t M, int64_t row_begin, int64_t row_end, bool int8, const std::string& isa,
         int threads, const std::string& lut, uintptr_t lut_planes, int64_t lut_planes_bytes, uintptr_t bias) {
        slt::cpu::LinearPlanSpec s;
        s.w = w, s.M = M, s.row_begin = row_begin, s.row_end = row_end, s.int8 = int8;
        s.isa = parse_isa(isa), s.isa_auto = isa == "auto", s.threads = threads, s.lut = lut_mode(lut);
        s.lut_planes = ptr<const uint8_t>(lut_planes), s.lut_planes_bytes = lut_planes_bytes;
        s.bias = ptr<const float>(bias);
        return std::make_shared<slt::cpu::LinearPlan>(std::move(s));
      },
      "A LinearPlan: slt_linear (int8: slt_linear_int8, x quantized per row first) of M rows with weight rows "
      "[row_begin, row_end), isa and lut as slt_linear takes them, lut_planes: the table lookup's layout for "
      "M rows (lut_layout, pack_lut_planes) or 0, bias (row_end - row_begin float32) or 0. Every pointer is "
      "the caller's to keep alive while the plan lives.",
      py::arg("w"), py::arg("M"), py::arg("row_begin"), py::arg("row_end"), py::arg("int8"), py::arg("isa"),
      py::arg("threads"), py::arg("lut"), py::arg("lut_planes"), py::arg("lut_planes_bytes"), py::arg("bias"));
  py::class_<slt::cpu::ConvInt8Plan, std::shared_ptr<slt::cpu::ConvInt8Plan>>(
      m, "ConvInt8Plan", py::module_local(),
      "slt_conv2d_int8's kernel calls for one input shape (conv_int8_plan): run(x, y, residual) runs them "
      "in one call.")
      .def_property_readonly("out_h", &slt::cpu::ConvInt8Plan::out_h)
      .def_property_readonly("out_w", &slt::cpu::ConvInt8Plan::out_w)
      .def(
          "run",
          [](const slt::cpu::ConvInt8Plan& plan, uintptr_t x, uintptr_t y, uintptr_t residual) {
            py::gil_scoped_release release;
            plan.run(ptr<const float>(x), ptr<float>(y), ptr<const float>(residual));
          },
          "y (B OH OW rows of N float32: a channels-last output) = the convolution of float32 x (the plan's shape "
          "and strides) with its epilogue; residual: as y, or 0.",
          py::arg("x"), py::arg("y"), py::arg("residual") = 0);
  m.def(
      "conv_int8_plan",
      [](const slt::WeightDesc& w, std::vector<int64_t> shape, std::vector<int64_t> strides,
         std::vector<int64_t> kernel, std::vector<int64_t> stride, std::vector<int64_t> padding,
         std::vector<int64_t> dilation, int64_t groups, const std::string& path, const std::string& act_scale,
         const std::string& isa, int threads, const std::string& lut, uintptr_t taps_planes,
         int64_t taps_planes_bytes, int64_t chunk, std::vector<int64_t> lut_rows, std::vector<uintptr_t> lut_planes,
         std::vector<int64_t> lut_planes_bytes, uintptr_t bias, uintptr_t scale, bool relu) {
        slt::cpu::ConvInt8PlanSpec s;
        s.w = w;
        s.x = conv_input(shape, strides, kernel, stride, padding, dilation);
        s.groups = groups;
        if (path != "taps" && path != "patches")
          throw py::value_error("path: expected 'taps' or 'patches', got '" + path + "'");
        if (act_scale != "image" && act_scale != "patch")
          throw py::value_error("act_scale: expected 'image' or 'patch', got '" + act_scale + "'");
        if (path == "taps" && act_scale != "image")
          throw py::value_error("act_scale: the implicit GEMM ('taps') quantizes per image, got '" + act_scale + "'");
        s.taps = path == "taps", s.image = act_scale == "image";
        s.isa = parse_isa(isa), s.isa_auto = isa == "auto", s.threads = threads;
        s.lut = lut_mode(lut);
        s.taps_planes = ptr<const uint8_t>(taps_planes), s.taps_planes_bytes = taps_planes_bytes;
        s.chunk = chunk;
        s.lut_rows = std::move(lut_rows), s.lut_planes_bytes = std::move(lut_planes_bytes);
        for (uintptr_t p : lut_planes) s.lut_planes.push_back(ptr<const uint8_t>(p));
        s.bias = ptr<const float>(bias), s.scale = ptr<const float>(scale), s.relu = relu;
        return std::make_shared<slt::cpu::ConvInt8Plan>(std::move(s));
      },
      "A ConvInt8Plan: slt_conv2d_int8 of x (shape (B, C, H, W), element strides; float32) with this weight, "
      "geometry and groups, on path 'taps' (conv2d_int8_taps, taps_planes: its tap-major planes or 0) or "
      "'patches' (im2col_int8 or im2col_quantize_int8 as act_scale says, slt_linear over chunks of `chunk` "
      "rows, lut_planes[i]: the table lookup's planes for chunks of lut_rows[i] rows), isa and lut as "
      "slt_linear takes them, bias and the epilogue's scale (N float32 or 0) and relu. Every pointer is the "
      "caller's to keep alive while the plan lives.",
      py::arg("w"), py::arg("shape"), py::arg("strides"), py::arg("kernel"), py::arg("stride"), py::arg("padding"),
      py::arg("dilation"), py::arg("groups"), py::arg("path"), py::arg("act_scale"), py::arg("isa"),
      py::arg("threads"), py::arg("lut"), py::arg("taps_planes"), py::arg("taps_planes_bytes"), py::arg("chunk"),
      py::arg("lut_rows"), py::arg("lut_planes"), py::arg("lut_planes_bytes"), py::arg("bias"), py::arg("scale"),
      py::arg("relu"));

  m.def(
      "patch_gather",
      [](int64_t C, bool channels_contiguous, std::vector<int64_t> kernel, const std::string& isa, bool quantized) {
        if (kernel.size() != 2) throw std::invalid_argument("kernel: expected a pair");
        slt::cpu::ConvInput g;
        g.C = C, g.sc = channels_contiguous ? 1 : 0, g.kh = kernel[0], g.kw = kernel[1];
        return std::string(slt::cpu::patch_gather_name(g, parse_isa(isa), quantized));
      },
      "Which patch gather im2col_quantize_int8 (quantized: im2col_int8) runs for C channels (contiguous or "
      "not) and a kernel on isa: 'avx512-vbmi', 'avx2' or 'scalar'.",
      py::arg("C"), py::arg("channels_contiguous"), py::arg("kernel"), py::arg("isa") = "auto",
      py::arg("quantized") = false);

  m.def(
      "slice_count",
      [](uintptr_t x, int64_t M, int64_t K, int64_t ldx) {
        py::gil_scoped_release release;
        return slt::cpu::slice_count(ptr<const float>(x), M, K, ldx);
      },
      "How many int8 slices float32 x (M x K, rows ldx apart) takes on AVX2's table lookup: 3 or 4, 0 where "
      "the float kernels run instead (a NaN or an infinity; quantize.h).",
      py::arg("x"), py::arg("M"), py::arg("K"), py::arg("ldx"));

  m.def(
      "slice_int8",
      [](uintptr_t x, int64_t M, int64_t K, int64_t ldx, int D, uintptr_t q, uintptr_t s) {
        if (D < slt::cpu::kMinSlices || D > slt::cpu::kMaxSlices)
          throw py::value_error("D: expected 3 or 4 slices, got " + std::to_string(D));
        py::gil_scoped_release release;
        slt::cpu::slice_int8_rows(ptr<const float>(x), M, K, ldx, D, ptr<int8_t>(q), ptr<float>(s));
      },
      "Finite float32 x (M x K, rows ldx apart) as D int8 slices per row into q (M D x K, most significant "
      "first, base 255) and s (M): x ~ s * sum_d q[d] 255^(D - 1 - d).",
      py::arg("x"), py::arg("M"), py::arg("K"), py::arg("ldx"), py::arg("D"), py::arg("q"), py::arg("s"));

  m.def(
      "cpu_auto_isa",
      [](bool int8, int64_t M, bool bf16, bool binary, int64_t n, int threads) {
        return slt::cpu::isa_name(auto_isa_for(int8, M, bf16, binary, n, threads));
      },
      "The ISA whose kernels slt_linear runs, chosen automatically, for M rows of int8, float or bf16 "
      "activations and an n x 4096 binary signed-constant weight (binary=False: a multicoat one) on "
      "`threads` (0: OpenMP's default).",
      py::arg("int8"), py::arg("M"), py::arg("bf16") = false, py::arg("binary") = true, py::arg("n") = 4096,
      py::arg("threads") = 0);

  m.def(
      "cpu_bf16_dot",
      [](const std::string& isa) {
        return slt::cpu::bf16_dot_supported(isa == "auto" ? slt::cpu::best_isa() : parse_isa(isa));
      },
      "Whether `isa` ('auto': the best here) runs bf16 activations past batch 8 (binary signed-constant "
      "weights) as AVX512-BF16 dot products on this CPU.",
      py::arg("isa") = "auto");

  m.def(
      "cpu_lut",
      [](const std::string& isa) {
        // auto: the ISAs auto_isa picks at one row of float / int8 activations
        const slt::cpu::Isa which = isa == "auto" ? auto_isa_for(false, 1) : parse_isa(isa);
        const slt::cpu::Isa which8 = isa == "auto" ? auto_isa_for(true, 1) : which;
        const slt::cpu::LutRows r = slt::cpu::lut_rows(which), r8 = slt::cpu::lut_rows(which8);
        py::dict d;
        d["isa"] = slt::cpu::isa_name(which);
        d["isa_int8"] = slt::cpu::isa_name(which8);
        d["available"] = slt::cpu::isa_supported(which) && r.max_float > 0;
        d["available_int8"] = slt::cpu::isa_supported(which8) && r8.max_int8 > 0;
        d["auto_rows"] = r.auto_float;
        d["auto_rows_int8"] = r8.auto_int8;
        d["max_rows"] = r.max_float;
        d["max_rows_int8"] = r8.max_int8;
        d["sliced_rows"] = r.sliced;  // (AVX2: every float row; AVX-512: its int8 lookup's few)
        return d;
      },
      "The table-lookup kernels of `isa` ('auto': those slt_linear picks, isa for float activations, "
      "isa_int8 for int8 ones; binary format, signed constant): whether this CPU runs them, and up to how "
      "many activation rows they run automatically and when forced, for float and int8 activations (0: never), "
      "and up to how many float rows run as int8 slices (sliced_rows).",
      py::arg("isa") = "auto");

  m.def("build_info", [] {
    py::dict d;
    d["contract_version"] = slt::kContractVersion;
    d["compiler_id"] = compiler_id();
    d["compiler_version"] = compiler_version();
    d["cxx_standard"] = static_cast<long>(__cplusplus);
    d["build_type"] = std::string(SLT_HW_BUILD_TYPE);
    d["flags"] = std::string(SLT_HW_CXX_FLAGS);
    d["openmp"] = slt::cpu::openmp_enabled();
    d["openmp_max_threads"] = slt::cpu::openmp_max_threads();
    d["cpu_isa"] = slt::cpu::isa_name(slt::cpu::best_isa());
#ifdef SLT_HW_WITH_CUDA
    d["cuda_built"] = true;
    d["cuda_archs"] = std::string(SLT_HW_CUDA_ARCHS);
    int rt = 0;
    cudaRuntimeGetVersion(&rt);  // the linked runtime; does not need a GPU
    d["cuda_runtime_version"] = rt;
#else
    d["cuda_built"] = false;
#endif
    return d;
  });
}
