"""`freehub evaluate`: N-way K-shot accuracy on real held-out classes, beside baselines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer


def evaluate_command(
    model: Annotated[
        list[str],
        typer.Option(
            "--model", "-m",
            help=(
                "A run directory, a learner folder, ORG/NAME on --hub, 'random', or a training-free reference: 'pixels' "
                "(prototypes on standardised pixels) or 'teacher-ensemble' (prototypes on --registry's models' own features). "
                "Repeat to compare several."
            ),
        ),
    ],
    data: Annotated[str, typer.Option(help="Real images: 'glyphs', an image folder (a sub-folder per class), or 'hf:PATH_OR_ID'.")] = "glyphs",
    split: Annotated[str, typer.Option(help="Which class split to draw episodes from: train, val, test, or all (a folder or hf: data set no stage has seen).")] = "test",
    way: Annotated[int, typer.Option(help="Classes per episode (N).")] = 5,
    shot: Annotated[Optional[list[int]], typer.Option(help="Labelled images per class (K); repeat for several settings.")] = None,
    queries: Annotated[int, typer.Option(help="Query images per class and episode.")] = 15,
    episodes: Annotated[int, typer.Option(help="Episodes per setting.")] = 600,
    seed: Annotated[int, typer.Option(help="Seed of the episodes (and of 'random'): every model sees the same ones.")] = 0,
    split_seed: Annotated[int, typer.Option(help="Seed of the class split; the zoo's teachers are trained on split 0's train classes.")] = 0,
    baseline: Annotated[
        Optional[str], typer.Option(help="A model to compare with episode by episode (added to --model if missing).")
    ] = None,
    spec: Annotated[Optional[Path], typer.Option(help="Run directory whose learner spec 'random' builds (default: the CPU default learner).")] = None,
    hub: Annotated[Optional[str], typer.Option(help="Hub URL or folder for ORG/NAME models.")] = None,
    registry: Annotated[Optional[Path], typer.Option(help="Registry whose models 'teacher-ensemble' puts together.")] = None,
    save: Annotated[
        bool, typer.Option(help="Store the results (all models') in each evaluated run directory's evaluations.json, for its model card.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the results as JSON.")] = False,
) -> None:
    """Measure few-shot accuracy on real images of classes no teacher was trained on.

    Each setting is scored over the same episodes for every model: mean query accuracy and its
    95% interval, and with --baseline the paired per-episode difference, which resolves gaps
    that two overlapping intervals cannot.

    Examples:

        freehub evaluate --model runs/free --baseline random --shot 1 --shot 5

        freehub evaluate --model runs/free --data ./my-classes --split test --episodes 300 --json

        freehub evaluate --model runs/free --model pixels --model teacher-ensemble --registry registry --baseline random
    """
    from freehub.errors import ConfigError
    from freehub.evaluate import (
        REFERENCES,
        EvaluationRequest,
        evaluate_models,
        evaluation_dicts,
        format_table,
        learner_spec_of,
        load_model,
        load_split,
        save_evaluations,
    )

    names = list(dict.fromkeys([*model, *([baseline] if baseline else [])]))
    request = EvaluationRequest(
        data=data, split=split, n_way=way, shots=tuple(shot or (1, 5)), q_queries=queries, episodes=episodes, seed=seed, split_seed=split_seed
    )
    request.validate()
    random_spec = learner_spec_of(run_dir=spec) if spec is not None else None
    learners = {name: load_model(model=name, seed=seed, spec=random_spec, hub=hub, registry=registry) for name in names}
    sizes = {learner.spec.image_size for learner in learners.values()}
    if len(sizes) != 1:
        raise ConfigError(f"the models expect different image sizes ({sorted(sizes)}): evaluate them separately")
    images = load_split(spec=data, split=split, size=sizes.pop(), seed=split_seed)
    results = evaluate_models(models=learners, data=images, request=request, baseline=baseline)
    if save:
        # Each run keeps the whole comparison it took part in; a model card shows only the run's own rows.
        for name in names:
            if name not in REFERENCES and Path(name).expanduser().is_dir():
                save_evaluations(run_dir=Path(name).expanduser(), evaluations=results)
    if as_json:
        typer.echo(json.dumps(evaluation_dicts(results), indent=2))
        return
    typer.echo(format_table(results))
