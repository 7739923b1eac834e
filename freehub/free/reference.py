"""Training-free few-shot learners: what a meta-learner must beat to have learned anything.

Both answer the few-shot interface of :class:`~freehub.free.learners.MetaLearner` (``spec``,
``head``, ``features``) with prototypes on fixed features, and train nothing:

* :class:`PixelPrototypes`: nearest prototype on the grey pixels of each image, standardised per
  image (its own mean and spread), so brightness and contrast do not count.
* :class:`TeacherEnsemble`: nearest prototype on the teachers' own features (the input of each
  teacher's classification layer, or its logits where the head is unknown), each teacher's block
  scaled to unit length so that every teacher weighs the same. It needs no data and no synthesis:
  the simplest use of a pile of Hub classifiers for new classes, and the baseline a data-free
  meta-learner is measured against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from freehub.errors import ConfigError
from freehub.free.inversion import HeadInput
from freehub.free.learners import LearnerSpec
from freehub.task_model import TaskModel


class PixelPrototypes(nn.Module):
    """Images in ``[0, 1]`` to their grey pixels at ``image_size``, standardised per image."""

    def __init__(self, *, image_size: int = 32, n_way: int = 5) -> None:
        super().__init__()
        self.spec = LearnerSpec(backbone="pixels", algorithm="protonet", n_way=n_way, image_size=image_size)
        self.head = None

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``B x (image_size**2)`` standardised grey pixels."""
        size = self.spec.image_size
        grey = images.mean(dim=1, keepdim=True)
        if grey.shape[-2:] != (size, size):
            grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False)
        flat = grey.flatten(1)
        return (flat - flat.mean(dim=1, keepdim=True)) / flat.std(dim=1, keepdim=True).clamp(min=1e-6)


class TeacherEnsemble(nn.Module):
    """Images in ``[0, 1]`` to the concatenated, per-teacher unit-length features of ``teachers``.

    Each teacher preprocesses the images its own way (:meth:`TaskModel.forward`); its block is the
    input of its classification layer when the spec names the head, else its logits. Evaluation draws
    the same images into many episodes, and every image costs one forward pass per teacher, so the
    features of up to ``cache_mb`` MiB of images are kept, keyed by the image's bytes.
    """

    def __init__(self, *, teachers: Sequence[TaskModel], image_size: int = 32, n_way: int = 5, cache_mb: float = 256.0) -> None:
        super().__init__()
        if not teachers:
            raise ConfigError("a teacher ensemble needs at least one teacher")
        if cache_mb < 0:
            raise ConfigError(f"the feature cache bound cannot be negative, got {cache_mb} MiB")
        self.teachers = nn.ModuleList(list(teachers)).eval().requires_grad_(False)
        self.spec = LearnerSpec(backbone="teacher-ensemble", algorithm="protonet", n_way=n_way, image_size=image_size)
        self.head = None
        self._cache: dict[bytes, torch.Tensor] = {}
        self._cache_bytes = 0
        self._max_cache_bytes = int(cache_mb * 2**20)

    @property
    def cached_images(self) -> int:
        """How many images' features the cache holds."""
        return len(self._cache)

    def train(self, mode: bool = True) -> TeacherEnsemble:
        # The teachers stay in eval mode: their BatchNorm running statistics are what they learned.
        super().train(mode)
        self.teachers.eval()
        return self

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``B x sum(d_t)``: one unit-length block per teacher."""
        keys = [_image_key(image) for image in images]
        missing = [i for i, key in enumerate(keys) if key not in self._cache]
        fresh = dict(zip(missing, self._compute(images[missing]))) if missing else {}
        for i, row in fresh.items():
            size = row.numel() * row.element_size()
            if self._cache_bytes + size <= self._max_cache_bytes:
                self._cache[keys[i]] = row.clone()  # a clone: a view would keep the whole batch alive
                self._cache_bytes += size
        return torch.stack([fresh[i] if i in fresh else self._cache[key] for i, key in enumerate(keys)])

    def _compute(self, images: torch.Tensor) -> torch.Tensor:
        blocks = []
        with torch.no_grad():
            for teacher in self.teachers:
                with HeadInput(teacher) as head:
                    logits = teacher(images)
                block = head.features if head.features is not None else logits
                blocks.append(F.normalize(block.flatten(1).float(), dim=1))
        return torch.cat(blocks, dim=1)


def _image_key(image: torch.Tensor) -> bytes:
    pixels = image.detach().cpu().contiguous()
    return hashlib.blake2b(str((tuple(pixels.shape), pixels.dtype)).encode() + pixels.numpy().tobytes(), digest_size=16).digest()
