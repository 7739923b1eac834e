"""Model cards: the ``README.md`` of every repo freehub publishes (zoo teachers and meta-learners).

Cards are rendered from the Jinja templates in ``freehub/cards`` through huggingface_hub's
:class:`~huggingface_hub.ModelCard`, so the YAML front matter is the Hub's own format: tags,
``library_name``, ``license``, ``pipeline_tag`` and a ``model-index`` with the measured results.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import PurePath
from typing import Any

import jinja2
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from freehub.errors import ConfigError
from freehub.free.learners import LearnerSpec
from freehub.hub import is_repo_id
from freehub.evaluate import Evaluation
from freehub.sources import RunSources, SkippedSource, SourceModel
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


# --- meta-learner cards ------------------------------------------------------------------------------

LEARNER_TAGS = (FEW_SHOT_TAG, "meta-learning", "data-free", "freehub", "image-classification")
"""Tags of every published meta-learner card."""

LEARNER_TEMPLATE = "learner.md.jinja"
REAL_IMAGES = "real"
"""The ``recovery`` of a data-oracle run: the learner saw real images, so its card must not say data-free."""
_RECOVERY_TEXT = {
    "meta-generator": "a meta-generator (FREE's FIVE: a few steps per classifier from a meta-learned start)",
    "scratch-generator": "a generator trained afresh for each classifier (a baseline recovery, not FREE's)",
    "pixels": "optimising the pixels of each image for each classifier (a baseline recovery, not FREE's)",
}
_CONFIG_SHOWN_FIRST = ("seed", "iterations", "teachers_per_step", "warmup_iterations", "algorithm", "backbone", "n_way", "k_shot")


def render_learner_card(
    *,
    repo_id: str,
    hub_location: str | None,
    license: str,
    license_derived: bool,
    spec: LearnerSpec,
    sources: RunSources,
    evaluations: Sequence[Evaluation],
    run_config: Mapping[str, Any],
    selected_iteration: int | None,
    selected_on_val: bool,
    images: Mapping[str, str],
    template: str | None = None,
    template_name: str = LEARNER_TEMPLATE,
) -> str:
    """The model card of a meta-learner pushed as ``repo_id``, YAML front matter included.

    ``license_derived`` says whether ``license`` is the sources' common license or the publisher's
    choice. Every accuracy on the card is an entry of ``evaluations`` (one ``model-index`` result each);
    with none, the card says that no results were measured. ``images`` maps ``"recovered"`` and
    ``"meta_val"`` to repo paths of the pictures that exist. ``template`` replaces the built-in
    template; it must begin with the ``card_data`` front matter. Raises :class:`ConfigError` when
    the template does not render or breaks the metadata.
    """
    repo_name = repo_id.split("/")[-1]
    recovery = run_config.get("recovery", "meta-generator")
    if not isinstance(recovery, str) or (recovery != REAL_IMAGES and recovery not in _RECOVERY_TEXT):
        raise ConfigError(f"the run's config names an unknown recovery {recovery!r}")
    oracle = recovery == REAL_IMAGES
    card_data = ModelCardData(
        model_name=repo_name,
        library_name="freehub",
        license=license,
        pipeline_tag="image-classification",
        tags=[tag for tag in LEARNER_TAGS if not (oracle and tag == "data-free")],
        # A data oracle learned from real images, not from the registry's models.
        base_model=None if oracle else sorted({model.repo_id for model in sources.models}) or None,
        metrics=["accuracy"] if evaluations else None,
        eval_results=[_eval_result(entry) for entry in evaluations] or None,
    )
    context = {
        "repo_name": _cell(repo_name),
        "num_sources": len(sources.models),
        "oracle": oracle,
        "recovery_text": "" if oracle else _RECOVERY_TEXT[recovery],
        "prior_distilled": not oracle and bool(run_config.get("prior_distill_steps")),
        "prior_generator": run_config.get("generator", "conv"),
        "license": _cell(license),
        "license_derived": license_derived,
        "results": [_result_row(entry) for entry in evaluations],
        "sources": [_source_row(model) for model in sources.models],
        "skipped": [_skipped_row(skip) for skip in sources.skipped],
        "config": _config_rows(run_config),
        "spec": {key: _cell(_value(value)) for key, value in spec.to_dict().items()},
        "is_timm": spec.backbone.startswith("timm:"),
        "image_size": spec.image_size,
        "selected_iteration": selected_iteration,
        "selected_on_val": selected_on_val,
        "images": dict(images),
        "usage": _learner_usage(repo_id=repo_id, hub_location=hub_location, image_size=spec.image_size),
        "timm_usage": _timm_usage(repo_id=repo_id) if spec.backbone.startswith("timm:") else "",
    }
    source = template if template is not None else _template(LEARNER_TEMPLATE)
    environment = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    try:
        text = environment.from_string(source).render(card_data=card_data.to_yaml(), **context)
    except (jinja2.TemplateError, TypeError, ValueError, ArithmeticError, AttributeError, LookupError) as error:
        raise ConfigError(f"card template {template_name} does not render: {type(error).__name__}: {_one_line(error)}") from error
    try:
        parsed = ModelCard(text).data.to_dict()
    except (ValueError, TypeError, yaml.YAMLError) as error:
        raise ConfigError(f"card template {template_name} breaks the card metadata: {_one_line(error)}") from error
    if parsed != card_data.to_dict():
        raise ConfigError(f"card template {template_name} must begin with the metadata block: ---, {{{{ card_data }}}}, ---")
    return text


def evaluation_dataset(data: str) -> tuple[str, str]:
    """``(dataset type, dataset name)`` for an evaluation's ``data``; a folder is named by its last part only."""
    if data == "glyphs":
        return "freehub/glyphs", GLYPHS_DATASET
    if data.startswith("hf:"):
        name = data[3:]
        if is_repo_id(name) or re.fullmatch(r"[A-Za-z0-9][\w.-]*", name):
            return name, name
        # A data set saved on disk: its folder name, never the path of the machine it was measured on.
        return "datasets", PurePath(name).name or "datasets folder"
    return "imagefolder", PurePath(data).name or "image folder"


