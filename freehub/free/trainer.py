"""The FREE meta-training loop, readable top to bottom.

One iteration:
  1. draw ``teachers_per_step`` models, each equally likely whatever its number of classes, then a
     random ``n_way``-class slice of each head (a model with fewer classes teaches them all), built
     on demand through the pool's bounded cache (see :mod:`freehub.free.teachers`);
  2. FIVE: invert each of them from the meta-generator, meta-update the generator, and put the
     recovered images each teacher vouches for into the task memory (the baselines recover from a
     fresh generator or from pixels instead; the data oracle's memory holds real images);
  3. after ``warmup_iterations`` (which train the meta-generator alone, so only FREE's recovery has
     them): one BELL alignment step of the learner on the recovered tasks, then replay of memory
     episodes (:mod:`freehub.free.replay`) until the mean query accuracy has not improved for
     ``patience`` outer steps (capped at ``max_replay_steps``);
  4. every ``val_every`` iterations: few-shot accuracy on real meta-validation classes, keeping the
     best learner (selection on meta-validation only; meta-test is never seen here);
  5. an atomic checkpoint holding everything needed to resume exactly where the run stood.

Files in ``out_dir``: ``config.json`` (resolved config), ``metrics.jsonl`` (one record per
iteration), ``grids/`` (recovered images per teacher), ``checkpoint.pt`` (latest full state),
``learner/`` (the selected learner as safetensors + JSON: best on meta-validation, else the last).

Under torchrun the ranks share each iteration's work and rank 0 alone writes (see
:mod:`freehub.free.distributed`); one process needs no set-up.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from freehub.atomic import atomic_path, atomic_write_text
from freehub.data import ImageSet, save_grid
from freehub.errors import ConfigError, TrainingError
from freehub.free.align import alignment_gradient
from freehub.free.config import MetaTrainConfig
from freehub.free.distributed import World, current_world, derived_seed, run_slots
from freehub.free.episodic import task_logits
from freehub.free.fewshot import FewShotResult, evaluate_fewshot
from freehub.free.inversion import Adversary, MetaGenerator, RecoveredTask, recover_from_scratch, recover_pixels
from freehub.free.learners import MetaLearner, build_learner, load_learner, save_learner
from freehub.free.losses import kl_divergence
from freehub.free.memory import TaskMemory, class_key
from freehub.free.prior_distill import distil_prior
from freehub.free.replay import replay
from freehub.free.metrics_log import append_record, truncate_records
from freehub.free.teachers import TeacherPool, as_pool, draw_meta_batch
from freehub.task_model import TaskModel

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
# The iteration number of a learner selected right after prior distillation, before any FREE iteration.
PRIOR_STAGE_ITERATION = -1
# Knobs that may change when a run is resumed: extending a run, or moving it to another device.
_RESUMABLE_CHANGES = frozenset({"iterations", "device", "max_seconds"})


@dataclass
class MetaTrainResult:
    """What a run produced. ``learner`` is the selected one (best on meta-validation, else the last)."""

    run_dir: Path
    learner: MetaLearner
    learner_dir: Path
    iterations: int
    best_iteration: int | None
    best_val: FewShotResult | None
    last_val: FewShotResult | None
    seconds: float
    metrics_path: Path
    checkpoint_path: Path
    rescored_val: FewShotResult | None = None


@dataclass
class _RunState:
    learner: MetaLearner
    learner_optimizer: torch.optim.Optimizer
    meta_generator: MetaGenerator
    memory: TaskMemory
    iteration: int = 0
    best_val: FewShotResult | None = None
    best_iteration: int | None = None
    seconds: float = 0.0


def resolve_device(*, name: str) -> torch.device:
    """``"auto"``: CUDA when present, else CPU; :class:`ConfigError` for a CUDA device this machine lacks."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s); use --device cpu or auto")
    return device


