"""Data-parallel training on torch.distributed: one process per device, launched by ``torchrun``.

``torchrun --nproc_per_node N -m opd train CONFIG`` (or ``accelerate launch``)
starts N copies of the same loop and sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in each. :func:`distributed`
reads them, joins the process group (gloo on CPU, nccl on CUDA) and hands the
loop a :class:`DistributedContext`. Without torchrun the context has
``world_size == 1`` and every helper below is the identity, so a one-process run
goes through the same code.

How a global batch is split: the ``episodes_per_update`` episodes of an update
are numbered 0..n-1 and rank ``r`` plays the contiguous block :meth:`shard`
gives it, with the same per-episode seeds a single process would use (the
rollout draws each episode's tokens from that episode's own generator), so the
union of the shards *is* the one-process batch. Each rank divides its loss by
the global totals (:class:`~opd.distill.losses.LossTotals` summed over ranks)
and multiplies by ``world_size``, because DDP *averages* gradients over ranks:
the average of ``world_size * (shard sum / global count)`` is the global mean.
What remains between N processes and one is floating-point summation order.

Not done here: FSDP. Rollouts generate a different number of tokens on each
rank, and every forward of an FSDP-sharded model is a collective, so ranks would
wait on each other forever mid-generation; see docs/scale-out.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

from opd.errors import ConfigError, OpdError

__all__ = ["CommTimer", "DistributedContext", "DistributedError", "distributed", "launch_env"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DistributedError(OpdError, RuntimeError):
    """Another rank failed, or the process group could not be formed."""


class CommTimer:
    """Seconds spent in communication since the last :meth:`take`; thread-safe (gloo completes all-reduces on its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._allreduce = 0.0
        self._sync = 0.0

    def add(self, *, allreduce: float = 0.0, sync: float = 0.0) -> None:
        with self._lock:
            self._allreduce += allreduce
            self._sync += sync

    def take(self) -> dict[str, float]:
        """``time/allreduce_s``: gradient all-reduce, launch to completion; ``time/sync_s``: the loop's
        other collectives, waiting for slower ranks included."""
        with self._lock:
            taken = {"time/allreduce_s": self._allreduce, "time/sync_s": self._sync}
            self._allreduce = self._sync = 0.0
        return taken


@dataclasses.dataclass(frozen=True)
class DistributedContext:
    """Who this process is in the job, and the few collectives the training loop needs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0  # index among the processes on this machine: picks the GPU
    device: torch.device = torch.device("cpu")
    comm: CommTimer = dataclasses.field(default_factory=CommTimer, compare=False)

    @property
    def is_main(self) -> bool:
        """Rank 0 evaluates, checkpoints, writes metrics and prints; the others wait for it."""
        return self.rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous block of ``n`` items; the blocks of all ranks are ``range(n)`` in order."""
        if n < self.world_size:
            raise ConfigError(f"episodes_per_update ({n}) must be at least the number of processes ({self.world_size}).")
        return range(self.rank * n // self.world_size, (self.rank + 1) * n // self.world_size)

    def sum(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums over ranks (float64, so token counts stay exact)."""
        if self.world_size == 1:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=self.device)
        with self._timed():
            dist.all_reduce(tensor)
        return tensor.tolist()

    def sum_metrics(self, values: Mapping[str, float]) -> dict[str, float]:
        """Per-key sums over ranks; a key a rank lacks counts as 0 there."""
        if self.world_size == 1:
            return dict(values)
        summed: dict[str, float] = {}
        for part in self.gather(dict(values)):
            for key, value in part.items():
                summed[key] = summed.get(key, 0.0) + value
        return summed

    def gather(self, value: T) -> list[T]:
        """Every rank's ``value`` (picklable), in rank order."""
        if self.world_size == 1:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        with self._timed():
            dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, value: T) -> T:
        """Rank 0's ``value`` on every rank."""
        if self.world_size == 1:
            return value
        box = [value]
        with self._timed():
            dist.broadcast_object_list(box, src=0)
        return box[0]

    def main_only(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 while the others wait; every rank returns its result (or raises if it failed)."""
        outcome: tuple[Any, str | None] = (None, None)
        if self.is_main:
            try:
                outcome = (fn(), None)
            except Exception as exc:
                self.broadcast((None, f"{type(exc).__name__}: {exc}"))
                raise
        result, error = self.broadcast(outcome)
        if error is not None:
            raise DistributedError(f"rank 0 failed while the others waited for it: {error}")
        return result

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """``model`` under DDP (gradients all-reduced in backward, timed into :attr:`comm`); itself for one process."""
        if self.world_size == 1:
            return model
        wrapped = DistributedDataParallel(model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        wrapped.register_comm_hook(self.comm, _timed_allreduce)
        return wrapped

    @contextlib.contextmanager
    def _timed(self) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.comm.add(sync=time.perf_counter() - start)


def _timed_allreduce(timer, bucket):  # type: ignore[no-untyped-def]  # DDP checks annotations against real types; ours are strings
    """DDP's default averaging all-reduce of a ``dist.GradBucket``, with its launch-to-completion time added to ``timer``.

    On gloo the future completes when the data has arrived; on nccl it completes
    when the kernel is enqueued, so there use the torch profiler for real figures.
    """
    start = time.perf_counter()

    def done(future: torch.futures.Future[torch.Tensor]) -> torch.Tensor:
        timer.add(allreduce=time.perf_counter() - start)
        return future.value()

    return default_hooks.allreduce_hook(None, bucket).then(done)  # type: ignore[arg-type]  # None: the default group


@dataclasses.dataclass(frozen=True)
class LaunchEnv:
    """What the launcher (torchrun, accelerate) told this process."""

    rank: int
    world_size: int
    local_rank: int


def launch_env(environ: Mapping[str, str] = os.environ) -> LaunchEnv:
    """Rank and world size from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; one process when they are absent."""
    try:
        return LaunchEnv(int(environ.get("RANK", "0")), int(environ.get("WORLD_SIZE", "1")), int(environ.get("LOCAL_RANK", "0")))
    except ValueError as exc:
        raise ConfigError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers (torchrun sets them): {exc}") from exc


@contextlib.contextmanager
def distributed(device: str) -> Iterator[DistributedContext]:
    """Join the job torchrun started (or none), on ``device``: ``cpu`` uses gloo, ``cuda`` nccl with one GPU per process.

    Leaves the process group on exit if it formed it; a group the caller formed is used and left alone.
    """
    env = launch_env()
    if env.world_size == 1:
        yield DistributedContext(device=_resolve_device(device, env))
        return
    own_group = not dist.is_initialized()
    local = _resolve_device(device, env)
    if own_group:
        backend = "nccl" if local.type == "cuda" else "gloo"
        if local.type == "cuda":
            torch.cuda.set_device(local)
        missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
        if missing:
            raise ConfigError(f"WORLD_SIZE={env.world_size} but {', '.join(missing)} not set; launch with torchrun, which sets them.")
        logger.info("rank %d of %d joining the %s process group on %s", env.rank, env.world_size, backend, local)
        dist.init_process_group(backend, device_id=local if local.type == "cuda" else None)
    try:
        yield DistributedContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=env.local_rank, device=local)
    finally:
        if own_group:
            dist.destroy_process_group()


def _resolve_device(device: str, env: LaunchEnv) -> torch.device:
    """``cuda`` means this process's GPU (``cuda:LOCAL_RANK``); a fixed index is refused when several processes share a machine."""
    resolved = torch.device(device)
    if resolved.type != "cuda":
        return resolved
    if not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} asks for CUDA (nccl), but torch sees no GPU here; use device: cpu (gloo).")
    if env.world_size == 1:
        return resolved
    if resolved.index is not None:
        raise ConfigError(f"device {device!r} pins one GPU for every process; set device: cuda and each rank takes cuda:LOCAL_RANK.")
    if env.local_rank >= torch.cuda.device_count():
        raise ConfigError(f"LOCAL_RANK {env.local_rank} but only {torch.cuda.device_count()} GPU(s): lower --nproc_per_node.")
    return torch.device("cuda", env.local_rank)
