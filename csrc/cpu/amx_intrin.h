// The AMX intrinsics of linear_amx.cpp: <immintrin.h>, or in test builds
// (SLT_HW_AVX512_EMULATED) a plain C++ stand-in for the few it uses, so that the kernel's tile
// layout and blocking are checked on CPUs without AMX (as SIMDe does for AVX-512, which has no
// AMX). The stand-in follows the SDM's pseudo-code. TDPBF16PS: per output row m, k ascending,
// c[m][n] += a[m][2k] * b[k][2n], then += a[m][2k + 1] * b[k][2n + 1], each an fp32 add of an
// exact product, bf16 inputs with denormals read as zero. TDPBSSD: exact int32 sums. Tiles are
// 16 rows of 64 bytes (the one configuration the kernel loads), one set per thread, as a core's
// tile registers.
#pragma once

#if defined(SLT_HW_AVX512_EMULATED)
#include <cstdint>
#include <cstring>

namespace slt {
namespace cpu {
namespace amx_emulation {

struct Tile {
  unsigned char row[16][64];
};
inline thread_local Tile tiles[8];

inline void load(int t, const void* base, long stride) {
  for (int r = 0; r < 16; ++r) std::memcpy(tiles[t].row[r], static_cast<const char*>(base) + r * stride, 64);
}
inline void store(int t, void* base, long stride) {
  for (int r = 0; r < 16; ++r) std::memcpy(static_cast<char*>(base) + r * stride, tiles[t].row[r], 64);
}
inline void zero(int t) { std::memset(tiles[t].row, 0, sizeof(tiles[t].row)); }

inline float bf16(const unsigned char* row, int i) {
  uint16_t h;
  std::memcpy(&h, row + 2 * i, 2);
  uint32_t u = uint32_t(h) << 16;
  if ((u & 0x7F800000u) == 0) u &= 0x80000000u;  // DAZ
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline void dpbf16ps(int c, int a, int b) {
  for (int m = 0; m < 16; ++m) {
    float acc[16];
    std::memcpy(acc, tiles[c].row[m], 64);
    for (int k = 0; k < 16; ++k)
      for (int n = 0; n < 16; ++n) {
        acc[n] += bf16(tiles[a].row[m], 2 * k) * bf16(tiles[b].row[k], 2 * n);
        acc[n] += bf16(tiles[a].row[m], 2 * k + 1) * bf16(tiles[b].row[k], 2 * n + 1);
      }
    std::memcpy(tiles[c].row[m], acc, 64);
  }
}

// TDPBSSD: c[m][n] (int32) += sum over k, i < 4 of int8 a[m][4k + i] * int8 b[k][4n + i].
inline void dpbssd(int c, int a, int b) {
  for (int m = 0; m < 16; ++m) {
    int32_t acc[16];
    std::memcpy(acc, tiles[c].row[m], 64);
    for (int k = 0; k < 16; ++k)
      for (int n = 0; n < 16; ++n)
        for (int i = 0; i < 4; ++i)
          acc[n] += int32_t(int8_t(tiles[a].row[m][4 * k + i])) * int32_t(int8_t(tiles[b].row[k][4 * n + i]));
    std::memcpy(tiles[c].row[m], acc, 64);
  }
}

}  // namespace amx_emulation
}  // namespace cpu
}  // namespace slt

#define _tile_loadconfig(cfg) ((void)(cfg))
#define _tile_release() ((void)0)
#define _tile_zero(t) slt::cpu::amx_emulation::zero(t)
#define _tile_loadd(t, base, stride) slt::cpu::amx_emulation::load(t, base, stride)
#define _tile_stored(t, base, stride) slt::cpu::amx_emulation::store(t, base, stride)
#define _tile_dpbf16ps(c, a, b) slt::cpu::amx_emulation::dpbf16ps(c, a, b)
#define _tile_dpbssd(c, a, b) slt::cpu::amx_emulation::dpbssd(c, a, b)
#else
#include <immintrin.h>
#endif
