"""`freehub evaluate`: the few-shot protocol on real held-out classes, for any learner and its baselines.

The protocol is FREE.md's: N-way K-shot episodes of the chosen split's classes, ``q_queries``
queries per class, mean accuracy and the 95% interval ``1.96 * std / sqrt(episodes)``. Every model
of one call sees the *same* episodes (they depend only on the data, the setting and the seed), so
two models can be compared episode by episode: with a baseline, each result also carries the mean
paired difference and its interval, which separates models whose own intervals overlap.

A model is named by a run directory (its selected learner), a learner folder, a published repo on
a Hub, or ``random``: a random initialisation of the same learner spec, seeded by the evaluation
seed (a different draw per seed, the same draw for every call with that seed).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from freehub.atomic import atomic_write_text
from freehub.data import ImageSet, SplitData, load_glyphs, load_hf_dataset, load_image_folder, read_hf_dataset, read_image_folder
from freehub.errors import ConfigError
from freehub.free.fewshot import evaluate_fewshot
from freehub.free.learners import LearnerSpec, MetaLearner, build_learner, load_learner

EVALUATIONS_NAME = "evaluations.json"
EVALUATIONS_FORMAT = 1
RANDOM = "random"
PIXELS = "pixels"
TEACHER_ENSEMBLE = "teacher-ensemble"
REFERENCES = (PIXELS, TEACHER_ENSEMBLE)
"""Training-free reference learners that :func:`load_model` builds by name."""
SPLITS = ("train", "val", "test", "all")
"""``all``: every class of a folder or `datasets` data set, for data from a domain no stage has seen."""


@dataclass(frozen=True)
class Evaluation:
    """One model in one N-way K-shot setting. Accuracies are fractions; ``ci95`` is a half-width.

    ``diff_mean`` / ``diff_ci95`` are the mean per-episode difference to ``baseline`` (this model
    minus the baseline) and its 95% interval, when a baseline was given.
    """

    model: str
    data: str
    split: str
    n_way: int
    k_shot: int
    q_queries: int
    episodes: int
    seed: int
    mean: float
    ci95: float
    method: str
    bn_mode: str
    baseline: str | None = None
    diff_mean: float | None = None
    diff_ci95: float | None = None

    def setting(self) -> str:
        """``5-way 1-shot``."""
        return f"{self.n_way}-way {self.k_shot}-shot"

    def same_protocol(self, other: Evaluation) -> bool:
        """Whether ``other`` was measured on the same episodes (only the model differs)."""
        keys = ("data", "split", "n_way", "k_shot", "q_queries", "episodes", "seed")
        return all(getattr(self, k) == getattr(other, k) for k in keys)


@dataclass(frozen=True)
class EvaluationRequest:
    """What to measure: the data, the settings, and how many episodes under which seed."""

    data: str = "glyphs"
    split: str = "test"
    n_way: int = 5
    shots: tuple[int, ...] = (1, 5)
    q_queries: int = 15
    episodes: int = 600
    seed: int = 0
    split_seed: int = 0

    def validate(self) -> None:
        """Raise :class:`ConfigError` for settings no episode can satisfy."""
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.n_way < 2:
            raise ConfigError(f"--way must be at least 2, got {self.n_way}")
        if not self.shots:
            raise ConfigError("give at least one --shot")
        for shot in self.shots:
            if shot < 1:
                raise ConfigError(f"--shot must be at least 1, got {shot}")
        if self.q_queries < 1:
            raise ConfigError(f"--queries must be at least 1, got {self.q_queries}")
        if self.episodes < 2:
            raise ConfigError(f"--episodes must be at least 2 (an interval needs a spread), got {self.episodes}")


def load_split(*, spec: str, split: str, size: int, seed: int = 0) -> ImageSet:
    """One split of the data named by ``spec``: ``glyphs``, an image folder (a sub-folder per class),
    or ``hf:PATH_OR_ID`` for a `datasets` data set; splits are by class, decided by ``seed``."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if split == "all":
        if spec == "glyphs":
            raise ConfigError("the glyph set's classes are split (the teachers learned its train split): choose train, val or test")
        if spec.startswith("hf:"):
            return read_hf_dataset(path=spec[3:], size=size)
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"data {spec!r} is neither 'glyphs', 'hf:NAME' nor an image folder")
        return read_image_folder(root=folder, size=size)
    data: SplitData
    if spec == "glyphs":
        data = load_glyphs(size=size, seed=seed)
    elif spec.startswith("hf:"):
        data = load_hf_dataset(path=spec[3:], size=size, seed=seed)
    else:
        folder = Path(spec).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"data {spec!r} is neither 'glyphs', 'hf:NAME' nor an image folder")
        data = load_image_folder(root=folder, size=size, seed=seed)
    return getattr(data, split)


