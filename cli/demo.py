"""`freehub demo`: the whole pipeline on the embedded default."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the hub, registry, run and results.")] = Path("demo-out"),
    teachers: Annotated[int, typer.Option(min=5, help="Teachers in the zoo.")] = 24,
    iterations: Annotated[
        Optional[int], typer.Option(min=1, help="FREE meta-iterations (default: the CPU default of meta-train).")
    ] = None,
    episodes: Annotated[int, typer.Option(min=1, help="Meta-test episodes per setting.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Run freehub end to end on the embedded glyph set, offline and on the CPU.

    Trains a zoo of heterogeneous teachers into a local folder Hub, collects them into a registry,
    meta-trains a few-shot learner with FREE (selected on meta-val alphabets) and reports its
    accuracy on the held-out meta-test alphabets beside a randomly initialised learner. Rerunning
    reuses finished stages and resumes meta-training.

    Example:

        freehub demo --out demo-out
    """
    from freehub.pipeline import DemoSettings, run_demo

    settings = DemoSettings(seed=seed, teachers=teachers, iterations=iterations, eval_episodes=episodes)
    result = run_demo(out=out, settings=settings, progress=not as_json)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo(result.table())
    typer.echo(f"done in {result.seconds:.0f} s; everything is under {result.out}")
