"""The side-by-side benchmark's quick mode runs every method on a small zoo and writes its table and plots."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.mark.slow
def test_quick_benchmark_compares_every_method_and_the_oracle_beats_random(load_bench, tmp_path: Path) -> None:
    bench_compare = load_bench("bench_compare")
    result = bench_compare.main(["--quick", "--out", str(tmp_path), "--threads", "1"])
    rows = {row["method"]: row for row in result["rows"]}
    assert set(rows) == {m.name for m in bench_compare.methods()}
    # Seconds of training on real images of the teachers' classes beat no training by tens of points
    # (quick mode measured 61 vs 36); a broken oracle or evaluation would not.
    assert rows["oracle-teachers"]["one_shot"] > rows["random"]["one_shot"] + 0.08
    # Each learner's gap is measured from the random learner of its own metric.
    assert (rows["prior-distill"]["metric"], rows["prior-distill-euclidean"]["metric"], rows["random-cosine"]["metric"]) == ("cosine", "euclidean", "cosine")
    assert rows["random-cosine"]["one_shot_gap_closed"] == pytest.approx(0.0)
    assert rows["free"]["teacher_acc"] is not None and rows["pixels"]["recovery_seconds_per_teacher"] is not None
    table = (tmp_path / "compare.md").read_text()
    assert all(f"| {name} |" in table for name in rows)
    for picture in ("val_curves.png", "recovered.png"):
        assert (tmp_path / picture).stat().st_size > 1000
