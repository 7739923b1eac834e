"""Bring-your-own images: a folder with one sub-folder of pictures per class."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from freehub.data._pixels import picture_to_tensor, stack_imageset
from freehub.data.imageset import ImageSet, SplitData
from freehub.data.splits import DEFAULT_FRACTIONS, split_classes
from freehub.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def read_image_folder(*, root: Path, size: int = 32, channels: int = 3) -> ImageSet:
    """Every picture under ``root/<class name>/``, resized to ``size``; classes sorted by name.

    Files that are not pictures (by suffix) are ignored; hidden folders too.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DataError(f"no class sub-folders in {root}: expected {root}/<class name>/<image files>")
    pictures, labels, names = [], [], []
    for class_dir in class_dirs:
        files = sorted(p for p in class_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise DataError(f"class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for file in files:
            try:
                with Image.open(file) as picture:
                    pictures.append(picture_to_tensor(picture, size=size, channels=channels))
            except (UnidentifiedImageError, OSError) as error:
                raise DataError(f"cannot read image {file}: {error}") from error
            labels.append(len(names))
        names.append(class_dir.name)
    return stack_imageset(pictures=pictures, labels=labels, class_names=names, group=root.name)


def load_image_folder(
    *,
    root: Path,
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
    val_classes: Sequence[str] | None = None,
    test_classes: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
) -> SplitData:
    """An image folder (class per sub-folder) split into meta-train / meta-val / meta-test classes.

    Name the val or test classes (sub-folder names) or let ``seed`` draw them in ``fractions``.
    """
    imageset = read_image_folder(root=root, size=size, channels=channels)
    return split_classes(imageset, val_classes=val_classes, test_classes=test_classes, fractions=fractions, seed=seed)
