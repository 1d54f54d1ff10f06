// Fused SLT linear on the CPU: y = x W_eff^T + b, W_eff regenerated from (k0, k1) and the masks
// row by row into registers, never materialised. Torch-free: raw pointers and sizes.
//
// Per output row n (rows split across OpenMP threads):
//   1. row descriptor: the row's sign words (signed constant: one hash per 32 weights) or its
//      float values (uniform/normal: one hash per 2 weights), and for the frozen format its
//      effective mask words (freeze states + the free-bit stream);
//   2. for each 32-weight word with any mask bit set: the 32 effective weights are built in
//      vector registers (sign xor scale, and-ed with the mask lanes, summed over coats) and
//      multiplied into up to 8 activation rows at once (register-blocked over the batch).
// More activation rows than that: the weights of a 1024-column block are built once into an L1
// buffer (float32, or int8 {-1, 0, +1} for int8 activations) and a register-blocked micro-kernel
// multiplies them into every row (linear_blocked.inc).
#pragma once

#include <cstdint>
#include <memory>

#include "../core/weight_desc.h"

namespace slt {
namespace cpu {

// kAvx512: AVX512F/BW/VL/DQ + FMA; kAvx512Vnni: the same plus VNNI for the int8 sums. kAmx:
// kAvx512Vnni plus AMX tiles (AMX-TILE, -BF16, -INT8) for bf16 and int8 activations; never
// chosen by best_isa() until it has run on such a CPU, only when forced. A test build may
// compile these against SIMDe and amx_intrin.h's stand-in instead (SLT_HW_AVX512_EMULATED):
// then they are named "avx512-emulated" / "avx512vnni-emulated" / "amx-emulated" and never
// chosen by best_isa().
enum class Isa : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2, kAvx512Vnni = 3, kAmx = 4 };
constexpr Isa kAllIsas[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512, Isa::kAvx512Vnni, Isa::kAmx};

// ptr rounded up to a 64-byte boundary (kernels' scratch and tables: a zmm load split across
// two cache lines costs twice); the buffer holds 64 bytes of slack for it.
template <typename T>
inline T* align64(void* ptr) {
  return reinterpret_cast<T*>((reinterpret_cast<uintptr_t>(ptr) + 63) & ~uintptr_t(63));
}

// A kernel reading a cached weight layout as one sequential stream asks for the lines
// kStreamAhead bytes past the ones it reads (prefetch_ahead, into L2): the hardware prefetchers
// stop at each 4 KiB page's end, and a layout larger than the L3 (a model's layers, each read
// once per step) had its calls run from DRAM at 2-2.5x their time with it in the L3. Zen 4, one
// thread, 8 layers of 11008 x 4096 and 4096 x 11008 at batch 1: 8.0 -> 3.4 ms (AVX-512's codes),
// 8.0 -> 4.0 ms (AVX2's planes); from 8 KiB on, level.
constexpr int64_t kStreamAhead = 8 << 10;

// The `lines` 64-byte lines from kStreamAhead bytes past p (an address that may pass the layout's
// end: a prefetch does not fault).
inline void prefetch_ahead(const void* p, int64_t lines) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p) + kStreamAhead;
  for (int64_t i = 0; i < lines; ++i) __builtin_prefetch(reinterpret_cast<const void*>(a + 64 * i), 0, 2);
}

// n elements, 64-byte aligned, in buf (allocated to hold them; not zeroed: the table builders write
// every element they read, and zeroing a call's tables had cost as much as building them).
template <class T>
T* aligned64(std::unique_ptr<T[]>& buf, size_t n) {
  buf.reset(new T[n + 64 / sizeof(T)]);
  return align64<T>(buf.get());
}

// Weight rows [row_begin, row_end) as tasks of `block` rows in `ranges` equal ranges, task t's
// rows [n0, n1): where the tasks would not share out evenly among the threads, a range a
// thread (rows a multiple of 16 ranges: whole 16-row groups each; with schedule(static) a
// thread's consecutive tasks are its range); one range: plain tasks.
struct RowRanges {
  RowRanges(int64_t row_begin, int64_t row_end, int64_t ranges, int64_t block)
      : first(row_begin), range((row_end - row_begin) / ranges), block(block), ranges(ranges),
        per_range(((row_end - row_begin) / ranges + block - 1) / block) {}
  int64_t tasks() const { return per_range * ranges; }
  void rows(int64_t t, int64_t* n0, int64_t* n1) const {
    const int64_t begin = first + t / per_range * range, at = begin + t % per_range * block;
    *n0 = at, *n1 = at + block < begin + range ? at + block : begin + range;
  }
  int64_t first, range, block, ranges, per_range;
};

