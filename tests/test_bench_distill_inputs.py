"""The distillation-inputs diagnostic's quick mode trains a learner per input pool and scores all on shared episodes."""

from __future__ import annotations

import importlib
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench_distill_inputs():
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module("bench_distill_inputs")
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.slow
def test_quick_diagnostic_distils_on_real_images_and_scores_every_learner(bench_distill_inputs, tmp_path: Path) -> None:
    result = bench_distill_inputs.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    pools = {row["pool"]: row for row in result["pools"]}
    assert "real" in pools and pools["real"]["images"] > 0 and math.isfinite(pools["real"]["final_loss"])
    learners = {row["learner"] for row in result["scores"]}
    assert learners == {"random", "teacher-ensemble", *(f"distilled on {pool}" for pool in pools)}
    assert all(0.0 < row["one_shot"] <= 1.0 and 0.0 < row["five_shot"] <= 1.0 for row in result["scores"])
    assert json.loads((tmp_path / "bench_distill_inputs.json").read_text())["scores"] == result["scores"]
