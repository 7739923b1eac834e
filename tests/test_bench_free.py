"""The recovery-speed benchmark's quick mode measures both generators at every step count and
matches them by the judge; its matching picks the first fresh-generator step count that is as good."""

from __future__ import annotations

import math
from pathlib import Path

import pytest


def _row(generator: str, steps: int, judge: float, seconds: float, bn: float = math.nan) -> dict:
    return {"generator": generator, "steps": steps, "judge_acc": judge, "bn_distance": bn, "teacher_acc": 0.5, "seconds_per_teacher": seconds}


def test_matching_finds_the_first_fresh_step_count_at_the_meta_generators_quality(load_bench) -> None:
    bench_free = load_bench("bench_free")
    rows = [
        _row("meta", 5, 0.40, 1.0, bn=7.0),
        _row("fresh", 5, 0.30, 1.0, bn=10.0), _row("fresh", 20, 0.39, 4.0, bn=8.0), _row("fresh", 100, 0.41, 20.0, bn=6.5),
    ]
    assert bench_free._match(rows, reference_steps=5) == {"judge_match_steps": 100, "judge_seconds_ratio": 20.0, "bn_match_steps": 100}
    never = [_row("meta", 5, 0.90, 1.0), _row("fresh", 5, 0.30, 1.0)]
    assert bench_free._match(never, reference_steps=5)["judge_seconds_ratio"] is None


@pytest.mark.slow
def test_quick_benchmark_with_a_latent_pool_measures_both_generators_at_every_step_count(load_bench, tmp_path: Path) -> None:
    bench_free = load_bench("bench_free")
    result = bench_free.main(["--quick", "--latent-pool", "4", "--out", str(tmp_path), "--threads", "1"])
    assert result["args"]["latent_pool"] == "4"
    assert sorted((r["generator"], r["steps"]) for r in result["rows"]) == sorted((g, k) for g in ("meta", "fresh") for k in (1, 5, 20))
    assert all(0 <= r["judge_acc"] <= 1 and r["seconds_per_teacher"] > 0 for r in result["rows"])
    # The judge reads real images of the held-out teachers' classes far above the 20% chance.
    assert result["judge_real_acc"] > 0.5
    for name in ("bench_free.json", "bench_free.png"):
        assert (tmp_path / name).stat().st_size > 1000
