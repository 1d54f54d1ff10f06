"""The cpp backend: the CPU kernels of slt_hw._C (csrc/cpu/). slt_linear (float or int8
activations) regenerates the weights in registers and never materialises them (linear*.cpp);
materialise writes W_eff with the same vector weight builders (linear_blocked.inc; the scalar ISA:
generate.cpp's portable loop). Convolutions with few output pixels are im2col over that linear;
with more, the weight is materialised once per call (transient, bit-exact) and torch's own
convolution runs it: regenerating is then a small cost next to the convolution's arithmetic,
which torch's kernels do better than im2col and a GEMM (docs/benchmarks.md). Attention is
torch's SDPA.

Functions take an op's arguments as slt_hw._ops checked them; the extension re-checks the
contract before touching memory. Results are bit-identical to slt_hw.reference where no sum is
involved (materialise; tests/test_cpp_contract.py). Threads: torch.get_num_threads().
generate_weights / freeze_states are utilities (not ops) and check their own arguments.
"""

from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from .. import _ext, dispatch
from .._ops import conv2d_output_format, conv2d_output_size
from ..contract import Dist, Key, check_geometry, check_key, check_rows, check_scale, check_thresholds
from ..dispatch import Backend, register
from . import composite, layout_cache
from .layout_cache import LayoutCache

ISA_ENV = "SLT_HW_CPU_ISA"
KNOWN_ISAS = ("scalar", "avx2", "avx512", "avx512vnni")
LUT_ENV = "SLT_HW_CPU_LUT"
LUT_MODES = ("auto", "on", "off")
CONV_ENV = "SLT_HW_CPU_CONV"
CONV_MODES = ("auto", "fused", "materialize")
# auto: materialise from this many output pixels (batch * OH * OW), the rows of the conv's GEMM.
# Regenerating N*K weights costs about as much as ~30 rows of that GEMM in torch's convolution;
# below this the fused kernel (1 bit per weight read) wins (512x512 3x3 at 7x7, batch 1: 49 rows).
CONV_MATERIALIZE_ROWS = 64
# conv2d_int8 with act_scale "image": "auto" reads each output pixel's taps in place in the
# quantized images where the kernel can (conv_int8_taps_refusal: AVX-512 VNNI, or AVX2 once the
# weight's tap-major planes are cached; channels a multiple of 4), "patches" always gathers the
# patch matrix first (im2col_int8; the same bits either way).
CONV_INT8_ENV = "SLT_HW_CPU_CONV_INT8"
CONV_INT8_MODES = ("auto", "patches")


def cpu_isas() -> list[str]:
    """Instruction sets the fused kernels can use here, worst first (e.g. ['scalar', 'avx2',
    'avx512']); 'auto' takes the last, except 'amx', which runs only when forced."""
    return list(_ext.require().cpu_isas())


def _isa(isa: str | None) -> str:
    name = isa or os.environ.get(ISA_ENV, "auto") or "auto"
    if name != "auto" and name not in cpu_isas():
        source = "isa" if isa else ISA_ENV
        if name in KNOWN_ISAS:
            raise ValueError(f"{source}: this CPU does not support {name!r} (it supports {cpu_isas()})")
        raise ValueError(f"{source}: expected 'auto' or one of {cpu_isas()} (what this CPU supports), got {name!r}")
    return name


def chosen_isa(int8: bool | None = None, rows: int = 1, *, bf16: bool = False, binary: bool = True) -> str:
    """The instruction set slt_linear runs with here: SLT_HW_CPU_ISA's, else the best this CPU
    has, or, given the activations (int8, or float / bf16) and their rows, the one chosen for
    them (a binary signed-constant weight, or binary=False another): on an AVX-512 CPU, AVX2's
    kernels where they measured faster (int8 activations at small batch, float ones past batch
    8; docs/benchmarks.md, issue 18 step 10, and csrc/cpu/linear.h's auto_isa)."""
    name = _isa(None)
    if name != "auto":
        return name
    mod = _ext.require()
    return mod.build_info()["cpu_isa"] if int8 is None else mod.cpu_auto_isa(int8, rows, bf16, binary)


def _lut(lut: str | None) -> str:
    name = lut or os.environ.get(LUT_ENV, "auto") or "auto"
    if name not in LUT_MODES:
        raise ValueError(f"{'lut' if lut else LUT_ENV}: expected one of {list(LUT_MODES)}, got {name!r}")
    return name


def lut_info(isa: str | None = None) -> dict:
    """The table-lookup kernels (binary format, and on AVX2 multicoat; signed-constant weights,
    few activation rows) of `isa` (default: those slt_linear runs with: isa for float
    activations, isa_int8 for int8 ones, which differ where chosen_isa does): whether this CPU
    runs them (available, available_int8), up to how many rows they run automatically / when SLT_HW_CPU_LUT=on forces
    them (auto_rows, max_rows; *_int8 for int8 activations; 0: never), and the mode in force
    (SLT_HW_CPU_LUT: auto, on, off). AVX2's is an int8 kernel that takes float activations as 3
    or 4 exact int8 slices each (csrc/cpu/quantize.h); AVX-512 has an int8 kernel (base-3 codes,
    vpermw) that takes float rows as slices up to sliced_rows, and a float kernel beyond."""
    return {**_ext.require().cpu_lut(_isa(isa)), "mode": _lut(None)}


def _conv_mode(mode: str | None) -> str:
    name = mode or os.environ.get(CONV_ENV, "auto") or "auto"
    if name not in CONV_MODES:
        raise ValueError(f"{'mode' if mode else CONV_ENV}: expected one of {list(CONV_MODES)}, got {name!r}")
    return name


def _conv_int8_mode() -> str:
    name = os.environ.get(CONV_INT8_ENV, "auto") or "auto"
    if name not in CONV_INT8_MODES:
        raise ValueError(f"{CONV_INT8_ENV}: expected one of {list(CONV_INT8_MODES)}, got {name!r}")
    return name


def conv_materializes(rows: int, mode: str | None = None) -> bool:
    """Whether conv2d materialises the weight for a convolution with `rows` output pixels
    (batch * OH * OW): SLT_HW_CPU_CONV (or mode) 'materialize', or 'auto' from
    CONV_MATERIALIZE_ROWS rows; 'fused' never."""
    name = _conv_mode(mode)
    return name == "materialize" or (name == "auto" and rows >= CONV_MATERIALIZE_ROWS)


