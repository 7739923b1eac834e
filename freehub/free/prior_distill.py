"""Distil what the whole teacher ensemble knows into the learner, on samples of an image prior.

FREE teaches the learner through tasks recovered one teacher at a time; a teacher's own classes are
all it can vouch for. But every teacher also has a sense of which images look alike, and that sense
is shared knowledge of the domain: averaged over the ensemble, it tells unseen classes apart better
than any one teacher (``freehub evaluate --model teacher-ensemble``). This stage, run before FREE's
iterations, hands that sense to the learner with no data and no labels:

1. draw ``images`` samples of the image prior: freshly initialised generators of the run's kind
   (pen strokes, or the conv generator's textures), each drawing ``per_generator`` images from
   random latent codes;
2. visit the teachers one at a time and average their cosine similarities between the samples of
   each block of ``block`` images (the cosine of concatenated per-teacher unit features, so nothing
   per teacher is kept and a pool of any size fits);
3. train the learner for ``steps`` Adam steps to match those similarities
   (:func:`~freehub.free.losses.similarity_distance`) on random batches from one block at a time,
   each sample seen slightly moved, turned and scaled (``affine``) and through replay's colour jitter,
   while its targets stay the teachers' judgement of the sample as drawn.

On the glyph zoo, the ensemble's similarities on random pen strokes teach a Conv4 learner about as
much as the same distillation on real images of the teachers' classes (README, "prior distillation").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from freehub.errors import ConfigError
from freehub.free.distributed import seeded_torch
from freehub.free.inversion import HeadInput
from freehub.free.learners import MetaLearner
from freehub.free.losses import similarity_distance
from freehub.free.views import colour_jitter, random_affine
from freehub.task_model import TaskModel


@dataclass(frozen=True)
class PriorDistillSettings:
    """The knobs of the prior-distillation stage (see :class:`freehub.free.config.MetaTrainConfig`)."""

    steps: int = 1500
    images: int = 4000
    per_generator: int = 100
    block: int = 256
    batch: int = 64
    lr: float = 1e-3
    affine: float = 0.1

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first knob that cannot work."""
        for name in ("images", "per_generator", "block", "batch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"prior_distill_{name} must be at least 1, got {getattr(self, name)}")
        if self.steps < 0:
            raise ConfigError(f"prior_distill_steps cannot be negative, got {self.steps}")
        if self.batch < 2 or self.batch > self.block:
            raise ConfigError(f"prior_distill_batch must be in [2, prior_distill_block], got {self.batch} (block {self.block})")
        if self.images < self.block:
            raise ConfigError(f"prior_distill_images ({self.images}) must be at least one block ({self.block})")
        if self.lr <= 0:
            raise ConfigError(f"prior_distill_lr must be positive, got {self.lr}")
        if not 0 <= self.affine <= 0.5:
            raise ConfigError(f"prior_distill_affine must be in [0, 0.5], got {self.affine}")


@dataclass
class PriorDistillResult:
    """What the stage did: its losses at the start and end and where the time went."""

    images: int
    teachers: int
    loss_first: float
    loss_last: float
    sample_seconds: float
    teacher_seconds: float
    train_seconds: float


def sample_prior(*, make_generator: Callable[[], nn.Module], count: int, per_generator: int, seed: int) -> torch.Tensor:
    """``count`` images from freshly initialised generators, ``per_generator`` each, on the CPU.

    A new generator per group varies what one random network favours (pen widths, colours, layout).
    Generators run in training mode, as FIVE runs them: a fresh conv generator's BatchNorm running
    statistics would flatten every sample to the same grey."""
    images = []
    with seeded_torch(seed=seed, device=torch.device("cpu")), torch.no_grad():
        for start in range(0, count, per_generator):
            generator = make_generator().train()
            images.append(generator(generator.sample_latent(count=min(per_generator, count - start))))
    return torch.cat(images)


def ensemble_similarity(*, images: torch.Tensor, teachers: Iterable[TaskModel], block: int, device: torch.device) -> tuple[torch.Tensor, int]:
    """``(blocks x block x block, teachers used)``: the teachers' mean cosine similarity between the
    images of each consecutive block of ``images`` (a last, partial block is dropped).

    Each teacher's features are the input of its classification layer (its logits when the spec
    names no head); teachers are used one at a time and can be released after their turn."""
    blocks = len(images) // block
    if blocks < 1:
        raise ConfigError(f"{len(images)} images do not fill one block of {block}")
    grouped = images[: blocks * block].view(blocks, block, *images.shape[1:])
    total = torch.zeros(blocks, block, block)
    used = 0
    with torch.no_grad():
        for teacher in teachers:
            teacher.eval()
            for index in range(blocks):
                with HeadInput(teacher) as head:
                    logits = teacher(grouped[index].to(device))
                unit = F.normalize((head.features if head.features is not None else logits).flatten(1).float(), dim=1)
                total[index] += (unit @ unit.t()).cpu()
            used += 1
    if not used:
        raise ConfigError("prior distillation needs at least one teacher")
    return total / used, used


def distil_similarity(
    *, learner: MetaLearner, images: torch.Tensor, similarity: torch.Tensor, settings: PriorDistillSettings, seed: int, device: torch.device
) -> tuple[float, float]:
    """Train ``learner`` to match ``similarity`` (from :func:`ensemble_similarity`) on ``images``;
    returns the mean loss of the first and the last tenth of the steps."""
    blocks, block = similarity.shape[0], similarity.shape[1]
    grouped = images[: blocks * block].view(blocks, block, *images.shape[1:])
    optimizer = torch.optim.Adam(learner.parameters(), lr=settings.lr)
    learner.train()
    losses = []
    with seeded_torch(seed=seed, device=device):
        for _ in range(settings.steps):
            index = int(torch.randint(blocks, ()))
            pick = torch.randperm(block)[: settings.batch]
            views = colour_jitter(random_affine(grouped[index][pick], strength=settings.affine)).to(device)
            target = similarity[index][pick][:, pick].to(device)
            loss = similarity_distance(learner_features=learner.features(views), target=target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    if not losses:
        return float("nan"), float("nan")
    tenth = max(1, len(losses) // 10)
    return sum(losses[:tenth]) / tenth, sum(losses[-tenth:]) / tenth


def distil_prior(
    *,
    learner: MetaLearner,
    teachers: Iterable[TaskModel],
    make_generator: Callable[[], nn.Module],
    settings: PriorDistillSettings,
    seed: int,
    device: torch.device,
) -> PriorDistillResult:
    """The whole stage: sample the prior, measure the ensemble's similarities, train the learner."""
    settings.validate()
    started = time.perf_counter()
    images = sample_prior(make_generator=make_generator, count=settings.images, per_generator=settings.per_generator, seed=seed)
    sampled = time.perf_counter()
    similarity, used = ensemble_similarity(images=images, teachers=teachers, block=settings.block, device=device)
    measured = time.perf_counter()
    first, last = distil_similarity(learner=learner, images=images, similarity=similarity, settings=settings, seed=seed + 1, device=device)
    return PriorDistillResult(
        images=len(images), teachers=used, loss_first=first, loss_last=last, sample_seconds=sampled - started,
        teacher_seconds=measured - sampled, train_seconds=time.perf_counter() - measured,
    )
