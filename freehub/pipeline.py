"""The whole path on the embedded default, end to end: what ``freehub demo`` (and ``make demo``) runs.

glyph set -> teacher zoo on a local folder Hub -> collect into a registry -> FREE meta-training ->
few-shot accuracy on the held-out meta-test alphabets, beside a randomly initialised learner.
Each stage is resumable: a rerun reuses the zoo and the registry it finds and continues the
meta-training run from its last checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from freehub.atomic import atomic_write_text
from freehub.collect import collect
from freehub.data import load_glyphs
from freehub.free.config import MetaTrainConfig
from freehub.free.fewshot import FewShotResult, evaluate_fewshot
from freehub.free.learners import build_learner
from freehub.hub import LocalHub
from freehub.meta import meta_train
from freehub.registry import Registry
from freehub.zoo import build_zoo

DEMO_ORG = "freehub-demo"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoSettings:
    """How big the demo is. The defaults fit a laptop CPU in well under half an hour."""

    seed: int = 0
    size: int = 32
    teachers: int = 24
    iterations: int | None = None  # None: MetaTrainConfig's CPU default
    eval_episodes: int = 200
    shots: tuple[int, ...] = (1, 5)


@dataclass(frozen=True)
class DemoRow:
    """One line of the final table: a learner's meta-test accuracy in one setting."""

    learner: str
    n_way: int
    k_shot: int
    mean: float
    ci95: float
    episodes: int


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its stages, and the meta-test table."""

    out: Path
    teachers: int
    collected: int
    run_dir: Path
    rows: tuple[DemoRow, ...]
    seconds: float

    def table(self) -> str:
        """The meta-test table as plain text."""
        lines = [f"{'learner':<22} {'setting':<14} {'accuracy':>18}"]
        for row in self.rows:
            setting = f"{row.n_way}-way {row.k_shot}-shot"
            lines.append(f"{row.learner:<22} {setting:<14} {100 * row.mean:>8.2f} +/- {100 * row.ci95:.2f}%")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["out"], data["run_dir"] = str(self.out), str(self.run_dir)
        return data


def run_demo(*, out: Path, settings: DemoSettings = DemoSettings(), progress: bool = True) -> DemoResult:
    """Run every stage on the embedded glyph set into ``out`` and report meta-test accuracy."""
    start = time.perf_counter()
    out = Path(out)
    data = load_glyphs(size=settings.size, seed=settings.seed, progress=progress)
    hub = LocalHub(root=out / "hub")
    published = list(hub.search(author=DEMO_ORG, tags=("few-shot",)))
    if len(published) < settings.teachers:
        log.info(f"[1/4] training {settings.teachers} teachers into {hub.location}")
        build_zoo(hub=hub, org=DEMO_ORG, teachers=settings.teachers, seed=settings.seed, size=settings.size, progress=progress)
    else:
        log.info(f"[1/4] reusing the {len(published)} teachers in {hub.location}")
    log.info("[2/4] collecting them into the registry")
    with Registry.open(out / "registry") as registry:
        report = collect(hub=hub, registry=registry, tags=("few-shot",), author=DEMO_ORG, progress=progress)
        log.info(report.summary())
        collected = len(registry.list())
        config = MetaTrainConfig(seed=settings.seed, image_size=settings.size)
        if settings.iterations is not None:
            config = replace(config, iterations=settings.iterations)
        run_dir = out / "run"
        log.info(f"[3/4] meta-training with FREE into {run_dir}")
        run = meta_train(
            registry=registry,
            out_dir=run_dir,
            config=config,
            val_data=data.val,
            resume=(run_dir / "checkpoint.pt").exists(),
            progress=progress,
        )
    log.info(f"[4/4] evaluating on {data.test.num_classes} meta-test classes")
    torch.manual_seed(settings.seed)
    baseline = build_learner(spec=run.learner.spec)
    rows = []
    for name, learner in (("FREE (this run)", run.learner), ("random init", baseline)):
        for k_shot in settings.shots:
            result: FewShotResult = evaluate_fewshot(
                learner=learner,
                data=data.test,
                n_way=config.n_way,
                k_shot=k_shot,
                episodes=settings.eval_episodes,
                seed=settings.seed,
            )
            rows.append(DemoRow(name, config.n_way, k_shot, result.mean, result.ci95, result.n_episodes))
    result = DemoResult(
        out=out, teachers=settings.teachers, collected=collected, run_dir=run.run_dir, rows=tuple(rows),
        seconds=time.perf_counter() - start,
    )
    atomic_write_text(out / "demo.json", json.dumps(result.to_dict(), indent=2))
    return result

