// The int8 activation quantizer of the CPU int8 path, in C++ so that a small call does not pay
// seven torch operator calls (~80 us) before its kernel. The same bits as
// slt_hw/reference/quantize.py for finite x (tests/test_cpu_kernels.py checks it).
#pragma once

#include <cstdint>

namespace slt {
namespace cpu {

// Dynamic per-row symmetric int8: s[m] = max_k |x[m, k]| / 127 (1 where that is 0), q[m, k] =
// round half to even of clamp(x[m, k] / s[m], -127, 127); x rows ldx apart, q rows K apart.
// NaN activations quantize to 0.
void quantize_int8_rows(const float* x, int64_t M, int64_t K, int64_t ldx, int8_t* q, float* s);

}  // namespace cpu
}  // namespace slt
