// A convolution's epilogue over outputs already stored (the patch matrix's kernels, which do not
// take one): one pass where torch's ops would make four. Portable C++, vectorised by the
// compiler: multiplies, adds and a compare have the same bits at any width (no contraction,
// CMakeLists.txt), so these are the bits of store_i8_tile's fused epilogue.
#include <stdexcept>

#include "generate.h"
#include "linear.h"

namespace slt {
namespace cpu {
namespace {

// One row, its parts fixed at compile time: no branch in the loop, and restrict pointers, so
// that the compiler vectorises it (a loop testing each part per element ran ~6 ns an output).
template <bool kScale, bool kBias, bool kResidual, bool kRelu>
void epilogue_row(float* __restrict y, const float* __restrict scale, const float* __restrict bias,
                  const float* __restrict residual, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float v = y[i];
    if (kScale) v = v * scale[i];
    if (kBias) v = v + bias[i];
    if (kResidual) v = v + residual[i];
    if (kRelu) v = v < 0.0f ? 0.0f : v;
    y[i] = v;
  }
}

using EpilogueRow = void (*)(float*, const float*, const float*, const float*, int64_t);

template <int kParts>
constexpr EpilogueRow row_for() {
  return epilogue_row<(kParts & 1) != 0, (kParts & 2) != 0, (kParts & 4) != 0, (kParts & 8) != 0>;
}

constexpr EpilogueRow kRows[16] = {row_for<0>(),  row_for<1>(),  row_for<2>(),  row_for<3>(),
                                   row_for<4>(),  row_for<5>(),  row_for<6>(),  row_for<7>(),
                                   row_for<8>(),  row_for<9>(),  row_for<10>(), row_for<11>(),
                                   row_for<12>(), row_for<13>(), row_for<14>(), row_for<15>()};

}  // namespace

void apply_epilogue(float* y, int64_t M, int64_t N, int64_t ldy, const float* bias, const Epilogue& e, int threads) {
  if (M < 0 || N < 0) throw std::invalid_argument("apply_epilogue: M and N must be >= 0");
  if (M == 0 || N == 0) return;
  if (y == nullptr) throw std::invalid_argument("y: null pointer");
  if (ldy < N) throw std::invalid_argument("y: row stride smaller than the number of columns");
  if (e.residual != nullptr && e.ldr < N)
    throw std::invalid_argument("residual: row stride smaller than the number of columns");
  const int nt = resolve_threads(threads);
  const EpilogueRow row = kRows[(e.scale ? 1 : 0) | (bias ? 2 : 0) | (e.residual ? 4 : 0) | (e.relu ? 8 : 0)];
#ifdef _OPENMP
#pragma omp parallel for num_threads(nt) schedule(static) if (M * N >= (int64_t(1) << 16))
#endif
  for (int64_t m = 0; m < M; ++m) row(y + m * ldy, e.scale, bias, e.residual ? e.residual + m * e.ldr : nullptr, N);
  (void)nt;
}

}  // namespace cpu
}  // namespace slt