constexpr int64_t kSmallBatch = 8;   // up to this many activation rows: weights in registers only
constexpr int64_t kSmallBatchInt8 = 8;  // int8 (AVX-512 and scalar): the register kernels up to this many rows
// AVX-512's int8 register kernel reads xq (M rows, Kp bytes apart), 64 bytes of slack, then each
// row's sum_k xq[m, k] as int32 (slt_linear appends them: int8_row_sums_bytes more bytes).
inline int64_t int8_row_sums_bytes(int64_t M) { return 4 * M; }
inline const int32_t* int8_row_sums(const int8_t* xq, int64_t Kp, int64_t M) {
  return reinterpret_cast<const int32_t*>(xq + M * Kp + 64);
}
constexpr int64_t kSmallBatchInt8Avx2 = 32;  // int8, AVX2: the bit-sliced register kernel, 8 rows a pass
// Multicoat weights whose coats share one scale g (what slt_hw's search exports: levels
// 0..C, coat_scales all 1) are g * (+-1) * level, an integer times g. The int8 kernels then
// join the coats as integers, y = (g * float(sum_c S_c)) * scale * xscale + b (a binary
// weight's rounding, with sum_c S_c as its sum). AVX2's register kernel and the blocked
// kernels go further: they build the weights' level bytes once and multiply them in one pass
// instead of a pass per coat. Only while the int32 sums of (x + 128) * level stay exact
// (255 C Kp < 2^31) and for up to kMaxLevelCoats coats (the blocked kernels' int16 pair sums,
// kI8TileCols / C columns a micro-kernel call: at least one 64-byte step).
constexpr int64_t kMaxLevelCoats = 32;
inline bool coat_levels(const WeightDesc& w) {
  if (w.planes == nullptr || w.C < 2 || w.C > kMaxLevelCoats || w.coat_scales == nullptr) return false;
  if (255 * w.C * (32 * ((w.K + 31) / 32)) >= (int64_t(1) << 31)) return false;
  for (int64_t c = 1; c < w.C; ++c)
    if (!(w.coat_scales[c] == w.coat_scales[0])) return false;
  return true;
}
constexpr int64_t kTaskRows = 48;    // weight rows per thread task above it (a multiple of 3)
constexpr int64_t kBlockWords = 32;  // large-batch column block: the frozen offset table's 1024
constexpr int64_t kBlockCols = 32 * kBlockWords;
constexpr int64_t kChunkRows = 64;   // large batch: activation rows per pass (kept in L2)
constexpr int64_t kYChunkRows = 512;  // AVX2 float and AVX-512 bf16, large batch: activation rows per output tile
// one 1024-column block's row descriptor (linear_rowdesc.inc, row_scratch): sign and mask words,
// hashes, values
constexpr int64_t kBlockDescFloats = 2 * kBlockWords + 16 * kBlockWords + kBlockCols;
// int8, large batch: a task's tiles of every block and coat are built once and kept across its
// activation chunks (kChunkRows rows) where they take at most kHeldTilesMax bytes, else rebuilt
// per chunk (the contract's sign hash and the byte expansion: ~10 % of a 3136-row call).
// held_tile_floats: the scratch floats this adds to scratch_floats (0: not held).
constexpr int64_t kHeldTilesMax = 256 << 10;
// Coat c of a multicoat weight as a weight of one coat (its mask plane; the signs are every coat's).
inline WeightDesc coat_desc(const WeightDesc& w, int64_t c) {
  WeightDesc d = w;
  d.planes = w.planes + c * w.N * ((w.K + 31) / 32);
  d.C = 1;
  d.coat_scales = w.coat_scales + c;
  return d;
}
// (the blocked int8 kernel's passes over its tiles: one per coat, one for coats as levels)
inline int64_t tile_passes(const WeightDesc& w) { return w.planes == nullptr || coat_levels(w) ? 1 : w.C; }
inline int64_t held_tile_bytes(int64_t K, int64_t coats, int64_t M) {
  const int64_t bytes = coats * ((K + kBlockCols - 1) / kBlockCols) * kTaskRows * kBlockCols;
  return M > kChunkRows && bytes <= kHeldTilesMax ? bytes : 0;
}
inline int64_t held_tile_floats(int64_t K, int64_t coats, int64_t M) {
  const int64_t bytes = held_tile_bytes(K, coats, M);
  return bytes ? (bytes - kTaskRows * kBlockCols) / 4 + coats * kTaskRows : 0;
}
// Table-lookup kernel (AVX2, binary format, signed constant; int8 activations, and float ones
// as 3 or 4 int8 slices each, quantize.h): up to kLutMaxRowsSliced (float) / kLutMaxRowsInt8
// activation rows when forced, up to kLutAutoRowsSliced / kLutAutoRowsInt8 when chosen
// automatically: where it measured faster than the other kernels (docs/benchmarks.md). int8,
// automatically only while its tables (8 bytes per activation row and column, read again by
// every 32-row block) fit kLutAutoTableBytesInt8: past that it lost to the blocked kernel on
// a 16 MiB L3 (4096 x 11008 at batch 256: 22 MiB of tables).
constexpr int64_t kLutMaxRowsInt8 = 512;
// AVX2's int8 panels (below) instead of the table lookup, chosen automatically from this many
// rows (Zen 3, 4096 and 11008 x 4096, the lookup's time / the panels': 0.9-1.15x at 24-48 rows,
// within the VM's noise, 1.0-1.15x at 64, 1.2x at 128, 1.2-1.4x at 256; docs/benchmarks.md).
constexpr int64_t kPanelRowsInt8Avx2 = 64;
constexpr int64_t kLutMaxRowsSliced = kLutMaxRowsInt8 / 4;  // (4: kMaxSlices)
constexpr int64_t kLutAutoRowsSliced = 24;
constexpr int64_t kLutAutoSliceRows = 3 * kLutAutoRowsSliced;  // automatically: slices in all (rows times 3 or 4)
// Multicoat weights (a lookup pass per coat; the register kernels share each weight's sign and x
// loads among the coats): automatically while slices times coats stay within this many (3
// coats, 4096 and 11008 x 4096, Zen 3, one thread: the slices 2.7-2.8x the register kernels'
// speed at 1 row, 1.4-1.5x at 2, 0.9x at 4, 0.5-0.64x at 8; docs/benchmarks.md, step 21).
constexpr int64_t kLutAutoSliceCoatRows = 18;
// ... and int8 ones of coats sharing a scale (coat_levels: the register kernels take them in one
// pass over their levels) up to this many rows (3 coats, 4096 x 4096, 11008 x 4096 and 4096 x
// 11008, Zen 3, one thread: the lookup 1.1-1.2x the register kernel at 2 rows, 0.75-0.98x at 4).
constexpr int64_t kLutAutoRowsInt8Levels = 2;
constexpr int64_t kLutAutoRowsInt8 = 512;
constexpr int64_t kLutAutoTableBytesInt8 = int64_t(12) << 20;
// Chosen automatically, it also needs enough weight rows per thread to pay for its tables,
// which one thread builds (work ~ M K) before the threads look them up: N / threads >=
// kLutAutoRowsPerThreadInt8 with int8 activations, >= kLutAutoRowsPerThreadSliced * M with float
// ones (1 and 2 threads, 128-11008 rows, 1152-11008 columns: the float slices at 16 rows and
// 256-512 weight rows had been 0.3-0.6x the register kernels, at 4096 rows 1.2-1.3x them;
// docs/benchmarks.md, step 9). The same int8 rule for AVX-512's int8 lookup (Zen 4, 2 threads:
// 1.0-1.3x the register kernel at 512 weight rows a thread and 1-8 rows, 0.7-0.85x at 256).
constexpr int64_t kLutAutoRowsPerThreadInt8 = 512;
constexpr int64_t kLutAutoRowsPerThreadSliced = 128;
constexpr int64_t kLutBlockRowsInt8 = 32;  // int8: weight rows per task and per block of its mask layout
// AVX-512 (linear_avx512lut.cpp): float activations only, up to kSmallBatch rows, also chosen
// automatically (AMD Zen 4, 2 threads, 4096-11008 rows and columns: 1.6-2.3x the register kernel
// at 4-8 rows; 1024 x 1024 even); weight rows per thread task (a multiple of 16: the tasks'
// 16-row blocks share each column chunk's tables).
constexpr int64_t kLutMaxRowsAvx512 = kSmallBatch;
constexpr int64_t kLutAutoRowsAvx512 = kSmallBatch;
constexpr int64_t kLutTaskRowsAvx512 = 128;
// AVX-512's int8 table lookup (linear_avx512lut8.cpp; tasks of up to kLutTaskRowsInt8Avx512 rows): up
// to kLutMaxRowsInt8Avx512 int8 rows when forced, kLutAutoRowsInt8Avx512 chosen automatically.
constexpr int64_t kLutMaxRowsInt8Avx512 = 128;
// ... which also takes float activations up to this many rows, as int8 slices (sliced_applies;
// Zen 4, one thread: 1.3-1.8x AVX-512's float lookup at 1-2 rows; at 3-4 rows level with it where
// a layer's layout sits in the L3 and 1.2-1.25x in a model larger than the L3 (8 layers of
// 11008 x 4096 and 4096 x 11008: the codes stream, the float lookup's 16 mask rows do not); at
// 8 rows 0.76x and 0.84x).
constexpr int64_t kLutSlicedRowsAvx512 = 4;
constexpr int64_t kLutTaskRowsInt8Avx512 = 512;
constexpr int64_t kLutAutoRowsInt8Avx512 = 16;
// AMX (linear_amx.cpp): bf16 activations from this many rows (a pair of 16-row tiles), weight
// rows per thread task (two 16-row B tiles).
constexpr int64_t kAmxMinRows = 16;
constexpr int64_t kAmxTaskRows = 32;
enum class LutMode : int { kAuto = -1, kOff = 0, kOn = 1 };
// Up to how many activation rows `isa`'s table-lookup kernel runs: chosen automatically (float,
// int8 activations) and when forced; all zero where the ISA has none.
struct LutRows {
  int64_t auto_float = 0, auto_int8 = 0, max_float = 0, max_int8 = 0;
  int64_t sliced = 0;  // float rows run as int8 slices through the int8 lookup, at most
};
LutRows lut_rows(Isa isa);