def _ptr(t: torch.Tensor | None, offset: int = 0) -> int:
    """t's address plus offset bytes, 0 for None."""
    return 0 if t is None else t.data_ptr() + offset


# The table lookup's planes of masks used again unchanged (layout_cache.py)
LUT_PLANES = LayoutCache()


def _lut_planes(mod, w: tuple, desc, m: int, isa: str, lut: str, int8: bool, threads: int,
                bf16: bool = False, peek: bool = False) -> torch.Tensor | bool | None:
    """The weight's planes in the layout of the table lookup that runs this call (m rows of
    float, bf16 or int8 activations on `threads`) where it runs and they are cached, else None:
    that kernel then hashes and transposes itself. (The caller holds the tensor until the
    kernel returns: another thread may drop it from the cache.) peek: those already stored (not
    a use), False where the lookup runs and none are."""
    kind, nbytes = mod.lut_layout(desc, m, isa, lut, int8, threads, bf16)
    if not kind:
        return None

    def build() -> torch.Tensor:
        out = torch.empty(nbytes, dtype=torch.uint8)  # (torch's CPU allocations are 64-byte aligned)
        mod.pack_lut_planes(desc, kind, out.data_ptr(), nbytes, torch.get_num_threads())
        return out

    src = w[0]
    key = (kind, src.data_ptr(), tuple(src.shape), src.stride(), desc.n, desc.k, desc.k0, desc.k1)
    if peek:
        stored = LUT_PLANES.peek(src, key)
        return False if stored is None and LUT_PLANES.enabled() else stored
    return LUT_PLANES.get(src, key, build)


# Frozen weights as the binary weights of the same effective mask (C++ frozen_mask_planes), from a
# mask's second use: the frozen format's kernels hash every weight's freeze state on every call
# (4096 x 4096, one thread: 55 ms int8 at batch 1, 0.37 ms for the binary int8 lookup), and every
# binary kernel and layout then serves them. Keyed by the free-bit stream (its version seen).
FROZEN_PLANES = LayoutCache()
_ONE = torch.ones(1)


