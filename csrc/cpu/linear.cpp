// Validation, ISA choice and threading of the fused linear (linear.h).
#include "linear.h"

#include "generate.h"
#include "quantize.h"

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace slt {
namespace cpu {

bool isa_supported(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
#if defined(SLT_HW_HAVE_AVX2)
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
      return false;
#endif
    case Isa::kAvx512:
    case Isa::kAvx512Vnni:
#if defined(SLT_HW_AVX512_EMULATED)
      return true;  // SIMDe: plain C++ underneath
#elif defined(SLT_HW_HAVE_AVX512)
      // libgcc's check includes the OS saving the zmm/k registers (xgetbv)
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma") && (isa == Isa::kAvx512 || __builtin_cpu_supports("avx512vnni"));
#else
      return false;
#endif
    case Isa::kAmx:
#if defined(SLT_HW_AVX512_EMULATED)
      return true;
#elif defined(SLT_HW_HAVE_AVX512)
      return isa_supported(Isa::kAvx512Vnni) && __builtin_cpu_supports("amx-tile") &&
             __builtin_cpu_supports("amx-bf16") && __builtin_cpu_supports("amx-int8") && amx::request_permission();
#else
      return false;
#endif
  }
  return false;
}

Isa best_isa() {
#if !defined(SLT_HW_AVX512_EMULATED)
  if (isa_supported(Isa::kAvx512Vnni)) return Isa::kAvx512Vnni;
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
#endif
  return isa_supported(Isa::kAvx2) ? Isa::kAvx2 : Isa::kScalar;
}

Isa auto_isa(const LinearProblem& p, int threads) {
  const Isa best = best_isa();
  if ((best != Isa::kAvx512 && best != Isa::kAvx512Vnni) || !isa_supported(Isa::kAvx2)) return best;
  if (bf16_dot_applies(p, best)) return best;
  if (p.xq != nullptr) {
    if (lut_applies(p, best, threads)) return best;  // AVX-512's int8 table lookup (binary weights)
    if (best != Isa::kAvx512Vnni) return Isa::kAvx2;
    if (p.planes == nullptr || p.C != 1) return p.M >= kAutoRowsInt8BlockedAvx512 ? best : Isa::kAvx2;
    return best;  // binary weights: the VNNI panels past AVX-512's own lookup
  }
  return p.M > kSmallBatch ? Isa::kAvx2 : best;
}

bool bf16_dot_supported(Isa isa) {
  return (isa == Isa::kAvx512Vnni || isa == Isa::kAmx) && isa_supported(isa) &&
         SLT_HW_CPU_HAS_AVX512_EXTENSION("avx512bf16");
}

bool bf16_dot_applies(const LinearProblem& p, Isa isa) {
  return bf16_dot_supported(isa) && p.xb != nullptr && p.xq == nullptr && p.planes != nullptr && p.C == 1 &&
         p.dist == kSignedConstant && p.M > kSmallBatch;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512:
#if defined(SLT_HW_AVX512_EMULATED)
      return "avx512-emulated";
#else
      return "avx512";
#endif
    case Isa::kAvx512Vnni:
#if defined(SLT_HW_AVX512_EMULATED)
      return "avx512vnni-emulated";
#else
      return "avx512vnni";
#endif
    case Isa::kAmx:
#if defined(SLT_HW_AVX512_EMULATED)
      return "amx-emulated";
#else
      return "amx";
#endif
  }
  return "unknown";
}

bool isa_from_name(const char* name, Isa* isa) {
  for (Isa i : kAllIsas)
    if (std::strcmp(name, isa_name(i)) == 0) {
      *isa = i;
      return true;
    }
  return false;
}

int64_t scratch_floats(int64_t K, bool blocked) {
  const int64_t W = (K + 31) / 32, Kp = 32 * W;
  // small batch: sign words, mask words, hashes, values of a whole row. Large batch: a task's
  // 1024-column float blocks, or its int8 tiles with its int and float sums, plus one block's
  // descriptor (and 64-byte alignment slack)
  const int64_t row = 2 * W + Kp / 2 + Kp + 16;
  if (!blocked) return row;
  const int64_t desc = kBlockDescFloats;
  // + AVX2's 8 panel staging rows and its output tile
  const int64_t blocks = (kTaskRows + 8) * kBlockCols + kTaskRows * kYChunkRows + desc + 16;
  const int64_t tiles = kTaskRows * kBlockCols / 4 + 2 * kTaskRows * kChunkRows + kTaskRows + desc + 16;
  const int64_t big = blocks > tiles ? blocks : tiles;
  return row > big ? row : big;  // the scalar variant takes whole rows at any batch
}

int64_t weight_scratch_floats() { return kBlockCols + kBlockDescFloats + 16; }  // + 64-byte alignment slack

