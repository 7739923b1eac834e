"""Published few-shot learners: the repo layout ``freehub push`` writes, and :class:`FewShotLearner` to use one.

A published repo holds ``config.json`` and ``model.safetensors``. The config's ``freehub`` object
rebuilds the :class:`~freehub.free.learners.MetaLearner` (its spec, BatchNorm mode and
preprocessing). A timm backbone is stored the way ``timm`` itself pushes models (the rest of
``config.json`` is timm's, the weights carry timm's names, a MAML head initialisation goes to
``learner_head.safetensors``), so ``timm.create_model("hf-hub:ORG/NAME", pretrained=True)`` gives
the backbone as a feature extractor. A Conv4 backbone is stored under the learner's own names.

Everything read from a repo is checked before use: the config's fields and sizes, timm arguments
that would load files, every tensor name and shape; weights are safetensors only.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch.func import functional_call

from freehub.adapters.timm import save_timm_checkpoint
from freehub.atomic import atomic_write_text, atomic_write_with
from freehub.errors import CheckpointError, ConfigError, IntegrityError
from freehub.free.episodic import adapt_parameters, prototype_logits
from freehub.free.fewshot import METHODS
from freehub.free.learners import BN_MODE, LearnerSpec, MetaLearner, build_learner, load_learner
from freehub.hub import Hub, is_repo_id, open_hub

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
HEAD_NAME = "learner_head.safetensors"
FORMAT = 1

_TIMM_PREFIX = "timm:"
_MAX_CONFIG_BYTES = 1 << 20
_MAX_WEIGHTS_BYTES = 4 << 30
# timm keywords that load files, download weights or change what the backbone is: never from a repo.
_FORBIDDEN_BACKBONE_ARGS = frozenset(
    {"pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path", "cache_dir", "features_only",
     "num_classes", "in_chans"}
)
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")
# The learner's own input map (MetaLearner.prepare): what a timm user must apply to match it.
_MEAN = (0.5, 0.5, 0.5)
_STD = (0.5, 0.5, 0.5)


def export_learner(*, learner: MetaLearner, folder: Path, extra: dict[str, Any] | None = None, license: str | None = None) -> Path:
    """Write ``learner`` into ``folder`` in the published layout; ``extra`` joins the config's ``freehub`` object."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    spec = learner.spec
    section = {
        "format": FORMAT,
        "kind": "few-shot-learner",
        "spec": spec.to_dict(),
        "bn_mode": BN_MODE,
        "weights": "timm" if spec.backbone.startswith(_TIMM_PREFIX) else "learner",
        "preprocessing": {
            "input": "images with values in [0, 1], 1 or 3 channels, any size",
            "grey_to_rgb": True,
            "resize": [spec.image_size, spec.image_size],
            "interpolation": "bilinear",
            "mean": list(_MEAN),
            "std": list(_STD),
        },
        **(extra or {}),
    }
    state = {name: value.detach().cpu().contiguous() for name, value in learner.state_dict().items()}
    if section["weights"] == "learner":
        atomic_write_with(folder / WEIGHTS_NAME, lambda path: save_file(state, str(path), metadata={"format": "pt"}))
        config: dict[str, Any] = {"freehub": section}
    else:
        config = _export_timm(learner=learner, folder=folder, license=license)
        config["freehub"] = section
        head = {name[len("head."):]: value for name, value in state.items() if name.startswith("head.")}
        if head:
            atomic_write_with(folder / HEAD_NAME, lambda path: save_file(head, str(path), metadata={"format": "pt"}))
    atomic_write_text(folder / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    return folder


def _export_timm(*, learner: MetaLearner, folder: Path, license: str | None) -> dict[str, Any]:
    import timm

    spec = learner.spec
    with torch.random.fork_rng(devices=[]):
        network = timm.create_model(spec.backbone[len(_TIMM_PREFIX):], pretrained=False, num_classes=0, in_chans=3, **spec.backbone_args)
    # The learner dropped BatchNorm's running buffers (it normalises with batch statistics); timm's
    # layout needs them, so the fresh network's neutral ones (mean 0, variance 1) stay in place.
    missing, unexpected = network.load_state_dict(learner.backbone.state_dict(), strict=False)
    if unexpected or any(not name.endswith(_BN_BUFFERS) for name in missing):
        raise CheckpointError(f"the learner's backbone does not match timm's {spec.backbone}", reason="shape_mismatch")
    save_timm_checkpoint(
        model=network, folder=folder, label_names=(), input_size=(3, spec.image_size, spec.image_size),
        mean=_MEAN, std=_STD, interpolation="bilinear", model_args=spec.backbone_args, license=license,
    )
    return json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))


