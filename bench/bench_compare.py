"""FREE beside every baseline, on the embedded zoo: the instrument every claim of freehub is measured with.

One run builds (or reuses) the teacher zoo on a local folder Hub, collects it into a registry, and
meta-trains the same learner under one wall-clock budget per method, for several seeds:

    random            the learner's random initialisation (no training)
    random-cosine     ... compared with class prototypes by cosine (the floor of the cosine learners)
    pixel-prototypes  nearest prototype on standardised grey pixels (no learner, no training)
    teacher-ensemble  nearest prototype on the teachers' own features, each teacher's block unit-length
                      (no learner, no training, no synthesis: the simplest use of the pile of models)
    oracle-all        the same learner trained on REAL images of all meta-train classes
    oracle-teachers   ... of only the classes the teachers were trained on (the fair ceiling)
    oracle-teachers-cosine  ... trained and scored with cosine prototypes
    scratch-generator a fresh generator per teacher, BiDf-MKD-style
    pixels            images optimised per teacher with BN / TV / L2 priors, DeepInversion-style
    free-no-align     FREE's recovery, plain episodic replay (no BELL alignment)
    free              FREE
    free-strokes      FREE with the pen-stroke generator (an image prior for line art) instead of the conv one
    prior-distill     no FREE iteration: the learner only matches the teacher ensemble's similarities on
                      random pen strokes (prior distillation, freehub.free.prior_distill), seen moved and
                      turned a little; cosine prototypes (learner_metric auto)
    prior-distill-euclidean  ... scored by Euclidean prototypes (the metric's share of the gain)
    free-strokes+prior  prior distillation, then FREE with the stroke generator in the rest of the budget
                      (the distilled learner competes in the meta-val selection)

Every learner is scored on the same glyph meta-test episodes (5-way 1-shot and 5-shot). The gap a
method closes is measured from the random initialisation with the method's own metric (cosine
prototypes score a random learner higher) to the higher of the two oracles. It writes
``compare.md`` (the table), ``compare.json``, ``val_curves.png`` (meta-val accuracy against
wall-clock), and ``recovered.png`` (a labelled grid of real images and each method's recovered
images of the same classes).

    python bench/bench_compare.py --out bench_results              # full: 3 seeds, ~1.5 h on 2 CPU cores
    python bench/bench_compare.py --quick --out bench_results      # CI smoke run, a few minutes
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from freehub.data import ImageSet, load_glyphs, save_grid
from freehub.evaluate import PIXELS, TEACHER_ENSEMBLE, EvaluationRequest, evaluate_models, load_model, load_split
from freehub.free.config import MetaTrainConfig
from freehub.free.reference import PixelPrototypes, TeacherEnsemble
from freehub.free.trainer import meta_train
from freehub.meta import load_oracle_data, registry_teachers
from freehub.registry import Registry
from freehub.task_model import canonical_label_key
from common import digits_folder, judge_within, train_judge, zoo_registry


@dataclass(frozen=True)
class Method:
    """One row of the table: a name and the config changes that make it (or, for a training-free
    reference learner, its name in :mod:`freehub.free.reference`)."""

    name: str
    changes: dict[str, Any]
    oracle: str | None = None
    reference: str | None = None


def methods(*, prior_steps: int = 1500) -> list[Method]:
    """The methods compared, all on the same learner and schedule as the FREE config
    (``prior_steps``: the prior-distillation steps of the methods that have the stage)."""
    return [
        Method("random", {"iterations": 0}),
        Method("random-cosine", {"iterations": 0, "learner_metric": "cosine"}),
        Method("pixel-prototypes", {}, reference=PIXELS),
        Method("teacher-ensemble", {}, reference=TEACHER_ENSEMBLE),
        Method("oracle-all", {}, oracle="all"),
        Method("oracle-teachers", {}, oracle="teachers"),
        Method("oracle-teachers-cosine", {"learner_metric": "cosine"}, oracle="teachers"),
        Method("scratch-generator", {"recovery": "scratch-generator"}),
        # DeepInversion's priors, at weights that put each near the cross-entropy's scale early on.
        Method("pixels", {"recovery": "pixels", "bn_prior_weight": 0.01, "tv_weight": 0.5, "l2_weight": 0.01}),
        Method("free-no-align", {"align": False}),
        Method("free", {}),
        # The pen-stroke prior (freehub.free.strokes): FREE on it, prior distillation alone, and both.
        Method("free-strokes", {"generator": "strokes"}),
        Method("prior-distill", {"generator": "strokes", "prior_distill_steps": prior_steps, "iterations": 0}),
        Method("prior-distill-euclidean", {"generator": "strokes", "prior_distill_steps": prior_steps, "iterations": 0, "learner_metric": "euclidean"}),
        Method("free-strokes+prior", {"generator": "strokes", "prior_distill_steps": prior_steps}),
    ]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--work", type=Path, default=None, help="zoo, registry and runs (default: OUT/work); reused when present")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget", type=float, default=300.0, help="meta-training seconds per method and seed")
    parser.add_argument("--episodes", type=int, default=600)
    parser.add_argument("--teachers", type=int, default=24)
    parser.add_argument("--zoo-steps", type=int, default=150)
    parser.add_argument("--baseline-steps", type=int, default=200, help="inversion steps of the scratch and pixel baselines")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (each gets threads/jobs threads)")
    parser.add_argument("--judge-steps", type=int, default=400)
    parser.add_argument("--reuse", action="store_true", help="keep finished runs found in WORK/runs (a resumed benchmark)")
    parser.add_argument("--only", default=None, help="comma-separated method names")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 teachers, 1 seed, tiny budgets")
    parser.add_argument("--report", action="store_true", help="only rewrite the table and plot from OUT/compare.json")
    args = parser.parse_args(argv)
    if args.report:
        runs = json.loads((args.out / "compare.json").read_text())["runs"]
        seeds = sorted({r["seed"] for r in runs})
        _, table = _write_outputs(runs=runs, args=args, seeds=seeds)
        names = list(dict.fromkeys(r["method"] for r in runs))
        _recovered_grid(work=args.work or args.out / "work", seed=seeds[0], names=names, data=load_glyphs(size=32, seed=0), path=args.out / "recovered.png")
        print(table)
        return {"runs": runs}
    if args.quick:
        args.seeds, args.budget, args.episodes, args.teachers, args.zoo_steps, args.baseline_steps = "0", 8.0, 40, 6, 30, 10
        args.judge_steps = 60
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    work = args.work or args.out / "work"
    args.out.mkdir(parents=True, exist_ok=True)

    data = load_glyphs(size=32, seed=0)
    registry_dir = zoo_registry(work=work, teachers=args.teachers, zoo_steps=args.zoo_steps, data=data)
    free = MetaTrainConfig(device="cpu", iterations=10_000, max_seconds=args.budget, baseline_steps=args.baseline_steps)
    if args.quick:
        free = replace(
            free, warmup_iterations=1, val_every=2, val_episodes=10, max_replay_steps=3, images_per_task=20, generator_width=16,
            prior_distill_images=256, prior_distill_batch=32,
        )
    chosen = methods(prior_steps=10 if args.quick else 1500)
    if args.only:
        wanted = set(args.only.split(","))
        chosen = [m for m in chosen if m.name in wanted]
    request = EvaluationRequest(split="test", n_way=5, shots=(1, 5), episodes=args.episodes, seed=0)

    # A reference learner trains nothing: one evaluation stands for every seed.
    jobs = [(method, seed) for seed in seeds for method in chosen if method.reference is None or seed == seeds[0]]
    runs: list[dict[str, Any]] = []
    if args.jobs > 1:
        # One process per (method, seed), each on its own share of the cores, under the same budget.
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=args.jobs, initializer=torch.set_num_threads, initargs=(max(1, args.threads // args.jobs),)) as pool:
            futures = [pool.submit(_run, method=m, seed=s, free=free, registry_dir=registry_dir, work=work, request=request, judge_steps=args.judge_steps, reuse=args.reuse) for m, s in jobs]
            for future in futures:
                runs.append(future.result())
                print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)
                _write_outputs(runs=runs, args=args, seeds=seeds)
    else:
        for method, seed in jobs:
            runs.append(_run(method=method, seed=seed, free=free, registry_dir=registry_dir, work=work, request=request, judge_steps=args.judge_steps, reuse=args.reuse))
            print(json.dumps({k: v for k, v in runs[-1].items() if k != "curve"}), flush=True)
            _write_outputs(runs=runs, args=args, seeds=seeds)
    rows, table = _write_outputs(runs=runs, args=args, seeds=seeds)
    _recovered_grid(work=work, seed=seeds[0], names=[m.name for m in chosen], data=data, path=args.out / "recovered.png")
    print(table)
    print(f"wrote {args.out / 'compare.md'}, compare.json, val_curves.png, recovered.png")
    return {"rows": rows, "runs": runs}


def _run(
    *, method: Method, seed: int, free: MetaTrainConfig, registry_dir: Path, work: Path, request: EvaluationRequest, judge_steps: int,
    reuse: bool = False,
) -> dict[str, Any]:
    data = load_glyphs(size=32, seed=0)
    with Registry.open(registry_dir) as registry:
        teachers = registry_teachers(registry=registry)
    config = replace(free, seed=seed, **method.changes)
    out = work / "runs" / f"{method.name}-seed{seed}"
    cached = out / "bench_result.json"
    if reuse and cached.is_file():
        return json.loads(cached.read_text())
    shutil.rmtree(out, ignore_errors=True)
    if method.reference is not None:
        return _run_reference(method=method, seed=seed, teachers=teachers, data=data, work=work, request=request, out=out)
    real = None
    if method.oracle is not None:
        config = replace(config, recovery="real")
        real = load_oracle_data(spec="glyphs", size=config.image_size, seed=0, classes=method.oracle, teachers=teachers.infos)
    run = meta_train(teachers=teachers, config=config, out_dir=out, val_data=data.val, real_data=real, progress=False)
    learner = load_model(model=str(out))
    scores = _scores(learner=learner, name=method.name, data=data, work=work, request=request, image_size=config.image_size)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    recovery = [s for m in metrics for s in m.get("recovery_seconds", [])]
    teacher_acc = [a for m in metrics for a in m.get("teacher_acc_clean", [])]
    result = {
        "method": method.name,
        "seed": seed,
        "metric": config.resolved_learner_metric(),
        **scores,
        "seconds": run.seconds,
        "iterations": run.iterations,
        "best_iteration": run.best_iteration,
        "recovery_seconds_per_teacher": statistics.median(recovery) if recovery else None,
        "teacher_acc": statistics.fmean(teacher_acc) if teacher_acc else None,
        "judge_acc": _judge_memory(out=out, data=data, teachers=teachers.infos, judge_steps=judge_steps) if method.oracle is None and config.iterations else None,
        "curve": [(m["seconds"], m["val_acc"]) for m in metrics if "val_acc" in m],
    }
    cached.write_text(json.dumps(result) + "\n")
    return result


def _run_reference(*, method: Method, seed: int, teachers, data, work: Path, request: EvaluationRequest, out: Path) -> dict[str, Any]:
    """Score a training-free reference learner on the same episodes as every trained one."""
    started = time.perf_counter()
    if method.reference == PIXELS:
        learner = PixelPrototypes()
    else:
        learner = TeacherEnsemble(teachers=[teachers.model(i, device=torch.device("cpu")) for i in range(len(teachers))])
    scores = _scores(learner=learner, name=method.name, data=data, work=work, request=request, image_size=learner.spec.image_size)
    result = {
        "method": method.name, "seed": seed, "metric": learner.spec.metric, **scores, "seconds": 0.0, "iterations": 0, "best_iteration": None,
        "recovery_seconds_per_teacher": None, "teacher_acc": None, "judge_acc": None, "curve": [],
        "evaluation_seconds": time.perf_counter() - started,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_result.json").write_text(json.dumps(result) + "\n")
    return result


def _scores(*, learner: torch.nn.Module, name: str, data, work: Path, request: EvaluationRequest, image_size: int) -> dict[str, Any]:
    """Meta-test accuracies on the glyphs and, when scikit-learn is there, on the digits (another domain)."""
    results = evaluate_models(models={name: learner}, data=data.test, request=request)
    digits = digits_folder(work=work)
    other = None
    if digits is not None:
        # Real images of another domain: every class of scikit-learn's digits, the same episodes for every method.
        other = evaluate_models(
            models={name: learner}, data=load_split(spec=str(digits), split="all", size=image_size),
            request=replace(request, data=str(digits), split="all"),
        )
    return {
        "one_shot": results[0].mean,
        "one_shot_ci95": results[0].ci95,
        "five_shot": results[1].mean,
        "five_shot_ci95": results[1].ci95,
        "digits_one_shot": other[0].mean if other is not None else None,
        "digits_five_shot": other[1].mean if other is not None else None,
    }


def _judge_memory(*, out: Path, data, teachers, judge_steps: int) -> float | None:
    """How often the judge, choosing among one teacher's classes, names the class each of that teacher's
    recovered images in the final memory was made for (chance: 1 / the teacher's classes)."""
    memory = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)["memory"]
    net, keys, _ = train_judge(data, class_names={name for t in teachers for name in t.label_names}, steps=judge_steps)
    images_by_key = dict(zip(memory["keys"], memory["images"]))
    scores, counts = [], []
    for group_keys in memory.get("groups", {}).values():
        known = [k for k in group_keys if k in keys and len(images_by_key.get(k, ()))]
        if len(known) < 2:
            continue
        images = torch.cat([images_by_key[k] for k in known]).float() / 255
        labels = torch.cat([torch.full((len(images_by_key[k]),), i) for i, k in enumerate(known)])
        scores.append(judge_within(net=net, columns=[keys[k] for k in known], images=images, labels=labels))
        counts.append(len(labels))
    return sum(s * c for s, c in zip(scores, counts)) / sum(counts) if counts else None