namespace {

void fail(const std::string& msg) { throw std::invalid_argument(msg); }

// K bf16 values as float32, exactly (the high half of each float's bits).
void bf16_to_float(const uint16_t* src, int64_t K, float* dst) {
  for (int64_t k = 0; k < K; ++k) {
    const uint32_t bits = uint32_t(src[k]) << 16;
    std::memcpy(dst + k, &bits, sizeof bits);
  }
}

constexpr uint64_t kPlanesMagic = 0x31504c54554c54ULL;  // the bytes "TLUTLP1\0"
constexpr int32_t kPlanesVersion = 2;  // (2: the codes in their sweep order)

// "" where buf (bytes long) holds this weight's planes in `kind`'s layout, else what is wrong.
std::string check_planes(const WeightDesc& w, LutLayout kind, const uint8_t* buf, int64_t bytes) {
  const int64_t want = lut_planes_bytes(w, kind);
  if (bytes != want)
    return "lut_planes: expected " + std::to_string(want) + " bytes (pack_lut_planes of this weight, " +
           lut_layout_name(kind) + " layout), got " + std::to_string(bytes);
  if (reinterpret_cast<uintptr_t>(buf) % 32 != 0) return "lut_planes: expected a 32-byte aligned buffer";
  LutPlanesHeader h;
  std::memcpy(&h, buf, sizeof h);
  if (h.magic != kPlanesMagic || h.version != kPlanesVersion) return "lut_planes: not a planes layout (bad header)";
  if (h.kind != int32_t(kind) || h.N != w.N || h.K != w.K || h.k0 != w.k0 || h.k1 != w.k1)
    return std::string("lut_planes: built for another weight or kernel (header: ") +
           lut_layout_name(LutLayout(h.kind)) + " layout, shape (" + std::to_string(h.N) + ", " +
           std::to_string(h.K) + "), keys " + std::to_string(h.k0) + "/" + std::to_string(h.k1) + "; this call: " +
           lut_layout_name(kind) + ", (" + std::to_string(w.N) + ", " + std::to_string(w.K) + "), " +
           std::to_string(w.k0) + "/" + std::to_string(w.k1) + ")";
  return "";
}

void validate(const LinearProblem& p) {
  for (const std::string& e : {check_weight(p, p.M > 0), check_rows(p.N, p.row_begin, p.row_end)})
    if (!e.empty()) fail(e);
  if (p.M < 0) fail("x: negative number of rows");
  const bool int8 = p.xq != nullptr;
  if (p.M > 0 && ((int8 ? (p.xscale == nullptr) : ((p.x == nullptr) == (p.xb == nullptr))) || p.y == nullptr))
    fail("x/y: null pointer (or both float and bf16 activations)");
  if (int8 && p.dist != kSignedConstant)
    fail("dist: int8 activations need the signed_constant distribution (weights in {-s, 0, +s})");
  if (p.ldx < p.K) fail("x: row stride smaller than in_features");
  if (p.ldy < p.row_end - p.row_begin) fail("y: row stride smaller than the number of output rows");
}

// Runs task(scratch, t) for t in [0, tasks), in parallel where `parallel` (threads <= 0:
// OpenMP's default), each thread with its own scratch of scratch_size floats. False if a task
// returned false.
template <class F>
bool for_each_task(int64_t tasks, int64_t scratch_size, int threads, bool parallel, F&& task) {
  int failed = 0;
#ifdef _OPENMP
  const int nt = resolve_threads(threads);
#pragma omp parallel num_threads(nt) reduction(| : failed) if (tasks > 1 && parallel)
#endif
  {
    std::vector<float> buf(static_cast<size_t>(scratch_size + 16));
    float* scratch = align64<float>(buf.data());
#ifdef _OPENMP
#pragma omp for schedule(static)
#endif
    for (int64_t t = 0; t < tasks; ++t)
      if (!task(scratch, t)) failed = 1;
  }
  (void)threads;
  return failed == 0;
}

// Runs task(scratch, n0, n1) on rows [row_begin, row_end) in tasks of `block` rows, in parallel
// (one thread below min_work weights): for_each_task.
template <class F>
bool for_each_row_task(int64_t row_begin, int64_t row_end, int64_t block, int64_t K, int64_t scratch_size,
                       int threads, int64_t min_work, F&& task) {
  const int64_t rows = row_end - row_begin, tasks = (rows + block - 1) / block;
  return for_each_task(tasks, scratch_size, threads, rows * K >= min_work, [&](float* scratch, int64_t t) {
    const int64_t n0 = row_begin + t * block, n1 = n0 + block < row_end ? n0 + block : row_end;
    return task(scratch, n0, n1);
  });
}

// The ISAs whose kernels are linear_avx512*.cpp (kAmx runs them for what its tiles do not take).
bool avx512_kernels(Isa isa) { return isa == Isa::kAvx512 || isa == Isa::kAvx512Vnni || isa == Isa::kAmx; }

}  // namespace

LutRows lut_rows(Isa isa) {
  LutRows r;
#if defined(SLT_HW_HAVE_AVX2)
  if (isa == Isa::kAvx2)  // (every float row as slices)
    r = LutRows{kLutAutoRowsSliced, kLutAutoRowsInt8, kLutMaxRowsSliced, kLutMaxRowsInt8, kLutMaxRowsSliced};
#endif
#if defined(SLT_HW_HAVE_AVX512)
  if (avx512_kernels(isa))
    r = LutRows{kLutAutoRowsAvx512, kLutAutoRowsInt8Avx512, kLutMaxRowsAvx512, kLutMaxRowsInt8Avx512,
                kLutSlicedRowsAvx512};
#endif
  (void)isa;
  return r;
}

