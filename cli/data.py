"""`freehub data`: build, inspect and preview data sets."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer


data_app = typer.Typer(
    help=(
        "Build, inspect and preview data sets.\n\n"
        "Example:\n\n"
        "  freehub data glyphs --preview glyphs.png"
    ),
    no_args_is_help=True,
)


@data_app.command("glyphs")
def glyphs_command(
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 32,
    channels: Annotated[int, typer.Option(help="1 for grey, 3 for RGB.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the images and of the split by alphabet.")] = 0,
    images_per_class: Annotated[int, typer.Option(help="Images drawn per character class.")] = 20,
    cache_dir: Annotated[
        Optional[Path],
        typer.Option("--cache-dir", help="Cache folder (default: $FREEHUB_HOME/data/glyphs).", show_default=False),
    ] = None,
    preview: Annotated[
        Optional[Path],
        typer.Option("--preview", help="Also write a PNG grid of sample classes of each split.", show_default=False),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the statistics as JSON.")] = False,
) -> None:
    """Build (first run) or load the embedded glyph set and print its statistics.

    Characters of many scripts, drawn from the DejaVu typefaces matplotlib ships: one class per
    character, one alphabet per script, split by alphabet into meta-train / meta-val / meta-test.
    Look-alike and accented characters are dropped; the counts are printed.

    Example: freehub data glyphs --size 32 --channels 3 --seed 0 --preview glyphs.png
    """
    started = time.perf_counter()
    from freehub.data import glyph_report, load_glyphs, save_split_preview

    data = load_glyphs(
        size=size,
        channels=channels,
        seed=seed,
        images_per_class=images_per_class,
        cache_dir=cache_dir,
        progress=not json_output,
    )
    report = glyph_report(cache_dir=cache_dir)
    seconds = time.perf_counter() - started
    written = None
    if preview is not None:
        written = save_split_preview(data=data, path=preview, seed=seed)
    payload = {
        "splits": data.stats(),
        "alphabets": {name: sorted(part.groups) for name, part in data.splits().items()},
        "classes": len(report.classes),
        "candidates": report.candidates,
        "dropped": report.counts_by_reason(),
        "similarity_threshold": report.threshold,
        "face_agreement": report.face_agreement,
        "image_shape": list(data.train.images.shape[1:]),
        "seconds": round(seconds, 2),
        "preview": str(written) if written else None,
    }
    if json_output:
        typer.echo(json.dumps(payload, indent=2, ensure_ascii=False))
        return
    shape = "x".join(str(n) for n in payload["image_shape"])
    typer.echo(f"glyph set: {report.candidates} candidates -> {len(report.classes)} classes, {shape} images")
    for name, stats in data.stats().items():
        alphabets = ", ".join(payload["alphabets"][name])
        counts = f"{stats['groups']:2d} alphabets {stats['classes']:5d} classes {stats['images']:6d} images"
        typer.echo(f"  {name:5s} {counts}  ({alphabets})")
    dropped = ", ".join(f"{reason} {count}" for reason, count in sorted(report.counts_by_reason().items()))
    typer.echo(f"  dropped: {dropped}")
    typer.echo(f"  ready in {seconds:.1f} s")
    typer.echo(f"  look-alike threshold {report.threshold} (same letter across DejaVu faces: {report.face_agreement})")
    if written:
        typer.echo(f"  preview: {written}")