def meta_train(
    *,
    teachers: Sequence[TaskModel] | TeacherPool,
    config: MetaTrainConfig,
    out_dir: Path,
    val_data: ImageSet | None = None,
    real_data: ImageSet | None = None,
    resume: bool = False,
    progress: bool = True,
) -> MetaTrainResult:
    """Meta-train a few-shot learner from ``teachers`` with FREE; write the run into ``out_dir``.

    Teachers (models, or a :class:`~freehub.free.teachers.TeacherPool` that builds them when drawn)
    are moved to the run's device and put in eval mode; their weights are never changed.
    With ``config.recovery == "real"`` (the data oracle) the memory holds ``real_data`` instead of
    recovered images, no teacher is needed, and the learner is trained by replay alone.
    ``resume=True`` continues from ``out_dir/checkpoint.pt`` (and starts afresh if a killed run
    left none); the config may differ only in ``iterations`` and ``device``. Without ``resume``, an
    ``out_dir`` that already holds a run is refused. With the same seed, a resumed run ends with
    the parameters an uninterrupted one would have (up to floating-point nondeterminism on GPU).
    """
    config.validate()
    out_dir = Path(out_dir)
    world = current_world()
    device = world.place(device=resolve_device(name=config.device))
    if config.recovery == "real":
        if real_data is None:
            raise ConfigError("the data oracle (recovery 'real') needs real images of the meta-train classes")
        if real_data.num_classes < config.n_way:
            raise ConfigError(f"the oracle's real data has {real_data.num_classes} classes, a {config.n_way}-way episode needs more")
    teachers = as_pool(teachers)
    if config.recovery != "real":
        teachers.check()
    if val_data is not None and val_data.num_classes < config.n_way:
        raise ConfigError(f"validation data has {val_data.num_classes} classes, a {config.n_way}-way episode needs more")
    checkpoint_path = out_dir / CHECKPOINT_NAME
    metrics_path = out_dir / "metrics.jsonl"
    world.check_same(value=[config.to_dict(), teachers.fingerprint(), resume], what="config or teachers")
    exists = world.broadcast(value=checkpoint_path.exists())  # the run folder is rank 0's
    if exists and not resume:
        raise TrainingError(f"{out_dir} already holds a run: pass resume=True to continue it, or choose another directory")

    if resume and exists:
        state = _load_checkpoint(path=checkpoint_path, source=world.read_on_main(path=checkpoint_path), config=config, teachers=teachers, device=device)
        if world.is_main:
            truncate_records(path=metrics_path, keep_before=state.iteration)
    else:
        _seed_everything(seed=config.seed)
        state = _fresh_state(config=config, device=device)
        if world.is_main:
            metrics_path.unlink(missing_ok=True)
    if world.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        metrics_path.touch()
        atomic_write_text(out_dir / "config.json", json.dumps({**config.to_dict(), "resolved_device": str(device), "resolved_learner_metric": config.resolved_learner_metric()}, indent=2) + "\n")
    if not (resume and exists) and config.runs_prior_stage():
        _prior_stage(state=state, config=config, teachers=teachers, device=device, world=world, out_dir=out_dir, val_data=val_data, progress=progress)
        if world.is_main:  # a run interrupted later resumes after the stage, not before it
            _save_checkpoint(path=checkpoint_path, state=state, config=config, teachers=teachers)

    last_val: FewShotResult | None = None
    bar = tqdm(total=config.iterations, initial=state.iteration, desc="meta-train", disable=not (progress and world.is_main), dynamic_ncols=True)
    while state.iteration < config.iterations and not (config.max_seconds and state.seconds >= config.max_seconds):
        started = time.perf_counter()
        iteration = state.iteration
        rng = random.Random(f"{config.seed}/{iteration}")  # teacher draws derive from (seed, iteration) alone
        record: dict[str, Any] = {"iteration": iteration, "phase": "warmup" if iteration < config.warmup_iterations else "train", "world_size": world.size}

        # 1. Draw the meta-batch.
        indices, views = draw_meta_batch(
            pool=teachers, count=config.teachers_per_step, n_way=config.n_way, rng=rng, device=device, weighting=config.teacher_weighting
        )

        # 2. Recover one task per teacher (FIVE, or a baseline) into memory; the oracle's memory is real images.
        # Warm-up trains the meta-generator alone; a mode without one has nothing to warm up.
        learner_active = iteration >= config.warmup_iterations or config.recovery != "meta-generator"
        if config.recovery == "real":
            if not len(state.memory):
                _fill_with_real_images(memory=state.memory, data=real_data)
            indices, views, tasks = [], [], []
            record.update(memory_images=len(state.memory), memory_classes=len(state.memory.keys))
        else:
            adversary = _adversary(learner=state.learner, scaled=config.distill_scaled) if learner_active else None
            indices, views, tasks = _recover_into_memory(
                state=state, config=config, indices=indices, views=views, adversary=adversary, device=device, record=record, world=world
            )

        # 3. BELL: align across this meta-batch's teachers, then replay episodes from memory.
        if learner_active:
            if config.align and tasks:
                record["align_kl"] = _alignment_step(state=state, views=views, tasks=tasks, config=config, rng=rng, world=world)
            relating = [(f"teacher{i}", view) for i, view in zip(indices, views)]
            record.update(replay(
                learner=state.learner, optimizer=state.learner_optimizer, memory=state.memory, iteration=state.iteration,
                config=config, device=device, world=world, relating=relating,
            ))

        # 4. Pictures and meta-validation.
        final = iteration + 1 == config.iterations or world.broadcast(value=bool(  # rank 0's clock decides for all
            config.max_seconds and state.seconds + time.perf_counter() - started >= config.max_seconds
        ))
        if tasks and world.is_main and (iteration % config.grid_every == 0 or final):
            _save_grids(out_dir=out_dir, iteration=iteration, indices=indices, views=views, tasks=tasks)
        if val_data is not None and learner_active and ((iteration + 1) % config.val_every == 0 or final):
            last_val = world.broadcast(value=_validate(learner=state.learner, data=val_data, config=config) if world.is_main else None)
            record.update(val_acc=last_val.mean, val_ci95=last_val.ci95)
            if state.best_val is None or last_val.mean > state.best_val.mean:
                state.best_val, state.best_iteration = last_val, iteration
                if world.is_main:
                    save_learner(learner=state.learner, directory=out_dir / "learner", extra={"iteration": iteration, "val_acc": last_val.mean, "val_ci95": last_val.ci95})

        # 5. Log and checkpoint at the iteration boundary.
        state.iteration = iteration + 1
        state.seconds += world.broadcast(value=time.perf_counter() - started)
        record["seconds"] = round(state.seconds, 3)
        if world.is_main:
            append_record(path=metrics_path, record=record)
            _save_checkpoint(path=checkpoint_path, state=state, config=config, teachers=teachers)
        bar.update(1)
        bar.set_postfix(_postfix(record=record, best=state.best_val), refresh=False)
    bar.close()

    if not world.is_main:  # the selected learner and its rescoring live in rank 0's run folder
        return MetaTrainResult(
            run_dir=out_dir, learner=state.learner, learner_dir=out_dir / "learner", iterations=state.iteration,
            best_iteration=state.best_iteration, best_val=state.best_val, last_val=last_val, seconds=state.seconds,
            metrics_path=metrics_path, checkpoint_path=checkpoint_path,
        )
    if not checkpoint_path.exists():  # zero iterations: the untrained state is still a run that can be extended
        _save_checkpoint(path=checkpoint_path, state=state, config=config, teachers=teachers)
    if state.best_iteration is None:
        save_learner(learner=state.learner, directory=out_dir / "learner", extra={"iteration": state.iteration - 1})
    selected = load_learner(directory=out_dir / "learner", device=device)
    rescored = None
    if state.best_val is not None and val_data is not None:
        rescored = _rescore(learner=selected, data=val_data, config=config, directory=out_dir / "learner")
    return MetaTrainResult(
        run_dir=out_dir,
        learner=selected,
        learner_dir=out_dir / "learner",
        iterations=state.iteration,
        best_iteration=state.best_iteration,
        best_val=state.best_val,
        last_val=last_val,
        seconds=state.seconds,
        metrics_path=metrics_path,
        checkpoint_path=checkpoint_path,
        rescored_val=rescored,
    )