def load_exported(*, folder: Path) -> tuple[MetaLearner, dict[str, Any]]:
    """The learner in a published ``folder`` and the config's ``freehub`` object, every field checked."""
    folder = Path(folder)
    config = _read_config(folder / CONFIG_NAME)
    section = config.get("freehub")
    if not isinstance(section, dict) or section.get("format") != FORMAT:
        raise CheckpointError(f"{folder} is not a freehub learner (config.json has no freehub format {FORMAT})", reason="bad_config")
    spec = _checked_spec(section.get("spec"))
    weights = section.get("weights")
    if weights not in ("learner", "timm") or (weights == "timm") != spec.backbone.startswith(_TIMM_PREFIX):
        raise CheckpointError(f"config.json: weights {weights!r} do not fit backbone {spec.backbone!r}", reason="bad_config")
    if weights == "timm" and config.get("architecture") != spec.backbone[len(_TIMM_PREFIX):]:
        raise CheckpointError("config.json: timm architecture and freehub backbone disagree", reason="bad_config")
    tensors = _read_tensors(folder / WEIGHTS_NAME)
    _check_weights_cover(spec=spec, files=[folder / WEIGHTS_NAME, folder / HEAD_NAME])
    with torch.random.fork_rng(devices=[]):
        learner = build_learner(spec=spec)
    try:
        if weights == "learner":
            learner.load_state_dict(tensors)
        else:
            _load_timm_weights(learner=learner, tensors=tensors, folder=folder)
    except RuntimeError as error:
        raise CheckpointError(f"{folder}: weights do not match the learner spec: {error}", reason="shape_mismatch") from error
    return learner.eval(), section


def _check_weights_cover(*, spec: LearnerSpec, files: Sequence[Path]) -> None:
    """Refuse a spec whose learner would hold more bytes than its weight files: a config must not make
    us allocate a network its files cannot fill (a memory bomb). The learner is sized on the meta device."""
    available = sum(path.stat().st_size for path in files if path.is_file())
    try:
        with torch.device("meta"):
            shell = MetaLearner(spec=spec)
    except NotImplementedError:
        # An architecture whose layers have no meta kernels: the weights' own shape check still applies.
        return
    except (RuntimeError, TypeError, ValueError, AssertionError, KeyError, IndexError) as error:
        raise CheckpointError(f"config.json: cannot build {spec.backbone}: {error}", reason="bad_config") from error
    needed = sum(tensor.numel() * tensor.element_size() for tensor in shell.state_dict().values())
    if needed > available:
        raise CheckpointError(f"config.json describes {needed} bytes of weights, the files hold {available}", reason="shape_mismatch")


def _load_timm_weights(*, learner: MetaLearner, tensors: dict[str, torch.Tensor], folder: Path) -> None:
    expected = learner.backbone.state_dict()
    missing = sorted(set(expected) - set(tensors))
    # Only BatchNorm's neutral running buffers may be extra: they exist for timm users, not for the learner.
    surplus = sorted(name for name in set(tensors) - set(expected) if not name.endswith(_BN_BUFFERS))
    if missing or surplus:
        raise CheckpointError(f"{folder}: backbone tensors missing {missing[:3]} or unexpected {surplus[:3]}", reason="shape_mismatch")
    learner.backbone.load_state_dict({name: tensors[name] for name in expected})
    if learner.head is not None:
        head = _read_tensors(folder / HEAD_NAME)
        learner.head.load_state_dict(head)


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {CONFIG_NAME}", reason="missing_files")
    if path.stat().st_size > _MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path} is larger than {_MAX_CONFIG_BYTES} bytes", reason="too_large")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}", reason="bad_config") from error
    if not isinstance(config, dict):
        raise CheckpointError(f"{path} is not a JSON object", reason="bad_config")
    return config


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent} has no {path.name}", reason="missing_files")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {error}", reason="corrupt") from error


