"""Every knob of a FREE meta-training run, with CPU defaults and the paper's GPU preset.

The defaults finish a meaningful run on about 24 small teachers in roughly ten minutes on two CPU
cores (DESIGN.md's measurements: a half-width generator with 50 images costs ~1.3 s per 5-step
teacher recovery). :meth:`MetaTrainConfig.paper` is the reference setting for a GPU.

The CPU learner is ProtoNet, not the paper's MAML. Measured on the embedded glyph set (5-way
1-shot, meta-val): trained on real meta-train episodes for 100 outer steps, ProtoNet reaches 79%
and second-order MAML 73%, at five times ProtoNet's cost per step; trained by FREE on the 24-teacher
zoo with these defaults, ProtoNet gains about 9 points over its random initialisation, where MAML
fell below its own. Replay is kept short on purpose (patience 5, at most 20 outer steps per
iteration).

Two defaults carry most of what this learner gains (glyph meta-test, 300 episodes, one seed each;
random initialisation 36.7 / 55.0, the fair data oracle 81.1 / 92.7 for 5-way 1 / 5-shot):
``replay_colour_jitter`` (42.3 / 62.1 without it, 51.1 / 71.9 with it: grey and colour teachers
recover differently styled images, and without jitter an episode can be solved by style) and
``distill_scaled`` (51.2 / 72.7; meta-val accuracy no longer falls after its first peak). The
memory filter, no adversary and faster inversion, the best variant of an earlier round, measured
36.0 / 51.3 here (45.4 / 62.5 with jitter): kept as options, off by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from torch import nn

from freehub.errors import ConfigError
from freehub.free.generator import Generator
from freehub.free.inversion import META_RULES, InversionSettings
from freehub.free.learners import ALGORITHMS, METRICS, LearnerSpec
from freehub.free.prior_distill import PriorDistillSettings
from freehub.free.strokes import StrokeGenerator

RECOVERIES = ("meta-generator", "scratch-generator", "pixels", "real")
"""``real`` is the data oracle: the memory holds real images instead of recovered ones."""
TEACHER_WEIGHTINGS = ("uniform", "slices")
GENERATORS = ("conv", "strokes")
"""Image priors: FastDFKD's convolutional generator (any pixels) or pen strokes (:mod:`freehub.free.strokes`)."""


