"""`freehub demo`: every stage on the embedded default, and a rerun that reuses and resumes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from freehub.pipeline import DemoSettings, run_demo


@pytest.mark.slow
def test_demo_runs_every_stage_then_reuses_and_resumes(tmp_path: Path, caplog) -> None:
    settings = DemoSettings(teachers=5, iterations=2, eval_episodes=5, shots=(1,))
    first = run_demo(out=tmp_path, settings=settings, progress=False)
    assert first.collected == 5
    assert [(row.learner, row.k_shot) for row in first.rows] == [("FREE (this run)", 1), ("random init", 1)]
    assert all(0.0 <= row.mean <= 1.0 and row.episodes == 5 for row in first.rows)
    assert json.loads((tmp_path / "demo.json").read_text())["rows"][0]["learner"] == "FREE (this run)"

    with caplog.at_level(logging.INFO, logger="freehub.pipeline"):
        run_demo(out=tmp_path, settings=DemoSettings(teachers=5, iterations=3, eval_episodes=5, shots=(1,)), progress=False)
    assert "reusing the 5 teachers" in caplog.text
    iterations = [json.loads(line)["iteration"] for line in (first.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert iterations == [0, 1, 2]
