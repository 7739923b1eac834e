"""FIVE: fast inversion of teachers into tasks with a meta-learned generator.

Per teacher, a copy of the meta-generator and a fresh latent batch take ``steps`` Adam steps on

    CE(teacher(aug(x)), y) + adv_weight * adversarial + bn_weight * BN-statistics prior,

with ``y`` cycling over the teacher's classes, plus the optional priors (total variation, L2) and a
diversity term (the same-class cosine similarity of the teacher's features at its head input). The
adversarial term is minus the true KL between teacher and the current meta-learner on the samples
where they agree (the learner's parameters receive no gradient; the images do), which pushes
recovered images to where the learner is still wrong. The BN prior (DeepInversion) matches each teacher BatchNorm layer's batch statistics to its
running statistics; it is off in the paper and does not exist for teachers without BatchNorm.

With ``latent_pool`` P > 1 the latent batch is not a plain draw: each image starts from the one of P
candidate codes per image whose picture the teacher already gives that image's label the highest
probability. The images of the last inner step are the recovered task. The meta-generator then moves by
first-order MAML (the last inner step's gradient, taken at the adapted parameters) or Reptile
(towards the adapted parameters), averaged over the meta-batch, through an outer Adam optimizer
that lives as long as the meta-generator (the released code re-created it every epoch).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from freehub.errors import ConfigError
from freehub.free.losses import accuracy, kl_divergence
from freehub.task_model import TaskModel

META_RULES = ("fomaml", "reptile")
# ITU-R BT.601 weights: the RGB-to-grey map TaskModel.preprocess applies for one-channel networks.
_LUMINANCE = (0.299, 0.587, 0.114)

Adversary = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""``(images, target labels, num_classes) -> learner logits`` over a teacher's classes."""


@dataclass(frozen=True)
class InversionSettings:
    """The knobs of one teacher's fast inversion (see :class:`freehub.free.config.MetaTrainConfig`)."""

    steps: int = 5
    images_per_task: int = 50
    lr: float = 1e-3
    lr_z: float = 1e-3
    betas: tuple[float, float] = (0.5, 0.999)
    adv_weight: float = 1.0
    bn_weight: float = 0.0
    aug_shift: float = 0.125
    aug_flip: bool = False
    aug_rotate: float = 0.0
    aug_scale: float = 0.0
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    adv_temperature: float = 1.0
    adv_cap: float = 1.0
    diversity_weight: float = 0.0
    latent_pool: int = 1


@dataclass
class RecoveredTask:
    """One teacher inverted into a labelled image batch."""

    images: torch.Tensor
    labels: torch.Tensor
    teacher_accuracy: float
    loss: float
    bn_loss: float | None
    seconds: float
    predictions: torch.Tensor | None = None
    teacher_accuracy_clean: float = float("nan")


