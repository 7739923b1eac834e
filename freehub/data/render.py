"""Draw many varied images of each glyph class: typeface, affine pose, stroke width, colour, noise.

Pillow draws each (class, face) pair once, clean, at twice the target size; everything per image
then happens on whole batches in torch (one ``grid_sample`` for the pose, max-pooling for stroke
width, average-pooling down to size), so the cost per image is a few tensor operations.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from freehub.data.catalogue import GlyphClass
from freehub.data.fonts import Face, render_glyph
from freehub.errors import DataError

_BATCH = 1024


@dataclass(frozen=True)
class Variation:
    """How far one image of a class may stray from its clean render.

    Angles in degrees; ``translate`` as a fraction of the image side; ``stroke`` the probabilities of
    eroding, keeping and dilating the strokes (by one pixel at twice the size, half a pixel at size).
    """

    rotation: float = 12.0
    scale: tuple[float, float] = (0.8, 1.1)
    stretch: float = 0.12
    shear: float = 12.0
    translate: float = 0.08
    stroke: tuple[float, float, float] = (0.25, 0.45, 0.3)
    ink: tuple[float, float] = (0.0, 0.4)
    paper: tuple[float, float] = (0.75, 1.0)
    noise: float = 0.06


def _sources(
    classes: Sequence[GlyphClass], faces: dict[str, Face], canvas: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Clean renders of every (class, face) pair, plus each class's first row and face count."""
    renders, first, count = [], [], []
    for glyph in classes:
        first.append(len(renders))
        for face_name in glyph.faces:
            ink = render_glyph(char=glyph.char, face=faces[face_name], canvas=canvas)
            if ink is not None:
                renders.append(ink)
        count.append(len(renders) - first[-1])
    stack = torch.from_numpy(np.stack(renders)) if renders else torch.zeros(0, canvas, canvas)
    return stack, torch.tensor(first), torch.tensor(count)


def _uniform(generator: torch.Generator, count: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(count, generator=generator)


def _inverse_affine(variation: Variation, count: int, generator: torch.Generator) -> torch.Tensor:
    """``grid_sample`` thetas: each maps output coordinates back to the clean render's coordinates."""
    angle = torch.deg2rad(_uniform(generator, count, -variation.rotation, variation.rotation))
    shear = torch.tan(torch.deg2rad(_uniform(generator, count, -variation.shear, variation.shear)))
    scale = _uniform(generator, count, *variation.scale)
    stretch = _uniform(generator, count, -variation.stretch, variation.stretch)
    shift = _uniform(generator, 2 * count, -2 * variation.translate, 2 * variation.translate).view(count, 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    skew = torch.eye(2).repeat(count, 1, 1)
    skew[:, 0, 1] = shear
    size = torch.diag_embed(torch.stack([scale * (1 + stretch), scale * (1 - stretch)], -1))
    forward = rotate @ skew @ size
    inverse = torch.linalg.inv(forward)
    offset = -(inverse @ shift.unsqueeze(-1))
    return torch.cat([inverse, offset], dim=-1)


def _max3(x: torch.Tensor) -> torch.Tensor:
    """3x3 max filter as two 1-D passes over shifted views: about twice as fast as max_pool2d on CPU."""
    padded = F.pad(x, (1, 1, 1, 1), value=float(x.min()) if x.numel() else 0.0)
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def _stroke(coverage: torch.Tensor, choice: torch.Tensor) -> torch.Tensor:
    """Erode (choice 0) or dilate (choice 2) the images that drew it; the rest keep their strokes."""
    thin, bold = choice == 0, choice == 2
    coverage[thin] = -_max3(-coverage[thin])
    coverage[bold] = _max3(coverage[bold])
    return coverage


def _sampling_grid(thetas: torch.Tensor, side: int) -> torch.Tensor:
    """The grid ``affine_grid`` would give (``align_corners=False``), as three broadcast products."""
    centres = (torch.arange(side, dtype=torch.float32) * 2 + 1) / side - 1
    count = thetas.shape[0]
    column, row, offset = (thetas[:, :, k].view(count, 1, 1, 2) for k in range(3))
    return column * centres.view(1, 1, side, 1) + row * centres.view(1, side, 1, 1) + offset


def render_images(
    *,
    classes: Sequence[GlyphClass],
    faces: Sequence[Face],
    size: int,
    channels: int,
    images_per_class: int,
    seed: int,
    variation: Variation = Variation(),
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``uint8 [N, channels, size, size]`` (dark ink on light paper) and their class labels.

    Images come class by class, ``images_per_class`` each. The same arguments give the same tensors.
    """
    canvas = 2 * size
    sources, first, count = _sources(classes, {face.name: face for face in faces}, canvas)
    if bool((count == 0).any()):
        blank = classes[int(torch.nonzero(count == 0)[0])]
        raise DataError(f"{blank.name} draws no ink at size {size} in any of its faces: use a larger size")
    labels = torch.arange(len(classes)).repeat_interleave(images_per_class)
    total = labels.numel()
    generator = torch.Generator().manual_seed(seed)
    # Per-image choices are drawn up front, pixel noise batch by batch (a fixed batch size keeps
    # the stream of draws, and so the images, the same on every run).
    face_pick = (torch.rand(total, generator=generator) * count[labels]).long().clamp_max(count[labels] - 1)
    source_row = first[labels] + face_pick
    thetas = _inverse_affine(variation, total, generator)
    stroke_pick = torch.multinomial(torch.tensor(variation.stroke), total, replacement=True, generator=generator)
    ink = _uniform(generator, total * channels, *variation.ink).view(total, channels, 1, 1)
    paper = _uniform(generator, total * channels, *variation.paper).view(total, channels, 1, 1)
    noise_level = _uniform(generator, total, 0.0, variation.noise).view(total, 1, 1, 1)

    out = torch.empty(total, channels, size, size, dtype=torch.uint8)
    starts = range(0, total, _BATCH)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="rendering glyphs", unit="batch")
    for start in starts:
        part = slice(start, start + _BATCH)
        clean = sources[source_row[part]].unsqueeze(1)
        grid = _sampling_grid(thetas[part], canvas)
        coverage = F.grid_sample(clean, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        coverage = F.avg_pool2d(_stroke(coverage, stroke_pick[part]), 2)
        noise = torch.randn(coverage.shape[0], channels, size, size, generator=generator)
        image = noise.mul_(noise_level[part]).add_(paper[part]).addcmul_(ink[part] - paper[part], coverage)
        out[part] = image.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
    return out, labels


def variation_key(variation: Variation) -> str:
    """A stable text form of ``variation`` for cache keys."""
    return ",".join(f"{k}={v}" for k, v in sorted(asdict(variation).items()))
