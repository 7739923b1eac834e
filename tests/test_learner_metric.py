"""The learner's prototype metric: cosine scores, the spec field, and how a run decides it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from freehub.errors import ConfigError
from freehub.free.config import MetaTrainConfig
from freehub.free.episodic import COSINE_SCALE, prototype_logits, protonet_episode
from freehub.free.fewshot import evaluate_fewshot
from freehub.free.learners import LearnerSpec, build_learner, load_learner, save_learner


def _episode(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    support = torch.randn(10, 16, generator=generator)
    labels = torch.arange(5).repeat(2)
    queries = torch.randn(7, 16, generator=generator)
    return support, labels, queries


def test_cosine_scores_are_the_scaled_cosine_to_the_mean_of_the_unit_support_features() -> None:
    support, labels, queries = _episode()
    logits = prototype_logits(support_features=support, support_labels=labels, query_features=queries, n_way=5, metric="cosine")
    unit = F.normalize(support, dim=1)
    prototypes = torch.stack([unit[labels == c].mean(dim=0) for c in range(5)])
    expected = COSINE_SCALE * F.cosine_similarity(queries.unsqueeze(1), prototypes.unsqueeze(0), dim=2)
    torch.testing.assert_close(logits, expected)


def test_cosine_scores_ignore_the_length_of_every_feature_vector() -> None:
    support, labels, queries = _episode()
    lengths = torch.rand(10, 1) * 50 + 0.1
    plain = prototype_logits(support_features=support, support_labels=labels, query_features=queries, n_way=5, metric="cosine")
    stretched = prototype_logits(support_features=support * lengths, support_labels=labels, query_features=queries * 3.0, n_way=5, metric="cosine")
    torch.testing.assert_close(plain, stretched)


def test_euclidean_scores_stay_the_negative_squared_distance_to_the_class_mean() -> None:
    support, labels, queries = _episode()
    logits = prototype_logits(support_features=support, support_labels=labels, query_features=queries, n_way=5)
    prototypes = torch.stack([support[labels == c].mean(dim=0) for c in range(5)])
    torch.testing.assert_close(logits, -torch.cdist(queries, prototypes).pow(2))


def test_a_protonet_episode_scores_by_the_learners_metric(glyph_data) -> None:
    torch.manual_seed(0)
    learner = build_learner(spec=LearnerSpec(algorithm="protonet", metric="cosine"))
    images, labels = glyph_data.train.images[:20], torch.arange(5).repeat(4)
    outcome = protonet_episode(learner=learner, support_images=images[:10], support_labels=labels[:10], query_images=images[10:], query_labels=labels[10:])
    with torch.no_grad():
        features = learner.features(images)
        expected = {
            metric: F.cross_entropy(
                prototype_logits(support_features=features[:10], support_labels=labels[:10], query_features=features[10:], n_way=5, metric=metric),
                labels[10:],
            )
            for metric in ("cosine", "euclidean")
        }
    assert float(outcome.loss.detach()) == pytest.approx(float(expected["cosine"]), rel=1e-5)
    assert float(expected["euclidean"]) != pytest.approx(float(expected["cosine"]), rel=1e-2)


def test_evaluation_scores_by_the_learners_metric(glyph_data) -> None:
    torch.manual_seed(0)
    euclidean = build_learner(spec=LearnerSpec(algorithm="protonet"))
    cosine = build_learner(spec=LearnerSpec(algorithm="protonet", metric="cosine"))
    cosine.load_state_dict(euclidean.state_dict())
    scores = {
        name: evaluate_fewshot(learner=learner, data=glyph_data.test, n_way=5, k_shot=1, episodes=30, seed=0).accuracies
        for name, learner in (("euclidean", euclidean), ("cosine", cosine))
    }
    # The same weights on the same episodes: only the metric can make any episode score differently.
    assert scores["euclidean"] != scores["cosine"]


def test_a_saved_learner_keeps_its_metric(tmp_path: Path) -> None:
    learner = build_learner(spec=LearnerSpec(algorithm="protonet", metric="cosine"))
    assert load_learner(directory=save_learner(learner=learner, directory=tmp_path / "learner")).spec.metric == "cosine"


def test_a_spec_saved_before_the_metric_existed_is_euclidean() -> None:
    data = LearnerSpec(algorithm="protonet").to_dict()
    del data["metric"]
    assert LearnerSpec.from_dict(data).metric == "euclidean"


def test_an_unknown_metric_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="metric"):
        LearnerSpec(metric="manhattan").validate()
    with pytest.raises(ConfigError, match="learner_metric"):
        MetaTrainConfig(learner_metric="manhattan").validate()


@pytest.mark.parametrize(
    ("overrides", "metric"),
    [
        ({}, "euclidean"),
        ({"prior_distill_steps": 100}, "cosine"),
        ({"prior_distill_steps": 100, "recovery": "real"}, "euclidean"),
        ({"prior_distill_steps": 100, "learner_metric": "euclidean"}, "euclidean"),
        ({"learner_metric": "cosine"}, "cosine"),
    ],
)
def test_auto_means_cosine_when_prior_distillation_teaches_the_learner(overrides: dict, metric: str) -> None:
    assert MetaTrainConfig(**overrides).learner_spec().metric == metric
