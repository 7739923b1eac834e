"""Publishing a meta-learner: the run's learner, a generated model card and its pictures, in one Hub commit.

``push_learner`` is what ``freehub push`` runs::

    from freehub.publish import push_learner
    result = push_learner(run_dir="runs/free", repo_id="glyph-lab/free-conv4", hub="./my-hub")

Everything that can be refused is checked before the Hub sees a single write: the run and its
learner, its evaluations (or ``no_results``), its sources and their licenses, the card template,
that the exported files rebuild the same learner, the right to write, and a repo already holding
other files (or ``force``). Then one commit carries ``model.safetensors``, ``config.json``,
``README.md`` and ``images/``; a Hub commit is atomic, so the repo shows all of it or none.
"""

from __future__ import annotations

import os
import tempfile
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from freehub.atomic import atomic_write_text
from freehub.card import REAL_IMAGES, render_learner_card
from freehub.errors import CheckpointError, ConfigError, HubPermissionError, PublishError, RepoNotFoundError
from freehub.evaluate import RANDOM, REFERENCES, Evaluation, learner_sha256
from freehub.free.learners import MetaLearner, load_learner
from freehub.hub import Hub, LocalHub, is_repo_id, open_hub
from freehub.pretrained import export_learner, load_exported
from freehub.run_files import ValPoint, evaluated_learner_sha256, latest_grids, read_evaluations, read_json_object, read_val_curve
from freehub.sources import RunSources, read_sources

IMAGES_FOLDER = "images"
RECOVERED_IMAGE = f"{IMAGES_FOLDER}/recovered.png"
META_VAL_IMAGE = f"{IMAGES_FOLDER}/meta_val.png"
# Ids a license may take on the Hub (SPDX-like, lower case); anything else is a typo or an injection.
_LICENSE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-+")
_UNKNOWN_LICENSES = frozenset({"", "unknown", "other", "none", "noassertion"})
_GRID_GAP = 2  # pixels between tiles in freehub.data.save_grid sheets
_GRID_ROWS_SHOWN = 3


@dataclass(frozen=True)
class PushResult:
    """What :func:`push_learner` published: where, at which commit, under which license, with how many results."""

    repo_id: str
    hub: str
    commit: str
    url: str
    card: str
    license: str
    files: tuple[str, ...]
    results: int
    created: bool

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def derive_license(*, sources: RunSources, override: str | None = None) -> str:
    """The license of a learner meta-trained from ``sources``: their common license, or ``override``.

    Raises :class:`PublishError` rather than guess when a source's license is unknown or two differ.
    """
    if override is not None:
        chosen = override.strip().lower()
        if not chosen or not set(chosen) <= _LICENSE_CHARS or len(chosen) > 64:
            raise PublishError(f"--license must be a license id such as apache-2.0 or cc-by-4.0, got {override!r}")
        return chosen
    if not sources.models:
        raise PublishError("the run lists no source models to derive a license from: pass --license ID")
    unknown = [model.repo_id for model in sources.models if (model.license or "").strip().lower() in _UNKNOWN_LICENSES]
    if unknown:
        more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
        raise PublishError(f"the license of source {unknown[0]}{more} is unknown: check its terms and pass --license ID")
    licenses = sorted({(model.license or "").strip().lower() for model in sources.models})
    if len(licenses) > 1:
        raise PublishError(f"source models have different licenses ({', '.join(licenses)}): check their terms and pass --license ID")
    return derive_license(sources=sources, override=licenses[0])


