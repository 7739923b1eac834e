"""BELL's implicit gradient alignment (Reptile / Fish style).

Copy the parameters ``θ`` to ``θ~``, take one plain SGD step of size ``α`` on ``θ~`` for each task
loss ``L_1 .. L_n`` in turn, and return ``g = (θ - θ~) / α``. Expanding each step to second order,

    g = Σ_i ∇L_i(θ) - α Σ_{i<j} H_j(θ) ∇L_i(θ) + O(α²),

whose expectation over random task orders is the gradient of
``Σ_i L_i(θ) - (α/2) Σ_{i<j} <∇L_i, ∇L_j>``: descending it lowers every task's loss *and* rewards
teachers whose gradients point the same way. For quadratic losses the expansion is a finite
polynomial in ``α`` (exact at two tasks), which the tests check numerically.

The steps are plain SGD on purpose: the derivation needs ``θ~`` to move by ``-α ∇L_i``. The
released FREE code uses Adam for the inner steps and multiplies ``θ - θ~`` by a fixed 67 (about
``1 / 0.015``); here ``α`` is the named ``align_lr`` and the ``1/α`` rescaling is explicit, so the
meta-gradient has the units of a gradient whatever ``α`` is. How strongly it moves the learner
relative to the replay gradient is the trainer's ``align_weight``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

import torch
from torch import nn


def alignment_gradient(*, model: nn.Module, task_losses: Sequence[Callable[[nn.Module], torch.Tensor]], lr: float) -> list[torch.Tensor]:
    """``(θ - θ~) / lr`` after one SGD step per task loss, in the given order, on a copy of ``model``.

    Each loss is a closure over its task's data that takes the model copy and returns a scalar.
    The result has one tensor per ``model.parameters()`` entry; ``model`` itself is not changed.
    """
    if lr <= 0:
        raise ValueError(f"alignment lr must be positive, got {lr}")
    fast = copy.deepcopy(model)
    fast_params = list(fast.parameters())
    for loss_fn in task_losses:
        loss = loss_fn(fast)
        grads = torch.autograd.grad(loss, fast_params, allow_unused=True)
        with torch.no_grad():
            for param, grad in zip(fast_params, grads):
                if grad is not None:
                    param.sub_(lr * grad)
    with torch.no_grad():
        return [(slow - quick) / lr for slow, quick in zip(model.parameters(), fast_params)]
