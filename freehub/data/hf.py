"""Bring-your-own images from a Hugging Face `datasets` data set: a saved folder, data files or a Hub id."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from freehub.data._pixels import picture_to_tensor, stack_imageset
from freehub.data.imageset import ImageSet, SplitData
from freehub.data.splits import DEFAULT_FRACTIONS, split_classes
from freehub.errors import DataError

if TYPE_CHECKING:
    import datasets

# Files `Dataset.save_to_disk` / `DatasetDict.save_to_disk` leave behind.
_SAVED_MARKERS = ("dataset_dict.json", "state.json")


def _open(path: str, split: str) -> datasets.Dataset:
    # Imported here: `datasets` costs seconds to import and only this loader needs it.
    import datasets

    local = Path(path)
    try:
        if local.is_dir() and any((local / marker).exists() for marker in _SAVED_MARKERS):
            loaded = datasets.load_from_disk(str(local))
        else:
            loaded = datasets.load_dataset(path, split=split)
    except (OSError, ValueError) as error:
        raise DataError(f"cannot load data set {path!r}: {str(error).splitlines()[0]}") from error
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise DataError(f"data set {path!r} has no split {split!r} (it has: {', '.join(loaded)})")
        loaded = loaded[split]
    return loaded


def _as_picture(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value
    array = np.asarray(value)
    if array.dtype != np.uint8:
        # Float arrays are taken as [0, 1] intensities, the convention of most array data sets.
        scale = 255.0 if array.dtype.kind == "f" and array.max(initial=0) <= 1.0 else 1.0
        array = np.clip(array * scale, 0, 255).astype(np.uint8)
    if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3):
        array = array.transpose(1, 2, 0)
    return Image.fromarray(array.squeeze(-1) if array.ndim == 3 and array.shape[-1] == 1 else array)


def read_hf_dataset(
    *,
    path: str,
    image_column: str = "image",
    label_column: str = "label",
    split: str = "train",
    size: int = 32,
    channels: int = 3,
) -> ImageSet:
    """One split of a `datasets` data set as an ImageSet, classes named from its labels.

    A ``ClassLabel`` column gives the class names; any other label column gives one class per
    distinct value. Classes without images are left out.
    """
    import datasets

    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    table = _open(path, split)
    for column in (image_column, label_column):
        if column not in table.column_names:
            raise DataError(f"data set {path!r} has no column {column!r} (columns: {', '.join(table.column_names)})")
    feature = table.features[label_column]
    raw_labels = table[label_column]
    if isinstance(feature, datasets.ClassLabel):
        present = sorted(set(raw_labels))
        names = [feature.int2str(v) for v in present]
    else:
        present = sorted(set(raw_labels), key=lambda v: (str(type(v)), v))
        names = [str(v) for v in present]
    if len(set(names)) != len(names):
        raise DataError(f"label column {label_column!r} of {path!r} gives duplicate class names")
    index = {value: i for i, value in enumerate(present)}
    pictures = [
        picture_to_tensor(_as_picture(value), size=size, channels=channels)
        for value in table.select_columns([image_column])[image_column]
    ]
    labels = [index[v] for v in raw_labels]
    return stack_imageset(pictures=pictures, labels=labels, class_names=names, group=Path(path).name or path)


def load_hf_dataset(
    *,
    path: str,
    image_column: str = "image",
    label_column: str = "label",
    split: str = "train",
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
    val_classes: Sequence[str] | None = None,
    test_classes: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> SplitData:
    """A `datasets` data set split into meta-train / meta-val / meta-test classes.

    ``path`` is a folder written by ``save_to_disk``, a folder of data files ``load_dataset`` reads,
    or a Hub id. Name the val or test classes, or let ``seed`` draw them in ``fractions``.
    """
    imageset = read_hf_dataset(
        path=path, image_column=image_column, label_column=label_column, split=split, size=size, channels=channels
    )
    return split_classes(imageset, val_classes=val_classes, test_classes=test_classes, fractions=fractions, seed=seed)
