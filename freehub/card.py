"""Model cards: the ``README.md`` of every repo freehub publishes.

Cards are rendered from the Jinja templates in ``freehub/cards`` through huggingface_hub's
:class:`~huggingface_hub.ModelCard`, so the YAML front matter is the Hub's own format: tags,
``library_name``, ``license``, ``pipeline_tag`` and a ``model-index`` with the measured results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from importlib import resources

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from freehub.task_model import ModelSpec

FEW_SHOT_TAG = "few-shot"
TEACHER_TAGS = (FEW_SHOT_TAG, "image-classification", "freehub", "freehub-teacher")
"""Tags of every teacher card; the library name is added per card."""

GLYPHS_DATASET = "freehub glyphs"


def _template(name: str) -> str:
    return resources.files("freehub.cards").joinpath(name).read_text(encoding="utf-8")


def _usage(*, library: str, repo_id: str) -> str:
    quoted = json.dumps(repo_id)
    if library == "timm":
        return f"import timm\nmodel = timm.create_model({json.dumps('hf-hub:' + repo_id)}, pretrained=True).eval()"
    return (
        "from transformers import AutoImageProcessor, AutoModelForImageClassification\n"
        f"processor = AutoImageProcessor.from_pretrained({quoted})\n"
        f"model = AutoModelForImageClassification.from_pretrained({quoted}).eval()"
    )


def render_teacher_card(
    *,
    repo_id: str,
    spec: ModelSpec,
    held_out_accuracy: float,
    train_per_class: int,
    held_out_per_class: int,
    train_steps: int,
    seed: int,
    class_groups: Sequence[str] | None = None,
    under_trained: bool = False,
    license: str = "apache-2.0",
    dataset_name: str = GLYPHS_DATASET,
) -> str:
    """The model card of one zoo teacher, YAML front matter included.

    ``held_out_accuracy`` (a fraction in [0, 1]) goes into the ``model-index`` as an accuracy on
    the ``held-out`` split of ``dataset_name``; ``class_groups`` (one script name per label) and
    ``under_trained`` (a teacher trained short on purpose) only enrich the text.
    """
    if not 0.0 <= held_out_accuracy <= 1.0:
        raise ValueError(f"held_out_accuracy must be a fraction, got {held_out_accuracy}")
    groups = tuple(class_groups) if class_groups is not None else ("",) * spec.num_classes
    if len(groups) != spec.num_classes:
        raise ValueError(f"{len(groups)} class groups for {spec.num_classes} labels")
    repo_name = repo_id.split("/")[-1]
    card_data = ModelCardData(
        model_name=repo_name,
        library_name=spec.library,
        license=license,
        pipeline_tag="image-classification",
        tags=[*TEACHER_TAGS, spec.library],
        metrics=["accuracy"],
        eval_results=[
            EvalResult(
                task_type="image-classification",
                task_name=f"{spec.num_classes}-way classification of its own classes",
                dataset_type="freehub/glyphs",
                dataset_name=dataset_name,
                dataset_split="held-out",
                metric_type="accuracy",
                metric_name="held-out accuracy",
                metric_value=round(float(held_out_accuracy), 4),
            )
        ],
    )
    channels, height, width = spec.input_size
    card = ModelCard.from_template(
        card_data,
        template_str=_template("teacher.md.jinja"),
        repo_name=repo_name,
        num_classes=spec.num_classes,
        library=spec.library,
        architecture=spec.architecture,
        param_count=f"{spec.param_count:,}" if spec.param_count is not None else "an unknown number of",
        labels=[{"index": i, "name": name, "group": group} for i, (name, group) in enumerate(zip(spec.label_names, groups))],
        channels=channels,
        height=height,
        width=width,
        interpolation=spec.interpolation,
        mean=_numbers(spec.mean),
        std=_numbers(spec.std),
        dataset_name=dataset_name,
        train_per_class=train_per_class,
        held_out_per_class=held_out_per_class,
        train_steps=train_steps,
        under_trained=under_trained,
        seed=seed,
        accuracy_percent=f"{100.0 * held_out_accuracy:.1f}",
        usage=_usage(library=spec.library, repo_id=repo_id),
    )
    return str(card)


def _numbers(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
