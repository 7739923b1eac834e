"""transformers checkpoints in their native Hub layout.

``config.json`` (``architectures``, ``model_type``, ``id2label`` with string keys, ``label2id``) and
``model.safetensors`` as ``save_pretrained`` writes them, plus ``preprocessor_config.json`` as an image
processor's ``save_pretrained`` writes it, so that ``AutoModelForImageClassification.from_pretrained``
and ``AutoImageProcessor.from_pretrained`` load what :func:`save_transformers_checkpoint` writes.

Loading never runs remote code: a config with ``auto_map`` or a ``model_type`` this transformers
does not ship is refused before anything is built.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import CONFIG_MAPPING, ViTImageProcessor
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING,
    MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES,
)
from transformers.utils import logging as hf_logging

from freehub.adapters.safety import (
    SAFETENSORS_NAME,
    Weights,
    check_config_numbers,
    check_input_size,
)
from freehub.errors import CheckpointError, UnsafeCheckpointError
from freehub.task_model import ModelSpec, TaskModel

LIBRARY = "transformers"
CONFIG_NAME = "config.json"
PREPROCESSOR_NAME = "preprocessor_config.json"

# Config keys that count stacked blocks: together they bound how long building the model takes.
_LAYER_KEYS = frozenset({"num_hidden_layers", "depths", "num_stages", "num_layers", "layers"})
_LABEL_KEYS = frozenset({"id2label", "label2id"})

# PIL resampling codes as image processors store them -> TaskModel interpolation modes.
_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "area", 5: "bilinear"}
_RESAMPLE_CODE = {"nearest": 0, "bilinear": 2, "bicubic": 3, "area": 4}


def save_transformers_checkpoint(
    *,
    model: nn.Module,
    folder: Path,
    label_names: Sequence[str],
    image_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: str = "bilinear",
) -> Path:
    """Write a transformers image classifier and its image processor to ``folder``; return the folder.

    ``label_names`` become ``id2label``/``label2id`` of ``model.config`` (the config is updated in
    place, as ``save_pretrained`` expects). ``image_size`` is ``(height, width)`` and ``mean``/``std``
    have one entry per input channel: the preprocessing the weights were trained with.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    channels = int(getattr(config, "num_channels", 3))
    if len(label_names) != config.num_labels:
        raise ValueError(f"{len(label_names)} label names for a {config.num_labels}-class model")
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std need {channels} entries for a {channels}-channel model")
    if interpolation not in _RESAMPLE_CODE:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE_CODE)}")
    config.id2label = {i: name for i, name in enumerate(label_names)}
    config.label2id = {name: i for i, name in enumerate(label_names)}
    processor = ViTImageProcessor(
        do_resize=True,
        size={"height": int(image_size[0]), "width": int(image_size[1])},
        resample=_RESAMPLE_CODE[interpolation],
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[float(m) for m in mean],
        image_std=[float(s) for s in std],
    )
    # Write into a scratch folder first and move file by file: a crash never leaves a half-written file.
    with tempfile.TemporaryDirectory(dir=folder) as scratch, _quiet():
        model.save_pretrained(scratch)
        processor.save_pretrained(scratch)
        for name in os.listdir(scratch):
            os.replace(Path(scratch) / name, folder / name)
    return folder


def is_transformers_config(config: Mapping[str, Any]) -> bool:
    """Whether a ``config.json`` is transformers' (it has a ``model_type``)."""
    return isinstance(config.get("model_type"), str)


def transformers_spec(*, config: Mapping[str, Any], preprocessor: Mapping[str, Any]) -> ModelSpec:
    """Read a :class:`ModelSpec` from ``config.json`` and ``preprocessor_config.json`` without building.

    ``head_names``, ``feature_dim`` and ``param_count`` need the model and are left to the loader.
    """
    _refuse_remote_code(config=config, preprocessor=preprocessor)
    try:
        check_config_numbers(config=config, layer_keys=_LAYER_KEYS, skip=_LABEL_KEYS)
        check_config_numbers(config=preprocessor, layer_keys=frozenset(), skip=frozenset())
        return _spec_from_configs(config, preprocessor)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise CheckpointError(f"unusable transformers config: {error!r}", reason="bad_config") from error


