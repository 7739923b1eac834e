"""The meta-learner: a backbone (Conv4 or any timm model) and, for MAML, an N-way linear head.

BatchNorm mode. Every learner built here normalises with the statistics of the batch it is given,
in training and in evaluation alike (``track_running_stats=False``): MAML's reference protocol
adapts and scores episodes with batch statistics, and fixing the mode at construction means every
number reported for any learner (meta-trained, random initialisation, baselines) uses the same
one. It also keeps the learner free of side effects when the generator queries it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from freehub.atomic import atomic_path, atomic_write_text
from freehub.errors import CheckpointError, ConfigError

ALGORITHMS = ("maml", "protonet")
METRICS = ("euclidean", "cosine")
BN_MODE = "batch"
_TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class LearnerSpec:
    """Everything needed to rebuild a learner before loading its weights.

    ``backbone`` is ``"conv4"`` or ``"timm:<model name>"`` (built with ``num_classes=0`` as a
    feature extractor; ``backbone_args`` go to ``timm.create_model``). ``algorithm`` is the
    episodic rule the learner was trained with and adapts with: ``"maml"`` (fine-tune everything,
    needs the ``n_way`` head) or ``"protonet"`` (class prototypes, no head). ``metric`` is how a
    query is compared with the class prototypes: ``"euclidean"`` (ProtoNet's squared distance) or
    ``"cosine"`` (scaled cosine similarity to the mean of the unit support features), the right one
    for a learner taught similarities by angle, as prior distillation teaches them.
    """

    backbone: str = "conv4"
    algorithm: str = "maml"
    n_way: int = 5
    image_size: int = 32
    conv_width: int = 32
    backbone_args: dict[str, Any] = field(default_factory=dict)
    metric: str = "euclidean"

    def validate(self) -> None:
        """Raise :class:`ConfigError` for a spec that cannot be built."""
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"unknown learner algorithm {self.algorithm!r}; choose one of {ALGORITHMS}")
        if self.metric not in METRICS:
            raise ConfigError(f"unknown learner metric {self.metric!r}; choose one of {METRICS}")
        if self.backbone != "conv4" and not self.backbone.startswith(_TIMM_PREFIX):
            raise ConfigError(f"unknown backbone {self.backbone!r}; use 'conv4' or 'timm:<model name>'")
        if self.n_way < 2:
            raise ConfigError(f"n_way must be at least 2, got {self.n_way}")
        if self.image_size < 16:
            raise ConfigError(f"learner image_size must be at least 16, got {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reverses it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LearnerSpec:
        """Rebuild a spec from :meth:`to_dict` output (learners saved before ``metric`` existed are Euclidean)."""
        return cls(**{**data, "backbone_args": dict(data.get("backbone_args", {}))})


class Conv4(nn.Module):
    """Four blocks of Conv3x3 -> BatchNorm -> ReLU -> MaxPool2, flattened."""

    def __init__(self, *, width: int = 32, in_channels: int = 3) -> None:
        super().__init__()
        blocks: list[nn.Module] = []
        for index in range(4):
            blocks += [
                nn.Conv2d(in_channels if index == 0 else width, width, 3, padding=1),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.blocks(images).flatten(1)


class MetaLearner(nn.Module):
    """Images ``B x C x H x W`` in ``[0, 1]`` to features, and through the head to N-way logits.

    Inputs of any size and of 1 or 3 channels are mapped to ``spec.image_size`` RGB first, so that
    generator output, memory episodes and real evaluation images all reach the backbone alike.
    """

    def __init__(self, *, spec: LearnerSpec) -> None:
        super().__init__()
        spec.validate()
        self.spec = spec
        self.backbone = _build_backbone(spec)
        _use_batch_statistics(self.backbone)
        with torch.no_grad():
            probe = torch.zeros(2, 3, spec.image_size, spec.image_size)
            self.feature_dim = int(self.backbone(probe).shape[1])
        self.head = nn.Linear(self.feature_dim, spec.n_way) if spec.algorithm == "maml" else None

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Resize to the learner's size, make RGB, and centre around zero."""
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        size = self.spec.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        return (images - 0.5) / 0.5

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Backbone embedding of ``[0, 1]`` images."""
        return self.backbone(self.prepare(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.head is None:
            raise ConfigError("a protonet learner has no head: use features() and prototypes")
        return self.head(self.features(images))


def build_learner(*, spec: LearnerSpec) -> MetaLearner:
    """A freshly initialised learner (initialisation follows the global torch RNG)."""
    return MetaLearner(spec=spec)


def save_learner(*, learner: MetaLearner, directory: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``learner.safetensors`` and ``learner.json`` (spec + ``extra``) atomically; return the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: value.detach().cpu().contiguous() for name, value in learner.state_dict().items()}
    with atomic_path(directory / "learner.safetensors") as tmp:
        save_file(tensors, str(tmp))
    meta = {"spec": learner.spec.to_dict(), "bn_mode": BN_MODE, **(extra or {})}
    atomic_write_text(directory / "learner.json", json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return directory


def load_learner(*, directory: Path, device: torch.device | str = "cpu") -> MetaLearner:
    """Rebuild a learner written by :func:`save_learner` (safetensors only, nothing unpickled)."""
    meta_path, weights_path = directory / "learner.json", directory / "learner.safetensors"
    if not meta_path.is_file() or not weights_path.is_file():
        raise CheckpointError(f"{directory} has no learner.json + learner.safetensors", reason="missing_files")
    spec = LearnerSpec.from_dict(json.loads(meta_path.read_text(encoding="utf-8"))["spec"])
    learner = build_learner(spec=spec)
    try:
        learner.load_state_dict(load_file(str(weights_path)))
    except RuntimeError as error:
        raise CheckpointError(f"learner weights do not match their spec: {error}", reason="shape_mismatch") from error
    return learner.to(device)


def _build_backbone(spec: LearnerSpec) -> nn.Module:
    if spec.backbone == "conv4":
        return Conv4(width=spec.conv_width)
    import timm

    name = spec.backbone[len(_TIMM_PREFIX) :]
    try:
        return timm.create_model(name, pretrained=False, num_classes=0, in_chans=3, **spec.backbone_args)
    except (RuntimeError, TypeError, ValueError) as error:
        raise ConfigError(f"cannot build timm backbone {name!r}: {error}") from error


def _use_batch_statistics(module: nn.Module) -> None:
    # Dropping the running buffers makes BatchNorm use batch statistics in train and eval mode.
    for layer in module.modules():
        if isinstance(layer, nn.modules.batchnorm._BatchNorm):
            layer.track_running_stats = False
            layer.register_buffer("running_mean", None)
            layer.register_buffer("running_var", None)
            layer.register_buffer("num_batches_tracked", None)