// What a convolution's output store applies after its bias, fused (slt_conv2d_int8's out_scale,
// residual and relu): y = relu(y * scale[n] + bias[n] + residual[m][n]), each part optional, in
// this order, in float32 and without contraction: the bits of the same ops run one by one.
struct Epilogue {
  const float* scale = nullptr;     // per output column (row_end - row_begin of the problem), or null
  const float* residual = nullptr;  // per output row and column, rows ldr apart, or null
  int64_t ldr = 0;
  bool relu = false;
  bool empty() const { return scale == nullptr && residual == nullptr && !relu; }
};

// One int8 output from its exact sum d = sum_k t x: relu(g float(d) scale xscale (* es[n]) +
// bias[n] (+ res[n])), float32 in that order (es, bias, res: null for none), the int8 panels'
// and the implicit GEMM's store on any ISA (store_i8_tile's step, AVX2's convolution).
inline float int8_output(float g, int32_t d, float scale, float xscale, const float* es, const float* bias,
                         const float* res, int64_t n, bool relu) {
  float v = g * float(d) * scale * xscale;
  if (es) v = v * es[n];
  v = v + (bias ? bias[n] : 0.0f);
  if (res) v = v + res[n];
  return relu && v < 0.0f ? 0.0f : v;
}

// y (M x N, rows ldy apart) = the epilogue e of y, with bias (N or null) after e's scale: for
// outputs that kernels without an epilogue stored (epilogue.cpp).
void apply_epilogue(float* y, int64_t M, int64_t N, int64_t ldy, const float* bias, const Epilogue& e, int threads);

