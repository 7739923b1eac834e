"""A meta-training run directory built in milliseconds, laid out exactly as the trainer, meta-train and
evaluate leave one: learner/, config.json, metrics.jsonl, grids/, sources.json, evaluations.json."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from freehub.data import save_grid
from freehub.evaluate import learner_sha256
from freehub.free import MetaTrainConfig
from freehub.free.learners import LearnerSpec, build_learner, save_learner
from freehub.sources import RunSources, SkippedSource, SourceModel, TeacherSource

SHA_A = "a" * 40
SHA_B = "b" * 40
SOURCES = RunSources(
    models=(
        SourceModel(repo_id="glyph-lab/glyphs-resnet-00", sha=SHA_A, library="timm", architecture="resnet18",
                    num_classes=5, label_names=("ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON"), license="apache-2.0"),
        SourceModel(repo_id="glyph-lab/glyphs-hf-vit-01", sha=SHA_B, library="transformers",
                    architecture="ViTForImageClassification", num_classes=10,
                    label_names=tuple(f"LETTER {i}" for i in range(10)), license="apache-2.0"),
    ),
    teachers=(
        TeacherSource(index=0, model=0, label_names=("ALPHA", "BETA", "GAMMA", "DELTA", "EPSILON")),
        TeacherSource(index=1, model=1, label_names=tuple(f"LETTER {i}" for i in range(5))),
        TeacherSource(index=2, model=1, label_names=tuple(f"LETTER {i}" for i in range(5, 10))),
    ),
    skipped=(SkippedSource(repo_id="glyph-lab/pickled", sha="c" * 40, reason="unsafe", message="weights only as pickle | .bin"),),
)


THIS_RUN = "<run>"
"""Stands for the run directory's path in an entry's ``model``; :func:`write_evaluations` fills it in."""


def evaluation(**overrides: Any) -> dict[str, Any]:
    """One evaluations.json entry as freehub.evaluate.save_evaluations writes it."""
    entry = {
        "model": THIS_RUN, "data": "glyphs", "split": "test", "n_way": 5, "k_shot": 1, "q_queries": 15,
        "episodes": 200, "seed": 0, "mean": 0.4615, "ci95": 0.0133, "method": "protonet", "bn_mode": "batch",
        "baseline": "random", "diff_mean": 0.0937, "diff_ci95": 0.0121,
    }
    entry.update(overrides)
    return entry


EVALUATIONS = [
    evaluation(),
    evaluation(k_shot=5, mean=0.6593, ci95=0.0138, diff_mean=0.1034, diff_ci95=0.0119),
    evaluation(model="random", mean=0.3678, ci95=0.0106, baseline=None, diff_mean=None, diff_ci95=None),
]


def write_evaluations(run_dir: Path, entries: list[dict[str, Any]]) -> None:
    """Write ``entries`` as ``run_dir/evaluations.json``, with :data:`THIS_RUN` replaced by ``run_dir``,
    measured on the run's current learner."""
    filled = [{**entry, "model": str(run_dir)} if isinstance(entry, dict) and entry.get("model") == THIS_RUN else entry for entry in entries]
    document = {"format": 1, "learner_sha256": learner_sha256(run_dir=run_dir), "evaluations": filled}
    (run_dir / "evaluations.json").write_text(json.dumps(document))


def make_run(
    run_dir: Path,
    *,
    spec: LearnerSpec | None = None,
    sources: RunSources | None = SOURCES,
    evaluations: list[dict[str, Any]] | None = EVALUATIONS,
    seed: int = 0,
) -> Path:
    """A run with a tiny learner selected on meta-validation at iteration 3."""
    spec = spec or LearnerSpec(backbone="conv4", algorithm="protonet", conv_width=8)
    torch.manual_seed(seed)
    learner = build_learner(spec=spec)
    save_learner(learner=learner, directory=run_dir / "learner", extra={"iteration": 3, "val_acc": 0.41, "val_ci95": 0.03})
    config = replace(MetaTrainConfig(), iterations=6, conv_width=spec.conv_width, algorithm=spec.algorithm, backbone=spec.backbone,
                     backbone_args=dict(spec.backbone_args))
    (run_dir / "config.json").write_text(json.dumps({**config.to_dict(), "resolved_device": "cpu"}))
    records = [{"iteration": i, "phase": "train"} for i in range(6)]
    for i, acc in ((1, 0.35), (3, 0.41), (5, 0.38)):
        records[i].update(val_acc=acc, val_ci95=0.03)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    generator = torch.Generator().manual_seed(seed)
    for iteration, teachers in ((0, (0, 1)), (5, (1, 2))):
        for teacher in teachers:
            save_grid(images=torch.rand(20, 3, 32, 32, generator=generator), nrow=5,
                      path=run_dir / "grids" / f"iter{iteration:05d}_teacher{teacher:04d}.png")
    if sources is not None:
        (run_dir / "sources.json").write_text(json.dumps(sources.to_dict()))
    if evaluations is not None:
        write_evaluations(run_dir, evaluations)
    return run_dir
