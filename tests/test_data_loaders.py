"""slt_hw.data.cifar10 / ogb_node on tiny fake copies written in the real on-disk formats."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from slt_hw import data


def _cifar_batch(path, n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    """One python batch as in cifar-10-python.tar.gz: a pickled dict with bytes keys, data (n, 3072) uint8
    (1024 red, 1024 green, 1024 blue values, row-major 32 x 32 each), labels a list of ints."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    y = [int(v) for v in rng.integers(0, 10, n)]
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"fake", b"labels": y, b"data": x, b"filenames": [b"x.png"] * n}, f,
                    protocol=2)
    return x, y


def _fake_cifar(root, per_batch: int = 4, test: int = 3):
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    train = [_cifar_batch(base / f"data_batch_{i}", per_batch, i) for i in range(1, 6)]
    return base, train, _cifar_batch(base / "test_batch", test, 99)


def test_cifar10_reads_the_python_batches(tmp_path):
    _, train, (xte, yte) = _fake_cifar(tmp_path)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the parent or the batches folder itself
        ds = data.cifar10(root)
        assert ds.name == "cifar10" and ds.num_classes == 10
        assert ds.train.x.shape == (20, 3, 32, 32) and ds.test.x.shape == (3, 3, 32, 32)
        assert ds.train.x.dtype == torch.float32 and ds.train.y.dtype == torch.int64
        assert ds.train.y.tolist() == sum((y for _, y in train), []) and ds.test.y.tolist() == yte
        # channel-first layout, normalised per channel with the training statistics
        raw = torch.from_numpy(np.concatenate([x for x, _ in train])).float().view(-1, 3, 32, 32) / 255
        mean, std = raw.mean((0, 2, 3), keepdim=True), raw.std((0, 2, 3), keepdim=True)
        assert torch.allclose(ds.train.x, (raw - mean) / std, atol=1e-5)
        te = torch.from_numpy(xte).float().view(-1, 3, 32, 32) / 255
        assert torch.allclose(ds.test.x, (te - mean) / std, atol=1e-5)
        assert torch.allclose(ds.train.x.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_cifar10_bad_files(tmp_path):
    base, _, _ = _fake_cifar(tmp_path)
    (base / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="data_batch_3.*not a readable"):
        data.cifar10(tmp_path)
    _cifar_batch(base / "data_batch_3", 4, 3)
    with open(base / "test_batch", "wb") as f:  # labels do not match the images
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]}, f)
    with pytest.raises(ValueError, match="test_batch.*expected 3 labels"):
        data.cifar10(tmp_path)
    with open(base / "test_batch", "wb") as f:  # not 32 x 32 x 3
        pickle.dump({b"data": np.zeros((3, 1000), np.uint8), b"labels": [1, 2, 3]}, f)
    with pytest.raises(ValueError, match=r"test_batch.*\(N, 3072\)"):
        data.cifar10(tmp_path)
    with open(base / "test_batch", "wb") as f:
        pickle.dump({b"images": np.zeros((3, 3072), np.uint8)}, f)
    with pytest.raises(ValueError, match="test_batch.*'data' and 'labels'"):
        data.cifar10(tmp_path)
    (base / "test_batch").unlink()
    with pytest.raises(FileNotFoundError, match="test_batch"):
        data.cifar10(tmp_path)


