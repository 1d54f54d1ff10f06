"""Workloads (zoo, CSV, slt_hw models) and the memory invariants and paper ratios."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from slt_hw.conversion import pack
from slt_hw.memory import memory_report
from slt_hw.models import MLP
from slt_hw.sim import config, engine, rng, workload
from slt_hw.sim.workload import Layer, Workload, model_bits


def test_zoo_shapes():
    r50 = workload.ZOO["resnet50"]()
    assert r50.weights == pytest.approx(25.5e6, rel=0.02)  # torchvision: 25.5 M (BN and biases aside)
    assert r50.macs == pytest.approx(4.09e9, rel=0.03)  # 4.1 GMACs at 224x224
    r18 = workload.ZOO["resnet18"]()
    assert r18.weights == pytest.approx(11.68e6, rel=0.01) and r18.macs == pytest.approx(1.81e9, rel=0.02)
    pre, dec = workload.ZOO["gpt2-prefill"](), workload.ZOO["gpt2-decode"]()
    assert pre.weights == dec.weights == 12 * 768 * 768  # qkv + proj + MLP of one block
    assert all(L.M == 1 for L in dec.layers)
    gin = workload.ZOO["gin-arxiv"]()
    assert len(gin.layers) == 8 and gin.layers[0].M == 169_343


def test_csv_gemm_and_scalesim_rows(tmp_path):
    f = tmp_path / "g.csv"
    f.write_text("name,M,N,K,format,density\nqkv,16,96,32,binary,0.5\nff,16,32,128,,\n")
    w = workload.from_csv(f)
    assert [(L.M, L.N, L.K) for L in w.layers] == [(16, 96, 32), (16, 32, 128)] and w.layers[0].density == 0.5
    s = tmp_path / "s.csv"
    s.write_text("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
                 "Conv1, 230, 230, 7, 7, 3, 64, 2,\n")
    L = workload.from_csv(s).layers[0]
    # SCALE-Sim's own rounding, ceil((230 - 7 + 2) / 2) = 113 (floor rounding would give 112)
    assert (L.M, L.N, L.K) == (113 * 113, 64, 147) and L.in_elems == 230 * 230 * 3
    g = tmp_path / "gemm.csv"
    g.write_text("Layer, M, N, K,\nqkv, 128, 2304, 768,\n")
    assert [(x.name, x.M, x.N, x.K) for x in workload.from_csv(g).layers] == [("qkv", 128, 2304, 768)]
    bad = tmp_path / "b.csv"
    bad.write_text("name,M,N\nx,1,2\n")
    with pytest.raises(ValueError, match="row 2: missing column 'k'"):
        workload.from_csv(bad)
    with pytest.raises(ValueError, match="workload"):
        workload.load_workload("resnet-9000")


def test_layer_fields_named():
    with pytest.raises(ValueError, match="x.K"):
        Layer("x", 1, 1, 0)
    with pytest.raises(ValueError, match="x.format"):
        Layer("x", 1, 1, 1, format="quaternary")
    with pytest.raises(ValueError, match="x.coat_densities"):
        Layer("x", 1, 1, 1, format="multicoat")


def test_memory_invariants_per_format():
    layers = (Layer("a", 3, 40, 50), Layer("b", 3, 30, 40, format="multicoat", coat_densities=(0.3, 0.1, 0.05)),
              Layer("c", 3, 20, 10, format="frozen", free_fraction=0.25, mask_copies=3))
    w = Workload("w", layers)
    expect = 40 * 50 * 1 + 30 * 40 * (1 + 0.3 + 0.1) + 20 * 10 * 0.25 * 3
    assert model_bits(w, "slt") == round(expect)
    assert model_bits(w, "dense", 16) == w.weights * 16
    assert model_bits(w, "binary") == w.weights and model_bits(w, "ternary") == 2 * w.weights
    mm = config.MaskMemoryConfig(multicoat=2.0)
    assert model_bits(w, "slt", mask_memory=mm) == round(expect - 30 * 40 * 1.4 + 30 * 40 * 2.0)


def test_msup_worked_example():
    L = Layer("l", 1, 1000, 1000, format="multicoat", coat_densities=(1 - 0.7, 1 - 0.9212, 1 - 0.9685))
    assert L.mask_bits_per_weight() == pytest.approx(1.379, abs=5e-4)


def test_paper_ratios_from_models():
    torch.manual_seed(0)
    binary = MLP([256, 128, 64], seed=3, sparsity=0.5)
    w = workload.from_model(binary)
    assert model_bits(w, "dense", 32) / model_bits(w, "slt") == 32  # binary mask vs fp32 weights, seeds aside
    frozen = pack(MLP([256, 128, 64], seed=3, sparsity=0.8, p_prune=0.5, p_lock=0.2))
    wf = workload.from_model(frozen)
    ratio = model_bits(w, "slt") / model_bits(wf, "slt")
    assert ratio == pytest.approx(1 / 0.3, rel=0.03)  # 70 % frozen: ~3.3x smaller than the binary SLT
    # the exact counts are the packed masks' information bits, as memory_report has them
    assert model_bits(wf, "slt") == sum(e.mask_bits for e in memory_report(frozen).layers)
    msup = MLP([512, 256], seed=1, num_coats=3, coat_sparsities=(0.7, 0.9212, 0.9685))
    bpw = model_bits(workload.from_model(msup), "slt") / (512 * 256)
    assert bpw == pytest.approx(1.379, abs=2e-3)
    packed = workload.from_model(pack(msup))
    assert model_bits(packed, "slt") == sum(e.mask_bits for e in memory_report(pack(msup)).layers)


def test_from_model_measures_rows_and_folding():
    from slt_hw.models import GNN

    g = GNN(16, 32, 4, seed=0, conv="gin", iters=3, shared_masks=False)
    x, adj = torch.randn(10, 16), torch.eye(10)
    w = workload.from_model(g, (x, adj))
    hidden = [L for L in w.layers if L.repeats == 3]
    assert hidden and all(L.M == 10 and L.mask_copies == 3 for L in hidden)
    r = engine.simulate(config.load_design("hiddenite"), w)
    assert r.cycles > 0


def test_generator_bits_match_the_contract_hash_count():
    # the engine's hash stream per weight is the contract's: 32 * hash_count / weights
    for dist, code in (("signed_constant", rng.SIGNED_CONSTANT), ("uniform", rng.UNIFORM), ("normal", rng.NORMAL)):
        n, k = 7, 96
        assert 32 * rng.hash_count(n, k, code) == engine.gen_bits(dist) * n * k
    assert engine.gen_bits("signed_constant") == 1 and engine.gen_bits("normal") == 16
    assert engine.gen_bits("signed_constant", frozen=True) == 17  # + the freeze state's 16-bit chunk
    assert np.isfinite(engine.gen_bits("uniform"))


def test_workload_wiring_is_checked_and_zoo_is_wired():
    with pytest.raises(ValueError, match=r"b.src: 'zz' is not an earlier layer"):
        Workload("w", (Layer("a", 1, 2, 3), Layer("b", 1, 2, 2, src=("zz",))))
    with pytest.raises(ValueError, match="b.add"):
        Workload("w", (Layer("a", 1, 2, 3), Layer("b", 1, 2, 2, add="b")))
    with pytest.raises(ValueError, match="used twice"):
        Workload("w", (Layer("a", 1, 2, 3), Layer("a", 1, 2, 2)))
    r = workload.ZOO["resnet50"]()
    by = {L.name: L for L in r.layers}
    assert by["layer1.0.conv3"].add == "layer1.0.downsample" and by["layer1.1.conv3"].add == "layer1.0.conv3"
    assert by["layer1.0.conv1"].src == ("conv1",) and by["layer1.0.downsample"].in_elems == 56 * 56 * 64
    assert by["layer1.0.conv2"].in_elems == 56 * 56 * 64 and by["layer1.0.conv2"].K == 64 * 9
    f = workload.ZOO["resnet50-folded"]()
    assert all(L.src is None for L in f.layers if ".folded." in L.name)
    dec = workload.ZOO["gpt2-decode"]()
    assert {L.wsrc for L in dec.layers if L.format == "activation"} == {None}  # K/V from the cache in DRAM
    cif = workload.ZOO["resnet18-cifar"]()
    assert cif.layers[0].K == 27 and cif.layers[0].M == 32 * 32 and cif.layers[-1].N == 100


def test_from_model_conv_rows_are_batch_times_output_pixels():
    import slt_hw

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, stride=2), torch.nn.ReLU(), torch.nn.Flatten(),
                              torch.nn.Linear(8 * 4 * 4, 10))
    cnn = slt_hw.convert(net, seed=0, sparsity=0.7)
    x = torch.randn(5, 3, 8, 8)
    for model in (cnn, slt_hw.pack(cnn)):
        conv, fc = workload.from_model(model, (x,)).layers
        assert (conv.M, conv.N, conv.K) == (5 * 4 * 4, 8, 27) and (fc.M, fc.N, fc.K) == (5, 10, 128)
        assert conv.density == pytest.approx(0.3, abs=0.02)
    without = workload.from_model(cnn, rows=7)
    assert [L.M for L in without.layers] == [7, 7]


def test_folded_resnet50_shares_weights_and_masks():
    r50, folded = workload.ZOO["resnet50"](), workload.ZOO["resnet50-folded"]()
    unshared = workload.fold(r50, ("layer3", "layer4"), shared_masks=False)
    assert folded.macs == r50.macs == unshared.macs
    # stage 3: 5 of 6 blocks fold into one, stage 4: 2 of 3; conv1 of block 1 is 1024 -> 256 (stage 3)
    removed = 4 * (1024 * 256 + 256 * 2304 + 256 * 1024) + 1 * (2048 * 512 + 512 * 4608 + 512 * 2048)
    assert model_bits(folded, "slt") == model_bits(r50, "slt") - removed
    assert model_bits(unshared, "slt") == model_bits(r50, "slt")  # one mask per iteration
    assert model_bits(folded, "dense", 8) == 8 * (r50.weights - removed)  # weights are stored once
    layer = next(L for L in folded.layers if L.name == "layer3.folded.conv2")
    assert layer.repeats == 5 and layer.mask_copies == 1


def test_with_format_remasks_weight_layers_only():
    w = workload.with_format(workload.ZOO["gpt2-prefill"](), "frozen", free_fraction=0.3)
    assert {L.format for L in w.layers} == {"frozen", "activation"}
    assert model_bits(w, "slt") == round(0.3 * w.weights)