def _as_binary(mod, w: tuple, peek: bool = False) -> tuple | None:
    """w, or for a frozen weight's block the binary block of the same weights once its plane
    (1 bit a weight) is cached; the outputs are the frozen weight's (the effective weights are
    the same numbers, the int8 sums the same integers). peek: the plane only if already stored
    (not a use), else None."""
    if w[0].dim() == 3:
        return w
    free_bits, _offsets, k0, k1, fk0, fk1, k, dist, scale, prune, lock = w

    def build() -> torch.Tensor:
        desc, _alive = _ext.weight_desc(mod, w)
        out = torch.empty(1, desc.n, (k + 31) // 32, dtype=torch.int32)
        mod.frozen_mask_planes(desc, out.data_ptr(), torch.get_num_threads())
        return out

    key = ("frozen", free_bits.data_ptr(), tuple(free_bits.shape), k0, k1, fk0, fk1, k, prune, lock)
    planes = FROZEN_PLANES.peek(free_bits, key) if peek else FROZEN_PLANES.get(free_bits, key, build)
    if planes is None:
        return None if peek else w
    return planes, _ONE, k0, k1, k, dist, scale


# The implicit int8 GEMM's tap-major P/N planes (as its panels' masks) of conv masks used again unchanged (its own
# cache: a mask whose small calls run the table lookup's layout keeps both)
CONV_TAPS_PLANES = LayoutCache()


def _conv_taps_planes(mod, w: tuple, desc, taps: int, threads: int, peek: bool = False) -> torch.Tensor | None:
    """The weight's tap-major planes (pack_conv_taps_planes) from its mask's second use on, else
    None (peek: those already stored, not counted as a use). For a weight conv_int8_taps_refusal
    takes (binary signed-constant); the caller holds the tensor until the kernel returns."""

    def build() -> torch.Tensor:
        out = torch.empty(mod.conv_taps_planes_bytes(desc, taps), dtype=torch.uint8)
        mod.pack_conv_taps_planes(desc, taps, out.data_ptr(), out.numel(), threads)
        return out

    src = w[0]
    key = ("taps", taps, src.data_ptr(), tuple(src.shape), src.stride(), desc.n, desc.k, desc.k0, desc.k1)
    return CONV_TAPS_PLANES.peek(src, key) if peek else CONV_TAPS_PLANES.get(src, key, build)


def linear(x, bias, *rest, int8: bool = False, isa: str | None = None, threads: int | None = None,
           lut: str | None = None) -> torch.Tensor:
    """y = x W_eff[row_begin:row_end]ᵀ + bias in x's dtype (rest: the weight block, row_begin,
    row_end). int8: x quantized per token (signed-constant weights), sums in integers. lut:
    'auto' (default: SLT_HW_CPU_LUT, else auto), 'on' or 'off', the table-lookup kernel where it
    applies (AVX2 or AVX-512, binary format, signed constant, few rows: lut_info(); AVX2
    automatically also needs enough weight rows a thread: csrc/cpu/linear.h)."""
    mod = _ext.require()
    *w, r0, r1 = rest
    w = _as_binary(mod, w)
    desc, _alive = _ext.weight_desc(mod, w)  # the tensors behind desc's pointers
    k = desc.k
    bf16 = x.dtype == torch.bfloat16 and not int8  # the kernel reads bf16 as it is (exactly)
    # (each torch call skipped where it would change nothing: ~2 µs apiece, on a ~50 µs call)
    x2 = x if x.dim() == 2 else x.reshape(-1, k)
    x2 = x2 if bf16 or x2.dtype == torch.float32 else x2.to(torch.float32)
    if x2.stride(-1) != 1 or (x2.shape[0] > 1 and x2.stride(0) < k):  # the kernel reads rows ldx >= K apart
        x2 = x2.contiguous()  # (an expanded batch has row stride 0)
    ldx = k if x2.shape[0] <= 1 else x2.stride(0)
    isa, lut = _isa(isa), _lut(lut)
    nt = torch.get_num_threads() if threads is None else threads
    xq = xs = None
    if int8:  # quantize_activations' bits, without its seven operator calls (this CPU's vectors)
        xq = torch.empty(x2.shape[0], k, dtype=torch.int8)
        xs = torch.empty(x2.shape[0], dtype=torch.float32)
        mod.quantize_int8_isa(x2.data_ptr(), x2.shape[0], k, ldx, xq.data_ptr(), xs.data_ptr(), nt, isa)
        ldx = k
    y = torch.empty(x2.shape[0], r1 - r0, dtype=torch.float32)
    b = bias if bias is None or (bias.dtype == torch.float32 and bias.is_contiguous()) else \
        bias.to(torch.float32).contiguous()
    xf, xb = (0, x2.data_ptr()) if bf16 else (0 if int8 else x2.data_ptr(), 0)
    planes = _lut_planes(mod, w, desc, x2.shape[0], isa, lut, int8, nt, bf16)
    mod.slt_linear(desc, xf, x2.shape[0], ldx, y.data_ptr(), r1 - r0, r0, r1, _ptr(b), _ptr(xq), _ptr(xs), isa, nt,
                   lut, xb, _ptr(planes), 0 if planes is None else planes.numel())
    y = y if x.dim() == 2 else y.reshape(*x.shape[:-1], r1 - r0)
    return y if x.dtype == torch.float32 else y.to(x.dtype)


class _PreparedCall:
    """What a prepared call's choices read besides its arguments, as they were when it was
    made: the threads, the environment, the backend registry's generation and the masks'
    version counters (chosen() compares them now)."""

    __slots__ = ("masks", "versions", "threads", "environment", "generation")

    def __init__(self, masks: tuple, threads: int):
        self.masks, self.threads, self.versions = masks, threads, tuple(t._version for t in masks)
        self.environment, self.generation = _environment(), dispatch.generation()

    def chosen(self) -> bool:
        """Whether a call now would make the same choices (given the same arguments)."""
        return (torch.get_num_threads() == self.threads and _environment() == self.environment
                and dispatch.generation() == self.generation
                and tuple(t._version for t in self.masks) == self.versions)


def _as_prepared(t, key: tuple) -> bool:
    """Whether t is a plain CPU float32 tensor of the shape and strides in key, outside
    torch.compile and autograd (a prepared call's input)."""
    return type(t) is torch.Tensor and t.dtype == torch.float32 and t.device.type == "cpu" and \
        (t.shape, t.stride()) == key and not torch.compiler.is_compiling() and \
        not (t.requires_grad and torch.is_grad_enabled())


class PreparedLinear(_PreparedCall):
    """A linear() call on contiguous float32 x prepared for calls like it: its C++ plan
    (_C.LinearPlan: the int8 path's quantizer, then slt_linear, the same calls as linear()'s,
    the same bits) made once with the bias and the table lookup's planes for its rows.
    __call__ skips the op layer's checks and the backend's choices, whose inputs matches()
    compares instead (x's shape, strides and dtype, and _PreparedCall's): for an inference
    module that runs one layer on inputs of one shape again and again (SLTPackedLinear at a
    decode step): ~25 µs of Python a call."""

    __slots__ = ("plan", "x_key", "keep", "n")

    def __init__(self, plan, masks: tuple, x: torch.Tensor, keep: tuple, n: int, threads: int):
        super().__init__(masks, threads)
        self.plan, self.keep, self.n, self.x_key = plan, keep, n, (x.shape, x.stride())

    def matches(self, x: torch.Tensor) -> bool:
        """Whether a call with x (the same weight, bias and settings: the caller's to check)
        would make this one's choices."""
        return _as_prepared(x, self.x_key) and self.chosen()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """x W_effᵀ + bias for x that matches()."""
        y = torch.empty(*x.shape[:-1], self.n, dtype=torch.float32)
        self.plan.run(x.data_ptr(), y.data_ptr())
        return y


def prepare_linear(x, bias, *rest, int8: bool = False) -> PreparedLinear | None:
    """A prepared call for linear()'s arguments (as slt_hw._ops checked them; the call just made
    with them by this backend) on contiguous float32 x with a float32 contiguous bias (or none),
    once the table lookup's planes its kernel runs with are cached (from a mask's second use);
    else None (the op runs as it is). The masks must have version counters (not inference
    tensors): an in-place edit of them must be seen."""
    *w, r0, r1 = rest
    if type(x) is not torch.Tensor or x.dtype != torch.float32 or x.device.type != "cpu" or \
            not x.is_contiguous() or x.dim() < 1 or x.numel() == 0 or \
            (bias is not None and (bias.dtype != torch.float32 or not bias.is_contiguous())) or \
            any(t.is_inference() for t in w[:2]):
        return None
    mod = _ext.require()
    wb = _as_binary(mod, w, peek=True)  # (frozen: prepared once its binary plane is cached)
    if wb is None:
        return None
    desc, alive = _ext.weight_desc(mod, wb)
    isa, lut, nt, m = _isa(None), _lut(None), torch.get_num_threads(), x.numel() // desc.k
    planes = _lut_planes(mod, wb, desc, m, isa, lut, int8, nt, peek=True)
    if planes is False:
        return None
    plan = mod.linear_plan(desc, m, r0, r1, int8, isa, nt, lut, _ptr(planes),
                           0 if planes is None else planes.numel(), _ptr(bias))
    return PreparedLinear(plan, tuple(w[:2]), x, (alive, planes, bias), r1 - r0, nt)  # (w's masks: their versions)


def attention(q, k, v, key_padding_mask, attn_mask, causal: bool, scale: float) -> torch.Tensor:
    """The attention op: a decode step (float32 or bfloat16, at most ATTENTION_DECODE_QUERIES
    queries, outside autograd) by the C++ kernel, which reads each head's cached keys and values
    once (csrc/cpu/attention.h; torch's SDPA took 1.1-3.3x its time on one Zen 4 core, 5-7x on a
    bfloat16 cache); anything else by torch's SDPA (composite.sdpa_attention)."""
    mod = _ext.require()
    tensors = (q, k, v)
    if (q.shape[1] > mod.ATTENTION_DECODE_QUERIES
            or q.dtype not in (torch.float32, torch.bfloat16) or any(t.stride(-1) != 1 for t in tensors)
            or (attn_mask is not None and attn_mask.device.type != "cpu")
            or (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))):
        return composite.sdpa_attention(q, k, v, key_padding_mask, attn_mask, causal, scale)
    b, t, h, d = q.shape  # (the op checked: k and v of q's dtype and device, their shapes)
    s, dv = k.shape[1], v.shape[3]
    out = torch.empty(b, t, h, dv, dtype=torch.float32, device=q.device)
    if out.numel() > 0:
        kpm = None if key_padding_mask is None else key_padding_mask.contiguous()
        mask = None if attn_mask is None else attn_mask.contiguous() if attn_mask.dtype == torch.bool else \
            attn_mask.to(torch.float32).contiguous()  # (float: added in float32, as the reference adds it)
        is_bool = mask is not None and mask.dtype == torch.bool
        mod.attention_decode(q.data_ptr(), k.data_ptr(), v.data_ptr(), _ptr(kpm), out.data_ptr(), b, t, s, h, d, dv,
                             list(q.stride()[:3]), list(k.stride()[:3]), list(v.stride()[:3]), bool(causal),
                             float(scale), torch.get_num_threads(), q.dtype == torch.bfloat16,
                             _ptr(mask) if is_bool else 0, 0 if mask is None or is_bool else _ptr(mask))
    return out.to(q.dtype)  # (float32 sums; bfloat16 rounded once, as torch rounds)


