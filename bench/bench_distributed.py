"""Meta-training throughput on 1 and 2 processes: iterations per second and recovery throughput (teachers/s).

The same `freehub meta-train` run on the embedded zoo's registry, three ways: one process with one
thread, one process with two threads (the plain default on two cores), and two processes with one
thread each under ``torchrun --nproc_per_node 2`` (gloo). Every run draws the same teachers and, up
to float rounding, learns the same learner (see freehub.free.distributed). Recovery throughput is
teachers recovered per second of the recovery phase's wall clock (inversion, all-gather included);
iterations per second count whole iterations (recovery, alignment, replay, checkpoint) after the
first ``--skip`` ones (warm-up iterations have no replay). Prints a table, writes
``bench_distributed.json`` and ``bench_distributed.png``.

    python bench/bench_distributed.py --out bench/out            # ~12 minutes on 2 busy CPU cores
    python bench/bench_distributed.py --quick --out bench/out    # a smoke run

On a GPU host (nccl, one process per GPU; not run yet, no GPU was available where it was written):

    python bench/bench_distributed.py --device cuda --preset paper --iterations 6 --out bench/out
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from common import zoo_registry

from freehub.data import load_glyphs

LAYOUTS = (("1 process x 1 thread", 1, 1), ("1 process x 2 threads", 1, 2), ("2 processes x 1 thread", 2, 1))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/out"))
    parser.add_argument("--work", type=Path, default=None, help="zoo and registry (default: OUT/work); reused when present")
    parser.add_argument("--teachers", type=int, default=12, help="teachers in the zoo")
    parser.add_argument("--zoo-steps", type=int, default=60)
    parser.add_argument("--iterations", type=int, default=8)
    parser.add_argument("--teachers-per-step", type=int, default=4, help="the global meta-batch (split among the processes)")
    parser.add_argument("--skip", type=int, default=2, help="first iterations left out of iterations/s")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 teachers, 4 iterations, smaller generator")
    parser.add_argument("--device", default="cpu", help="'cpu' (gloo; the three layouts) or 'cuda' (nccl; 1 process, and 2 with 2+ GPUs)")
    parser.add_argument("--preset", default="cpu", choices=("cpu", "paper"))
    args = parser.parse_args(argv)
    settings = {
        "preset": args.preset, "iterations": args.iterations, "teachers_per_step": args.teachers_per_step,
        "warmup_iterations": 2, "device": args.device, "seed": 0,
    }
    layouts = LAYOUTS
    if args.device.startswith("cuda"):
        layouts = (("1 process, 1 GPU", 1, 1),) + ((("2 processes, 2 GPUs", 2, 1),) if torch.cuda.device_count() >= 2 else ())
    if args.quick:
        args.teachers, args.zoo_steps, args.skip = 6, 30, 1
        settings.update(iterations=4, warmup_iterations=1, generator_width=32, images_per_task=25, max_replay_steps=5)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or args.out / "work"
    registry = zoo_registry(work=work, teachers=args.teachers, zoo_steps=args.zoo_steps, data=load_glyphs(size=32, seed=0))
    config_path = args.out / "bench_distributed.yaml"
    config_path.write_text(yaml.safe_dump(settings))

    rows = []
    for name, processes, threads in layouts:
        run_dir = args.out / f"distributed-{processes}p{threads}t"
        shutil.rmtree(run_dir, ignore_errors=True)
        _meta_train(registry=registry, run_dir=run_dir, config=config_path, processes=processes, threads=threads)
        records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        timed = records[args.skip :]
        seconds = records[-1]["seconds"] - records[args.skip - 1]["seconds"] if args.skip else records[-1]["seconds"]
        teachers = sum(len(r["teachers"]) for r in records)
        recovery_seconds = sum(r["recovery_wall_seconds"] for r in records)
        rows.append({
            "layout": name, "processes": processes, "threads": threads, "iterations": len(timed),
            "iterations_per_s": len(timed) / seconds, "teachers_per_s": teachers / recovery_seconds,
            "seconds_per_teacher_each": sum(s for r in records for s in r["recovery_seconds"]) / teachers,
        })
        print(f"{name}: {len(records)} iterations in {records[-1]['seconds']:.1f} s", flush=True)

    base = rows[0]
    print(f"\n{'layout':<24} {'it/s':>7} {'x':>6} {'teachers/s':>11} {'x':>6} {'s per inversion':>16}")
    for row in rows:
        print(
            f"{row['layout']:<24} {row['iterations_per_s']:>7.3f} {row['iterations_per_s'] / base['iterations_per_s']:>6.2f} "
            f"{row['teachers_per_s']:>11.2f} {row['teachers_per_s'] / base['teachers_per_s']:>6.2f} {row['seconds_per_teacher_each']:>16.2f}"
        )
    print("seconds per iteration: " + ", ".join(f"{row['layout']} {1 / row['iterations_per_s']:.2f}" for row in rows))
    result = {"settings": settings, "zoo_teachers": args.teachers, "cpu_count": os.cpu_count(), "rows": rows}
    (args.out / "bench_distributed.json").write_text(json.dumps(result, indent=2) + "\n")
    _plot(rows, args.out / "bench_distributed.png")
    print(f"wrote {args.out / 'bench_distributed.json'} and {args.out / 'bench_distributed.png'}")
    return result


def _meta_train(*, registry: Path, run_dir: Path, config: Path, processes: int, threads: int) -> None:
    command = [sys.executable, "-m", "freehub", "meta-train", "--registry", str(registry), "--out", str(run_dir), "--config", str(config), "--json"]
    if processes > 1:
        command[1:2] = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes), "-m"]
    subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, check=True, stdout=subprocess.DEVNULL)


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    names = [row["layout"].replace(" x ", "\nx ") for row in rows]
    for axis, key, title in zip(axes, ("iterations_per_s", "teachers_per_s"), ("meta-iterations per second", "teachers recovered per second")):
        axis.bar(names, [row[key] for row in rows], color=["#999999", "#666666", "#1f77b4"])
        axis.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