@dataclass(frozen=True)
class MetaTrainConfig:
    """A FREE run. One *iteration* recovers a meta-batch of teachers (FIVE), then, after warm-up,
    takes one alignment step (BELL) and replays episodes from memory until patience runs out."""

    seed: int = 0
    device: str = "auto"
    iterations: int = 48
    # A wall-clock budget in seconds (0: none): the run stops at the first iteration boundary past it,
    # so that methods of different cost per iteration can be compared at equal time.
    max_seconds: float = 0.0
    teachers_per_step: int = 4
    # How a meta-batch draws its models: "uniform" (each model equally often, whatever its number of
    # classes) or "slices" (by the number of n_way-class slices its head holds).
    teacher_weighting: str = "uniform"
    warmup_iterations: int = 4

    # FIVE: generator and per-teacher inversion.
    image_size: int = 32
    # The generator's image prior: "conv" (FastDFKD's, the paper's; any pixels) or "strokes"
    # (``generator_strokes`` pen strokes on a plain ground: right for characters, symbols, sketches).
    # Prior distillation on the glyph zoo (one seed each, 300 meta-test episodes, 1-shot): 2 strokes 65.2,
    # 3 strokes 63.5 (64.9 and 63.9 on seeds 1 and 2), 4 strokes 61.0, 6 strokes 56.1, 10 strokes 54.8.
    generator: str = "conv"
    generator_strokes: int = 3
    latent_dim: int = 256
    generator_width: int = 64
    images_per_task: int = 50
    inversion_steps: int = 5
    inversion_lr: float = 1e-3
    inversion_lr_z: float = 1e-3
    inversion_betas: tuple[float, float] = (0.5, 0.999)
    # Start each inversion from the best of ``inversion_latent_pool`` x images_per_task latent codes
    # (by the teacher's probability of each image's label, no-grad forward passes; 1: a plain draw, the paper's).
    inversion_latent_pool: int = 1
    generator_meta_rule: str = "fomaml"
    generator_meta_lr: float = 1e-3
    adv_weight: float = 1.0
    adv_temperature: float = 1.0
    adv_cap: float = 1.0
    bn_prior_weight: float = 0.0
    tv_weight: float = 0.0
    l2_weight: float = 0.0
    # Weight of the mean same-class cosine similarity of the teacher's features (spreads each class).
    diversity_weight: float = 0.0
    aug_shift: float = 0.125
    aug_flip: bool = False
    aug_rotate: float = 0.0
    aug_scale: float = 0.0

    # How tasks are recovered: FREE's meta-generator, or one of the baselines that start afresh for
    # every teacher (a new generator, or the pixels themselves) with ``baseline_steps`` steps.
    recovery: str = "meta-generator"
    baseline_steps: int = 200
    pixel_lr: float = 0.05
    # Memory keeps only images whose teacher gives them their target label (on the un-augmented image).
    memory_filter: bool = False
    # A teacher whose recovered task it recognises less often than this teaches nothing this iteration.
    min_teacher_acc: float = 0.0

    # Prior distillation (freehub.free.prior_distill): before the first iteration, the learner is
    # taught the teacher ensemble's pairwise similarities on ``prior_distill_images`` samples of the
    # generator's prior, for ``prior_distill_steps`` Adam steps of ``prior_distill_batch`` images (0: off).
    prior_distill_steps: int = 0
    prior_distill_images: int = 4000
    prior_distill_batch: int = 64
    prior_distill_lr: float = 1e-3
    # The learner sees each sample moved, turned and scaled by up to this much (views.random_affine).
    prior_distill_affine: float = 0.1

    # BELL: learner, alignment and replay.
    backbone: str = "conv4"
    backbone_args: dict[str, Any] = field(default_factory=dict)
    conv_width: int = 32
    algorithm: str = "protonet"
    # How the learner compares a query with its class prototypes (LearnerSpec.metric): "euclidean",
    # "cosine", or "auto": cosine when prior distillation teaches the learner (it teaches similarities
    # by angle; evaluated by distance, the same learner loses ~5 points of 1-shot accuracy), else euclidean.
    learner_metric: str = "auto"
    n_way: int = 5
    k_shot: int = 1
    q_queries: int = 5
    episodes_per_step: int = 4
    inner_steps: int = 5
    inner_lr: float = 0.01
    first_order: bool = False
    outer_lr: float = 1e-3
    align: bool = True
    # ProtoNet logits for distillation (alignment, adversary) as squared distances per feature dimension.
    distill_scaled: bool = True
    align_lr: float = 0.015
    align_weight: float = 1.0
    # Per-image random greyscale and per-channel contrast/brightness in replay episodes, so that an
    # episode cannot be solved by the colour style of the teacher that recovered a class.
    replay_colour_jitter: bool = True
    # Per-image random pose in replay episodes: rotation up to this many degrees, with zoom up to
    # ``replay_pose / 100`` and shifts up to 1/10 of the width (0: off). Support and query images of a
    # class get independent poses, so the learner must recognise the class, not one recovered pattern.
    replay_pose: float = 0.0
    # Per-image Gaussian blur of up to this many pixels (0: off) and additive pixel noise of up to this
    # standard deviation (0: off) in replay episodes: sharpness and noise level vary from teacher to
    # teacher (input sizes, architectures), and real images carry noise that recovered ones lack.
    replay_blur: float = 0.0
    replay_noise: float = 0.0
    # Weight of relational distillation in replay: each outer step also matches the learner's pairwise
    # feature similarities to a teacher's, on memory images that teacher recovered (0: off).
    relation_weight: float = 0.0
    relation_images: int = 40
    # Fraction of replay episodes whose classes all come from one teacher (the rest mix teachers).
    replay_within_teacher: float = 0.0
    patience: int = 5
    max_replay_steps: int = 20

    # Task memory.
    memory_per_class: int = 40
    memory_max_images: int = 20_000

    # Meta-validation, checkpoints, pictures.
    val_every: int = 10
    val_episodes: int = 100
    val_k_shot: int = 1
    val_q_queries: int = 15
    val_steps: int = 10
    val_lr: float = 0.01
    grid_every: int = 10

    @classmethod
    def paper(cls, **overrides: Any) -> MetaTrainConfig:
        """The reference setting (GPU): 128-wide generator, 100 images and 4 teachers per step, 15
        queries, 10 episodes per outer step, second-order MAML, patience 10, 20 warm-up iterations,
        600 validation episodes."""
        preset = cls(
            iterations=1000,
            algorithm="maml",
            warmup_iterations=20,
            generator_width=128,
            images_per_task=100,
            teachers_per_step=4,
            aug_flip=True,
            q_queries=15,
            episodes_per_step=10,
            patience=10,
            max_replay_steps=200,
            memory_per_class=100,
            memory_max_images=200_000,
            val_every=20,
            val_episodes=600,
            grid_every=50,
        )
        return replace(preset, **overrides)

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first knob that cannot work."""
        positive = (
            "teachers_per_step", "latent_dim", "generator_width", "images_per_task", "inversion_steps", "inversion_latent_pool",
            "episodes_per_step", "inner_steps", "patience", "max_replay_steps", "memory_per_class", "memory_max_images",
            "val_every", "val_episodes", "val_k_shot", "val_q_queries", "grid_every", "k_shot", "q_queries",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_seconds < 0:
            raise ConfigError(f"max_seconds cannot be negative, got {self.max_seconds}")
        if self.iterations < 0:
            raise ConfigError(f"iterations cannot be negative, got {self.iterations}")
        if self.warmup_iterations < 0:
            raise ConfigError("warmup_iterations cannot be negative")
        for name in ("inversion_lr", "inversion_lr_z", "generator_meta_lr", "outer_lr", "align_lr", "inner_lr", "val_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.generator not in GENERATORS:
            raise ConfigError(f"generator must be one of {GENERATORS}, got {self.generator!r}")
        if self.generator_strokes < 1:
            raise ConfigError(f"generator_strokes must be at least 1, got {self.generator_strokes}")
        if self.prior_distill_steps < 0:
            raise ConfigError(f"prior_distill_steps cannot be negative, got {self.prior_distill_steps}")
        if self.prior_distill_steps:
            self.prior_distill_settings().validate()
        if self.teacher_weighting not in TEACHER_WEIGHTINGS:
            raise ConfigError(f"teacher_weighting must be one of {TEACHER_WEIGHTINGS}, got {self.teacher_weighting!r}")
        if self.recovery not in RECOVERIES:
            raise ConfigError(f"recovery must be one of {RECOVERIES}, got {self.recovery!r}")
        if self.baseline_steps < 1:
            raise ConfigError(f"baseline_steps must be at least 1, got {self.baseline_steps}")
        for name in ("adv_temperature", "adv_cap", "pixel_lr"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("tv_weight", "l2_weight", "diversity_weight", "relation_weight", "bn_prior_weight", "adv_weight", "aug_rotate", "aug_scale"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} cannot be negative, got {getattr(self, name)}")
        if self.relation_images < 2:
            raise ConfigError(f"relation_images must be at least 2, got {self.relation_images}")
        if not 0 <= self.replay_blur <= 3:
            raise ConfigError(f"replay_blur must be in [0, 3] pixels, got {self.replay_blur}")
        if not 0 <= self.replay_noise <= 0.5:
            raise ConfigError(f"replay_noise must be in [0, 0.5], got {self.replay_noise}")
        if not 0 <= self.replay_pose <= 45:
            raise ConfigError(f"replay_pose must be in [0, 45] degrees, got {self.replay_pose}")
        if not 0 <= self.replay_within_teacher <= 1:
            raise ConfigError(f"replay_within_teacher must be in [0, 1], got {self.replay_within_teacher}")
        if not 0 <= self.min_teacher_acc <= 1:
            raise ConfigError(f"min_teacher_acc must be in [0, 1], got {self.min_teacher_acc}")
        if self.generator_meta_rule not in META_RULES:
            raise ConfigError(f"generator_meta_rule must be one of {META_RULES}, got {self.generator_meta_rule!r}")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.learner_metric not in ("auto", *METRICS):
            raise ConfigError(f"learner_metric must be 'auto' or one of {METRICS}, got {self.learner_metric!r}")
        if self.image_size % 4 != 0:
            raise ConfigError(f"image_size must be a multiple of 4, got {self.image_size}")
        if self.images_per_task < self.n_way:
            raise ConfigError(f"images_per_task ({self.images_per_task}) must cover the {self.n_way} classes of a task")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(f"device must be 'auto', 'cpu' or 'cuda[:N]', got {self.device!r}")
        self.learner_spec().validate()

    def learner_spec(self) -> LearnerSpec:
        """The learner this run trains."""
        return LearnerSpec(
            backbone=self.backbone,
            algorithm=self.algorithm,
            n_way=self.n_way,
            image_size=self.image_size,
            conv_width=self.conv_width,
            backbone_args=dict(self.backbone_args),
            metric=self.resolved_learner_metric(),
        )

    def resolved_learner_metric(self) -> str:
        """``learner_metric`` with ``"auto"`` decided (see the field's comment)."""
        if self.learner_metric != "auto":
            return self.learner_metric
        return "cosine" if self.runs_prior_stage() else "euclidean"

    def runs_prior_stage(self) -> bool:
        """Whether the run starts with prior distillation (a data oracle, trained on real images, never does)."""
        return bool(self.prior_distill_steps) and self.recovery != "real"

    def make_generator(self) -> nn.Module:
        """A freshly initialised generator of this run's kind (from the global torch RNG)."""
        if self.generator == "strokes":
            return StrokeGenerator(latent_dim=self.latent_dim, strokes=self.generator_strokes, image_size=self.image_size)
        return Generator(latent_dim=self.latent_dim, width=self.generator_width, image_size=self.image_size)

    def prior_distill_settings(self) -> PriorDistillSettings:
        """The prior-distillation stage's settings."""
        return PriorDistillSettings(
            steps=self.prior_distill_steps, images=self.prior_distill_images, batch=self.prior_distill_batch, lr=self.prior_distill_lr,
            affine=self.prior_distill_affine,
        )

    def inversion_settings(self) -> InversionSettings:
        """The per-teacher inversion settings of this run's recovery mode."""
        baseline = self.recovery != "meta-generator"
        return InversionSettings(
            steps=self.baseline_steps if baseline else self.inversion_steps,
            images_per_task=self.images_per_task,
            lr=self.pixel_lr if self.recovery == "pixels" else self.inversion_lr,
            lr_z=self.inversion_lr_z,
            betas=self.inversion_betas,
            adv_weight=self.adv_weight,
            bn_weight=self.bn_prior_weight,
            aug_shift=self.aug_shift,
            aug_flip=self.aug_flip,
            aug_rotate=self.aug_rotate,
            aug_scale=self.aug_scale,
            tv_weight=self.tv_weight,
            l2_weight=self.l2_weight,
            adv_temperature=self.adv_temperature,
            adv_cap=self.adv_cap,
            diversity_weight=self.diversity_weight,
            latent_pool=self.inversion_latent_pool,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reverses it."""
        data = asdict(self)
        data["inversion_betas"] = list(self.inversion_betas)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetaTrainConfig:
        """Rebuild a config from :meth:`to_dict` output; unknown keys are a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown meta-train config keys: {', '.join(unknown)}")
        values = dict(data)
        if "inversion_betas" in values:
            values["inversion_betas"] = tuple(values["inversion_betas"])
        return cls(**values)