def materialize(*args, out: torch.Tensor | None = None, threads: int | None = None,
                isa: str | None = None, taps: int = 1) -> torch.Tensor:
    """W_eff[row_begin:row_end] float32 (args: the weight block, row_begin, row_end); `out`: a
    (rows, K) float32 buffer to reuse. isa: whose vector kernels build it (default as linear's:
    SLT_HW_CPU_ISA, else the best here; 'scalar' is the portable loop), bit-identical whichever.
    taps > 1: each row tap-major, [t * K/taps + c] = W_eff[c * taps + t] (a conv weight
    (out, in, kh, kw) stored as (out, kh, kw, in): channels-last)."""
    mod = _ext.require()
    *w, r0, r1 = args
    desc, _alive = _ext.weight_desc(mod, _as_binary(mod, w))  # the tensors behind desc's pointers
    out = _output(out, r1 - r0, desc.k)
    mod.materialize(out.data_ptr(), desc, r0, r1, torch.get_num_threads() if threads is None else threads, _isa(isa),
                    taps)
    return out


def conv2d(x, bias, *rest) -> torch.Tensor:
    """slt_conv2d (rest: the weight block, kernel_size, stride, padding, dilation, groups): im2col
    and the fused linear, or (conv_materializes) F.conv2d in float32 with the weight materialised
    for this call only, in x's memory layout (torch's convolution runs a channels-last x with a
    contiguous weight up to 1.6x slower than with a channels-last one); either way in x's dtype
    and conv2d_output_format(x)'s layout."""
    w, (kernel, stride, padding, dilation, groups) = rest[:-5], rest[-5:]
    oh, ow = conv2d_output_size(x.shape[2], x.shape[3], kernel, stride, padding, dilation)
    if not conv_materializes(x.shape[0] * oh * ow):
        return composite.conv2d(linear, x, bias, *rest)
    n, cin_g, fmt = composite.rows_of(w), x.shape[1] // groups, conv2d_output_format(x)
    if fmt == torch.channels_last:  # (out, kh, kw, in) in memory, viewed as (out, in, kh, kw)
        weight = materialize(*w, 0, n, taps=kernel[0] * kernel[1]).view(n, *kernel, cin_g).permute(0, 3, 1, 2)
    else:
        weight = materialize(*w, 0, n).view(n, cin_g, *kernel)
    y = F.conv2d(x.to(torch.float32), weight, None if bias is None else bias.to(torch.float32), stride, padding,
                 dilation, groups)
    return y.contiguous(memory_format=fmt).to(x.dtype)


# conv2d_int8 quantizes this many patch bytes at a time (then runs the int8 kernel on them): the
# patch matrix of a large batch stays in cache rather than being 9x its input in memory.
CONV_INT8_CHUNK_BYTES = 4 << 20


def conv2d_int8(x, bias, *rest, isa: str | None = None, threads: int | None = None,
                lut: str | None = None) -> torch.Tensor:
    """slt_conv2d_int8 (rest: the weight block, kernel_size, stride, padding, dilation, groups,
    act_scale, out_scale, residual, relu): each output pixel's patch gathered from x
    (channels-last: a copy of an x that is not) as one int8 row in C++, in chunks of rows, then
    the int8 kernel over the chunk, per group (threads split its weight rows and, where those
    are few, its pixel rows); in x's dtype and conv2d_output_format(x)'s layout. act_scale
    "patch": each patch quantized as it is gathered (im2col_quantize_int8: F.unfold's columns,
    quantize_activations' bits); "image": x quantized once per image (quantize_int8_isa, an
    image a row), the patches then its bytes (im2col_int8); or, where conv_int8_taps_refusal
    allows (and SLT_HW_CPU_CONV_INT8 is not "patches"), no patch matrix: the images quantized
    into a zero frame of the padding (quantize_images_padded), and the implicit GEMM
    (conv2d_int8_taps, TapsCall) reads each pixel's taps in them, the same bits. The epilogue
    (out_scale, residual, relu: composite.conv_epilogue's bits) runs in the implicit GEMM's
    store, after the patches' kernel in one pass (apply_epilogue)."""
    mod = _ext.require()
    w, geometry, groups, act_scale, (scale, residual, relu) = _conv_int8_args(rest)
    w = _as_binary(mod, w)
    desc, _alive = _ext.weight_desc(mod, w)
    oh, ow = conv2d_output_size(x.shape[2], x.shape[3], *geometry)
    nt = torch.get_num_threads() if threads is None else threads
    if x.shape[0] == 0:  # (no plan: an empty batch's strides need not be any layout's, which the plans check)
        return _conv_output(mod, torch.empty(0, desc.n), x, oh, ow, desc.n, nt)
    x32 = x if x.dtype == torch.float32 else x.to(torch.float32)
    if x32.stride(1) != 1 and x32.numel():  # channels contiguous: the gather's AVX2 transposes, ~3x the
        x32 = _nchw_to_channels_last(mod, x32, nt)  # strided gather's speed, the conversion included
    b = None if bias is None else bias.to(torch.float32).contiguous()
    if residual is not None:  # (its rows as y's)
        residual = residual.to(torch.float32).contiguous(memory_format=torch.channels_last)
    isa = _isa(isa)
    call = None
    if act_scale == "image":
        if not x32.is_contiguous(memory_format=torch.channels_last):
            x32 = x32.contiguous(memory_format=torch.channels_last)
        call = _taps_call(mod, w, desc, _alive, x32, geometry, groups, isa, nt)
    if call is None:  # (the implicit GEMM declines: the patch matrix)
        call = PatchesCall(mod, w, desc, _alive, x32, geometry, groups, act_scale, isa, _lut(lut), nt)
    return _conv_output(mod, call.run(x32, b, scale, residual, relu), x, oh, ow, desc.n, nt)