def augment(images: torch.Tensor, *, shift: float, flip: bool, rotate: float = 0.0, scale: float = 0.0) -> torch.Tensor:
    """Differentiable random translation by up to ``shift`` of the image width, rotation by up to
    ``rotate`` degrees, zoom by a factor in ``1 +/- scale``, and optional h-flip.

    Teachers see augmented views so that the generator cannot satisfy them with brittle,
    pixel-exact patterns (the same pose variation a real image of the class has); one
    ``grid_sample`` keeps the whole batch differentiable.
    """
    count = images.shape[0]
    device, dtype = images.device, images.dtype
    angle = (torch.rand(count, device=device, dtype=dtype) * 2 - 1) * math.radians(rotate)
    zoom = 1.0 + (torch.rand(count, device=device, dtype=dtype) * 2 - 1) * scale
    theta = torch.zeros(count, 2, 3, device=device, dtype=dtype)
    theta[:, 0, 0] = torch.cos(angle) / zoom
    theta[:, 0, 1] = -torch.sin(angle) / zoom
    theta[:, 1, 0] = torch.sin(angle) / zoom
    theta[:, 1, 1] = torch.cos(angle) / zoom
    if flip:
        theta[:, 0, :2] *= torch.where(torch.rand(count, device=device) < 0.5, -1.0, 1.0).to(dtype).unsqueeze(1)
    theta[:, :, 2] = (torch.rand(count, 2, device=device, dtype=dtype) * 2 - 1) * 2 * shift
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def cycling_labels(*, count: int, num_classes: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``0, 1, .., C-1, 0, 1, ..``: ``count`` targets spread evenly over a teacher's classes."""
    return torch.arange(count, device=device) % num_classes


class BatchNormPrior:
    """Forward hooks on a teacher's BatchNorm layers that measure DeepInversion's statistics loss.

    After a forward pass, :meth:`loss` is the sum over layers of ``||mean - running_mean||`` plus
    ``||var - running_var||`` of the layer's input batch. Use as a context manager.
    """

    def __init__(self, teacher: nn.Module) -> None:
        self._layers = [m for m in teacher.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None]
        self._handles: list[Any] = []
        self._terms: list[torch.Tensor] = []

    def __enter__(self) -> BatchNormPrior:
        self._handles = [layer.register_forward_hook(self._hook) for layer in self._layers]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @property
    def active(self) -> bool:
        return bool(self._layers)

    @property
    def num_layers(self) -> int:
        return len(self._layers)

    def reset(self) -> None:
        self._terms = []

    def loss(self) -> torch.Tensor:
        """The summed statistics distance of the last forward pass."""
        if not self._terms:
            raise RuntimeError("no BatchNorm statistics recorded: run the teacher inside the context first")
        return torch.stack(self._terms).sum()

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        features = inputs[0]
        dims = [0] + list(range(2, features.dim()))
        mean = features.mean(dim=dims)
        var = features.var(dim=dims, unbiased=False)
        self._terms.append(torch.linalg.vector_norm(mean - module.running_mean) + torch.linalg.vector_norm(var - module.running_var))


class HeadInput:
    """A forward hook on a teacher's classification layer that keeps what it was given: the
    teacher's own image features, whatever its architecture. Inactive when the spec names no head."""

    def __init__(self, teacher: TaskModel) -> None:
        names = {name.rsplit(".", 1)[0] for name in teacher.spec.head_names if "." in name}
        self._module = teacher.network.get_submodule(names.pop()) if len(names) == 1 else None
        self._handle: Any = None
        self.features: torch.Tensor | None = None

    def __enter__(self) -> HeadInput:
        if self._module is not None:
            self._handle = self._module.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def _hook(self, module: nn.Module, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        self.features = inputs[0].flatten(1)


def same_class_similarity(*, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between the features of different images with the same label.

    Minimising it spreads a class's images over the teacher's feature space instead of letting
    them collapse onto one pattern the teacher is sure about (a light form of CMI's contrastive term).
    """
    unit = F.normalize(features, dim=1)
    similarity = unit @ unit.t()
    pairs = (labels.unsqueeze(0) == labels.unsqueeze(1)) & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    if not pairs.any():
        return similarity.new_zeros(())
    return similarity[pairs].mean()


def teacher_view(images: torch.Tensor, *, teacher: TaskModel) -> torch.Tensor:
    """``images`` as ``teacher`` perceives them, still RGB: grey (luminance) for a one-channel teacher.

    A one-channel teacher reads only the luminance of an RGB image, so colour it never saw is
    unconstrained noise. Recovered images, the adversary and the memory all use this view, so the
    learner is never taught a signal that no teacher vouched for.
    """
    if teacher.spec.input_size[0] != 1 or images.shape[1] != 3:
        return images
    grey = (images * images.new_tensor(_LUMINANCE).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return grey.expand(-1, 3, -1, -1)


def total_variation(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between neighbouring pixels (anisotropic L1 total variation)."""
    return (images[..., 1:, :] - images[..., :-1, :]).abs().mean() + (images[..., :, 1:] - images[..., :, :-1]).abs().mean()


def _inversion_loss(
    *,
    images: torch.Tensor,
    labels: torch.Tensor,
    teacher: TaskModel,
    settings: InversionSettings,
    prior: BatchNormPrior,
    adversary: Adversary | None,
    head: HeadInput | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The inversion objective of one step; returns (loss, teacher logits, BN distance or None)."""
    views = augment(images, shift=settings.aug_shift, flip=settings.aug_flip, rotate=settings.aug_rotate, scale=settings.aug_scale)
    prior.reset()
    teacher_logits = teacher(views)
    loss = F.cross_entropy(teacher_logits, labels)
    if settings.diversity_weight > 0 and head is not None and head.features is not None:
        loss = loss + settings.diversity_weight * same_class_similarity(features=head.features, labels=labels)
    bn_loss = prior.loss() if prior.active else None
    if settings.bn_weight > 0 and bn_loss is not None:
        loss = loss + settings.bn_weight * bn_loss
    if settings.tv_weight > 0:
        loss = loss + settings.tv_weight * total_variation(images)
    if settings.l2_weight > 0:
        # Towards mid-grey: keeps pixels off the sigmoid's flat ends where gradients vanish.
        loss = loss + settings.l2_weight * (images - 0.5).pow(2).mean()
    if adversary is not None and settings.adv_weight > 0:
        learner_logits = adversary(views, labels, teacher.num_classes)
        agree = (learner_logits.argmax(dim=1) == teacher_logits.argmax(dim=1)).float()
        divergence = kl_divergence(teacher_logits=teacher_logits, learner_logits=learner_logits, temperature=settings.adv_temperature)
        # Capped per sample: once an image is far from the learner's view, pushing further only
        # breaks what the teacher recognises in it.
        loss = loss - settings.adv_weight * (divergence.clamp(max=settings.adv_cap) * agree).mean()
    return loss, teacher_logits, bn_loss


def recover_task(
    *,
    generator: nn.Module,
    teacher: TaskModel,
    settings: InversionSettings,
    adversary: Adversary | None = None,
) -> tuple[RecoveredTask, list[torch.Tensor]]:
    """Adapt ``generator`` in place to ``teacher`` for ``settings.steps`` steps from a fresh latent batch.

    Pass a copy to keep the original. Returns the recovered task (images of the last step, in the
    teacher's own channel view) and the last step's gradient with respect to the generator's
    parameters (first-order MAML's meta-gradient). The teacher and the adversary receive no
    parameter gradients.
    """
    if settings.steps < 1:
        raise ConfigError("inversion needs at least one step")
    start = time.perf_counter()
    device = next(generator.parameters()).device
    labels = cycling_labels(count=settings.images_per_task, num_classes=teacher.num_classes, device=device)
    generator.train()
    teacher.eval()
    z = _starting_latents(generator=generator, teacher=teacher, labels=labels, pool=settings.latent_pool, device=device).requires_grad_(True)
    params = list(generator.parameters())
    optimizer = torch.optim.Adam(
        [{"params": params}, {"params": [z], "lr": settings.lr_z}], lr=settings.lr, betas=settings.betas
    )
    with BatchNormPrior(teacher) as prior, HeadInput(teacher) as head:
        for _ in range(settings.steps):
            images = teacher_view(generator(z), teacher=teacher)
            loss, teacher_logits, bn_loss = _inversion_loss(
                images=images, labels=labels, teacher=teacher, settings=settings, prior=prior, adversary=adversary, head=head
            )
            grads = torch.autograd.grad(loss, params + [z])
            for tensor, grad in zip(params + [z], grads):
                tensor.grad = grad
            optimizer.step()
    task = _recovered(images=images, labels=labels, teacher_logits=teacher_logits, loss=loss, bn_loss=bn_loss, start=start)
    return task, [grad.detach() for grad in grads[: len(params)]]


def _starting_latents(*, generator: nn.Module, teacher: TaskModel, labels: torch.Tensor, pool: int, device: torch.device) -> torch.Tensor:
    """Latent codes to start the inversion from: one fresh code per image, or (``pool > 1``) for each
    image the code among ``pool`` times as many candidates whose image the teacher already gives
    the image's label the highest probability (each candidate used once).

    Choosing takes ``pool`` forward passes of an inversion-sized batch and no backward (on the CPU
    default generator, pool 8 costs about as much as three or four inversion steps), and it moves each image
    farther than a few small gradient steps can: it lets the generator's prior do the work when the
    prior already draws images of the teacher's classes.
    """
    count = len(labels)
    if pool <= 1:
        return generator.sample_latent(count=count, device=device)
    candidates = generator.sample_latent(count=count * pool, device=device)
    # In batches of the inversion's own size: memory stays that of one step, and the generator's
    # BatchNorm sees batches like the ones it will be adapted on.
    with torch.no_grad():
        scores = torch.cat([
            F.log_softmax(teacher(teacher_view(generator(chunk), teacher=teacher)), dim=1) for chunk in candidates.split(count)
        ])
    chosen = torch.empty(count, dtype=torch.long, device=device)
    free = torch.ones(len(candidates), dtype=torch.bool, device=device)
    for label in range(teacher.num_classes):
        slots = torch.nonzero(labels == label).flatten()
        ranked = scores[:, label].masked_fill(~free, -math.inf).topk(len(slots)).indices
        chosen[slots] = ranked
        free[ranked] = False
    return candidates[chosen].clone()


def recover_pixels(
    *,
    teacher: TaskModel,
    settings: InversionSettings,
    image_size: int,
    device: torch.device | str = "cpu",
    adversary: Adversary | None = None,
) -> RecoveredTask:
    """DeepInversion / PURER-style recovery: optimise the images themselves, from noise, for ``settings.steps`` steps.

    Nothing is shared between teachers: every call starts from fresh random pixels (through the
    global torch RNG). Pixels live in logit space so that images stay in ``[0, 1]``; ``settings.lr``
    is their Adam step size. Use the priors (``bn_weight``, ``tv_weight``, ``l2_weight``) to keep
    the images away from adversarial noise.
    """
    if settings.steps < 1:
        raise ConfigError("inversion needs at least one step")
    start = time.perf_counter()
    labels = cycling_labels(count=settings.images_per_task, num_classes=teacher.num_classes, device=device)
    logits = (torch.randn(settings.images_per_task, 3, image_size, image_size, device=device) * 0.5).requires_grad_(True)
    optimizer = torch.optim.Adam([logits], lr=settings.lr, betas=settings.betas)
    teacher.eval()
    with BatchNormPrior(teacher) as prior, HeadInput(teacher) as head:
        for _ in range(settings.steps):
            images = teacher_view(torch.sigmoid(logits), teacher=teacher)
            loss, teacher_logits, bn_loss = _inversion_loss(
                images=images, labels=labels, teacher=teacher, settings=settings, prior=prior, adversary=adversary, head=head
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return _recovered(images=images, labels=labels, teacher_logits=teacher_logits, loss=loss, bn_loss=bn_loss, start=start)


def _recovered(
    *, images: torch.Tensor, labels: torch.Tensor, teacher_logits: torch.Tensor, loss: torch.Tensor, bn_loss: torch.Tensor | None, start: float
) -> RecoveredTask:
    return RecoveredTask(
        images=images.detach(),
        labels=labels,
        teacher_accuracy=accuracy(logits=teacher_logits.detach(), labels=labels),
        loss=float(loss.detach()),
        bn_loss=None if bn_loss is None else float(bn_loss.detach()),
        seconds=time.perf_counter() - start,
    )


def recover_from_scratch(
    *,
    teacher: TaskModel,
    settings: InversionSettings,
    make_generator: Callable[[], nn.Module],
    device: torch.device | str = "cpu",
    adversary: Adversary | None = None,
) -> RecoveredTask:
    """BiDf-MKD-style recovery: a freshly initialised generator per teacher, trained ``settings.steps`` steps.

    ``make_generator`` builds it (e.g. :meth:`MetaTrainConfig.make_generator`) from the global torch
    RNG inside this call; it is dropped afterwards, so no state carries from one teacher to the next.
    """
    generator = make_generator().to(device)
    task, _ = recover_task(generator=generator, teacher=teacher, settings=settings, adversary=adversary)
    return task


class MetaGenerator:
    """The meta-generator ``θ_G`` and its persistent outer optimizer."""

    def __init__(self, *, generator: nn.Module, settings: InversionSettings, meta_rule: str = "fomaml", meta_lr: float = 1e-3) -> None:
        if meta_rule not in META_RULES:
            raise ConfigError(f"unknown generator meta rule {meta_rule!r}; choose one of {META_RULES}")
        self.generator = generator
        self.settings = settings
        self.meta_rule = meta_rule
        self.optimizer = torch.optim.Adam(generator.parameters(), lr=meta_lr, betas=settings.betas)

    def recover(self, *, teachers: Sequence[TaskModel], adversary: Adversary | None = None) -> list[RecoveredTask]:
        """Invert every teacher from the current ``θ_G``, then take one meta-step averaged over them."""
        if not teachers:
            raise ConfigError("a meta-batch needs at least one teacher")
        tasks: list[RecoveredTask] = []
        meta_grads = self.zero_gradient()
        for teacher in teachers:
            task, update = self.adapt(teacher=teacher, adversary=adversary)
            tasks.append(task)
            for total, part in zip(meta_grads, update):
                total.add_(part, alpha=1.0 / len(teachers))
        self.step(gradient=meta_grads)
        return tasks

    def zero_gradient(self) -> list[torch.Tensor]:
        """Zeros shaped like ``θ_G``: where a meta-batch's updates are summed."""
        return [torch.zeros_like(p) for p in self.generator.parameters()]

    def adapt(self, *, teacher: TaskModel, adversary: Adversary | None = None) -> tuple[RecoveredTask, list[torch.Tensor]]:
        """Invert one teacher from a copy of ``θ_G``; returns its task and its meta-update direction
        (``θ_G`` itself is not changed: :meth:`step` applies the meta-batch's mean)."""
        fast = copy.deepcopy(self.generator)
        task, last_grads = recover_task(generator=fast, teacher=teacher, settings=self.settings, adversary=adversary)
        if self.meta_rule == "fomaml":
            return task, last_grads
        # Reptile: the "gradient" points from the adapted parameters back to θ_G.
        return task, [slow.detach() - quick.detach() for slow, quick in zip(self.generator.parameters(), fast.parameters())]

    def step(self, *, gradient: Sequence[torch.Tensor]) -> None:
        """One outer step of ``θ_G`` along ``gradient`` (the meta-batch's mean update)."""
        for param, grad in zip(self.generator.parameters(), gradient):
            param.grad = grad
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.optimizer.load_state_dict(state["optimizer"])


def bn_statistics_distance(*, teacher: TaskModel, images: torch.Tensor) -> float:
    """Mean over a teacher's BatchNorm layers of the DeepInversion distance for ``images``.

    A quality score for recovered images that needs no real data: real images of the teacher's
    classes give small distances, noise and degenerate images large ones. ``nan`` without BatchNorm.
    """
    with torch.no_grad(), BatchNormPrior(teacher) as prior:
        if not prior.active:
            return math.nan
        teacher(images)
        return float(prior.loss()) / prior.num_layers
