"""The FIVE generator: latent codes to images in ``[0, 1]``.

The shape follows FastDFKD's generator, which FREE meta-learns: a linear map to a ``width``-channel
map at a quarter of the output size, two upsampling stages, and a sigmoid. ``width=128`` is the
reference; half of it is the CPU default (about six times cheaper per step, see DESIGN.md).
"""

from __future__ import annotations

import torch
from torch import nn

from freehub.errors import ConfigError


class Generator(nn.Module):
    """``z`` (``B x latent_dim``) to images ``B x channels x image_size x image_size`` in ``[0, 1]``."""

    def __init__(self, *, latent_dim: int = 256, width: int = 128, image_size: int = 32, channels: int = 3) -> None:
        super().__init__()
        if image_size % 4 != 0:
            raise ConfigError(f"generator image_size must be a multiple of 4, got {image_size}")
        if width % 2 != 0 or width < 2:
            raise ConfigError(f"generator width must be an even number >= 2, got {width}")
        self.latent_dim = latent_dim
        self.width = width
        self.image_size = image_size
        self.channels = channels
        self._init_size = image_size // 4
        self.project = nn.Linear(latent_dim, width * self._init_size**2)
        self.body = nn.Sequential(
            nn.BatchNorm2d(width),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Upsample(scale_factor=2),
            nn.Conv2d(width, width // 2, 3, padding=1, bias=False),
            nn.BatchNorm2d(width // 2),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width // 2, channels, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.project(z).view(z.shape[0], self.width, self._init_size, self._init_size)
        return self.body(x)

    def sample_latent(self, *, count: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Fresh ``N(0, I)`` latent codes from the global torch RNG."""
        return torch.randn(count, self.latent_dim, device=device)
