"""FIVE's parts: the generator, augmentation, one teacher's inversion, the meta-update, the BN prior."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch
from test_free_teachers import fit_split, glyphs, train_teacher

from freehub.errors import ConfigError
from freehub.free import Generator, InversionSettings, MetaGenerator, bn_statistics_distance, build_learner, recover_task
from freehub.free.episodic import task_logits
from freehub.free.inversion import HeadInput, augment, same_class_similarity
from freehub.free.learners import LearnerSpec
from freehub.free.strokes import StrokeGenerator
from freehub.task_model import TaskModel


SETTINGS = InversionSettings(steps=3, images_per_task=20)


@pytest.fixture(scope="module")
def real():
    data = glyphs()
    fit, held_out = fit_split(data.train.select_classes(range(20, 25)))
    return train_teacher(task=fit, seed=0, steps=40, width=8), held_out


def _params(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_generator_makes_images_in_the_unit_range_at_its_size() -> None:
    images = Generator(latent_dim=16, width=8, image_size=24)(torch.randn(3, 16))
    assert images.shape == (3, 3, 24, 24) and images.min() >= 0 and images.max() <= 1
    with pytest.raises(ConfigError):
        Generator(image_size=30)


def test_augmentation_is_differentiable_and_identity_without_shift_or_flip() -> None:
    images = torch.rand(4, 3, 16, 16, requires_grad=True)
    torch.testing.assert_close(augment(images, shift=0.0, flip=False), images, atol=1e-5, rtol=0)
    moved = augment(images, shift=0.25, flip=True)
    assert moved.shape == images.shape and not torch.allclose(moved, images)
    (grad,) = torch.autograd.grad(moved.sum(), images)
    assert grad.abs().sum() > 0


def test_inversion_makes_the_teacher_recognise_its_classes_and_changes_no_teacher_weight(real) -> None:
    teacher, _ = real
    before = _params(teacher)
    torch.manual_seed(0)
    generator = Generator(latent_dim=32, width=16)
    one, _ = recover_task(generator=copy.deepcopy(generator), teacher=teacher, settings=InversionSettings(steps=1, images_per_task=20))
    torch.manual_seed(0)
    many, _ = recover_task(generator=generator, teacher=teacher, settings=InversionSettings(steps=40, images_per_task=20, lr=1e-2))
    assert many.teacher_accuracy > max(one.teacher_accuracy, 0.8)
    assert many.labels.tolist() == [i % 5 for i in range(20)] and many.images.shape == (20, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_latent_pool_starts_from_images_the_teacher_already_gives_their_labels(real, seed) -> None:
    teacher, _ = real
    accuracy = {}
    for pool in (1, 16):
        torch.manual_seed(seed)
        # Stroke images differ from code to code, so a pool of them holds candidates for every class.
        generator = StrokeGenerator(latent_dim=16, hidden=32)
        # One step reports the teacher's verdict on the starting images (before any update).
        task, _ = recover_task(generator=generator, teacher=teacher, settings=InversionSettings(steps=1, images_per_task=20, latent_pool=pool, aug_shift=0))
        accuracy[pool] = task.teacher_accuracy
    assert accuracy[16] >= 0.8 and accuracy[1] <= 0.5, accuracy


def test_the_adversarial_term_uses_the_learner_without_giving_it_gradients(real) -> None:
    teacher, _ = real
    torch.manual_seed(0)
    learner = build_learner(spec=LearnerSpec(conv_width=8))
    adversary = lambda x, y, c: task_logits(learner=learner, images=x, labels=y, num_classes=c)  # noqa: E731
    # Uncapped: a random learner's divergence from the teacher can exceed the default cap on every
    # sample, and a capped term has no gradient, which would hide whether the learner is used at all.
    settings = replace(SETTINGS, adv_cap=1e3)
    runs = []
    for use in (None, adversary):
        torch.manual_seed(0)
        runs.append(recover_task(generator=Generator(latent_dim=32, width=16), teacher=teacher, settings=settings, adversary=use)[0])
    assert not torch.equal(runs[0].images, runs[1].images)
    assert all(p.grad is None for p in learner.parameters())


def test_meta_generator_takes_every_teacher_and_keeps_its_outer_optimizer(real) -> None:
    teacher, _ = real
    others = teacher.head_slice([4, 3, 2, 1, 0])
    torch.manual_seed(0)
    meta = MetaGenerator(generator=Generator(latent_dim=32, width=16), settings=SETTINGS)
    before = _params(meta.generator)
    tasks = meta.recover(teachers=[teacher, others, teacher])
    meta.recover(teachers=[teacher])
    assert len(tasks) == 3
    assert {int(state["step"]) for state in meta.optimizer.state.values()} == {2}
    assert any(not torch.equal(a, b) for a, b in zip(before, meta.generator.parameters()))


def test_reptile_moves_the_meta_generator_towards_the_adapted_generator(real) -> None:
    teacher, _ = real
    torch.manual_seed(0)
    meta = MetaGenerator(generator=Generator(latent_dim=32, width=16), settings=SETTINGS, meta_rule="reptile", meta_lr=1e-3)
    start = _params(meta.generator)
    torch.manual_seed(1)
    adapted = copy.deepcopy(meta.generator)
    recover_task(generator=adapted, teacher=teacher, settings=SETTINGS)
    torch.manual_seed(1)
    meta.recover(teachers=[teacher])
    direction = torch.cat([(a - s).flatten() for a, s in zip(adapted.parameters(), start)])
    moved = torch.cat([(m.detach() - s).flatten() for m, s in zip(meta.generator.parameters(), start)])
    assert torch.nn.functional.cosine_similarity(direction, moved, dim=0) > 0.5


def test_bn_distance_prefers_real_images_of_the_teacher_classes_to_noise(real) -> None:
    teacher, held_out = real
    torch.manual_seed(0)
    real_distance = bn_statistics_distance(teacher=teacher, images=held_out.as_float())
    noise_distance = bn_statistics_distance(teacher=teacher, images=torch.rand(25, 3, 32, 32))
    assert real_distance < noise_distance


def test_bn_distance_is_nan_for_a_teacher_without_batchnorm(real) -> None:
    teacher, _ = real
    plain = TaskModel(network=torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 5)), spec=teacher.spec)
    assert math.isnan(bn_statistics_distance(teacher=plain, images=torch.rand(2, 3, 32, 32)))


def test_head_input_hook_sees_the_teacher_features_and_nothing_without_a_named_head(real) -> None:
    named, _ = real
    unnamed = named.with_spec(head_names=())
    images = torch.rand(6, 3, 32, 32)
    with HeadInput(named) as head, torch.no_grad():
        named(images)
    torch.testing.assert_close(head.features, named.network[0](named.preprocess(images)))
    with HeadInput(unnamed) as nothing, torch.no_grad():
        unnamed(images)
    assert nothing.features is None


def test_the_diversity_term_spreads_each_class_over_the_teacher_features(real) -> None:
    named, _ = real
    similarity = {}
    for weight in (0.0, 5.0):
        torch.manual_seed(0)
        settings = InversionSettings(steps=20, images_per_task=20, lr=1e-2, diversity_weight=weight)
        task, _ = recover_task(generator=Generator(latent_dim=32, width=16), teacher=named, settings=settings)
        with HeadInput(named) as head, torch.no_grad():
            named(task.images)
        similarity[weight] = float(same_class_similarity(features=head.features, labels=task.labels))
    assert similarity[5.0] < similarity[0.0] - 0.2, similarity  # measured 0.91 -> 0.43-0.46 over seeds 0-3