def _refuse_remote_code(*, config: Mapping[str, Any], preprocessor: Mapping[str, Any]) -> None:
    if "auto_map" in config or "auto_map" in preprocessor:
        raise UnsafeCheckpointError("the checkpoint asks for its own code (auto_map)", reason="remote_code")
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise UnsafeCheckpointError(
            f"transformers has no model type {model_type!r}: it would need the repo's own code", reason="remote_code"
        )
    if model_type not in MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES:
        raise CheckpointError(f"{model_type!r} is not an image classifier in transformers", reason="unknown_architecture")


def _spec_from_configs(config: Mapping[str, Any], preprocessor: Mapping[str, Any]) -> ModelSpec:
    model_type = config["model_type"]
    architectures = config.get("architectures") or [MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES[model_type]]
    architecture = str(architectures[0])
    labels = _label_names(config.get("id2label"))
    channels = int(config.get("num_channels", 3))
    height, width = _input_hw(preprocessor, config)
    check_input_size(channels=channels, height=height, width=width, num_classes=len(labels))
    mean, std = _normalisation(preprocessor, channels)
    resample = preprocessor.get("resample", 2)
    return ModelSpec(
        library=LIBRARY,
        architecture=architecture,
        label_names=labels,
        input_size=(channels, height, width),
        mean=mean,
        std=std,
        interpolation=_RESAMPLE.get(int(resample), "bilinear") if resample is not None else "bilinear",
        extra={"model_type": model_type},
    )


def _label_names(id2label: Any) -> tuple[str, ...]:
    if not isinstance(id2label, Mapping) or not id2label:
        raise ValueError("config has no id2label")
    by_index = {int(k): str(v) for k, v in id2label.items()}
    if sorted(by_index) != list(range(len(by_index))):
        raise ValueError("id2label keys must be 0..N-1")
    return tuple(by_index[i] for i in range(len(by_index)))


def _input_hw(preprocessor: Mapping[str, Any], config: Mapping[str, Any]) -> tuple[int, int]:
    """The size the network sees: the crop if the processor crops, else the resize target."""
    size = preprocessor.get("crop_size") if preprocessor.get("do_center_crop") else None
    if size is None:
        size = preprocessor.get("size")
    if size is None:
        size = config.get("image_size", 224)
    if isinstance(size, Mapping):
        if "height" in size and "width" in size:
            hw = (int(size["height"]), int(size["width"]))
        elif "shortest_edge" in size:
            hw = (int(size["shortest_edge"]),) * 2
        else:
            hw = (int(size["longest_edge"]),) * 2
    elif isinstance(size, (list, tuple)):
        hw = (int(size[0]), int(size[1]))
    else:
        hw = (int(size),) * 2
    if min(hw) <= 0:
        raise ValueError(f"bad input size {hw}")
    return hw


