"""timm checkpoints in their native Hub layout: ``config.json`` + ``model.safetensors``.

The layout is the one ``timm.models.push_to_hf_hub`` writes, so ``timm.create_model("hf-hub:ORG/NAME",
pretrained=True)`` loads what :func:`save_timm_checkpoint` writes. timm copies the architecture's
default pretrained metadata (license, paper ids, source tags) into every export, even of weights
it never saw; the writer keeps only the fields that describe the saved model itself.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import save_file
from timm.models._hub import save_config_for_hf
from torch import nn

from freehub.adapters.safety import (
    MAX_CONFIG_INT,
    MAX_INPUT_SIDE,
    MAX_LAYERS,
    SAFETENSORS_NAME,
    Weights,
    check_input_size,
    check_shapes_fit,
)
from freehub.atomic import atomic_write_text, atomic_write_with
from freehub.errors import CheckpointError
from freehub.task_model import ModelSpec, TaskModel

LIBRARY = "timm"
CONFIG_NAME = "config.json"

# pretrained_cfg fields that describe the exported weights; everything else timm would copy is
# metadata of the architecture's own published weights (license, papers, tags, URLs).
_OWN_PRETRAINED_FIELDS = (
    "custom_load",
    "input_size",
    "fixed_input_size",
    "interpolation",
    "crop_pct",
    "crop_mode",
    "mean",
    "std",
    "num_classes",
    "pool_size",
    "first_conv",
    "classifier",
)

# The create_model keywords a config may set, by the kind of value each takes. Anything else is refused:
# some load files or download weights (checkpoint_path, pretrained_cfg), and an unknown one could size
# memory in a way no bound here checks.
_MODEL_ARGS = {
    "depth": "blocks", "depths": "blocks", "layers": "blocks",
    "embed_dim": "width", "dims": "width", "channels": "width", "stem_width": "width", "num_heads": "width",
    "hidden_sizes": "width", "patch_size": "side", "img_size": "side",
    "mlp_ratio": "ratio", "drop_rate": "rate", "drop_path_rate": "rate",
    "class_token": "flag", "qkv_bias": "flag", "global_pool": "pool",
    # Bounded with the input size and the labels, like the config's own values.
    "in_chans": "checked", "num_classes": "checked",
}
_POOLS = frozenset({"", "avg", "max", "avgmax", "catavgmax", "token", "map", "fast"})

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def save_timm_checkpoint(
    *,
    model: nn.Module,
    folder: Path,
    label_names: Sequence[str],
    input_size: tuple[int, int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
    model_args: Mapping[str, Any] | None = None,
    license: str | None = None,
) -> Path:
    """Write a timm model to ``folder`` in timm's Hub layout and return the folder.

    ``input_size`` is ``(channels, height, width)`` and ``mean``/``std`` have one entry per channel:
    the preprocessing the weights were trained with. ``model_args`` replaces reconstruction
    arguments timm cannot serialise itself. ``license`` is the license of these weights, if any.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if len(label_names) != model.num_classes:
        raise ValueError(f"{len(label_names)} label names for a {model.num_classes}-class model")
    if len(mean) != input_size[0] or len(std) != input_size[0]:
        raise ValueError(f"mean/std need {input_size[0]} entries for input size {input_size}")
    data_config = {
        "input_size": tuple(input_size),
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
        "interpolation": interpolation,
        "crop_pct": 1.0,
        "crop_mode": "center",
    }
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        draft = Path(scratch) / CONFIG_NAME
        save_config_for_hf(
            model,
            str(draft),
            model_config={"label_names": list(label_names)},
            model_args=dict(model_args or {}),
            data_config=data_config,
        )
        config = json.loads(draft.read_text(encoding="utf-8"))
    borrowed = config["pretrained_cfg"]
    own = {key: borrowed[key] for key in _OWN_PRETRAINED_FIELDS if key in borrowed}
    if license:
        own["license"] = license
    config["pretrained_cfg"] = own
    tensors = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict().items()}
    atomic_write_with(folder / SAFETENSORS_NAME, lambda path: save_file(tensors, str(path), metadata={"format": "pt"}))
    atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return folder


def is_timm_config(config: Mapping[str, Any]) -> bool:
    """Whether a ``config.json`` is timm's (it names one ``architecture``, not transformers' list)."""
    return isinstance(config.get("architecture"), str) and "model_type" not in config


def timm_spec(*, config: Mapping[str, Any]) -> ModelSpec:
    """Read a :class:`ModelSpec` from a timm ``config.json`` without building the model.

    ``head_names``, ``feature_dim`` and ``param_count`` need the model and are left to the loader.
    """
    try:
        return _spec_from_config(config)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"unusable timm config: {error!r}", reason="bad_config") from error


def _spec_from_config(config: Mapping[str, Any]) -> ModelSpec:
    architecture = config["architecture"]
    pretrained_cfg = config.get("pretrained_cfg", {})
    model_args = _model_args(config)
    if not isinstance(pretrained_cfg, Mapping):
        raise TypeError("pretrained_cfg must be an object")
    num_classes = int(config.get("num_classes", model_args.get("num_classes", pretrained_cfg.get("num_classes", 0))))
    if num_classes <= 0:
        raise ValueError("the checkpoint has no classifier head (num_classes is 0)")
    source_size = [int(v) for v in pretrained_cfg.get("input_size", (3, 224, 224))]
    channels = int(model_args.get("in_chans", source_size[0]))
    height, width = source_size[1], source_size[2]
    # A fixed-size model (a ViT) is built for its img_size argument, whatever the metadata says.
    if model_args.get("img_size") is not None and pretrained_cfg.get("fixed_input_size", False):
        size = model_args["img_size"]
        height, width = (int(size), int(size)) if isinstance(size, (int, float)) else (int(size[0]), int(size[1]))
    check_input_size(channels=channels, height=height, width=width, num_classes=num_classes)
    mean = _per_channel(pretrained_cfg.get("mean", _IMAGENET_MEAN), channels, "mean")
    std = _per_channel(pretrained_cfg.get("std", _IMAGENET_STD), channels, "std")
    if any(s <= 0 for s in std):
        raise ValueError("std must be positive")
    labels = _label_names(config.get("label_names", pretrained_cfg.get("label_names")), num_classes)
    return ModelSpec(
        library=LIBRARY,
        architecture=architecture,
        label_names=labels,
        input_size=(channels, height, width),
        mean=mean,
        std=std,
        interpolation=str(pretrained_cfg.get("interpolation", "bicubic")),
        extra={"crop_pct": float(pretrained_cfg.get("crop_pct", 1.0)), "model_args": dict(model_args)},
    )


