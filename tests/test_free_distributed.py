"""Meta-training on several processes: torchrun launching gloo ranks on the CPU, against one process.

The runs are tests/distributed_worker.py (four tiny glyph teachers, a global meta-batch of four,
two replay episodes per step). Tolerance of "the same learner": the learner's features on real
meta-val images agree within 0.3 (measured: 0.02 on one machine, 0.088 on another, mean 0.013, with
the largest feature 4.4; a run with another seed differs by up to 3.8, mean 0.71), the schedule
(teachers drawn and taught, classes stored) is equal, and accuracies and counts agree within one
image or query (0.05 of a teacher's 20 images or an episode's 20 queries, 2% of a count). The rest is float rounding: the all-reduce sums the meta-batch's gradients in
another order than one process does, and Adam amplifies the difference in the biases BatchNorm
cancels, where the gradient is pure rounding noise. How far that rounding goes depends on the CPU's
kernels: on one machine every accuracy was equal, on another one image of one teacher and one query
of a replay episode crossed a decision boundary at the fourth iteration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from distributed_worker import CONFIG, teachers
from test_free_teachers import glyphs

from freehub.free.distributed import World, derived_seed, joined_world
from freehub.free.learners import build_learner
from freehub.free.trainer import meta_train

WORKER = Path(__file__).parent / "distributed_worker.py"
FEATURE_ATOL = 0.3
_NOT_COMPARED = ("seconds", "recovery_seconds", "recovery_wall_seconds", "inversion_loss", "bn_loss", "align_kl", "episode_loss", "relation", "world_size")


def _torchrun(*args: str, nproc: int = 2) -> subprocess.Popen:
    # One thread per rank: two ranks share the two cores, and results do not depend on the thread count.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), str(WORKER), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _finish(process: subprocess.Popen, timeout: float = 300) -> None:
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output[-4000:]


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _features(run_dir: Path) -> torch.Tensor:
    learner = build_learner(spec=CONFIG.learner_spec())
    learner.load_state_dict(torch.load(run_dir / "checkpoint.pt", weights_only=True)["learner"])
    with torch.no_grad():
        return learner.features(glyphs().val.as_float()[:60])


_SCHEDULE = ("iteration", "phase", "teachers", "taught", "memory_classes")
_ONE_IMAGE = 0.05 + 1e-6


def _assert_same_run(records: list[dict], reference: list[dict]) -> None:
    """``records`` are ``reference``'s run up to float rounding (see the module docstring)."""
    assert len(records) == len(reference)
    for mine, theirs in zip(records, reference):
        assert mine.keys() == theirs.keys()
        assert {k: mine.get(k) for k in _SCHEDULE} == {k: theirs.get(k) for k in _SCHEDULE}
        for key in mine.keys() - set(_SCHEDULE) - set(_NOT_COMPARED):
            assert np.allclose(mine[key], theirs[key], rtol=0.02, atol=_ONE_IMAGE), (mine["iteration"], key, mine[key], theirs[key])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the same run in this process, which sets up no torch.distributed at all."""
    out = tmp_path_factory.mktemp("one") / "run"
    meta_train(teachers=teachers(), config=CONFIG, out_dir=out, val_data=glyphs().val, progress=False)
    assert not dist.is_initialized()
    return out


def test_shards_give_every_slot_to_exactly_one_rank_in_order() -> None:
    for size in (1, 2, 3, 5):
        for count in (0, 1, 4, 7):
            slots = [slot for rank in range(size) for slot in World(rank=rank, size=size).shard(count=count)]
            assert slots == list(range(count))


def test_derived_seeds_depend_on_their_parts_alone() -> None:
    assert derived_seed(parts=(5, 3, "recover", 1)) == derived_seed(parts=(5, 3, "recover", 1)) != derived_seed(parts=(5, 3, "recover", 2))


def test_without_torchrun_one_process_sets_nothing_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with joined_world(device_name="cpu") as world:
        assert world == World() and not dist.is_initialized()


@pytest.mark.slow
def test_two_gloo_ranks_learn_what_one_process_learns_and_only_rank_0_writes(tmp_path: Path, one_process: Path) -> None:
    glyphs()  # the glyph cache exists before two ranks read it
    _finish(_torchrun("--out", str(tmp_path / "run"), "--report", str(tmp_path / "report"), "--host-dirs"))
    reports = sorted((json.loads(p.read_text()) for p in (tmp_path / "report").glob("rank*.json")), key=lambda r: r["rank"])
    assert [(r["rank"], r["world_size"], r["backend"]) for r in reports] == [(0, 2, "gloo"), (1, 2, "gloo")]
    run = tmp_path / "run" / "host0"
    assert not (tmp_path / "run" / "host1").exists()  # rank 1 wrote nothing, not even its folder
    assert [r["iteration"] for r in _records(run)] == list(range(CONFIG.iterations))
    assert sorted(p.name for p in (run / "grids").iterdir()) == sorted(p.name for p in (one_process / "grids").iterdir())
    _assert_same_run(_records(run), _records(one_process))
    assert json.loads((run / "learner" / "learner.json").read_text())["iteration"] == json.loads((one_process / "learner" / "learner.json").read_text())["iteration"]
    torch.testing.assert_close(_features(run), _features(one_process), rtol=0, atol=FEATURE_ATOL)


@pytest.mark.slow
def test_a_killed_two_rank_run_resumes_on_two_ranks_and_completes(tmp_path: Path, one_process: Path) -> None:
    glyphs()
    iterations = 10
    run = tmp_path / "run"
    process = _torchrun("--out", str(run), "--report", str(tmp_path / "first"), "--iterations", str(iterations))
    deadline = time.monotonic() + 300
    while not ((run / "metrics.jsonl").exists() and len(_records(run)) >= 2):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before it could be killed"
        time.sleep(0.05)
    # A host going down mid-iteration: torchrun's agent and both ranks (each in its own session) at once.
    for pid in [process.pid, *(int(p.read_text()) for p in (tmp_path / "first").glob("rank*.pid"))]:
        os.kill(pid, signal.SIGKILL)
    process.wait()
    assert 2 <= len(_records(run)) < iterations and not list((tmp_path / "first").glob("rank*.json"))
    _finish(_torchrun("--out", str(run), "--report", str(tmp_path / "second"), "--iterations", str(iterations), "--resume"))
    assert [r["iteration"] for r in _records(run)] == list(range(iterations))
    assert (run / "learner" / "learner.safetensors").is_file()
    # The first iterations are the reference run's: the resumed run continued the same run.
    _assert_same_run(_records(run)[: CONFIG.iterations], _records(one_process))


@pytest.mark.slow
def test_ranks_that_see_different_teachers_refuse_to_start(tmp_path: Path) -> None:
    glyphs()
    process = _torchrun("--out", str(tmp_path / "run"), "--report", str(tmp_path / "report"), "--mismatch")
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0
    assert "rank 1 sees different config or teachers than rank 0" in output
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_a_run_started_on_one_process_resumes_on_two_ranks_as_the_same_run(tmp_path: Path, one_process: Path) -> None:
    # A checkpoint holds no per-rank state, so the number of ranks may change at a resume.
    run = tmp_path / "run"
    meta_train(teachers=teachers(), config=replace(CONFIG, iterations=2), out_dir=run, val_data=glyphs().val, progress=False)
    _finish(_torchrun("--out", str(run), "--report", str(tmp_path / "report"), "--resume"))
    _assert_same_run(_records(run), _records(one_process))
    torch.testing.assert_close(_features(run), _features(one_process), rtol=0, atol=FEATURE_ATOL)