// The weight (N, K, keys, masks) is the WeightDesc part; the rest is this call's.
struct LinearProblem : WeightDesc {
  const float* x = nullptr;  // (M, K), row stride ldx
  const uint16_t* xb = nullptr;  // or bf16 activations (M, K), row stride ldx (read exactly as float)
  // int8 activations (signed constant only): x quantized per row, x[m, k] ~ xq[m, k] * xscale[m]
  const int8_t* xq = nullptr;
  const float* xscale = nullptr;
  int64_t M = 0, ldx = 0;
  float* y = nullptr;  // (M, row_end - row_begin), row stride ldy
  int64_t ldy = 0;
  // computed rows [row_begin, row_end) of the weight (a convolution group); y and bias hold
  // row_end - row_begin columns. Counters still use the absolute row.
  int64_t row_begin = 0, row_end = 0;
  const float* bias = nullptr;  // (row_end - row_begin) or null
  LutMode lut = LutMode::kAuto;  // the table-lookup kernel: where it applies (lut_applies)
  // The weight's ternary planes in the layout of the table lookup that runs this problem
  // (pack_lut_planes of this weight and lut_layout(*this, isa)'s kind, lut_planes_bytes bytes,
  // 32-byte aligned), or null: that kernel then hashes the signs and transposes the masks itself.
  const uint8_t* lut_planes = nullptr;
  int64_t lut_planes_bytes = 0;
  // Set by slt_linear only: xq holds float activations as `slices` int8 rows per row of y
  // (slice_int8_rows), M counts those rows, xscale has one entry per row of y. 0: not sliced.
  int slices = 0;
};

