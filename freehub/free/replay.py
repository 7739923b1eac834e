"""Replay: the learner's outer steps on episodes drawn from the task memory (BELL's second half).

Each outer step averages ``episodes_per_step`` episodes (shared among the ranks under torchrun),
shown through replay's view of memory images (colour jitter, optional random pose) so that an
episode cannot be solved by the style of the teacher that recovered a class; with
``relation_weight`` it also distils one teacher's pairwise feature similarities. Steps continue
until the mean query accuracy has not improved for ``patience`` steps (at most ``max_replay_steps``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from freehub.free.config import MetaTrainConfig
from freehub.free.distributed import World, derived_seed, seeded_torch
from freehub.free.episodic import EpisodeOutcome, maml_episode, protonet_episode
from freehub.free.inversion import HeadInput, augment
from freehub.free.learners import MetaLearner
from freehub.free.losses import relation_distance
from freehub.free.memory import TaskMemory
from freehub.free.views import colour_jitter, random_blur
from freehub.task_model import TaskModel


@dataclass(frozen=True)
class _Replay:
    learner: MetaLearner
    optimizer: torch.optim.Optimizer
    memory: TaskMemory
    iteration: int


def replay(
    *,
    learner: MetaLearner,
    optimizer: torch.optim.Optimizer,
    memory: TaskMemory,
    iteration: int,
    config: MetaTrainConfig,
    device: torch.device,
    world: World,
    relating: Sequence[tuple[str, TaskModel]] = (),
) -> dict[str, Any]:
    """Outer steps on memory episodes until the mean query accuracy stops improving.

    With ``relation_weight``, each step also distils one of ``relating`` (memory group, teacher) in
    turn: the learner's pairwise feature similarities on memory images of that teacher's classes
    are pulled towards the teacher's own.
    """
    per_class = config.k_shot + config.q_queries
    if not memory.can_sample(n_way=config.n_way, per_class=per_class):
        return {"replay_steps": 0}
    best_acc, stale, steps, accs, losses, relations = -1.0, 0, 0, [], [], []
    while stale < config.patience and steps < config.max_replay_steps:
        loss, acc, relation = _replay_step(
            run=_Replay(learner=learner, optimizer=optimizer, memory=memory, iteration=iteration), config=config, device=device,
            world=world, step=steps, relating=relating,
        )
        if relation is not None:
            relations.append(relation)
        accs.append(acc)
        losses.append(loss)
        if acc > best_acc:
            best_acc, stale = acc, 0
        else:
            stale += 1
        steps += 1
    summary = {"replay_steps": steps, "episode_acc": float(np.mean(accs)), "episode_loss": float(np.mean(losses)), "episode_acc_best": best_acc}
    if relations:
        summary["relation"] = float(np.mean(relations))
    return summary


def _relation_loss(
    *, run: _Replay, config: MetaTrainConfig, group: str, teacher: TaskModel, device: torch.device
) -> torch.Tensor | None:
    """Relational distillation of ``teacher`` on memory images it recovered, seen through replay's augmentation."""
    images = run.memory.sample_group(group=group, count=config.relation_images)
    if len(images) < 2:
        return None
    images = _replay_view(images=images, config=config).to(device)
    with torch.no_grad(), HeadInput(teacher) as head:
        teacher(images)
    if head.features is None:
        return None
    return relation_distance(learner_features=run.learner.features(images), teacher_features=head.features)


def _replay_view(*, images: torch.Tensor, config: MetaTrainConfig) -> torch.Tensor:
    """Memory images as replay shows them: colour jitter and random pose, when switched on."""
    if config.replay_colour_jitter:
        images = colour_jitter(images)
    if config.replay_pose > 0:
        images = augment(images, shift=0.1, flip=False, rotate=config.replay_pose, scale=config.replay_pose / 100)
    if config.replay_blur > 0:
        images = random_blur(images, max_sigma=config.replay_blur)
    if config.replay_noise > 0:
        # Per-image strength, so that the amount of noise cannot identify a teacher's images either.
        strength = torch.rand(images.shape[0], 1, 1, 1) * config.replay_noise
        images = (images + strength * torch.randn_like(images)).clamp(0.0, 1.0)
    return images


def _replay_step(
    *, run: _Replay, config: MetaTrainConfig, device: torch.device, world: World, step: int, relating: Sequence[tuple[str, TaskModel]]
) -> tuple[float, float, float | None]:
    """One outer step on ``episodes_per_step`` episodes, shared among the ranks, plus (rank 0) the
    relation term of one teacher; returns the step's loss, mean episode accuracy and relation term.

    Each episode and the relation term draw from their own seeded RNGs, so which rank computes
    them does not change them; the gradients are summed over ranks, so each term counts once.
    """
    episodes = config.episodes_per_step
    params = list(run.learner.parameters())
    run.optimizer.zero_grad(set_to_none=True)
    totals = torch.zeros(2, device=device)  # summed loss and accuracy
    for index in world.shard(count=episodes):
        with seeded_torch(seed=derived_seed(parts=(config.seed, run.iteration, "replay", step, index)), device=device):
            outcome = _episode(run=run, config=config, device=device)
        (outcome.loss / episodes).backward()
        totals += torch.tensor([float(outcome.loss.detach()), outcome.accuracy], device=device)
    relation = None
    if world.is_main and config.relation_weight > 0 and relating:
        group, teacher = relating[step % len(relating)]
        with seeded_torch(seed=derived_seed(parts=(config.seed, run.iteration, "relation", step)), device=device):
            term = _relation_loss(run=run, config=config, group=group, teacher=teacher, device=device)
        if term is not None:
            (config.relation_weight * term).backward()
            relation = float(term.detach())
    grads = [torch.zeros_like(p) if p.grad is None else p.grad for p in params]
    world.all_reduce_sum_(tensors=[*grads, totals])
    for param, grad in zip(params, grads):
        param.grad = grad
    run.optimizer.step()
    loss = float(totals[0]) / episodes + (0.0 if relation is None else config.relation_weight * relation)
    return loss, float(totals[1]) / episodes, relation


def _episode(*, run: _Replay, config: MetaTrainConfig, device: torch.device) -> EpisodeOutcome:
    group = None
    if config.replay_within_teacher > 0 and float(torch.rand(())) < config.replay_within_teacher:
        # All classes from one teacher: one style, so only the classes' content tells them apart.
        groups = run.memory.groups_with(n_way=config.n_way, per_class=config.k_shot + config.q_queries)
        group = groups[int(torch.randint(len(groups), ()))] if groups else None
    episode = run.memory.sample_episode(n_way=config.n_way, k_shot=config.k_shot, q_queries=config.q_queries, group=group)
    support, query = _replay_view(images=episode.support_images, config=config), _replay_view(images=episode.query_images, config=config)
    batch = {
        "support_images": support.to(device),
        "support_labels": episode.support_labels.to(device),
        "query_images": query.to(device),
        "query_labels": episode.query_labels.to(device),
    }
    if config.algorithm == "protonet":
        return protonet_episode(learner=run.learner, **batch)
    return maml_episode(learner=run.learner, steps=config.inner_steps, lr=config.inner_lr, first_order=config.first_order, **batch)
