"""FREE on a registry: the glue between the model registry, the data sources and the trainer.

``meta_train`` is what ``freehub meta-train`` runs and what a notebook calls::

    from freehub import meta_train, MetaTrainConfig
    run = meta_train(registry="~/.cache/freehub/registry", out_dir="runs/free",
                     config=MetaTrainConfig(iterations=40), val_data="glyphs")
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from freehub.data import ImageSet, load_glyphs, load_hf_dataset, load_image_folder
from freehub.errors import ConfigError, DataError, RegistryError
from freehub.free.config import MetaTrainConfig
from freehub.free.trainer import MetaTrainResult
from freehub.free.trainer import meta_train as _train_on_teachers
from freehub.registry import Registry
from freehub.task_model import TaskModel

_PRESETS = {"cpu": MetaTrainConfig, "paper": MetaTrainConfig.paper}


def load_config(*, path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> MetaTrainConfig:
    """A config from an optional YAML file (``preset: cpu|paper`` plus any config keys), then overrides.

    ``None`` values in ``overrides`` mean "not given" and leave the file's or the preset's value.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except OSError as error:
            raise ConfigError(f"cannot read config {path}: {error.strerror}") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"config {path} is not valid YAML: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of settings")
        values.update(loaded)
    values.update({key: value for key, value in (overrides or {}).items() if value is not None})
    preset = values.pop("preset", "cpu")
    if preset not in _PRESETS:
        raise ConfigError(f"unknown preset {preset!r}: choose one of {', '.join(_PRESETS)}")
    base = _PRESETS[preset]().to_dict()
    unknown = sorted(set(values) - set(base))
    if unknown:
        raise ConfigError(f"unknown meta-train config keys: {', '.join(unknown)}")
    config = MetaTrainConfig.from_dict({**base, **values})
    config.validate()
    return config


def load_val_data(*, spec: str, size: int, seed: int = 0) -> ImageSet:
    """The meta-validation classes named by ``spec``: ``glyphs`` (the embedded set), a folder with a
    sub-folder per class, or ``hf:PATH_OR_ID`` for a `datasets` data set. Only the val split is used:
    the test split stays untouched until evaluation."""
    if spec == "glyphs":
        return load_glyphs(size=size, seed=seed).val
    if spec.startswith("hf:"):
        return load_hf_dataset(path=spec[3:], size=size, seed=seed).val
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise DataError(f"--val-data {spec!r} is neither 'glyphs', 'hf:NAME' nor an image folder")
    return load_image_folder(root=folder, size=size, seed=seed).val


def registry_teachers(*, registry: Registry, n_way: int) -> list[TaskModel]:
    """Every current registry model as ``n_way``-class task heads, in a stable order."""
    teachers = list(registry.task_heads(n_way=n_way))
    if not teachers:
        raise RegistryError(
            f"the registry at {registry.root} has no model with {n_way} or more classes: run `freehub collect` first"
        )
    return teachers


def meta_train(
    *,
    registry: Registry | str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str],
    config: MetaTrainConfig | None = None,
    val_data: str | ImageSet | None = None,
    resume: bool = False,
    progress: bool = True,
) -> MetaTrainResult:
    """Run FREE on every model of ``registry`` (default location when ``None``) into ``out_dir``."""
    config = config or MetaTrainConfig()
    config.validate()
    opened = registry if isinstance(registry, Registry) else Registry.open(registry)
    try:
        teachers = registry_teachers(registry=opened, n_way=config.n_way)
    finally:
        if opened is not registry:
            opened.close()
    if isinstance(val_data, str):
        val_data = load_val_data(spec=val_data, size=config.image_size, seed=config.seed)
    return _train_on_teachers(
        teachers=teachers, config=config, out_dir=Path(out_dir), val_data=val_data, resume=resume, progress=progress
    )
