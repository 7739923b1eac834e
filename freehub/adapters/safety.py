"""Reading untrusted checkpoint files without trusting them.

Everything a Hub repo hands us goes through here before a library sees it: files are size-bounded,
configs must be JSON objects, weights come from safetensors (pickles only on explicit opt-in, and
then only through ``torch.load(weights_only=True)``), tensor shapes are read from the safetensors
headers so that a model can be checked against them before it is built, and every tensor must be
finite. Each refusal
is a :class:`~freehub.errors.CheckpointError` whose ``reason`` the registry records.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from freehub.errors import CheckpointError, UnsafeCheckpointError

DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
"""Largest single file a checkpoint may contain (512 MiB): far above any teacher, far below a disk."""

MAX_JSON_BYTES = 4 * 1024 * 1024
"""Largest JSON file (config, preprocessor, shard index) read: real ones are a few KiB."""

MAX_CLASSES = 100_000
"""Most classes a classifier may have (ImageNet-22k has 21,843)."""

MAX_INPUT_SIDE = 2048
"""Largest input height or width: every image a task model sees is resized to its input size."""

MAX_CHANNELS = 4
"""Most input channels (grey, RGB, RGBA)."""

MAX_LAYERS = 256
"""Most blocks a config may stack (the sum of a per-stage list): building the model costs time per block."""

MAX_CONFIG_INT = 65_536
"""Largest other integer a config may give (widths, head counts, patch sizes, label ids)."""

MAX_CONFIG_LIST = 1_024
"""Longest list a config may give outside its labels."""

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


def check_input_size(*, channels: int, height: int, width: int, num_classes: int) -> None:
    """Refuse input sizes and class counts beyond :data:`MAX_CHANNELS`, :data:`MAX_INPUT_SIDE`, :data:`MAX_CLASSES`.

    Raises ``ValueError``: callers turn it into their ``bad_config`` refusal.
    """
    if not 0 < channels <= MAX_CHANNELS:
        raise ValueError(f"{channels} input channels (at most {MAX_CHANNELS})")
    if not (0 < height <= MAX_INPUT_SIDE and 0 < width <= MAX_INPUT_SIDE):
        raise ValueError(f"input size {height}x{width} (each side at most {MAX_INPUT_SIDE})")
    if not 0 < num_classes <= MAX_CLASSES:
        raise ValueError(f"{num_classes} classes (at most {MAX_CLASSES})")


def check_config_numbers(*, config: Mapping[str, Any], layer_keys: frozenset[str], skip: frozenset[str]) -> None:
    """Refuse a config whose numbers would make building the model itself costly.

    Integers under ``layer_keys`` (a count or a per-stage list) may add up to :data:`MAX_LAYERS`; any
    other integer, at any depth, to :data:`MAX_CONFIG_INT`; lists hold at most :data:`MAX_CONFIG_LIST`
    items. Keys in ``skip`` (label maps) are checked elsewhere. Raises ``ValueError``.
    """

    def walk(value: Any, where: str) -> None:
        if isinstance(value, bool) or value is None or isinstance(value, (str, float)):
            return
        if isinstance(value, int):
            if abs(value) > MAX_CONFIG_INT:
                raise ValueError(f"{where} is {value} (at most {MAX_CONFIG_INT})")
        elif isinstance(value, (list, tuple)):
            if len(value) > MAX_CONFIG_LIST:
                raise ValueError(f"{where} has {len(value)} items (at most {MAX_CONFIG_LIST})")
            for item in value:
                walk(item, where)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if key not in skip:
                    walk(item, f"{where}.{key}" if where else str(key))

    walk(config, "")
    for key in layer_keys & set(config):
        value = config[key]
        items = value if isinstance(value, (list, tuple)) else [value]
        if not all(isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in items):
            raise ValueError(f"{key} must be a count or a list of counts")
        if sum(items) > MAX_LAYERS:
            raise ValueError(f"{key} adds up to {sum(items)} blocks (at most {MAX_LAYERS})")


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


@dataclass(frozen=True)
class Weights:
    """A checkpoint's weight files after the size and format checks, with every tensor's shape.

    ``shapes`` comes from the safetensors headers alone, so a model can be checked against it before
    any tensor is read or any memory is spent on building it; :meth:`shards` then reads the tensors
    one file at a time.
    """

    files: tuple[Path, ...]
    pickled: bool
    index: Path | None
    shapes: dict[str, tuple[int, ...]]
    _tensors: dict[str, torch.Tensor] | None = field(default=None, repr=False)

    @property
    def total_values(self) -> int:
        """How many numbers the weights hold altogether."""
        return sum(math.prod(shape) for shape in self.shapes.values())

    def shards(self) -> Iterator[tuple[Path, dict[str, torch.Tensor]]]:
        """``(file, tensors)`` of each weight file in turn, every tensor checked finite."""
        if self._tensors is not None:
            yield self.files[0], self._tensors
            return
        for path in self.files:
            tensors = _read_safetensors(path=path)
            check_finite(tensors=tensors)
            yield path, tensors


def open_weights(*, folder: Path, allow_pickle: bool = False, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Weights:
    """Check a checkpoint folder's weight files and read their tensor shapes.

    Safetensors shapes come from the file headers without reading a tensor; pickles (only when
    ``allow_pickle``) are loaded with ``torch.load(weights_only=True)``. Raises
    :class:`UnsafeCheckpointError` (``pickle_only``, ``unsafe_pickle``) or :class:`CheckpointError`
    (``no_weights``, ``too_large``, ``corrupt_weights``, ``non_finite``).
    """
    files, pickled = weight_files(folder=folder, max_file_bytes=max_file_bytes)
    for path in files:
        check_size(path=path, max_file_bytes=max_file_bytes)
    if pickled:
        tensors = _read_pickle(path=files[0], allow_pickle=allow_pickle)
        check_finite(tensors=tensors)
        shapes = {name: tuple(tensor.shape) for name, tensor in tensors.items()}
        return Weights(files=tuple(files), pickled=True, index=None, shapes=shapes, _tensors=tensors)
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        for name, shape in _header_shapes(path=path).items():
            if name in shapes:
                raise CheckpointError(f"tensor {name} appears in more than one shard", reason="corrupt_weights")
            shapes[name] = shape
    index = folder / SAFETENSORS_INDEX_NAME if len(files) > 1 or files[0].name != SAFETENSORS_NAME else None
    return Weights(files=tuple(files), pickled=False, index=index, shapes=shapes)


def _header_shapes(*, path: Path) -> dict[str, tuple[int, ...]]:
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {error}", reason="corrupt_weights") from error


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


def check_shapes_fit(*, expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> None:
    """Refuse weights whose names or shapes differ from those of the model the config describes.

    BatchNorm's ``num_batches_tracked`` counters may be absent: they play no part in inference.
    """
    missing = [k for k in expected if k not in found and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in found if k not in expected]
    shapes = [k for k in expected if k in found and tuple(expected[k]) != tuple(found[k])]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if keys:
                parts.append(f"{label}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}")
        raise CheckpointError("weights do not fit the config (" + "; ".join(parts) + ")", reason="shape_mismatch")
