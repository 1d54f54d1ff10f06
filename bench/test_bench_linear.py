"""pytest-benchmark cases: slt_linear per backend against dense F.linear, same shapes, same run.

    .venv/bin/python -P -m pytest bench/test_bench_linear.py --benchmark-enable --benchmark-group-by=param:shape
"""

import pytest
import torch
import torch.nn.functional as F

from slt_hw import dispatch, pack_binary, slt_linear

SHAPES = {"4096x4096-b1": (4096, 4096, 1), "4096x4096-b64": (4096, 4096, 64)}
BACKENDS = [n for n, why in dispatch.reasons("cpu", "linear_planes").items() if not why and n != "triton"]


@pytest.fixture(scope="module", params=list(SHAPES))
def case(request):
    n, k, b = SHAPES[request.param]
    mask = torch.rand(n, k, generator=torch.Generator().manual_seed(0)) < 0.5
    packed = pack_binary(mask, seed=0, name="bench")
    return request.param, packed, torch.randn(b, k)


@pytest.mark.parametrize("impl", ["dense F.linear fp32", *BACKENDS])
def test_linear(benchmark, case, impl):
    shape, packed, x = case
    benchmark.extra_info["shape"] = shape
    if impl.startswith("dense"):
        w = packed.materialize()
        benchmark(F.linear, x, w)
    else:
        benchmark(slt_linear, x, packed, backend=impl)