def _eval_result(entry: Evaluation) -> EvalResult:
    dataset_type, dataset_name = evaluation_dataset(entry.data)
    setting = f"{entry.n_way}-way {entry.k_shot}-shot"
    metric_args: dict[str, Any] = {"ci95": entry.ci95, "method": entry.method, "bn_mode": entry.bn_mode}
    if entry.baseline is not None and entry.diff_mean is not None:
        metric_args.update(baseline=entry.baseline, diff_mean=entry.diff_mean, diff_ci95=entry.diff_ci95)
    return EvalResult(
        task_type="image-classification",
        task_name=f"Few-shot image classification ({setting})",
        dataset_type=dataset_type,
        dataset_name=dataset_name,
        dataset_split=entry.split,
        # The Hub groups results by task, dataset, config and split: a per-protocol config keeps
        # each evaluated setting its own result.
        dataset_config=f"{entry.n_way}way-{entry.k_shot}shot-{entry.q_queries}q-{entry.episodes}ep-seed{entry.seed}-{entry.method}",
        dataset_args={"n_way": entry.n_way, "k_shot": entry.k_shot, "q_queries": entry.q_queries,
                      "episodes": entry.episodes, "seed": entry.seed},
        metric_type="accuracy",
        metric_name=f"{setting} accuracy (95% interval ± {entry.ci95:.4g})",
        metric_value=entry.mean,
        metric_args=metric_args,
    )


def _result_row(entry: Evaluation) -> dict[str, Any]:
    _, dataset_name = evaluation_dataset(entry.data)
    versus = ""
    if entry.baseline is not None and entry.diff_mean is not None:
        interval = f" ± {100 * entry.diff_ci95:.2f}" if entry.diff_ci95 is not None else ""
        versus = f"{100 * entry.diff_mean:+.2f}{interval} points vs {entry.baseline}"
    return {
        "dataset": _cell(dataset_name),
        "split": _cell(entry.split),
        "setting": f"{entry.n_way}-way {entry.k_shot}-shot",
        "accuracy": f"{100 * entry.mean:.2f} ± {100 * entry.ci95:.2f}%",
        "episodes": entry.episodes,
        "queries": entry.q_queries,
        "seed": entry.seed,
        "method": _cell(entry.method),
        "bn_mode": _cell(entry.bn_mode),
        "versus": _cell(versus),
    }


def _source_row(model: SourceModel) -> dict[str, Any]:
    return {
        "repo_id": _cell(model.repo_id),
        "sha": model.sha,
        "library": _cell(model.library),
        "architecture": _cell(model.architecture),
        "num_classes": model.num_classes,
        "labels": _cell(", ".join(model.label_names[:5]) + (" ..." if len(model.label_names) > 5 else "")),
        "license": _cell(model.license or "unknown"),
    }


def _skipped_row(skip: SkippedSource) -> dict[str, Any]:
    return {"repo_id": _cell(skip.repo_id), "sha": _cell(skip.sha[:12]), "reason": _cell(skip.reason), "message": _cell(skip.message[:200])}


def _config_rows(config: Mapping[str, Any]) -> list[dict[str, str]]:
    keys = [key for key in _CONFIG_SHOWN_FIRST if key in config]
    keys += sorted(key for key in config if key not in keys and key not in ("device", "resolved_device"))
    return [{"key": _cell(str(key)), "value": _cell(_value(config[key]))} for key in keys]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell: no row breaks, no column breaks, no raw HTML."""
    flat = " ".join(str(text).split())
    return flat.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


def _learner_usage(*, repo_id: str, hub_location: str | None, image_size: int) -> str:
    hub = "" if hub_location in (None, "https://huggingface.co") else f", hub={json.dumps(hub_location)}"
    return (
        "from freehub import EpisodeSampler, FewShotLearner, load_glyphs\n\n"
        f"learner = FewShotLearner.from_pretrained({json.dumps(repo_id)}{hub})\n"
        "# Any few labelled images work (PIL images, paths or tensors); here a 5-way 1-shot task of unseen glyphs.\n"
        f"episode = EpisodeSampler(load_glyphs(size={image_size}).test, n_way=5, k_shot=1, seed=0).sample()\n"
        "classify = learner.adapt(episode.support_images, episode.support_labels.tolist())\n"
        "prediction = classify(episode.query_images)  # .indices, .labels, .probabilities\n"
        "print((prediction.indices == episode.query_labels).float().mean())"
    )


def _timm_usage(*, repo_id: str) -> str:
    return (
        "import timm\nimport torch\n\n"
        f"backbone = timm.create_model({json.dumps('hf-hub:' + repo_id)}, pretrained=True).eval()\n"
        "# The learner normalises every batch with its own statistics: switch BatchNorm to that mode.\n"
        "for layer in backbone.modules():\n"
        "    if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):\n"
        "        layer.track_running_stats, layer.running_mean, layer.running_var = False, None, None\n"
        "data_config = timm.data.resolve_data_config(model=backbone)  # size, mean and std of the learner\n"
        "features = backbone(torch.rand(8, *data_config[\"input_size\"]))  # B x num_features"
    )
