"""Few-shot evaluation of a learner on N-way K-shot episodes of real images.

Adaptation follows the learner's own rule unless told otherwise: ``"finetune"`` (MAML) runs
``steps`` SGD steps at ``lr`` on the whole network from the learner's parameters (a head of another
width starts from zeros), ``"protonet"`` classifies queries by their nearest class prototype.
BatchNorm uses batch statistics for every learner (see :mod:`freehub.free.learners`): fine-tuning
normalises the support set while adapting and the query set when scoring; ProtoNet embeds support
and query in one batch. The interval is ``1.96 * std / sqrt(n)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch.func import functional_call

from freehub.data import EpisodeSampler, ImageSet
from freehub.errors import ConfigError
from freehub.free.episodic import adapt_parameters, prototype_logits
from freehub.free.learners import BN_MODE, MetaLearner
from freehub.free.losses import accuracy

METHODS = ("finetune", "protonet")


@dataclass(frozen=True)
class FewShotResult:
    """Mean query accuracy over episodes and its 95% interval half-width."""

    mean: float
    ci95: float
    n_episodes: int
    n_way: int
    k_shot: int
    q_queries: int
    method: str
    bn_mode: str
    accuracies: tuple[float, ...]

    def __str__(self) -> str:
        return f"{100 * self.mean:.2f} +/- {100 * self.ci95:.2f}% ({self.n_way}-way {self.k_shot}-shot, {self.n_episodes} episodes)"


def evaluate_fewshot(
    *,
    learner: MetaLearner,
    data: ImageSet,
    n_way: int,
    k_shot: int,
    episodes: int,
    q_queries: int = 15,
    seed: int = 0,
    method: str | None = None,
    steps: int = 10,
    lr: float = 0.01,
) -> FewShotResult:
    """Adapt ``learner`` to ``episodes`` episodes drawn from ``data`` and score their queries.

    ``learner`` is left unchanged. The episodes depend only on ``data`` and ``seed``, so two
    learners evaluated with the same arguments see the same episodes.
    """
    if episodes < 1:
        raise ConfigError("evaluation needs at least one episode")
    method = method or ("finetune" if learner.spec.algorithm == "maml" else "protonet")
    if method not in METHODS:
        raise ConfigError(f"unknown adaptation method {method!r}; choose one of {METHODS}")
    if method == "finetune" and learner.head is None:
        raise ConfigError("fine-tuning needs a learner with a head; use method='protonet'")
    sampler = EpisodeSampler(data, n_way=n_way, k_shot=k_shot, q_queries=q_queries, seed=seed)
    # A training-free reference learner may hold no tensors at all: it then runs on the CPU.
    device = next(itertools.chain(learner.parameters(), learner.buffers()), torch.empty(0)).device
    scores = []
    for _ in range(episodes):
        episode = sampler.sample()
        support_x, support_y = episode.support_images.to(device), episode.support_labels.to(device)
        query_x, query_y = episode.query_images.to(device), episode.query_labels.to(device)
        if method == "finetune":
            params = adapt_parameters(learner=learner, images=support_x, labels=support_y, steps=steps, lr=lr, n_way=n_way, create_graph=False)
            with torch.no_grad():
                logits = functional_call(learner, params, (query_x,))
        else:
            with torch.no_grad():
                features = learner.features(torch.cat([support_x, query_x]))
                logits = prototype_logits(
                    support_features=features[: len(support_x)], support_labels=support_y, query_features=features[len(support_x) :], n_way=n_way,
                    metric=learner.spec.metric,
                )
        scores.append(accuracy(logits=logits, labels=query_y))
    values = torch.tensor(scores, dtype=torch.float64)
    std = float(values.std(unbiased=False)) if len(scores) > 1 else 0.0
    return FewShotResult(
        mean=float(values.mean()),
        ci95=1.96 * std / math.sqrt(len(scores)),
        n_episodes=len(scores),
        n_way=n_way,
        k_shot=k_shot,
        q_queries=q_queries,
        method=method,
        bn_mode=BN_MODE,
        accuracies=tuple(scores),
    )
