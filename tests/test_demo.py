"""`freehub demo`: the real commands in order, the table and the card, and a rerun that truly reuses and resumes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from freehub.cli.app import main
from freehub.hub import LocalHub
from freehub.pipeline import DEMO_ORG, DemoSettings, run_demo
from freehub.zoo import HUB_LIKE_TEACHERS

TINY = {
    "generator_width": 16, "images_per_task": 10, "teachers_per_step": 2, "warmup_iterations": 1, "max_replay_steps": 2,
    "episodes_per_step": 1, "val_every": 1, "val_episodes": 4, "grid_every": 1, "q_queries": 2, "conv_width": 8,
    "prior_distill_images": 256, "prior_distill_batch": 32,
}


def _shas(hub: Path) -> dict[str, str]:
    local = LocalHub(root=hub)
    return {info.repo_id: info.sha for info in local.search(author=DEMO_ORG, tags=("few-shot",))}


@pytest.mark.slow
def test_demo_runs_the_commands_then_reuses_and_resumes(tmp_path: Path, capsys) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "demo"
    settings = DemoSettings(teachers=5, iterations=2, eval_episodes=5, shots=(1,), config=config, zoo_steps=10, prior_distill_steps=5)

    first = run_demo(out=out, settings=settings)
    assert [c.split()[1] for c in first.commands] == ["zoo", "collect", "meta-train", "meta-train", "evaluate", "push"]
    assert {e.model for e in first.evaluations} == {"FREE (this run)", "data oracle (teachers' classes, real images)", "pixel prototypes (no training)", "teacher ensemble (no training)", "random"}
    card = ModelCard.load(first.card)
    # Every zoo teacher is a source: the five asked for and the Hub-like ones (2, 2, 3 classes and an alphabet).
    assert card.data.library_name == "freehub" and len(card.data.base_model) == 5 + HUB_LIKE_TEACHERS
    assert json.loads((out / "demo.json").read_text())["card"] == str(first.card)
    # The FREE run distilled the teachers on pen strokes first; the oracle, trained on real images, did not.
    assert json.loads((out / "free" / "config.json").read_text())["generator"] == "strokes"
    assert json.loads((out / "free" / "prior_distill.json").read_text())["teachers"] == 5 + HUB_LIKE_TEACHERS
    assert not (out / "oracle" / "prior_distill.json").exists()
    # The oracle is the same learner, metric included.
    metrics_of = {run: json.loads((out / run / "config.json").read_text())["resolved_learner_metric"] for run in ("free", "oracle")}
    assert metrics_of == {"free": "cosine", "oracle": "cosine"}
    shas = _shas(out / "hub")
    metrics = {run: (out / run / "metrics.jsonl").read_bytes() for run in ("free", "oracle")}
    capsys.readouterr()

    second = run_demo(out=out, settings=DemoSettings(**{**settings.__dict__, "iterations": 3}))
    printed = capsys.readouterr().out
    assert second.skipped and second.skipped[0].startswith("freehub zoo build")
    assert _shas(out / "hub") == shas
    assert f"collected 0, already present {5 + HUB_LIKE_TEACHERS}" in printed
    for run, before in metrics.items():
        after = (out / run / "metrics.jsonl").read_bytes()
        assert after.startswith(before) and after != before, run
        assert [json.loads(line)["iteration"] for line in after.decode().splitlines()] == [0, 1, 2]


@pytest.mark.slow
def test_the_demo_command_reuses_a_complete_zoo_and_prints_the_comparison(glyph_zoo: Path, tmp_path: Path, capsys) -> None:
    # The session's zoo in small (without the Hub-like teachers), under the demo's organisation, stands for
    # a zoo an earlier demo built.
    shutil.copytree(glyph_zoo / "e2e", tmp_path / "demo" / "hub" / DEMO_ORG)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    with pytest.raises(SystemExit) as stop:
        main(["demo", "--out", str(tmp_path / "demo"), "--teachers", "5", "--iterations", "1", "--episodes", "2",
              "--config", str(config), "--seed", "3", "--no-hub-like", "--prior-distill-steps", "5", "--json"])
    assert stop.value.code in (None, 0)
    printed = capsys.readouterr().out
    result = json.loads(printed[printed.index("{\n"):])
    assert result["skipped"][0].startswith("freehub zoo build") and len(result["commands"]) == 5
    assert all("--seed 3" in command for command in result["commands"] if " meta-train " in command)
    assert {e["model"] for e in result["evaluations"]} == {"FREE (this run)", "data oracle (teachers' classes, real images)", "pixel prototypes (no training)", "teacher ensemble (no training)", "random"}
    assert {e["k_shot"] for e in result["evaluations"]} == {1, 5} and {e["episodes"] for e in result["evaluations"]} == {2}
    assert Path(result["card"]).is_file()
