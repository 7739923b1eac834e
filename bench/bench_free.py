"""FIVE recovery speed on the embedded zoo: a meta-learned generator against a generator trained from scratch per teacher.

The zoo's teachers are split: most meta-train the generator with FIVE, a few are held out. Every
held-out teacher is then inverted for k steps from the meta-generator and from a freshly
initialised generator. Recovery quality is judged without the teacher: an independent classifier
of another architecture trained on real images of the teachers' classes chooses among the
teacher's own classes (judge accuracy; chance is 1 / classes), and, for BatchNorm teachers, the
distance of the recovered batch's feature statistics to the teacher's running statistics. Prints a
table and the ratio "fresh-generator seconds to reach the judge accuracy of 5 meta-generator
steps" (the paper claims about 20x), and writes ``bench_free.json`` and ``bench_free.png``.
``--latent-pool P`` starts every inversion, of either generator and in meta-training too, from the best
of P candidate codes per image (``MetaTrainConfig.inversion_latent_pool``): it shows how much of the
teachers' classes the generator's samples already hold; its forward passes are counted in the seconds.

    python bench/bench_free.py --out bench_results            # ~15 minutes on 2 CPU cores
    python bench/bench_free.py --quick --out bench_results    # a smoke run
    python bench/bench_free.py --latent-pool 8 --out bench_results/pool8
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm
from common import add_zoo_arguments, judge_within, train_judge, zoo_registry

from freehub.data import load_glyphs
from freehub.free import MetaGenerator, bn_statistics_distance, recover_task
from freehub.free.config import MetaTrainConfig
from freehub.registry import Registry


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_zoo_arguments(parser)
    parser.add_argument("--held-out", type=int, default=6, help="teachers never seen by the meta-generator, spread over the zoo's recipes")
    parser.add_argument("--meta-iterations", type=int, default=60)
    parser.add_argument("--steps", default="1,2,5,10,20,50,100,200")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latent-pool", type=int, default=1, help="start each inversion from the best of this many codes per image (1: a plain draw)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 teachers, few iterations and step counts")
    args = parser.parse_args(argv)
    if args.latent_pool < 1:
        parser.error(f"--latent-pool must be at least 1, got {args.latent_pool}")
    if args.quick:
        args.teachers, args.zoo_steps, args.held_out, args.meta_iterations, args.steps, args.repeats = 6, 30, 2, 4, "1,5,20", 1
    torch.set_num_threads(args.threads)
    steps_grid = [int(s) for s in args.steps.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out / "work"

    data = load_glyphs(size=32, seed=0)
    with Registry.open(zoo_registry(work=work, teachers=args.teachers, zoo_steps=args.zoo_steps, data=data)) as registry:
        teachers = list(registry.task_models())
    # Every k-th teacher in registry order (sorted by name, so recipes come in runs): a mix of architectures.
    stride = max(1, len(teachers) // args.held_out)
    held_indices = set(range(stride // 2, len(teachers), stride)[: args.held_out])
    held = [t for i, t in enumerate(teachers) if i in held_indices]
    meta_teachers = [t for i, t in enumerate(teachers) if i not in held_indices]
    judge, keys, judge_real = train_judge(data, class_names={name for t in held for name in t.label_names}, steps=60 if args.quick else 400)
    print(f"judge: {100 * judge_real:.1f}% on held-out real images of the held-out teachers' classes", flush=True)

    config = MetaTrainConfig(inversion_latent_pool=args.latent_pool)
    settings = config.inversion_settings()
    torch.manual_seed(args.seed)
    fresh_template = config.make_generator()
    meta = MetaGenerator(generator=copy.deepcopy(fresh_template), settings=settings, meta_rule=config.generator_meta_rule, meta_lr=config.generator_meta_lr)
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for _ in tqdm(range(args.meta_iterations), desc="meta-train the generator", unit="iteration"):
        chosen = rng.choice(len(meta_teachers), min(config.teachers_per_step, len(meta_teachers)), replace=False)
        meta.recover(teachers=[meta_teachers[i] for i in chosen])
    meta_seconds = time.perf_counter() - started
    print(f"meta-trained the generator on {len(meta_teachers)} teachers: {args.meta_iterations} iterations in {meta_seconds:.0f} s", flush=True)

    rows = []
    for steps in tqdm(steps_grid, desc="invert the held-out teachers", unit="step count"):
        run = type(settings)(**{**settings.__dict__, "steps": steps})
        for name, source in (("meta", meta.generator), ("fresh", fresh_template)):
            scores = []
            for repeat in range(args.repeats):
                for index, teacher in enumerate(held):
                    torch.manual_seed(10_000 * repeat + index)
                    task, _ = recover_task(generator=copy.deepcopy(source), teacher=teacher, settings=run)
                    columns = [keys[_key(n)] for n in teacher.label_names]
                    scores.append((
                        judge_within(net=judge, columns=columns, images=task.images, labels=task.labels),
                        bn_statistics_distance(teacher=teacher, images=task.images),
                        task.teacher_accuracy,
                        task.seconds,
                    ))
            judged, distances, teacher_acc, seconds = zip(*scores)
            finite = [d for d in distances if not math.isnan(d)]
            rows.append({
                "generator": name, "steps": steps, "judge_acc": float(np.mean(judged)),
                "bn_distance": float(np.mean(finite)) if finite else math.nan,
                "teacher_acc": float(np.mean(teacher_acc)), "seconds_per_teacher": float(np.mean(seconds)),
            })

    print(f"\n{'generator':<9} {'k':>4} {'judge acc':>10} {'BN dist':>9} {'teacher acc':>12} {'s/teacher':>10}")
    for row in rows:
        print(f"{row['generator']:<9} {row['steps']:>4} {row['judge_acc']:>10.3f} {row['bn_distance']:>9.3f} {row['teacher_acc']:>12.3f} {row['seconds_per_teacher']:>10.2f}")
    summary = _match(rows, reference_steps=5)
    print(
        f"\nfresh-generator steps to reach the judge accuracy of 5 meta-generator steps: {summary['judge_match_steps']} "
        f"(seconds ratio {summary['judge_seconds_ratio']}); BN distance: {summary['bn_match_steps']} "
        f"(grid {steps_grid}; None: not reached within the grid)"
    )
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "judge_real_acc": judge_real, "meta_seconds": meta_seconds, "rows": rows, **summary}
    (args.out / "bench_free.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(rows, args.out / "bench_free.png")
    print(f"wrote {args.out / 'bench_free.json'} and {args.out / 'bench_free.png'}")
    return result


def _key(name: str) -> str:
    from freehub.task_model import canonical_label_key

    return canonical_label_key(name) or name


def _match(rows: list[dict], *, reference_steps: int) -> dict:
    reference = next((r for r in rows if r["generator"] == "meta" and r["steps"] == reference_steps), None)
    fresh = sorted((r for r in rows if r["generator"] == "fresh"), key=lambda r: r["steps"])
    if reference is None:
        return {"judge_match_steps": None, "judge_seconds_ratio": None, "bn_match_steps": None}
    judge = next((r for r in fresh if r["judge_acc"] >= reference["judge_acc"]), None)
    distance = next((r["steps"] for r in fresh if not math.isnan(r["bn_distance"]) and r["bn_distance"] <= reference["bn_distance"]), None)
    ratio = None if judge is None else round(judge["seconds_per_teacher"] / reference["seconds_per_teacher"], 1)
    return {"judge_match_steps": None if judge is None else judge["steps"], "judge_seconds_ratio": ratio, "bn_match_steps": distance}


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name, style in (("meta", "o-"), ("fresh", "s--")):
        chosen = [r for r in rows if r["generator"] == name]
        steps = [r["steps"] for r in chosen]
        axes[0].plot(steps, [100 * r["judge_acc"] for r in chosen], style, label=f"{name} generator")
        axes[1].plot(steps, [r["bn_distance"] for r in chosen], style, label=f"{name} generator")
    axes[0].set(xscale="log", xlabel="inversion steps k", ylabel="judge accuracy within the teacher's classes (%)", title="Recovered images name their class")
    axes[1].set(xscale="log", xlabel="inversion steps k", ylabel="distance to BN running statistics", title="Feature statistics vs teacher")
    for axis in axes:
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
