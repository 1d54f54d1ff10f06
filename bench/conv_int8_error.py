"""How much each int8 convolution loses, layer by layer, on real images: CIFAR-10 test images
through the packed CIFAR ResNet-18 (signed-constant weights, a random 50 % mask: no training
needed to compare quantizers), each convolution fed the float network's own input to it.

    .venv/bin/python bench/conv_int8_error.py [--images 32] [--data ../shared/datasets]

Columns: ||y - y_fp32|| / ||y_fp32|| of slt_conv2d_int8 with act_scale "patch" and "image", of
a per-pixel scale (each input pixel's channels quantized on their own: a reference point, not
an implemented path), and of torch's int8 convolutions on the same weight: static (the "x86"
qconfig, calibrated on this very input: its best case) and dynamic (quantize_dynamic's). The
SLT weight is exact in int8 (±1, 0 times one scale), so the slt columns are the activations'
error alone; torch's quantize the weight too.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import warnings

import torch
import torch.ao.nn.quantized.dynamic as qdyn
import torch.nn.functional as F
from utils import report

import slt_hw
from slt_hw.datasets import cifar10_arrays
from slt_hw.models import ResNet18
from slt_hw.nn.packed_layers import SLTPackedLayer
from slt_hw.ops import quantize_activations, slt_conv2d_int8_reference


def torch_int8(conv: torch.nn.Conv2d, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """conv's output under torch's static (calibrated on x) and dynamic int8."""
    tq = torch.ao.quantization
    with warnings.catch_warnings():  # (torch.ao.quantization's deprecation notice)
        warnings.simplefilter("ignore")
        m = torch.nn.Sequential(tq.QuantStub(), copy.deepcopy(conv), tq.DeQuantStub()).eval()
        m.qconfig = tq.get_default_qconfig("x86")
        prepared = tq.prepare(m)
        prepared(x)
        dyn = copy.deepcopy(conv)
        dyn.qconfig = tq.default_dynamic_qconfig
        return {"torch static": tq.convert(prepared)(x), "torch dynamic": qdyn.Conv2d.from_float(dyn)(x)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=32, help="CIFAR-10 test images")
    ap.add_argument("--data", default=None, help="dataset root (default: $SLT_HW_DATA or ../shared/datasets)")
    args = ap.parse_args()
    torch.manual_seed(0)
    _, _, images, _ = cifar10_arrays(args.data)
    x = torch.from_numpy(images[:args.images]).permute(0, 3, 1, 2).float() / 255
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
    model = slt_hw.pack(slt_hw.convert(ResNet18((3, 32, 32), 10, seed=0, dense=True), seed=0, sparsity=0.5)).eval()
    inputs = {}
    for name, m in model.named_modules():
        if isinstance(m, SLTPackedLayer) and m.kind == "conv2d":
            m.register_forward_hook(lambda mod, a, y, name=name: inputs.__setitem__(name, (mod, a[0].detach())))
    with torch.inference_mode():
        model(x)
    rows = []
    with torch.inference_mode():
        for name, (m, a) in inputs.items():
            c = m.conv
            w = dataclasses.replace(m.copies[0].packed, shape=tuple(m.weight_shape))
            geometry = (c["stride"], c["padding"], c["dilation"])
            dense = w.materialize().reshape(w.shape)
            ref = F.conv2d(a, dense, None, *geometry)
            q, s = quantize_activations(a.permute(0, 2, 3, 1))  # (per pixel: its channels)
            outs = {"patch": slt_conv2d_int8_reference(a, w, None, *geometry),
                    "image": slt_conv2d_int8_reference(a, w, None, *geometry, act_scale="image"),
                    "pixel (reference point)": F.conv2d((q.float() * s[..., None]).permute(0, 3, 1, 2), dense, None,
                                                        *geometry)}
            conv = torch.nn.Conv2d(a.shape[1], dense.shape[0], dense.shape[2:], *geometry, bias=False)
            conv.weight.data.copy_(dense)
            outs |= torch_int8(conv, a)
            row = {"layer": name, "in channels": a.shape[1], "input min": f"{float(a.min()):.2f}"}
            row |= {k: f"{float((y - ref).norm() / ref.norm()):.4f}" for k, y in outs.items()}
            rows.append(row)
    report("conv_int8_error", rows, list(rows[0]))


if __name__ == "__main__":
    main()