def _model_args(config: Mapping[str, Any]) -> dict[str, Any]:
    model_args = config.get("model_args", {})
    if not isinstance(model_args, Mapping):
        raise TypeError("model_args must be an object")
    refused = sorted(str(key) for key in model_args if key not in _MODEL_ARGS)
    if refused:
        raise ValueError(f"model_args may not set {', '.join(refused)}")
    for key, value in model_args.items():
        _check_model_arg(key, value, _MODEL_ARGS[key])
    return dict(model_args)


def _check_model_arg(key: str, value: Any, kind: str) -> None:
    """Refuse a model_args value outside the bounds of its kind (``ValueError``)."""
    if kind in ("blocks", "width", "side"):
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items or len(items) > 16 or not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
            raise ValueError(f"model_args.{key} must be a count or a short list of counts")
        bound = {"blocks": MAX_LAYERS, "width": MAX_CONFIG_INT, "side": MAX_INPUT_SIDE}[kind]
        if min(items) < 1 or (sum(items) if kind == "blocks" else max(items)) > bound:
            raise ValueError(f"model_args.{key} is {value} (at most {bound}{' in all' if kind == 'blocks' else ''})")
    elif kind in ("ratio", "rate"):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= (16 if kind == "ratio" else 1):
            raise ValueError(f"model_args.{key} is {value!r}")
    elif kind == "flag" and not isinstance(value, bool):
        raise ValueError(f"model_args.{key} must be true or false")
    elif kind == "checked" and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f"model_args.{key} must be an integer")
    elif kind == "pool" and value not in _POOLS:
        raise ValueError(f"model_args.{key} is {value!r}")


def _per_channel(values: Any, channels: int, what: str) -> tuple[float, ...]:
    numbers = tuple(float(v) for v in values)
    if len(numbers) == channels:
        return numbers
    # timm itself averages RGB statistics for a grey model; anything else is a broken config.
    if channels == 1 and len(numbers) == 3:
        return (sum(numbers) / 3.0,)
    raise ValueError(f"{what} has {len(numbers)} entries for {channels} channels")


def _label_names(raw: Any, num_classes: int) -> tuple[str, ...]:
    if raw is None:
        return tuple(f"LABEL_{i}" for i in range(num_classes))
    if isinstance(raw, Mapping):
        by_index = {int(k): str(v) for k, v in raw.items()}
        names = tuple(by_index.get(i, f"LABEL_{i}") for i in range(num_classes))
    else:
        names = tuple(str(v) for v in raw)
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} label names for {num_classes} classes")
    return names


def load_timm_model(*, config: Mapping[str, Any], weights: Weights) -> TaskModel:
    """Build a timm model from its config (no download, no pretrained weights) and load ``weights`` strictly.

    The model is first built on the ``meta`` device, which costs no memory, and its tensor names and
    shapes are checked against the weight headers: a config describing a far larger model than its
    weights is refused before a byte is allocated. Shards are then loaded one at a time.
    """
    spec = timm_spec(config=config)
    if not timm.is_model(spec.architecture):
        raise CheckpointError(f"timm has no architecture {spec.architecture!r}", reason="unknown_architecture")
    with torch.device("meta"):
        skeleton = _create(spec)
    check_shapes_fit(expected={k: tuple(v.shape) for k, v in skeleton.state_dict().items()}, found=weights.shapes)
    network = _create(spec)
    for _, shard in weights.shards():
        network.load_state_dict(shard, strict=False)
    network.eval()
    head = network.get_classifier()
    head_name = _module_name(network, head)
    head_params = tuple(f"{head_name}.{name}" for name, _ in head.named_parameters())
    if not head_params:
        raise CheckpointError(f"{spec.architecture} has no trainable classifier head", reason="bad_config")
    feature_dim = head.in_features if isinstance(head, nn.Linear) else int(getattr(network, "num_features", 0)) or None
    spec = replace(
        spec,
        head_names=head_params,
        feature_dim=feature_dim,
        param_count=sum(p.numel() for p in network.parameters()),
    )
    return TaskModel(network=network, spec=spec)


def _create(spec: ModelSpec) -> nn.Module:
    kwargs = dict(spec.extra["model_args"])
    kwargs["num_classes"] = spec.num_classes
    kwargs["in_chans"] = spec.input_size[0]
    try:
        return timm.create_model(spec.architecture, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError, KeyError, IndexError, NotImplementedError) as error:
        raise CheckpointError(f"timm cannot build {spec.architecture} from this config: {error!r}", reason="bad_config") from error


def _module_name(network: nn.Module, module: nn.Module) -> str:
    for name, candidate in network.named_modules():
        if candidate is module:
            return name
    raise CheckpointError("the classifier head is not part of the network", reason="bad_config")
