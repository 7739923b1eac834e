"""Teachers at scale: fair draws across models, C-way teachers, lazy loading through a bounded cache."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_free_teachers import fit_split, glyphs, train_teacher
from torch import nn

from freehub.data import SplitData
from freehub.errors import ConfigError
from freehub.free import MetaTrainConfig, meta_train
from freehub.free.teachers import TeacherCache, TeacherInfo, TeacherPool, draw_meta_batch, model_bytes
from freehub.task_model import ModelSpec, TaskModel

CPU = torch.device("cpu")
CONFIG = MetaTrainConfig(
    seed=5, device="cpu", iterations=3, warmup_iterations=0, teachers_per_step=2, generator_width=16, latent_dim=32,
    images_per_task=20, inversion_steps=2, conv_width=8, k_shot=1, q_queries=2, episodes_per_step=1, inner_steps=1,
    patience=1, max_replay_steps=2, grid_every=10, min_teacher_acc=0.0, memory_filter=False,
)


def _linear_teacher(*, classes: int, name: str = "linear", seed: int = 0) -> TaskModel:
    torch.manual_seed(seed)
    network = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 4, classes))
    spec = ModelSpec(library="torch", architecture=name, label_names=tuple(f"{name} {i}" for i in range(classes)),
                     input_size=(3, 4, 4), mean=(0.5,) * 3, std=(0.5,) * 3)
    return TaskModel(network=network, spec=spec).eval()


def _counting_pool(models: list[TaskModel], *, cache_bytes: int | None = None) -> tuple[TeacherPool, list[int]]:
    loads: list[int] = []

    def load(index: int) -> TaskModel:
        loads.append(index)
        return models[index]

    cache = None if cache_bytes is None else TeacherCache(max_bytes=cache_bytes)
    return TeacherPool(infos=[TeacherInfo.of(m) for m in models], load=load, cache=cache), loads


@pytest.fixture(scope="module")
def data() -> SplitData:
    return glyphs()


@pytest.fixture(scope="module")
def small_teachers(data: SplitData) -> list[TaskModel]:
    # A 2-class and a 3-class teacher: together 5 classes, one 5-way episode's worth.
    return [
        train_teacher(task=fit_split(data.train.select_classes(list(classes)))[0], seed=i, steps=25, width=8)
        for i, classes in enumerate([range(0, 2), range(2, 5)])
    ]


def test_a_thousand_class_model_is_drawn_no_more_often_than_any_other_under_uniform_sampling() -> None:
    models = [_linear_teacher(classes=1000, name="imagenet"), *(_linear_teacher(classes=c, name=f"small{c}") for c in (2, 3, 5, 7))]
    pool, _ = _counting_pool(models)
    draws: Counter[int] = Counter()
    for iteration in range(2000):
        indices, views = draw_meta_batch(pool=pool, count=1, n_way=5, rng=random.Random(f"0/{iteration}"), device=CPU)
        draws.update(indices)
        assert views[0].num_classes == min(5, models[indices[0]].num_classes)

    assert draws[0] <= max(draws[i] for i in range(1, 5))
    assert min(draws.values()) > 2000 / 5 * 0.85


def test_weighting_by_slices_draws_a_many_class_model_by_its_number_of_slices() -> None:
    models = [_linear_teacher(classes=50, name="many"), _linear_teacher(classes=5, name="five")]
    pool, _ = _counting_pool(models)
    draws = Counter(
        draw_meta_batch(pool=pool, count=1, n_way=5, rng=random.Random(i), device=CPU, weighting="slices")[0][0] for i in range(1000)
    )

    assert 0.85 < draws[0] / 1000 / (10 / 11) < 1.1


def test_an_unknown_weighting_is_refused() -> None:
    pool, _ = _counting_pool([_linear_teacher(classes=2)])

    with pytest.raises(ConfigError, match="weighting"):
        draw_meta_batch(pool=pool, count=1, n_way=5, rng=random.Random(0), device=CPU, weighting="by-vibes")


def test_a_pool_loads_nothing_until_a_teacher_is_drawn_and_then_only_that_one() -> None:
    pool, loads = _counting_pool([_linear_teacher(classes=c) for c in (2, 3, 4)], cache_bytes=2**20)
    assert loads == [] and pool.infos[2].num_classes == 4

    pool.model(1, device=CPU)
    pool.model(1, device=CPU)

    assert loads == [1] and pool.cache is not None and pool.cache.hits == 1


def test_the_cache_keeps_no_more_bytes_than_its_bound_evicting_the_least_recently_used() -> None:
    models = [_linear_teacher(classes=10, seed=i) for i in range(4)]
    size = model_bytes(models[0])
    pool, loads = _counting_pool(models, cache_bytes=2 * size)
    for index in (0, 1, 0, 2, 3, 0):
        pool.model(index, device=CPU)
        assert pool.cache is not None and pool.cache.bytes <= 2 * size

    # 0 was used just before 2 came in, so 1 went first; 3 then pushed out 0, which came back.
    assert loads == [0, 1, 2, 3, 0]


def test_a_model_larger_than_the_bound_is_still_served_and_kept_alone() -> None:
    pool, loads = _counting_pool([_linear_teacher(classes=10, seed=i) for i in range(2)], cache_bytes=1)
    pool.model(0, device=CPU)
    pool.model(1, device=CPU)

    assert loads == [0, 1] and pool.cache is not None and len(pool.cache) == 1


def test_loading_a_teacher_leaves_the_global_random_generators_where_they_were() -> None:
    pool = TeacherPool(infos=[TeacherInfo(architecture="fresh", label_names=("a", "b"))], load=lambda _: _linear_teacher(classes=2, seed=9))
    torch.manual_seed(0)
    random.seed(0)
    expected = (torch.rand(3), random.random())
    torch.manual_seed(0)
    random.seed(0)

    pool.model(0, device=CPU)

    assert torch.equal(torch.rand(3), expected[0]) and random.random() == expected[1]


def test_two_and_three_class_teachers_fill_memory_align_and_replay_mixed_episodes(tmp_path: Path, small_teachers, data) -> None:
    meta_train(teachers=small_teachers, config=CONFIG, out_dir=tmp_path, progress=False)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]

    assert all(sorted(r["taught"]) == [0, 1] for r in records)
    assert all("align_kl" in r for r in records)
    # Five classes in memory, two from one teacher and three from the other: every 5-way episode mixes them.
    assert records[0]["memory_classes"] == 5
    assert all(r["replay_steps"] >= 1 for r in records)
    memory = torch.load(tmp_path / "checkpoint.pt", weights_only=True)["memory"]
    assert {group: len(keys) for group, keys in memory["groups"].items()} == {"teacher0": 2, "teacher1": 3}


def test_a_run_on_a_pool_resumes_to_the_parameters_of_an_uninterrupted_run(tmp_path: Path, small_teachers) -> None:
    config = replace(CONFIG, iterations=2)
    whole, _ = _counting_pool(small_teachers, cache_bytes=1)
    meta_train(teachers=whole, config=config, out_dir=tmp_path / "whole", progress=False)
    first, _ = _counting_pool(small_teachers, cache_bytes=1)
    meta_train(teachers=first, config=replace(config, iterations=1), out_dir=tmp_path / "split", progress=False)
    second, _ = _counting_pool(small_teachers, cache_bytes=2**30)
    meta_train(teachers=second, config=config, out_dir=tmp_path / "split", resume=True, progress=False)

    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=True)["learner"]
    b = torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["learner"]
    assert all(torch.equal(a[key], b[key]) for key in a)