bool isa_supported(Isa isa);
// Whether the CPU has an AVX-512 extension beyond an ISA's own (a feature name of
// __builtin_cpu_supports, a string literal): the CPU's answer, true in emulated builds (SIMDe
// emulates it), false where no AVX-512 code is built.
#if defined(SLT_HW_AVX512_EMULATED)
#define SLT_HW_CPU_HAS_AVX512_EXTENSION(feature) true
#elif defined(SLT_HW_HAVE_AVX512)
#define SLT_HW_CPU_HAS_AVX512_EXTENSION(feature) __builtin_cpu_supports(feature)
#else
#define SLT_HW_CPU_HAS_AVX512_EXTENSION(feature) false
#endif
Isa best_isa();
// The ISA whose kernels run a problem on `threads` when the caller leaves the choice to the
// library ("auto"): best_isa(), except on an AVX-512 CPU for the problems where AVX2's kernels
// measured faster (AMD Zen 4, docs/benchmarks.md, steps 10-11):
// - int8 activations with binary signed-constant weights stay on AVX-512 VNNI: its table lookup
//   (up to kLutAutoRowsInt8Avx512 rows, enough weight rows a thread; lut_applies), its register
//   kernels (a small layer, or a one-off call; 1.1-1.7x AVX2's), and past them VNNI's panels
//   (from their layout, 1.4-1.6x AVX2's table lookup at 17-23 rows, which ran there until the
//   panels had a layout of their own: docs/benchmarks.md, step 18);
// - int8 activations with the other formats below kAutoRowsInt8BlockedAvx512 rows (AVX-512
//   VNNI's blocked kernel 1.05-1.7x AVX2's from there), and at every batch without VNNI;
// - float activations past kSmallBatch rows (AVX2's panel GEMM: 1.2-2.3x AVX-512's dot
//   products), unless they are bf16 ones that AVX512-BF16's kernel takes (bf16_dot_applies).
// Float activations up to kSmallBatch rows stay on AVX-512 (its table lookup, mask registers).
constexpr int64_t kAutoRowsInt8BlockedAvx512 = 64;
Isa auto_isa(const LinearProblem& p, int threads);
// Whether slt_linear runs this problem with AVX512-BF16 dot products: kAvx512Vnni (or kAmx
// where its tiles do not take it) on a CPU with AVX512-BF16, bf16 activations, more than
// kSmallBatch rows, one mask plane, signed constant.
bool bf16_dot_applies(const LinearProblem& p, Isa isa);
bool bf16_dot_supported(Isa isa);  // that ISA and CPU run the kernel (for the problems above)
const char* isa_name(Isa isa);
bool isa_from_name(const char* name, Isa* isa);

// Whether slt_linear runs this problem with the table-lookup kernel: one mask plane, signed
// constant, 1 <= M <= lut_rows(isa)'s limit for the mode (auto or forced on) and activations;
// automatically on AVX2, enough weight rows for `threads` (<= 0: OpenMP's default) too.
bool lut_applies(const LinearProblem& p, Isa isa, int threads);

// Whether slt_linear runs this problem's float (or bf16) activations as int8 slices through an
// int8 table lookup (lut_applies, and AVX2, or AVX-512 up to kLutSlicedRowsAvx512 rows with,
// automatically, kLutAutoRowsPerThreadInt8 weight rows a thread). A row holding a NaN or an
// infinity still takes the float register kernels.
bool sliced_applies(const LinearProblem& p, Isa isa, int threads);

// Whether slt_linear runs this problem with an AMX kernel: kAmx, bf16 or int8 activations, one
// mask plane, signed constant, M >= kAmxMinRows.
bool amx_applies(const LinearProblem& p, Isa isa);