def _write_outputs(*, runs: list[dict[str, Any]], args: argparse.Namespace, seeds: list[int]) -> tuple[list[dict[str, Any]], str]:
    """The table, the JSON and the curves of the runs so far (rewritten after every run: a stopped benchmark keeps them)."""
    rows = _summarise(runs)
    table = _table(rows, budget=args.budget, episodes=args.episodes, seeds=seeds)
    (args.out / "compare.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "compare.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows, "runs": runs}, indent=2) + "\n")
    _plot_curves(runs, args.out / "val_curves.png")
    return rows, table


def _summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_method: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_method.setdefault(run["method"], []).append(run)
    rows = []
    for name, group in by_method.items():
        row: dict[str, Any] = {"method": name, "seeds": len(group)}
        for key in ("one_shot", "five_shot", "digits_one_shot", "digits_five_shot", "seconds", "recovery_seconds_per_teacher", "teacher_acc", "judge_acc"):
            values = [r[key] for r in group if r[key] is not None]
            row[key] = statistics.fmean(values) if values else None
            row[key + "_spread"] = 1.96 * statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None
        rows.append(row)
    metric = {run["method"]: run.get("metric", "euclidean") for run in runs}
    floors = {metric[r["method"]]: r for r in rows if r["method"] in ("random", "random-cosine")}
    ceilings = [r for r in rows if r["method"] in ("oracle-teachers", "oracle-teachers-cosine")]
    for row in rows:
        row["metric"] = metric[row["method"]]
        floor = floors.get(row["metric"])
        for key in ("one_shot", "five_shot"):
            gap = None
            ceiling = max((c[key] for c in ceilings), default=None)
            if floor and ceiling is not None and ceiling - floor[key] > 0:
                gap = (row[key] - floor[key]) / (ceiling - floor[key])
            row[key + "_gap_closed"] = gap
    return rows


