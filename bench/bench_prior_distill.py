"""Prior distillation by image prior: which samples carry the teacher ensemble's knowledge to the learner.

For each prior (pen strokes with 2, 3, 4 or 6 strokes per image, and the conv generator's textures),
a freshly initialised learner (the CPU default Conv4) is taught the ensemble's pairwise similarities
on that prior's random samples (:func:`freehub.free.prior_distill.distil_prior`, the stage
``freehub meta-train --prior-distill-steps`` runs) and scored on the glyph meta-test and on the
meta-validation split, beside random initialisation and the ensemble's own features. Prints a table,
writes ``bench_prior_distill.json`` and ``bench_prior_distill.png`` (each prior's samples, one row per
prior: what the learner is distilled on).

    python bench/bench_prior_distill.py --out bench_results           # ~15 min on 2 CPU cores
    python bench/bench_prior_distill.py --quick --out bench_results   # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch
from common import add_zoo_arguments, zoo_registry

from freehub.data import load_glyphs, save_grid
from freehub.evaluate import EvaluationRequest, evaluate_models, load_model
from freehub.free.config import MetaTrainConfig
from freehub.free.learners import build_learner
from freehub.free.prior_distill import distil_prior, sample_prior
from freehub.free.reference import TeacherEnsemble
from freehub.registry import Registry

PRIORS = {
    "strokes x2": {"generator": "strokes", "generator_strokes": 2},
    "strokes x3 (default)": {"generator": "strokes", "generator_strokes": 3},
    "strokes x4": {"generator": "strokes", "generator_strokes": 4},
    "strokes x6": {"generator": "strokes", "generator_strokes": 6},
    "conv generator": {"generator": "conv"},
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_zoo_arguments(parser)
    parser.add_argument("--steps", type=int, default=1500, help="distillation steps per prior")
    parser.add_argument("--images", type=int, default=4000, help="prior samples per prior")
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 teachers, two priors, few steps and episodes")
    args = parser.parse_args(argv)
    priors = dict(PRIORS)
    if args.quick:
        args.teachers, args.zoo_steps, args.steps, args.images, args.episodes = 6, 30, 20, 256, 20
        priors = {name: priors[name] for name in ("strokes x3 (default)", "conv generator")}
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    data = load_glyphs(size=32, seed=0)
    with Registry.open(zoo_registry(work=args.work or args.out / "work", teachers=args.teachers, zoo_steps=args.zoo_steps, data=data)) as registry:
        teachers = [m for m in registry.task_models() if m.num_classes >= 2]
    base = MetaTrainConfig(device="cpu", seed=args.seed, prior_distill_steps=args.steps, prior_distill_images=args.images)
    # The random floor has the distilled learners' spec, metric included (cosine: learner_metric auto).
    learners = {"random": load_model(model="random", seed=args.seed, spec=base.learner_spec()), "teacher-ensemble": TeacherEnsemble(teachers=teachers, cache_mb=1024)}
    stages, samples = {}, []
    for name, changes in priors.items():
        config = replace(base, **changes)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(args.seed)
            learner = build_learner(spec=config.learner_spec())
        started = time.perf_counter()
        result = distil_prior(
            learner=learner, teachers=teachers, make_generator=config.make_generator, settings=config.prior_distill_settings(),
            seed=args.seed, device=torch.device("cpu"),
        )
        stages[name] = {"seconds": time.perf_counter() - started, "loss_first": result.loss_first, "loss_last": result.loss_last}
        learners[name] = learner
        samples.append(sample_prior(make_generator=config.make_generator, count=10, per_generator=1, seed=args.seed))
        print(f"{name}: similarity distance {result.loss_first:.4f} -> {result.loss_last:.4f}, {stages[name]['seconds']:.0f} s", flush=True)

    test = evaluate_models(models=learners, data=data.test, request=EvaluationRequest(episodes=args.episodes, shots=(1, 5), seed=0))
    val = evaluate_models(models=learners, data=data.val, request=EvaluationRequest(split="val", episodes=args.episodes, shots=(1,), seed=0))
    scores = {(e.model, e.k_shot, e.split): e for e in [*test, *val]}
    table = []
    print(f"\n{'learner':<24}{'1-shot':>14}{'5-shot':>14}{'meta-val 1-shot':>18}{'stage s':>9}")
    for name in learners:
        one, five, held = scores[(name, 1, "test")], scores[(name, 5, "test")], scores[(name, 1, "val")]
        seconds = stages.get(name, {}).get("seconds", 0.0)
        table.append({"learner": name, "one_shot": one.mean, "one_shot_ci95": one.ci95, "five_shot": five.mean, "five_shot_ci95": five.ci95,
                      "val_one_shot": held.mean, "val_one_shot_ci95": held.ci95, **stages.get(name, {})})
        print(f"{name:<24}{100 * one.mean:>8.1f} ± {100 * one.ci95:.1f}{100 * five.mean:>8.1f} ± {100 * five.ci95:.1f}"
              f"{100 * held.mean:>12.1f} ± {100 * held.ci95:.1f}{seconds:>9.0f}")
    save_grid(images=torch.cat(samples), path=args.out / "bench_prior_distill.png", nrow=10, titles=list(priors), scale=3)
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "scores": table}
    (args.out / "bench_prior_distill.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_prior_distill.json'} and bench_prior_distill.png")
    return result


if __name__ == "__main__":
    main()
