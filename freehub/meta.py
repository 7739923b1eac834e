"""FREE on a registry: the glue between the model registry, the data sources and the trainer.

``meta_train`` is what ``freehub meta-train`` runs and what a notebook calls::

    from freehub import meta_train, MetaTrainConfig
    run = meta_train(registry="~/.cache/freehub/registry", out_dir="runs/free",
                     config=MetaTrainConfig(iterations=40), val_data="glyphs")
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from freehub.data import ImageSet, load_glyphs, load_hf_dataset, load_image_folder
from freehub.errors import ConfigError, DataError, RegistryError
from freehub.free.config import MetaTrainConfig
from freehub.free.distributed import World, joined_world
from freehub.free.trainer import MetaTrainResult
from freehub.free.trainer import meta_train as _train_on_teachers
from freehub.free.teachers import DEFAULT_CACHE_MB, TeacherCache, TeacherInfo, TeacherPool
from freehub.registry import ModelRecord, Registry, load_record
from freehub.sources import write_sources

_PRESETS = {"cpu": MetaTrainConfig, "paper": MetaTrainConfig.paper}
ORACLE_CLASSES = ("all", "teachers")


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
    the test split stays untouched until evaluation. ``seed`` is the class split's seed, which must
    be the one the teachers' classes were drawn from (0 for the embedded zoo)."""
    return _load_split(spec=spec, size=size, seed=seed, split="val", option="--val-data")


def load_oracle_data(*, spec: str, size: int, seed: int = 0, classes: str = "all", teachers: Sequence[TeacherInfo] = ()) -> ImageSet:
    """Real images of the meta-TRAIN classes for the data oracle: all of them, or (``classes="teachers"``)
    only those whose names are labels of ``teachers``, the fair ceiling of what the teachers know."""
    if classes not in ORACLE_CLASSES:
        raise ConfigError(f"--oracle-classes must be one of {', '.join(ORACLE_CLASSES)}, got {classes!r}")
    data = _load_split(spec=spec, size=size, seed=seed, split="train", option="--data-oracle")
    if classes == "all":
        return data
    known = {name for teacher in teachers for name in teacher.label_names}
    chosen = [i for i, name in enumerate(data.class_names) if name in known]
    if not chosen:
        raise DataError(f"no class of {spec!r} carries a label of the registry's teachers")
    return data.select_classes(chosen)


def _refuse_known_classes(*, val_data: ImageSet, teachers: Sequence[TeacherInfo]) -> None:
    """Meta-validation must be on classes no teacher was trained on, or selection rewards memorising them."""
    known = {name for teacher in teachers for name in teacher.label_names}
    shared = sorted(set(val_data.class_names) & known)
    if shared:
        raise ConfigError(
            f"{len(shared)} meta-validation classes are classes the teachers were trained on (e.g. {shared[0]!r}): "
            "use the class split the teachers came from (--split-seed; the embedded zoo uses 0)"
        )


def _load_split(*, spec: str, size: int, seed: int, split: str, option: str) -> ImageSet:
    if spec == "glyphs":
        return getattr(load_glyphs(size=size, seed=seed), split)
    if spec.startswith("hf:"):
        return getattr(load_hf_dataset(path=spec[3:], size=size, seed=seed), split)
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{option} {spec!r} is neither 'glyphs', 'hf:NAME' nor an image folder")
    return getattr(load_image_folder(root=folder, size=size, seed=seed), split)


def registry_teachers(*, registry: Registry, cache_mb: float = DEFAULT_CACHE_MB) -> TeacherPool:
    """Every current registry model with 2 or more classes as a lazily loaded pool, in a stable order.

    Only the index is read here: each model is built when a meta-batch draws it, and at most
    ``cache_mb`` MiB of built models are kept (see :class:`~freehub.free.teachers.TeacherCache`).
    """
    if cache_mb < 0:
        raise ConfigError(f"--teacher-cache-mb cannot be negative, got {cache_mb}")
    records = [record for record in registry.list() if record.num_classes >= 2]
    if not records:
        raise RegistryError(f"the registry at {registry.root} has no model with 2 or more classes: run `freehub collect` first")
    return TeacherPool(
        infos=[_info(record) for record in records],
        load=lambda index: load_record(record=records[index]),
        cache=TeacherCache(max_bytes=int(cache_mb * 2**20)),
    )


def _info(record: ModelRecord) -> TeacherInfo:
    return TeacherInfo(architecture=record.architecture, label_names=record.label_names, registry_id=record.id)


def meta_train(
    *,
    registry: Registry | str | os.PathLike[str] | None = None,
    out_dir: str | os.PathLike[str],
    config: MetaTrainConfig | None = None,
    val_data: str | ImageSet | None = None,
    oracle_data: str | ImageSet | None = None,
    oracle_classes: str = "all",
    split_seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    teacher_cache_mb: float = DEFAULT_CACHE_MB,
) -> MetaTrainResult:
    """Run FREE on every model of ``registry`` (default location when ``None``) into ``out_dir``.

    With ``oracle_data`` the same learner is meta-trained on real images of the meta-train classes
    instead (``config.recovery`` becomes ``"real"``): the data oracle every data-free result is
    measured against. ``split_seed`` fixes the class split of the data sets; the embedded zoo's
    teachers are trained on split 0's meta-train classes, so another split would validate on classes
    the teachers know. Teachers are built when drawn; at most ``teacher_cache_mb`` MiB of them are kept.

    Launched by torchrun, the call joins the process group torchrun describes (gloo on the CPU,
    nccl on CUDA) and shares the work among the ranks (:mod:`freehub.free.distributed`); rank 0's
    result is the run's, another rank's holds its last learner.
    """
    config = config or MetaTrainConfig()
    if oracle_data is not None:
        config = replace(config, recovery="real")
    config.validate()
    with joined_world(device_name=config.device) as world:
        return _train_on_registry(
            registry=registry, out_dir=Path(out_dir), config=config, val_data=val_data, oracle_data=oracle_data,
            oracle_classes=oracle_classes, split_seed=split_seed, resume=resume, progress=progress, world=world,
            teacher_cache_mb=teacher_cache_mb,
        )


def _train_on_registry(
    *,
    registry: Registry | str | os.PathLike[str] | None,
    out_dir: Path,
    config: MetaTrainConfig,
    val_data: str | ImageSet | None,
    oracle_data: str | ImageSet | None,
    oracle_classes: str,
    split_seed: int,
    resume: bool,
    progress: bool,
    world: World,
    teacher_cache_mb: float,
) -> MetaTrainResult:
    # Under torchrun every rank reads the registry (its own copy on its host) and rank 0 alone writes the run.
    opened = registry if isinstance(registry, Registry) else Registry.open(registry)
    try:
        teachers = registry_teachers(registry=opened, cache_mb=teacher_cache_mb)
        if world.is_main:
            write_sources(run_dir=out_dir, registry=opened, teachers=teachers.infos, resume=resume)
    finally:
        if opened is not registry:
            opened.close()
    if isinstance(val_data, str):
        val_data = load_val_data(spec=val_data, size=config.image_size, seed=split_seed)
    if val_data is not None:
        _refuse_known_classes(val_data=val_data, teachers=teachers.infos)
    if isinstance(oracle_data, str):
        oracle_data = load_oracle_data(spec=oracle_data, size=config.image_size, seed=split_seed, classes=oracle_classes, teachers=teachers.infos)
    return _train_on_teachers(
        teachers=teachers, config=config, out_dir=out_dir, val_data=val_data, real_data=oracle_data, resume=resume, progress=progress
    )
