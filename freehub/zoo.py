"""The teacher zoo: task-specific classifiers trained on the glyph set and published as Hub repos.

FREE needs a pool of teachers and no data; a real Hub provides the pool, and this module makes one
that looks like it. Each teacher is a 5-way classifier over its own classes of the glyph set's
meta-TRAIN split (never meta-val or meta-test), trained on two thirds of each class's images and
measured on the rest, then published in its library's native layout (weights, configs and a model
card) through :class:`freehub.hub.Hub`.

The pool is heterogeneous on purpose. Teacher ``i`` uses recipe ``i mod 8``:

=============  ============  =============================================================  =========  ===============
recipe         library       network (constructor arguments)                                input      mean / std
=============  ============  =============================================================  =========  ===============
resnet         timm          resnet18, layers 1-1-1-1, channels 16-32-64-128, stem 16       1 x 28     0.5 / 0.5
hf-resnet      transformers  ResNetForImageClassification, basic, widths 16-32-64-128       1 x 32     0.45 / 0.25
vit            timm          vit_tiny_patch16_224, img 32, patch 4, dim 64, depth 3, 4 heads  3 x 32     ImageNet
hf-vit         transformers  ViTForImageClassification, img 28, patch 4, dim 64, 3 layers    3 x 28     0.5 / 0.5
convnext       timm          convnext_atto, dims 16-32-64-128, depths 1-1-1-1, patch 2       3 x 40     0.5 / 0.25
hf-convnext    transformers  ConvNextForImageClassification, widths 24-48-96, patch 2        1 x 32     0.5 / 0.3
mobilenetv3    timm          mobilenetv3_small_050                                           1 x 32     0.45 / 0.25
vit-p5         timm          vit_tiny_patch16_224, img 40, patch 5, dim 48, depth 2, 3 heads  1 x 40     0.5 / 0.5
=============  ============  =============================================================  =========  ===============

Quality is spread on purpose too: of every six consecutive teachers, four train the full number of
steps, one 30% of them ("medium") and one 8% ("short", barely better than chance).

Classes: even-numbered teachers draw their classes within one alphabet, odd-numbered ones across
alphabets; after the first, each teacher reuses 0-2 classes of earlier teachers, so label sets
overlap between repos as they do on a real Hub. Label names are the glyphs' Unicode names.

With ``hub_like``, four more teachers follow, shaped like much of what a real Hub holds: two 2-class
and one 3-class classifier (cats vs dogs, beans), and one over a whole alphabet at a larger input
size (an ImageNet-like classifier: many classes, 3 x 48 input, ImageNet statistics). They draw
their classes from a random stream of their own, so the other teachers stay exactly as they were.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm
from transformers import (
    AutoModelForImageClassification,
    ConvNextConfig,
    PreTrainedConfig,
    ResNetConfig,
    ViTConfig,
)

from freehub.adapters import load_task_model, save_timm_checkpoint, save_transformers_checkpoint
from freehub.adapters.transformers import output_logits
from freehub.atomic import atomic_write_text
from freehub.card import render_teacher_card
from freehub.data import ImageSet, SplitData, load_glyphs
from freehub.errors import ConfigError
from freehub.hub import Hub
from freehub.task_model import ModelSpec, TaskModel

DEFAULT_TEACHERS = 24
DEFAULT_TRAIN_STEPS = 150
DEFAULT_IMAGES_PER_CLASS = 30
WAYS = 5
TRAIN_FRACTION = 2 / 3
BATCH_SIZE = 32
LICENSE = "apache-2.0"

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

EFFORTS = {"full": 1.0, "medium": 0.3, "short": 0.08}
"""Fraction of the training steps each effort level gets."""
_EFFORT_CYCLE = ("full", "full", "full", "full", "medium", "short")


@dataclass(frozen=True)
class Recipe:
    """One kind of teacher: a small network of one library at one input format.

    ``args`` are the architecture's constructor arguments: ``timm.create_model`` keywords for timm,
    config fields for transformers (channels and class count are added from the recipe).
    """

    name: str
    library: str
    architecture: str
    channels: int
    size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    lr: float = 2e-3
    args: dict[str, Any] = field(default_factory=dict)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


_RESNET_ARGS = {"layers": (1, 1, 1, 1), "channels": (16, 32, 64, 128), "stem_width": 16}
RECIPES: tuple[Recipe, ...] = (
    Recipe("resnet", "timm", "resnet18", 1, 28, (0.5,), (0.5,), args=_RESNET_ARGS),
    Recipe(
        "hf-resnet", "transformers", "ResNetForImageClassification", 1, 32, (0.45,), (0.25,), "bicubic",
        args={"embedding_size": 16, "hidden_sizes": [16, 32, 64, 128], "depths": [1, 1, 1, 1], "layer_type": "basic"},
    ),
    Recipe(
        "vit", "timm", "vit_tiny_patch16_224", 3, 32, _IMAGENET_MEAN, _IMAGENET_STD, "bicubic", lr=3e-3,
        args={"img_size": 32, "patch_size": 4, "embed_dim": 64, "depth": 3, "num_heads": 4},
    ),
    Recipe(
        "hf-vit", "transformers", "ViTForImageClassification", 3, 28, (0.5,) * 3, (0.5,) * 3, lr=3e-3,
        args={"image_size": 28, "patch_size": 4, "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
              "intermediate_size": 128},
    ),
    Recipe(
        "convnext", "timm", "convnext_atto", 3, 40, (0.5,) * 3, (0.25,) * 3,
        args={"dims": (16, 32, 64, 128), "depths": (1, 1, 1, 1), "patch_size": 2},
    ),
    Recipe(
        "hf-convnext", "transformers", "ConvNextForImageClassification", 1, 32, (0.5,), (0.3,),
        args={"hidden_sizes": [24, 48, 96], "depths": [1, 1, 1], "num_stages": 3, "patch_size": 2},
    ),
    Recipe("mobilenetv3", "timm", "mobilenetv3_small_050", 1, 32, (0.45,), (0.25,), "bicubic", lr=6e-3),
    Recipe(
        "vit-p5", "timm", "vit_tiny_patch16_224", 1, 40, (0.5,), (0.5,), lr=3e-3,
        args={"img_size": 40, "patch_size": 5, "embed_dim": 48, "depth": 2, "num_heads": 3},
    ),
)

# The many-class Hub-like teacher: ImageNet-like input format and statistics.
WIDE_RECIPE = Recipe("resnet-wide", "timm", "resnet18", 3, 48, _IMAGENET_MEAN, _IMAGENET_STD, "bicubic", args=_RESNET_ARGS)
# (name, recipe, classes) of the small Hub-like teachers; the alphabet teacher follows them.
_HUB_LIKE_SMALL = (("pair", RECIPES[0], 2), ("pair", RECIPES[3], 2), ("triple", RECIPES[1], 3))
_ALPHABET_MIN_CLASSES = 20
HUB_LIKE_TEACHERS = len(_HUB_LIKE_SMALL) + 1

_HF_CONFIGS: dict[str, type[PreTrainedConfig]] = {
    "ResNetForImageClassification": ResNetConfig,
    "ViTForImageClassification": ViTConfig,
    "ConvNextForImageClassification": ConvNextConfig,
}


def build_network(*, recipe: Recipe, num_classes: int) -> nn.Module:
    """A freshly initialised network of ``recipe`` with ``num_classes`` outputs (the library's own module)."""
    if recipe.library == "timm":
        return timm.create_model(recipe.architecture, num_classes=num_classes, in_chans=recipe.channels, **recipe.args)
    config = _HF_CONFIGS[recipe.architecture](num_channels=recipe.channels, num_labels=num_classes, **recipe.args)
    return AutoModelForImageClassification.from_config(config)


def as_task_model(*, recipe: Recipe, network: nn.Module, label_names: Sequence[str]) -> TaskModel:
    """Wrap a network of ``recipe`` so that it takes ``[0,1]`` images of any size, as a loaded teacher does."""
    spec = ModelSpec(
        library=recipe.library,
        architecture=recipe.architecture,
        label_names=tuple(label_names),
        input_size=recipe.input_size,
        mean=recipe.mean,
        std=recipe.std,
        interpolation=recipe.interpolation,
    )
    return TaskModel(network=network, spec=spec, logits_fn=output_logits if recipe.library == "transformers" else None)


def save_network(*, recipe: Recipe, network: nn.Module, folder: Path, label_names: Sequence[str]) -> Path:
    """Write a network of ``recipe`` to ``folder`` in its library's native Hub layout."""
    if recipe.library == "timm":
        return save_timm_checkpoint(
            model=network, folder=folder, label_names=label_names, input_size=recipe.input_size,
            mean=recipe.mean, std=recipe.std, interpolation=recipe.interpolation, license=LICENSE,
        )
    return save_transformers_checkpoint(
        model=network, folder=folder, label_names=label_names, image_size=(recipe.size, recipe.size),
        mean=recipe.mean, std=recipe.std, interpolation=recipe.interpolation,
    )


@dataclass(frozen=True)
class TeacherPlan:
    """What one teacher of the zoo will be, decided before any training."""

    index: int
    name: str
    recipe: Recipe
    class_indices: tuple[int, ...]
    effort: str


def plan_zoo(*, classes: ImageSet, teachers: int = DEFAULT_TEACHERS, seed: int = 0, ways: int = WAYS) -> tuple[TeacherPlan, ...]:
    """Decide every teacher's recipe, classes (indices into ``classes``) and effort; deterministic in ``seed``."""
    if teachers < 1:
        raise ConfigError("a zoo needs at least one teacher")
    if classes.num_classes < ways:
        raise ConfigError(f"{classes.num_classes} classes cannot make a {ways}-way teacher")
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for index, group in enumerate(classes.class_groups):
        by_group.setdefault(group, []).append(index)
    big_groups = sorted(g for g, members in by_group.items() if len(members) >= ways)
    everything = list(range(classes.num_classes))
    used: set[int] = set()
    plans = []
    for index in range(teachers):
        pool = by_group[rng.choice(big_groups)] if index % 2 == 0 and big_groups else everything
        reusable = sorted(used.intersection(pool))
        shared = rng.sample(reusable, min(rng.choice((0, 1, 1, 2)), len(reusable)))
        others = rng.sample([c for c in pool if c not in shared], ways - len(shared))
        chosen = shared + others
        rng.shuffle(chosen)
        used.update(chosen)
        recipe = RECIPES[index % len(RECIPES)]
        plans.append(
            TeacherPlan(
                index=index,
                name=f"glyphs-{recipe.name}-{index:02d}",
                recipe=recipe,
                class_indices=tuple(chosen),
                effort=_EFFORT_CYCLE[index % len(_EFFORT_CYCLE)],
            )
        )
    return tuple(plans)


def plan_hub_like(*, classes: ImageSet, first_index: int, seed: int = 0) -> tuple[TeacherPlan, ...]:
    """The Hub-like teachers (see the module docstring), numbered from ``first_index``; deterministic in ``seed``.

    The alphabet teacher takes every class of the smallest class group with at least 20 classes (of
    the largest group when none is that large).
    """
    rng = random.Random(f"{seed}/hub-like")
    plans = []
    for offset, (kind, recipe, ways) in enumerate(_HUB_LIKE_SMALL):
        index = first_index + offset
        chosen = tuple(rng.sample(range(classes.num_classes), ways))
        plans.append(TeacherPlan(index=index, name=f"glyphs-{kind}-{index:02d}", recipe=recipe, class_indices=chosen, effort="full"))
    by_group: dict[str, list[int]] = {}
    for class_index, group in enumerate(classes.class_groups):
        by_group.setdefault(group, []).append(class_index)
    sizes = sorted((len(members), group) for group, members in by_group.items())
    large = [group for size, group in sizes if size >= _ALPHABET_MIN_CLASSES]
    alphabet = tuple(by_group[large[0] if large else sizes[-1][1]])
    index = first_index + len(plans)
    plans.append(TeacherPlan(index=index, name=f"glyphs-alphabet-{index:02d}", recipe=WIDE_RECIPE, class_indices=alphabet, effort="full"))
    return tuple(plans)


@dataclass(frozen=True)
class TrainedTeacher:
    """A trained teacher and how well it does on its own held-out images."""

    plan: TeacherPlan
    model: TaskModel
    held_out_accuracy: float
    train_steps: int
    train_per_class: int
    held_out_per_class: int
    class_groups: tuple[str, ...]


def train_teacher(*, plan: TeacherPlan, classes: ImageSet, seed: int = 0, train_steps: int = DEFAULT_TRAIN_STEPS) -> TrainedTeacher:
    """Train the teacher of ``plan`` on two thirds of each of its classes' images; measure it on the rest.

    Deterministic in ``seed`` and ``plan.index``; the caller's global torch RNG state is left as it was.
    """
    task = classes.select_classes(plan.class_indices)
    steps = max(1, round(train_steps * EFFORTS[plan.effort]))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed * 100_003 + plan.index)
        generator = torch.Generator().manual_seed(seed * 100_003 + plan.index)
        train_idx, test_idx = _split_per_class(labels=task.labels, ways=len(plan.class_indices), generator=generator)
        network = build_network(recipe=plan.recipe, num_classes=len(plan.class_indices))
        model = as_task_model(recipe=plan.recipe, network=network, label_names=task.class_names)
        images = task.as_float()
        _fit(model=model, images=images[train_idx], labels=task.labels[train_idx], steps=steps, lr=plan.recipe.lr, generator=generator)
    model.eval()
    with torch.no_grad():
        predictions = model(images[test_idx]).argmax(dim=1)
    accuracy = float((predictions == task.labels[test_idx]).float().mean())
    return TrainedTeacher(
        plan=plan,
        model=model,
        held_out_accuracy=accuracy,
        train_steps=steps,
        train_per_class=len(train_idx) // len(plan.class_indices),
        held_out_per_class=len(test_idx) // len(plan.class_indices),
        class_groups=task.class_groups,
    )


