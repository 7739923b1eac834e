"""The meta-training loop end to end on real glyph teachers: run files, resume, refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from freehub.data import SplitData
from freehub.errors import ConfigError, TrainingError
from freehub.free import MetaTrainConfig, meta_train
from freehub.free.learners import Conv4
from freehub.task_model import ModelSpec, TaskModel


CONFIG = MetaTrainConfig(
    seed=3,
    device="cpu",
    iterations=4,
    warmup_iterations=1,
    teachers_per_step=2,
    generator_width=16,
    latent_dim=32,
    images_per_task=20,
    inversion_steps=2,
    conv_width=8,
    k_shot=1,
    q_queries=2,
    episodes_per_step=1,
    inner_steps=1,
    patience=1,
    max_replay_steps=2,
    val_every=2,
    val_episodes=3,
    val_q_queries=3,
    val_steps=2,
    grid_every=2,
)


@pytest.fixture
def data(glyph_data: SplitData) -> SplitData:
    return glyph_data


@pytest.fixture
def teachers(small_teachers: list[TaskModel]) -> list[TaskModel]:
    # Classes 3 and 4 belong to two teachers; the third teacher has more classes than n_way.
    return small_teachers


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _timeless(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in ("seconds", "recovery_seconds", "recovery_wall_seconds")} for r in records]


def test_a_run_writes_config_metrics_grids_checkpoint_and_the_selected_learner(tmp_path: Path, teachers, data) -> None:
    result = meta_train(teachers=teachers, config=CONFIG, out_dir=tmp_path, val_data=data.val, progress=False)
    records = _records(tmp_path)
    assert [r["iteration"] for r in records] == [0, 1, 2, 3]
    assert records[0]["phase"] == "warmup" and "episode_acc" not in records[0]
    trained = records[1]
    for key in ("teacher_acc", "recovery_seconds", "align_kl", "replay_steps", "episode_acc", "val_acc", "memory_images"):
        assert key in trained
    assert len(trained["recovery_seconds"]) == CONFIG.teachers_per_step
    # 15 distinct glyph classes at most: classes shared by two teachers are one memory class.
    assert max(r["memory_classes"] for r in records) <= 15
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == 3
    assert (tmp_path / "checkpoint.pt").is_file() and list((tmp_path / "grids").glob("*.png"))
    assert result.best_iteration in (1, 3) and result.best_val is not None
    assert result.best_val.mean == max(r["val_acc"] for r in records if "val_acc" in r)
    assert (result.learner_dir / "learner.safetensors").is_file() and result.iterations == 4


def test_resuming_a_stopped_run_ends_where_an_uninterrupted_run_ends(tmp_path: Path, teachers, data) -> None:
    whole = meta_train(teachers=teachers, config=CONFIG, out_dir=tmp_path / "whole", progress=False)
    meta_train(teachers=teachers, config=replace(CONFIG, iterations=2), out_dir=tmp_path / "split", progress=False)
    # A kill after logging iteration 2 but before its checkpoint leaves a line the resumed run replaces.
    with (tmp_path / "split" / "metrics.jsonl").open("a") as handle:
        handle.write(json.dumps({"iteration": 2, "phase": "lost"}) + "\n")
    resumed = meta_train(teachers=teachers, config=CONFIG, out_dir=tmp_path / "split", resume=True, progress=False)
    for name, value in whole.learner.state_dict().items():
        torch.testing.assert_close(resumed.learner.state_dict()[name], value, rtol=1e-5, atol=1e-6)
    assert _timeless(_records(tmp_path / "split")) == _timeless(_records(tmp_path / "whole"))


def test_the_saved_learner_is_the_best_iteration_one_and_best_val_survives_a_resume(tmp_path: Path, teachers, data) -> None:
    config = replace(CONFIG, val_every=1)
    first = meta_train(teachers=teachers, config=replace(config, iterations=3), out_dir=tmp_path, val_data=data.val, progress=False)
    saved = json.loads((first.learner_dir / "learner.json").read_text())
    assert saved["iteration"] == first.best_iteration and saved["val_acc"] == first.best_val.mean
    assert "val_rescored" in saved
    resumed = meta_train(teachers=teachers, config=replace(config, iterations=4), out_dir=tmp_path, val_data=data.val, resume=True, progress=False)
    scores = [r["val_acc"] for r in _records(tmp_path) if "val_acc" in r]
    assert resumed.best_val.mean == max(scores) >= first.best_val.mean
    assert json.loads((resumed.learner_dir / "learner.json").read_text())["iteration"] == resumed.best_iteration


def test_an_existing_run_is_not_overwritten_and_resume_needs_the_same_config(tmp_path: Path, teachers) -> None:
    config = replace(CONFIG, iterations=1)
    meta_train(teachers=teachers, config=config, out_dir=tmp_path, progress=False)
    with pytest.raises(TrainingError):
        meta_train(teachers=teachers, config=config, out_dir=tmp_path, progress=False)
    with pytest.raises(TrainingError, match="adv_weight"):
        meta_train(teachers=teachers, config=replace(config, adv_weight=0.5), out_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(TrainingError, match="teachers"):
        meta_train(teachers=teachers[::-1], config=config, out_dir=tmp_path, resume=True, progress=False)


def test_a_one_channel_teacher_fills_the_memory_with_grey_images(tmp_path: Path) -> None:
    # The colour a luminance-only teacher cannot see must not reach the learner.
    torch.manual_seed(0)
    network = nn.Sequential(Conv4(width=8, in_channels=1), nn.Linear(32, 5)).eval()
    spec = ModelSpec(library="torch", architecture="conv4-grey", label_names=tuple("abcde"), input_size=(1, 32, 32), mean=(0.5,), std=(0.5,))
    config = replace(CONFIG, iterations=1, teachers_per_step=1)
    meta_train(teachers=[TaskModel(network=network, spec=spec)], config=config, out_dir=tmp_path, progress=False)
    memory = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["memory"]
    images = torch.cat(memory["images"])
    assert len(images) == config.images_per_task
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 1], images[:, 2])


def test_relational_distillation_is_logged_and_changes_the_learner(teachers: list[TaskModel], tmp_path: Path) -> None:
    plain = meta_train(teachers=teachers, config=CONFIG, out_dir=tmp_path / "plain", progress=False)
    related = meta_train(teachers=teachers, config=replace(CONFIG, relation_weight=10.0), out_dir=tmp_path / "related", progress=False)
    relations = [r["relation"] for r in _records(tmp_path / "related") if "relation" in r]
    assert relations and all(value > 0 for value in relations)
    assert not any("relation" in r for r in _records(tmp_path / "plain"))
    images = torch.rand(4, 3, 32, 32)
    assert not torch.allclose(plain.learner.features(images), related.learner.features(images))


def test_config_round_trips_and_rejects_bad_knobs() -> None:
    paper = MetaTrainConfig.paper()
    assert paper.generator_width == 128 and paper.teachers_per_step == 4
    assert MetaTrainConfig.from_dict(json.loads(json.dumps(paper.to_dict()))) == paper
    with pytest.raises(ConfigError):
        replace(CONFIG, algorithm="anil").validate()
    with pytest.raises(ConfigError):
        replace(CONFIG, image_size=30).validate()
    with pytest.raises(ConfigError):
        MetaTrainConfig.from_dict({"not_a_knob": 1})
    with pytest.raises(ConfigError):
        replace(CONFIG, replay_pose=90.0).validate()
    with pytest.raises(ConfigError):
        replace(CONFIG, diversity_weight=-1.0).validate()
    with pytest.raises(ConfigError, match="inversion_latent_pool"):
        replace(CONFIG, inversion_latent_pool=0).validate()


def test_the_latent_pool_reaches_every_generator_recovery() -> None:
    for recovery in ("meta-generator", "scratch-generator"):
        assert replace(CONFIG, recovery=recovery, inversion_latent_pool=8).inversion_settings().latent_pool == 8
