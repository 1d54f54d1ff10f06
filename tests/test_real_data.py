"""Real-data loaders on small fake files in the real formats: CIFAR-10 JPEG archive (and its cache),
Fashion-MNIST IDX, Planetoid pickles (restricted unpickler); find on them, and the usage errors."""

import collections
import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from slt_hw import data, datasets
from slt_hw.cli import main

CLASSES = datasets.CIFAR10_CLASSES


def fake_cifar_tar(root, per_class=(2, 1), size=32, seed=0):
    """cifar10/cifar10-jpeg.tar.gz: train/<class>/NNNN.jpg and test/<class>/NNNN.jpg, as the real copy."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder = root / "cifar10"
    folder.mkdir(parents=True, exist_ok=True)
    images = {}
    with tarfile.open(folder / datasets.CIFAR10_TAR, "w:gz") as tf:
        for split, n in zip(("train", "test"), per_class, strict=True):
            for c in CLASSES:
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, "JPEG")
                    name = f"{split}/{c}/{i:04d}.jpg"
                    info = tarfile.TarInfo(name)
                    info.size = len(buf.getvalue())
                    tf.addfile(info, io.BytesIO(buf.getvalue()))
                    images[name] = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    return folder / datasets.CIFAR10_TAR, images


def test_cifar10_jpeg_archive_decoded_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    tar, images = fake_cifar_tar(tmp_path / "data")
    ds = data.cifar10(tmp_path / "data")
    assert ds.train.x.shape == (20, 3, 32, 32) and ds.test.x.shape == (10, 3, 32, 32)
    assert ds.train.y.tolist() == [c for c in range(10) for _ in range(2)]  # sorted: class order, then file
    xtr, ytr, xte, yte = datasets.cifar10_arrays(tmp_path / "data")
    assert np.array_equal(xtr[3], images["train/automobile/0001.jpg"]) and ytr[3] == 1
    raw = torch.from_numpy(xtr).permute(0, 3, 1, 2).float() / 255
    mean, std = raw.mean((0, 2, 3), keepdim=True), raw.std((0, 2, 3), keepdim=True)
    assert torch.allclose(ds.train.x, (raw - mean) / std, atol=1e-5)
    cached = list((tmp_path / "cache" / "slt_hw").glob("cifar10-*.npz"))
    assert len(cached) == 1 and not list(cached[0].parent.glob("*.tmp"))  # written atomically, nothing left over

    def no_decode(path):
        raise AssertionError("decoded again although cached")

    monkeypatch.setattr(datasets, "_decode_cifar_tar", no_decode)
    assert torch.equal(data.cifar10(tmp_path / "data").train.x, ds.train.x)
    cached[0].write_bytes(cached[0].read_bytes()[:-100])  # a damaged cache is rebuilt, never trusted
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert torch.equal(data.cifar10(tmp_path / "data").test.x, ds.test.x)
    monkeypatch.setenv("SLT_HW_DATA", str(tmp_path / "data"))  # the root from the environment
    assert data.cifar10().train.x.shape == (20, 3, 32, 32)


def test_cifar10_jpeg_bad_archives(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"cifar10-jpeg.tar.gz or the python batches"):
        data.cifar10(tmp_path / "nowhere")
    tar, _ = fake_cifar_tar(tmp_path / "a")
    tar.write_bytes(tar.read_bytes()[: len(tar.read_bytes()) // 2])
    with pytest.raises(ValueError, match=r"cifar10-jpeg.tar.gz is not a readable tar.gz"):
        data.cifar10(tmp_path / "a")
    fake_cifar_tar(tmp_path / "b", size=28)
    with pytest.raises(ValueError, match=r"member 'test/airplane/0000.jpg' is 28x28, expected 32x32"):
        data.cifar10(tmp_path / "b")


def _idx(path, arr: np.ndarray, magic: int | None = None, cut: int = 0):
    head = struct.pack(">I", magic if magic is not None else 0x0800 + arr.ndim) + struct.pack(f">{arr.ndim}I",
                                                                                             *arr.shape)
    blob = head + arr.astype(np.uint8).tobytes()
    with gzip.open(path, "wb") as f:
        f.write(blob[: len(blob) - cut])


def fake_fashion(root, n=(64, 16), seed=0):
    rng = np.random.default_rng(seed)
    folder = root / "fashion-mnist"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for prefix, m in zip(("train", "t10k"), n, strict=True):
        y = np.arange(m) % 10
        x = rng.integers(0, 60, (m, 28, 28))
        for i, c in enumerate(y):  # learnable: class c lights its own 7x7 block (a bias-free net needs a pattern)
            x[i, 7 * (c // 4):7 * (c // 4) + 7, 7 * (c % 4):7 * (c % 4) + 7] += 150
        x = x.astype(np.uint8)
        _idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        _idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
        out += [x, y]
    return folder, out


def test_fashion_mnist_idx(tmp_path):
    folder, (xtr, ytr, xte, yte) = fake_fashion(tmp_path)
    ds = data.fashion_mnist(tmp_path)
    assert ds.train.x.shape == (64, 1, 28, 28) and ds.test.y.tolist() == yte.tolist()
    raw = torch.from_numpy(xtr).float()[:, None] / 255
    assert torch.allclose(ds.train.x, (raw - raw.mean()) / raw.std(), atol=1e-5)
    assert torch.equal(data.fashion_mnist(folder).train.y, ds.train.y)  # the folder itself as the root
    _idx(folder / "t10k-images-idx3-ubyte.gz", xte, cut=5)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: header says \(16, 28, 28\).*truncated"):
        data.fashion_mnist(tmp_path)
    _idx(folder / "t10k-images-idx3-ubyte.gz", xte, magic=0x0801)
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: expected an IDX file of uint8 with 3"):
        data.fashion_mnist(tmp_path)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz is not a readable gzip file"):
        data.fashion_mnist(tmp_path)
    _idx(folder / "t10k-images-idx3-ubyte.gz", xte)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte.gz"):
        data.fashion_mnist(tmp_path)


def fake_planetoid(root, name="citeseer"):
    """8 nodes: 2 train (x, y), allx/ally rows 0..3, test index lists 5, 7, 6 (node 4 is in no split:
    CiteSeer-style, it has no row in tx and must come back as zeros), 3 classes."""
    from scipy import sparse

    folder = root / "planetoid"
    folder.mkdir(parents=True, exist_ok=True)
    allx = np.arange(4 * 5, dtype=np.float32).reshape(4, 5) % 3
    tx = np.array([[1, 0, 0, 0, 2], [0, 3, 0, 0, 0], [0, 0, 0, 4, 0]], np.float32)  # nodes 5, 7, 6
    onehot = np.eye(3, dtype=np.int32)
    parts = {"x": sparse.csr_matrix(allx[:2]), "y": onehot[[0, 1]], "allx": sparse.csr_matrix(allx),
             "ally": onehot[[0, 1, 2, 0]], "tx": sparse.csr_matrix(tx), "ty": onehot[[1, 2, 0]],
             "graph": collections.defaultdict(list, {0: [1, 2], 1: [0], 2: [0, 5], 5: [2, 7], 7: [5], 6: [3]})}
    for part, obj in parts.items():
        with open(folder / f"ind.{name}.{part}", "wb") as f:
            pickle.dump(obj, f, protocol=2)
    (folder / f"ind.{name}.test.index").write_text("5\n7\n6\n")
    return folder, allx, tx


def test_planetoid_standard_split_and_isolated_test_nodes(tmp_path):
    folder, allx, tx = fake_planetoid(tmp_path)
    a = datasets.planetoid_arrays("citeseer", tmp_path)
    feats = a["features"]
    assert feats.shape == (8, 5) and np.array_equal(feats[:4], allx)
    assert np.array_equal(feats[4], np.zeros(5)) and np.array_equal(feats[[5, 7, 6]], tx)  # put back in place
    assert a["labels"].tolist() == [0, 1, 2, 0, -1, 1, 0, 2]
    assert a["train"].tolist() == [0, 1] and a["test"].tolist() == [5, 6, 7] and a["num_classes"] == 3
    ds = data.planetoid("citeseer", tmp_path)
    assert torch.allclose(ds.features[[0, 5]].sum(1), torch.ones(2)) and ds.features[4].sum() == 0  # row-normalised
    ei = ds.edge_index
    assert ei.shape[1] == 10 and {(0, 1), (1, 0), (7, 5), (3, 6)} <= set(map(tuple, ei.t().tolist()))
    assert ds.val.x.tolist() == [2, 3] and ds.test.y.tolist() == [1, 0, 2]  # validation stops before the test nodes


def test_planetoid_refuses_pickles_that_run_code(tmp_path):
    folder, _, _ = fake_planetoid(tmp_path)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    with open(folder / "ind.citeseer.graph", "wb") as f:
        pickle.dump(Evil(), f, protocol=2)
    with pytest.raises(ValueError, match=r"ind.citeseer.graph asks for (io|builtins).open.*refused"):
        data.planetoid("citeseer", tmp_path)
    assert not marker.exists()
    (folder / "ind.citeseer.ty").write_bytes(b"\x80\x02trunc")
    with pytest.raises(ValueError, match=r"ind.citeseer.ty is not a readable pickle"):
        data.planetoid("citeseer", tmp_path)
    fake_planetoid(tmp_path)
    (folder / "ind.citeseer.test.index").unlink()
    with pytest.raises(FileNotFoundError, match=r"ind.citeseer.test.index \(one test node index per line\)"):
        data.planetoid("citeseer", tmp_path)


@pytest.mark.parametrize("arch", ["gcn", "gin"])
def test_find_on_a_planetoid_graph(tmp_path, arch):
    fake_planetoid(tmp_path / "data", name="cora")
    assert main(["find", "--dataset", "cora", "--data-root", str(tmp_path / "data"), "--arch", arch, "--hidden", "8",
                 "--epochs", "2", "--dropout", "0.5", "--out", str(tmp_path / "g.slt"), "--no-progress"]) == 0
    assert (tmp_path / "g.slt").exists() and not (tmp_path / "g.slt.state").exists()


def test_find_fashion_mnist_conv2_learns(tmp_path, capsys):
    fake_fashion(tmp_path / "data", n=(256, 64))
    assert main(["find", "--dataset", "fashion-mnist", "--data-root", str(tmp_path / "data"), "--arch", "conv2",
                 "--width", "0.25", "--epochs", "3", "--batch-size", "32", "--threads", "1",
                 "--out", str(tmp_path / "f.slt")]) == 0
    out = capsys.readouterr().out
    assert "epoch 3" in out and "left" in out  # the progress bar's time left
    acc = float(out.split("test accuracy:")[1].split()[0])
    assert acc > 0.9  # 10 classes, chance 0.1


@pytest.mark.parametrize("argv, needle", [
    (["--dataset", "digits", "--arch", "conv4"], "arch: conv4 does not fit digits"),
    (["--dataset", "cifar10", "--arch", "gin"], "arch: gin does not fit cifar10"),
    (["--arch", "vgg"], "arch: expected one of"),
    (["--threads", "0"], "threads: expected an int >= 1, got 0"),
    (["--width", "2"], "width: only the conv nets"),
    (["--dropout", "0.5"], "dropout: only the GNNs"),
    (["--augment"], "augment: random crop and flip are for images"),
    (["--optimizer", "lamb"], "optimizer: expected 'adam' or 'sgd'"),
    (["--lr-schedule", "step"], "--lr-schedule: expected"),
    (["--train-subset", "0"], "--train-subset: expected an int >= 1"),
    (["--eval-every", "-1"], "--eval-every: expected an int >= 0"),
    (["--resume"], "resume: no run state at"),
    (["--dataset", "cifar10", "--data-root", "/nonexistent/x"], "--data-root: no CIFAR-10 under /nonexistent/x"),
    (["--dataset", "fashion-mnist", "--data-root", "/nonexistent/x"], "--data-root: no Fashion-MNIST IDX files"),
])
def test_find_usage_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, needle):
    monkeypatch.chdir(tmp_path)
    assert main(["find", "--no-progress", "--out", "unused.slt", *argv]) == 2
    err = capsys.readouterr().err  # one line on stderr, the argument named by its flag
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_two_processes_equal_one_on_augmented_images(tmp_path, monkeypatch):
    """find --nproc 2 on CIFAR-10 images with random crop + flip: the global batch is augmented once, then
    shared, so two processes end with the scores one process finds."""
    from slt_hw.train import FindConfig, find

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fake_cifar_tar(tmp_path / "data")
    cfg = FindConfig(dataset="cifar10", data_root=str(tmp_path / "data"), arch="conv2", width=0.125, epochs=2,
                     batch_size=10, out=None)
    assert cfg.do_augment
    two, one = find(cfg, progress=False, nproc=2), find(cfg, progress=False)
    a, b = (torch.cat([v.flatten() for k, v in r.model.state_dict().items() if k.endswith("scores")])
            for r in (one, two))
    assert (a - b).abs().max() < 1e-3 and ((a - b).abs() > 1e-5).float().mean() < 1e-3
