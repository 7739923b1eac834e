"""The prior-distillation benchmark's quick mode distils a learner per prior and scores all on shared episodes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_benchmark_distils_one_learner_per_prior_and_draws_their_samples(load_bench, tmp_path: Path) -> None:
    result = load_bench("bench_prior_distill").main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    rows = {row["learner"]: row for row in result["scores"]}
    assert set(rows) == {"random", "teacher-ensemble", "strokes x3 (default)", "conv generator"}
    # Each stage lowered its similarity distance: the learner moved towards the ensemble.
    assert all(rows[name]["loss_last"] < rows[name]["loss_first"] for name in ("strokes x3 (default)", "conv generator"))
    assert all(0.0 < row["one_shot"] <= 1.0 and 0.0 < row["val_one_shot"] <= 1.0 for row in rows.values())
    assert json.loads((tmp_path / "bench_prior_distill.json").read_text())["scores"] == result["scores"]
    assert (tmp_path / "bench_prior_distill.png").stat().st_size > 1000
