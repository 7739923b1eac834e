"""The `freehub` command: a thin Typer layer over the library.

Every command is a few lines over a public function; errors the user can act on
(:class:`freehub.errors.FreehubError`) become one line on stderr and a non-zero exit.
"""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

from freehub.cli.collect import collect_command
from freehub.cli.data import data_app
from freehub.cli.demo import demo_command
from freehub.cli.evaluate import evaluate_command
from freehub.cli.publish import push_command
from freehub.cli.registry import registry_app
from freehub.cli.train import meta_train_command
from freehub.cli.zoo import zoo_app
from freehub.errors import FreehubError

app = typer.Typer(
    name="freehub",
    help=(
        "Data-free meta-learning from public model hubs.\n\n"
        "Collect task-specific image classifiers from a Hub, meta-train a few-shot learner on them "
        "with FREE, evaluate it on held-out classes and publish it back."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


@app.callback()
def _options(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also log every HTTP request and the libraries' own messages.")
    ] = False,
) -> None:
    if verbose:
        logging.getLogger().setLevel(logging.INFO)


app.add_typer(data_app, name="data")
app.add_typer(zoo_app, name="zoo")
app.command("collect")(collect_command)
app.add_typer(registry_app, name="registry")
app.command("meta-train")(meta_train_command)
app.command("evaluate")(evaluate_command)
app.command("push")(push_command)
app.command("demo")(demo_command)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the app, report a FreehubError as one line."""
    # Progress and results, not transport logs: huggingface_hub and httpx2 log every request at INFO.
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("freehub").setLevel(logging.INFO)
    try:
        app(args=argv, prog_name="freehub")
    except FreehubError as error:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        typer.secho("interrupted: completed work is kept; rerun (with --resume where offered) to continue", err=True)
        sys.exit(130)

