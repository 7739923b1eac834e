"""Can the learner take in what the teachers know, and on which inputs? A diagnostic of FREE's bottleneck.

The learner (CPU default Conv4, random initialisation) is trained with no labels at all, only to match
the teacher ensemble's pairwise feature similarities (``relation_distance`` against
:class:`~freehub.free.reference.TeacherEnsemble`) on a pool of input images, seen through replay's
colour jitter. The pools:

    real      real images of the teachers' classes (what the data oracle sees, labels unused)
    memory    the task memory of a finished FREE run (``--run DIR``: recovered images)
    digits    scikit-learn's handwritten digits, a public data set of another domain as stand-in inputs

Each learner, the ensemble itself and the random initialisation are scored on the same glyph meta-test
episodes. If "real" reaches the ensemble and "memory" does not, the recovered images, not the learner,
lose the teachers' knowledge. Prints a table and writes ``bench_distill_inputs.json``.

    python bench/bench_distill_inputs.py --run bench_results/work/runs/free-seed0 --out bench_results   # ~10 min
    python bench/bench_distill_inputs.py --quick --out bench_results                                      # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import add_zoo_arguments, digits_folder, zoo_registry

from freehub.data import load_glyphs
from freehub.evaluate import EvaluationRequest, evaluate_models, load_model, load_split
from freehub.free.losses import relation_distance
from freehub.free.reference import TeacherEnsemble
from freehub.free.views import colour_jitter
from freehub.meta import load_oracle_data, registry_teachers
from freehub.registry import Registry


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_zoo_arguments(parser)
    parser.add_argument("--run", type=Path, default=None, help="a finished meta-train run whose memory is the 'memory' pool")
    parser.add_argument("--steps", type=int, default=1500, help="distillation steps per pool")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 teachers, few steps and episodes")
    args = parser.parse_args(argv)
    if args.quick:
        args.teachers, args.zoo_steps, args.steps, args.episodes = 6, 30, 20, 20
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out / "work"

    data = load_glyphs(size=32, seed=0)
    with Registry.open(zoo_registry(work=work, teachers=args.teachers, zoo_steps=args.zoo_steps, data=data)) as registry:
        infos = registry_teachers(registry=registry).infos
        ensemble = TeacherEnsemble(teachers=[m for m in registry.task_models() if m.num_classes >= 2], cache_mb=1024)
    pools = {"real": load_oracle_data(spec="glyphs", size=32, seed=0, classes="teachers", teachers=infos).as_float()}
    if args.run is not None:
        memory = torch.load(args.run / "checkpoint.pt", map_location="cpu", weights_only=True)["memory"]
        pools["memory"] = torch.cat(memory["images"]).float() / 255.0
    digits = digits_folder(work=work)
    if digits is not None:
        pools["digits"] = load_split(spec=str(digits), split="all", size=32).as_float()

    learners = {"random": load_model(model="random", seed=args.seed), "teacher-ensemble": ensemble}
    rows = []
    for name, images in pools.items():
        started = time.perf_counter()
        learner, before, after = _distil(ensemble=ensemble, images=images, steps=args.steps, batch=args.batch, seed=args.seed)
        learners[f"distilled on {name}"] = learner
        rows.append({"pool": name, "images": len(images), "probe_distance_before": before, "probe_distance_after": after, "seconds": time.perf_counter() - started})
        print(f"distilled on {name} ({len(images)} images): probe distance {before:.5f} -> {after:.5f}, {rows[-1]['seconds']:.0f} s", flush=True)

    results = evaluate_models(models=learners, data=data.test, request=EvaluationRequest(episodes=args.episodes, shots=(1, 5), seed=args.seed))
    scores = {(e.model, e.k_shot): e for e in results}
    print(f"\n{'learner':<24}{'1-shot':>14}{'5-shot':>14}")
    table = []
    for name in learners:
        one, five = scores[(name, 1)], scores[(name, 5)]
        table.append({"learner": name, "one_shot": one.mean, "one_shot_ci95": one.ci95, "five_shot": five.mean, "five_shot_ci95": five.ci95})
        print(f"{name:<24}{100 * one.mean:>8.1f} ± {100 * one.ci95:.1f}{100 * five.mean:>8.1f} ± {100 * five.ci95:.1f}")
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "pools": rows, "scores": table}
    (args.out / "bench_distill_inputs.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out / 'bench_distill_inputs.json'}")
    return result


def _distil(*, ensemble: TeacherEnsemble, images: torch.Tensor, steps: int, batch: int, seed: int) -> tuple[torch.nn.Module, float, float]:
    """A random-init learner trained ``steps`` steps to match the ensemble's pairwise similarities on
    ``images``; returns it with the distance on a fixed probe batch (no jitter) before and after."""
    targets = torch.cat([ensemble.features(images[i : i + 256]) for i in range(0, len(images), 256)])
    learner = load_model(model="random", seed=seed)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)

    def probe() -> float:
        with torch.no_grad():
            return float(relation_distance(learner_features=learner.features(images[:256]), teacher_features=targets[:256]))

    before = probe()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # colour jitter draws from the global RNG
        for _ in range(steps):
            pick = torch.randint(0, len(images), (batch,), generator=generator)
            loss = relation_distance(learner_features=learner.features(colour_jitter(images[pick])), teacher_features=targets[pick])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return learner, before, probe()


if __name__ == "__main__":
    main()
