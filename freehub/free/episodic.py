"""Episodic learning rules: MAML (first or second order) and ProtoNet, plus how a learner reads a teacher's task.

Distilling from a teacher with ``C`` classes (the BELL alignment step and FIVE's adversarial term)
uses the episodic formulation: a teacher's task *is* a ``C``-way episode whose labels are the
teacher's own class order, and the learner's logits over it are negative squared distances to the
prototypes of the task's own images, grouped by their target labels. For ProtoNet that is its own
rule. For MAML it is a prototype-initialised head (rows ``2c_k``, biases ``-|c_k|^2`` give the same
softmax): MAML's meta-learned head is meant for arbitrary label orders, because every replay episode
relabels its classes at random, so tying teacher class ``i`` to head row ``i`` would pull each row
towards unrelated classes from one step to the next. Distillation therefore shapes the features only.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from freehub.errors import ConfigError
from freehub.free.learners import MetaLearner
from freehub.free.losses import accuracy

# The temperature of cosine prototype scores: a cosine in [-1, 1] times 10 lets a softmax over them
# be confident (Gidaris & Komodakis 2018 and Chen et al. 2019 use scales of this order).
COSINE_SCALE = 10.0


@dataclass(frozen=True)
class EpisodeOutcome:
    """Query loss (differentiable) and query accuracy of one episode."""

    loss: torch.Tensor
    accuracy: float


def adapt_parameters(
    *,
    learner: MetaLearner,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    lr: float,
    n_way: int,
    create_graph: bool,
) -> dict[str, torch.Tensor]:
    """Parameters after ``steps`` SGD steps on the cross-entropy of ``images`` (MAML's inner loop).

    ``create_graph=True`` keeps the graph for second-order MAML; otherwise the adapted tensors are
    cut from the meta-parameters except through the final additive update (first-order MAML).
    A head whose width is not ``n_way`` starts from zeros at ``n_way`` outputs, so a learner can be
    evaluated on episodes of another width.
    """
    params = dict(learner.named_parameters())
    if learner.head is None:
        raise ConfigError("adapt_parameters needs a learner with a head (algorithm 'maml')")
    if learner.head.out_features != n_way:
        params["head.weight"] = images.new_zeros(n_way, learner.feature_dim, requires_grad=True)
        params["head.bias"] = images.new_zeros(n_way, requires_grad=True)
    for _ in range(steps):
        logits = functional_call(learner, params, (images,))
        loss = F.cross_entropy(logits, labels)
        names = [name for name, value in params.items() if value.requires_grad]
        grads = torch.autograd.grad(loss, [params[name] for name in names], create_graph=create_graph, allow_unused=True)
        for name, grad in zip(names, grads):
            if grad is not None:
                params[name] = params[name] - lr * grad
    return params


def maml_episode(
    *,
    learner: MetaLearner,
    support_images: torch.Tensor,
    support_labels: torch.Tensor,
    query_images: torch.Tensor,
    query_labels: torch.Tensor,
    steps: int,
    lr: float,
    first_order: bool,
) -> EpisodeOutcome:
    """One MAML episode: adapt on the support set, return the query loss at the adapted parameters."""
    n_way = int(support_labels.max()) + 1
    params = adapt_parameters(
        learner=learner, images=support_images, labels=support_labels, steps=steps, lr=lr, n_way=n_way, create_graph=not first_order
    )
    logits = functional_call(learner, params, (query_images,))
    return EpisodeOutcome(loss=F.cross_entropy(logits, query_labels), accuracy=accuracy(logits=logits, labels=query_labels))


def prototype_logits(
    *, support_features: torch.Tensor, support_labels: torch.Tensor, query_features: torch.Tensor, n_way: int, metric: str = "euclidean"
) -> torch.Tensor:
    """Each query's score for each class: the negative squared Euclidean distance to the class mean of
    the support features, or (``metric="cosine"``) ``COSINE_SCALE`` times the cosine similarity to the
    class mean of the unit support features."""
    if metric == "cosine":
        support_features, query_features = F.normalize(support_features, dim=1), F.normalize(query_features, dim=1)
    one_hot = F.one_hot(support_labels, n_way).to(support_features.dtype)
    prototypes = one_hot.t() @ support_features / one_hot.sum(dim=0).clamp_min(1).unsqueeze(1)
    if metric == "cosine":
        return COSINE_SCALE * query_features @ F.normalize(prototypes, dim=1).t()
    return -torch.cdist(query_features, prototypes).pow(2)


def protonet_episode(
    *,
    learner: MetaLearner,
    support_images: torch.Tensor,
    support_labels: torch.Tensor,
    query_images: torch.Tensor,
    query_labels: torch.Tensor,
) -> EpisodeOutcome:
    """One ProtoNet episode; support and query share one batch so BatchNorm sees the whole episode."""
    n_way = int(support_labels.max()) + 1
    features = learner.features(torch.cat([support_images, query_images]))
    support_features, query_features = features[: len(support_images)], features[len(support_images) :]
    logits = prototype_logits(
        support_features=support_features, support_labels=support_labels, query_features=query_features, n_way=n_way, metric=learner.spec.metric
    )
    return EpisodeOutcome(loss=F.cross_entropy(logits, query_labels), accuracy=accuracy(logits=logits, labels=query_labels))


def task_logits(
    *, learner: nn.Module, images: torch.Tensor, labels: torch.Tensor, num_classes: int, scaled: bool = False
) -> torch.Tensor:
    """The learner's logits over a teacher's ``num_classes`` classes for images generated for ``labels``.

    Prototype logits on the learner's features for every algorithm (see the module docstring for
    why MAML's head is left out). ``scaled`` divides the squared distances by the feature dimension
    (a mean per feature): raw distances run to hundreds, so a divergence from a teacher's logits of a
    few units would mostly ask the learner to shrink its embedding rather than to order the classes
    as the teacher does.
    """
    features = learner.features(images)
    metric = learner.spec.metric
    logits = prototype_logits(support_features=features, support_labels=labels, query_features=features, n_way=num_classes, metric=metric)
    # Cosine scores are bounded already.
    return logits / features.shape[1] if scaled and metric == "euclidean" else logits
