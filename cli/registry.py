"""`freehub registry`: list, show and remove collected models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

if TYPE_CHECKING:
    from freehub.registry import ModelSummary, Registry


def _open(path: Optional[Path]) -> "Registry":
    # Imported on use so that `freehub --help` does not pay for torch, timm and transformers.
    from freehub.registry import Registry

    return Registry.open(path)


registry_app = typer.Typer(
    help=(
        "Inspect the local model registry filled by `freehub collect`.\n\n"
        "Examples:\n\n"
        "  freehub registry list\n\n"
        "  freehub registry list --all --json\n\n"
        "  freehub registry show org--cats-5way--0123456789ab\n\n"
        "  freehub registry remove org--cats-5way--0123456789ab"
    ),
    no_args_is_help=True,
)

RegistryOption = Annotated[
    Optional[Path],
    typer.Option("--registry", help="Registry folder (default: $FREEHUB_HOME/registry).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


@registry_app.command("list")
def list_command(
    all_: Annotated[
        bool, typer.Option("--all", help="Also show superseded versions and skipped repos with their reasons.")
    ] = False,
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """List registered models (current versions).

    Example: freehub registry list --all
    """
    with _open(registry) as opened:
        if json_output:
            payload: dict[str, object] = {"models": [record.to_dict() for record in opened.list(all_versions=all_)]}
            if all_:
                payload["skipped"] = [skip.to_dict() for skip in opened.skipped()]
            typer.echo(json.dumps(payload, indent=2))
            return
        summaries = opened.summaries(all_versions=all_)
        skipped = opened.skipped() if all_ else []
    if not summaries and not skipped:
        typer.echo("the registry is empty: fill it with `freehub collect --tag few-shot`")
        return
    if summaries:
        typer.echo("\n".join(_row(summary, show_status=all_) for summary in summaries))
    if skipped:
        typer.echo(f"\nskipped ({len(skipped)}):")
        for skip in skipped:
            typer.echo(f"  {skip.repo_id}@{skip.sha[:12] or '?'}  {skip.reason}: {skip.message}")


@registry_app.command("show")
def show_command(
    model_id: Annotated[str, typer.Argument(help="A registry id, as printed by `freehub registry list`.")],
    registry: RegistryOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show everything recorded about one model.

    Example: freehub registry show org--cats-5way--0123456789ab --json
    """
    with _open(registry) as opened:
        record = opened.get(model_id)
    data = record.to_dict()
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    width = max(len(key) for key in data)
    for key, value in data.items():
        typer.echo(f"{key:<{width}}  {value}")


@registry_app.command("remove")
def remove_command(
    model_id: Annotated[str, typer.Argument(help="A registry id, as printed by `freehub registry list`.")],
    registry: RegistryOption = None,
) -> None:
    """Remove one model version and its files; the previous version, if any, becomes current.

    Example: freehub registry remove org--cats-5way--0123456789ab
    """
    with _open(registry) as opened:
        record = opened.remove(model_id)
    typer.echo(f"removed {record.id} ({record.repo_id} version {record.version})")


def _row(record: "ModelSummary", *, show_status: bool) -> str:
    channels, height, width = record.input_size
    status = f"  [{record.status}]" if show_status else ""
    return (
        f"{record.id}  v{record.version}  {record.library}/{record.architecture}  "
        f"{record.num_classes} classes  {channels}x{height}x{width}{status}"
    )