# ---------------------------------------------------------------------------------------------
# The steps of a run


def _prior_stage(
    *,
    state: _RunState,
    config: MetaTrainConfig,
    teachers: TeacherPool,
    device: torch.device,
    world: World,
    out_dir: Path,
    val_data: ImageSet | None,
    progress: bool,
) -> None:
    """Prior distillation before the first iteration (rank 0 computes, every rank gets the learner);
    what it did goes to ``prior_distill.json`` in the run folder. With validation data the distilled
    learner is the first candidate of the selection (iteration :data:`PRIOR_STAGE_ITERATION`), so
    iterations that make it worse on meta-validation are not the ones kept."""
    started = time.perf_counter()
    result = None
    if world.is_main:
        if progress:
            print(f"prior distillation: {config.prior_distill_images} {config.generator} samples, {len(teachers)} teachers, "
                  f"{config.prior_distill_steps} steps", flush=True)
        result = distil_prior(
            learner=state.learner,
            teachers=(teachers.model(index, device=device) for index in tqdm(
                range(len(teachers)), desc="prior: teachers", disable=not progress, dynamic_ncols=True, leave=False
            )),
            make_generator=config.make_generator,
            settings=config.prior_distill_settings(),
            seed=derived_seed(parts=(config.seed, "prior")),
            device=device,
        )
    weights = world.broadcast(value={k: v.cpu() for k, v in state.learner.state_dict().items()} if world.is_main else None)
    state.learner.load_state_dict(weights)
    # The stage is part of the run's time: a wall-clock budget (max_seconds) covers it too.
    state.seconds += world.broadcast(value=time.perf_counter() - started)
    if result is not None and progress:
        print(f"prior distillation: similarity distance {result.loss_first:.4f} -> {result.loss_last:.4f} "
              f"({result.sample_seconds + result.teacher_seconds + result.train_seconds:.0f} s)", flush=True)
    record = {} if result is None else asdict(result)
    if val_data is not None:
        val = world.broadcast(value=_validate(learner=state.learner, data=val_data, config=config) if world.is_main else None)
        state.best_val, state.best_iteration = val, PRIOR_STAGE_ITERATION
        record.update(val_acc=val.mean, val_ci95=val.ci95)
        if world.is_main:
            extra = {"iteration": PRIOR_STAGE_ITERATION, "stage": "prior distillation", "val_acc": val.mean, "val_ci95": val.ci95}
            save_learner(learner=state.learner, directory=out_dir / "learner", extra=extra)
    if world.is_main:
        atomic_write_text(out_dir / "prior_distill.json", json.dumps(record, indent=2) + "\n")


