"""convert, pack, save/load round trips, corrupt files, memory_report = checkpoint payload, dense export."""

import json
import struct

import pytest
import torch
from torch import nn

import slt_hw
from slt_hw.checkpoint import CheckpointError, read
from slt_hw.models import GNN, MLP, AttentionRegressor
from slt_hw.nn import SLTLinear, gcn_adjacency

KINDS = [{}, {"num_coats": 3}, {"p_prune": 0.3, "p_lock": 0.2}, {"threshold": "global"}]


def _net():
    return nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                         nn.Linear(4 * 5 * 5, 33, bias=False), nn.BatchNorm1d(33, affine=False), nn.ReLU(),
                         nn.Linear(33, 3, bias=False))


def _payload_bytes(path):
    tensors, _ = read(path)
    return sum(t.numel() * t.element_size() for t in tensors.values())


@pytest.mark.parametrize("kw", KINDS)
def test_convert_pack_save_load_roundtrip(tmp_path, kw):
    net = _net()
    model = slt_hw.convert(net, seed=11, sparsity=0.6, **kw)
    assert isinstance(model[3], SLTLinear) and model[3].name == "3"
    model.train()(torch.randn(8, 2, 5, 5))  # batch-norm statistics
    model.eval()
    x = torch.randn(6, 2, 5, 5)
    packed = slt_hw.pack(model, backend="reference").eval()
    want = model(x)
    torch.testing.assert_close(packed(x), want, rtol=1e-5, atol=1e-5)  # conv via im2col: reduction order
    info = slt_hw.save(model, tmp_path / "m.slt")
    assert info.bytes_on_disk == (tmp_path / "m.slt").stat().st_size
    loaded = slt_hw.load(tmp_path / "m.slt", backend="reference")
    assert torch.equal(loaded(x), packed(x))  # exact
    again = slt_hw.pack(loaded)
    for a, b in zip(slt_hw.pack(model).modules(), again.modules(), strict=True):
        if hasattr(a, "planes") and a.format.value != "frozen":
            assert torch.equal(a.planes, b.planes)
    report = slt_hw.memory_report(model)
    assert report.payload_bytes == info.payload_bytes == _payload_bytes(tmp_path / "m.slt")
    assert slt_hw.memory_report(loaded).payload_bytes == info.payload_bytes
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left nothing behind


def test_linear_roundtrip_is_bit_exact(tmp_path):
    model = MLP([10, 33, 4], seed=3, bias=True).eval()
    with torch.no_grad():
        model.layers[0].bias.normal_()
    x = torch.randn(5, 10)
    slt_hw.save(model, tmp_path / "m.slt")
    loaded = slt_hw.load(tmp_path / "m.slt", backend="reference")
    assert torch.equal(loaded(x), model(x))
    assert torch.equal(slt_hw.pack(model, backend="reference")(x), model(x))


def test_models_roundtrip(tmp_path):
    edges = torch.randint(0, 20, (2, 60), generator=torch.Generator().manual_seed(0))
    adj = gcn_adjacency(edges, 20)
    x = torch.randn(20, 6)
    for model, args in [(GNN(6, 16, 3, seed=1, iters=3, shared_masks=False, num_coats=2), (x, adj)),
                        (AttentionRegressor(seed=2, qk_dim=8, v_dim=8), (torch.randn(4, 5, 2),)),
                        (AttentionRegressor(seed=2, qk_dim=8, v_dim=8, blocks=2), (torch.randn(4, 5, 2),))]:
        model.eval()
        slt_hw.save(model, tmp_path / "m.slt")
        loaded = slt_hw.load(tmp_path / "m.slt")
        torch.testing.assert_close(loaded(*args), model(*args), rtol=1e-5, atol=1e-5)
        assert slt_hw.memory_report(model).payload_bytes == _payload_bytes(tmp_path / "m.slt")
    rep = slt_hw.memory_report(GNN(6, 16, 3, seed=1, iters=3, shared_masks=False))
    hidden = next(e for e in rep.layers if e.name == "hidden.block.lin")
    assert hidden.masks == 3 and hidden.mask_bits == 3 * 16 * 16  # unshared: one mask per iteration