bool lut_applies(const LinearProblem& p, Isa isa, int threads) {
  // (multicoat weights: AVX2's lookup only, a pass over the tables per coat)
  if (p.lut == LutMode::kOff || p.planes == nullptr || (p.C != 1 && isa != Isa::kAvx2) || p.dist != kSignedConstant)
    return false;
  const LutRows r = lut_rows(isa);
  const bool on = p.lut == LutMode::kOn, int8 = p.xq != nullptr;
#if defined(SLT_HW_HAVE_AVX2)  // (AVX2's int8 table lookup)
  if (isa == Isa::kAvx2 && int8 && !on && avx2lut::table_bytes_int8(p.K, p.M) > kLutAutoTableBytesInt8) return false;
#endif
  // automatically, the int8 lookups (AVX2's also for float activations, as slices) only with
  // enough weight rows a thread to pay for the tables
  const int64_t per_thread = int8 ? kLutAutoRowsPerThreadInt8 : kLutAutoRowsPerThreadSliced * p.M;
  if (!on && (isa == Isa::kAvx2 || int8) && p.N < per_thread * resolve_threads(threads)) return false;
  // coats sharing a scale: a lookup pass each against the register kernel's one pass over levels
  if (!on && int8 && coat_levels(p) && p.M > kLutAutoRowsInt8Levels) return false;
  return p.M >= 1 && p.M <= (int8 ? (on ? r.max_int8 : r.auto_int8) : (on ? r.max_float : r.auto_float));
}

bool sliced_applies(const LinearProblem& p, Isa isa, int threads) {
  if (p.xq != nullptr || !lut_applies(p, isa, threads) || p.M > lut_rows(isa).sliced) return false;
  if (p.C > 1 && p.lut != LutMode::kOn && p.M * 3 * p.C > kLutAutoSliceCoatRows) return false;  // (3: slices at least)
  // AVX-512: automatically, the int8 lookup's rule of weight rows a thread too (AVX2's float
  // rows have their own, in lut_applies)
  return isa == Isa::kAvx2 || p.lut == LutMode::kOn || p.N >= kLutAutoRowsPerThreadInt8 * resolve_threads(threads);
}

// (never float activations' int8 slices: they are the table lookup's, and AMX's epilogue does not
// join a row's slices; forced, 16 slice rows of 4 float rows had written past the output)
bool amx_applies(const LinearProblem& p, Isa isa) {
  return isa == Isa::kAmx && p.slices == 0 && (p.xb != nullptr || p.xq != nullptr) && p.planes != nullptr && p.C == 1 &&
         p.dist == kSignedConstant && p.M >= kAmxMinRows;
}

const char* lut_layout_name(LutLayout kind) {
  switch (kind) {
    case LutLayout::kNone:
      return "none";
    case LutLayout::kInt8:
      return "int8";
    case LutLayout::kCodes:
      return "codes";
    case LutLayout::kPanels:
      return "panels";
  }
  return "unknown";
}

bool i8panel_applies(const LinearProblem& p, Isa isa) {
  if (p.xq == nullptr || p.planes == nullptr) return false;
#if defined(SLT_HW_HAVE_AVX2)
  // (run: with the layout only; coats sharing a scale as their levels, a panel built of their sum)
  if (isa == Isa::kAvx2) return (p.C == 1 || coat_levels(p)) && p.lut != LutMode::kOn && p.M >= kPanelRowsInt8Avx2;
#endif
  if (p.C != 1) return false;
  return !amx_applies(p, isa) && (isa == Isa::kAvx512Vnni || isa == Isa::kAmx) && p.M > kSmallBatchInt8;
}

LutLayout lut_layout(const LinearProblem& p, Isa isa, int threads) {
  if (!isa_supported(isa) || amx_applies(p, isa)) return LutLayout::kNone;
  if (isa == Isa::kAvx2 && i8panel_applies(p, isa) && p.dist == kSignedConstant) return LutLayout::kPanels;
  if (!lut_applies(p, isa, threads))
    return i8panel_applies(p, isa) && p.dist == kSignedConstant ? LutLayout::kPanels : LutLayout::kNone;
  if (p.xq == nullptr && !sliced_applies(p, isa, threads)) return LutLayout::kNone;  // (AVX-512's float lookup)
  return isa == Isa::kAvx2 ? LutLayout::kInt8 : avx512_kernels(isa) ? LutLayout::kCodes : LutLayout::kNone;
}

int64_t lut_planes_bytes(const WeightDesc& w, LutLayout kind) {
#if defined(SLT_HW_HAVE_AVX2)
  if (kind == LutLayout::kInt8)
    return int64_t(sizeof(LutPlanesHeader)) +
           (w.N + kLutBlockRowsInt8 - 1) / kLutBlockRowsInt8 * w.C * avx2lut::plane_block_bytes(w.K);
#endif
#if defined(SLT_HW_HAVE_AVX512)
  if (kind == LutLayout::kCodes)
    return int64_t(sizeof(LutPlanesHeader)) +
           (w.N + kLutBlockRowsInt8 - 1) / kLutBlockRowsInt8 * avx512lut8::block_bytes(w.K);
#endif
  if (kind == LutLayout::kPanels)  // (multicoat: each coat's, one after another)
    return int64_t(sizeof(LutPlanesHeader)) + (w.planes ? w.C : 1) * panel_layout_bytes(w.N, w.K);
  (void)w;
  return 0;
}

