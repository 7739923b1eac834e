"""`freehub push`: publish a meta-trained learner with a generated model card."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def push_command(
    model: Annotated[Path, typer.Option("--model", help="Run folder of `freehub meta-train` (holds learner/).")],
    repo: Annotated[str, typer.Option("--repo", help="Destination repo, ORG/NAME.")],
    hub: Annotated[
        Optional[str], typer.Option("--hub", help="A Hub URL or a local folder hub (default: $HF_ENDPOINT or huggingface.co).")
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the repo private (an existing repo keeps its setting).")] = False,
    message: Annotated[Optional[str], typer.Option("--message", "-m", help="Commit message.")] = None,
    card_template: Annotated[
        Optional[Path], typer.Option("--card-template", help="Jinja template replacing the built-in card (keep its front matter).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace every file of a repo that already holds some.")] = False,
    license: Annotated[
        Optional[str], typer.Option("--license", help="License id to publish under, when the sources' licenses differ or are unknown.")
    ] = None,
    no_results: Annotated[
        bool, typer.Option("--no-results", help="Publish a run that has no evaluations.json; the card says nothing was measured.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Push a meta-learner to a Hub: weights, config, a generated model card and its pictures, in one commit.

    The card lists every source model at its revision, the meta-training configuration, how the
    checkpoint was chosen, and the results of the run's evaluations.json (push refuses a run
    without one unless --no-results). The license is the sources' common license; when they
    differ or one is unknown, pass --license. A write token comes from HF_TOKEN or the
    huggingface_hub login when --hub is a URL. Nothing is written unless every check passes.

    Examples:

        freehub push --model runs/free --repo glyph-lab/free-conv4 --hub ./my-hub

        freehub push --model runs/free --repo me/free-conv4 --license apache-2.0 --private
    """
    from freehub.publish import push_learner

    result = push_learner(
        run_dir=model, repo_id=repo, hub=hub, private=private, message=message, card_template=card_template,
        force=force, license=license, no_results=no_results,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    results = f"{result.results} result{'s' if result.results != 1 else ''}" if result.results else "no results"
    typer.echo(f"pushed {result.repo_id} to {result.hub} at {result.commit[:12]} ({results}, license {result.license})")
    typer.echo(f"card: {result.card}")