def _split_per_class(*, labels: torch.Tensor, ways: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    train, test = [], []
    per_class = int(torch.bincount(labels, minlength=ways).min())
    if per_class < 2:
        raise ConfigError("every teacher class needs at least 2 images (one to train on, one to measure)")
    n_train = min(per_class - 1, max(1, round(per_class * TRAIN_FRACTION)))
    for label in range(ways):
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)][:per_class]
        train.append(members[:n_train])
        test.append(members[n_train:])
    return torch.cat(train), torch.cat(test)


def _fit(*, model: TaskModel, images: torch.Tensor, labels: torch.Tensor, steps: int, lr: float, generator: torch.Generator) -> None:
    """AdamW with a short warm-up and a cosine decay, small random shifts as augmentation."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(1, steps // 10)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    batch = min(BATCH_SIZE, len(labels))
    order = torch.randperm(len(labels), generator=generator)
    cursor = 0
    for _ in range(steps):
        if cursor + batch > len(order):
            order, cursor = torch.randperm(len(labels), generator=generator), 0
        chosen = order[cursor : cursor + batch]
        cursor += batch
        loss = F.cross_entropy(model(_shift(images[chosen], generator=generator)), labels[chosen])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()


def _shift(images: torch.Tensor, *, generator: torch.Generator, pixels: int = 2) -> torch.Tensor:
    """Move each image by up to ``pixels`` in each direction (edges repeated): glyphs do not sit still."""
    height, width = images.shape[-2:]
    padded = F.pad(images, (pixels,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pixels + 1, (images.shape[0], 2), generator=generator).tolist()
    return torch.stack([padded[i, :, dy : dy + height, dx : dx + width] for i, (dy, dx) in enumerate(offsets)])


@dataclass(frozen=True)
class TeacherResult:
    """One published teacher."""

    repo_id: str
    commit: str
    library: str
    architecture: str
    input_size: tuple[int, int, int]
    class_names: tuple[str, ...]
    class_groups: tuple[str, ...]
    held_out_accuracy: float
    effort: str
    train_steps: int
    seconds: float


@dataclass(frozen=True)
class ZooResult:
    """What :func:`build_zoo` published, where, and how long it took."""

    hub: str
    org: str
    seed: int
    teachers: tuple[TeacherResult, ...]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)

    def table(self) -> str:
        """A plain-text summary table: repo, library, architecture, input, classes, held-out accuracy."""
        header = ("repo", "library", "architecture", "input", "classes", "effort", "held-out acc")
        rows = [header]
        for t in self.teachers:
            scripts = sorted(set(t.class_groups))
            classes = f"{len(t.class_names)} of {scripts[0]}" if len(scripts) == 1 else f"{len(t.class_names)} of {len(scripts)} scripts"
            size = "x".join(str(v) for v in t.input_size)
            rows.append((t.repo_id, t.library, t.architecture, size, classes, t.effort, f"{100 * t.held_out_accuracy:.1f}%"))
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * width for width in widths))
        mean = sum(t.held_out_accuracy for t in self.teachers) / max(1, len(self.teachers))
        lines.append(f"{len(self.teachers)} teachers on {self.hub}, mean held-out accuracy {100 * mean:.1f}%, {self.seconds:.0f} s")
        return "\n".join(lines)


def build_zoo(
    *,
    hub: Hub,
    org: str,
    teachers: int = DEFAULT_TEACHERS,
    seed: int = 0,
    size: int = 32,
    data: SplitData | None = None,
    progress: bool = False,
    train_steps: int = DEFAULT_TRAIN_STEPS,
    images_per_class: int = DEFAULT_IMAGES_PER_CLASS,
    hub_like: bool = False,
) -> ZooResult:
    """Train ``teachers`` task-specific classifiers on meta-train glyph classes and publish each as ``ORG/NAME``.

    ``data`` defaults to the glyph set rendered at ``size`` pixels with ``images_per_class`` images
    per class; only its ``train`` split is used. ``train_steps`` is the full-effort number of
    optimiser steps (medium and short teachers get fewer). Each repo holds the library's native
    layout and a README.md model card tagged ``few-shot``. ``hub_like`` adds the four Hub-like
    teachers after them (:func:`plan_hub_like`).
    """
    if not org or "/" in org:
        raise ConfigError(f"--org must be a plain organisation name, got {org!r}")
    start = time.perf_counter()
    if data is None:
        data = load_glyphs(size=size, images_per_class=images_per_class, progress=progress)
    classes = data.train
    plans = plan_zoo(classes=classes, teachers=teachers, seed=seed)
    if hub_like:
        plans += plan_hub_like(classes=classes, first_index=teachers, seed=seed)
    results = []
    with tqdm(total=len(plans), desc="zoo", unit="teacher", disable=not progress) as bar:
        for plan in plans:
            began = time.perf_counter()
            trained = train_teacher(plan=plan, classes=classes, seed=seed, train_steps=train_steps)
            repo_id = f"{org}/{plan.name}"
            commit = _publish(hub=hub, repo_id=repo_id, trained=trained, seed=seed)
            results.append(
                TeacherResult(
                    repo_id=repo_id,
                    commit=commit,
                    library=plan.recipe.library,
                    architecture=plan.recipe.architecture,
                    input_size=plan.recipe.input_size,
                    class_names=trained.model.label_names,
                    class_groups=trained.class_groups,
                    held_out_accuracy=trained.held_out_accuracy,
                    effort=plan.effort,
                    train_steps=trained.train_steps,
                    seconds=time.perf_counter() - began,
                )
            )
            bar.set_postfix_str(f"{plan.name} {100 * trained.held_out_accuracy:.0f}%")
            bar.update(1)
    return ZooResult(hub=hub.location, org=org, seed=seed, teachers=tuple(results), seconds=time.perf_counter() - start)


def _publish(*, hub: Hub, repo_id: str, trained: TrainedTeacher, seed: int) -> str:
    plan = trained.plan
    with tempfile.TemporaryDirectory(prefix="freehub-zoo-") as scratch:
        folder = Path(scratch) / plan.name
        save_network(recipe=plan.recipe, network=trained.model.network, folder=folder, label_names=trained.model.label_names)
        # The card describes the checkpoint as a user will load it, so read the spec back from disk.
        spec = load_task_model(folder=folder).spec
        card = render_teacher_card(
            repo_id=repo_id,
            spec=spec,
            held_out_accuracy=trained.held_out_accuracy,
            train_per_class=trained.train_per_class,
            held_out_per_class=trained.held_out_per_class,
            train_steps=trained.train_steps,
            seed=seed,
            class_groups=trained.class_groups,
            under_trained=plan.effort != "full",
            license=LICENSE,
        )
        atomic_write_text(folder / "README.md", card)
        hub.create_repo(repo_id=repo_id, exist_ok=True)
        return hub.upload_folder(repo_id=repo_id, folder=folder, commit_message=f"freehub zoo: {plan.name} (seed {seed})")
