"""The pen-stroke generator: what it draws, that it is differentiable, and that FREE can use it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from freehub.errors import ConfigError
from freehub.free import InversionSettings, MetaTrainConfig, recover_task
from freehub.free.generator import Generator
from freehub.free.strokes import StrokeGenerator


def _one_line(*, start: tuple[float, float], end: tuple[float, float]) -> StrokeGenerator:
    """A generator that always draws one straight, opaque black line on white paper (``[0, 1]`` coordinates)."""
    generator = StrokeGenerator(latent_dim=4, strokes=1, image_size=32)
    last = generator.net[-1]
    middle = ((start[0] + end[0]) / 2, (start[1] + end[1]) / 2)
    with torch.no_grad():
        last.weight.zero_()
        # tanh(raw) * 0.45 + 0.5 = coordinate  =>  raw = atanh((coordinate - 0.5) / 0.45)
        points = torch.tensor([*start, *middle, *end])
        last.bias[:6] = torch.atanh((points - 0.5) / 0.45)
        last.bias[6] = 0.0  # mid pen width
        last.bias[7] = 10.0  # opaque
        last.bias[8:11] = 10.0  # white paper
        last.bias[11:14] = -10.0  # black ink
    return generator


def test_images_have_the_requested_shape_and_stay_in_the_unit_range() -> None:
    torch.manual_seed(0)
    generator = StrokeGenerator(latent_dim=16, strokes=4, image_size=24)
    images = generator(generator.sample_latent(count=5))
    assert images.shape == (5, 3, 24, 24)
    assert images.min() >= 0 and images.max() <= 1


def test_a_stroke_inks_the_pixels_on_its_path_and_leaves_the_rest_as_paper() -> None:
    image = _one_line(start=(0.2, 0.5), end=(0.8, 0.5))(torch.zeros(1, 4))[0, 0]
    row = 16  # its centre is half a pixel below the line (y = 16.0 on a 32-pixel canvas)
    assert image[row, 16] < 0.2 and image[row, 9] < 0.2 and image[row, 22] < 0.2
    assert image[4, 16] > 0.9 and image[row, 1] > 0.9 and image[28, 28] > 0.9


def test_freshly_initialised_strokes_are_dark_lines_spread_over_light_paper() -> None:
    torch.manual_seed(0)
    generator = StrokeGenerator(image_size=32)
    grey = generator(generator.sample_latent(count=16)).mean(dim=1)
    ink = grey < 0.5
    assert 0.05 < ink.float().mean() < 0.6  # lines, not an empty page nor a filled one
    # Ink reaches every quadrant over the batch: the strokes are not all stuck at the centre.
    for rows in (slice(0, 16), slice(16, 32)):
        for cols in (slice(0, 16), slice(16, 32)):
            assert ink[:, rows, cols].any()


def test_gradients_reach_every_parameter_and_the_latent_codes() -> None:
    torch.manual_seed(0)
    generator = StrokeGenerator(latent_dim=8, strokes=3, image_size=16)
    z = generator.sample_latent(count=4).requires_grad_(True)
    generator(z).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.parameters())


def test_bad_stroke_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        StrokeGenerator(strokes=0)
    with pytest.raises(ConfigError):
        StrokeGenerator(width_range=(2.0, 1.0))


def test_the_config_builds_the_generator_it_names() -> None:
    assert isinstance(MetaTrainConfig().make_generator(), Generator)
    strokes = MetaTrainConfig(generator="strokes", generator_strokes=3, latent_dim=16).make_generator()
    assert isinstance(strokes, StrokeGenerator) and strokes.strokes == 3 and strokes.latent_dim == 16
    with pytest.raises(ConfigError, match="generator"):
        MetaTrainConfig(generator="diffusion").validate()


def test_a_teacher_can_be_inverted_through_strokes(small_teachers) -> None:
    torch.manual_seed(0)
    teacher = small_teachers[0]
    settings = replace(InversionSettings(), steps=30, images_per_task=20, adv_weight=0.0)
    task, gradient = recover_task(generator=StrokeGenerator(latent_dim=32, image_size=32), teacher=teacher, settings=settings)
    assert task.images.shape == (20, 3, 32, 32) and task.teacher_accuracy > 0.4  # 5 classes: chance is 0.2
    assert all(torch.isfinite(g).all() for g in gradient)
