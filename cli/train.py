"""`freehub meta-train`: FREE on the registry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def meta_train_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder: config, metrics, checkpoints, pictures.")],
    registry: Annotated[
        Optional[Path], typer.Option(help="Registry folder (default: $FREEHUB_HOME/registry).")
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML file of settings; `preset: paper` for the GPU reference.")
    ] = None,
    iterations: Annotated[
        Optional[int], typer.Option(help="Meta-iterations (each recovers a meta-batch of teachers); 0 saves the untrained learner.")
    ] = None,
    teachers_per_step: Annotated[Optional[int], typer.Option(help="Teachers per meta-batch.")] = None,
    val_data: Annotated[
        Optional[str],
        typer.Option(help="Real meta-validation classes: 'glyphs', an image folder, or 'hf:PATH_OR_ID'."),
    ] = None,
    recovery: Annotated[
        Optional[str],
        typer.Option(
            help="How tasks are recovered: 'meta-generator' (FREE), 'scratch-generator' (a fresh generator per teacher, "
            "BiDf-MKD-style) or 'pixels' (images optimised per teacher, DeepInversion-style)."
        ),
    ] = None,
    generator: Annotated[
        Optional[str],
        typer.Option(help="The generator's image prior: 'conv' (FastDFKD's, any pixels) or 'strokes' (pen strokes: characters, symbols, sketches)."),
    ] = None,
    prior_distill_steps: Annotated[
        Optional[int],
        typer.Option(min=0, help="Before FREE's iterations, steps teaching the learner the teacher ensemble's image similarities on samples of the prior (0: off)."),
    ] = None,
    learner_metric: Annotated[
        Optional[str],
        typer.Option(help="How the learner compares queries with class prototypes: 'euclidean', 'cosine', or 'auto' (cosine with prior distillation)."),
    ] = None,
    align: Annotated[
        Optional[bool], typer.Option("--align/--no-align", help="BELL's gradient alignment across teachers (off: plain episodic replay).")
    ] = None,
    data_oracle: Annotated[
        Optional[str],
        typer.Option(help="Train the same learner on REAL images of the meta-train classes instead ('glyphs', a folder, 'hf:NAME'): the upper bound."),
    ] = None,
    oracle_classes: Annotated[str, typer.Option(help="With --data-oracle: 'all' meta-train classes, or only the 'teachers'' classes.")] = "all",
    split_seed: Annotated[int, typer.Option(help="Seed of the data sets' class split (the zoo's teachers use split 0).")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue the run in --out from its last checkpoint.")] = False,
    seed: Annotated[Optional[int], typer.Option(help="Seed of every random choice.")] = None,
    device: Annotated[Optional[str], typer.Option(help="'auto' (CUDA when present), 'cpu' or 'cuda[:N]'.")] = None,
    # The default is freehub.free.teachers.DEFAULT_CACHE_MB, written out so that --help needs no torch.
    teacher_cache_mb: Annotated[
        float, typer.Option(min=0, help="MiB of teachers kept built between meta-batches (each is loaded when drawn).")
    ] = 1024.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Meta-train a few-shot learner with FREE on every model of the registry.

    A meta-generator recovers a synthetic task from each teacher in a few steps (FIVE); the
    meta-learner learns from them by implicit gradient alignment and episodic replay (BELL). The
    best checkpoint is chosen on --val-data, never on test classes.

    Example:

        freehub meta-train --out runs/free --val-data glyphs --iterations 40

        freehub meta-train --out runs/pixels --val-data glyphs --recovery pixels

        freehub meta-train --out runs/oracle --val-data glyphs --data-oracle glyphs --oracle-classes teachers

    On several processes (each inverts its share of every meta-batch; see the README):

        torchrun --nproc_per_node 2 $(which freehub) meta-train --out runs/free2 --val-data glyphs
    """
    from freehub.free.distributed import is_main_process
    from freehub.free.trainer import PRIOR_STAGE_ITERATION
    from freehub.meta import load_config, meta_train

    settings = load_config(
        path=config,
        overrides={
            "iterations": iterations, "teachers_per_step": teachers_per_step, "seed": seed, "device": device,
            "recovery": recovery, "align": align, "generator": generator, "prior_distill_steps": prior_distill_steps,
            "learner_metric": learner_metric,
        },
    )
    result = meta_train(
        registry=registry, out_dir=out, config=settings, val_data=val_data, oracle_data=data_oracle,
        oracle_classes=oracle_classes, split_seed=split_seed, resume=resume, progress=not as_json,
        teacher_cache_mb=teacher_cache_mb,
    )
    if not is_main_process():  # under torchrun, rank 0 reports the run
        return
    summary = {
        "run_dir": str(result.run_dir),
        "learner_dir": str(result.learner_dir),
        "iterations": result.iterations,
        "best_iteration": result.best_iteration,
        "best_val": None if result.best_val is None else {"mean": result.best_val.mean, "ci95": result.best_val.ci95},
        "seconds": round(result.seconds, 1),
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"run written to {result.run_dir} ({result.iterations} iterations, {result.seconds:.0f} s)")
    if result.best_val is not None:
        typer.echo(
            f"best meta-val accuracy {100 * result.best_val.mean:.2f} +/- {100 * result.best_val.ci95:.2f}%"
            + (" after prior distillation (no iteration improved on it)" if result.best_iteration == PRIOR_STAGE_ITERATION else f" at iteration {result.best_iteration}")
        )
    typer.echo(f"meta-learner: {result.learner_dir}")
