"""`freehub evaluate`: shared episodes, paired differences, stored results and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from freehub.cli.app import app, main
from freehub.evaluate import (
    Evaluation,
    EvaluationRequest,
    evaluate_models,
    learner_sha256,
    load_evaluations,
    load_model,
    paired_difference,
    save_evaluations,
)
from freehub.free import LearnerSpec, build_learner, save_learner

runner = CliRunner()
SPEC = LearnerSpec(algorithm="protonet", image_size=16, conv_width=8)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Eight classes of 20 noisy pictures, each class a different flat colour."""
    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for index in range(8):
        (root / f"class{index}").mkdir(parents=True)
        base = np.array([30 * index, 255 - 30 * index, 120], dtype=np.float64)
        for shot in range(20):
            array = np.clip(base + rng.normal(0, 40, size=(16, 16, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(array).save(root / f"class{index}" / f"{shot}.png")
    return root


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    save_learner(learner=build_learner(spec=SPEC), directory=tmp_path / "run" / "learner")
    return tmp_path / "run"


def _data(folder: Path):
    from freehub.evaluate import load_split

    return load_split(spec=str(folder), split="train", size=16)


def test_same_seed_gives_the_same_numbers(folder: Path, run_dir: Path) -> None:
    request = EvaluationRequest(split="train", n_way=3, shots=(1,), q_queries=3, episodes=20, seed=4)
    models = {"run": load_model(model=str(run_dir))}
    first = evaluate_models(models=models, data=_data(folder), request=request)
    second = evaluate_models(models=models, data=_data(folder), request=request)
    assert first == second


def test_another_seed_draws_other_episodes(folder: Path, run_dir: Path) -> None:
    models = {"run": load_model(model=str(run_dir))}
    one = evaluate_models(models=models, data=_data(folder), request=EvaluationRequest(split="train", n_way=3, shots=(1,), q_queries=3, episodes=20, seed=4))
    two = evaluate_models(models=models, data=_data(folder), request=EvaluationRequest(split="train", n_way=3, shots=(1,), q_queries=3, episodes=20, seed=5))
    assert one[0].mean != two[0].mean or one[0].ci95 != two[0].ci95


def test_random_is_seeded_by_the_evaluation_seed_without_touching_the_global_rng() -> None:
    torch.manual_seed(0)
    before = torch.get_rng_state()
    a, b, c = (load_model(model="random", seed=s, spec=SPEC) for s in (1, 1, 2))
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a.backbone.blocks[0].weight, b.backbone.blocks[0].weight)
    assert not torch.equal(a.backbone.blocks[0].weight, c.backbone.blocks[0].weight)


def test_paired_difference_is_the_mean_of_per_episode_differences() -> None:
    mean, ci = paired_difference([0.6, 0.8, 1.0, 0.4], [0.4, 0.8, 0.6, 0.4])
    assert mean == pytest.approx(0.15)
    diffs = np.array([0.2, 0.0, 0.4, 0.0])
    assert ci == pytest.approx(1.96 * diffs.std() / 2)


def test_baseline_adds_paired_differences_to_the_other_models_only(folder: Path, run_dir: Path) -> None:
    request = EvaluationRequest(split="train", n_way=3, shots=(1, 2), q_queries=3, episodes=10, seed=0)
    models = {"run": load_model(model=str(run_dir)), "random": load_model(model="random", spec=SPEC)}
    results = evaluate_models(models=models, data=_data(folder), request=request, baseline="random")
    by_model = {(r.model, r.k_shot): r for r in results}
    assert by_model[("random", 1)].diff_mean is None
    run, rand = by_model[("run", 2)], by_model[("random", 2)]
    assert run.baseline == "random"
    assert run.diff_mean == pytest.approx(run.mean - rand.mean)


def test_saved_evaluations_load_back_and_replace_the_same_protocol(tmp_path: Path) -> None:
    first = Evaluation(model="run", data="glyphs", split="test", n_way=5, k_shot=1, q_queries=15, episodes=600, seed=0,
                       mean=0.5, ci95=0.01, method="protonet", bn_mode="batch")
    other = Evaluation(**{**first.__dict__, "k_shot": 5, "mean": 0.7})
    save_evaluations(run_dir=tmp_path, evaluations=[first, other])
    newer = Evaluation(**{**first.__dict__, "mean": 0.55})
    save_evaluations(run_dir=tmp_path, evaluations=[newer])
    assert sorted((e.k_shot, e.mean) for e in load_evaluations(run_dir=tmp_path)) == [(1, 0.55), (5, 0.7)]


def test_saved_evaluations_of_an_earlier_learner_are_dropped_when_the_learner_changes(tmp_path: Path) -> None:
    save_learner(learner=build_learner(spec=LearnerSpec(conv_width=8, algorithm="protonet")), directory=tmp_path / "learner")
    first = Evaluation(model="run", data="glyphs", split="test", n_way=5, k_shot=1, q_queries=15, episodes=600, seed=0,
                       mean=0.5, ci95=0.01, method="protonet", bn_mode="batch")
    save_evaluations(run_dir=tmp_path, evaluations=[first, Evaluation(**{**first.__dict__, "k_shot": 5, "mean": 0.7})])
    torch.manual_seed(1)
    save_learner(learner=build_learner(spec=LearnerSpec(conv_width=8, algorithm="protonet")), directory=tmp_path / "learner")
    save_evaluations(run_dir=tmp_path, evaluations=[Evaluation(**{**first.__dict__, "mean": 0.55})])
    assert [(e.k_shot, e.mean) for e in load_evaluations(run_dir=tmp_path)] == [(1, 0.55)]
    assert json.loads((tmp_path / "evaluations.json").read_text())["learner_sha256"] == learner_sha256(run_dir=tmp_path)


def test_cli_prints_json_and_saves_into_the_run(folder: Path, run_dir: Path) -> None:
    done = runner.invoke(app, [
        "evaluate", "--model", str(run_dir), "--baseline", "random", "--spec", str(run_dir), "--data", str(folder),
        "--split", "train", "--way", "3", "--shot", "1", "--queries", "3", "--episodes", "8", "--save", "--json",
    ])
    assert done.exit_code == 0, done.output
    printed = json.loads(done.stdout)
    assert {r["model"] for r in printed} == {str(run_dir), "random"}
    stored = {e.model: e for e in load_evaluations(run_dir=run_dir)}
    assert set(stored) == {str(run_dir), "random"} and stored[str(run_dir)].diff_mean is not None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "no-such-run-dir"], "no such model"),
        (["--model", "random", "--data", "no-such-folder"], "neither 'glyphs'"),
        (["--model", "random", "--way", "9", "--split", "train"], "classes"),
        (["--model", "random", "--shot", "0"], "--shot must be at least 1"),
    ],
    ids=["missing-run", "unknown-data", "too-many-ways", "zero-shot"],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str, folder: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    data = [] if "--data" in args else ["--data", str(folder)]
    with pytest.raises(SystemExit) as stop:
        main(["evaluate", *args, *data, "--episodes", "4"])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err


def test_split_all_takes_every_class_of_a_folder(folder: Path) -> None:
    from freehub.evaluate import load_split

    assert load_split(spec=str(folder), split="all", size=16).num_classes == 8
