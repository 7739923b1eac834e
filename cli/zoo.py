"""`freehub zoo`: train a pool of task-specific teachers and publish them to a Hub."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

zoo_app = typer.Typer(no_args_is_help=True)


@zoo_app.callback()
def zoo_group() -> None:
    """Build a zoo of task-specific teacher classifiers on a Hub."""
    # A callback keeps `zoo` a command group even while `build` is its only command.


@zoo_app.command("build")
def build_command(
    hub: Annotated[
        str, typer.Option("--hub", help="Where to publish: a Hub URL (e.g. $HF_ENDPOINT) or a local folder.")
    ],
    org: Annotated[str, typer.Option("--org", help="Organisation (or user) that owns the repos: ORG/glyphs-...")],
    teachers: Annotated[int, typer.Option("--teachers", min=1, help="How many teachers to train and publish.")] = 24,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the class draws, initialisations and training.")] = 0,
    size: Annotated[int, typer.Option("--size", min=8, help="Pixel size the glyph set is rendered at.")] = 32,
    steps: Annotated[
        Optional[int], typer.Option("--steps", min=1, help="Optimiser steps of a full-effort teacher (default 150).")
    ] = None,
    hub_like: Annotated[
        bool,
        typer.Option(
            "--hub-like", help="Also train 2- and 3-class teachers and one over a whole alphabet at 48 px, as a real Hub holds."
        ),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the result as JSON instead of a table.")] = False,
) -> None:
    """Train teachers on the glyph set's meta-train classes and publish each as a Hub repo.

    Every teacher is a 5-way classifier (with --hub-like, also 2-, 3- and many-class ones) over its own glyph classes, in timm's or transformers'
    native layout with a model card tagged `few-shot`; architectures, input sizes, channels and
    training effort differ on purpose, like a real Hub. A write token comes from `HF_TOKEN` or
    the huggingface_hub login when DEST is a URL.

    Examples:

      freehub zoo build --hub ./my-hub --org glyph-lab

      freehub zoo build --hub ./my-hub --org glyph-lab --hub-like

      freehub zoo build --hub http://localhost:8000 --org glyph-lab --teachers 8 --seed 1 --json
    """
    # Imported here so that `freehub --help` does not pay for torch, timm and transformers.
    from freehub.hub import open_hub
    from freehub.zoo import DEFAULT_TRAIN_STEPS, build_zoo

    result = build_zoo(
        hub=open_hub(hub),
        org=org,
        teachers=teachers,
        seed=seed,
        size=size,
        progress=not json_output,
        train_steps=steps if steps is not None else DEFAULT_TRAIN_STEPS,
        hub_like=hub_like,
    )
    typer.echo(json.dumps(result.to_dict(), indent=2) if json_output else result.table())
