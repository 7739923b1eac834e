"""meta_train's other paths: resuming without or from a broken checkpoint, and the knobs that change
what is trained (a MAML learner, a Reptile meta-generator, the BatchNorm prior)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_free_trainer import CONFIG, _records, _timeless

from freehub.errors import TrainingError
from freehub.free import meta_train

# One warm-up iteration (the meta-generator alone), then one where the learner trains too.
TWO = replace(CONFIG, iterations=2)


@pytest.fixture(scope="module")
def baseline(small_teachers, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("baseline")
    meta_train(teachers=small_teachers, config=TWO, out_dir=run, progress=False)
    return run


def _checkpoint(run: Path) -> dict:
    return torch.load(run / "checkpoint.pt", weights_only=True)


def _differs(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return any(not torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-5) for name in a)


def test_resume_without_a_checkpoint_starts_the_run_afresh(small_teachers, baseline: Path, tmp_path: Path) -> None:
    resumed = meta_train(teachers=small_teachers, config=TWO, out_dir=tmp_path, resume=True, progress=False)
    assert resumed.iterations == 2
    assert _timeless(_records(tmp_path)) == _timeless(_records(baseline))
    assert not _differs(resumed.learner.state_dict(), _checkpoint(baseline)["learner"])


def _broken(path: Path, how: str) -> None:
    if how == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    elif how == "not a checkpoint":
        torch.save([1, 2, 3], path)
    else:
        checkpoint = torch.load(path, weights_only=True)
        torch.save({**checkpoint, "format": 0}, path)


@pytest.mark.parametrize("how", ["truncated", "not a checkpoint", "another format"])
def test_resume_from_a_broken_checkpoint_is_a_training_error_that_keeps_the_run(
    small_teachers, baseline: Path, tmp_path: Path, how: str
) -> None:
    run = tmp_path / "run"
    shutil.copytree(baseline, run)
    _broken(run / "checkpoint.pt", how)
    kept = {name: (run / name).read_bytes() for name in ("metrics.jsonl", "checkpoint.pt", "config.json")}
    with pytest.raises(TrainingError, match="checkpoint"):
        meta_train(teachers=small_teachers, config=replace(TWO, iterations=3), out_dir=run, resume=True, progress=False)
    assert {name: (run / name).read_bytes() for name in kept} == kept


def test_a_maml_learner_meta_trains_with_its_head(small_teachers, tmp_path: Path) -> None:
    config = replace(TWO, algorithm="maml")
    untrained = meta_train(teachers=small_teachers, config=replace(config, iterations=0), out_dir=tmp_path / "init", progress=False)
    trained = meta_train(teachers=small_teachers, config=config, out_dir=tmp_path / "run", progress=False)
    assert trained.learner.spec.algorithm == "maml" and trained.learner.head is not None
    assert _records(tmp_path / "run")[1]["episode_acc"] is not None
    assert _differs(untrained.learner.state_dict(), trained.learner.state_dict())
    assert json.loads((tmp_path / "run" / "learner" / "learner.json").read_text())["spec"]["algorithm"] == "maml"


@pytest.mark.parametrize("knob", [{"generator_meta_rule": "reptile"}, {"bn_prior_weight": 1.0}])
def test_a_meta_generator_knob_changes_the_trained_generator(small_teachers, baseline: Path, tmp_path: Path, knob) -> None:
    assert all(getattr(TWO, name) != value for name, value in knob.items())
    meta_train(teachers=small_teachers, config=replace(TWO, **knob), out_dir=tmp_path, progress=False)
    assert json.loads((tmp_path / "config.json").read_text()).items() >= knob.items()
    assert _differs(_checkpoint(tmp_path)["meta_generator"]["generator"], _checkpoint(baseline)["meta_generator"]["generator"])
