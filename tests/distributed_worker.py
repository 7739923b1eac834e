"""One process of the small meta-training run that tests/test_free_distributed.py launches, alone or
under torchrun: four tiny glyph teachers, the trainer inside :func:`joined_world` on gloo.

``--host-dirs`` gives each rank its own run folder (``OUT/host<rank>``), as ranks on hosts without a
shared filesystem have: rank 0's must hold the whole run and every other one must stay empty.
``--mismatch`` gives rank 1 its teachers in another order, as a host with another registry would.
``--report DIR`` receives ``rank<r>.pid`` at the start (so a test can kill the rank) and
``rank<r>.json`` at the end: what this process saw of torch.distributed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))

from test_free_teachers import fit_split, glyphs, train_teacher  # noqa: E402 - needs the path above
from test_free_trainer import CONFIG as TRAINER_CONFIG  # noqa: E402

from freehub.free.distributed import joined_world  # noqa: E402
from freehub.free.trainer import meta_train  # noqa: E402
from freehub.task_model import TaskModel  # noqa: E402

# The trainer tests' small run, with a meta-batch of four to share among the ranks and two episodes
# per replay step; inner_steps as the default had it (unused by ProtoNet, but part of the config ranks compare).
CONFIG = replace(
    TRAINER_CONFIG, seed=5, teachers_per_step=4, episodes_per_step=2, inner_steps=5,
    relation_weight=1.0,  # rank 0 alone adds the relation term: covered here too
)
CLASS_SETS = (range(0, 5), range(3, 8), range(8, 15), range(15, 20))


def teachers() -> list[TaskModel]:
    """The run's teachers: the same on every rank (fixed seeds, one thread)."""
    data = glyphs()
    return [train_teacher(task=fit_split(data.train.select_classes(list(c)))[0], seed=i, steps=25, width=8) for i, c in enumerate(CLASS_SETS)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--iterations", type=int, default=CONFIG.iterations)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--host-dirs", action="store_true")
    parser.add_argument("--mismatch", action="store_true")
    args = parser.parse_args()
    args.report.mkdir(parents=True, exist_ok=True)
    (args.report / f"rank{os.environ.get('RANK', '0')}.pid").write_text(str(os.getpid()))
    torch.set_num_threads(1)
    pool = teachers()
    data = glyphs()
    with joined_world(device_name=CONFIG.device) as world:
        if args.mismatch and world.rank == 1:
            pool = pool[::-1]
        out = args.out / f"host{world.rank}" if args.host_dirs else args.out
        config = replace(CONFIG, iterations=args.iterations)
        meta_train(teachers=pool, config=config, out_dir=out, val_data=data.val, resume=args.resume, progress=False)
        initialized = dist.is_initialized()
        report = {
            "rank": world.rank,
            "world_size": world.size,
            "initialized": initialized,
            "backend": dist.get_backend() if initialized else None,
        }
    (args.report / f"rank{world.rank}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