def load_model(
    *, model: str, seed: int = 0, spec: LearnerSpec | None = None, hub: str | None = None, registry: str | os.PathLike[str] | None = None
) -> MetaLearner:
    """The learner named by ``model``: a run directory, a learner folder, a published repo, ``random``,
    or a training-free reference, ``pixels`` or ``teacher-ensemble`` (see :mod:`freehub.free.reference`).

    ``random`` builds ``spec`` (default: the CPU default learner) from ``torch.manual_seed(seed)``
    without touching the caller's RNG state. ``pixels`` works at ``spec``'s image size;
    ``teacher-ensemble`` uses every model of ``registry`` with 2 or more classes.
    """
    if model in REFERENCES:
        return _reference(name=model, spec=spec, registry=registry)
    if model == RANDOM:
        from freehub.free.config import MetaTrainConfig

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return build_learner(spec=spec or MetaTrainConfig().learner_spec())
    path = Path(model).expanduser()
    if path.is_dir():
        learner_dir = path / "learner" if (path / "learner").is_dir() else path
        if (learner_dir / "learner.json").is_file():
            return load_learner(directory=learner_dir)
        if (path / "config.json").is_file() and (path / "model.safetensors").is_file():
            return _load_published(source=str(path), hub=hub)
        raise ConfigError(f"{model} holds no learner: expected a run directory (learner/learner.json) or a learner folder")
    if "/" in model and not model.startswith((".", "/", "~")) and model.count("/") == 1:
        return _load_published(source=model, hub=hub)
    raise ConfigError(f"no such model {model!r}: give a run directory, a learner folder, ORG/NAME on a Hub, 'random', 'pixels' or 'teacher-ensemble'")


def _reference(*, name: str, spec: LearnerSpec | None, registry: str | os.PathLike[str] | None) -> MetaLearner:
    from freehub.free.config import MetaTrainConfig
    from freehub.free.reference import PixelPrototypes, TeacherEnsemble

    size = (spec or MetaTrainConfig().learner_spec()).image_size
    if name == PIXELS:
        return PixelPrototypes(image_size=size)  # type: ignore[return-value]
    if registry is None:
        raise ConfigError("'teacher-ensemble' needs --registry: the registry whose models it puts together")
    from freehub.registry import Registry

    if not Path(registry).expanduser().is_dir():
        raise ConfigError(f"no registry at {registry}: run `freehub collect --registry {registry}` first")
    with Registry.open(Path(registry).expanduser()) as opened:
        teachers = [model for model in opened.task_models() if model.num_classes >= 2]
    if not teachers:
        raise ConfigError(f"the registry at {registry} has no model with 2 or more classes: run `freehub collect` first")
    return TeacherEnsemble(teachers=teachers, image_size=size)  # type: ignore[return-value]


def _load_published(*, source: str, hub: str | None) -> MetaLearner:
    from freehub.pretrained import FewShotLearner

    return FewShotLearner.from_pretrained(source, hub=hub).learner


def learner_spec_of(*, run_dir: str | os.PathLike[str]) -> LearnerSpec:
    """The learner spec a run directory (or a learner folder) records, for ``random`` of the same shape."""
    path = Path(run_dir).expanduser()
    for candidate in (path / "learner" / "learner.json", path / "learner.json"):
        if candidate.is_file():
            return LearnerSpec.from_dict(json.loads(candidate.read_text(encoding="utf-8"))["spec"])
    raise ConfigError(f"--spec {run_dir}: no learner.json found there")


def evaluate_models(*, models: dict[str, MetaLearner], data: ImageSet, request: EvaluationRequest, baseline: str | None = None) -> list[Evaluation]:
    """Score every model in every ``request.shots`` setting on one shared set of episodes per setting.

    ``baseline`` names one of ``models``; every other model's results then carry the paired
    per-episode difference to it.
    """
    request.validate()
    if baseline is not None and baseline not in models:
        raise ConfigError(f"baseline {baseline!r} is not among the evaluated models")
    if data.num_classes < request.n_way:
        raise ConfigError(f"the {request.split} split has {data.num_classes} classes: a {request.n_way}-way episode needs more")
    per_class = int(torch.bincount(data.labels, minlength=data.num_classes).min())
    largest = max(request.shots) + request.q_queries
    if per_class < largest:
        raise ConfigError(f"the smallest class holds {per_class} images: {max(request.shots)}-shot with {request.q_queries} queries needs {largest}")
    results: list[Evaluation] = []
    for k_shot in request.shots:
        raw = {
            name: evaluate_fewshot(
                learner=learner, data=data, n_way=request.n_way, k_shot=k_shot, episodes=request.episodes,
                q_queries=request.q_queries, seed=request.seed,
            )
            for name, learner in models.items()
        }
        for name, result in raw.items():
            diff_mean = diff_ci95 = None
            if baseline is not None and name != baseline:
                diff_mean, diff_ci95 = paired_difference(result.accuracies, raw[baseline].accuracies)
            results.append(
                Evaluation(
                    model=name, data=_data_name(request.data), split=request.split, n_way=request.n_way, k_shot=k_shot,
                    q_queries=request.q_queries, episodes=request.episodes, seed=request.seed, mean=result.mean,
                    ci95=result.ci95, method=result.method, bn_mode=result.bn_mode,
                    baseline=baseline if diff_mean is not None else None, diff_mean=diff_mean, diff_ci95=diff_ci95,
                )
            )
    return results


