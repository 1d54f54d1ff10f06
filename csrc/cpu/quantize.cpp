// See quantize.h. Portable code (no ISA flags): GCC vectorizes both loops with SSE2.
#include "quantize.h"

#include <cmath>

namespace slt {
namespace cpu {

void quantize_int8_rows(const float* x, int64_t M, int64_t K, int64_t ldx, int8_t* q, float* s) {
  // Adding and taking off 1.5 * 2^23 rounds a float of magnitude <= 2^22 to an integer, half to
  // even (the default rounding mode, as torch.round); clamping to the integer bounds first gives
  // the same result as rounding first.
  constexpr float kRound = 12582912.0f;
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * ldx;
    float amax = 0.0f;
    for (int64_t k = 0; k < K; ++k) amax = std::fmax(amax, std::fabs(xr[k]));
    float sc = amax / 127.0f;
    if (!(sc > 0.0f)) sc = 1.0f;
    s[m] = sc;
    int8_t* qr = q + m * K;
    for (int64_t k = 0; k < K; ++k) {
      float v = xr[k] / sc;
      v = v < -127.0f ? -127.0f : v;
      v = v > 127.0f ? 127.0f : v;
      v = (v + kRound) - kRound;
      qr[k] = v == v ? int8_t(v) : int8_t(0);
    }
  }
}

}  // namespace cpu
}  // namespace slt
