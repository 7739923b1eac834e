"""A generator whose images are pen strokes: an image prior for line-art domains.

FastDFKD's convolutional generator (:class:`~freehub.free.generator.Generator`) can paint any
pixels, and a teacher is satisfied by textures no real image of its classes has: recovered glyphs
come out as grey blobs. This generator can only draw: a small MLP maps each latent code to
``strokes`` quadratic Bézier curves (three control points, a pen width, an opacity) and to a paper
and an ink colour, and a differentiable rasteriser renders them (soft distance from each pixel to
the curve). Every image it can make is ink lines on a plain ground, the shape of characters,
symbols, sketches and diagrams, so what a teacher can ask of it is a shape.

It is a prior, not a law of nature: for photographs it is the wrong one, and the conv generator
remains the default. In the spirit of "learning to see by looking at noise" (Baradad et al., 2021),
its random samples also serve as inputs on which the teacher ensemble's knowledge is distilled
(:mod:`freehub.free.prior_distill`).
"""

from __future__ import annotations

import torch
from torch import nn

from freehub.errors import ConfigError

# Per stroke: three control points (x, y), a pen width, an opacity.
_STROKE_PARAMS = 8


class StrokeGenerator(nn.Module):
    """``z`` (``B x latent_dim``) to ``B x channels x image_size x image_size`` images of ``strokes`` pen strokes."""

    def __init__(
        self,
        *,
        latent_dim: int = 64,
        hidden: int = 256,
        strokes: int = 3,
        samples: int = 12,
        image_size: int = 32,
        channels: int = 3,
        width_range: tuple[float, float] = (0.6, 2.5),
        softness: float = 0.5,
    ) -> None:
        super().__init__()
        if strokes < 1 or samples < 2:
            raise ConfigError(f"a stroke generator needs at least one stroke of two samples, got {strokes} strokes, {samples} samples")
        if not 0 < width_range[0] <= width_range[1]:
            raise ConfigError(f"pen widths must satisfy 0 < low <= high, got {width_range}")
        self.latent_dim = latent_dim
        self.strokes = strokes
        self.image_size = image_size
        self.channels = channels
        self.width_range = width_range
        self.softness = softness
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden), nn.LeakyReLU(0.2),
            nn.Linear(hidden, strokes * _STROKE_PARAMS + 2 * channels),
        )
        self._initialise_output()
        centres = torch.arange(image_size, dtype=torch.float32) + 0.5
        rows, cols = torch.meshgrid(centres, centres, indexing="ij")
        self.register_buffer("pixels", torch.stack([cols, rows], dim=-1).view(-1, 2), persistent=False)
        t = torch.linspace(0.0, 1.0, samples)
        self.register_buffer("bezier", torch.stack([(1 - t) ** 2, 2 * t * (1 - t), t**2], dim=1), persistent=False)

    def _initialise_output(self) -> None:
        # At initialisation the strokes must already spread over the canvas and show: an MLP's small
        # outputs would put every control point at the centre and every colour at mid-grey, where the
        # teacher's gradient says little about shape.
        last = self.net[-1]
        with torch.no_grad():
            per_stroke_weight = last.weight[: self.strokes * _STROKE_PARAMS].view(self.strokes, _STROKE_PARAMS, -1)
            per_stroke_weight[:, :6] *= 4.0
            bias = last.bias
            per_stroke_bias = bias[: self.strokes * _STROKE_PARAMS].view(self.strokes, _STROKE_PARAMS)
            per_stroke_bias[:, :6].uniform_(-1.0, 1.0)
            per_stroke_bias[:, 7] = 2.0  # opaque
            colours = bias[self.strokes * _STROKE_PARAMS :]
            colours[: self.channels] = 2.0  # light paper
            colours[self.channels :] = -2.0  # dark ink

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        count, size = z.shape[0], self.image_size
        out = self.net(z)
        params = out[:, : self.strokes * _STROKE_PARAMS].view(count, self.strokes, _STROKE_PARAMS)
        colours = torch.sigmoid(out[:, self.strokes * _STROKE_PARAMS :]).view(count, 2, self.channels, 1, 1)
        # Control points within the central 90% of the canvas, in pixel units.
        control = (torch.tanh(params[..., :6]).view(count, self.strokes, 3, 2) * 0.45 + 0.5) * size
        low, high = self.width_range
        width = low + (high - low) * torch.sigmoid(params[..., 6])
        opacity = torch.sigmoid(params[..., 7])
        points = torch.einsum("tk,bskd->bstd", self.bezier, control)
        ink = 1 - torch.prod(1 - self._coverage(points=points, width=width) * opacity.unsqueeze(-1), dim=1)
        ink = ink.view(count, 1, size, size)
        return colours[:, 0] * (1 - ink) + colours[:, 1] * ink

    def _coverage(self, *, points: torch.Tensor, width: torch.Tensor) -> torch.Tensor:
        """``B x S x P``: how much of each pixel each stroke (a polyline through ``points``) covers."""
        start, end = points[:, :, :-1].unsqueeze(3), points[:, :, 1:].unsqueeze(3)
        segment = end - start
        offset = self.pixels.view(1, 1, 1, -1, 2) - start
        along = ((offset * segment).sum(-1, keepdim=True) / (segment * segment).sum(-1, keepdim=True).clamp_min(1e-6)).clamp(0.0, 1.0)
        squared = (offset - along * segment).pow(2).sum(-1).min(dim=2).values
        distance = (squared + 1e-8).sqrt()
        return torch.sigmoid((width.unsqueeze(-1) - distance) / self.softness)

    def sample_latent(self, *, count: int, device: torch.device | str | None = None) -> torch.Tensor:
        """Fresh ``N(0, I)`` latent codes from the global torch RNG."""
        return torch.randn(count, self.latent_dim, device=device)
