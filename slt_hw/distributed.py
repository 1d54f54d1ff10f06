"""Data-parallel supermask search on torch.distributed: the process group (torchrun's environment on a
cluster, or local workers spawned for `slt-hw find --nproc N`), each rank's share of a batch, and the
sums `find` reduces. gloo on CPU, nccl on GPU. Every collective has a timeout and a local worker that
dies stops the others, so a lost peer fails the run with a message instead of hanging it."""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

DEFAULT_TIMEOUT_S = 300.0  # a collective waiting longer than this for a peer fails the run


def timeout() -> timedelta:
    text = os.environ.get("SLT_HW_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_S))
    try:
        s = float(text)
    except ValueError:
        s = -1.0
    if not s > 0:
        raise ValueError(f"SLT_HW_DIST_TIMEOUT: expected seconds > 0, got {text!r}")
    return timedelta(seconds=s)


@dataclass(frozen=True)
class Group:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


SINGLE = Group()


class WorkerFailed(RuntimeError):
    """A worker of a data-parallel run died or raised; the others were stopped."""


def torchrun_world() -> int:
    """The world size torchrun (or any env:// launcher) set for this process; 1 outside one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def backend(device_type: str) -> str:
    return "nccl" if device_type == "cuda" else "gloo"


def join(device_type: str, init_method: str = "env://", rank: int | None = None,
         world: int | None = None) -> Group:
    """Join the process group (rank and world from the environment unless given)."""
    rank = int(os.environ.get("RANK", "0")) if rank is None else rank
    world = torchrun_world() if world is None else world
    local = int(os.environ.get("LOCAL_RANK", rank))
    if device_type == "cuda":
        torch.cuda.set_device(local)
    dist.init_process_group(backend(device_type), init_method=init_method, rank=rank, world_size=world,
                            timeout=timeout())
    return Group(rank, world, local)


@contextlib.contextmanager
def joined(device_type: str, init_method: str = "env://", rank: int | None = None,
           world: int | None = None) -> Iterator[Group]:
    """join(...) for the block; then leave(), at a barrier after a normal exit, at once after an
    error (see leave)."""
    g = join(device_type, init_method, rank, world)
    try:
        yield g
    except BaseException:
        leave(sync=False)
        raise
    leave()


def leave(sync: bool = True) -> None:
    """Leave the process group. sync: wait for every rank first (after a normal finish): a rank
    that tore its gloo connections down while another still used them was sometimes killed by
    std::terminate at exit (about 1 run in 30 of tests/test_ddp.py). Not after an error: a dead
    peer would hold the barrier until the timeout. Anything unreachable that still holds the
    group (e.g. a DistributedDataParallel in a reference cycle) is collected first: while one
    does, destroy_process_group only drops the name, and gloo's threads go at interpreter exit,
    where a rank was still killed by std::terminate now and then after the barrier (2 of 3
    fresh-clone test runs on one day; never reproduced alone, so a precaution, not a proven fix)."""
    if dist.is_initialized():
        if sync:
            dist.barrier()
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def shard(idx: torch.Tensor, g: Group) -> torch.Tensor:
    """This rank's contiguous share of a global batch (shares differ by at most one sample)."""
    return idx if g.world == 1 else idx.tensor_split(g.world)[g.rank]


def all_sum(values: list[float], g: Group) -> list[float]:
    if g.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return t.tolist()


def spawn(nproc: int, device_type: str, fn, *args):
    """fn(group, *args) in `nproc` local worker processes joined in one group; rank 0's return value.
    Raises WorkerFailed when a worker dies or raises (torch.multiprocessing stops the others)."""
    from torch.multiprocessing import ProcessExitedException, ProcessRaisedException
    from torch.multiprocessing import spawn as mp_spawn

    with tempfile.TemporaryDirectory(prefix="slt-hw-ddp-") as tmp:
        try:
            mp_spawn(_worker, args=(nproc, device_type, tmp, fn, args), nprocs=nproc, join=True)
        except ProcessExitedException as e:
            how = f"signal {e.signal_name}" if e.signal_name else f"exit status {e.exit_code}"
            raise WorkerFailed(f"worker {e.error_index} of {nproc} died ({how}); the other workers were stopped") \
                from None
        except ProcessRaisedException as e:
            last = [line for line in str(e).strip().splitlines() if line.strip()][-1]
            raise WorkerFailed(f"worker {e.error_index} of {nproc} failed: {last.strip()}; the other workers were "
                               "stopped") from None
        return torch.load(Path(tmp) / "result.pt", weights_only=False)


def _worker(rank: int, nproc: int, device_type: str, tmp: str, fn, args) -> None:
    if "OMP_NUM_THREADS" not in os.environ:  # share the cores, don't oversubscribe them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // nproc))
    os.environ["LOCAL_RANK"] = str(rank)
    with joined(device_type, f"file://{tmp}/rendezvous", rank, nproc) as g:  # a file: no port to pick or race for
        out = fn(g, *args)
        if g.main:
            torch.save(out, Path(tmp) / "result.pt")
