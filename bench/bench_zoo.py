"""Wall-clock cost of the default teacher zoo (24 teachers, 32 px glyphs) on a few CPU threads.

Renders the glyph set into a throw-away cache (cold) unless ``--cache`` points at a warm one, then
builds and publishes the zoo into a throw-away local folder Hub and prints the summary table, the
time per recipe and the totals. The budget is 10 minutes on 2 cores.

    python bench/bench_zoo.py
    python bench/bench_zoo.py --teachers 8 --json results.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from freehub.data import load_glyphs
from freehub.hub import LocalHub
from freehub.zoo import DEFAULT_IMAGES_PER_CLASS, DEFAULT_TEACHERS, DEFAULT_TRAIN_STEPS, build_zoo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teachers", type=int, default=DEFAULT_TEACHERS)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=DEFAULT_TRAIN_STEPS)
    parser.add_argument("--seed", type=int, default=0)
    # One thread by default: these networks are too small for intra-op parallelism to pay, and on a
    # shared 2-core machine two threads per process spin against other work (measured 9x slower).
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the budget assumes 2 cores)")
    parser.add_argument("--cache", type=Path, default=None, help="glyph cache folder (default: a fresh one, cold)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="freehub-bench-zoo-") as scratch:
        began = time.perf_counter()
        data = load_glyphs(size=args.size, images_per_class=DEFAULT_IMAGES_PER_CLASS, cache_dir=args.cache or Path(scratch) / "glyphs")
        data_seconds = time.perf_counter() - began
        result = build_zoo(
            hub=LocalHub(root=Path(scratch) / "hub"), org="bench", teachers=args.teachers, seed=args.seed,
            size=args.size, data=data, progress=True, train_steps=args.steps,
        )

    print(result.table())
    per_recipe: dict[str, list[float]] = defaultdict(list)
    for teacher in result.teachers:
        per_recipe[teacher.repo_id.split("/")[1].rsplit("-", 1)[0]].append(teacher.seconds)
    print("\nseconds per teacher, by recipe (mean over its teachers, all efforts):")
    for recipe, seconds in per_recipe.items():
        print(f"  {recipe:<24} {sum(seconds) / len(seconds):6.1f}")
    total = data_seconds + result.seconds
    print(
        f"\nglyph set ({data.train.num_classes} meta-train classes, {DEFAULT_IMAGES_PER_CLASS} images each): "
        f"{data_seconds:.1f} s; zoo: {result.seconds:.1f} s; total {total:.1f} s on {args.threads} threads "
        f"({'within' if total <= 600 else 'OVER'} the 600 s budget)"
    )
    if args.json:
        payload = {"data_seconds": data_seconds, "threads": args.threads, **result.to_dict()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
