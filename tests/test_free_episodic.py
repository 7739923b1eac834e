"""Episodic learners on real glyph episodes, few-shot evaluation, learner files, timm backbones."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch.func import functional_call

from freehub.data import EpisodeSampler, SplitData
from freehub.errors import CheckpointError, ConfigError
from freehub.evaluate import paired_difference
from freehub.free.episodic import adapt_parameters, maml_episode, protonet_episode, task_logits
from freehub.free.fewshot import FewShotResult, evaluate_fewshot
from freehub.free.learners import LearnerSpec, MetaLearner, build_learner, load_learner, save_learner


@pytest.fixture
def data(glyph_data: SplitData) -> SplitData:
    return glyph_data


def _train(learner: MetaLearner, data: SplitData, *, steps: int, first_order: bool = True) -> None:
    sampler = EpisodeSampler(data.train, n_way=5, k_shot=1, q_queries=5, seed=1)
    optimizer = torch.optim.Adam(learner.parameters(), lr=3e-3)
    for _ in range(steps):
        episode = sampler.sample()
        batch = dict(
            support_images=episode.support_images,
            support_labels=episode.support_labels,
            query_images=episode.query_images,
            query_labels=episode.query_labels,
        )
        if learner.head is None:
            outcome = protonet_episode(learner=learner, **batch)
        else:
            outcome = maml_episode(learner=learner, steps=3, lr=0.1, first_order=first_order, **batch)
        optimizer.zero_grad()
        outcome.loss.backward()
        optimizer.step()


def _score(learner: MetaLearner, data: SplitData) -> FewShotResult:
    return evaluate_fewshot(learner=learner, data=data.val, n_way=5, k_shot=1, episodes=EPISODES, q_queries=5, seed=3, steps=3, lr=0.1)


# Paired gains (after minus before, on the same 100 meta-validation episodes), measured with init seeds 0-7
# (MAML) and 0-4 (ProtoNet) on one machine: MAML after 80 steps gains 15.9-22.0 points (+/- 2.6-3.2),
# smallest lower bound 12.9; ProtoNet after 40 steps gains 20.3-24.5 (+/- 2.4-3.0), smallest lower bound
# 17.5. The test asks for a lower bound above 8 points: a learner that does not learn gains 0 +/- 3.
TRAINING_STEPS = {"maml": 80, "protonet": 40}
EPISODES = 100
MARGIN = 0.08


@pytest.mark.parametrize("algorithm", ["maml", "protonet"])
def test_episodic_training_improves_few_shot_accuracy_on_unseen_classes(data: SplitData, algorithm: str) -> None:
    torch.manual_seed(0)
    learner = build_learner(spec=LearnerSpec(algorithm=algorithm, conv_width=16))
    before = _score(learner, data)
    _train(learner, data, steps=TRAINING_STEPS[algorithm])
    gain, interval = paired_difference(_score(learner, data).accuracies, before.accuracies)
    assert gain - interval > MARGIN, (gain, interval)


def test_second_order_maml_differs_from_first_order(data: SplitData) -> None:
    torch.manual_seed(0)
    learner = build_learner(spec=LearnerSpec(conv_width=8))
    episode = EpisodeSampler(data.train, n_way=5, k_shot=1, q_queries=2, seed=0).sample()
    grads = []
    for first_order in (True, False):
        outcome = maml_episode(
            learner=learner,
            support_images=episode.support_images,
            support_labels=episode.support_labels,
            query_images=episode.query_images,
            query_labels=episode.query_labels,
            steps=2,
            lr=0.1,
            first_order=first_order,
        )
        grads.append(torch.autograd.grad(outcome.loss, learner.backbone.blocks[0].weight)[0])
    assert not torch.allclose(grads[0], grads[1])


def test_evaluation_is_repeatable_leaves_the_learner_unchanged_and_reports_its_interval(data: SplitData) -> None:
    torch.manual_seed(0)
    learner = build_learner(spec=LearnerSpec(conv_width=8))
    before = copy.deepcopy(learner.state_dict())
    first = evaluate_fewshot(learner=learner, data=data.val, n_way=5, k_shot=1, episodes=6, q_queries=3, seed=1, steps=2)
    second = evaluate_fewshot(learner=learner, data=data.val, n_way=5, k_shot=1, episodes=6, q_queries=3, seed=1, steps=2)
    assert first == second
    assert all(torch.equal(before[k], v) for k, v in learner.state_dict().items())
    accuracies = torch.tensor(first.accuracies, dtype=torch.float64)
    assert first.ci95 == pytest.approx(1.96 * float(accuracies.std(unbiased=False)) / 6**0.5)
    assert first.bn_mode == "batch" and first.method == "finetune" and first.n_episodes == 6


def test_a_head_of_another_width_starts_from_zeros_and_leaves_the_learners_head_untouched(data: SplitData) -> None:
    torch.manual_seed(0)
    learner = build_learner(spec=LearnerSpec(conv_width=8, n_way=5))
    head = copy.deepcopy(learner.head.state_dict())
    images, labels = data.val.as_float()[:6], torch.arange(6) % 3
    unadapted = adapt_parameters(learner=learner, images=images, labels=labels, steps=0, lr=0.1, n_way=3, create_graph=False)
    torch.testing.assert_close(functional_call(learner, unadapted, (images,)), torch.zeros(6, 3), rtol=0, atol=0)
    # Uniform logits tie on every query and argmax takes the first class: a third of a balanced 3-way episode.
    untrained = evaluate_fewshot(learner=learner, data=data.val, n_way=3, k_shot=1, episodes=4, q_queries=2, seed=0, steps=0)
    assert untrained.n_way == 3 and untrained.accuracies == pytest.approx((1 / 3,) * 4)
    adapted = evaluate_fewshot(learner=learner, data=data.val, n_way=3, k_shot=1, episodes=4, q_queries=2, seed=0, steps=2)
    assert adapted.accuracies != untrained.accuracies
    assert learner.head.out_features == 5
    assert all(torch.equal(head[name], value) for name, value in learner.head.state_dict().items())


def test_task_logits_of_a_maml_learner_are_prototype_logits_that_leave_the_head_alone() -> None:
    learner = build_learner(spec=LearnerSpec(conv_width=8, n_way=5))
    images, labels = torch.rand(12, 3, 32, 32), torch.arange(12) % 6
    logits = task_logits(learner=learner, images=images, labels=labels, num_classes=6)
    features = learner.features(images)
    prototypes = torch.stack([features[labels == c].mean(dim=0) for c in range(6)])
    torch.testing.assert_close(logits, -torch.cdist(features, prototypes).pow(2))
    logits.logsumexp(dim=1).sum().backward()
    assert learner.head.weight.grad is None and learner.head.bias.grad is None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in learner.backbone.parameters())


def test_saved_learner_loads_back_identically(tmp_path: Path) -> None:
    learner = build_learner(spec=LearnerSpec(conv_width=8, algorithm="protonet"))
    save_learner(learner=learner, directory=tmp_path / "learner", extra={"iteration": 3})
    loaded = load_learner(directory=tmp_path / "learner")
    images = torch.rand(4, 3, 32, 32)
    assert loaded.spec == learner.spec
    torch.testing.assert_close(loaded.features(images), learner.features(images))
    with pytest.raises(CheckpointError):
        load_learner(directory=tmp_path / "missing")


def test_a_timm_backbone_works_as_feature_extractor_with_batch_statistics() -> None:
    spec = LearnerSpec(backbone="timm:resnet10t", backbone_args={"stem_width": 8, "channels": (8, 16, 16, 16)})
    learner = build_learner(spec=spec)
    images = torch.rand(5, 3, 32, 32)
    assert learner(images).shape == (5, 5)
    learner.eval()
    # Batch statistics in eval mode too: the same image normalises differently in another batch.
    assert not torch.allclose(learner(images)[:1], learner(torch.cat([images[:1], torch.rand(4, 3, 32, 32)]))[:1])


def test_unknown_backbones_and_algorithms_are_config_errors() -> None:
    with pytest.raises(ConfigError):
        build_learner(spec=LearnerSpec(backbone="vgg"))
    with pytest.raises(ConfigError):
        build_learner(spec=LearnerSpec(algorithm="reptile"))
    with pytest.raises(ConfigError):
        build_learner(spec=LearnerSpec(backbone="timm:no_such_model_anywhere"))