// A signed-constant binary weight as AVX2's table lookup reads it: the planes P = mask & ~sign
// and N = mask & sign (the contract's sign hash done once), each 32-column word's rows side by
// side in the kernel's order. Two bits per weight; a cache of the caller's
// (slt_hw/backends/cpu.py), saving the hash and the mask transposes of every call.
//   kInt8: 32-row blocks, per word the P words' 4 bytes then the N words', each byte of the 32
//          rows in one ymm (transpose_bytes' order). Float activations read it too (as slices).
// A 64-byte header (LutPlanesHeader) names the layout, shape and seed; slt_linear refuses a
// buffer whose header does not match the problem it runs.
//   kCodes: AVX-512's int8 lookup (linear_avx512lut8.cpp): 32-row blocks, per 9 columns the rows'
//          uint16 words of three base-3 codes (1.78 bits per weight).
//   kPanels: not a table lookup's: AVX-512 VNNI's int8 panels (past kSmallBatchInt8 rows,
//          where no lookup runs; linear_avx512.cpp): per 16-row group and 4 columns, the byte
//          masks of P and N in the panel's order (2 bits per weight).
enum class LutLayout : int { kNone = 0, kInt8 = 2, kCodes = 3, kPanels = 4 };
const char* lut_layout_name(LutLayout kind);
struct LutPlanesHeader {
  uint64_t magic;
  int32_t kind, version;
  int64_t N, K;
  uint32_t k0, k1;
  uint8_t reserved[24];
};
static_assert(sizeof(LutPlanesHeader) == 64, "the planes start 64 bytes in");
// The layout slt_linear reads for this problem (on `threads`) where given one: kNone unless it
// runs an int8 table lookup (AVX2's, which float activations reach as slices, or AVX-512's) or
// AVX-512 VNNI's int8 panels (i8panel_applies).
LutLayout lut_layout(const LinearProblem& p, Isa isa, int threads);
// Whether slt_linear runs this problem's int8 activations with AVX-512 VNNI's panels where no
// table lookup runs: kAvx512Vnni (or kAmx where its tiles do not take it), more than
// kSmallBatchInt8 rows, one mask plane (signed constant: int8 activations need it).
bool i8panel_applies(const LinearProblem& p, Isa isa);
// Bytes of that layout for this weight (0 for kNone).
int64_t lut_planes_bytes(const WeightDesc& w, LutLayout kind);
// The binary signed-constant weight's planes in that layout, header included, into dst
// (lut_planes_bytes bytes, 32-byte aligned), with `threads` threads.
void pack_lut_planes(const WeightDesc& w, LutLayout kind, uint8_t* dst, int64_t bytes, int threads);

// A frozen weight's effective mask (locked | its free bits) as the one plane of a binary weight
// with the same keys, scale and distribution, out (N, W) int32 words: every kernel of the binary
// format then gives that weight's outputs (slt_hw/backends/cpu.py runs frozen weights so once the
// plane is cached: the frozen register kernels hash every weight's freeze state per call).
// Throws std::invalid_argument for a weight that is not frozen or a stream that does not match.
void frozen_mask_planes(const WeightDesc& w, int32_t* out, int threads);
namespace scalar {
bool frozen_mask_rows(const LinearProblem& p, int64_t n0, int64_t n1, uint32_t* h, int32_t* out);
}

// Validates, then runs with `threads` OpenMP threads (<= 0: the OpenMP default).
// Throws std::invalid_argument on bad arguments or a free-bit stream that does not match.
void slt_linear(const LinearProblem& p, Isa isa, int threads);

// Per-ISA row kernels (linear_<isa>.cpp). `xp` is x copied to (M, Kp) with zero padding;
// `scratch` holds at least scratch_floats(K, blocked) floats for this thread (blocked: more
// than kSmallBatch, or kSmallBatchInt8 int8, activation rows).
int64_t scratch_floats(int64_t K, bool blocked);
// The int8 variants take `xq` copied to (M, Kp) int8 with zero padding; AVX-512's blocked kernel
// (past kSmallBatchInt8 rows) takes it as xq + 128 (uint8: every byte, padding and slack
// included, xor 0x80), the unsigned operand of vpdpbusd / vpmaddubsw without a flip per load,
// its register kernel as it is with the row sums after it (int8_row_sums), the VNNI panels
// (avx512vnni::rows_int8_panel) as it is. Both copies have 64
// bytes of slack after the last row (a 64-byte load may run past a row's end into it).
#define SLT_HW_ROW_KERNELS(isa)                                                                  \
  namespace isa {                                                                                \
  bool rows(const LinearProblem& p, const float* xp, float* scratch, int64_t n0, int64_t n1);      \
  bool rows_int8(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1); \
  }
