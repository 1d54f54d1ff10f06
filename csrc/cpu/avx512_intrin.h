// The intrinsics of linear_avx512.cpp: <immintrin.h>, or in test builds
// (SLT_HW_AVX512_EMULATED) SIMDe's emulation of the same names, so that the AVX-512 code is
// checked on CPUs without AVX-512. Only that TU includes this.
#pragma once

#if defined(SLT_HW_AVX512_EMULATED)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
// SIMDe 0.7.4 aliases _mm512_madd_epi16 to its 4-argument masked form.
#undef _mm512_madd_epi16
#define _mm512_madd_epi16(a, b) simde_mm512_madd_epi16(a, b)
// ... and names its _mm512_cvtepu32_ps alias _mm512_cvtepu32_epi32 (it has no _mm512_cvtepi32_ps).
#define _mm512_cvtepu32_ps(a) simde_mm512_cvtepu32_ps(a)
using slt_mask16 = simde__mmask16;  // SIMDe has no __mmask* aliases
using slt_mask32 = simde__mmask32;
using slt_mask64 = simde__mmask64;
#else
// GCC 12's _mm*_undefined_* trip -Wuninitialized once inlined (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
using slt_mask16 = __mmask16;
using slt_mask32 = __mmask32;
using slt_mask64 = __mmask64;
#endif
