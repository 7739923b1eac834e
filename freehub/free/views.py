"""Per-image views of training images: colour, sharpness and small geometric changes that keep shapes.

Replay shows memory images through them so that an episode cannot be solved by the style of the
teacher that recovered a class; prior distillation shows its samples through them too. Each draws
from the global torch RNG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def colour_jitter(images: torch.Tensor) -> torch.Tensor:
    """Per image: greyscale with probability 1/2, then each channel's range mapped to a random
    ``[low, high]`` (low in [0, 0.4], high in [0.6, 1]): a new contrast, brightness and tint, the
    shapes untouched. Draws from the global torch RNG."""
    count = images.shape[0]
    grey = images.mean(dim=1, keepdim=True).expand_as(images)
    images = torch.where(torch.rand(count, 1, 1, 1) < 0.5, grey, images)
    low = torch.rand(count, images.shape[1], 1, 1) * 0.4
    high = 0.6 + torch.rand(count, images.shape[1], 1, 1) * 0.4
    return low + (high - low) * images


def random_blur(images: torch.Tensor, *, max_sigma: float) -> torch.Tensor:
    """Per image: a Gaussian blur of a random width in ``[0, max_sigma]`` pixels. Draws from the global
    torch RNG. Teachers of different input sizes recover images of different sharpness; a random blur
    keeps sharpness from telling their classes apart."""
    count, channels, height, width = images.shape
    radius = max(1, math.ceil(2 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype)
    sigma = (torch.rand(count, dtype=images.dtype) * max_sigma).clamp(min=1e-3)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / sigma.view(-1, 1)) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(channels, dim=0)
    flat = F.pad(images.reshape(1, count * channels, height, width), (radius, radius, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel.view(-1, 1, 1, 2 * radius + 1), groups=count * channels)
    flat = F.conv2d(flat, kernel.view(-1, 1, 2 * radius + 1, 1), groups=count * channels)
    return flat.view(count, channels, height, width)


def random_affine(images: torch.Tensor, *, strength: float) -> torch.Tensor:
    """Per image: a rotation of up to ``strength`` x 180 degrees, a scale in ``1 +- strength`` and a
    shift of up to ``strength`` x half the image, edges extended. Draws from the global torch RNG.

    Prior distillation shows the learner moved copies of the samples the teachers judged as they
    were: a character drawn a little off-centre or askew is the same character, and the learner
    should learn that rather than pixel positions."""
    if strength <= 0:
        return images
    count = images.shape[0]
    angle = (torch.rand(count) * 2 - 1) * strength * math.pi
    scale = 1 + (torch.rand(count) * 2 - 1) * strength
    theta = torch.zeros(count, 2, 3, dtype=images.dtype)
    theta[:, 0, 0], theta[:, 0, 1] = scale * torch.cos(angle), -scale * torch.sin(angle)
    theta[:, 1, 0], theta[:, 1, 1] = scale * torch.sin(angle), scale * torch.cos(angle)
    theta[:, :, 2] = (torch.rand(count, 2) * 2 - 1) * strength
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)