SLT_HW_ROW_KERNELS(scalar)
SLT_HW_ROW_KERNELS(avx2)
SLT_HW_ROW_KERNELS(avx512)
SLT_HW_ROW_KERNELS(avx512vnni)
#undef SLT_HW_ROW_KERNELS
// AVX512-BF16 dot products (in the VNNI TU) for bf16 activations past kSmallBatch rows, binary
// signed-constant weights (bf16_dot_applies): xb copied to (M, Kp) with zero padding; tasks of
// kTaskRows rows, scratch_floats_bf16(K) floats each.
// And VNNI int8 panels for int8 activations past kSmallBatchInt8 rows, binary signed-constant
// weights: xq copied to (M, Kp) as it is (not flipped; each tile sums its own rows); tasks of
// kTaskRows rows, scratch_floats_i8_panel(K) floats each.
// Given the panels' layout (p.lut_planes, kind kPanels), a task from a 16-row boundary builds
// its panel from it. The layout: panel_layout_bytes(N, K) past the header, pack_panel_bits writing
// the rows [n0, n1) of a task (n0 a multiple of kTaskRows) with scratch_floats_i8_panel(K)
// floats of scratch.
// The panels' layout body in portable C++ (with taps > 1 a convolution's tap-major columns:
// pack_conv_taps_planes), panel_layout_bytes(N, K) bytes for one tap. AVX2 reads it with
// vpmaddubsw (linear_avx2panel.cpp): int8 activations from kPanelRowsInt8Avx2 rows on, binary
// signed-constant weights, only with the layout given (without it: the table lookup or the
// blocked kernel); tasks of kTaskRows rows, scratch_floats_i8_panel(K) floats each.
inline int64_t panel_group_bytes(int64_t K) { return (K + 31) / 32 * 8 * 16; }  // (a 16-row group's masks)
inline int64_t panel_layout_bytes(int64_t N, int64_t K) { return (N + 15) / 16 * panel_group_bytes(K); }
void pack_panel_masks(const WeightDesc& w, int64_t taps, uint8_t* body, int threads);
namespace avx2 {
int64_t scratch_floats_i8_panel(int64_t K);
bool rows_int8_panel(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1);
}  // namespace avx2
namespace avx512vnni {
int64_t scratch_floats_i8_panel(int64_t K);
bool rows_int8_panel(const LinearProblem& p, const int8_t* xq, float* scratch, int64_t n0, int64_t n1);
void pack_panel_bits(const WeightDesc& w, int64_t n0, int64_t n1, float* scratch, uint8_t* body);
int64_t scratch_floats_bf16(int64_t K);
bool rows_bf16(const LinearProblem& p, const uint16_t* xb, float* scratch, int64_t n0, int64_t n1);
}  // namespace avx512vnni

// Rows [n0, n1) of W_eff (float32, row stride K) into out with the ISA's weight builder (the
// large-batch kernels' build_block); scratch: weight_scratch_floats(). False: the frozen stream
// does not match. The scalar ISA has none: materialize_weights runs generate.h's materialize.
int64_t weight_scratch_floats();
#define SLT_HW_WEIGHT_ROWS(isa) \
  namespace isa {               \
  bool weight_rows(const LinearProblem& p, float* scratch, int64_t n0, int64_t n1, float* out); \
  }
SLT_HW_WEIGHT_ROWS(avx2)
SLT_HW_WEIGHT_ROWS(avx512)
SLT_HW_WEIGHT_ROWS(avx512vnni)
#undef SLT_HW_WEIGHT_ROWS

// C * taps floats from (c, t) order to (t, c): dst[t * ldd + c] = src[c * taps + t], ldd >= C
// the destination's row stride (a conv weight row to channels-last order; NCHW <-> NHWC). The
// portable loop, and AVX2's 8 x 8 register transposes.
void to_tap_major(const float* src, float* dst, int64_t C, int64_t taps, int64_t ldd);
namespace avx2 {
void to_tap_major(const float* src, float* dst, int64_t C, int64_t taps, int64_t ldd);
}

// W_eff rows [row_begin, row_end) (float32, (row_end - row_begin) x K) into out, built by `isa`'s
// vector kernels: bit-identical to generate.h's materialize (which is what the scalar ISA runs),
// several times faster. taps > 1: each row written tap-major, out[r][t * (K / taps) + c] =
// W_eff[r][c * taps + t] (a conv weight in channels-last order). Throws std::invalid_argument on
// bad arguments or a mismatched stream.
void materialize_weights(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, Isa isa, int threads,
                         int64_t taps = 1);

