"""Replay's view of memory images: colour jitter, blur and noise change style, not shapes."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from freehub.errors import ConfigError
from freehub.free import MetaTrainConfig
from freehub.free.replay import _replay_view
from freehub.free.views import colour_jitter, random_affine, random_blur


def _bars(count: int = 8) -> torch.Tensor:
    """Vertical one-pixel bars: all their energy is at the highest horizontal frequency."""
    images = torch.zeros(count, 3, 16, 16)
    images[..., ::2] = 1.0
    return images


def _roughness(images: torch.Tensor) -> torch.Tensor:
    return (images[..., 1:] - images[..., :-1]).abs().mean(dim=(1, 2, 3))


def test_blur_smooths_each_image_by_its_own_random_width() -> None:
    torch.manual_seed(0)
    blurred = random_blur(_bars(), max_sigma=1.5)
    roughness = _roughness(blurred)
    assert blurred.shape == (8, 3, 16, 16)
    assert bool((roughness <= _roughness(_bars()) + 1e-6).all())
    assert float(roughness.min()) < 0.1 and float(roughness.max()) > 0.5  # widths differ between images
    assert torch.allclose(blurred.mean(dim=(1, 2, 3)), torch.full((8,), 0.5), atol=0.02)  # no ink lost or added


def test_blur_and_noise_are_off_by_default() -> None:
    images = _bars()
    viewed = _replay_view(images=images, config=replace(MetaTrainConfig(), replay_colour_jitter=False))
    assert torch.equal(viewed, images)


def test_colour_jitter_keeps_shapes() -> None:
    torch.manual_seed(0)
    images = _bars()
    jittered = colour_jitter(images)
    # A per-channel affine map of the range: bars stay bars (every dark pixel below every light one).
    for original, new in zip(images, jittered):
        for channel in range(3):
            assert new[channel][original[channel] == 0].max() < new[channel][original[channel] == 1].min()


def test_noise_stays_in_range_and_varies_per_image() -> None:
    torch.manual_seed(0)
    config = MetaTrainConfig(replay_colour_jitter=False, replay_noise=0.2)
    images = torch.full((16, 3, 16, 16), 0.5)
    viewed = _replay_view(images=images, config=config)
    assert float(viewed.min()) >= 0.0 and float(viewed.max()) <= 1.0
    spread = (viewed - images).std(dim=(1, 2, 3))
    assert float(spread.max()) > 2 * float(spread.min())


@pytest.mark.parametrize("knob, value", [("replay_blur", -0.5), ("replay_blur", 4.0), ("replay_noise", 0.8)])
def test_out_of_range_replay_knobs_are_refused(knob: str, value: float) -> None:
    with pytest.raises(ConfigError, match=knob):
        replace(MetaTrainConfig(), **{knob: value}).validate()


def test_random_affine_moves_each_image_its_own_way_and_keeps_its_ink() -> None:
    torch.manual_seed(0)
    images = torch.ones(6, 3, 32, 32)
    images[:, :, 12:20, 14:18] = 0.0
    moved = random_affine(images.clone(), strength=0.1)
    assert not torch.allclose(moved, images)
    assert not torch.allclose(moved[0], moved[1])
    # A small rotation, scale and shift of a bar well inside the canvas keeps about as much ink.
    ink, moved_ink = (1 - images).sum(dim=(1, 2, 3)), (1 - moved).sum(dim=(1, 2, 3))
    assert torch.allclose(moved_ink, ink, rtol=0.3)


def test_random_affine_of_strength_zero_is_the_identity() -> None:
    images = torch.rand(3, 3, 16, 16)
    assert random_affine(images, strength=0.0) is images