def push_learner(
    *,
    run_dir: str | os.PathLike[str],
    repo_id: str,
    hub: str | os.PathLike[str] | Hub | None = None,
    private: bool = False,
    message: str | None = None,
    card_template: str | os.PathLike[str] | None = None,
    force: bool = False,
    license: str | None = None,
    no_results: bool = False,
    token: str | None = None,
) -> PushResult:
    """Publish the learner of the meta-training run in ``run_dir`` as ``repo_id`` on ``hub``.

    ``hub`` is a URL, a folder hub or a :class:`~freehub.hub.Hub` (default HF_ENDPOINT or
    huggingface.co). The run must hold ``evaluations.json`` unless ``no_results`` (the card then
    says no results were measured) and ``sources.json``; the license comes from the sources unless
    ``license`` is given. An existing repo with files is replaced only with ``force``. Raises
    :class:`PublishError` or :class:`ConfigError` (both exit code 2) before any write to the Hub.
    """
    if not is_repo_id(repo_id):
        raise ConfigError(f"--repo must be ORG/NAME, got {repo_id!r}")
    run = Path(run_dir).expanduser()
    learner = _run_learner(run)
    evaluations = _model_evaluations(run=run, no_results=no_results)
    sources = read_sources(run_dir=run)
    if sources is None:
        raise PublishError(f"{run} has no sources.json listing the models it learned from (runs of `freehub meta-train` write it)")
    config = read_json_object(run / "config.json")
    if config.get("recovery") == REAL_IMAGES and license is None:
        raise PublishError(f"{run} is a data-oracle run trained on real images: its license is the data's, pass --license ID")
    chosen_license = derive_license(sources=sources, override=license)
    template = _read_template(card_template)
    opened = hub if isinstance(hub, Hub) else open_hub(hub, token=token)
    with tempfile.TemporaryDirectory(prefix="freehub-push-") as scratch:
        staged = Path(scratch) / "repo"
        files = _stage(
            run=run, learner=learner, config=config, staged=staged, repo_id=repo_id, hub=opened, license=chosen_license,
            license_derived=license is None, sources=sources, evaluations=evaluations, template=template,
        )
        created = _check_destination(hub=opened, repo_id=repo_id, force=force)
        try:
            url = opened.create_repo(repo_id=repo_id, private=private, exist_ok=True)
            commit = opened.upload_folder(
                repo_id=repo_id, folder=staged, commit_message=message or f"freehub push: meta-learner of run {run.resolve().name}",
                replace=force,
            )
        except HubPermissionError as error:
            raise PublishError(str(error)) from error
    card = str(Path(url) / "README.md") if isinstance(opened, LocalHub) else f"{opened.location}/{repo_id}"
    return PushResult(
        repo_id=repo_id, hub=opened.location, commit=commit, url=url, card=card, license=chosen_license,
        files=files, results=len(evaluations), created=created,
    )


def _run_learner(run: Path) -> MetaLearner:
    if not run.is_dir():
        raise PublishError(f"no such run: {run}")
    try:
        return load_learner(directory=run / "learner").eval()
    except CheckpointError as error:
        raise PublishError(f"{run} holds no usable learner: {error}") from error


def _model_evaluations(*, run: Path, no_results: bool) -> tuple[Evaluation, ...]:
    """The entries of evaluations.json measured on this run's learner.

    Baselines stored beside them (``random``, ``pixels``, another run such as an oracle) are results of other
    models and never reach the card; an entry counts when its ``model`` is this run's folder.
    """
    entries = read_evaluations(run_dir=run) or ()
    mine = tuple(entry for entry in entries if _names_run(entry.model, run))
    if mine and evaluated_learner_sha256(run_dir=run) != learner_sha256(run_dir=run):
        raise PublishError(f"{run}/evaluations.json was measured on another learner (the run changed since): evaluate it again with --save")
    if not mine and not no_results:
        others = sorted({entry.model for entry in entries})
        found = f" (it has evaluations of {', '.join(others[:3])} only)" if others else ""
        raise PublishError(f"{run} has no evaluation of its learner in evaluations.json{found}: evaluate it first, or pass --no-results")
    return mine


def _names_run(model: str, run: Path) -> bool:
    if model == RANDOM or model in REFERENCES:
        return False
    named = Path(model).expanduser()
    folders = (run.resolve(), (run / "learner").resolve())
    if named.is_absolute():
        return named.resolve() in folders
    # evaluate records the path as it was typed, relative to wherever it ran: compare the tail.
    parts = tuple(part for part in named.parts if part != ".")
    return ".." not in parts and any(parts and folder.parts[-len(parts):] == parts for folder in folders)


def _read_template(path: str | os.PathLike[str] | None) -> tuple[str, str] | None:
    if path is None:
        return None
    try:
        return Path(path).name, Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read card template {path}: {error}") from error


def _stage(
    *,
    run: Path,
    learner: MetaLearner,
    config: dict[str, Any],
    staged: Path,
    repo_id: str,
    hub: Hub,
    license: str,
    license_derived: bool,
    sources: RunSources,
    evaluations: tuple[Evaluation, ...],
    template: tuple[str, str] | None,
) -> tuple[str, ...]:
    """Write every file of the commit into ``staged``; returns their repo paths."""
    learner_meta = read_json_object(run / "learner" / "learner.json")
    selected = learner_meta.get("iteration") if isinstance(learner_meta.get("iteration"), int) else None
    export_learner(learner=learner, folder=staged, extra={"selected_iteration": selected}, license=license)
    _check_export(learner=learner, staged=staged)
    images: dict[str, str] = {}
    curve = read_val_curve(run_dir=run)
    if curve:
        _draw_val_curve(points=curve, selected=selected, config=config, path=staged / META_VAL_IMAGE)
        images["meta_val"] = META_VAL_IMAGE
    grids = latest_grids(run_dir=run)
    if grids:
        _draw_grids(grids=grids, sources=sources, path=staged / RECOVERED_IMAGE)
        images["recovered"] = RECOVERED_IMAGE
    card = render_learner_card(
        repo_id=repo_id,
        hub_location=hub.location,
        license=license,
        license_derived=license_derived,
        spec=learner.spec,
        sources=sources,
        evaluations=evaluations,
        run_config=config,
        selected_iteration=selected,
        selected_on_val="val_acc" in learner_meta,
        images=images,
        template=template[1] if template else None,
        template_name=template[0] if template else "learner.md.jinja",
    )
    atomic_write_text(staged / "README.md", card)
    return tuple(sorted(path.relative_to(staged).as_posix() for path in staged.rglob("*") if path.is_file()))


