"""Reading a meta-training run directory for publishing: its evaluations, its meta-val curve, its pictures.

A run directory holds ``config.json``, ``metrics.jsonl``, ``grids/*.png`` and ``learner/`` (see
:mod:`freehub.free.trainer`), ``sources.json`` (:mod:`freehub.sources`) and, once evaluated,
``evaluations.json`` (:func:`freehub.evaluate.save_evaluations`). That file may come from another
version or be edited by hand, so it is read here field by field, types and ranges included; a file
that does not check out is refused, never half-used.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from freehub.errors import ConfigError
from freehub.evaluate import EVALUATIONS_FORMAT, EVALUATIONS_NAME, Evaluation
from freehub.free.fewshot import METHODS as EVALUATION_METHODS

_MAX_BYTES = 16 * 1024 * 1024
_MAX_TEXT = 500
_SHA256 = re.compile(r"[0-9a-f]{64}")
_GRID = re.compile(r"iter(\d+)_teacher(\d+)\.png")


@dataclass(frozen=True)
class ValPoint:
    """One meta-validation measurement of the training run."""

    iteration: int
    accuracy: float
    ci95: float | None


def read_evaluations(*, run_dir: Path) -> tuple[Evaluation, ...] | None:
    """Every entry of ``run_dir/evaluations.json``, checked; ``None`` when the run has no such file.

    Raises :class:`ConfigError` naming the first entry and field that is not as specified.
    """
    path = Path(run_dir) / EVALUATIONS_NAME
    if not path.is_file():
        return None
    if path.stat().st_size > _MAX_BYTES:
        raise ConfigError(f"{path} is larger than {_MAX_BYTES} bytes")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ConfigError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict) or data.get("format") != EVALUATIONS_FORMAT or not isinstance(data.get("evaluations"), list):
        raise ConfigError(f"{path} must be an object with format {EVALUATIONS_FORMAT} and a list of evaluations")
    entries = []
    for index, item in enumerate(data["evaluations"]):
        try:
            entries.append(parse_evaluation(item))
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{path}: evaluation {index}: {error}") from error
    return tuple(entries)


def evaluated_learner_sha256(*, run_dir: Path) -> str | None:
    """The learner SHA-256 that ``run_dir/evaluations.json`` was measured on (``None``: no file or not recorded)."""
    path = Path(run_dir) / EVALUATIONS_NAME
    if not path.is_file():
        return None
    read_evaluations(run_dir=run_dir)  # refuses a file that does not check out
    value = json.loads(path.read_text(encoding="utf-8")).get("learner_sha256")
    if value is not None and not (isinstance(value, str) and _SHA256.fullmatch(value)):
        raise ConfigError(f"{path}: learner_sha256 must be 64 lowercase hex digits")
    return value


def parse_evaluation(item: Any) -> Evaluation:
    """One entry of evaluations.json, checked; raises ``KeyError``, ``TypeError`` or ``ValueError`` naming the field."""
    if not isinstance(item, dict):
        raise TypeError("not an object")
    method = _text(item, "method")
    if method not in EVALUATION_METHODS:
        raise ValueError(f"method must be one of {EVALUATION_METHODS}, got {method!r}")
    baseline = item.get("baseline")
    if baseline is not None:
        baseline = _text(item, "baseline")
    return Evaluation(
        model=_text(item, "model"),
        data=_text(item, "data"),
        split=_text(item, "split"),
        n_way=_integer(item, "n_way", minimum=2),
        k_shot=_integer(item, "k_shot", minimum=1),
        q_queries=_integer(item, "q_queries", minimum=1),
        episodes=_integer(item, "episodes", minimum=1),
        seed=_integer(item, "seed", minimum=0),
        mean=_fraction(item, "mean", low=0.0),
        ci95=_fraction(item, "ci95", low=0.0),
        method=method,
        bn_mode=_text(item, "bn_mode"),
        baseline=baseline,
        diff_mean=None if item.get("diff_mean") is None else _fraction(item, "diff_mean", low=-1.0),
        diff_ci95=None if item.get("diff_ci95") is None else _fraction(item, "diff_ci95", low=0.0),
    )


def _text(item: dict[str, Any], key: str) -> str:
    value = item[key]
    if not isinstance(value, str) or not value or len(value) > _MAX_TEXT or any(c in value for c in "\r\n\x00"):
        raise TypeError(f"{key} must be a one-line string of at most {_MAX_TEXT} characters")
    return value


def _integer(item: dict[str, Any], key: str, *, minimum: int) -> int:
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{key} must be an integer of at least {minimum}, got {value!r}")
    return value


def _fraction(item: dict[str, Any], key: str, *, low: float) -> float:
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= 1.0:
        raise ValueError(f"{key} must be a number in [{low:g}, 1], got {value!r}")
    return float(value)


def read_val_curve(*, run_dir: Path) -> tuple[ValPoint, ...]:
    """The meta-validation points of ``run_dir/metrics.jsonl`` in iteration order (lines without one are
    skipped), preceded by the learner's score right after prior distillation (iteration -1) when the run
    had that stage (``prior_distill.json``)."""
    points: dict[int, ValPoint] = {}
    prior = read_json_object(Path(run_dir) / "prior_distill.json")
    if _number(prior.get("val_acc")):
        ci95 = prior.get("val_ci95")
        points[-1] = ValPoint(iteration=-1, accuracy=float(prior["val_acc"]), ci95=float(ci95) if _number(ci95) else None)
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return tuple(points[key] for key in sorted(points))
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        iteration, accuracy, ci95 = record.get("iteration"), record.get("val_acc"), record.get("val_ci95")
        if isinstance(iteration, int) and _number(accuracy):
            points[iteration] = ValPoint(iteration=iteration, accuracy=float(accuracy), ci95=float(ci95) if _number(ci95) else None)
    return tuple(points[key] for key in sorted(points))


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def latest_grids(*, run_dir: Path, limit: int = 4) -> tuple[tuple[int, Path], ...]:
    """``(teacher index, path)`` of the recovered-image grids of the run's last pictured iteration, at most ``limit``."""
    folder = Path(run_dir) / "grids"
    if not folder.is_dir():
        return ()
    found: dict[int, list[tuple[int, Path]]] = {}
    for path in folder.iterdir():
        match = _GRID.fullmatch(path.name)
        if match and path.is_file() and not path.is_symlink():
            found.setdefault(int(match.group(1)), []).append((int(match.group(2)), path))
    if not found:
        return ()
    return tuple(sorted(found[max(found)])[:limit])


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ``{}`` when the file is missing, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
