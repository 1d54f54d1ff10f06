"""What the table-lookup layout tests share (test_lut_planes.py: AVX2's P/N planes;
test_lut_codes.py: AVX-512's codes): a binary signed-constant weight, one direct call of the
extension's slt_linear with or without a layout, and a layout packed for it."""

import torch

from slt_hw import _ext, _ops, pack_binary


def binary(n, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    return pack_binary(torch.rand(n, k, generator=g) < 0.5, seed=seed, name="fc", dist="signed_constant")


def run(mod, isa, x, p, layout=None, r0=0, r1=None, lut="on", threads=1, int8=True):
    """mod's kernel on rows [r0, r1) of p's weight, int8 (quantized here) or float activations,
    reading `layout` (a tensor from pack) or making its own."""
    _, w = _ops.weight_args(p)
    r1 = p.out_features if r1 is None else r1
    desc, _alive = _ext.weight_desc(mod, w)
    xq = xs = None
    if int8:
        xq, xs = torch.empty(x.shape[0], desc.k, dtype=torch.int8), torch.empty(x.shape[0])
        mod.quantize_int8(x.data_ptr(), x.shape[0], desc.k, desc.k, xq.data_ptr(), xs.data_ptr())
    y = torch.zeros(x.shape[0], r1 - r0)
    ptr, nbytes = (0, 0) if layout is None else (layout.data_ptr(), layout.numel())
    mod.slt_linear(desc, 0 if int8 else x.data_ptr(), x.shape[0], desc.k, y.data_ptr(), r1 - r0, r0, r1, 0,
                   0 if xq is None else xq.data_ptr(), 0 if xs is None else xs.data_ptr(), isa, threads, lut, 0, ptr,
                   nbytes)
    return y


def pack(mod, isa, p, kind, m=1, int8=True, threads=1):
    """p's layout for m rows on isa (lut forced on), which must be `kind`; every byte written."""
    _, w = _ops.weight_args(p)
    desc, _alive = _ext.weight_desc(mod, w)
    got, nbytes = mod.lut_layout(desc, m, isa, "on", int8)
    assert got == kind, (got, m, int8)
    out = torch.full((nbytes,), 0xA5, dtype=torch.uint8)
    mod.pack_lut_planes(desc, kind, out.data_ptr(), nbytes, threads)
    return out


def built_on_second_use(cache, call, size):
    """call() three times: nothing in the layout cache after the first, `size` bytes from the
    second on, the same bits each time."""
    ys = []
    for calls in (1, 2, 3):
        ys.append(call())
        assert cache.nbytes() == (size if calls >= 2 else 0), calls
    assert all(torch.equal(y, ys[0]) for y in ys)
