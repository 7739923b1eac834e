"""The teachers of a run: described up front, loaded on demand, drawn fairly.

A Hub holds thousands of classifiers, some of them 100 MB each, so a run cannot hold every teacher
in memory. A :class:`TeacherPool` keeps only what describes each teacher (a :class:`TeacherInfo`:
its architecture and labels, read from the registry's index) and builds a model when a meta-batch
draws it, through a :class:`TeacherCache` bounded in bytes. Start-up time and memory therefore do
not grow with the number of teachers.

A meta-batch draws *models* uniformly (or by weight), then one ``n_way``-class slice of each drawn
model's head (:func:`draw_meta_batch`): a 1,000-class model is drawn as often as a 2-class one,
not 200 times as often. A model with fewer than ``n_way`` classes teaches a C-way task of all of its
classes; the task memory pools its classes with everyone else's, so replay episodes mix them.
"""

from __future__ import annotations

import random
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from freehub.errors import ConfigError
from freehub.free.config import TEACHER_WEIGHTINGS
from freehub.task_model import TaskModel

DEFAULT_CACHE_MB = 1024.0


@dataclass(frozen=True)
class TeacherInfo:
    """What a run knows about a teacher without building it."""

    architecture: str
    label_names: tuple[str, ...]
    registry_id: str | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @classmethod
    def of(cls, model: TaskModel) -> TeacherInfo:
        """The description of a model already in memory."""
        registry_id = model.spec.extra.get("registry_id")
        return cls(
            architecture=model.spec.architecture,
            label_names=tuple(model.label_names),
            registry_id=registry_id if isinstance(registry_id, str) else None,
        )


def model_bytes(model: torch.nn.Module) -> int:
    """Bytes held by a model's parameters and buffers (what the cache is bounded by)."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


class TeacherCache:
    """Least-recently-used models, at most ``max_bytes`` of them (always at least the newest one).

    A model evicted while a meta-batch still uses it lives on until the batch is done with it: the
    bound is on what the cache keeps, and a batch adds at most its own teachers on top.
    """

    def __init__(self, *, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ConfigError(f"the teacher cache bound cannot be negative, got {max_bytes} bytes")
        self.max_bytes = max_bytes
        self._models: OrderedDict[int, tuple[TaskModel, int]] = OrderedDict()
        self.bytes = 0
        self.hits = 0
        self.loads = 0

    def __len__(self) -> int:
        return len(self._models)

    def get(self, key: int, load: Callable[[], TaskModel]) -> TaskModel:
        """The model under ``key``, built by ``load`` when it is not held."""
        held = self._models.get(key)
        if held is not None:
            self._models.move_to_end(key)
            self.hits += 1
            return held[0]
        model = load()
        self.loads += 1
        size = model_bytes(model)
        self._models[key] = (model, size)
        self.bytes += size
        while self.bytes > self.max_bytes and len(self._models) > 1:
            _, (_, evicted) = self._models.popitem(last=False)
            self.bytes -= evicted
        return model


class TeacherPool:
    """Indexed teachers: every :class:`TeacherInfo` at hand, each model built on demand.

    ``load(index)`` builds teacher ``index``; with a ``cache`` built models are kept within its
    bound, without one ``load`` is called on every use (right for models already in memory).
    Loading never moves the global random generators, so a run's results do not depend on which
    teachers happened to be cached (nor does a resumed run's).
    """

    def __init__(
        self, *, infos: Sequence[TeacherInfo], load: Callable[[int], TaskModel], cache: TeacherCache | None = None
    ) -> None:
        self.infos = tuple(infos)
        self._load = load
        self.cache = cache

    @classmethod
    def of(cls, models: Sequence[TaskModel]) -> TeacherPool:
        """A pool over models already in memory."""
        models = list(models)
        return cls(infos=[TeacherInfo.of(m) for m in models], load=models.__getitem__)

    def __len__(self) -> int:
        return len(self.infos)

    def model(self, index: int, *, device: torch.device) -> TaskModel:
        """Teacher ``index`` on ``device``, in eval mode."""

        def build() -> TaskModel:
            with _global_rng_untouched():
                return self._load(index).to(device).eval()

        if self.cache is None:
            return build()
        return self.cache.get(index, build)

    def check(self) -> None:
        """Refuse an empty pool or a teacher with fewer than 2 classes (:class:`ConfigError`)."""
        if not self.infos:
            raise ConfigError("meta-training needs at least one teacher")
        for index, info in enumerate(self.infos):
            if info.num_classes < 2:
                raise ConfigError(f"teacher {index} ({info.architecture}) has fewer than 2 classes")

    def fingerprint(self) -> list[list[object]]:
        """What a checkpoint records of the teachers, to refuse resuming with others."""
        return [[info.architecture, list(info.label_names)] for info in self.infos]


def as_pool(teachers: Sequence[TaskModel] | TeacherPool) -> TeacherPool:
    """``teachers`` as a pool (models in memory are wrapped, a pool is returned as it is)."""
    return teachers if isinstance(teachers, TeacherPool) else TeacherPool.of(teachers)


def draw_meta_batch(
    *, pool: TeacherPool, count: int, n_way: int, rng: random.Random, device: torch.device, weighting: str = "uniform"
) -> tuple[list[int], list[TaskModel]]:
    """Draw up to ``count`` distinct teachers, then for each an ``n_way``-class slice of its head.

    ``weighting="uniform"`` draws every model equally often whatever its number of classes;
    ``"slices"`` weights a model by the number of ``n_way``-class slices its head holds (at least 1),
    as if each slice were a teacher of its own. Returns the drawn indices and their task views (a
    model with at most ``n_way`` classes teaches all of them). Only ``rng`` is drawn from.
    """
    size = min(count, len(pool))
    if weighting == "uniform":
        indices = rng.sample(range(len(pool)), size)
    elif weighting == "slices":
        weights = [max(1, info.num_classes // n_way) for info in pool.infos]
        indices = _weighted_sample(weights=weights, size=size, rng=rng)
    else:
        raise ConfigError(f"unknown teacher weighting {weighting!r}: choose one of {', '.join(TEACHER_WEIGHTINGS)}")
    views = []
    for index in indices:
        rows = slice_rows(num_classes=pool.infos[index].num_classes, n_way=n_way, rng=rng)
        model = pool.model(index, device=device)
        views.append(model if rows is None else model.head_slice(rows))
    return indices, views


def slice_rows(*, num_classes: int, n_way: int, rng: random.Random) -> list[int] | None:
    """``n_way`` random head rows of a model with more classes, in order; ``None``: use all of them.

    A learner with an ``n_way`` head distils at most ``n_way`` classes at once (see
    :mod:`freehub.free.episodic`).
    """
    if num_classes <= n_way:
        return None
    return sorted(rng.sample(range(num_classes), n_way))


def _weighted_sample(*, weights: Sequence[int], size: int, rng: random.Random) -> list[int]:
    # Sampling without replacement by weight: the largest of u ** (1 / w) (Efraimidis and Spirakis).
    keys = [rng.random() ** (1.0 / weight) for weight in weights]
    return sorted(range(len(weights)), key=lambda i: keys[i], reverse=True)[:size]


@contextmanager
def _global_rng_untouched() -> Iterator[None]:
    # Building a network initialises its weights from the global generators before the checkpoint
    # overwrites them.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        yield
    random.setstate(python_state)
    np.random.set_state(numpy_state)
