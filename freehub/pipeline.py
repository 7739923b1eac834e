"""The whole path on the embedded default, as the real CLI commands a user would type: what
``freehub demo`` (and ``make demo``) runs.

    freehub zoo build   teachers trained on glyph classes, published to a local folder Hub
    freehub collect     the Hub crawled into a model registry
    freehub meta-train  FREE on the registry (selected on meta-val alphabets)
    freehub meta-train  the same learner on real images of the teachers' classes (the fair data oracle)
    freehub evaluate    FREE, the oracle, pixel prototypes (no training) and random initialisation on the
                        held-out meta-test alphabets
    freehub push        FREE's learner published to a local folder Hub with its model card

Each command is printed before it runs, so the demo teaches the commands. Every stage is
resumable: a rerun reuses the zoo and the registry it finds and resumes both training runs.
"""

from __future__ import annotations

import json
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from freehub.atomic import atomic_write_text
from freehub.evaluate import Evaluation, format_table, load_evaluations
from freehub.hub import LocalHub
from freehub.zoo import HUB_LIKE_TEACHERS

DEMO_ORG = "freehub-demo"
DEMO_REPO = f"{DEMO_ORG}/free-glyphs"


@dataclass(frozen=True)
class DemoSettings:
    """How big the demo is. The defaults fit a laptop CPU in about a quarter of an hour."""

    seed: int = 0
    teachers: int = 24
    iterations: int | None = None  # None: meta-train's CPU default
    eval_episodes: int = 600
    shots: tuple[int, ...] = (1, 5)
    config: Path | None = None  # a meta-train YAML for both runs (tests use a tiny one)
    zoo_steps: int | None = None
    # 2- and 3-class teachers and a whole-alphabet one, as a real Hub holds (see freehub.zoo).
    hub_like: bool = True
    # FREE's image prior and prior distillation (the demo's teachers read glyphs: pen strokes fit them).
    generator: str = "strokes"
    prior_distill_steps: int = 1500


@dataclass(frozen=True)
class DemoResult:
    """Where the demo wrote its stages, the commands it ran, and the meta-test table."""

    out: Path
    commands: tuple[str, ...]
    evaluations: tuple[Evaluation, ...]
    card: Path
    seconds: float
    skipped: tuple[str, ...] = field(default_factory=tuple)

    def table(self) -> str:
        """The meta-test table as plain text."""
        return format_table(self.evaluations)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "out": str(self.out),
            "commands": list(self.commands),
            "skipped": list(self.skipped),
            "evaluations": [asdict(e) for e in self.evaluations],
            "card": str(self.card),
            "seconds": self.seconds,
        }


def demo_commands(*, out: Path, settings: DemoSettings) -> list[list[str]]:
    """The CLI commands of the demo, in order (argument lists without the program name)."""
    out = Path(out)
    hub, registry, free, oracle = out / "hub", out / "registry", out / "free", out / "oracle"
    train_options = ["--registry", str(registry), "--val-data", "glyphs", "--seed", str(settings.seed), "--resume"]
    if settings.iterations is not None:
        train_options += ["--iterations", str(settings.iterations)]
    if settings.config is not None:
        train_options += ["--config", str(settings.config)]
    zoo = ["zoo", "build", "--hub", str(hub), "--org", DEMO_ORG, "--teachers", str(settings.teachers), "--seed", str(settings.seed)]
    if settings.zoo_steps is not None:
        zoo += ["--steps", str(settings.zoo_steps)]
    if settings.hub_like:
        zoo.append("--hub-like")
    shots = [option for shot in settings.shots for option in ("--shot", str(shot))]
    # The oracle is FREE's learner trained on real images, metric included: with the prior stage FREE's
    # learner compares by cosine (learner_metric auto), and so must the ceiling it is measured against.
    oracle_metric = ["--learner-metric", "cosine" if settings.prior_distill_steps else "euclidean"]
    return [
        zoo,
        ["collect", "--hub", str(hub), "--registry", str(registry), "--author", DEMO_ORG],
        ["meta-train", "--out", str(free), *train_options, "--generator", settings.generator, "--prior-distill-steps", str(settings.prior_distill_steps)],
        ["meta-train", "--out", str(oracle), *train_options, "--data-oracle", "glyphs", "--oracle-classes", "teachers", *oracle_metric],
        ["evaluate", "--model", str(free), "--model", str(oracle), "--model", "pixels", "--model", "teacher-ensemble", "--registry", str(registry),
         "--baseline", "random", "--spec", str(free),
         *shots, "--episodes", str(settings.eval_episodes), "--seed", str(settings.seed), "--save"],
        ["push", "--model", str(free), "--repo", DEMO_REPO, "--hub", str(out / "published"), "--force"],
    ]


def run_demo(
    *, out: Path, settings: DemoSettings = DemoSettings(), run: Callable[[Sequence[str]], None] | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run every demo command into ``out`` (``run`` executes one CLI command; default: in this process).

    A zoo already complete in ``out/hub`` is reused instead of rebuilt.
    """
    start = time.perf_counter()
    out = Path(out)
    run = run or _run_in_process
    ran, skipped = [], []
    zoo_size = settings.teachers + (HUB_LIKE_TEACHERS if settings.hub_like else 0)
    for argv in demo_commands(out=out, settings=settings):
        line = "freehub " + shlex.join(argv)
        if argv[:2] == ["zoo", "build"] and _zoo_complete(hub=out / "hub", teachers=zoo_size):
            echo(f"# the zoo in {out / 'hub'} is complete, skipping: {line}")
            skipped.append(line)
            continue
        echo(f"$ {line}")
        run(argv)
        ran.append(line)
    free = out / "free"
    names = {
        str(free): "FREE (this run)", str(out / "oracle"): "data oracle (teachers' classes, real images)", "pixels": "pixel prototypes (no training)",
        "teacher-ensemble": "teacher ensemble (no training)",
    }
    # `evaluate --save` stores the whole comparison (FREE, oracle, pixels, random) in each run it evaluated.
    evaluations = load_evaluations(run_dir=free)
    result = DemoResult(
        out=out,
        commands=tuple(ran),
        evaluations=tuple(_renamed(e, names) for e in evaluations),
        card=out / "published" / DEMO_REPO / "README.md",
        seconds=time.perf_counter() - start,
        skipped=tuple(skipped),
    )
    atomic_write_text(out / "demo.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return result


def _zoo_complete(*, hub: Path, teachers: int) -> bool:
    if not hub.is_dir():
        return False
    return len(list(LocalHub(root=hub).search(author=DEMO_ORG, tags=("few-shot",)))) >= teachers


def _renamed(evaluation: Evaluation, names: dict[str, str]) -> Evaluation:
    return Evaluation(**{**asdict(evaluation), "model": names.get(evaluation.model, evaluation.model)})


def _run_in_process(argv: Sequence[str]) -> None:
    from freehub.cli.app import app

    app(args=list(argv), prog_name="freehub", standalone_mode=False)