def paired_difference(scores: Sequence[float], baseline: Sequence[float]) -> tuple[float, float]:
    """Mean of ``scores[i] - baseline[i]`` and its 95% interval half-width (same episodes, same order)."""
    if len(scores) != len(baseline) or len(scores) < 2:
        raise ConfigError("a paired difference needs the same two or more episodes for both models")
    diffs = torch.tensor(scores, dtype=torch.float64) - torch.tensor(baseline, dtype=torch.float64)
    return float(diffs.mean()), 1.96 * float(diffs.std(unbiased=False)) / math.sqrt(len(diffs))


def _data_name(spec: str) -> str:
    if spec == "glyphs" or spec.startswith("hf:"):
        return spec
    return Path(spec).expanduser().name or spec


def save_evaluations(*, run_dir: str | os.PathLike[str], evaluations: Sequence[Evaluation]) -> Path:
    """Merge ``evaluations`` into ``run_dir/evaluations.json``; a result on the same protocol replaces the old one.

    The file records the SHA-256 of the run's learner weights it was measured on. When the learner
    has changed since (a run extended with ``--resume``), the old entries describe another model and
    are dropped rather than merged.
    """
    from freehub.run_files import evaluated_learner_sha256  # it imports this module's names

    path = Path(run_dir) / EVALUATIONS_NAME
    current = learner_sha256(run_dir=run_dir)
    previous = load_evaluations(run_dir=run_dir) if evaluated_learner_sha256(run_dir=Path(run_dir)) == current else []
    kept = [e for e in previous if not any(e.same_protocol(n) and e.model == n.model for n in evaluations)]
    document = {"format": EVALUATIONS_FORMAT, "learner_sha256": current, "evaluations": [asdict(e) for e in [*kept, *evaluations]]}
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def learner_sha256(*, run_dir: str | os.PathLike[str]) -> str | None:
    """SHA-256 of the run's selected learner weights (``learner/learner.safetensors``), ``None`` without one."""
    weights = Path(run_dir) / "learner" / "learner.safetensors"
    if not weights.is_file():
        return None
    digest = hashlib.sha256()
    with weights.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_evaluations(*, run_dir: str | os.PathLike[str]) -> list[Evaluation]:
    """The evaluations stored in ``run_dir`` (empty when there are none), checked field by field."""
    from freehub.run_files import read_evaluations  # it imports this module's names

    return list(read_evaluations(run_dir=Path(run_dir)) or ())


def format_table(evaluations: Sequence[Evaluation]) -> str:
    """A plain-text table: model, setting, accuracy +/- interval, and the paired difference when present."""
    header = ("model", "setting", "accuracy", "vs baseline")
    rows = [header]
    for e in evaluations:
        diff = "" if e.diff_mean is None else f"{100 * e.diff_mean:+.2f} +/- {100 * (e.diff_ci95 or 0):.2f} vs {e.baseline}"
        rows.append((e.model, e.setting(), f"{100 * e.mean:.2f} +/- {100 * e.ci95:.2f}%", diff))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if evaluations:
        first = evaluations[0]
        lines.append(f"{first.data} {first.split} split, {first.episodes} episodes, {first.q_queries} queries per class, seed {first.seed}")
    return "\n".join(lines)


def evaluation_dicts(evaluations: Sequence[Evaluation]) -> list[dict[str, Any]]:
    """JSON-ready dicts, in order."""
    return [asdict(e) for e in evaluations]


__all__ = [
    "Evaluation",
    "EvaluationRequest",
    "evaluate_models",
    "evaluation_dicts",
    "format_table",
    "learner_spec_of",
    "load_evaluations",
    "load_model",
    "load_split",
    "paired_difference",
    "save_evaluations",
]