// AVX2's small-batch int8 kernel (M <= kSmallBatchInt8Avx2) takes xq packed: 32-byte aligned,
// bit-sliced per 256 columns (row r of slice q of block B at 32 ((8 B + q) M + r), byte i =
// column 256 B + 8 i + q, zero past Kp), then the M rows' int32 sums (packed_int8_bytes in all).
namespace avx2 {
int64_t packed_int8_bytes(int64_t Kp, int64_t M);
void pack_int8(const int8_t* xq, int64_t Kp, int64_t M, int8_t* dst);
}  // namespace avx2

// The table-lookup kernel (linear_avx2lut.cpp): per call, tables of the activations' partial
// sums (build_tables_int8, table_bytes_int8 bytes); then per task of rows (scratch:
// scratch_floats_int8(K, M, C) floats, C coats).
namespace avx2lut {
int64_t table_bytes_int8(int64_t K, int64_t M);
int64_t scratch_floats_int8(int64_t K, int64_t M, int64_t C);
// The planes' layout (LutLayout::kInt8; C plane_block_bytes per block of kLutBlockRowsInt8 rows,
// its coats one after another) and one block of it (pack_scratch_floats(K) floats of scratch).
int64_t plane_block_bytes(int64_t K);
int64_t pack_scratch_floats(int64_t K);
void pack_block_int8(const WeightDesc& w, int64_t n0, int64_t n1, float* scratch, uint8_t* dst);
void build_tables_int8(const int8_t* xq, int64_t Kp, int64_t M, uint8_t* t);
bool rows_int8(const LinearProblem& p, const uint8_t* tables, float* scratch, int64_t n0, int64_t n1);
}  // namespace avx2lut

// AVX-512's int8 table lookup (linear_avx512lut8.cpp): per call, int16 tables of the activations'
// partial sums (build_tables, table_bytes bytes, 64-byte aligned; by parts on several threads);
// tasks of task_rows rows (a thread's share, at most kLutTaskRowsInt8Avx512), scratch_floats
// each. The codes layout (LutLayout::kCodes): block_bytes per 32-row block, in the kernel's sweep
// order (linear_avx512lut8.cpp); pack_block writes the block of rows [n0, n1) into the layout's
// body (past its header), with pack_scratch_floats(K) floats of scratch.
namespace avx512lut8 {
int64_t block_bytes(int64_t K);
int64_t pack_scratch_floats(int64_t K);
void pack_block(const WeightDesc& w, int64_t n0, int64_t n1, float* scratch, uint8_t* body);
int64_t table_bytes(int64_t K, int64_t M);
int64_t table_groups(int64_t K);  // build_tables of groups [g0, g1) of that many (3 columns each)
void build_tables(const int8_t* xq, int64_t ldq, int64_t K, int64_t M, int64_t g0, int64_t g1, int16_t* t);
int64_t task_rows(int64_t rows, int threads);  // for `rows` weight rows on `threads`: a multiple of 32
int64_t scratch_floats(int64_t K, int64_t M, int64_t task_rows, bool codes_given);
bool rows(const LinearProblem& p, const int16_t* tables, float* scratch, int64_t n0, int64_t n1);
}  // namespace avx512lut8

// The AVX-512 table-lookup kernel (linear_avx512lut.cpp), float activations: per call, float
// tables of the activations' partial sums (table_entries floats); tasks of at most kLutTaskRowsAvx512 rows, scratch_floats(M) each.
namespace avx512lut {
int64_t table_entries(int64_t K, int64_t M);
int64_t scratch_floats(int64_t M);
void build_tables(const float* xp, int64_t Kp, int64_t M, float* t);
bool rows(const LinearProblem& p, const float* tables, float* scratch, int64_t n0, int64_t n1);
}  // namespace avx512lut

// The AMX kernel (linear_amx.cpp): request_permission() asks the OS for the tile state once (false:
// refused, or not Linux); per task of at most kAmxTaskRows weight rows, scratch_floats(K) floats
// and xb copied to (Mp, Kp) bf16 with zero padding, Mp a multiple of 32.
// rows_int8 takes xq copied to (Mp, padded_cols_int8(K)) int8 with zero padding.
namespace amx {
bool request_permission();
int64_t scratch_floats(int64_t K);
int64_t padded_cols_int8(int64_t K);
bool rows_bf16(const LinearProblem& p, const uint16_t* xb, int64_t Mp, float* scratch, int64_t n0, int64_t n1);
bool rows_int8(const LinearProblem& p, const int8_t* xq, int64_t Mp, float* scratch, int64_t n0, int64_t n1);
}  // namespace amx

}  // namespace cpu
}  // namespace slt