def _conv_int8_args(rest: tuple) -> tuple:
    """conv2d_int8's arguments after x and bias: (the weight block, (kernel, stride, padding,
    dilation) as lists, groups, act_scale, (out_scale, residual, relu))."""
    w, (kernel, stride, padding, dilation, groups, act_scale) = rest[:-9], rest[-9:-3]
    return w, (list(kernel), list(stride), list(padding), list(dilation)), groups, act_scale, rest[-3:]


class _ConvCall:
    """What a conv2d_int8 call derives from its arguments and x's shape, whichever path runs it:
    the weight's descriptor (and the tensors it points into), one group's input shape, the
    geometry, the output's size, the ISA and the threads. Its kernels' calls, in order, are a
    C++ plan's (plan(): _C.ConvInt8Plan, csrc/cpu/plans.h), made per call here and once by
    a prepared call (PreparedConv2dInt8)."""

    __slots__ = ("mod", "desc", "alive", "shape", "geometry", "groups", "n", "oh", "ow", "isa", "threads")

    def __init__(self, mod, desc, alive, x32, geometry, groups, isa, threads):
        self.mod, self.desc, self.alive, self.geometry, self.groups = mod, desc, alive, geometry, groups
        self.shape = [x32.shape[0], x32.shape[1] // groups, x32.shape[2], x32.shape[3]]
        self.n, (self.oh, self.ow) = desc.n, conv2d_output_size(x32.shape[2], x32.shape[3], *geometry)
        self.isa, self.threads = isa, threads

    def run(self, x32: torch.Tensor, bias, scale, residual, relu: bool) -> torch.Tensor:
        """Output rows (b, oh, ow) in float32 of x32 (float32, this call's shape and strides;
        channels-last for act_scale "image"), with the epilogue: bias and scale float32 and
        contiguous, residual float32 rows as the output's (channels-last), or None. One C++ call
        of this call's plan (made for it: a prepared call keeps its own)."""
        y = torch.empty(x32.shape[0] * self.oh * self.ow, self.n, dtype=torch.float32)
        self.plan(x32, bias, scale, relu).run(x32.data_ptr(), y.data_ptr(), _ptr(residual))
        return y

    def _plan(self, x32: torch.Tensor, path: str, act_scale: str, bias, scale, relu: bool, lut: str = "auto",
              planes=None, chunk: int = 0, lut_planes: dict | None = None):
        """The C++ plan (_C.ConvInt8Plan) of this call on inputs of x32's shape and strides: bias
        and scale float32 contiguous or None; the caller keeps them, and this call, alive."""
        lut_planes = {r: p for r, p in (lut_planes or {}).items() if isinstance(p, torch.Tensor)}
        return self.mod.conv_int8_plan(self.desc, list(x32.shape), list(x32.stride()), *self.geometry, self.groups,
                                       path, act_scale, self.isa, self.threads, lut, _ptr(planes),
                                       0 if planes is None else planes.numel(), chunk, list(lut_planes),
                                       [t.data_ptr() for t in lut_planes.values()],
                                       [t.numel() for t in lut_planes.values()], _ptr(bias), _ptr(scale), relu)


class PatchesCall(_ConvCall):
    """conv2d_int8's patch-matrix path for one convolution and input shape and strides: each
    output pixel's patch gathered as one int8 row (quantized as it is gathered, act_scale
    "patch"; or the bytes of x quantized per image, "image"), in chunks of rows, then the int8
    kernel over each chunk, per group, then the epilogue in one pass (apply_epilogue). What a
    call derives from its arguments (the descriptor, the chunks, the table lookup's planes for
    their rows) is kept, as TapsCall's."""

    __slots__ = ("lut", "act_scale", "chunk", "planes")

    def __init__(self, mod, w, desc, alive, x32, geometry, groups, act_scale, isa, lut, threads, peek=False):
        super().__init__(mod, desc, alive, x32, geometry, groups, isa, threads)
        self.lut, self.act_scale = lut, act_scale
        m = x32.shape[0] * self.oh * self.ow
        self.chunk = max(1, min(m, CONV_INT8_CHUNK_BYTES // desc.k))
        # the table lookup's planes, per chunk size (where the lookup runs, while they are cached)
        self.planes = {rows: _lut_planes(mod, w, desc, rows, isa, lut, True, threads, peek=peek)
                       for rows in {min(self.chunk, m - m0) for m0 in range(0, m, self.chunk)}}

    def ready(self) -> bool:
        """Whether every chunk has the planes its lookup runs with (peek: not yet stored)."""
        return all(p is not False for p in self.planes.values())

    def plan(self, x32: torch.Tensor, bias, scale, relu: bool):
        """The patches' plan: the gather, the int8 kernel over each chunk and group (with the
        table lookup's planes for its rows), then apply_epilogue (_ConvCall._plan)."""
        return self._plan(x32, "patches", self.act_scale, bias, scale, relu, self.lut, chunk=self.chunk,
                          lut_planes=self.planes)


class TapsCall(_ConvCall):
    """conv2d_int8's implicit GEMM for one convolution and input shape ("image" scales, where
    conv_int8_taps_refusal allows): _ConvCall's and the weight's tap-major planes (or None)."""

    __slots__ = ("planes",)

    def __init__(self, mod, desc, alive, x32, geometry, groups, isa, threads, planes):
        super().__init__(mod, desc, alive, x32, geometry, groups, isa, threads)
        self.planes = planes

    def plan(self, x32: torch.Tensor, bias, scale, relu: bool):
        """The implicit GEMM's plan: the images quantized into a zero frame of the padding (one
        group of channels not a multiple of 4: padded to one), then conv2d_int8_taps per group,
        the epilogue in its store (_ConvCall._plan)."""
        return self._plan(x32, "taps", "image", bias, scale, relu, planes=self.planes)


def _taps_call(mod, w: tuple, desc, alive, x32: torch.Tensor, geometry: tuple, groups: int, isa: str,
               threads: int, peek: bool = False) -> TapsCall | None:
    """The implicit GEMM's call for channels-last float32 x32, or None where it declines
    (SLT_HW_CPU_CONV_INT8=patches, conv_int8_taps_refusal); with the weight's tap-major planes
    where they are cached (peek: not counted as a use of them), where the taps run with them."""
    kernel = geometry[0]
    why = _taps_refusal(mod, desc, x32, geometry, groups, isa, True)
    planes = None if why else _conv_taps_planes(mod, w, desc, kernel[0] * kernel[1], threads, peek)
    if not why and planes is None:
        why = _taps_refusal(mod, desc, x32, geometry, groups, isa, False)
    return None if why else TapsCall(mod, desc, alive, x32, geometry, groups, isa, threads, planes)


def _taps_refusal(mod, desc, x32: torch.Tensor, geometry: tuple, groups: int, isa: str, planes: bool) -> str:
    """Why the implicit GEMM declines x32 (with the weight's tap-major planes or without), or ""."""
    if _conv_int8_mode() == "patches":
        return "patches forced"
    shape = [x32.shape[0], x32.shape[1] // groups, x32.shape[2], x32.shape[3]]
    return mod.conv_int8_taps_refusal(desc, shape, list(x32.stride()), *geometry, isa, planes)


_ENV_NAMES = (dispatch.ENV_VAR, ISA_ENV, CONV_INT8_ENV, LUT_ENV, layout_cache.ENV)
# os.environ's own dict (POSIX: kept in step with every os.environ change), read with its keys
# encoded once: os.environ.get encodes the key and decodes the value, 5 of them ~3.5 µs, a
# tenth of a prepared convolution's Python
_ENV_DATA = getattr(os.environ, "_data", None)
_ENV_KEYS = tuple(os.environ.encodekey(k) for k in _ENV_NAMES) if isinstance(_ENV_DATA, dict) and \
    hasattr(os.environ, "encodekey") else None


def _environment() -> tuple:
    """The environment a conv2d_int8 call's choices read (backend, ISA, implicit GEMM, table
    lookup, layouts cache), as compared between calls (not as read: the values may be bytes)."""
    if _ENV_KEYS is not None:
        get, (a, b, c, d, e) = _ENV_DATA.get, _ENV_KEYS
        return get(a), get(b), get(c), get(d), get(e)
    get = os.environ.get
    return tuple(get(k) for k in _ENV_NAMES)


class PreparedConv2dInt8(_PreparedCall):
    """A conv2d_int8 call (a TapsCall or a PatchesCall) prepared for calls like it, with its
    bias, epilogue scale and ReLU: its C++ plan (_C.ConvInt8Plan, the op's own: the same bits)
    made once. __call__ skips the op layer's checks and the backend's choices, whose inputs
    matches() compares instead (x's and the residual's shapes, strides and dtype, and
    _PreparedCall's). For an inference module that runs one convolution on inputs of one
    shape again and again (SLTFusedConv2d): the op layer's checks and choices were ~60 µs of
    Python a convolution, a third of a CIFAR ResNet-18 forward at batch 1, and the kernel
    calls' own Python and argument conversion ~20 µs more."""

    __slots__ = ("call", "x_key", "residual_key", "plan", "keep", "out_shape")

    def __init__(self, call: TapsCall | PatchesCall, masks: tuple, x: torch.Tensor, residual, bias, scale,
                 relu: bool):
        super().__init__(masks, call.threads)
        self.call = call
        self.x_key = (x.shape, x.stride())
        self.residual_key = None if residual is None else (residual.shape, residual.stride())
        self.plan, self.keep = call.plan(x, bias, scale, relu), (bias, scale)  # (the plan points into them)
        self.out_shape = (x.shape[0], call.n, call.oh, call.ow)

    def matches(self, x: torch.Tensor, residual: torch.Tensor | None) -> bool:
        """Whether a call with x and residual (the same weight, bias, scale and settings: the
        caller's to check) would make this one's choices. (With autograd on an input the op
        then says what autograd cannot do.)"""
        if not _as_prepared(x, self.x_key):
            return False
        if residual is None:
            if self.residual_key is not None:
                return False
        elif not _as_prepared(residual, self.residual_key):
            return False
        return self.chosen()

    def __call__(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """The convolution of x (matches(x, residual)) with the prepared epilogue, channels-last."""
        y = torch.empty(self.out_shape, dtype=torch.float32, memory_format=torch.channels_last)
        self.plan.run(x.data_ptr(), y.data_ptr(), 0 if residual is None else residual.data_ptr())
        return y


def prepare_conv2d_int8(x, bias, *rest) -> PreparedConv2dInt8 | None:
    """A prepared call for conv2d_int8's arguments (as slt_hw._ops checked them; the call just
    made with them by this backend), on channels-last float32 x, a float32 bias and scale, a
    channels-last float32 residual and a channels-last output, once the layouts its kernels
    run with are cached (the implicit GEMM's tap-major planes, the table lookup's planes: from
    a mask's second use); else None (the op runs as it is)."""
    w, geometry, groups, act_scale, (scale, residual, relu) = _conv_int8_args(rest)
    if x.dtype != torch.float32 or conv2d_output_format(x) != torch.channels_last or \
            any(t is not None and (t.dtype != torch.float32 or not t.is_contiguous()) for t in (bias, scale)) or \
            (residual is not None and (residual.dtype != torch.float32 or
                                       not residual.is_contiguous(memory_format=torch.channels_last))) or \
            any(t.is_inference() for t in w[:2]):
        return None
    mod = _ext.require()
    wb = _as_binary(mod, w, peek=True)  # (frozen: prepared once its binary plane is cached)
    if wb is None:
        return None
    desc, alive = _ext.weight_desc(mod, wb)
    isa, nt = _isa(None), torch.get_num_threads()
    call = _taps_call(mod, wb, desc, alive, x, geometry, groups, isa, nt, peek=True) if act_scale == "image" else None
    # (where the implicit GEMM runs, or runs only, from the tap-major planes (AVX2), prepared once they are cached)
    if act_scale == "image" and CONV_TAPS_PLANES.enabled() and (
            call.planes is None if call is not None else not _taps_refusal(mod, desc, x, geometry, groups, isa, True)):
        return None
    if call is None:
        call = PatchesCall(mod, wb, desc, alive, x, geometry, groups, act_scale, isa, _lut(None), nt, peek=True)
        if not call.ready():
            return None
    return PreparedConv2dInt8(call, tuple(w[:2]), x, residual, bias, scale, relu)  # (w's masks: their versions)


def _conv_output(mod, y: torch.Tensor, x: torch.Tensor, oh: int, ow: int, n: int, threads: int) -> torch.Tensor:
    """y's rows (b, oh, ow) as the convolution's output: conv2d_output_format(x)'s layout, x's dtype."""
    if conv2d_output_format(x) == torch.channels_last or not y.numel():
        y = y.view(x.shape[0], oh, ow, n).permute(0, 3, 1, 2)  # a channels-last view
    else:
        out = torch.empty(x.shape[0], n, oh, ow, dtype=torch.float32)
        mod.transpose_batched(y.data_ptr(), out.data_ptr(), x.shape[0], oh * ow, n, threads)
        y = out
    return y if x.dtype == torch.float32 else y.to(x.dtype)


def _nchw_to_channels_last(mod, x: torch.Tensor, threads: int) -> torch.Tensor:
    """x in channels-last memory: C++ transposes for a contiguous (NCHW) x (torch's strided copy
    takes 2-3x as long, and its OpenMP threads then spin beside ours), torch's copy otherwise."""
    if not x.is_contiguous():
        return x.contiguous(memory_format=torch.channels_last)
    out = torch.empty_like(x, memory_format=torch.channels_last)
    mod.transpose_batched(x.data_ptr(), out.data_ptr(), x.shape[0], x.shape[1], x.shape[2] * x.shape[3], threads)
    return out


def _output(out: torch.Tensor | None, rows: int, k: int) -> torch.Tensor:
    """A fresh (rows, k) float32 tensor, or the caller's, checked (reusing one avoids page faults)."""
    if out is None:
        return torch.empty(rows, k, dtype=torch.float32)
    if not isinstance(out, torch.Tensor) or out.device.type != "cpu" or out.dtype != torch.float32 \
            or not out.is_contiguous() or tuple(out.shape) != (rows, k):
        raise ValueError(f"out: expected a contiguous CPU float32 tensor of shape {(rows, k)}, got "
                         f"{getattr(out, 'dtype', type(out).__name__)} {tuple(getattr(out, 'shape', ()))}")
    return out


def generate_weights(key: Key, n: int, k: int, dist: Dist | str, scale: float, row_begin: int = 0,
                     row_end: int | None = None, *, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rows [row_begin, row_end) of W0, float32 (row_end - row_begin, k)."""
    mod = _ext.require()
    check_key(key)
    check_geometry(n, k)
    r0, r1 = check_rows(n, row_begin, row_end)
    desc = mod.WeightDesc(n, k, key.k0, key.k1, Dist.parse(dist).code, check_scale(scale))
    out = _output(out, r1 - r0, k)
    mod.generate_weights(out.data_ptr(), desc, r0, r1, torch.get_num_threads())
    return out


def freeze_states(fkey: Key, n: int, k: int, prune_threshold: int, lock_threshold: int) -> torch.Tensor:
    """(n, k) uint8: 0 pruned, 1 locked, 2 free (lock_threshold = P + L)."""
    mod = _ext.require()
    check_key(fkey, "fkey")
    check_geometry(n, k)
    check_thresholds(prune_threshold, lock_threshold)
    out = torch.empty(n, k, dtype=torch.uint8)
    desc = mod.WeightDesc(n, k, 0, 0, fk0=fkey.k0, fk1=fkey.k1, prune_thr=prune_threshold, lock_thr=lock_threshold)
    mod.freeze_states(out.data_ptr(), desc, torch.get_num_threads())
    return out


def _reasons(device: torch.device) -> list[str]:
    if device.type != "cpu":
        return [f"runs on CPU tensors only, got {device.type}"]
    mod, why = _ext.load()
    return [why] if mod is None else []


def _describe() -> str:
    try:
        isa = chosen_isa()
        # where the automatic choice differs per problem (an AVX-512 CPU): the ISA of the others
        isa_big = chosen_isa(False, 1 << 20)
        # int8 (binary weights): the batches whose ISA is another, as ranges
        other = [r for r in range(1, 257) if chosen_isa(True, r) != isa]
        spans = [(r, r) for r in other[:1]]
        for r in other[1:]:
            spans[-1:] = [(spans[-1][0], r)] if r == spans[-1][1] + 1 else [spans[-1], (r, r)]
        batches = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in spans)
        isa8 = chosen_isa(True, other[0]) if other else isa
        per_path = [f"{isa8} kernels for int8 activations at batch {batches} (binary weights)"] if other else []
        per_path += [f"{isa_big} kernels for float ones past batch 8"] if isa_big != isa else []
        per_path = f"; {' and '.join(per_path)} (measured faster)" if per_path else ""
    except (RuntimeError, ValueError) as e:  # no extension, or a bad SLT_HW_CPU_ISA
        isa, per_path = f"ISA unknown: {e}", ""
    try:
        info = lut_info()
        on = info["mode"] == "on"
        parts = []
        if info["mode"] != "off" and (info["available"] or info["available_int8"]):
            rows, rows8 = (info["max_rows"], info["max_rows_int8"]) if on else (info["auto_rows"],
                                                                               info["auto_rows_int8"])
            codes = "" if on else " (its codes cached: a mask's second use on)"
            if info["available_int8"]:
                enough = "" if on else ", with >= 512 weight rows a thread"
                enough += codes if info["isa_int8"] != "avx2" else ""
                parts.append(f"int8 activations at batch <= {rows8}{enough} ({info['isa_int8']})")
            if info["isa"] == "avx2" and info["available"]:
                enough = "" if on else ", with >= 128 weight rows a thread per row"
                parts.append(f"float activations as int8 slices at batch <= {rows}{enough} (avx2)")
            elif info["available"]:
                enough = "" if on else f" with >= 512 weight rows a thread{codes}"
                parts.append(f"float activations as int8 slices at batch <= {info['sliced_rows']}{enough}, "
                             f"else float tables at batch <= {rows} ({info['isa']})")
            used = {info["isa"] if info["available"] else "", info["isa_int8"] if info["available_int8"] else ""}
            cache = "on" if LayoutCache.enabled() else "off"
            if "avx2" in used:
                parts.append(f"masks used twice kept as hashed P/N planes, 2 bits/weight ({layout_cache.ENV}={cache})")
            if any(u.startswith(("avx512", "amx")) for u in used):
                parts.append(f"masks used twice kept as base-3 codes of 3 weights, 1.78 bits/weight "
                             f"({layout_cache.ENV}={cache})")
        weights = "binary (on avx2 also multicoat)" if "avx2" in (info["isa"], info["isa_int8"]) else "binary"
        table = (f"; {weights} signed-constant weights: table lookup for {'; '.join(parts)} ({LUT_ENV}={info['mode']})"
                 if parts else "")
    except (RuntimeError, ValueError) as e:  # no extension, or a bad SLT_HW_CPU_LUT / _LAYOUT_CACHE
        table = f"; table lookup unknown: {e}"
    try:
        mode = _conv_mode(None)
        conv = {"auto": f"from {CONV_MATERIALIZE_ROWS} output pixels", "fused": "never",
                "materialize": "always"}[mode]
        gather = _ext.require().patch_gather(64, True, [3, 3], _isa(None))
        how = {"avx512-vbmi": "AVX-512 VBMI byte permutes where channels are a multiple of 16 and taps <= 16, "
                              "else AVX2 transposes",
               "avx2": "AVX2 transposes", "scalar": "a portable loop"}[gather]
        if _conv_int8_mode() == "patches":
            taps = f" ({CONV_INT8_ENV}=patches: never in place)"
        elif "avx512vnni" in cpu_isas() and _isa(None) in ("auto", "avx512vnni"):
            cache = "on" if LayoutCache.enabled() else "off"
            taps = (" or, where channels are a multiple of 4 or there is one group (padded to 4), reads each "
                    "pixel's taps in place in them (implicit GEMM, AVX-512 VNNI, from 64 output pixels; at any once "
                    f"a mask used twice keeps its tap-major panel masks, 2 bits/weight, {layout_cache.ENV}={cache}; "
                    "the epilogue fused in its store)")
        elif "avx2" in cpu_isas() and _isa(None) in ("auto", "avx2"):
            cache = "on" if LayoutCache.enabled() else "off"
            taps = (" or, once a mask used twice keeps its tap-major panel masks (2 bits/weight, "
                    f"{layout_cache.ENV}={cache}), where channels are a multiple of 4 or there is one group (padded "
                    "to 4), reads each pixel's taps in place in them (implicit GEMM, AVX2 vpmaddubsw; the epilogue "
                    "fused in its store)")
        else:
            taps = ""
        conv = (f"; conv2d materialises the weight {conv} ({CONV_ENV}={mode}); conv2d_int8 gathers each output "
                f"pixel's patch in C++ for the int8 kernel, quantizing it (act_scale 'patch') or copying the bytes "
                f"of x quantized per image ('image') ({how}; channels-last x){taps}")
    except (RuntimeError, ValueError) as e:
        conv = f"; conv2d: {e}"
    try:
        bf16 = ("; bf16 activations past batch 8 (binary signed-constant weights): AVX512-BF16 dot products"
                if _ext.require().cpu_bf16_dot(_isa(None)) else "")
    except (RuntimeError, ValueError):  # no extension, or a bad SLT_HW_CPU_ISA
        bf16 = ""
    try:
        panels = ""
        if "avx512vnni" in cpu_isas() and _isa(None) in ("auto", "avx512vnni", "amx"):
            cache = "on" if LayoutCache.enabled() else "off"
            panels = ("; int8 activations past batch 8 where no lookup runs (binary signed-constant weights): "
                      "AVX-512 VNNI panels, masks used twice kept as their byte masks, 2 bits/weight "
                      f"({layout_cache.ENV}={cache})")
        elif "avx2" in cpu_isas() and _isa(None) in ("auto", "avx2") and _lut(None) != "on":
            cache = "on" if LayoutCache.enabled() else "off"
            panels = ("; int8 activations from batch 64 (binary signed-constant weights, and multicoat ones whose "
                      "coats share a scale, as their levels), once a mask used twice "
                      "keeps its panels' byte masks (2 bits/weight, "
                      f"{layout_cache.ENV}={cache}): AVX2 vpmaddubsw panels in place of the lookup")
    except (RuntimeError, ValueError):  # no extension, or a bad SLT_HW_CPU_ISA
        panels = ""
    try:
        amx = ("; AMX tiles for bf16/int8 activations from batch 16 (binary signed-constant weights): "
               f"{ISA_ENV}=amx, not chosen automatically") if "amx" in cpu_isas() and isa != "amx" else ""
    except RuntimeError:  # no extension
        amx = ""
    try:
        attn = (f"; attention decode steps (float32 or bfloat16, <= {_ext.require().ATTENTION_DECODE_QUERIES} "
                "queries): one pass over each head's keys and one over its values, else torch's SDPA")
    except RuntimeError:  # no extension
        attn = ""
    try:
        frozen = ("; frozen-format weights run as the binary weight of their effective mask from its second use "
                  f"(1 bit/weight kept, {layout_cache.ENV}={'on' if LayoutCache.enabled() else 'off'})")
    except ValueError:  # a bad SLT_HW_CPU_LAYOUT_CACHE (the table lookup's part says so)
        frozen = ""
    levels = ("; multicoat weights whose coats share one scale (the search's levels): int8 activations summed "
              "over the coats as integers, AVX2's register and every blocked kernel in one pass over the levels")
    return (f"slt_hw._C fused CPU kernel ({isa}, OpenMP{per_path}): weights regenerated in registers"
            f"{table}{bf16}{panels}{conv}{amx}{attn}{frozen}{levels}")


_int8 = functools.partial(linear, int8=True)

register(Backend(
    name="cpp", priority=20, description=_describe, not_supported_reasons=_reasons,
    ops={**composite.linear_ops(linear), "attention": attention, "conv2d_planes": conv2d, "conv2d_frozen": conv2d,
         **composite.int8_ops(_int8, linear), "conv2d_int8_planes": conv2d_int8, "conv2d_int8_frozen": conv2d_int8,
         "materialize_planes": materialize, "materialize_frozen": materialize},
    lacks={"linear_grouped": "no grouped kernel: slt_mha runs one linear per projection"},
))
