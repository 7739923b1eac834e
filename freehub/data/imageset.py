"""The in-memory shape every freehub data set takes: labelled uint8 images with named, grouped classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from freehub.errors import DataError

if TYPE_CHECKING:
    import datasets


@dataclass(frozen=True)
class ImageSet:
    """Images ``uint8 [N, C, H, W]``, labels ``int64 [N]`` indexing ``class_names``.

    ``class_groups[i]`` is the group of class ``i``: the alphabet of a glyph, the data set a folder
    or Hub data set came from. Splits keep whole groups together where they can.
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    class_groups: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(f"images must be uint8 [N, C, H, W], got {self.images.dtype} {list(self.images.shape)}")
        if self.labels.dtype != torch.int64 or self.labels.shape != (self.images.shape[0],):
            raise DataError(
                f"labels must be int64 [{self.images.shape[0]}], got {self.labels.dtype} {list(self.labels.shape)}"
            )
        if len(self.class_groups) != len(self.class_names):
            raise DataError(f"{len(self.class_names)} class names but {len(self.class_groups)} class groups")
        if len(set(self.class_names)) != len(self.class_names):
            raise DataError("class names must be unique")
        if self.labels.numel() and (int(self.labels.min()) < 0 or int(self.labels.max()) >= len(self.class_names)):
            raise DataError(f"labels must lie in 0..{len(self.class_names) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def groups(self) -> tuple[str, ...]:
        """The distinct groups, in order of first appearance."""
        return tuple(dict.fromkeys(self.class_groups))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self) -> torch.Tensor:
        """Images per class, ``int64 [num_classes]``."""
        return torch.bincount(self.labels, minlength=self.num_classes)

    def select_classes(self, class_indices: Sequence[int]) -> ImageSet:
        """The images of the given classes, relabelled ``0..k-1`` in the given order."""
        indices = [int(i) for i in class_indices]
        if len(set(indices)) != len(indices):
            raise DataError("select_classes: class indices must be unique")
        if any(i < 0 or i >= self.num_classes for i in indices):
            raise DataError(f"select_classes: class indices must lie in 0..{self.num_classes - 1}")
        remap = torch.full((self.num_classes,), -1, dtype=torch.int64)
        remap[torch.tensor(indices, dtype=torch.int64)] = torch.arange(len(indices))
        new_labels = remap[self.labels]
        keep = new_labels >= 0
        return ImageSet(
            images=self.images[keep],
            labels=new_labels[keep],
            class_names=tuple(self.class_names[i] for i in indices),
            class_groups=tuple(self.class_groups[i] for i in indices),
        )

    def as_float(self) -> torch.Tensor:
        """The images as float32 in ``[0, 1]``."""
        return self.images.float().div_(255.0)

    def to_dataset(self) -> datasets.Dataset:
        """A ``datasets.Dataset`` with columns ``image`` (PIL), ``label`` (ClassLabel) and ``group``."""
        # Imported here: `datasets` costs seconds to import and most users of an ImageSet never need it.
        import datasets

        pixels = self.images.permute(0, 2, 3, 1).numpy()
        if pixels.shape[-1] == 1:
            pixels = pixels[..., 0]
        features = datasets.Features(
            {
                "image": datasets.Image(),
                "label": datasets.ClassLabel(names=list(self.class_names)),
                "group": datasets.Value("string"),
            }
        )
        columns: dict[str, Any] = {
            "image": list(pixels),
            "label": self.labels.tolist(),
            "group": [self.class_groups[i] for i in self.labels.tolist()],
        }
        return datasets.Dataset.from_dict(columns, features=features)


@dataclass(frozen=True)
class SplitData:
    """Meta-train, meta-validation and meta-test images over disjoint classes."""

    train: ImageSet
    val: ImageSet
    test: ImageSet

    def splits(self) -> dict[str, ImageSet]:
        """The three splits by name."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def stats(self) -> dict[str, dict[str, int]]:
        """Per split: how many groups, classes and images."""
        return {
            name: {"groups": len(part.groups), "classes": part.num_classes, "images": len(part)}
            for name, part in self.splits().items()
        }