def _checked_spec(raw: Any) -> LearnerSpec:
    """A :class:`LearnerSpec` from untrusted JSON: known fields, sane types and bounds, no file-loading timm args."""
    if not isinstance(raw, dict):
        raise CheckpointError("config.json: freehub.spec must be an object", reason="bad_config")
    known = {f.name for f in fields(LearnerSpec)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise CheckpointError(f"config.json: unknown learner spec fields {unknown}", reason="bad_config")
    bounds = {"n_way": (2, 1000), "image_size": (16, 1024), "conv_width": (1, 1024)}
    for name, (low, high) in bounds.items():
        value = raw.get(name, getattr(LearnerSpec, name))
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise CheckpointError(f"config.json: {name} must be an integer in [{low}, {high}]", reason="bad_config")
    for name in ("backbone", "algorithm", "metric"):
        if name in raw and not isinstance(raw[name], str):
            raise CheckpointError(f"config.json: {name} must be a string", reason="bad_config")
    args = raw.get("backbone_args", {})
    if not isinstance(args, dict) or not all(isinstance(key, str) for key in args):
        raise CheckpointError("config.json: backbone_args must be an object", reason="bad_config")
    forbidden = sorted(_FORBIDDEN_BACKBONE_ARGS.intersection(args))
    if forbidden:
        raise CheckpointError(f"config.json: backbone_args may not set {forbidden}", reason="unsafe")
    if not all(_plain_json(value) for value in args.values()):
        raise CheckpointError("config.json: backbone_args must hold numbers, strings, booleans or lists", reason="bad_config")
    spec = LearnerSpec.from_dict(raw)
    try:
        spec.validate()
    except ConfigError as error:
        raise CheckpointError(f"config.json: {error}", reason="bad_config") from error
    if spec.backbone.startswith(_TIMM_PREFIX):
        import timm

        if not timm.is_model(spec.backbone[len(_TIMM_PREFIX):]):
            raise CheckpointError(f"config.json: timm has no architecture {spec.backbone!r}", reason="unknown_architecture")
    return spec


def _plain_json(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_plain_json(item) for item in value)
    return value is None or isinstance(value, (bool, int, float, str))


# --- using a learner ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FewShotPrediction:
    """Predictions for a batch of query images.

    ``indices[i]`` is the predicted class of query ``i`` (an index into ``classes``), ``labels[i]``
    that class's label as given to :meth:`FewShotLearner.adapt`, ``probabilities[i]`` the
    distribution over ``classes``.
    """

    indices: torch.Tensor
    probabilities: torch.Tensor
    labels: tuple[Any, ...]
    classes: tuple[Any, ...]


class FewShotClassifier:
    """A learner adapted to one support set; call it on query images.

    BatchNorm normalises with batch statistics (see :mod:`freehub.free.learners`): ProtoNet embeds
    the support set and the queries in one batch, fine-tuning scores the queries as one batch, as
    evaluation does. Predictions therefore depend on which queries are scored together.
    """

    def __init__(
        self,
        *,
        learner: MetaLearner,
        classes: tuple[Any, ...],
        method: str,
        support_images: torch.Tensor,
        support_labels: torch.Tensor,
        params: dict[str, torch.Tensor] | None,
    ) -> None:
        self.learner = learner
        self.classes = classes
        self.method = method
        self._support_images = support_images
        self._support_labels = support_labels
        self._params = params

    def logits(self, query_images: Any) -> torch.Tensor:
        """Query logits over :attr:`classes` (PIL images, paths or tensors in)."""
        queries = as_image_batch(query_images, size=self.learner.spec.image_size).to(self._support_images.device)
        with torch.no_grad():
            if self._params is not None:
                return functional_call(self.learner, self._params, (queries,))
            features = self.learner.features(torch.cat([self._support_images, queries]))
            support = len(self._support_images)
            return prototype_logits(
                support_features=features[:support], support_labels=self._support_labels,
                query_features=features[support:], n_way=len(self.classes), metric=self.learner.spec.metric,
            )

    def __call__(self, query_images: Any) -> FewShotPrediction:
        logits = self.logits(query_images)
        probabilities = torch.softmax(logits, dim=1)
        indices = probabilities.argmax(dim=1)
        return FewShotPrediction(
            indices=indices, probabilities=probabilities, labels=tuple(self.classes[i] for i in indices.tolist()), classes=self.classes
        )


class FewShotLearner:
    """A meta-trained few-shot learner: adapt it to a few labelled images, then classify new ones.

    ::

        from freehub import FewShotLearner
        model = FewShotLearner.from_pretrained("ORG/NAME", hub="https://huggingface.co")
        classify = model.adapt(support_images, support_labels)   # PIL images, paths or tensors
        prediction = classify(query_images)                      # .indices, .probabilities, .labels
    """

    def __init__(self, *, learner: MetaLearner, config: dict[str, Any] | None = None) -> None:
        self.learner = learner
        self.config = dict(config or {})

    @classmethod
    def from_pretrained(
        cls,
        source: str | os.PathLike[str],
        *,
        hub: str | os.PathLike[str] | Hub | None = None,
        revision: str | None = None,
        token: str | None = None,
    ) -> FewShotLearner:
        """Load a learner from a folder or a Hub repo.

        ``source`` is a local folder (a pushed repo's files, a meta-train run directory, or its
        ``learner/`` folder) or else a repo id ``ORG/NAME`` on ``hub`` (a URL, a folder hub or a
        :class:`~freehub.hub.Hub`; default HF_ENDPOINT or huggingface.co) at ``revision`` (default:
        its head). As in transformers, an existing folder wins over a repo of the same name.
        """
        text = os.fspath(source)
        folder = Path(text).expanduser()
        if folder.is_dir():
            return cls._from_folder(folder)
        if not is_repo_id(text):
            raise ConfigError(f"{text!r} is neither a folder nor a repo id of the form ORG/NAME")
        opened = hub if isinstance(hub, Hub) else open_hub(hub, token=token)
        return cls._from_repo(hub=opened, repo_id=text, revision=revision)

    @classmethod
    def _from_folder(cls, folder: Path) -> FewShotLearner:
        for candidate in (folder / "learner", folder):
            if (candidate / "learner.json").is_file():
                learner = load_learner(directory=candidate).eval()
                return cls(learner=learner, config={"spec": learner.spec.to_dict(), "bn_mode": BN_MODE})
        if (folder / CONFIG_NAME).is_file():
            learner, section = load_exported(folder=folder)
            return cls(learner=learner, config=section)
        raise CheckpointError(f"{folder} holds no freehub learner (no config.json, learner/ or learner.json)", reason="missing_files")

    @classmethod
    def _from_repo(cls, *, hub: Hub, repo_id: str, revision: str | None) -> FewShotLearner:
        info = hub.repo_info(repo_id=repo_id, revision=revision)
        listed = {entry.path: entry for entry in info.files}
        wanted = [name for name in (CONFIG_NAME, WEIGHTS_NAME, HEAD_NAME) if name in listed]
        if CONFIG_NAME not in listed or WEIGHTS_NAME not in listed:
            raise CheckpointError(f"{repo_id} has no {CONFIG_NAME} + {WEIGHTS_NAME}: not a freehub learner", reason="missing_files")
        limits = {CONFIG_NAME: _MAX_CONFIG_BYTES, WEIGHTS_NAME: _MAX_WEIGHTS_BYTES, HEAD_NAME: _MAX_WEIGHTS_BYTES}
        for name in wanted:
            if listed[name].size > limits[name]:
                raise CheckpointError(f"{repo_id}/{name} is {listed[name].size} bytes, the limit is {limits[name]}", reason="too_large")
        with tempfile.TemporaryDirectory(prefix="freehub-learner-") as scratch:
            try:
                local = hub.download(repo_id=repo_id, revision=info.sha, filenames=wanted, local_dir=Path(scratch))
            except IntegrityError as error:
                raise CheckpointError(str(error), reason="checksum_mismatch") from error
            for name in wanted:
                _verify(path=local[name], size=listed[name].size, sha256=listed[name].sha256, what=f"{repo_id}/{name}")
            learner, section = load_exported(folder=Path(scratch))
        return cls(learner=learner, config={**section, "repo_id": repo_id, "revision": info.sha})

    def adapt(
        self,
        support_images: Any,
        support_labels: Sequence[Any] | torch.Tensor,
        *,
        method: str | None = None,
        steps: int = 10,
        lr: float = 0.01,
    ) -> FewShotClassifier:
        """A classifier over the distinct ``support_labels`` (sorted), adapted to the support set.

        ``method`` defaults to the learner's own rule: ``"protonet"`` (nearest class prototype) or
        ``"finetune"`` (``steps`` SGD steps at ``lr`` on the whole network, a MAML learner's rule).
        """
        method = method or ("finetune" if self.learner.spec.algorithm == "maml" else "protonet")
        if method not in METHODS:
            raise ConfigError(f"unknown adaptation method {method!r}; choose one of {METHODS}")
        labels = support_labels.tolist() if isinstance(support_labels, torch.Tensor) else list(support_labels)
        try:
            classes = tuple(sorted(set(labels)))
        except TypeError as error:
            raise ConfigError("support labels must be all numbers or all strings") from error
        if len(classes) < 2:
            raise ConfigError("a few-shot task needs at least two classes in the support set")
        device = next(self.learner.parameters()).device
        images = as_image_batch(support_images, size=self.learner.spec.image_size).to(device)
        if len(images) != len(labels):
            raise ConfigError(f"{len(images)} support images but {len(labels)} labels")
        targets = torch.tensor([classes.index(label) for label in labels], device=device)
        params = None
        if method == "finetune":
            if self.learner.head is None:
                raise ConfigError("fine-tuning needs a learner with a head; use method='protonet'")
            adapted = adapt_parameters(
                learner=self.learner, images=images, labels=targets, steps=steps, lr=lr, n_way=len(classes), create_graph=False
            )
            params = {name: value.detach() for name, value in adapted.items()}
        return FewShotClassifier(
            learner=self.learner, classes=classes, method=method, support_images=images, support_labels=targets, params=params
        )


def as_image_batch(images: Any, *, size: int) -> torch.Tensor:
    """``B x 3 x size x size`` floats in ``[0, 1]`` from a ``B x C x H x W`` tensor or a sequence of
    PIL images, image file paths or ``C x H x W`` / ``H x W`` tensors (uint8, or floats in ``[0, 1]``)."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        items: list[Any] = list(images)
    elif isinstance(images, (str, os.PathLike, Image.Image, torch.Tensor)):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise ConfigError("no images given")
    return torch.stack([_one_image(item, size=size) for item in items])


def _one_image(item: Any, *, size: int) -> torch.Tensor:
    if isinstance(item, (str, os.PathLike)):
        try:
            with Image.open(item) as opened:
                item = opened.convert("RGB")
        except OSError as error:
            raise ConfigError(f"cannot read image {os.fspath(item)!r}: {error}") from error
    if isinstance(item, Image.Image):
        item = torch.from_numpy(np.asarray(item.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)
    if not isinstance(item, torch.Tensor):
        raise ConfigError(f"an image must be a PIL image, a path or a tensor, got {type(item).__name__}")
    if item.dim() == 2:
        item = item.unsqueeze(0)
    if item.dim() != 3 or item.shape[0] not in (1, 3):
        raise ConfigError(f"an image tensor must be C x H x W with 1 or 3 channels, got {list(item.shape)}")
    if item.dtype == torch.uint8:
        item = item.float() / 255.0
    else:
        item = item.float()
        if item.numel() and (item.min() < 0.0 or item.max() > 1.0):
            raise ConfigError("float image tensors must hold values in [0, 1]")
    item = item.expand(3, -1, -1)
    if item.shape[-2:] != (size, size):
        item = F.interpolate(item.unsqueeze(0), size=(size, size), mode="bilinear", align_corners=False).squeeze(0)
    return item


def _verify(*, path: Path, size: int, sha256: str | None, what: str) -> None:
    data = path.read_bytes()
    if len(data) != size:
        raise CheckpointError(f"{what} is {len(data)} bytes, the Hub lists {size}", reason="checksum_mismatch")
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise CheckpointError(f"{what} does not match the sha256 the Hub lists", reason="checksum_mismatch")
