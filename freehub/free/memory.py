"""The task memory: images recovered from teachers, grouped into classes shared across teachers.

A class is identified by a string key: a teacher label's canonical key when it has one (so that
"golden retriever" recovered from two teachers is one class with the images of both), otherwise
the label namespaced by its teacher (``teacher7/LABEL_0``). Images are kept as ``uint8`` (what a
PNG would hold; four times less memory than float). The memory is bounded twice: each class keeps
its newest ``max_per_class`` images, and when the total exceeds ``max_images`` the globally oldest
images go first. Replay episodes draw their classes uniformly from all classes with enough images,
so one episode mixes classes recovered from different teachers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from freehub.data import Episode
from freehub.errors import ConfigError


def class_key(*, teacher_index: int, label_name: str, label_key: str | None) -> str:
    """The memory key of one teacher label: its canonical key, else the name namespaced by teacher."""
    return label_key if label_key is not None else f"teacher{teacher_index}/{label_name}"


class TaskMemory:
    """Bounded store of recovered images per class key, and N-way K-shot episodes drawn from it."""

    def __init__(self, *, max_per_class: int = 40, max_images: int = 20_000) -> None:
        if max_per_class < 1 or max_images < 1:
            raise ConfigError("memory bounds must be positive")
        self.max_per_class = max_per_class
        self.max_images = max_images
        self._images: dict[str, torch.Tensor] = {}
        self._stamps: dict[str, torch.Tensor] = {}
        # Which classes each source (a teacher) recovered: episodes can be drawn within one source.
        self._groups: dict[str, list[str]] = {}
        self._clock = 0

    def __len__(self) -> int:
        return sum(len(images) for images in self._images.values())

    @property
    def keys(self) -> tuple[str, ...]:
        """Class keys in order of first appearance."""
        return tuple(self._images)

    def class_size(self, key: str) -> int:
        """Number of images held for ``key`` (0 for an unknown key)."""
        images = self._images.get(key)
        return 0 if images is None else len(images)

    def add(self, *, images: torch.Tensor, labels: torch.Tensor, keys: Sequence[str], group: str | None = None) -> None:
        """Store ``images`` (``[0,1]`` floats) whose ``labels`` index into ``keys``; ``group`` names their source."""
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if group is not None:
            members = self._groups.setdefault(group, [])
            members.extend(key for key in dict.fromkeys(keys[i] for i in labels.unique().tolist()) if key not in members)
        stored = (images.detach().clamp(0, 1) * 255).round().to(torch.uint8).cpu()
        labels = labels.cpu()
        for label in labels.unique().tolist():
            rows = stored[labels == label]
            key = keys[label]
            stamps = torch.arange(self._clock, self._clock + len(rows))
            self._clock += len(rows)
            if key in self._images:
                rows = torch.cat([self._images[key], rows])
                stamps = torch.cat([self._stamps[key], stamps])
            self._images[key] = rows[-self.max_per_class :]
            self._stamps[key] = stamps[-self.max_per_class :]
        self._evict_oldest()

    def can_sample(self, *, n_way: int, per_class: int) -> bool:
        """Whether ``n_way`` classes hold at least ``per_class`` images each."""
        return sum(1 for images in self._images.values() if len(images) >= per_class) >= n_way

    def groups_with(self, *, n_way: int, per_class: int) -> list[str]:
        """Sources that recovered at least ``n_way`` classes that still hold ``per_class`` images each."""
        return [g for g, keys in self._groups.items() if sum(1 for k in keys if self.class_size(k) >= per_class) >= n_way]

    def sample_group(self, *, group: str, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Up to ``count`` random images, as ``[0,1]`` floats, of the classes that source ``group`` recovered."""
        held = [self._images[k] for k in self._groups.get(group, ()) if k in self._images]
        if not held:
            return torch.empty(0)
        images = torch.cat(held)
        return images[torch.randperm(len(images), generator=generator)[:count]].float() / 255

    def sample_episode(
        self, *, n_way: int, k_shot: int, q_queries: int, generator: torch.Generator | None = None, group: str | None = None
    ) -> Episode:
        """An episode of ``n_way`` random classes, relabelled ``0..n_way-1`` in random order, as ``[0,1]`` floats.

        With ``group``, the classes all come from that one source. ``episode.classes`` indexes
        :attr:`keys` as they stand when the episode is drawn.
        """
        per_class = k_shot + q_queries
        pool = self._images if group is None else {k: self._images[k] for k in self._groups.get(group, ()) if k in self._images}
        eligible = [key for key, images in pool.items() if len(images) >= per_class]
        if len(eligible) < n_way:
            raise ConfigError(f"memory holds {len(eligible)} classes with {per_class}+ images, an episode needs {n_way}")
        chosen = [eligible[i] for i in torch.randperm(len(eligible), generator=generator)[:n_way].tolist()]
        support, query = [], []
        for key in chosen:
            images = self._images[key]
            picks = images[torch.randperm(len(images), generator=generator)[:per_class]]
            support.append(picks[:k_shot])
            query.append(picks[k_shot:])
        return Episode(
            support_images=torch.cat(support).float() / 255,
            support_labels=torch.arange(n_way).repeat_interleave(k_shot),
            query_images=torch.cat(query).float() / 255,
            query_labels=torch.arange(n_way).repeat_interleave(q_queries),
            classes=tuple(self.keys.index(key) for key in chosen),
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the memory exactly (tensors, lists and ints only)."""
        return {
            "max_per_class": self.max_per_class,
            "max_images": self.max_images,
            "clock": self._clock,
            "keys": list(self._images),
            "images": [self._images[key] for key in self._images],
            "stamps": [self._stamps[key] for key in self._images],
            "groups": {group: list(keys) for group, keys in self._groups.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        self.max_per_class = int(state["max_per_class"])
        self.max_images = int(state["max_images"])
        self._clock = int(state["clock"])
        self._images = dict(zip(state["keys"], state["images"]))
        self._stamps = dict(zip(state["keys"], state["stamps"]))
        self._groups = {group: list(keys) for group, keys in state.get("groups", {}).items()}

    def _evict_oldest(self) -> None:
        excess = len(self) - self.max_images
        if excess <= 0:
            return
        # The cutoff is the excess-th smallest stamp overall: everything at or below it goes.
        cutoff = torch.cat(list(self._stamps.values())).kthvalue(excess).values
        for key in list(self._images):
            keep = self._stamps[key] > cutoff
            if keep.all():
                continue
            self._images[key] = self._images[key][keep]
            self._stamps[key] = self._stamps[key][keep]
            if not len(self._images[key]):
                del self._images[key]
                del self._stamps[key]
