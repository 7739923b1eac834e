"""The distillation-inputs diagnostic's quick mode trains a learner per input pool and scores all on shared episodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_diagnostic_distils_on_real_images_and_scores_every_learner(load_bench, tmp_path: Path) -> None:
    result = load_bench("bench_distill_inputs").main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    pools = {row["pool"]: row for row in result["pools"]}
    # Distillation moved the learner's similarities towards the ensemble's on the probe batch.
    assert "real" in pools and pools["real"]["probe_distance_after"] < 0.8 * pools["real"]["probe_distance_before"]
    learners = {row["learner"] for row in result["scores"]}
    assert learners == {"random", "teacher-ensemble", *(f"distilled on {pool}" for pool in pools)}
    assert all(0.0 < row["one_shot"] <= 1.0 and 0.0 < row["five_shot"] <= 1.0 for row in result["scores"])
    assert json.loads((tmp_path / "bench_distill_inputs.json").read_text())["scores"] == result["scores"]