void pack_lut_planes(const WeightDesc& w, LutLayout kind, uint8_t* dst, int64_t bytes, int threads) {
  for (const std::string& e : {check_weight(w, true), check_rows(w.N, 0, w.N)})
    if (!e.empty()) fail(e);
  if (kind != LutLayout::kInt8 && kind != LutLayout::kCodes && kind != LutLayout::kPanels)
    fail("kind: expected the int8, codes or panels layout");
  const Isa needs = kind == LutLayout::kCodes ? Isa::kAvx512 : Isa::kAvx2;  // (the panels: AVX2's or VNNI's)
  if (w.planes == nullptr || (w.C != 1 && kind == LutLayout::kCodes) || w.dist != kSignedConstant ||
      !isa_supported(needs))
    fail(std::string("pack_lut_planes: needs a signed_constant weight in the binary format (or multicoat, for "
                     "the int8 and panels layouts) and a CPU with ") + isa_name(needs) + " (the " +
         lut_layout_name(kind) + " layout)");
  const int64_t want = lut_planes_bytes(w, kind);
  if (dst == nullptr || bytes != want)
    fail("dst: expected " + std::to_string(want) + " bytes, got " + std::to_string(bytes) + (dst ? "" : " (null)"));
  if (reinterpret_cast<uintptr_t>(dst) % 32 != 0) fail("dst: expected a 32-byte aligned buffer");
  // the layout's 32-row blocks, each by its kernel's packer
  int64_t block_bytes = 0, pack_floats = 0;
  void (*pack_block)(const WeightDesc&, int64_t, int64_t, float*, uint8_t*) = nullptr;
#if defined(SLT_HW_HAVE_AVX2)
  if (kind == LutLayout::kInt8) {
    block_bytes = w.C * avx2lut::plane_block_bytes(w.K);
    pack_floats = avx2lut::pack_scratch_floats(w.K);
    pack_block = avx2lut::pack_block_int8;
  }
#endif
#if defined(SLT_HW_HAVE_AVX512)
  if (kind == LutLayout::kCodes) {
    block_bytes = avx512lut8::block_bytes(w.K);
    pack_floats = avx512lut8::pack_scratch_floats(w.K);
    pack_block = avx512lut8::pack_block;
  }
  if (kind == LutLayout::kPanels && isa_supported(Isa::kAvx512Vnni)) {  // (faster than the portable packer)
    pack_floats = avx512vnni::scratch_floats_i8_panel(w.K);
    pack_block = avx512vnni::pack_panel_bits;
  }
#endif
  uint8_t* body = dst + sizeof(LutPlanesHeader);
  // (the panels: each coat's layout, one after another; the others hold their coats per block)
  const int64_t parts = kind == LutLayout::kPanels ? w.C : 1;
  for (int64_t c = 0; c < parts; ++c) {
    const WeightDesc wc = parts > 1 ? coat_desc(w, c) : w;
    uint8_t* bc = body + c * panel_layout_bytes(w.N, w.K);
    if (kind == LutLayout::kPanels && pack_block == nullptr) pack_panel_masks(wc, 1, bc, threads);
    if (pack_block != nullptr)
      for_each_row_task(0, w.N, kind == LutLayout::kPanels ? kTaskRows : kLutBlockRowsInt8, w.K, pack_floats, threads,
                        1 << 16, [&](float* scratch, int64_t n0, int64_t n1) {
                          // (AVX2's planes block after block; the codes and panels place each block themselves)
                          pack_block(wc, n0, n1, scratch,
                                     kind == LutLayout::kInt8 ? bc + n0 / kLutBlockRowsInt8 * block_bytes : bc);
                          return true;
                        });
  }
  LutPlanesHeader h{};
  h.magic = kPlanesMagic;
  h.kind = int32_t(kind);
  h.version = kPlanesVersion;
  h.N = w.N;
  h.K = w.K;
  h.k0 = w.k0;
  h.k1 = w.k1;
  std::memcpy(dst, &h, sizeof h);
}

namespace {

// Float (or bf16) activations through AVX2's int8 table lookup, as D = slice_count int8 rows
// each (slice_int8_rows: rounding x no worse for the sums than float32 accumulation is; the
// kernel's integer sums are exact and recombine in rows_int8). False where a row holds a NaN or
// an infinity, or, chosen automatically, where 4 slices a row pass kLutAutoSliceRows (slices
// times coats past kLutAutoSliceCoatRows, multicoat): the caller runs the float kernels (which
// propagate NaN and infinity as F.linear does).
bool run_sliced(const LinearProblem& p, Isa isa, int threads) {
  std::vector<float> xf;
  const float* x = p.x;
  int64_t ldx = p.ldx;
  if (p.xb != nullptr) {  // bf16 -> float exactly
    xf.resize(size_t(p.M * p.K));
    for (int64_t m = 0; m < p.M; ++m) bf16_to_float(p.xb + m * p.ldx, p.K, xf.data() + m * p.K);
    x = xf.data();
    ldx = p.K;
  }
  const int D = slice_count(x, p.M, p.K, ldx);
  const int64_t passes = p.M * D * p.C, limit = p.C > 1 ? kLutAutoSliceCoatRows : kLutAutoSliceRows;
  if (D == 0 || (p.lut == LutMode::kAuto && passes > limit)) return false;
  std::vector<int8_t> q(size_t(p.M * D * p.K));
  std::vector<float> s(size_t(p.M));
  slice_int8_rows(x, p.M, p.K, ldx, D, q.data(), s.data());
  LinearProblem ps = p;
  ps.x = nullptr;
  ps.xb = nullptr;
  ps.xq = q.data();
  ps.xscale = s.data();
  ps.ldx = p.K;
  ps.M = p.M * D;
  ps.slices = D;
  ps.lut = LutMode::kOn;  // (p chose the table lookup; its slices may pass the auto table size)
  slt_linear(ps, isa, threads);
  return true;
}

}  // namespace

