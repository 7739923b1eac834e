"""One entry point from a checkpoint folder to a :class:`~freehub.task_model.TaskModel`.

The folder is whatever a Hub repo holds; which library it belongs to is read from its
``config.json``. Every file is read through :mod:`freehub.adapters.safety` first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from freehub.adapters import timm as timm_adapter
from freehub.adapters import transformers as transformers_adapter
from freehub.adapters.safety import DEFAULT_MAX_FILE_BYTES, open_weights, read_json_object
from freehub.errors import CheckpointError
from freehub.task_model import ModelSpec, TaskModel

CONFIG_NAME = "config.json"


def load_task_model(
    *, folder: Path, allow_pickle: bool = False, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
) -> TaskModel:
    """Load a timm or transformers checkpoint folder (native Hub layout) as a :class:`TaskModel` in eval mode.

    Nothing is downloaded and no repo code runs. Every number of the configs that sizes memory is
    bounded, and the model is checked against the weights' shapes before it is built for real (see
    :mod:`freehub.adapters.safety`). Weights come from safetensors; a folder with only
    pickled weights is refused unless ``allow_pickle``, and even then is read with
    ``torch.load(weights_only=True)``. Raises :class:`~freehub.errors.CheckpointError` (or its
    subclass :class:`~freehub.errors.UnsafeCheckpointError`) whose ``reason`` names the problem:
    ``bad_config``, ``unknown_library``, ``unknown_architecture``, ``remote_code``, ``no_weights``,
    ``pickle_only``, ``unsafe_pickle``, ``corrupt_weights``, ``non_finite``, ``shape_mismatch``,
    ``too_large``.
    """
    folder = Path(folder)
    library, config, preprocessor = _read_configs(folder=folder, max_file_bytes=max_file_bytes)
    # Configs are checked before any weights are read: a refused repo costs no tensor I/O.
    if library == timm_adapter.LIBRARY:
        timm_adapter.timm_spec(config=config)
        weights = open_weights(folder=folder, allow_pickle=allow_pickle, max_file_bytes=max_file_bytes)
        return timm_adapter.load_timm_model(config=config, weights=weights)
    transformers_adapter.transformers_spec(config=config, preprocessor=preprocessor)
    weights = open_weights(folder=folder, allow_pickle=allow_pickle, max_file_bytes=max_file_bytes)
    return transformers_adapter.load_transformers_model(config=config, preprocessor=preprocessor, weights=weights)


def inspect_checkpoint(*, folder: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> ModelSpec:
    """What a checkpoint folder's configs say about it, without reading weights or building the model.

    ``head_names``, ``feature_dim`` and ``param_count`` stay empty: only :func:`load_task_model`
    knows them. Raises :class:`~freehub.errors.CheckpointError` like :func:`load_task_model` for
    config problems.
    """
    library, config, preprocessor = _read_configs(folder=Path(folder), max_file_bytes=max_file_bytes)
    if library == timm_adapter.LIBRARY:
        return timm_adapter.timm_spec(config=config)
    return transformers_adapter.transformers_spec(config=config, preprocessor=preprocessor)


def _read_configs(*, folder: Path, max_file_bytes: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
    if not folder.is_dir():
        raise CheckpointError(f"{folder} is not a checkpoint folder", reason="bad_config")
    config = read_json_object(path=folder / CONFIG_NAME, max_file_bytes=max_file_bytes)
    if timm_adapter.is_timm_config(config):
        return timm_adapter.LIBRARY, config, {}
    if transformers_adapter.is_transformers_config(config):
        preprocessor = read_json_object(path=folder / transformers_adapter.PREPROCESSOR_NAME, max_file_bytes=max_file_bytes)
        return transformers_adapter.LIBRARY, config, preprocessor
    raise CheckpointError("config.json is neither timm's nor transformers'", reason="unknown_library")
