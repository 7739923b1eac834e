"""`freehub demo`: the whole pipeline on the embedded default, as the real commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def demo_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the hubs, registry, runs and results.")] = Path("demo-out"),
    teachers: Annotated[int, typer.Option(min=5, help="Teachers in the zoo.")] = 24,
    iterations: Annotated[
        Optional[int], typer.Option(min=1, help="Meta-iterations of both runs (default: the CPU default of meta-train).")
    ] = None,
    episodes: Annotated[int, typer.Option(min=2, help="Meta-test episodes per setting.")] = 600,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 0,
    config: Annotated[Optional[Path], typer.Option(help="A meta-train YAML for both training runs.")] = None,
    hub_like: Annotated[
        bool, typer.Option("--hub-like/--no-hub-like", help="Also 2-, 3- and whole-alphabet teachers in the zoo (see `zoo build`).")
    ] = True,
    prior_distill_steps: Annotated[
        int, typer.Option(min=0, help="FREE run: steps of prior distillation on pen strokes before its iterations (0: off).")
    ] = 1500,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON at the end.")] = False,
) -> None:
    """Run freehub end to end on the embedded glyph set, offline and on the CPU, command by command.

    Prints and runs: `freehub zoo build` (heterogeneous teachers on a local folder Hub), `freehub
    collect` (into a registry), `freehub meta-train` twice (FREE with the pen-stroke prior and prior
    distillation, and the same learner on real images of the teachers' classes: the fair data
    oracle), `freehub evaluate` (both, prototypes on raw pixels, the teacher ensemble's own features
    and random initialisation on the held-out meta-test alphabets) and `freehub push`
    (the learner and its model card to a local folder Hub). Rerunning reuses the zoo and registry
    and resumes training.

    Example:

        freehub demo --out demo-out
    """
    from freehub.pipeline import DemoSettings, run_demo

    settings = DemoSettings(
        seed=seed, teachers=teachers, iterations=iterations, eval_episodes=episodes, config=config, hub_like=hub_like,
        prior_distill_steps=prior_distill_steps,
    )
    result = run_demo(out=out, settings=settings)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    typer.echo("")
    typer.echo(result.table())
    typer.echo(f"model card: {result.card}")
    typer.echo(f"done in {result.seconds:.0f} s; everything is under {result.out}")
