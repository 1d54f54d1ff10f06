"""bench/papers/*: each paper reproduction's --quick run finishes and writes its CSV and plot."""

import csv
import importlib.util
import pathlib
import sys

import numpy as np
import pytest

PAPERS = pathlib.Path(__file__).resolve().parents[1] / "bench" / "papers"


def _load(name: str):
    if str(PAPERS) not in sys.path:  # the scripts share bench/papers/paper_io.py
        sys.path.insert(0, str(PAPERS))
    spec = importlib.util.spec_from_file_location(f"paper_{name}", PAPERS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rows(path: pathlib.Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_partial_freezing_quick(tmp_path):
    assert _load("partial_freezing").main(["--quick", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "results.csv")
    assert {r["kind"] for r in rows} == {"dense", "pruned", "frozen"}
    assert (tmp_path / "tradeoff.png").stat().st_size > 0
    by = {(r["kind"], r["hidden"]): r for r in rows}
    for h in {r["hidden"] for r in rows}:
        # frozen/pruned sources store bits only for their free weights: smaller than the dense source's
        assert int(by["frozen", h]["payload_bits"]) < int(by["dense", h]["payload_bits"])
    assert max(float(r["accuracy"]) for r in rows) > 0.6


def test_partial_freezing_quick_on_a_local_cifar10_copy(tmp_path):
    """--dataset cifar10 --data-root: the documented command, on fake batches in the real on-disk format."""
    from test_data_loaders import _fake_cifar  # tests/ is on sys.path (conftest)

    _fake_cifar(tmp_path / "data", per_batch=8, test=6)
    out = tmp_path / "out"
    mod = _load("partial_freezing")
    assert mod.main(["--quick", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--out", str(out)]) == 0
    rows = _rows(out / "results.csv")
    assert {r["dataset"] for r in rows} == {"cifar10"} and {r["kind"] for r in rows} == {"dense", "pruned", "frozen"}
    assert (out / "tradeoff.png").stat().st_size > 0
    by = {(r["kind"], r["hidden"]): r for r in rows}
    for h in {r["hidden"] for r in rows}:
        # an MLP on the 3072 flattened pixels: the first layer has 3072 * h weights
        assert int(by["dense", h]["weights"]) == 3072 * int(h) + int(h) * int(h) + int(h) * 10
        assert int(by["frozen", h]["payload_bits"]) < int(by["dense", h]["payload_bits"])
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)


def test_partial_freezing_cifar10_needs_a_root(tmp_path, capsys):
    mod = _load("partial_freezing")
    with pytest.raises(SystemExit) as e:
        mod.main(["--quick", "--dataset", "cifar10", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--data-root" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError, match="data_batch_1"):  # a root without the batches: names the file
        mod.main(["--quick", "--dataset", "cifar10", "--data-root", str(tmp_path), "--out", str(tmp_path / "o")])


def test_msup_folded_gnn_quick(tmp_path):
    mod = _load("msup_folded_gnn")
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = {r["variant"]: r for r in _rows(tmp_path / "results.csv")}
    assert len(rows) == 7 and (tmp_path / "memory_accuracy.png").stat().st_size > 0
    bits = {k: int(v["payload_bits"]) for k, v in rows.items()}
    # one shared mask is smaller than one mask per iteration; multicoat costs more bits than binary
    assert bits["binary folded-shared"] < bits["binary folded-unshared"]
    assert bits["binary unfolded"] < bits["multicoat unfolded"]
    assert all(float(v["reduction"]) > 0.8 for k, v in rows.items() if "dense" not in k)
    assert max(float(v["accuracy"]) for v in rows.values()) > 0.6


def test_mha_slt_quick(tmp_path):
    mod = _load("mha_slt")
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    rows = _rows(tmp_path / "results.csv")
    milp = {}
    for r in rows:
        if r["method"] == "milp":
            milp.setdefault(int(r["n"]), []).append(float(r["error"]))
    assert len(milp) == 3 and all(len(v) == 3 for v in milp.values())
    ns = sorted(milp)
    # wider sources approximate the target better (subset sums over more products)
    assert sum(milp[ns[-1]]) < sum(milp[ns[0]])
    ep = [float(r["error"]) for r in rows if r["method"] == "edge_popup"]
    assert ep
    fit = (tmp_path / "fit.txt").read_text()
    assert "fit (MILP)" in fit
    zero = float(fit.split("mean |target output| ")[1].split()[0])  # the error of all-empty masks
    # Edge-Popup (10 % kept, lr 0.01 cosine) finds a mask better than switching every weight off
    assert max(ep) < 0.9 * zero
    for name in ("error_vs_n.png", "error_vs_T.png", "seq_len.csv"):
        assert (tmp_path / name).stat().st_size > 0


def test_mha_target_learns_omega():
    """The paper's training recipe (AdamW lr 0.1, batch 1024, 25 epochs) with positional embeddings and the
    spectral-norm projection beats predicting the mean, and stays in the theorem's target class."""
    import torch

    mod = _load("mha_slt")
    torch.set_num_threads(1)
    tgt = mod.train_target(25, 10000)
    assert tgt["test_mse"] < 0.8 * tgt["mean_mse"]
    for k in ("wq", "wk", "wv", "wo"):
        assert torch.linalg.matrix_norm(tgt[k], 2) <= 1 + 1e-5


def test_subset_sum_milp_hits_reachable_target():
    mod = _load("mha_slt")
    items = np.array([0.3, -0.7, 0.25, 0.9, -0.1])
    z = mod.subset_sum(items, 0.3 + 0.9 - 0.1, time_limit=5.0)
    assert abs(items[z].sum() - 1.1) < 1e-9
    z = mod.subset_sum(items, 0.3 + 0.9 - 0.1, time_limit=5.0, tol=1e-3)  # stops within tol
    assert abs(items[z].sum() - 1.1) <= 1e-3 + 1e-9


def test_transformer_slt_quick(tmp_path):
    mod = _load("transformer_slt")
    assert mod.main(["--quick", "--out", str(tmp_path)]) == 0
    summary = _rows(tmp_path / "transformer_summary.csv")
    milp = [r for r in summary if r["method"] == "milp"]
    assert {int(r["blocks"]) for r in milp} == {1, 2} and any(r["method"] == "edge_popup" for r in summary)
    # even at n = 16 the construction's masks beat the residual path alone (output = input)
    assert all(float(r["mean"]) < float(r["residual_only"]) for r in milp)
    assert (tmp_path / "error_vs_blocks.png").stat().st_size > 0
    # --resume --rerun-edge-popup: the CSV's MILP rows read back as they were, Edge-Popup run again
    milp_rows = [r for r in _rows(tmp_path / "transformer.csv") if r["method"] == "milp"]
    assert mod.main(["--quick", "--out", str(tmp_path), "--resume", "--rerun-edge-popup", "--ep-sources", "2"]) == 0
    rows = _rows(tmp_path / "transformer.csv")
    assert [r for r in rows if r["method"] == "milp"] == milp_rows
    ep = [r for r in _rows(tmp_path / "transformer_summary.csv") if r["method"] == "edge_popup"]
    assert ep and all(int(r["sources"]) == 2 for r in ep)


def test_two_layers_for_one_construction():
    """Pensia et al.: ReLU(x A_m^T) B_m^T with subset-sum masks reproduces x W^T (any sign of x)."""
    mod = _load("transformer_slt")
    rng = np.random.default_rng(0)
    a_w, b_w = rng.uniform(-1, 1, (160, 2)), rng.uniform(-1, 1, (3, 160))
    w_t = rng.uniform(-0.7, 0.7, (3, 2))
    ma, mb = mod.pair_masks(a_w, b_w, w_t, nonneg=False, time_limit=1.0, tol=1e-4)
    assert (ma.sum(1) <= 1).all()  # one input coordinate per hidden unit
    x = rng.uniform(-2, 2, (50, 2))
    approx = np.maximum(x @ (a_w * ma).T, 0) @ (b_w * mb).T
    assert np.abs(approx - x @ w_t.T).max() < 1e-3


def test_real_data_paper_scripts_on_fake_files(tmp_path, monkeypatch):
    """The documented real-data commands (cifar10_slt, msup_folded_gnn --dataset, fashion_mnist_formats) on
    small fake files in the real formats."""
    from test_real_data import fake_cifar_tar, fake_fashion, fake_planetoid  # tests/ is on sys.path (conftest)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "data"
    fake_cifar_tar(data)
    fake_fashion(data, n=(64, 16))
    fake_planetoid(data, name="cora")
    mod = _load("cifar10_slt")
    out = tmp_path / "c"
    argv = ["--experiments", "freezing", "--train-subset", "8", "--epochs", "1", "--seeds", "1", "--threads", "1",
            "--data-root", str(data), "--out", str(out)]
    assert mod.main(argv) == 0
    rows = _rows(out / "results.csv")
    assert [r["variant"] for r in rows] == [v for v, _ in mod.EXPERIMENTS["freezing"]]
    bits = [int(r["payload_bits"]) for r in rows]
    assert max(bits) / min(bits) < 1.02  # equal checkpoint size, by construction
    assert not list((out / "states").iterdir())  # run states removed once a row is written
    assert mod.main([*argv, "--resume"]) == 0 and len(_rows(out / "results.csv")) == 3  # nothing left to run
    gnn = _load("msup_folded_gnn")
    assert gnn.main(["--quick", "--dataset", "cora", "--conv", "gin", "--data-root", str(data),
                     "--out", str(tmp_path / "g")]) == 0
    rows = _rows(tmp_path / "g" / "results.csv")
    assert len(rows) == 8 and {r["conv"] for r in rows} == {"gin", "gcn"}  # + Kipf & Welling's 2-layer GCN
    fm = _load("fashion_mnist_formats")
    assert fm.main(["--seeds", "1", "--epochs", "1", "--threads", "1", "--data-root", str(data),
                    "--out", str(tmp_path / "f")]) == 0
    rows = _rows(tmp_path / "f" / "results.csv")
    assert [r["method"] for r in rows] == ["edge_popup", "multicoat", "frozen"]
    assert float(rows[1]["payload_bits_per_weight"]) > float(rows[0]["payload_bits_per_weight"]) \
        > float(rows[2]["payload_bits_per_weight"])