void frozen_mask_planes(const WeightDesc& w, int32_t* out, int threads) {
  for (const std::string& e : {check_weight(w, true), check_rows(w.N, 0, w.N)})
    if (!e.empty()) fail(e);
  if (!w.frozen()) fail("frozen_mask_planes: expected a frozen-format weight");
  if (out == nullptr) fail("out: null pointer");
  LinearProblem p;
  static_cast<WeightDesc&>(p) = w;
  p.row_end = w.N;
  const int64_t W = (w.K + 31) / 32;
  const bool ok = for_each_row_task(0, w.N, 64, w.K, 16 * W + 16, threads, 1 << 16, [&](float* scratch, int64_t n0,
                                                                                       int64_t n1) {
    return scalar::frozen_mask_rows(p, n0, n1, reinterpret_cast<uint32_t*>(scratch), out);
  });
  if (!ok)
    fail("free_bits/offsets: the free-bit stream does not match the freeze pattern (a row's stream index is "
         "negative or past the end of free_bits)");
}

void slt_linear(const LinearProblem& p, Isa isa, int threads) {
  validate(p);
  if (!isa_supported(isa)) fail(std::string("isa: this CPU does not support ") + isa_name(isa));
  // the layout given, the kind this call reads (checked against the buffer's header)
  const LutLayout given = p.lut_planes != nullptr ? lut_layout(p, isa, threads) : LutLayout::kNone;
  if (p.lut_planes != nullptr) {
    if (given == LutLayout::kNone)
      fail(std::string("lut_planes: given, but this call reads no layout (no int8 table lookup or VNNI panels; "
                       "isa ") + isa_name(isa) + ", " + std::to_string(p.M) +
           " rows, lut mode, format; lut_layout says which calls do)");
    const std::string e = check_planes(p, given, p.lut_planes, p.lut_planes_bytes);
    if (!e.empty()) fail(e);
  }
  if (p.M == 0 || p.row_end == p.row_begin) return;
  const bool int8 = p.xq != nullptr, amx = amx_applies(p, isa), bf16dot = !amx && bf16_dot_applies(p, isa);
  // AVX-512's int8 lookup reads the codes layout, and makes it per call where not given (~3 ms at
  // 11008 x 4096, one thread: more than the register kernels' whole call at 1-16 rows), so
  // unless forced on it runs only with the codes given (a mask's second use on:
  // layout_cache.py); without them the register kernels (int8) or the float lookup run.
  const bool codes = given == LutLayout::kCodes || p.lut == LutMode::kOn || !avx512_kernels(isa);
  // AVX2's lookup of multicoat weights likewise: hashing and transposing a pass per coat, it lost
  // to the register kernels (3 coats, 11008 x 4096, one row: 6.2 against 4.3 ms; 2.3 with them)
  const bool coats = p.C == 1 || given == LutLayout::kInt8 || p.lut == LutMode::kOn;
  // float activations as int8 slices through an int8 table lookup (where one of them declines:
  // the register kernels, which propagate NaN and infinity as F.linear does)
  const bool sliced = !amx && !bf16dot && codes && coats && sliced_applies(p, isa, threads);
  if (sliced && run_sliced(p, isa, threads)) return;
  // table-lookup kernels: AVX2's (int8), AVX-512's float one (lut512) or int8 one (lut8)
  // AVX2's int8 panels: where the caller gives their layout (else the lookup or the blocked kernel)
  const bool avx2panel = isa == Isa::kAvx2 && given == LutLayout::kPanels;
  const bool lut =
      !amx && !bf16dot && !sliced && !avx2panel && coats && (codes || !int8) && lut_applies(p, isa, threads);
  const bool lut512 = lut && avx512_kernels(isa) && !int8, lut8 = lut && avx512_kernels(isa) && int8;
  // VNNI int8 panels: past the register kernel's rows, one mask plane (int8 activations come with
  // signed-constant weights only: validate)
  const bool i8panel = isa == Isa::kAvx2 ? avx2panel : !lut8 && i8panel_applies(p, isa);
  const int64_t W = (p.K + 31) / 32, Kp = 32 * W;
  // x copied once into zero-padded rows: every 32-column word load is in bounds. bf16 becomes
  // float exactly (the AMX kernel takes it as it is, in whole 32-row tile pairs).
  const int64_t Mp = amx ? (p.M + 31) / 32 * 32 : p.M;
  const int64_t ldq = amx && int8 ? amx::padded_cols_int8(p.K) : Kp;  // AMX: whole 64-column tiles
  // (int8 rows already Kp apart are read in place, no copy, by the kernels that read them so:
  // AVX2's, AVX-512's int8 panels and table lookup. A convolution's 4 MiB chunks of patches had
  // been zeroed and copied once more per call, ~1/3 of the panels' own time at 64 channels.)
  const bool xq_in_place =
      int8 && !amx && (!avx512_kernels(isa) || i8panel || lut8) && p.K == Kp && p.ldx == Kp;
  // AVX-512's int8 register kernel: the row sums after the rows (int8_row_sums)
  const bool row_sums = int8 && !amx && !lut8 && avx512_kernels(isa) && p.M <= kSmallBatchInt8;
  std::vector<float> xp(int8 || amx || bf16dot ? 0 : size_t(p.M * Kp + 16), 0.0f);
  std::vector<int8_t> xq(int8 && !xq_in_place ? size_t(Mp * ldq + 64 + (row_sums ? int8_row_sums_bytes(p.M) : 0)) : 0,
                         0);
  std::vector<uint16_t> xb((amx && !int8) || bf16dot ? size_t(Mp * Kp) : 0, 0);
  const int8_t* xq_data = xq_in_place ? p.xq : xq.data();
  for (int64_t m = 0; m < p.M && !xq_in_place; ++m) {
    if (int8) {
      std::memcpy(xq.data() + m * ldq, p.xq + m * p.ldx, size_t(p.K));
    } else if (amx || bf16dot) {
      std::memcpy(xb.data() + m * Kp, p.xb + m * p.ldx, size_t(p.K) * sizeof(uint16_t));
    } else if (p.xb != nullptr) {
      bf16_to_float(p.xb + m * p.ldx, p.K, xp.data() + m * Kp);
    } else {
      std::memcpy(xp.data() + m * Kp, p.x + m * p.ldx, size_t(p.K) * sizeof(float));
    }
  }
  // AMX forced: the AVX-512 VNNI kernels for everything the AMX kernel does not take
  if (isa == Isa::kAmx) isa = Isa::kAvx512Vnni;
  if (row_sums) {
    int32_t* sums = const_cast<int32_t*>(int8_row_sums(xq.data(), Kp, p.M));
    for (int64_t m = 0; m < p.M; ++m) {
      int32_t t = 0;
      for (int64_t k = 0; k < p.K; ++k) t += xq[size_t(m * Kp + k)];
      sums[m] = t;
    }
  } else if (int8 && !amx && !i8panel && !lut8 && avx512_kernels(isa)) {
    for (int8_t& v : xq) v = int8_t(uint8_t(v) ^ 0x80u);  // AVX-512's blocked int8 kernel takes xq + 128
  }
  // table-lookup kernel: the tables of this call's activations, shared by every thread
  // (64-byte aligned: a zmm table load split across two cache lines made a call up to 1.4x slower)
  std::unique_ptr<float[]> tables_buf;
  float* tables = nullptr;
  std::unique_ptr<int16_t[]> tables8_buf;
  int16_t* tables8 = nullptr;
  std::unique_ptr<uint8_t[]> tables_i8;  // every byte written by build_tables_int8: no zeroing
#if defined(SLT_HW_HAVE_AVX512)
  if (lut512) {
    tables = aligned64(tables_buf, size_t(avx512lut::table_entries(p.K, p.M)));
    avx512lut::build_tables(xp.data(), Kp, p.M, tables);
  }
  if (lut8) {
    tables8 = aligned64(tables8_buf, size_t(avx512lut8::table_bytes(p.K, p.M) / 2));
    const int64_t groups = avx512lut8::table_groups(p.K), parts = resolve_threads(threads);
    for_each_task(parts, 0, threads, p.M * groups >= 4096, [&](float*, int64_t t) {
      avx512lut8::build_tables(xq_data, ldq, p.K, p.M, groups * t / parts, groups * (t + 1) / parts, tables8);
      return true;
    });
  }
#endif
#if defined(SLT_HW_HAVE_AVX2)
  if (lut && !lut512 && !lut8) {  // (int8: the float activations' lookup is the sliced one above)
    tables_i8.reset(new uint8_t[size_t(avx2lut::table_bytes_int8(p.K, p.M))]);
    avx2lut::build_tables_int8(xq_data, Kp, p.M, tables_i8.get());
  }
#endif
  const bool blocked = p.M > (int8 ? (isa == Isa::kAvx2 ? kSmallBatchInt8Avx2 : kSmallBatchInt8) : kSmallBatch);
  // AVX2's small-batch int8 kernel takes the rows word-interleaved, with their sums
  std::vector<int8_t> xq_packed;
  const int8_t* xq_run = xq_data;
#if defined(SLT_HW_HAVE_AVX2)
  if (int8 && isa == Isa::kAvx2 && !lut && !blocked) {
    xq_packed.resize(size_t(avx2::packed_int8_bytes(Kp, p.M) + 32));
    int8_t* dst = reinterpret_cast<int8_t*>((reinterpret_cast<uintptr_t>(xq_packed.data()) + 31) & ~uintptr_t(31));
    avx2::pack_int8(xq_data, Kp, p.M, dst);
    xq_run = dst;
  }
#endif
  auto kernel = scalar::rows;
  auto kernel_i8 = scalar::rows_int8;
#if defined(SLT_HW_HAVE_AVX2)
  if (isa == Isa::kAvx2) {
    kernel = avx2::rows;
    kernel_i8 = avx2::rows_int8;
  }
#endif
#if defined(SLT_HW_HAVE_AVX512)
  if (isa == Isa::kAvx512) {
    kernel = avx512::rows;
    kernel_i8 = avx512::rows_int8;
  }
  if (isa == Isa::kAvx512Vnni) {
    kernel = avx512vnni::rows;
    kernel_i8 = avx512vnni::rows_int8;
  }
#endif
  // weight rows per task (a table lookup past the small batch too: whole 32-row blocks)
  const int64_t block = amx      ? kAmxTaskRows
                        : bf16dot || i8panel ? kTaskRows
                        : lut8    ? avx512lut8::task_rows(p.row_end - p.row_begin, resolve_threads(threads))
                        : lut512  ? kLutTaskRowsAvx512
                        : lut     ? kLutBlockRowsInt8
                        : blocked ? kTaskRows
                                  : 8;
  // Weight rows [n0, n1) of q: p itself (m0 = 0), or the part of its activation rows from m0
  // (below; only the register and blocked kernels and the int8 panels run parts).
  auto run_rows = [&](const LinearProblem& q, int64_t m0, float* scratch, int64_t n0, int64_t n1) {
#if defined(SLT_HW_HAVE_AVX512)
    if (amx && int8) return amx::rows_int8(q, xq.data(), Mp, scratch, n0, n1);
    if (amx) return amx::rows_bf16(q, xb.data(), Mp, scratch, n0, n1);
    if (lut512) return avx512lut::rows(q, tables, scratch, n0, n1);
    if (lut8) return avx512lut8::rows(q, tables8, scratch, n0, n1);
    if (bf16dot) return avx512vnni::rows_bf16(q, xb.data(), scratch, n0, n1);
    if (i8panel && isa != Isa::kAvx2) return avx512vnni::rows_int8_panel(q, xq_data + m0 * ldq, scratch, n0, n1);
#endif
#if defined(SLT_HW_HAVE_AVX2)
    if (i8panel) return avx2::rows_int8_panel(q, xq_data + m0 * ldq, scratch, n0, n1);
    if (lut) return avx2lut::rows_int8(q, tables_i8.get(), scratch, n0, n1);
#endif
    return int8 ? kernel_i8(q, xq_run + m0 * ldq, scratch, n0, n1) : kernel(q, xp.data() + m0 * Kp, scratch, n0, n1);
  };
  auto run = [&](float* scratch, int64_t n0, int64_t n1) { return run_rows(p, 0, scratch, n0, n1); };
  int64_t scratch_size = scratch_floats(p.K, blocked), lut_scratch = 0;
  if (int8 && blocked) scratch_size += held_tile_floats(p.K, tile_passes(p), p.M);
#if defined(SLT_HW_HAVE_AVX512)
  if (lut512) lut_scratch = avx512lut::scratch_floats(p.M);
  if (lut8)
    lut_scratch =
        avx512lut8::scratch_floats(p.K, p.M, block, p.lut_planes != nullptr && p.row_begin % kLutBlockRowsInt8 == 0);
  if (amx) lut_scratch = amx::scratch_floats(p.K);
  if (bf16dot) lut_scratch = avx512vnni::scratch_floats_bf16(p.K);
  if (i8panel && isa != Isa::kAvx2) lut_scratch = avx512vnni::scratch_floats_i8_panel(p.K);
#endif
#if defined(SLT_HW_HAVE_AVX2)
  if (i8panel && isa == Isa::kAvx2) lut_scratch = avx2::scratch_floats_i8_panel(p.K);
  if (lut && !lut512 && !lut8) lut_scratch = avx2lut::scratch_floats_int8(p.K, p.M, p.C);
#endif
  if (lut_scratch > scratch_size || lut8) scratch_size = lut_scratch;  // (lut8: its own only, zeroed per call)
  // Weight-row tasks that do not share out evenly among few threads (a convolution's 64 output
  // channels: a 48-row task and a 16-row one): the large-batch kernels split the activation
  // rows instead, one part per thread, each a sub-problem of at least kChunkRows rows with
  // every weight-row task (the result is the same: each output is one row's sum either way).
  const int64_t tasks = (p.row_end - p.row_begin + block - 1) / block;
  const int nt = resolve_threads(threads);
  int64_t parts = 1;
  const bool uneven = (p.row_end - p.row_begin) % (block * nt) != 0;  // some thread's rows are fewer
  if (blocked && !lut && !amx && !bf16dot && nt > 1 && uneven && tasks < 4 * nt)
    parts = nt < p.M / kChunkRows ? nt : p.M / kChunkRows;
  // The int8 panels' tasks that do not share out evenly (512 rows on 2 threads: 6 of 48 rows and
  // 5): equal ranges of whole 16-row groups, one a thread, each in tasks of `block` rows, as
  // conv2d_int8_taps shares its own.
  const int64_t rows = p.row_end - p.row_begin;
  const bool ranged = i8panel && parts <= 1 && nt > 1 && uneven && rows % (16 * nt) == 0;
  const RowRanges split(p.row_begin, p.row_end, ranged ? nt : 1, block);
  const bool ok = ranged
      ? for_each_task(split.tasks(), scratch_size, threads, rows * p.K >= (1 << 14), [&](float* scratch, int64_t t) {
          int64_t n0, n1;
          split.rows(t, &n0, &n1);
          return run(scratch, n0, n1);
        })
      : parts <= 1
      ? for_each_row_task(p.row_begin, p.row_end, block, p.K, scratch_size, threads, 1 << 14, run)
      : for_each_task(tasks * parts, scratch_size, threads, true, [&](float* scratch, int64_t t) {
          const int64_t part = t / tasks, n0 = p.row_begin + t % tasks * block;  // (a thread's: one part)
          const int64_t n1 = n0 + block < p.row_end ? n0 + block : p.row_end;
          const int64_t m0 = p.M * part / parts, m1 = p.M * (part + 1) / parts;
          LinearProblem q = p;
          q.M = m1 - m0;
          q.y = p.y + m0 * p.ldy;
          if (int8) q.xscale = p.xscale + m0;
          return run_rows(q, m0, scratch, n0, n1);
        });
  if (!ok)
    fail("free_bits/offsets: the free-bit stream does not match the freeze pattern (a row's "
         "stream index is negative or past the end of free_bits)");
}

