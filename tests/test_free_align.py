"""BELL's alignment step against its derivation, and the KL it distils with."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from freehub.free.align import alignment_gradient
from freehub.free.losses import kl_divergence, relation_distance


class _Point(nn.Module):
    def __init__(self, theta: torch.Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.clone())


def _quadratic(seed: int, dim: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    root = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
    return root @ root.T + torch.eye(dim, dtype=torch.float64), torch.randn(dim, generator=generator, dtype=torch.float64)


def _loss(hessian: torch.Tensor, centre: torch.Tensor):
    # L(θ) = ½ (θ - c)ᵀ A (θ - c): gradient A(θ - c), Hessian A.
    return lambda model: 0.5 * (model.theta - centre) @ hessian @ (model.theta - centre)


def _setup(count: int) -> tuple[_Point, list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    theta = torch.randn(4, generator=torch.Generator().manual_seed(99), dtype=torch.float64)
    tasks = [_quadratic(seed) for seed in range(count)]
    grads = [hessian @ (theta - centre) for hessian, centre in tasks]
    return _Point(theta), tasks, grads


def test_two_tasks_match_first_order_expansion_exactly() -> None:
    model, tasks, (g1, g2) = _setup(2)
    alpha = 0.01
    (update,) = alignment_gradient(model=model, task_losses=[_loss(*t) for t in tasks], lr=alpha)
    hessian_2 = tasks[1][0]
    # Two SGD steps on quadratics: (θ - θ~)/α = g1 + g2 - α H2 g1, with no higher-order remainder.
    torch.testing.assert_close(update, g1 + g2 - alpha * hessian_2 @ g1, rtol=1e-10, atol=1e-10)


def test_three_tasks_match_the_full_polynomial() -> None:
    model, tasks, (g1, g2, g3) = _setup(3)
    _, (h2, _), (h3, _) = tasks
    alpha = 0.02
    (update,) = alignment_gradient(model=model, task_losses=[_loss(*t) for t in tasks], lr=alpha)
    expected = g1 + g2 + g3 - alpha * (h2 @ g1 + h3 @ g1 + h3 @ g2) + alpha**2 * h3 @ h2 @ g1
    torch.testing.assert_close(update, expected, rtol=1e-10, atol=1e-10)


def test_remainder_beyond_the_inner_product_term_is_second_order() -> None:
    model, tasks, (g1, g2, g3) = _setup(3)
    _, (h2, _), (h3, _) = tasks

    def remainder(alpha: float) -> float:
        (update,) = alignment_gradient(model=model, task_losses=[_loss(*t) for t in tasks], lr=alpha)
        first_order = g1 + g2 + g3 - alpha * (h2 @ g1 + h3 @ g1 + h3 @ g2)
        return float((update - first_order).norm())

    ratio = remainder(1e-3) / remainder(5e-4)
    assert 3.9 < ratio < 4.1


def test_averaged_over_orders_it_is_the_gradient_of_the_alignment_objective() -> None:
    model, tasks, _ = _setup(2)
    alpha = 0.05
    losses = [_loss(*t) for t in tasks]
    forward = alignment_gradient(model=model, task_losses=losses, lr=alpha)[0]
    backward = alignment_gradient(model=model, task_losses=losses[::-1], lr=alpha)[0]
    theta = model.theta.detach().clone().requires_grad_(True)
    point = SimpleNamespace(theta=theta)
    g1, g2 = (torch.autograd.grad(loss(point), theta, create_graph=True)[0] for loss in losses)
    objective = losses[0](point) + losses[1](point) - alpha / 2 * (g1 @ g2)
    (expected,) = torch.autograd.grad(objective, theta)
    torch.testing.assert_close((forward + backward) / 2, expected, rtol=1e-10, atol=1e-10)


def test_alignment_leaves_the_model_unchanged() -> None:
    model, tasks, _ = _setup(2)
    before = model.theta.detach().clone()
    alignment_gradient(model=model, task_losses=[_loss(*t) for t in tasks], lr=0.1)
    assert torch.equal(model.theta.detach(), before)


def test_kl_is_zero_for_identical_logits() -> None:
    logits = torch.randn(6, 5, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(kl_divergence(teacher_logits=logits, learner_logits=logits.clone()), torch.zeros(6), atol=1e-6)


def test_kl_is_positive_asymmetric_and_matches_its_definition() -> None:
    generator = torch.Generator().manual_seed(1)
    teacher, learner = torch.randn(6, 5, generator=generator), torch.randn(6, 5, generator=generator)
    value = kl_divergence(teacher_logits=teacher, learner_logits=learner)
    p, log_p, log_q = teacher.softmax(1), teacher.log_softmax(1), learner.log_softmax(1)
    torch.testing.assert_close(value, (p * (log_p - log_q)).sum(1))
    assert (value > 0).all()
    assert not torch.allclose(value, kl_divergence(teacher_logits=learner, learner_logits=teacher))


def test_relation_distance_compares_similarity_structure_across_widths() -> None:
    torch.manual_seed(0)
    teacher = torch.rand(10, 48)
    # The same geometry in another width (an orthogonal embedding plus scale) is at distance zero.
    rotation, _ = torch.linalg.qr(torch.randn(64, 64))
    same = 3.0 * torch.cat([teacher, torch.zeros(10, 16)], dim=1) @ rotation
    assert float(relation_distance(learner_features=same, teacher_features=teacher)) < 1e-10
    assert float(relation_distance(learner_features=torch.rand(10, 64), teacher_features=teacher)) > 1e-3
