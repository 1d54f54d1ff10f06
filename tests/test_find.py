"""`slt-hw find` and slt_hw.find: digits accuracy, built-in data sets, local loaders' errors."""

import pytest
import torch

import slt_hw
from slt_hw import data
from slt_hw.cli import main
from slt_hw.train import FindConfig, find


def test_digits_supermask_reaches_90_percent_at_half_sparsity(tmp_path):
    res = find(FindConfig(dataset="digits", sparsity=0.5, hidden=512, epochs=8, out=str(tmp_path / "d.slt")),
               progress=False)
    assert res.test_metric >= 0.90, res.history
    loaded = slt_hw.load(tmp_path / "d.slt", backend="reference")
    ds = data.digits(seed=0)
    acc = float((loaded(ds.test.x).argmax(-1) == ds.test.y).float().mean())
    assert abs(acc - res.test_metric) < 1e-6  # the checkpoint is the model that was evaluated
    assert slt_hw.memory_report(res.model).payload_bytes == res.saved.payload_bytes


@pytest.mark.parametrize("method", ["multicoat", "frozen"])
def test_find_methods_and_global_threshold(tmp_path, method):
    res = find(FindConfig(dataset="synthetic", method=method, threshold="global", ramp_epochs=2, hidden=64,
                          epochs=3, out=str(tmp_path / "s.slt")), progress=False)
    assert res.test_metric > 0.5 and len(res.history) == 3


def test_find_graph_and_attention(tmp_path):
    res = find(FindConfig(dataset="sbm", hidden=32, epochs=20, lr=0.05, out=None), progress=False)
    assert res.test_metric > 0.5
    res = find(FindConfig(dataset="angular_velocity", hidden=16, epochs=1, batch_size=512, out=None),
               progress=False)
    assert res.metric_name == "mse" and res.test_metric == res.test_metric


def test_builtin_data_deterministic():
    a, b = data.sbm_graph(seed=3), data.sbm_graph(seed=3)
    assert torch.equal(a.features, b.features) and torch.equal(a.adj.to_dense(), b.adj.to_dense())
    av = data.angular_velocity(num_samples=8, seq_len=5)
    assert av.train.x.shape == (8, 5, 2) and torch.allclose(av.train.x.norm(dim=-1), torch.ones(8, 5))


def test_local_loaders_explain_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        data.cifar10(tmp_path)
    with pytest.raises(FileNotFoundError, match="edge.csv.gz"):
        data.ogb_node(tmp_path, "ogbn-arxiv")
    with pytest.raises(ValueError, match="data_root"):
        FindConfig(dataset="ogb")


def test_find_config_bad_input():
    with pytest.raises(ValueError, match="dataset"):
        FindConfig(dataset="mnist")
    with pytest.raises(ValueError, match="method"):
        FindConfig(method="gem")
    with pytest.raises(ValueError, match="sparsity"):
        FindConfig(sparsity=1.5)
    with pytest.raises(ValueError, match="epochs"):
        FindConfig(epochs=0)


def test_cli_find(tmp_path, capsys):
    out = tmp_path / "cli.slt"
    assert main(["find", "--dataset", "synthetic", "--hidden", "32", "--epochs", "2", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert out.exists() and "accuracy" in text and "saved" in text and "dense fp32" in text
