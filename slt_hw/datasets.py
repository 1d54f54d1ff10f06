"""Real datasets read from local files (slt_hw never downloads): CIFAR-10, Fashion-MNIST, Planetoid.

Data root: the `root` argument, else $SLT_HW_DATA, else DEFAULT_ROOT (`../shared/datasets` beside the
checkout). Each loader looks in `<root>/<folder>/` (cifar10/, fashion-mnist/, planetoid/) and then in
`<root>` itself. A missing file raises FileNotFoundError, a truncated or foreign one ValueError; both are
one line naming the path and what was expected. The decoded CIFAR-10 JPEGs are cached (uint8) under
$XDG_CACHE_HOME/slt_hw (default ~/.cache/slt_hw), keyed by the archive's path, size and mtime.
"""

from __future__ import annotations

import codecs
import collections
import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
import torch

from ._io import atomic_write

ENV_ROOT = "SLT_HW_DATA"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "datasets"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_TAR = "cifar10-jpeg.tar.gz"
FASHION_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                 "t10k-labels-idx1-ubyte.gz")
PLANETOID = ("cora", "citeseer")
_CACHE_VERSION = 1  # bump when the cached layout changes


class DataError(ValueError):
    """A dataset file that is missing or unreadable, as one line naming the path (find: exit status 2)."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The argument, else $SLT_HW_DATA, else DEFAULT_ROOT."""
    return Path(root if root is not None else os.environ.get(ENV_ROOT) or DEFAULT_ROOT).expanduser()


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "slt_hw"


def _folder(root: Path, sub: str, first: str, what: str) -> Path:
    for base in (root / sub, root):
        if (base / first).exists():
            return base
    hint = "" if root.exists() else f" (the data root {root} does not exist; pass --data-root or set ${ENV_ROOT})"
    raise FileNotFoundError(f"data_root: no {what} under {root}: expected {root / sub / first}{hint}")


# ---------------------------------------------------------------------- CIFAR-10 (JPEG archive)


