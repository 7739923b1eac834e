"""Reading untrusted checkpoint files without trusting them.

Everything a Hub repo hands us goes through here before a library sees it: files are size-bounded,
configs must be JSON objects, weights come from safetensors (pickles only on explicit opt-in, and
then only through ``torch.load(weights_only=True)``), and every tensor must be finite. Each refusal
is a :class:`~freehub.errors.CheckpointError` whose ``reason`` the registry records.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from freehub.errors import CheckpointError, UnsafeCheckpointError

DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
"""Largest single file a checkpoint may contain (512 MiB): far above any teacher, far below a disk."""

MAX_JSON_BYTES = 4 * 1024 * 1024
"""Largest JSON file (config, preprocessor, shard index) read: real ones are a few KiB."""

SAFETENSORS_NAME = "model.safetensors"
SAFETENSORS_INDEX_NAME = "model.safetensors.index.json"
_PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt")


def check_size(*, path: Path, max_file_bytes: int) -> None:
    """Refuse a file larger than ``max_file_bytes`` (reason ``too_large``)."""
    size = path.stat().st_size
    if size > max_file_bytes:
        raise CheckpointError(f"{path.name} is {size} bytes, over the {max_file_bytes}-byte limit", reason="too_large")


def read_json_object(*, path: Path, max_file_bytes: int, reason: str = "bad_config") -> dict[str, Any]:
    """Parse a size-bounded JSON file that must hold an object; any failure raises with ``reason``."""
    if not path.is_file():
        raise CheckpointError(f"{path.name} is missing", reason=reason)
    check_size(path=path, max_file_bytes=min(max_file_bytes, MAX_JSON_BYTES))
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path.name} is not valid JSON: {error}", reason=reason) from error
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.name} must hold a JSON object, not {type(data).__name__}", reason=reason)
    return data


def weight_files(*, folder: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> tuple[list[Path], bool]:
    """The weight files of a checkpoint folder and whether they are pickles.

    safetensors wins whenever present (single file or a sharded index). Pickled files are
    returned only when nothing safer exists, flagged so the caller can refuse them.
    """
    single = folder / SAFETENSORS_NAME
    if single.is_file():
        return [single], False
    index = folder / SAFETENSORS_INDEX_NAME
    if index.is_file():
        return _shards_of(index=index, folder=folder, max_file_bytes=max_file_bytes), False
    pickles = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        return pickles[:1], True
    raise CheckpointError(f"no weight file in {folder.name} (expected {SAFETENSORS_NAME})", reason="no_weights")


def _shards_of(*, index: Path, folder: Path, max_file_bytes: int) -> list[Path]:
    data = read_json_object(path=index, max_file_bytes=max_file_bytes, reason="corrupt_weights")
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise CheckpointError(f"{index.name} has no weight_map", reason="corrupt_weights")
    names = sorted({str(name) for name in weight_map.values()})
    # A shard name is a bare file name beside the index: anything else could point outside the repo.
    if any(Path(name).name != name or not name.endswith(".safetensors") for name in names):
        raise CheckpointError(f"{index.name} names shards outside the checkpoint folder", reason="corrupt_weights")
    shards = [folder / name for name in names]
    missing = [p.name for p in shards if not p.is_file()]
    if missing:
        raise CheckpointError(f"missing weight shards: {', '.join(missing)}", reason="corrupt_weights")
    return shards


def read_weights(*, folder: Path, allow_pickle: bool = False, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> dict[str, torch.Tensor]:
    """Load every tensor of a checkpoint folder on the CPU, after the safety checks.

    Raises :class:`UnsafeCheckpointError` (``pickle_only``, ``unsafe_pickle``) or
    :class:`CheckpointError` (``no_weights``, ``too_large``, ``corrupt_weights``, ``non_finite``).
    """
    files, pickled = weight_files(folder=folder, max_file_bytes=max_file_bytes)
    for path in files:
        check_size(path=path, max_file_bytes=max_file_bytes)
    if pickled:
        tensors = _read_pickle(path=files[0], allow_pickle=allow_pickle)
    else:
        tensors = {}
        for path in files:
            tensors.update(_read_safetensors(path=path))
    check_finite(tensors=tensors)
    return tensors


def _read_safetensors(*, path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {error}", reason="corrupt_weights") from error


def _read_pickle(*, path: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if not allow_pickle:
        raise UnsafeCheckpointError(
            f"{path.name} is a pickle and the checkpoint has no safetensors weights (pass allow_pickle to load it "
            "with torch.load(weights_only=True))",
            reason="pickle_only",
        )
    try:
        # weights_only restricts unpickling to tensors and plain containers: no code runs.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(f"{path.name} holds more than tensors: {error}", reason="unsafe_pickle") from error
    except (EOFError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a readable torch file: {error}", reason="corrupt_weights") from error
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if not isinstance(data, Mapping) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in data.items()):
        raise CheckpointError(f"{path.name} is not a flat name -> tensor mapping", reason="corrupt_weights")
    return dict(data)


def check_finite(*, tensors: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights holding NaN or infinity (reason ``non_finite``)."""
    bad = [name for name, tensor in tensors.items() if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
    if bad:
        shown = ", ".join(bad[:3]) + (" ..." if len(bad) > 3 else "")
        raise CheckpointError(f"{len(bad)} weight tensors hold NaN or Inf: {shown}", reason="non_finite")


def check_state_dict_fits(*, expected: Mapping[str, torch.Tensor], found: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights whose names or shapes differ from the model built from the config.

    BatchNorm's ``num_batches_tracked`` counters may be absent: they play no part in inference.
    """
    missing = [k for k in expected if k not in found and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and tuple(expected[k].shape) != tuple(found[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}")
        raise CheckpointError("weights do not fit the config (" + "; ".join(parts) + ")", reason="shape_mismatch")