def test_custom_class_needs_model(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x) * 2

    model = slt_hw.convert(Net(), seed=0)
    slt_hw.save(model, tmp_path / "m.slt")
    with pytest.raises(ValueError, match="model"):
        slt_hw.load(tmp_path / "m.slt")
    loaded = slt_hw.load(tmp_path / "m.slt", model=slt_hw.convert(Net(), seed=0), backend="reference")
    x = torch.randn(2, 4)
    assert torch.equal(loaded(x), model(x))


def test_corrupt_and_mismatched_files(tmp_path):
    model = MLP([10, 20, 4], seed=3)
    p = tmp_path / "m.slt"
    slt_hw.save(model, p)
    blob = bytearray(p.read_bytes())
    flipped = tmp_path / "flip.slt"
    blob2 = bytearray(blob)
    blob2[-3] ^= 0x10
    flipped.write_bytes(bytes(blob2))
    with pytest.raises(CheckpointError, match="checksum"):
        slt_hw.load(flipped)
    truncated = tmp_path / "trunc.slt"
    truncated.write_bytes(bytes(blob[: len(blob) // 2]))
    with pytest.raises(CheckpointError, match="safetensors"):
        slt_hw.load(truncated)
    n = struct.unpack("<Q", bytes(blob[:8]))[0]
    header = json.loads(bytes(blob[8:8 + n]))
    meta = json.loads(header["__metadata__"]["slt_hw"])
    meta["contract_version"] = 99
    header["__metadata__"]["slt_hw"] = json.dumps(meta)
    hb = json.dumps(header).encode()
    other = tmp_path / "v99.slt"
    other.write_bytes(struct.pack("<Q", len(hb)) + hb + bytes(blob[8 + n:]))
    with pytest.raises(CheckpointError, match="contract version 99"):
        slt_hw.load(other)
    with pytest.raises(FileNotFoundError, match="path"):
        slt_hw.load(tmp_path / "missing.slt")
    with pytest.raises(CheckpointError, match="do not match"):
        slt_hw.load(p, model=MLP([10, 20, 20, 4], seed=3))
    with pytest.raises(TypeError, match="model"):
        slt_hw.save("not a model", p)


def test_dense_export_loads_into_original():
    net = nn.Sequential(nn.Linear(7, 9, bias=False), nn.ReLU(), nn.Linear(9, 2, bias=False))
    model = slt_hw.convert(net, seed=5, sparsity=0.5).eval()
    state = slt_hw.export_dense(model)
    assert set(state) == {"0.weight", "2.weight"}
    net.load_state_dict(state)
    x = torch.randn(3, 7)
    torch.testing.assert_close(net(x), model(x))
    mha = nn.MultiheadAttention(8, 2, batch_first=True, bias=False)
    conv = slt_hw.convert(nn.Sequential(mha), seed=1).eval()
    mha.load_state_dict({k[2:]: v for k, v in slt_hw.export_dense(conv).items()})
    x = torch.randn(2, 4, 8)
    torch.testing.assert_close(mha(x, x, x, need_weights=False)[0], conv[0](x, x, x)[0], rtol=1e-5, atol=1e-5)


def test_memory_report_formats():
    model = MLP([64, 128, 10], seed=0, num_coats=3, coat_sparsities=(0.5, 0.75, 0.9))
    rep = slt_hw.memory_report(model)
    fc0 = rep.layers[0]
    n = 64 * 128
    assert fc0.dense_fp32_bits == 32 * n and fc0.dense_bf16_bits == 16 * n and fc0.binary_bits == n
    assert fc0.mask_bits == n + (n - int(0.5 * n)) + (n - int(0.75 * n))  # hierarchical coats
    frozen = slt_hw.memory_report(MLP([64, 128, 10], seed=0, p_prune=0.4, p_lock=0.2))
    assert frozen.layers[0].mask_bits < 0.5 * n  # only free weights carry bits
    assert rep.seed_bits == 64


def test_convert_bad_input():
    with pytest.raises(TypeError, match="model"):
        slt_hw.convert("x", seed=0)
    with pytest.raises(ValueError, match="model"):
        slt_hw.convert(nn.ReLU(), seed=0)
    with pytest.raises(ValueError, match="threshold"):
        slt_hw.convert(nn.Linear(2, 2), seed=0, threshold="layerwise")
    with pytest.raises(ValueError, match="groups"):
        slt_hw.convert(nn.Conv2d(4, 4, 3, groups=2), seed=0)
    with pytest.raises(TypeError, match="seed"):
        slt_hw.convert(nn.Linear(2, 2), seed=1.5)