def _gz(path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.writelines(",".join(str(v) for v in r) + "\n" for r in rows)


# a 6-node graph: a path 0-1-2-3-4 and the isolated node 5; 3 features, 3 classes
EDGES = [(0, 1), (1, 2), (2, 3), (3, 4)]
FEATS = [[0.5 * i, -1.0, 0.25 * i * i] for i in range(6)]
LABELS = [0, 0, 1, 1, 2, 2]


def _fake_ogb(root, name: str = "ogbn_arxiv"):
    base = root / name
    _gz(base / "raw" / "edge.csv.gz", EDGES)
    _gz(base / "raw" / "node-feat.csv.gz", FEATS)
    _gz(base / "raw" / "node-label.csv.gz", [[v] for v in LABELS])
    _gz(base / "raw" / "num-node-list.csv.gz", [[6]])  # present in the real download, not read
    _gz(base / "split" / "time" / "train.csv.gz", [[0], [2], [4], [5]])
    _gz(base / "split" / "time" / "valid.csv.gz", [[1]])
    _gz(base / "split" / "time" / "test.csv.gz", [[3], [1]])
    return base


def test_ogb_node_reads_the_raw_layout(tmp_path):
    _fake_ogb(tmp_path)
    ds = data.ogb_node(tmp_path, "ogbn-arxiv")
    assert ds.name == "ogbn-arxiv" and ds.num_classes == 3
    assert ds.features.shape == (6, 3) and ds.features.dtype == torch.float32
    assert torch.equal(ds.features, torch.tensor(FEATS))
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == LABELS
    assert ds.train.x.tolist() == [0, 2, 4, 5] and ds.train.y.tolist() == [0, 1, 2, 2]
    assert ds.test.x.tolist() == [3, 1] and ds.test.y.tolist() == [1, 0]
    assert ds.train.x.dtype == torch.int64
    adj = ds.adj.to_dense()
    assert adj.shape == (6, 6) and torch.allclose(adj, adj.T)  # undirected
    for i, j in EDGES:
        assert adj[i, j] > 0 and adj[j, i] > 0
    assert adj[0, 2] == 0 and adj[5, :5].abs().sum() == 0  # no made-up edges; node 5 stays isolated


def test_ogb_node_bad_files(tmp_path):
    base = _fake_ogb(tmp_path)
    _gz(base / "raw" / "node-label.csv.gz", [[v] for v in LABELS[:5]])
    with pytest.raises(ValueError, match="node-label.csv.gz has 5 rows"):
        data.ogb_node(tmp_path)
    _gz(base / "raw" / "node-label.csv.gz", [[v] for v in LABELS])
    _gz(base / "raw" / "edge.csv.gz", [*EDGES, (4, 6)])
    with pytest.raises(ValueError, match=r"edge.csv.gz has node ids in 0..6, expected 0..5"):
        data.ogb_node(tmp_path)
    _gz(base / "raw" / "edge.csv.gz", [(0, 1, 2)])
    with pytest.raises(ValueError, match="edge.csv.gz: expected 2 column"):
        data.ogb_node(tmp_path)
    (base / "raw" / "edge.csv.gz").write_bytes(b"0,1\n")  # not gzipped
    with pytest.raises(ValueError, match="edge.csv.gz is not a readable gzipped CSV"):
        data.ogb_node(tmp_path)
    _gz(base / "raw" / "edge.csv.gz", EDGES)
    _gz(base / "split" / "time" / "test.csv.gz", [[7]])
    with pytest.raises(ValueError, match="test.csv.gz has node ids"):
        data.ogb_node(tmp_path)
    (base / "split" / "time" / "test.csv.gz").unlink()
    with pytest.raises(FileNotFoundError, match="test.csv.gz"):
        data.ogb_node(tmp_path)


def test_msup_gnn_paper_script_runs_on_a_local_ogb_copy(tmp_path):
    """bench/papers/msup_folded_gnn.py --ogb-root: the documented command, on the fake graph."""
    import csv
    import importlib.util
    import pathlib
    import sys

    _fake_ogb(tmp_path / "data")
    papers = pathlib.Path(__file__).resolve().parents[1] / "bench" / "papers"
    if str(papers) not in sys.path:
        sys.path.insert(0, str(papers))
    spec = importlib.util.spec_from_file_location("paper_msup_folded_gnn_ogb", papers / "msup_folded_gnn.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "out"
    assert mod.main(["--quick", "--ogb-root", str(tmp_path / "data"), "--seeds", "2", "--out", str(out)]) == 0
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * 7 and {r["seed"] for r in rows} == {"0", "1"}
    assert all(0.0 <= float(r["accuracy"]) <= 1.0 for r in rows)


def test_find_cli_runs_on_a_local_cifar10_copy(tmp_path):
    """slt-hw find --dataset cifar10 --data-root: the documented command, on the fake batches."""
    from slt_hw.cli import main

    _fake_cifar(tmp_path / "data")
    ckpt = tmp_path / "c.slt"
    assert main(["find", "--dataset", "cifar10", "--data-root", str(tmp_path / "data"), "--epochs", "1",
                 "--hidden", "16", "--batch-size", "8", "--out", str(ckpt), "--no-progress"]) == 0
    assert ckpt.stat().st_size > 0
