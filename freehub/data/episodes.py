"""N-way K-shot episodes over any ImageSet, drawn with a few tensor operations each."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from freehub.data.imageset import ImageSet
from freehub.errors import DataError


@dataclass(frozen=True)
class Episode:
    """One few-shot task: support and query images in ``[0, 1]``, labels ``0..N-1``.

    Images are grouped class by class in the order of ``classes`` (indices into the ImageSet's
    classes): the support holds ``K`` images of class 0, then ``K`` of class 1, and so on.
    """

    support_images: torch.Tensor
    support_labels: torch.Tensor
    query_images: torch.Tensor
    query_labels: torch.Tensor
    classes: tuple[int, ...]

    @property
    def n_way(self) -> int:
        return len(self.classes)


class EpisodeSampler:
    """Draws episodes from ``imageset``: a seeded stream, the same seed giving the same episodes.

    Each class's image indices are stored once in a padded table; an episode is then one class
    permutation, one batched shuffle of the chosen rows and one gather of the images.
    """

    def __init__(self, imageset: ImageSet, *, n_way: int, k_shot: int, q_queries: int = 15, seed: int = 0) -> None:
        if n_way < 1 or k_shot < 1 or q_queries < 0:
            raise DataError(f"need n_way >= 1, k_shot >= 1, q_queries >= 0; got {n_way}, {k_shot}, {q_queries}")
        if n_way > imageset.num_classes:
            raise DataError(f"{n_way}-way episodes need {n_way} classes, the set has {imageset.num_classes}")
        per_episode = k_shot + q_queries
        counts = imageset.class_counts()
        short = [imageset.class_names[i] for i in torch.nonzero(counts < per_episode).flatten().tolist()]
        if short:
            raise DataError(
                f"{len(short)} class(es) have fewer than {per_episode} images ({k_shot} shots + {q_queries} "
                f"queries), e.g. {short[0]!r}"
            )
        self.imageset = imageset
        self.n_way, self.k_shot, self.q_queries = n_way, k_shot, q_queries
        order = torch.argsort(imageset.labels, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        width = int(counts.max())
        slots = torch.arange(width)
        self._valid = slots[None, :] < counts[:, None]
        # Padding slots point at image 0; they are never chosen because their sort key is +inf.
        self._table = torch.where(self._valid, order[(starts[:, None] + slots[None, :]).clamp_max(len(order) - 1)], 0)
        self._images = imageset.images
        self._generator = torch.Generator().manual_seed(seed)

    def sample(self) -> Episode:
        """The next episode of the stream."""
        n, k, q = self.n_way, self.k_shot, self.q_queries
        classes = torch.randperm(self.imageset.num_classes, generator=self._generator)[:n]
        keys = torch.rand(n, self._table.shape[1], generator=self._generator)
        keys = keys.masked_fill(~self._valid[classes], float("inf"))
        picks = torch.gather(self._table[classes], 1, keys.argsort(dim=1)[:, : k + q])
        labels = torch.arange(n)
        # Support and query are gathered separately so each comes out contiguous, with no reshaping copy.
        return Episode(
            support_images=self._images[picks[:, :k].flatten()].float().div_(255.0),
            support_labels=labels.repeat_interleave(k),
            query_images=self._images[picks[:, k:].flatten()].float().div_(255.0),
            query_labels=labels.repeat_interleave(q),
            classes=tuple(classes.tolist()),
        )

    def take(self, count: int) -> list[Episode]:
        """The next ``count`` episodes."""
        return [self.sample() for _ in range(count)]

    def __iter__(self) -> Iterator[Episode]:
        while True:
            yield self.sample()