# ---------------------------------------------------------------------------------------------
# The steps of one iteration


def _recover_into_memory(
    *,
    state: _RunState,
    config: MetaTrainConfig,
    indices: list[int],
    views: list[TaskModel],
    adversary: Adversary | None,
    device: torch.device,
    record: dict[str, Any],
    world: World,
) -> tuple[list[int], list[TaskModel], list[RecoveredTask]]:
    """Recover the meta-batch, store what each teacher vouches for, log it into ``record``.

    Returns the teachers that teach this iteration (their indices, views and kept images): those
    that recognise at least ``min_teacher_acc`` of their recovered task and vouch for some image.
    """
    started = time.perf_counter()
    tasks = _recover(state=state, config=config, views=views, adversary=adversary, device=device, world=world)
    record["recovery_wall_seconds"] = round(time.perf_counter() - started, 4)
    kept = [_vouched(task=task, config=config) for task in tasks]
    taught = [i for i, (task, keep) in enumerate(zip(tasks, kept)) if task.teacher_accuracy_clean >= config.min_teacher_acc and keep.any()]
    for i in taught:
        view, task, keep = views[i], tasks[i], kept[i]
        keys = [class_key(teacher_index=indices[i], label_name=n, label_key=k) for n, k in zip(view.label_names, view.label_keys)]
        state.memory.add(images=task.images[keep], labels=task.labels[keep], keys=keys, group=f"teacher{indices[i]}")
    record.update(
        teachers=indices,
        recovery_seconds=[round(t.seconds, 4) for t in tasks],
        teacher_acc=[t.teacher_accuracy for t in tasks],
        teacher_acc_clean=[t.teacher_accuracy_clean for t in tasks],
        stored_fraction=[round(float(k.float().mean()), 4) for k in kept],
        taught=[indices[i] for i in taught],
        inversion_loss=[t.loss for t in tasks],
        bn_loss=[t.bn_loss for t in tasks],
        memory_images=len(state.memory),
        memory_classes=len(state.memory.keys),
    )
    kept_tasks = [replace(tasks[i], images=tasks[i].images[kept[i]], labels=tasks[i].labels[kept[i]]) for i in taught]
    return [indices[i] for i in taught], [views[i] for i in taught], kept_tasks


