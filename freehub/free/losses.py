"""Distillation losses shared by FIVE (adversarial term) and BELL (alignment, relational replay)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_divergence(*, teacher_logits: torch.Tensor, learner_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Per-sample ``KL(teacher || learner)`` of the softened distributions, computed from log-probabilities.

    The released FREE code passes probabilities where ``F.kl_div`` expects log-probabilities, which
    is not a divergence at all; this is the true KL, zero exactly when the distributions agree.
    """
    teacher_log = F.log_softmax(teacher_logits / temperature, dim=1)
    learner_log = F.log_softmax(learner_logits / temperature, dim=1)
    return F.kl_div(learner_log, teacher_log, reduction="none", log_target=True).sum(dim=1)


def relation_distance(*, learner_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the learner's and the teacher's pairwise cosine similarities.

    Similarity-preserving distillation: it compares how alike two images are to each network, so
    embeddings of any widths compare and no projection per teacher is needed. A few-shot learner
    that classifies by distance to prototypes is taught the teachers' sense of which images belong
    together, not only the hard labels of their classes.
    """
    teacher_unit = F.normalize(teacher_features.flatten(1), dim=1)
    return similarity_distance(learner_features=learner_features, target=teacher_unit @ teacher_unit.t())


def similarity_distance(*, learner_features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the learner's pairwise cosine similarities and ``target`` (``B x B``)."""
    learner_unit = F.normalize(learner_features.flatten(1), dim=1)
    return (learner_unit @ learner_unit.t() - target).pow(2).mean()


def accuracy(*, logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of rows whose arg-max is the label."""
    return float((logits.argmax(dim=1) == labels).float().mean())
