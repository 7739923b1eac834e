"""The baselines behind one switch: scratch and pixel recovery start afresh per teacher, the data oracle
trains on real images, ``--no-align`` skips BELL, and zero iterations is the random initialisation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_free_trainer import CONFIG

from freehub.data import SplitData
from freehub.evaluate import load_model
from freehub.free import Generator, InversionSettings, meta_train
from freehub.free.inversion import recover_from_scratch, recover_pixels
from freehub.task_model import TaskModel

SETTINGS = InversionSettings(steps=3, images_per_task=10, lr=0.05)


@pytest.fixture
def data(glyph_data: SplitData) -> SplitData:
    return glyph_data


@pytest.fixture
def teachers(small_teachers: list[TaskModel]) -> list[TaskModel]:
    return small_teachers


@pytest.mark.parametrize("mode", ["scratch-generator", "pixels"])
def test_baseline_recovery_of_a_teacher_does_not_depend_on_earlier_teachers(mode: str, teachers: list[TaskModel]) -> None:
    def recover(teacher: TaskModel) -> torch.Tensor:
        if mode == "pixels":
            return recover_pixels(teacher=teacher, settings=SETTINGS, image_size=32).images
        return recover_from_scratch(teacher=teacher, settings=SETTINGS, make_generator=lambda: Generator(latent_dim=16, width=8, image_size=32)).images

    torch.manual_seed(7)
    alone = recover(teachers[1])
    torch.manual_seed(7)
    recover(teachers[0])  # another teacher first: state from it must not reach the next one
    torch.manual_seed(7)
    after_another = recover(teachers[1])
    torch.testing.assert_close(alone, after_another, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["scratch-generator", "pixels"])
def test_baseline_runs_never_update_the_meta_generator(mode: str, teachers: list[TaskModel], tmp_path: Path) -> None:
    config = replace(CONFIG, recovery=mode, baseline_steps=2)
    meta_train(teachers=teachers, config=config, out_dir=tmp_path / "run", progress=False)
    untouched = meta_train(teachers=teachers, config=replace(config, iterations=0), out_dir=tmp_path / "zero", progress=False)
    trained = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["meta_generator"]["generator"]
    initial = torch.load(untouched.checkpoint_path, weights_only=True)["meta_generator"]["generator"]
    assert all(torch.equal(trained[k], initial[k]) for k in initial)


def test_free_runs_do_update_the_meta_generator(teachers: list[TaskModel], tmp_path: Path) -> None:
    meta_train(teachers=teachers, config=CONFIG, out_dir=tmp_path / "run", progress=False)
    untouched = meta_train(teachers=teachers, config=replace(CONFIG, iterations=0), out_dir=tmp_path / "zero", progress=False)
    trained = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["meta_generator"]["generator"]
    initial = torch.load(untouched.checkpoint_path, weights_only=True)["meta_generator"]["generator"]
    assert not all(torch.equal(trained[k], initial[k]) for k in initial)


def test_oracle_trains_on_real_images_without_teachers(data: SplitData, tmp_path: Path) -> None:
    real = data.train.select_classes(range(12))
    run = meta_train(teachers=[], config=replace(CONFIG, recovery="real"), out_dir=tmp_path / "oracle", real_data=real, progress=False)
    memory = torch.load(run.checkpoint_path, weights_only=True)["memory"]
    assert sorted(memory["keys"]) == sorted(f"real/{name}" for name in real.class_names)
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert all(r["replay_steps"] > 0 for r in records)


def test_no_align_skips_the_alignment_step(teachers: list[TaskModel], tmp_path: Path) -> None:
    run = meta_train(teachers=teachers, config=replace(CONFIG, align=False), out_dir=tmp_path / "run", progress=False)
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    assert not any("align_kl" in r for r in records)
    assert any(r.get("replay_steps", 0) > 0 for r in records)


def test_memory_filter_stores_only_what_the_teacher_labels_as_targeted(teachers: list[TaskModel], tmp_path: Path) -> None:
    config = replace(CONFIG, memory_filter=True, iterations=2)
    run = meta_train(teachers=teachers, config=config, out_dir=tmp_path / "run", progress=False)
    records = [json.loads(line) for line in run.metrics_path.read_text().splitlines()]
    stored = sum(r["memory_images"] for r in records[-1:])
    recovered = sum(config.images_per_task * len(r["teachers"]) for r in records)
    expected = sum(round(f * config.images_per_task) for r in records for f in r["stored_fraction"])
    assert stored == expected and stored < recovered


def test_zero_iterations_saves_the_random_initialisation_of_the_same_seed(teachers: list[TaskModel], tmp_path: Path) -> None:
    run = meta_train(teachers=teachers, config=replace(CONFIG, iterations=0), out_dir=tmp_path / "zero", progress=False)
    random_init = load_model(model="random", seed=CONFIG.seed, spec=run.learner.spec)
    for name, value in random_init.state_dict().items():
        torch.testing.assert_close(run.learner.state_dict()[name], value, rtol=0, atol=0)
