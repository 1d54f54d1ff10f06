// The AVX-512 kernels with VNNI int8 sums (vpdpbusd): linear_avx512.cpp compiled a second time
// with -mavx512vnni (CMakeLists.txt), in namespace avx512vnni. Its float paths are the same code.
#define SLT_HW_AVX512_VNNI 1
#include "linear_avx512.cpp"