def _recover(
    *, state: _RunState, config: MetaTrainConfig, views: Sequence[TaskModel], adversary: Adversary | None, device: torch.device, world: World
) -> list[RecoveredTask]:
    """One task per teacher, by the run's recovery mode; only the meta-generator carries state across teachers.

    Each slot of the meta-batch recovers under its own seeded RNG, on whichever rank holds it; the
    meta-generator then steps along the meta-batch's mean update, summed over ranks.
    """
    settings = config.inversion_settings()
    meta_gradient = state.meta_generator.zero_gradient() if config.recovery == "meta-generator" else []

    def recover_one(slot: int) -> RecoveredTask:
        view = views[slot]
        if config.recovery == "meta-generator":
            task, update = state.meta_generator.adapt(teacher=view, adversary=adversary)
            for total, part in zip(meta_gradient, update):
                total.add_(part, alpha=1.0 / len(views))
        elif config.recovery == "scratch-generator":
            task = recover_from_scratch(teacher=view, settings=settings, make_generator=config.make_generator, device=device, adversary=adversary)
        else:
            task = recover_pixels(teacher=view, settings=settings, image_size=config.image_size, device=device, adversary=adversary)
        return _with_clean_accuracy(view=view, task=task)

    tasks = run_slots(world=world, count=len(views), seed=(config.seed, state.iteration, "recover"), device=device, work=recover_one)
    if config.recovery == "meta-generator":
        world.all_reduce_sum_(tensors=meta_gradient)
        state.meta_generator.step(gradient=meta_gradient)
    return tasks


def _with_clean_accuracy(*, view: TaskModel, task: RecoveredTask) -> RecoveredTask:
    # The teacher's verdict on the image as stored (no augmentation): what the memory's label rests on.
    with torch.no_grad():
        predictions = view(task.images).argmax(dim=1)
    return replace(task, predictions=predictions, teacher_accuracy_clean=float((predictions == task.labels).float().mean()))


def _vouched(*, task: RecoveredTask, config: MetaTrainConfig) -> torch.Tensor:
    """Which images of ``task`` go into memory: all, or (``memory_filter``) those the teacher labels as targeted."""
    if not config.memory_filter or task.predictions is None:
        return torch.ones(len(task.labels), dtype=torch.bool, device=task.labels.device)
    return task.predictions == task.labels