// The portable loop: tiles of 8 channels keep the strided reads in a few cache lines, each
// tap's 8 stores contiguous.
void to_tap_major(const float* src, float* dst, int64_t C, int64_t taps, int64_t ldd) {
  constexpr int64_t kTile = 8;
  int64_t c0 = 0;
  for (; c0 + kTile <= C; c0 += kTile) {
    const float* s = src + c0 * taps;
    for (int64_t t = 0; t < taps; ++t) {
      float* d = dst + t * ldd + c0;
      for (int64_t i = 0; i < kTile; ++i) d[i] = s[i * taps + t];
    }
  }
  for (; c0 < C; ++c0)
    for (int64_t t = 0; t < taps; ++t) dst[t * ldd + c0] = src[c0 * taps + t];
}

void materialize_weights(float* out, const WeightDesc& w, int64_t row_begin, int64_t row_end, Isa isa, int threads,
                         int64_t taps) {
  if (!isa_supported(isa)) fail(std::string("isa: this CPU does not support ") + isa_name(isa));
  if (taps < 1 || w.K % taps != 0)
    fail("taps: expected a positive divisor of K=" + std::to_string(w.K) + " (kernel height x width), got " +
         std::to_string(taps));
  bool (*kernel)(const LinearProblem&, float*, int64_t, int64_t, float*) = nullptr;
#if defined(SLT_HW_HAVE_AVX2)
  if (isa == Isa::kAvx2) kernel = avx2::weight_rows;
#endif
#if defined(SLT_HW_HAVE_AVX512)
  if (isa == Isa::kAvx512) kernel = avx512::weight_rows;
  if (isa == Isa::kAvx512Vnni || isa == Isa::kAmx) kernel = avx512vnni::weight_rows;
#endif
  const int64_t rows = row_end - row_begin, K = w.K, C = K / taps;
  void (*tap_major)(const float*, float*, int64_t, int64_t, int64_t) = to_tap_major;
#if defined(SLT_HW_HAVE_AVX2)
  if (isa_supported(Isa::kAvx2)) tap_major = avx2::to_tap_major;  // (8x8 register transposes)
#endif
  if (kernel == nullptr) {
    if (taps == 1) return materialize(out, w, row_begin, row_end, threads);
    std::vector<float> rowwise(static_cast<size_t>(rows * K));  // (the portable loop: no staging of its own)
    materialize(rowwise.data(), w, row_begin, row_end, threads);
    for (int64_t r = 0; r < rows; ++r) tap_major(rowwise.data() + r * K, out + r * K, C, taps, C);
    return;
  }
  for (const std::string& e : {check_weight(w, rows > 0), check_rows(w.N, row_begin, row_end)})
    if (!e.empty()) fail(e);
  if (rows == 0) return;
  if (out == nullptr) fail("out: null pointer");
  LinearProblem p;
  static_cast<WeightDesc&>(p) = w;
  constexpr int64_t kRows = 4;  // rows per task
  const int64_t stage = taps == 1 ? 0 : K;  // tap-major: each row is built here (L1), then reordered
  auto run = [&](float* scratch, int64_t n0, int64_t n1) {
    float* dst = out + (n0 - row_begin) * K;
    if (taps == 1) return kernel(p, scratch, n0, n1, dst);
    float* rowwise = scratch + weight_scratch_floats();
    for (int64_t n = n0; n < n1; ++n, dst += K) {
      if (!kernel(p, scratch, n, n + 1, rowwise)) return false;
      tap_major(rowwise, dst, C, taps, C);
    }
    return true;
  };
  const bool ok = for_each_row_task(row_begin, row_end, kRows, K, weight_scratch_floats() + stage, threads, 1 << 15,
                                    run);
  if (!ok)
    fail("free_bits/offsets: a free weight's stream index is negative or past the end of free_bits (offsets do "
         "not match the freeze key/thresholds, or the stream is short)");
}

}  // namespace cpu
}  // namespace slt
