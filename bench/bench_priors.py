"""Which image priors make recovered images look like their classes, per teacher architecture.

Every zoo recipe (architecture and input) contributes its first ``--per-recipe`` teachers. Each is
inverted from a freshly initialised generator (or from the pixels) under several priors, and an
independent judge (a classifier of another architecture trained on real images, see
``common.train_judge``) chooses among the teacher's own classes: judge accuracy 20% is chance for 5
classes; real images of the same classes set the ceiling. The teacher's own accuracy on its recovered
images is reported beside it: a teacher is satisfied long before a judge is. Prints a table, writes
``bench_priors.json``, ``bench_priors.png`` (judge accuracy per architecture and prior) and
``bench_priors_grid.png`` (real images and each prior's recovered images of the same classes).

    python bench/bench_priors.py --out bench_results            # 10-25 minutes on 2 CPU cores
    python bench/bench_priors.py --quick --out bench_results    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import add_zoo_arguments, judge_within, train_judge, zoo_registry

from freehub.data import ImageSet, load_glyphs, save_grid
from freehub.free import bn_statistics_distance
from freehub.free.config import MetaTrainConfig
from freehub.free.inversion import RecoveredTask, recover_from_scratch, recover_pixels
from freehub.registry import Registry
from freehub.task_model import TaskModel, canonical_label_key


@dataclass(frozen=True)
class Variant:
    """One way of recovering a task: generator or pixels, a step count, config overrides."""

    name: str
    mode: str
    steps: int
    overrides: dict[str, Any] = field(default_factory=dict)


VARIANTS = (
    Variant("generator, 5 steps (FREE's budget)", "generator", 5),
    Variant("generator, 40 steps", "generator", 40),
    Variant("generator, 40 steps + TV 5", "generator", 40, {"tv_weight": 5.0}),
    Variant("generator, 40 steps + BN prior 0.1", "generator", 40, {"bn_prior_weight": 0.1}),
    Variant("generator, 40 steps + BN prior 0.3", "generator", 40, {"bn_prior_weight": 0.3}),
    Variant("pixels, 100 steps", "pixels", 100),
)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_zoo_arguments(parser)
    parser.add_argument("--per-recipe", type=int, default=1, help="teachers taken from each architecture of the zoo")
    parser.add_argument("--repeats", type=int, default=2, help="latent batches per teacher and prior")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 teachers, 2 priors, few steps")
    args = parser.parse_args(argv)
    variants = VARIANTS
    if args.quick:
        args.teachers, args.zoo_steps, args.repeats = 6, 30, 1
        variants = (Variant("generator, 2 steps", "generator", 2), Variant("generator, 2 steps + BN prior 0.3", "generator", 2, {"bn_prior_weight": 0.3}))
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    data = load_glyphs(size=32, seed=0)
    with Registry.open(zoo_registry(work=args.work or args.out / "work", teachers=args.teachers, zoo_steps=args.zoo_steps, data=data)) as registry:
        teachers = _per_recipe(list(registry.task_models()), count=args.per_recipe)
    judge, keys, judge_real = train_judge(data, steps=150 if args.quick else 400)
    families = [_family(t) for t in teachers]
    print(f"{len(teachers)} teachers: {', '.join(families)}; judge {100 * judge_real:.1f}% on held-out real images (all classes)", flush=True)

    real = [_judge_real(judge=judge, keys=keys, teacher=t, data=data.train) for t in teachers]
    rows = [{"variant": "real images", "judge_acc": real, "teacher_acc": [math.nan] * len(teachers), "bn_distance": [math.nan] * len(teachers), "seconds": 0.0}]
    examples: dict[str, list[RecoveredTask]] = {}
    for variant in variants:
        scores, seconds, tasks = [], [], []
        for index, teacher in enumerate(teachers):
            per_teacher = []
            for repeat in range(args.repeats):
                torch.manual_seed(1000 * repeat + index)
                task = _recover(variant=variant, teacher=teacher)
                per_teacher.append((
                    judge_within(net=judge, columns=_columns(keys, teacher), images=task.images, labels=task.labels),
                    task.teacher_accuracy,
                    bn_statistics_distance(teacher=teacher, images=task.images),
                ))
                seconds.append(task.seconds)
                if repeat == 0:
                    tasks.append(task)
            scores.append(tuple(float(np.mean(column)) for column in zip(*per_teacher)))
        judged, teacher_acc, distance = (list(column) for column in zip(*scores))
        rows.append({"variant": variant.name, "judge_acc": judged, "teacher_acc": teacher_acc, "bn_distance": distance, "seconds": float(np.mean(seconds))})
        examples[variant.name] = tasks
        print(f"  {variant.name}: judge {100 * np.mean(judged):.1f}%, teacher {100 * np.mean(teacher_acc):.1f}%", flush=True)

    _print_table(rows, families)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "teachers": families, "judge_real_acc_all_classes": judge_real, "rows": rows}
    (args.out / "bench_priors.json").write_text(json.dumps(result, indent=2, allow_nan=True) + "\n")
    _plot(rows, families, args.out / "bench_priors.png")
    _grid(teachers=teachers, examples=examples, data=data.train, path=args.out / "bench_priors_grid.png")
    print(f"wrote {args.out / 'bench_priors.json'}, bench_priors.png, bench_priors_grid.png")
    return result


def _per_recipe(teachers: list[TaskModel], *, count: int) -> list[TaskModel]:
    chosen: dict[str, list[TaskModel]] = {}
    for teacher in teachers:
        if teacher.num_classes == 5:
            chosen.setdefault(_family(teacher), []).append(teacher)
    return [t for group in chosen.values() for t in group[:count]]


def _family(teacher: TaskModel) -> str:
    channels, height, _ = teacher.spec.input_size
    return f"{teacher.spec.architecture} {channels}x{height}"


def _columns(keys: dict[str, int], teacher: TaskModel) -> list[int]:
    return [keys[canonical_label_key(name) or name] for name in teacher.label_names]


def _recover(*, variant: Variant, teacher: TaskModel) -> RecoveredTask:
    config = MetaTrainConfig(**variant.overrides)
    if variant.mode == "pixels":
        settings = replace(config.inversion_settings(), steps=variant.steps, lr=config.pixel_lr)
        return recover_pixels(teacher=teacher, settings=settings, image_size=config.image_size)
    settings = replace(config.inversion_settings(), steps=variant.steps)
    return recover_from_scratch(teacher=teacher, settings=settings, make_generator=config.make_generator)


def _real_images(*, teacher: TaskModel, data: ImageSet, skip: int = 15) -> tuple[torch.Tensor, torch.Tensor]:
    """Real images of the teacher's classes the judge did not train on, labelled in the teacher's order."""
    images, labels = [], []
    for label, name in enumerate(teacher.label_names):
        rows = torch.nonzero(data.labels == data.class_names.index(name)).flatten()[skip:]
        images.append(data.images[rows].float() / 255.0)
        labels.append(torch.full((len(rows),), label))
    return torch.cat(images), torch.cat(labels)


def _judge_real(*, judge: torch.nn.Module, keys: dict[str, int], teacher: TaskModel, data: ImageSet) -> float:
    images, labels = _real_images(teacher=teacher, data=data)
    return judge_within(net=judge, columns=_columns(keys, teacher), images=images, labels=labels)


def _print_table(rows: list[dict], families: list[str]) -> None:
    short = [f.split()[0][:14] for f in families]
    print("\njudge accuracy (%) within each teacher's classes; chance 20")
    print(f"{'variant':<38}" + "".join(f"{s:>15}" for s in short) + f"{'mean':>7}{'teacher':>9}{'s/teacher':>10}")
    for row in rows:
        cells = "".join(f"{100 * v:>15.1f}" for v in row["judge_acc"])
        teacher = np.nanmean(row["teacher_acc"]) if not all(math.isnan(v) for v in row["teacher_acc"]) else math.nan
        print(f"{row['variant']:<38}{cells}{100 * np.mean(row['judge_acc']):>7.1f}{100 * teacher:>9.1f}{row['seconds']:>10.2f}")


def _plot(rows: list[dict], families: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(max(8, 1.4 * len(families) + 3), 5.5))
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        axis.bar(np.arange(len(families)) + i * width, [100 * v for v in row["judge_acc"]], width, label=row["variant"])
    axis.axhline(20, color="grey", linestyle=":", label="chance")
    axis.set_xticks(np.arange(len(families)) + 0.4 - width / 2, families, rotation=20, ha="right", fontsize=8)
    axis.set(ylabel="judge accuracy within the teacher's classes (%)", title="Recovered images name their class: priors by architecture")
    axis.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.28))
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _grid(*, teachers: list[TaskModel], examples: dict[str, list[RecoveredTask]], data: ImageSet, path: Path, per_class: int = 2) -> None:
    """For each teacher: a row of real images, then one row per prior, ``per_class`` images of each class."""
    tiles, titles = [], []
    for index, teacher in enumerate(teachers):
        images, labels = _real_images(teacher=teacher, data=data)
        rows = {"real": (images, labels)} | {name: (tasks[index].images, tasks[index].labels) for name, tasks in examples.items()}
        for name, (row_images, row_labels) in rows.items():
            picked = [row_images[torch.nonzero(row_labels == c).flatten()[:per_class]] for c in range(teacher.num_classes)]
            tiles.append(torch.cat(picked).expand(-1, 3, -1, -1))
            titles.append(f"{_family(teacher)[:22]} | {name[:34]}")
    save_grid(images=torch.cat(tiles), path=path, nrow=per_class * 5, titles=titles, scale=2)


if __name__ == "__main__":
    main()
