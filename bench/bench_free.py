"""FIVE recovery speed: a meta-learned generator against a generator trained from scratch per teacher.

Trains small Conv4 teachers on glyph classes (meta-train alphabets for meta-training the generator,
meta-test alphabets for held-out teachers), meta-trains the generator with FIVE, then inverts every
held-out teacher for k steps from the meta-generator and from a fresh generator. Recovery quality
is judged without the teacher: an independent classifier of another architecture trained on real
images of the teacher's classes (judge accuracy), and the distance of the recovered batch's
feature statistics to the teacher's BatchNorm running statistics. Prints a table, the number of
fresh-generator steps needed to match 5 meta-generator steps (the paper claims about 20x), and
writes a PNG plot.

    python bench/bench_free.py --out bench_results            # ~10 minutes on 2 CPU cores
    python bench/bench_free.py --quick --out bench_results    # ~2 minutes, noisier
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from freehub.data import ImageSet, load_glyphs
from freehub.free import Conv4, Generator, InversionSettings, MetaGenerator, bn_statistics_distance, recover_task
from freehub.task_model import ModelSpec, TaskModel


@dataclass
class _HeldOut:
    teacher: TaskModel
    judge: nn.Module


def _fit(network: nn.Module, data: ImageSet, *, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    images, labels = data.as_float(), data.labels
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    network.train()
    for _ in range(steps):
        shift = torch.randint(-2, 3, (2,)).tolist()
        loss = F.cross_entropy(network((torch.roll(images, shifts=shift, dims=(2, 3)) - 0.5) / 0.5), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return network.eval()


def _teacher(task: ImageSet, seed: int) -> TaskModel:
    network = _fit(nn.Sequential(Conv4(width=16), nn.Linear(64, task.num_classes)), task, steps=60, seed=seed)
    spec = ModelSpec(library="torch", architecture="conv4-w16", label_names=task.class_names, input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3)
    return TaskModel(network=network, spec=spec).eval()


def _judge(task: ImageSet, seed: int) -> nn.Module:
    # Another architecture than the teachers: 5x5 convolutions, no BatchNorm, average pooling.
    network = nn.Sequential(
        nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(32 * 8 * 8, task.num_classes),
    )
    return _fit(network, task, steps=80, seed=seed)


def _tasks(data: ImageSet, count: int, way: int, seed: int) -> list[ImageSet]:
    order = torch.randperm(data.num_classes, generator=torch.Generator().manual_seed(seed)).tolist()
    return [data.select_classes(order[i * way : (i + 1) * way]) for i in range(count)]


def _score(generator: Generator, held: _HeldOut, settings: InversionSettings) -> tuple[float, float, float]:
    task, _ = recover_task(generator=generator, teacher=held.teacher, settings=settings)
    with torch.no_grad():
        judged = float((held.judge((task.images - 0.5) / 0.5).argmax(1) == task.labels).float().mean())
    return judged, bn_statistics_distance(teacher=held.teacher, images=task.images), task.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_free_results"))
    parser.add_argument("--meta-teachers", type=int, default=16)
    parser.add_argument("--held-out", type=int, default=4)
    parser.add_argument("--meta-iterations", type=int, default=60)
    parser.add_argument("--teachers-per-step", type=int, default=4)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--steps", default="1,2,5,10,20,50,100")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--meta-rule", default="fomaml", choices=("fomaml", "reptile"))
    parser.add_argument("--bn-weight", type=float, default=0.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="fewer teachers, iterations and step counts")
    args = parser.parse_args()
    if args.quick:
        args.meta_teachers, args.held_out, args.meta_iterations, args.steps, args.repeats = 8, 2, 25, "1,5,20,50", 1
    torch.set_num_threads(args.threads)
    steps_grid = [int(s) for s in args.steps.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)

    data = load_glyphs(size=32, channels=3, seed=0, images_per_class=20)
    started = time.perf_counter()
    meta_teachers = [_teacher(task, seed=i) for i, task in enumerate(_tasks(data.train, args.meta_teachers, 5, args.seed))]
    held = [_HeldOut(_teacher(task, seed=100 + i), _judge(task, seed=200 + i)) for i, task in enumerate(_tasks(data.test, args.held_out, 5, args.seed))]
    print(f"trained {len(meta_teachers)} + {len(held)} teachers and {len(held)} judges in {time.perf_counter() - started:.0f} s")

    settings = InversionSettings(images_per_task=args.images, bn_weight=args.bn_weight)
    torch.manual_seed(args.seed)
    fresh_template = Generator(width=args.width)
    meta = MetaGenerator(generator=copy.deepcopy(fresh_template), settings=settings, meta_rule=args.meta_rule)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for _ in range(args.meta_iterations):
        meta.recover(teachers=[meta_teachers[i] for i in rng.choice(len(meta_teachers), args.teachers_per_step, replace=False)])
    meta_seconds = time.perf_counter() - started
    print(f"meta-trained the generator: {args.meta_iterations} iterations x {args.teachers_per_step} teachers in {meta_seconds:.0f} s")

    rows = []
    for steps in steps_grid:
        run = InversionSettings(**{**settings.__dict__, "steps": steps})
        for name, source in (("meta", meta.generator), ("fresh", fresh_template)):
            scores = []
            for repeat in range(args.repeats):
                for index, teacher in enumerate(held):
                    torch.manual_seed(10_000 * repeat + index)
                    scores.append(_score(copy.deepcopy(source), teacher, run))
            judged, distance, seconds = (float(np.mean(column)) for column in zip(*scores))
            rows.append({"generator": name, "steps": steps, "judge_acc": judged, "bn_distance": distance, "seconds_per_teacher": seconds})

    print(f"\n{'generator':<9} {'k':>4} {'judge acc':>10} {'BN dist':>9} {'s/teacher':>10}")
    for row in rows:
        print(f"{row['generator']:<9} {row['steps']:>4} {row['judge_acc']:>10.3f} {row['bn_distance']:>9.3f} {row['seconds_per_teacher']:>10.2f}")
    summary = _match(rows, reference_steps=5)
    print(
        f"\nfresh-generator steps to match 5 meta-generator steps: judge {summary['judge_match_steps']}, "
        f"BN distance {summary['bn_match_steps']} (grid {steps_grid}; None: not matched within the grid)"
    )
    (args.out / "bench_free.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, **summary}, indent=2) + "\n")
    _plot(rows, args.out / "bench_free.png")
    print(f"wrote {args.out / 'bench_free.json'} and {args.out / 'bench_free.png'}")


def _match(rows: list[dict], *, reference_steps: int) -> dict[str, int | None]:
    reference = next((r for r in rows if r["generator"] == "meta" and r["steps"] == reference_steps), None)
    fresh = sorted((r for r in rows if r["generator"] == "fresh"), key=lambda r: r["steps"])
    if reference is None:
        return {"judge_match_steps": None, "bn_match_steps": None}
    judge = next((r["steps"] for r in fresh if r["judge_acc"] >= reference["judge_acc"]), None)
    distance = next((r["steps"] for r in fresh if not math.isnan(r["bn_distance"]) and r["bn_distance"] <= reference["bn_distance"]), None)
    return {"judge_match_steps": judge, "bn_match_steps": distance}


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, style in (("meta", "o-"), ("fresh", "s--")):
        chosen = [r for r in rows if r["generator"] == name]
        steps = [r["steps"] for r in chosen]
        axes[0].plot(steps, [r["judge_acc"] for r in chosen], style, label=f"{name} generator")
        axes[1].plot(steps, [r["bn_distance"] for r in chosen], style, label=f"{name} generator")
    axes[0].set(xscale="log", xlabel="inversion steps k", ylabel="judge accuracy on recovered images", title="Recovered images name their class")
    axes[1].set(xscale="log", xlabel="inversion steps k", ylabel="distance to BN running statistics", title="Feature statistics vs teacher")
    for axis in axes:
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
