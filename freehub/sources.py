"""The source models of a run: which registry models (repo, commit, license) meta-training learned from.

``freehub meta-train`` writes ``<run>/sources.json`` as it starts; ``freehub push`` reads it back to
list every source on the model card, fill ``base_model`` and derive the learner's license. The file
also maps each teacher index of the run (the number in ``grids/iter*_teacherNNNN.png``) to its
model and labels, and lists the repos the registry skipped, with why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from freehub.atomic import atomic_write_text
from freehub.errors import ConfigError
from freehub.free.teachers import TeacherInfo
from freehub.free.trainer import CHECKPOINT_NAME
from freehub.hub import is_repo_id
from freehub.registry import Registry

SOURCES_NAME = "sources.json"
SOURCES_FORMAT = 1
_MAX_BYTES = 16 * 1024 * 1024
_MAX_TEXT = 2000
_SHA = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True)
class SourceModel:
    """One registry model version a run learned from."""

    repo_id: str
    sha: str
    library: str
    architecture: str
    num_classes: int
    label_names: tuple[str, ...]
    license: str | None


@dataclass(frozen=True)
class TeacherSource:
    """Teacher ``index`` of the run: ``label_names`` of ``models[model]`` (a slice of its head, or all of it)."""

    index: int
    model: int
    label_names: tuple[str, ...]


@dataclass(frozen=True)
class SkippedSource:
    """A repo revision the registry did not take, with its reason key and message."""

    repo_id: str
    sha: str
    reason: str
    message: str


@dataclass(frozen=True)
class RunSources:
    """Everything ``sources.json`` holds."""

    models: tuple[SourceModel, ...]
    teachers: tuple[TeacherSource, ...]
    skipped: tuple[SkippedSource, ...]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document of ``sources.json``."""
        return {"format": SOURCES_FORMAT, **asdict(self)}


def run_sources(*, registry: Registry, teachers: Sequence[TeacherInfo]) -> RunSources:
    """The registry models behind ``teachers`` (as :func:`freehub.meta.registry_teachers` describes them) and the skipped repos."""
    models: list[SourceModel] = []
    positions: dict[str, int] = {}
    mapped: list[TeacherSource] = []
    for index, teacher in enumerate(teachers):
        registry_id = teacher.registry_id
        if registry_id is None:
            raise ConfigError(f"teacher {index} does not come from a registry: its sources cannot be listed")
        if registry_id not in positions:
            record = registry.get(registry_id)
            positions[registry_id] = len(models)
            models.append(
                SourceModel(
                    repo_id=record.repo_id,
                    sha=record.sha,
                    library=record.library,
                    architecture=record.architecture,
                    num_classes=record.num_classes,
                    label_names=record.label_names,
                    license=record.license,
                )
            )
        mapped.append(TeacherSource(index=index, model=positions[registry_id], label_names=tuple(teacher.label_names)))
    skipped = tuple(
        SkippedSource(repo_id=skip.repo_id, sha=skip.sha, reason=skip.reason, message=skip.message)
        for skip in registry.skipped()
    )
    return RunSources(models=tuple(models), teachers=tuple(mapped), skipped=skipped)


def write_sources(*, run_dir: Path, registry: Registry, teachers: Sequence[TeacherInfo], resume: bool = False) -> Path | None:
    """Write ``run_dir/sources.json`` for a run about to train on ``teachers``; returns its path.

    A folder that already holds a run is left alone unless ``resume``: the trainer refuses to
    overwrite it, and its file must keep describing the run that is there (returns ``None``).
    """
    run_dir = Path(run_dir)
    if (run_dir / CHECKPOINT_NAME).exists() and not resume:
        return None
    sources = run_sources(registry=registry, teachers=teachers)
    path = run_dir / SOURCES_NAME
    atomic_write_text(path, json.dumps(sources.to_dict(), indent=2, ensure_ascii=False) + "\n")
    return path


def read_sources(*, run_dir: Path) -> RunSources | None:
    """``run_dir/sources.json`` checked field by field; ``None`` when the run has none.

    Raises :class:`ConfigError` for a file that is not what :func:`write_sources` writes.
    """
    path = Path(run_dir) / SOURCES_NAME
    if not path.is_file():
        return None
    if path.stat().st_size > _MAX_BYTES:
        raise ConfigError(f"{path} is larger than {_MAX_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from error
    try:
        return _parse(data)
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{path} is malformed: {error}") from error


def _parse(data: Any) -> RunSources:
    if not isinstance(data, dict) or data.get("format") != SOURCES_FORMAT:
        raise ValueError(f"expected an object with format {SOURCES_FORMAT}")
    models = tuple(
        SourceModel(
            repo_id=_repo_id(item["repo_id"]),
            sha=_sha(item["sha"]),
            library=_text(item["library"]),
            architecture=_text(item["architecture"]),
            num_classes=_count(item["num_classes"]),
            label_names=_texts(item["label_names"]),
            license=None if item.get("license") is None else _text(item["license"]),
        )
        for item in _objects(data["models"])
    )
    teachers = tuple(
        TeacherSource(index=_count(item["index"], minimum=0), model=_index(item["model"], len(models)), label_names=_texts(item["label_names"]))
        for item in _objects(data.get("teachers", []))
    )
    skipped = tuple(
        SkippedSource(repo_id=_repo_id(item["repo_id"]), sha=_text(item["sha"]), reason=_text(item["reason"]), message=_text(item["message"]))
        for item in _objects(data.get("skipped", []))
    )
    return RunSources(models=models, teachers=teachers, skipped=skipped)


def _objects(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise TypeError("expected a list of objects")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or len(value) > _MAX_TEXT:
        raise TypeError(f"expected a string of at most {_MAX_TEXT} characters, got {type(value).__name__}")
    return value


def _texts(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError("expected a list of strings")
    return tuple(_text(item) for item in value)


def _count(value: Any, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"expected an integer of at least {minimum}, got {value!r}")
    return value


def _index(value: Any, size: int) -> int:
    index = _count(value, minimum=0)
    if index >= size:
        raise ValueError(f"model index {index} out of range")
    return index


def _repo_id(value: Any) -> str:
    if not is_repo_id(value):
        raise ValueError(f"not a repo id: {value!r}")
    return value


def _sha(value: Any) -> str:
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        raise ValueError(f"not a 40-character commit sha: {value!r}")
    return value
