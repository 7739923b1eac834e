"""Training-free reference learners: pixel prototypes and the teachers' own features, scored like any learner."""

from __future__ import annotations

import pytest
import torch

from freehub.errors import ConfigError
from freehub.free.fewshot import evaluate_fewshot
from freehub.free.reference import PixelPrototypes, TeacherEnsemble


def test_pixel_features_ignore_brightness_and_contrast() -> None:
    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32) * 0.5 + 0.25
    learner = PixelPrototypes()
    assert torch.allclose(learner.features(images), learner.features(0.4 * images + 0.3), atol=1e-4)
    assert learner.features(images).shape == (4, 32 * 32)


def test_pixel_prototypes_score_real_episodes_well_above_chance(glyph_data) -> None:
    result = evaluate_fewshot(learner=PixelPrototypes(), data=glyph_data.test, n_way=5, k_shot=1, episodes=60)
    # Measured 48.5-53.4% over three episode seeds (60 episodes, +/- 2.2); chance is 20%.
    assert result.mean - result.ci95 > 0.3


def test_ensemble_gives_each_teacher_one_unit_length_block(small_teachers, glyph_data) -> None:
    ensemble = TeacherEnsemble(teachers=small_teachers)
    images = glyph_data.test.as_float()[:6]
    features = ensemble.features(images)
    widths = [teacher.network[1].in_features for teacher in small_teachers]  # each teacher's head input
    assert features.shape == (6, sum(widths))
    blocks = torch.split(features, widths, dim=1)
    assert all(torch.allclose(block.norm(dim=1), torch.ones(6), atol=1e-5) for block in blocks)
    assert not any(p.requires_grad for p in ensemble.parameters())
    ensemble.train()
    assert not any(module.training for module in ensemble.teachers.modules())


def test_cached_features_equal_fresh_ones_and_the_cache_is_bounded(small_teachers, glyph_data) -> None:
    images = glyph_data.test.as_float()[:8]
    cached = TeacherEnsemble(teachers=small_teachers)
    first = cached.features(images[:5])
    mixed = cached.features(images)  # five from the cache, three new, in one batch
    uncached = TeacherEnsemble(teachers=small_teachers, cache_mb=0).features(images)
    assert torch.allclose(mixed, uncached, atol=1e-5) and torch.equal(mixed[:5], first)
    row_bytes = first[0].numel() * first[0].element_size()
    bounded = TeacherEnsemble(teachers=small_teachers, cache_mb=3.5 * row_bytes / 2**20)
    bounded.features(images)
    assert bounded.cached_images == 3


def test_ensemble_uses_logits_when_the_head_is_unknown(small_teachers, glyph_data) -> None:
    from dataclasses import replace

    from freehub.task_model import TaskModel

    teacher = small_teachers[0]
    headless = TaskModel(network=teacher.network, spec=replace(teacher.spec, head_names=()))
    features = TeacherEnsemble(teachers=[headless]).features(glyph_data.test.as_float()[:3])
    assert features.shape == (3, teacher.num_classes)


def test_ensemble_of_small_teachers_scores_unseen_classes_above_chance(small_teachers, glyph_data) -> None:
    ensemble = evaluate_fewshot(learner=TeacherEnsemble(teachers=small_teachers), data=glyph_data.test, n_way=5, k_shot=1, episodes=60)
    # Measured 52.5-53.9% over three episode seeds for these three tiny teachers; chance is 20%.
    assert ensemble.mean - ensemble.ci95 > 0.3


def test_an_empty_ensemble_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one teacher"):
        TeacherEnsemble(teachers=[])
