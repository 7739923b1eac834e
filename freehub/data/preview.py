"""PNG contact sheets of images: glyph classes now, recovered images later."""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from freehub.atomic import atomic_path
from freehub.data.fonts import dejavu_faces
from freehub.data.imageset import SplitData
from freehub.errors import DataError

_TITLE_POINTS = 12
_GAP = 2


def _title_font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    sans = [face for face in dejavu_faces() if face.name == "DejaVuSans"]
    return ImageFont.truetype(str(sans[0].path), _TITLE_POINTS) if sans else ImageFont.load_default()


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise DataError(f"save_grid needs images [B, 1 or 3, H, W], got {list(images.shape)}")
    if images.dtype != torch.uint8:
        images = (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.permute(0, 2, 3, 1).cpu().numpy()


def save_grid(
    *, images: torch.Tensor, path: Path, nrow: int, titles: Sequence[str] | None = None, scale: int = 2
) -> Path:
    """Write ``images`` as a PNG grid of ``nrow`` images per row and return ``path``.

    ``images`` is ``[B, 1 or 3, H, W]``, uint8 or float in ``[0, 1]``. ``titles``, if given, holds
    one caption per row, written left of the row. Each pixel becomes ``scale x scale`` pixels.
    """
    if nrow < 1:
        raise DataError(f"nrow must be at least 1, got {nrow}")
    pixels = _to_uint8(images)
    count, height, width = pixels.shape[0], pixels.shape[1] * scale, pixels.shape[2] * scale
    rows = -(-count // nrow)
    if titles is not None and len(titles) != rows:
        raise DataError(f"save_grid: {len(titles)} titles for {rows} rows")
    font = _title_font()
    margin = 0
    if titles:
        margin = max(int(font.getlength(t)) for t in titles) + 3 * _GAP
    sheet = Image.new("RGB", (margin + nrow * (width + _GAP) + _GAP, rows * (height + _GAP) + _GAP), "white")
    draw = ImageDraw.Draw(sheet)
    for i in range(count):
        row, col = divmod(i, nrow)
        tile = Image.fromarray(pixels[i]).resize((width, height), Image.Resampling.NEAREST)
        sheet.paste(tile, (margin + _GAP + col * (width + _GAP), _GAP + row * (height + _GAP)))
    for row, title in enumerate(titles or ()):
        top = _GAP + row * (height + _GAP) + (height - _TITLE_POINTS) // 2
        draw.text((_GAP, top), title, fill="black", font=font)
    path = Path(path)
    with atomic_path(path) as tmp:
        sheet.save(tmp, format="PNG")
    return path


def save_split_preview(
    *, data: SplitData, path: Path, classes_per_split: int = 4, images_per_class: int = 10, seed: int = 0
) -> Path:
    """A grid with one row per sampled class of each split, captioned ``split | group | class``."""
    rng = random.Random(seed)
    tiles, titles = [], []
    for split_name, part in data.splits().items():
        chosen = sorted(rng.sample(range(part.num_classes), min(classes_per_split, part.num_classes)))
        for index in chosen:
            members = torch.nonzero(part.labels == index).flatten()[:images_per_class]
            row = part.images[members]
            if row.shape[0] < images_per_class:
                # Blank tiles pad short classes so each row is one class.
                pad = torch.full((images_per_class - row.shape[0], *row.shape[1:]), 255, dtype=torch.uint8)
                row = torch.cat([row, pad])
            tiles.append(row)
            titles.append(f"{split_name} | {part.class_groups[index]} | {part.class_names[index].lower()}")
    if not tiles:
        raise DataError("nothing to preview: every split is empty")
    return save_grid(images=torch.cat(tiles), path=path, nrow=images_per_class, titles=titles)