def _table(rows: list[dict[str, Any]], *, budget: float, episodes: int, seeds: list[int]) -> str:
    def pct(row: dict[str, Any], key: str) -> str:
        if row[key] is None:
            return "-"
        spread = row.get(key + "_spread")
        return f"{100 * row[key]:.1f}" + (f" ± {100 * spread:.1f}" if spread is not None else "")

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    lines = [
        f"Glyph meta-test, 5-way, {episodes} episodes per setting, mean over seeds {seeds} ± 1.96 standard errors across seeds (a rough spread for few seeds); "
        f"meta-training budget {budget:.0f} s per method and seed; gap closed = (method - random) / (oracle - random), random with the method's metric, the higher oracle; "
        "digits: every class of scikit-learn's handwritten digits (a domain no teacher saw), same protocol.",
        "",
        "| method | metric | seeds | 1-shot | 5-shot | gap closed 1/5-shot | digits 1-shot | digits 5-shot | meta-train s | recovery s/teacher | teacher acc | judge acc |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        gap = "-" if row["one_shot_gap_closed"] is None else f"{100 * row['one_shot_gap_closed']:.0f}% / {100 * row['five_shot_gap_closed']:.0f}%"
        lines.append(
            f"| {row['method']} | {row['metric']} | {row['seeds']} | {pct(row, 'one_shot')} | {pct(row, 'five_shot')} | {gap} | {pct(row, 'digits_one_shot')} | "
            f"{pct(row, 'digits_five_shot')} | {num(row['seconds'], '.0f')} | "
            f"{num(row['recovery_seconds_per_teacher'], '.2f')} | {pct(row, 'teacher_acc')} | {pct(row, 'judge_acc')} |"
        )
    return "\n".join(lines)


def _plot_curves(runs: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    colours: dict[str, Any] = {}
    for run in runs:
        if not run["curve"]:
            continue
        seconds, accs = zip(*run["curve"])
        first = run["method"] not in colours  # one legend entry per method, not per seed
        colour = colours.setdefault(run["method"], f"C{len(colours)}")
        axis.plot(seconds, [100 * a for a in accs], "o-", color=colour, alpha=0.8, label=run["method"] if first else None)
    axis.set(xlabel="meta-training seconds", ylabel="meta-val 5-way 1-shot accuracy (%)", title="Meta-validation accuracy against wall-clock")
    axis.grid(alpha=0.3)
    if colours:  # a smoke run may have no meta-validation point at all
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _recovered_grid(*, work: Path, seed: int, names: list[str], data, path: Path, classes: int = 6, per_class: int = 6) -> None:
    """Rows of real images of a few teacher classes, then each method's recovered images of the same classes."""
    memories = {}
    for name in names:
        checkpoint_path = work / "runs" / f"{name}-seed{seed}" / "checkpoint.pt"
        if name.startswith(("random", "oracle")) or not checkpoint_path.exists():
            continue
        memory = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["memory"]
        if memory["keys"]:  # a run without iterations (prior distillation alone) recovered nothing
            memories[name] = dict(zip(memory["keys"], memory["images"]))
    if not memories:
        return
    train: ImageSet = data.train
    by_key = {canonical_label_key(n) or n: i for i, n in enumerate(train.class_names)}
    shared = [k for k in next(iter(memories.values())) if k in by_key and all(len(m.get(k, ())) >= per_class for m in memories.values())]
    tiles, titles = [], []
    for key in shared[:classes]:
        index = by_key[key]
        real = train.images[torch.nonzero(train.labels == index).flatten()[:per_class]]
        tiles.append(real)
        titles.append(f"real | {train.class_names[index].lower()[:28]}")
        for name, memory in memories.items():
            tiles.append(memory[key][-per_class:])
            titles.append(f"{name}")
    if tiles:
        save_grid(images=torch.cat(tiles), path=path, nrow=per_class, titles=titles, scale=3)


if __name__ == "__main__":
    main()