def _check_export(*, learner: MetaLearner, staged: Path) -> None:
    """Refuse to publish files that would not rebuild the run's learner exactly."""
    rebuilt, _ = load_exported(folder=staged)
    probe = torch.rand(4, 3, learner.spec.image_size, learner.spec.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        same = torch.allclose(learner.features(probe), rebuilt.features(probe), atol=1e-5)
    if not same:
        raise PublishError("the exported files do not rebuild the run's learner; nothing was pushed")


def _check_destination(*, hub: Hub, repo_id: str, force: bool) -> bool:
    """Whether the repo is new; refuses a repo holding files unless ``force``, and a Hub that will not take writes."""
    try:
        hub.check_write(repo_id=repo_id)
    except HubPermissionError as error:
        raise PublishError(str(error)) from error
    try:
        info = hub.repo_info(repo_id=repo_id)
    except RepoNotFoundError:
        return True
    present = [entry.path for entry in info.files if entry.path != ".gitattributes"]
    if present and not force:
        shown = ", ".join(present[:3]) + (", ..." if len(present) > 3 else "")
        raise PublishError(f"{repo_id} already holds files ({shown}): pass --force to replace them")
    return False


def _draw_val_curve(*, points: tuple[ValPoint, ...], selected: int | None, config: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6, 3.2), dpi=100)
    axes = figure.subplots()
    iterations = [point.iteration for point in points]
    accuracy = [100 * point.accuracy for point in points]
    errors = [100 * (point.ci95 or 0.0) for point in points]
    axes.errorbar(iterations, accuracy, yerr=errors, marker="o", capsize=3, label="meta-validation")
    chosen = [point for point in points if point.iteration == selected]
    if chosen:
        axes.plot([chosen[0].iteration], [100 * chosen[0].accuracy], marker="*", markersize=16, linestyle="none", label="published")
    n_way, k_shot = config.get("n_way"), config.get("val_k_shot")
    setting = f"{n_way}-way {k_shot}-shot " if isinstance(n_way, int) and isinstance(k_shot, int) else ""
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("meta-training iteration (-1: right after prior distillation)" if points and points[0].iteration < 0 else "meta-training iteration")
    axes.set_ylabel(f"{setting}accuracy (%)")
    axes.set_title("Meta-validation accuracy (95% interval)")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def _draw_grids(*, grids: tuple[tuple[int, Path], ...], sources: RunSources, path: Path) -> None:
    from matplotlib.figure import Figure

    teachers = {teacher.index: teacher for teacher in sources.teachers}
    sheets = []
    for index, grid_path in grids:
        with Image.open(grid_path) as opened:
            pixels = np.asarray(opened.convert("RGB"))
        teacher = teachers.get(index)
        labels = teacher.label_names if teacher is not None else ()
        repo = sources.models[teacher.model].repo_id if teacher is not None else f"teacher {index}"
        sheets.append((_first_rows(pixels, columns=len(labels)), labels, repo))
    figure = Figure(figsize=(7, 2.6 * len(sheets)), dpi=100)
    for axes, (pixels, labels, repo) in zip(np.atleast_1d(figure.subplots(len(sheets), 1)), sheets):
        axes.imshow(pixels, interpolation="nearest")
        axes.set_title(_plain(repo), fontsize=9)
        axes.set_yticks([])
        if labels:
            tile = (pixels.shape[1] - _GRID_GAP) / len(labels) - _GRID_GAP
            axes.set_xticks([_GRID_GAP + column * (tile + _GRID_GAP) + tile / 2 for column in range(len(labels))])
            axes.set_xticklabels([textwrap.shorten(_plain(label).lower(), width=24, placeholder="...") for label in labels], fontsize=7, rotation=20)
        else:
            axes.set_xticks([])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")


def _first_rows(pixels: np.ndarray, *, columns: int) -> np.ndarray:
    """The top rows of a grid sheet: enough to show every class a few times."""
    if columns < 1:
        return pixels
    tile = (pixels.shape[1] - _GRID_GAP) / columns - _GRID_GAP
    height = int(round(_GRID_GAP + _GRID_ROWS_SHOWN * (tile + _GRID_GAP)))
    return pixels[: max(1, height)]


def _plain(text: str) -> str:
    # Matplotlib reads "$...$" as mathematics; a label from a Hub must not be parsed as anything.
    return text.replace("$", r"\$")