def _normalisation(preprocessor: Mapping[str, Any], channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """mean/std on ``[0,1]`` images equivalent to the processor's rescale + normalise."""
    # The processor maps a 0-255 pixel p to (p * factor - mean) / std; on x = p / 255 that is
    # (x - mean / (255 factor)) / (std / (255 factor)).
    factor = float(preprocessor.get("rescale_factor", 1 / 255)) if preprocessor.get("do_rescale", True) else 1.0
    scale = 255.0 * factor
    if preprocessor.get("do_normalize", True):
        mean = _per_channel(preprocessor.get("image_mean", 0.5), channels, "image_mean")
        std = _per_channel(preprocessor.get("image_std", 0.5), channels, "image_std")
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    if scale <= 0 or any(s <= 0 for s in std):
        raise ValueError("image_std and rescale_factor must be positive")
    return tuple(m / scale for m in mean), tuple(s / scale for s in std)


def _per_channel(values: Any, channels: int, what: str) -> tuple[float, ...]:
    if isinstance(values, (int, float)):
        return (float(values),) * channels
    numbers = tuple(float(v) for v in values)
    if len(numbers) == channels:
        return numbers
    if channels == 1 and len(numbers) == 3:
        return (sum(numbers) / 3.0,)
    raise ValueError(f"{what} has {len(numbers)} entries for {channels} channels")


def load_transformers_model(*, config: Mapping[str, Any], preprocessor: Mapping[str, Any], weights: Weights) -> TaskModel:
    """Build the model from its config and load ``weights`` with strict key checks.

    The model is first built on the ``meta`` device, which costs no memory: a config describing more
    parameters than its weights hold is refused before a byte is allocated. transformers' own loader
    then does the loading, because it renames keys between on-disk and in-memory layouts; what it would
    silently re-initialise (missing keys) is refused here.
    """
    spec = transformers_spec(config=config, preprocessor=preprocessor)
    try:
        hf_config = CONFIG_MAPPING[spec.extra["model_type"]].from_dict(dict(config))
        model_class = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING[type(hf_config)]
        with torch.device("meta"), _quiet():
            skeleton = model_class(hf_config)
    except (KeyError, TypeError, ValueError, AttributeError, AssertionError, RuntimeError) as error:
        raise CheckpointError(f"transformers cannot read this config: {error!r}", reason="bad_config") from error
    wanted = sum(parameter.numel() for parameter in skeleton.parameters())
    if wanted > weights.total_values:
        raise CheckpointError(
            f"the config describes {wanted} parameters, the weights hold {weights.total_values} values",
            reason="shape_mismatch",
        )
    # transformers reads exactly the tensors checked here, from a private copy written one shard at a time.
    with tempfile.TemporaryDirectory() as scratch, _quiet():
        for path, shard in weights.shards():
            name = SAFETENSORS_NAME if weights.index is None else path.name
            save_file({k: v.contiguous() for k, v in shard.items()}, str(Path(scratch) / name), metadata={"format": "pt"})
            del shard
        if weights.index is not None:
            shutil.copyfile(weights.index, Path(scratch) / weights.index.name)
        try:
            network, info = model_class.from_pretrained(
                scratch,
                config=hf_config,
                local_files_only=True,
                use_safetensors=True,
                dtype=torch.float32,
                output_loading_info=True,
            )
        except RuntimeError as error:
            raise CheckpointError(f"weights do not fit the config: {error}", reason="shape_mismatch") from error
        except (TypeError, ValueError, AssertionError, AttributeError, KeyError, ImportError, OSError) as error:
            # e.g. a quantization_config naming a backend that is not installed
            raise CheckpointError(f"transformers cannot build {spec.architecture}: {error!r}", reason="bad_config") from error
    _refuse_partial_load(info)
    network.eval()
    head_names, feature_dim = _head(network, spec.num_classes)
    spec = replace(
        spec,
        head_names=head_names,
        feature_dim=feature_dim,
        param_count=sum(p.numel() for p in network.parameters()),
    )
    return TaskModel(network=network, spec=spec, logits_fn=output_logits)


def _refuse_partial_load(info: Mapping[str, Any]) -> None:
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(info.get("unexpected_keys", ()))
    mismatched = sorted(str(k) for k in info.get("mismatched_keys", ()))
    problems = [(label, keys) for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)) if keys]
    if problems or info.get("error_msgs"):
        detail = "; ".join(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}" for label, keys in problems)
        raise CheckpointError(f"weights do not fit the config ({detail or info['error_msgs'][0]})", reason="shape_mismatch")


def _head(network: nn.Module, num_classes: int) -> tuple[tuple[str, ...], int]:
    """Parameter names of the classifier head and its input width.

    The head is the top-level submodule holding the last ``Linear`` with one output per label
    (``classifier`` for most models; its parameters are ``classifier.1.*`` for ResNet).
    """
    linear_name, linear = None, None
    for name, module in network.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_classes:
            linear_name, linear = name, module
    if linear is None or linear_name is None:
        raise CheckpointError(f"no {num_classes}-way linear head in {type(network).__name__}", reason="bad_config")
    top = linear_name.split(".")[0]
    names = tuple(name for name, _ in network.named_parameters() if name == top or name.startswith(top + "."))
    return names, linear.in_features


def output_logits(output: Any) -> torch.Tensor:
    """The logits tensor of a transformers image-classification output (a TaskModel ``logits_fn``)."""
    return output.logits


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence transformers' progress bars and load reports; freehub reports problems itself."""
    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()

