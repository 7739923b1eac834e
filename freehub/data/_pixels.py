"""Turn decoded pictures of any mode and size into the uint8 tensors an ImageSet holds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps

from freehub.data.imageset import ImageSet


def picture_to_tensor(picture: Image.Image, *, size: int, channels: int) -> torch.Tensor:
    """``uint8 [channels, size, size]``: converted to grey or RGB, then resized and centre-cropped."""
    mode = "L" if channels == 1 else "RGB"
    # Palette and alpha images first become RGBA so that transparency turns white, not black.
    if picture.mode in ("P", "PA", "LA", "RGBA"):
        rgba = picture.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        picture = Image.alpha_composite(background, rgba)
    fitted = ImageOps.fit(picture.convert(mode), (size, size), Image.Resampling.BILINEAR)
    array = np.asarray(fitted, dtype=np.uint8).reshape(size, size, channels)
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def stack_imageset(
    *, pictures: Sequence[torch.Tensor], labels: Sequence[int], class_names: Sequence[str], group: str
) -> ImageSet:
    """An ImageSet over the given tensors, every class in one ``group``."""
    return ImageSet(
        images=torch.stack(list(pictures)),
        labels=torch.tensor(list(labels), dtype=torch.int64),
        class_names=tuple(class_names),
        class_groups=(group,) * len(class_names),
    )