def cifar10_arrays(root: str | os.PathLike | None = None, *, cache: bool = True
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): uint8 (N, 32, 32, 3) images and int64 labels, decoded once."""
    tar = _folder(data_root(root), "cifar10", CIFAR10_TAR, "CIFAR-10 JPEG archive") / CIFAR10_TAR
    st = tar.stat()
    key = hashlib.sha256(f"{tar.resolve()}|{st.st_size}|{st.st_mtime_ns}|{_CACHE_VERSION}".encode()).hexdigest()
    path = cache_dir() / f"cifar10-{key[:16]}.npz"
    if cache and path.exists():
        got = _read_cache(path)
        if got is not None:
            return got
    arrays = _decode_cifar_tar(tar)
    if cache:
        _write_cache(path, arrays)
    return arrays


def _decode_cifar_tar(tar: Path):
    from PIL import Image, UnidentifiedImageError

    split = {"train": ([], []), "test": ([], [])}
    try:
        with tarfile.open(tar, "r:gz") as tf:
            members = sorted((m for m in tf if m.isfile() and m.name.lower().endswith(".jpg")), key=lambda m: m.name)
            for m in members:
                parts = m.name.split("/")
                if len(parts) != 3 or parts[0] not in split or parts[1] not in CIFAR10_CLASSES:
                    raise ValueError(f"data_root: {tar}: member {m.name!r} is not <train|test>/<class>/<n>.jpg "
                                     f"with a CIFAR-10 class")
                try:
                    with Image.open(io.BytesIO(tf.extractfile(m).read())) as im:
                        img = np.asarray(im.convert("RGB"), dtype=np.uint8)
                except (UnidentifiedImageError, OSError) as e:
                    raise ValueError(f"data_root: {tar}: member {m.name!r} is not a readable JPEG ({e})") from e
                if img.shape != (32, 32, 3):
                    raise ValueError(f"data_root: {tar}: member {m.name!r} is {img.shape[1]}x{img.shape[0]}, "
                                     "expected 32x32")
                split[parts[0]][0].append(img)
                split[parts[0]][1].append(CIFAR10_CLASSES.index(parts[1]))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ValueError(f"data_root: {tar} is not a readable tar.gz of CIFAR-10 JPEGs ({type(e).__name__}: {e})"
                         ) from e
    for name, (xs, _) in split.items():
        if not xs:
            raise ValueError(f"data_root: {tar} holds no {name}/<class>/*.jpg images")
    return tuple(a for xs, ys in split.values() for a in (np.stack(xs), np.asarray(ys, dtype=np.int64)))


def _digest(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(f"{a.dtype}|{a.shape}|".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _write_cache(path: Path, arrays) -> None:
    """Atomic (slt_hw._io); a cache folder that cannot be written only costs decoding again next time."""
    buf = io.BytesIO()
    np.savez(buf, *arrays, digest=np.array(_digest(arrays)))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, buf.getvalue())
    except OSError:
        pass


def _read_cache(path: Path):
    """The cached arrays, or None when the file is unreadable or its digest does not match (then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = tuple(z[f"arr_{i}"] for i in range(4))
            ok = str(z["digest"]) == _digest(arrays)
    except (OSError, ValueError, KeyError, zlib.error, EOFError, zipfile.BadZipFile):
        return None
    return arrays if ok else None


# ---------------------------------------------------------------------- CIFAR-10 (python batches)


def cifar10_python_batches(base: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """cifar-10-python.tar.gz unpacked: data_batch_1..5 and test_batch, pickled dicts (restricted unpickler)."""
    files = [base / f"data_batch_{i}" for i in range(1, 6)] + [base / "test_batch"]
    missing = [str(p) for p in files if not p.exists()]
    if missing:
        raise FileNotFoundError(f"data_root: missing {', '.join(missing)}: expected {CIFAR10_TAR} (JPEG copy) or "
                                "the python batches (cifar-10-python.tar.gz unpacked; slt_hw never downloads)")

    def read(p: Path):
        d = _safe_pickle(p, "bytes")
        if not isinstance(d, dict):
            raise ValueError(f"data_root: {p}: expected a dict with 'data' and 'labels', got {type(d).__name__}")
        get = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        if "data" not in get or "labels" not in get:
            raise ValueError(f"data_root: {p}: expected keys 'data' and 'labels', got {sorted(get)}")
        x, y = np.asarray(get["data"]), np.asarray(get["labels"]).astype(np.int64).reshape(-1)
        if x.ndim != 2 or x.shape[1] != 3072 or x.dtype != np.uint8:
            raise ValueError(f"data_root: {p}: expected 'data' uint8 of shape (N, 3072), got {x.dtype} {x.shape}")
        if y.size != x.shape[0] or (y.size and (y.min() < 0 or y.max() > 9)):
            raise ValueError(f"data_root: {p}: expected {x.shape[0]} labels in 0..9, got {y.size}")
        return x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), y

    tr = [read(p) for p in files[:5]]
    xte, yte = read(files[5])
    return np.concatenate([x for x, _ in tr]), np.concatenate([y for _, y in tr]), xte, yte


# ---------------------------------------------------------------------- Fashion-MNIST (IDX)


def fashion_mnist_arrays(root: str | os.PathLike | None = None
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, y_train, x_test, y_test): uint8 (N, 28, 28) images, int64 labels, from the IDX .gz files."""
    base = _folder(data_root(root), "fashion-mnist", FASHION_FILES[0], "Fashion-MNIST IDX files")
    out = []
    for img, lab in ((FASHION_FILES[0], FASHION_FILES[1]), (FASHION_FILES[2], FASHION_FILES[3])):
        x, y = _idx(base / img, 3), _idx(base / lab, 1).astype(np.int64)
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"data_root: {base / lab} has {y.shape[0]} labels, {base / img} {x.shape[0]} images")
        if y.size and y.max() > 9:
            raise ValueError(f"data_root: {base / lab}: expected labels in 0..9, got {int(y.max())}")
        out += [x, y]
    return tuple(out)


def _idx(path: Path, dims: int) -> np.ndarray:
    """An IDX file of uint8: magic 0x0000_08_<dims>, then dims big-endian uint32 sizes, then the data."""
    if not path.exists():
        raise FileNotFoundError(f"data_root: missing {path} (an IDX .gz file of Fashion-MNIST)")
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"data_root: {path} is not a readable gzip file ({type(e).__name__}: {e})") from e
    head = 4 + 4 * dims
    if len(raw) < head or struct.unpack(">I", raw[:4])[0] != 0x0800 + dims:
        raise ValueError(f"data_root: {path}: expected an IDX file of uint8 with {dims} dimension(s) "
                         f"(magic {0x0800 + dims:#010x})")
    shape = struct.unpack(f">{dims}I", raw[4:head])
    if len(raw) - head != int(np.prod(shape)):
        raise ValueError(f"data_root: {path}: header says {shape} = {int(np.prod(shape))} bytes, found "
                         f"{len(raw) - head} (truncated?)")
    return np.frombuffer(raw, np.uint8, offset=head).reshape(shape)


# ---------------------------------------------------------------------- Planetoid (pickles)


class _SparseState:
    """Stands in for scipy.sparse.csr_matrix while unpickling: keeps its arrays, runs nothing."""

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def dense(self, path: Path) -> np.ndarray:
        try:
            shape, indptr, indices = self._shape, self.indptr, self.indices
            out = np.zeros(shape, np.float32)
            rows = np.repeat(np.arange(shape[0]), np.diff(indptr))
            out[rows, indices] = self.data
        except (AttributeError, ValueError, IndexError) as e:
            raise ValueError(f"data_root: {path}: not a CSR matrix ({e})") from e
        return out


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as r
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as r
    return r


# what the Planetoid pickles and CIFAR-10 batches contain; anything else is refused
_ALLOWED = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
            ("numpy.core.multiarray", "_reconstruct"): None, ("numpy._core.multiarray", "_reconstruct"): None,
            ("scipy.sparse.csr", "csr_matrix"): _SparseState, ("scipy.sparse._csr", "csr_matrix"): _SparseState,
            ("collections", "defaultdict"): collections.defaultdict, ("builtins", "list"): list,
            ("__builtin__", "list"): list, ("builtins", "dict"): dict, ("__builtin__", "dict"): dict,
            ("_codecs", "encode"): codecs.encode}  # how protocol-2 pickles written by Python 3 carry bytes


class _Restricted(pickle.Unpickler):
    def __init__(self, f, path: Path, encoding: str):
        super().__init__(f, encoding=encoding)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"data_root: {self.path} asks for {module}.{name}, which a dataset "
                                         "file never holds; refused (it could run code)")
        return _ALLOWED[module, name] or _reconstruct()


def _safe_pickle(path: Path, encoding: str = "latin1"):
    try:
        with open(path, "rb") as f:
            return _Restricted(f, path, encoding).load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("data_root:"):
            raise ValueError(str(e)) from None
        raise ValueError(f"data_root: {path} is not a readable pickle ({e})") from e
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, struct.error) as e:
        raise ValueError(f"data_root: {path} is not a readable pickle ({type(e).__name__}: {e})") from e


def planetoid_arrays(name: str, root: str | os.PathLike | None = None) -> dict:
    """The standard Planetoid split (Yang et al. 2016) as numpy arrays: features (N, F) float32 (raw),
    labels (N,) int64 (-1 for CiteSeer's isolated test nodes, which carry no features: zero rows), edges
    (2, E) int64 as listed in the graph file, train/val/test node indices."""
    if name not in PLANETOID:
        raise ValueError(f"name: expected one of {PLANETOID}, got {name!r}")
    base = _folder(data_root(root), "planetoid", f"ind.{name}.x", f"Planetoid {name} files")
    parts = {}
    for part in ("x", "y", "tx", "ty", "allx", "ally", "graph"):
        p = base / f"ind.{name}.{part}"
        if not p.exists():
            raise FileNotFoundError(f"data_root: missing {p} (a Planetoid pickle)")
        obj = _safe_pickle(p)
        if part in ("x", "tx", "allx"):
            obj = obj.dense(p) if isinstance(obj, _SparseState) else np.asarray(obj, np.float32)
        elif part != "graph":
            obj = np.asarray(obj)
        if part != "graph" and obj.ndim != 2:
            raise ValueError(f"data_root: {p}: expected a 2-D matrix, got shape {obj.shape}")
        if part == "graph" and not isinstance(obj, dict):
            raise ValueError(f"data_root: {p}: expected a dict node -> neighbours, got {type(obj).__name__}")
        parts[part] = obj
    idx_path = base / f"ind.{name}.test.index"
    try:
        test_idx = np.array([int(v) for v in idx_path.read_text().split()], dtype=np.int64)
    except FileNotFoundError:
        raise FileNotFoundError(f"data_root: missing {idx_path} (one test node index per line)") from None
    except ValueError as e:
        raise ValueError(f"data_root: {idx_path}: expected one integer per line ({e})") from e
    for a, b in (("x", "y"), ("tx", "ty"), ("allx", "ally")):
        if parts[a].shape[0] != parts[b].shape[0]:
            raise ValueError(f"data_root: ind.{name}.{a} has {parts[a].shape[0]} rows, ind.{name}.{b} "
                             f"{parts[b].shape[0]}: expected the same")
    if parts["tx"].shape[0] != test_idx.size:
        raise ValueError(f"data_root: {idx_path} lists {test_idx.size} nodes, ind.{name}.tx has "
                         f"{parts['tx'].shape[0]} rows")
    n_all = parts["allx"].shape[0]
    lo, hi = int(test_idx.min()), int(test_idx.max())
    if lo < n_all:
        raise ValueError(f"data_root: {idx_path}: test indices start at {lo}, expected >= {n_all} (rows of allx)")
    # isolated test nodes (CiteSeer) are missing from tx: the full index range gets zero rows
    tx = np.zeros((hi - lo + 1, parts["tx"].shape[1]), np.float32)
    ty = np.zeros((hi - lo + 1, parts["ty"].shape[1]), parts["ty"].dtype)
    tx[test_idx - lo], ty[test_idx - lo] = parts["tx"], parts["ty"]
    feats = np.concatenate([parts["allx"], np.zeros((lo - n_all, tx.shape[1]), np.float32), tx]) \
        if lo > n_all else np.concatenate([parts["allx"], tx])
    onehot = np.concatenate([parts["ally"], np.zeros((lo - n_all, ty.shape[1]), ty.dtype), ty]) \
        if lo > n_all else np.concatenate([parts["ally"], ty])
    labels = np.where(onehot.any(1), onehot.argmax(1), -1).astype(np.int64)
    n = feats.shape[0]
    src = [int(k) for k, vs in parts["graph"].items() for _ in vs]
    dst = [int(v) for vs in parts["graph"].values() for v in vs]
    edges = np.array([src, dst], dtype=np.int64).reshape(2, -1)
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise ValueError(f"data_root: ind.{name}.graph has node ids in {edges.min()}..{edges.max()}, expected "
                         f"0..{n - 1}")
    n_train = parts["y"].shape[0]
    return {"features": feats, "labels": labels, "edges": edges, "num_classes": onehot.shape[1],
            "train": np.arange(n_train), "val": np.arange(n_train, min(n_train + 500, n_all)),
            "test": np.sort(test_idx)}


def to_tensor(a: np.ndarray) -> torch.Tensor:
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())
