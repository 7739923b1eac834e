"""The one way freehub uses a classifier, whatever library or architecture it came from.

A :class:`TaskModel` takes images ``B x 3 x S x S`` in ``[0, 1]`` at any ``S`` and returns logits
over its own labels. It resizes, converts channels and normalises itself from the checkpoint's own
preprocessing metadata (its :class:`ModelSpec`), so that a generator, a meta-learner or an
evaluation never needs to know where a teacher came from.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from freehub.spec import ModelSpec, canonical_label_key

__all__ = ["ModelSpec", "TaskModel", "canonical_label_key"]

_INTERPOLATION_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest", "area": "area"}


class TaskModel(nn.Module):
    """A classifier normalised to ``[0,1]`` RGB images in, logits over its own labels out.

    ``network`` is the library's own module; ``logits_fn`` turns its output into a logits tensor
    (transformers models return an output object, timm models a tensor). ``rows`` optionally
    restricts the head to a subset of its classes, so that a many-class teacher can act as several
    N-way task heads.
    """

    def __init__(
        self,
        *,
        network: nn.Module,
        spec: ModelSpec,
        logits_fn: Callable[[Any], torch.Tensor] | None = None,
        rows: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.network = network
        self.spec = spec
        self._logits_fn = logits_fn
        channels = spec.input_size[0]
        if len(spec.mean) != channels or len(spec.std) != channels:
            raise ValueError(f"mean/std need {channels} entries, got {len(spec.mean)}/{len(spec.std)}")
        self.register_buffer("_mean", torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self._rows = list(rows) if rows is not None else None
        if self._rows is not None and any(not 0 <= r < spec.num_classes for r in self._rows):
            raise ValueError(f"head rows {self._rows} out of range for {spec.num_classes} classes")

    @property
    def label_names(self) -> tuple[str, ...]:
        """Names of this task's outputs, in logit order."""
        if self._rows is None:
            return self.spec.label_names
        return tuple(self.spec.label_names[r] for r in self._rows)

    @property
    def label_keys(self) -> tuple[str | None, ...]:
        """Canonical cross-model key of each output (``None``: model-local label)."""
        return tuple(canonical_label_key(name) for name in self.label_names)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    @property
    def has_batchnorm(self) -> bool:
        """Whether the network keeps BatchNorm running statistics (usable as an inversion prior)."""
        return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.network.modules())

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Map ``[0,1]`` RGB images of any size to what the network expects."""
        if images.dim() != 4:
            raise ValueError(f"expected B x C x H x W images, got shape {tuple(images.shape)}")
        channels, height, width = self.spec.input_size
        if images.shape[1] == 3 and channels == 1:
            weights = images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images * weights).sum(dim=1, keepdim=True)
        elif images.shape[1] == 1 and channels == 3:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] != channels:
            raise ValueError(f"cannot map {images.shape[1]} channels to {channels}")
        if images.shape[-2:] != (height, width):
            mode = _INTERPOLATION_MODES.get(self.spec.interpolation, "bilinear")
            kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
            images = F.interpolate(images, size=(height, width), mode=mode, **kwargs)
        return (images - self._mean) / self._std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        output = self.network(self.preprocess(images))
        logits = self._logits_fn(output) if self._logits_fn is not None else output
        if self._rows is not None:
            logits = logits[:, self._rows]
        return logits

    def head_slice(self, rows: Sequence[int]) -> TaskModel:
        """A view of this model restricted to the given head rows (shares the network)."""
        base = self._rows if self._rows is not None else list(range(self.spec.num_classes))
        return TaskModel(network=self.network, spec=self.spec, logits_fn=self._logits_fn, rows=[base[r] for r in rows])

    def with_spec(self, **changes: Any) -> TaskModel:
        """A copy sharing the network, with some spec fields replaced."""
        return TaskModel(network=self.network, spec=replace(self.spec, **changes), logits_fn=self._logits_fn, rows=self._rows)
