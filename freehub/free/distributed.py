"""Meta-training on several processes with torch.distributed (launched by torchrun).

One process is the default and touches nothing here but :class:`World`'s single-process no-ops.
Under ``torchrun --nproc_per_node N`` every process (a *rank*) runs the same loop on the same
state, and the work of an iteration is split, not replicated:

- the meta-batch stays ``teachers_per_step`` teachers (the *global* meta-batch, the same on any
  number of ranks); rank ``r`` inverts a contiguous share of its slots, each slot under a torch RNG
  seeded from ``(seed, iteration, slot)`` alone, so a slot recovers the same task whichever rank
  holds it;
- the meta-generator's meta-gradient (sum over slots / meta-batch) is summed over ranks with
  ``all_reduce`` before the one outer step every rank takes;
- the recovered tasks are all-gathered, so every rank adds the whole meta-batch to its memory in
  slot order and the memories stay identical;
- replay episodes are split the same way (one seeded RNG per episode; rank 0 adds the optional
  relation term); their gradients and accuracies are summed with ``all_reduce``, so every rank
  takes the same learner step and stops replay at the same point;
- BELL's alignment is a sequence of SGD steps through the meta-batch's teachers, not a sum, so it
  cannot be split without changing what it computes: every rank computes it on the gathered tasks
  (one learner forward/backward per teacher), and its gradient is averaged with ``all_reduce`` so
  that non-deterministic GPU kernels cannot make the ranks drift apart;
- rank 0 alone writes the run folder, runs meta-validation and broadcasts its result.

Because nothing depends on the number of ranks but the summation order of the all-reduces, a run
ends with the learner a one-process run with the same seed ends with, up to float rounding, and a
checkpoint written on N ranks resumes on any number of ranks.

The learner is deliberately not wrapped in DistributedDataParallel: MAML's inner loop runs the
learner functionally on adapted weights, which DDP's hooks on the module's own parameters do not see.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import torch
import torch.distributed as dist

from freehub.errors import ConfigError, TrainingError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of a run; ``World()`` is one process, and every
    collective below is then a no-op that needs no torch.distributed set-up."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes the run folder and validates."""
        return self.rank == 0

    def shard(self, *, count: int) -> range:
        """This rank's contiguous share of ``count`` slots (sizes differ by at most one)."""
        base, extra = divmod(count, self.size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (1 if self.rank < extra else 0))

    def place(self, *, device: torch.device) -> torch.device:
        """The run's ``device`` on this rank: with CUDA on several ranks, ``cuda:LOCAL_RANK``."""
        if device.type == "cuda" and self.size > 1:
            return torch.device("cuda", self.local_rank)
        return device

    def all_reduce_sum_(self, *, tensors: Sequence[torch.Tensor]) -> None:
        """Sum ``tensors`` over ranks, in place, as one flat message."""
        if self.size == 1 or not tensors:
            return
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for tensor in tensors:
            tensor.copy_(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()

    def all_gather(self, *, value: T) -> list[T]:
        """Every rank's ``value`` (picklable, tensors on the CPU), in rank order."""
        if self.size == 1:
            return [value]
        gathered: list[Any] = [None] * self.size
        dist.all_gather_object(gathered, value)
        return gathered

    def broadcast(self, *, value: T) -> T:
        """Rank 0's ``value`` (picklable), on every rank."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def read_on_main(self, *, path: Path) -> Path | BinaryIO:
        """``path``'s bytes as rank 0 reads them, on every rank: the run folder need only exist on rank 0's host."""
        if self.size == 1:
            return path
        data = path.read_bytes() if self.is_main else b""
        return io.BytesIO(self.broadcast(value=data))

    def check_same(self, *, value: Any, what: str) -> None:
        """Raise :class:`TrainingError` on every rank when ranks disagree on ``value`` (e.g. their teachers)."""
        values = self.all_gather(value=value)
        differing = [rank for rank, other in enumerate(values) if other != values[0]]
        if differing:
            raise TrainingError(f"rank {differing[0]} sees different {what} than rank 0: every host must read the same registry and config")


def current_world() -> World:
    """The world torch.distributed was initialised with, else one process."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(rank=dist.get_rank(), size=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def launched_by_torchrun() -> bool:
    """Whether torchrun (or another launcher setting ``WORLD_SIZE``) started this process among several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_main_process() -> bool:
    """Rank 0, or the only process: the one that prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def backend_for(*, device_name: str) -> str:
    """``nccl`` when the run's device is CUDA, ``gloo`` on the CPU."""
    if device_name == "auto":
        return "nccl" if torch.cuda.is_available() else "gloo"
    return "nccl" if device_name.startswith("cuda") else "gloo"


@contextmanager
def joined_world(*, device_name: str) -> Iterator[World]:
    """Join the process group torchrun set up the environment for (and leave it on exit);
    without torchrun, yield one process and set nothing up.

    A process group already initialised by the caller is used as it is and left open.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        yield current_world()
        return
    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed: run one process")
    backend = backend_for(device_name=device_name)
    if backend == "nccl":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device_name!r} needs CUDA, which this host does not have")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"local rank {local_rank} needs a GPU of its own but this host has {torch.cuda.device_count()}: "
                "start at most one process per GPU (--nproc_per_node), or use --device cpu"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    try:
        yield current_world()
    finally:
        dist.destroy_process_group()


def derived_seed(*, parts: Sequence[object]) -> int:
    """A 63-bit seed from ``parts`` alone (Python's string seeding is SHA-512, not the salted ``hash``)."""
    return random.Random("/".join(str(part) for part in parts)).getrandbits(63)


@contextmanager
def seeded_torch(*, seed: int, device: torch.device) -> Iterator[None]:
    """Run the body on torch RNGs seeded with ``seed`` and restore the previous states afterwards,
    so that work handed to another rank draws the same numbers and the global streams stay in step."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def run_slots(*, world: World, count: int, seed: Sequence[object], device: torch.device, work: Callable[[int], T]) -> list[T]:
    """``work(slot)`` for every slot ``0..count-1``, each under torch RNGs seeded from ``(*seed, slot)``:
    this rank runs its share, and every rank gets all results in slot order (on ``device``)."""
    mine = []
    for slot in world.shard(count=count):
        with seeded_torch(seed=derived_seed(parts=(*seed, slot)), device=device):
            mine.append(work(slot))
    if world.size == 1:
        return mine
    shards = world.all_gather(value=[_moved(value, torch.device("cpu")) for value in mine])
    return [_moved(value, device) for shard in shards for value in shard]


def _moved(value: Any, device: torch.device) -> Any:
    # Tensors travel between ranks through the CPU: a pickled CUDA tensor would name the sender's GPU.
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if is_dataclass(value) and not isinstance(value, type):
        return replace(value, **{f.name: _moved(getattr(value, f.name), device) for f in fields(value) if f.init})
    return value
