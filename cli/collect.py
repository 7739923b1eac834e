"""`freehub collect`: crawl a Hub and register the classifiers found."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def collect_command(
    tag: Annotated[
        list[str], typer.Option("--tag", help="Only repos with this tag (repeat for several: all must match).")
    ] = ["few-shot"],  # noqa: B006 - Typer reads the default, nothing mutates it
    library: Annotated[
        Optional[str], typer.Option("--library", help="Only repos of this library: timm or transformers.")
    ] = None,
    author: Annotated[Optional[str], typer.Option("--author", help="Only repos of this user or organisation.")] = None,
    search: Annotated[Optional[str], typer.Option("--search", help="Only repos whose id contains this text.")] = None,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Look at this many search hits at most.")] = None,
    hub: Annotated[
        Optional[str],
        typer.Option("--hub", help="Hub URL or local folder (default: $HF_ENDPOINT or https://huggingface.co)."),
    ] = None,
    registry: Annotated[
        Optional[Path], typer.Option("--registry", help="Registry folder (default: $FREEHUB_HOME/registry).")
    ] = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Repos processed in parallel.")] = 4,
    allow_pickle: Annotated[
        bool,
        typer.Option(
            "--allow-pickle", help="Accept .bin/.pth weights when a repo has no safetensors (loaded with weights_only)."
        ),
    ] = False,
    max_file_mb: Annotated[
        Optional[float],
        typer.Option("--max-file-mb", min=0, help="Refuse repos with a weight file over this many MiB (default: 512)."),
    ] = None,
    max_repo_mb: Annotated[
        Optional[float],
        typer.Option("--max-repo-mb", min=0, help="Refuse repos whose files add up to more MiB (default: 2048)."),
    ] = None,
    max_files: Annotated[
        Optional[int], typer.Option("--max-files", min=1, help="Refuse repos listing more files (default: 200).")
    ] = None,
    timeout: Annotated[
        Optional[float],
        typer.Option("--timeout", min=0, help="Seconds a remote Hub may stay silent before a request fails (default: 30)."),
    ] = None,
    retry_skipped: Annotated[
        bool,
        typer.Option("--retry-skipped", help="Download again revisions skipped earlier for a problem of their own bytes."),
    ] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Collect image classifiers from a Hub into the local registry.

    Every hit is pinned to its commit, checked from its file listing before anything is
    downloaded, verified against the listed sha256 or git blob id, built once to prove it loads,
    and registered; anything else is recorded as skipped with a reason (see `freehub registry
    list --all`). Sizes and waits are bounded (README: Safety). Running it again only fetches new
    repos and new commits.

    Examples:

      freehub collect --tag few-shot

      freehub collect --tag few-shot --library timm --author my-org --limit 50

      freehub collect --hub ./my-local-hub --registry ./registry --json
    """
    # Imported here so that `freehub --help` does not pay for torch, timm and transformers.
    from dataclasses import replace

    from freehub.collect import collect
    from freehub.hub import open_hub
    from freehub.limits import Limits, Timeouts
    from freehub.registry import Registry

    limits = Limits()
    for name, value in (("max_file_bytes", max_file_mb), ("max_repo_bytes", max_repo_mb)):
        if value is not None:
            limits = replace(limits, **{name: max(1, int(value * 2**20))})
    if max_files is not None:
        limits = replace(limits, max_files=max_files)
    timeouts = Timeouts() if timeout is None else Timeouts(read_s=max(timeout, 0.001))
    source = open_hub(hub, timeouts=timeouts, limits=limits)
    with Registry.open(registry) as opened:
        report = collect(
            hub=source,
            registry=opened,
            tags=tuple(tag),
            library=library,
            author=author,
            search=search,
            limit=limit,
            workers=workers,
            allow_pickle=allow_pickle,
            limits=limits,
            retry_skipped=retry_skipped,
            progress=not json_output,
        )
    typer.echo(json.dumps(report.to_dict(), indent=2) if json_output else report.summary())
