"""The image-prior benchmark's quick mode judges real and recovered images per architecture and writes its outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.mark.slow
def test_quick_benchmark_judges_real_images_far_above_two_step_recoveries(load_bench, tmp_path: Path) -> None:
    bench_priors = load_bench("bench_priors")
    result = bench_priors.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    rows = {row["variant"]: row for row in result["rows"]}
    assert len(rows) == 3 and "real images" in rows
    assert all(len(row["judge_acc"]) == len(result["teachers"]) for row in rows.values())
    real = np.mean(rows["real images"]["judge_acc"])
    recovered = max(np.mean(row["judge_acc"]) for name, row in rows.items() if name != "real images")
    # Two inversion steps leave noise (judge near the 20% chance); a judge that cannot tell real images
    # of a teacher's classes apart, or a mislabelled real row, would not clear this.
    assert real > recovered + 0.2
    for name in ("bench_priors.json", "bench_priors.png", "bench_priors_grid.png"):
        assert (tmp_path / name).stat().st_size > 1000