def _fill_with_real_images(*, memory: TaskMemory, data: ImageSet | None) -> None:
    """The data oracle's memory: up to ``memory.max_per_class`` real images of every class of ``data``."""
    if data is None:
        raise ConfigError("recovery 'real' (the data oracle) needs real images")
    images = data.as_float()
    keys = [f"real/{name}" for name in data.class_names]
    for label in range(data.num_classes):
        rows = torch.nonzero(data.labels == label).flatten()[: memory.max_per_class]
        memory.add(images=images[rows], labels=torch.zeros(len(rows), dtype=torch.long), keys=[keys[label]])


def _adversary(*, learner: MetaLearner, scaled: bool) -> Adversary:
    def logits(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        return task_logits(learner=learner, images=images, labels=labels, num_classes=num_classes, scaled=scaled)

    return logits


def _alignment_step(
    *, state: _RunState, views: Sequence[TaskModel], tasks: Sequence[RecoveredTask], config: MetaTrainConfig, rng: random.Random, world: World
) -> float:
    """One BELL step; returns the mean KL met along the way (before each teacher's own step)."""
    seen: list[float] = []

    def distill(view: TaskModel, task: RecoveredTask) -> Callable[[nn.Module], torch.Tensor]:
        with torch.no_grad():
            teacher_logits = view(task.images)

        def loss(model: nn.Module) -> torch.Tensor:
            learner_logits = task_logits(
                learner=model, images=task.images, labels=task.labels, num_classes=view.num_classes, scaled=config.distill_scaled
            )
            value = kl_divergence(teacher_logits=teacher_logits, learner_logits=learner_logits).mean()
            seen.append(float(value.detach()))
            return value

        return loss

    order = list(range(len(tasks)))
    rng.shuffle(order)
    grads = alignment_gradient(model=state.learner, task_losses=[distill(views[i], tasks[i]) for i in order], lr=config.align_lr)
    # Every rank computed it on the same tasks; the mean keeps ranks identical under non-deterministic kernels.
    world.all_reduce_sum_(tensors=grads)
    state.learner_optimizer.zero_grad(set_to_none=True)
    for param, grad in zip(state.learner.parameters(), grads):
        param.grad = (config.align_weight / world.size) * grad
    state.learner_optimizer.step()
    return float(np.mean(seen))


def _validate(*, learner: MetaLearner, data: ImageSet, config: MetaTrainConfig) -> FewShotResult:
    # The same seed every time: each validation sees the same episodes, so scores compare.
    return evaluate_fewshot(
        learner=learner,
        data=data,
        n_way=config.n_way,
        k_shot=config.val_k_shot,
        episodes=config.val_episodes,
        q_queries=config.val_q_queries,
        seed=config.seed,
        steps=config.val_steps,
        lr=config.val_lr,
    )


def _rescore(*, learner: MetaLearner, data: ImageSet, config: MetaTrainConfig, directory: Path) -> FewShotResult:
    """The selected learner on fresh meta-val episodes: the best of several scores on the same episodes
    is biased upward, an independent draw is not. Recorded in ``learner.json`` as ``val_rescored``."""
    result = evaluate_fewshot(
        learner=learner, data=data, n_way=config.n_way, k_shot=config.val_k_shot, episodes=config.val_episodes,
        q_queries=config.val_q_queries, seed=config.seed + 1_000_003, steps=config.val_steps, lr=config.val_lr,
    )
    meta_path = directory / "learner.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    meta["val_rescored"] = {"mean": result.mean, "ci95": result.ci95, "episodes": result.n_episodes}
    atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return result


def _save_grids(*, out_dir: Path, iteration: int, indices: Sequence[int], views: Sequence[TaskModel], tasks: Sequence[RecoveredTask]) -> None:
    for index, view, task in zip(indices, views, tasks):
        save_grid(images=task.images.cpu(), path=out_dir / "grids" / f"iter{iteration:05d}_teacher{index:04d}.png", nrow=view.num_classes)


# ---------------------------------------------------------------------------------------------
# Set-up, checkpoints and logs


def _seed_everything(*, seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _fresh_state(*, config: MetaTrainConfig, device: torch.device) -> _RunState:
    learner = build_learner(spec=config.learner_spec()).to(device)
    generator = config.make_generator().to(device)
    return _RunState(
        learner=learner,
        learner_optimizer=torch.optim.Adam(learner.parameters(), lr=config.outer_lr),
        meta_generator=MetaGenerator(
            generator=generator, settings=config.inversion_settings(), meta_rule=config.generator_meta_rule, meta_lr=config.generator_meta_lr
        ),
        memory=TaskMemory(max_per_class=config.memory_per_class, max_images=config.memory_max_images),
    )


def _save_checkpoint(*, path: Path, state: _RunState, config: MetaTrainConfig, teachers: TeacherPool) -> None:
    numpy_state = np.random.get_state()
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "config": config.to_dict(),
        "teachers": teachers.fingerprint(),
        "iteration": state.iteration,
        "best_val": None if state.best_val is None else {**asdict(state.best_val), "accuracies": list(state.best_val.accuracies)},
        "best_iteration": state.best_iteration,
        "seconds": state.seconds,
        "learner": state.learner.state_dict(),
        "learner_optimizer": state.learner_optimizer.state_dict(),
        "meta_generator": state.meta_generator.state_dict(),
        "memory": state.memory.state_dict(),
        "rng": {
            "python": random.getstate(),
            "numpy": [numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
    }
    with atomic_path(path) as tmp:
        torch.save(checkpoint, tmp)


def _load_checkpoint(
    *, path: Path, source: Path | BinaryIO, config: MetaTrainConfig, teachers: TeacherPool, device: torch.device
) -> _RunState:
    try:
        checkpoint = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or foreign file: report it as the user's problem
        raise TrainingError(f"cannot read checkpoint {path}: {error}") from error
    found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
    if found != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} has checkpoint format {found}, expected {CHECKPOINT_FORMAT}")
    saved = MetaTrainConfig.from_dict(checkpoint["config"]).to_dict()
    changed = sorted(k for k, v in config.to_dict().items() if saved.get(k) != v and k not in _RESUMABLE_CHANGES)
    if changed:
        raise TrainingError(f"cannot resume with a different config: {', '.join(changed)} changed")
    if checkpoint["teachers"] != teachers.fingerprint():
        raise TrainingError("cannot resume with different teachers (names, order or labels changed)")
    state = _fresh_state(config=config, device=device)
    state.learner.load_state_dict(checkpoint["learner"])
    state.learner_optimizer.load_state_dict(checkpoint["learner_optimizer"])
    state.meta_generator.load_state_dict(checkpoint["meta_generator"])
    state.memory.load_state_dict(checkpoint["memory"])
    state.iteration = int(checkpoint["iteration"])
    best_val = checkpoint["best_val"]
    state.best_val = None if best_val is None else FewShotResult(**{**best_val, "accuracies": tuple(best_val["accuracies"])})
    state.best_iteration = checkpoint["best_iteration"]
    state.seconds = float(checkpoint["seconds"])
    rng = checkpoint["rng"]
    random.setstate(_as_python_state(rng["python"]))
    np.random.set_state((rng["numpy"][0], np.asarray(rng["numpy"][1], dtype=np.uint32), *rng["numpy"][2:]))
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return state


def _as_python_state(state: Any) -> tuple[Any, ...]:
    # random.setstate needs tuples where a serialiser may hand back lists.
    version, internal, gauss = state
    return (version, tuple(internal), gauss)


def _postfix(*, record: dict[str, Any], best: FewShotResult | None) -> dict[str, str]:
    postfix = {"mem": str(record["memory_images"])}
    if record.get("teacher_acc_clean"):
        postfix["t_acc"] = f"{np.mean(record['teacher_acc_clean']):.2f}"
    if "episode_acc" in record:
        postfix["ep_acc"] = f"{record['episode_acc']:.2f}"
    if "val_acc" in record:
        postfix["val"] = f"{record['val_acc']:.3f}"
    if best is not None:
        postfix["best"] = f"{best.mean:.3f}"
    return postfix
