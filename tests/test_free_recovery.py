"""FIVE's claim on teachers held out of meta-training: 5 steps from the meta-generator recover better
tasks than 5 steps from a fresh generator, judged without the teacher's own opinion (which
saturates within a few steps for any generator, see DESIGN.md)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_free_teachers import fit_split, glyphs, judge_accuracy, train_judge, train_teacher

from freehub.free import Generator, InversionSettings, MetaGenerator, bn_statistics_distance, recover_task


SETTINGS = InversionSettings(steps=5, images_per_task=40)


@pytest.fixture(scope="module")
def outcome() -> dict[str, dict[str, float]]:
    data = glyphs()
    order = torch.randperm(data.train.num_classes, generator=torch.Generator().manual_seed(0)).tolist()
    meta_teachers = [train_teacher(task=data.train.select_classes(order[5 * i : 5 * i + 5]), seed=i) for i in range(8)]
    held_out = []
    for i in range(3):
        task = fit_split(data.test.select_classes(range(5 * i, 5 * i + 5)))[0]
        held_out.append((train_teacher(task=task, seed=50 + i), train_judge(task=task, seed=80 + i)))

    torch.manual_seed(0)
    fresh = Generator(width=32)
    meta = MetaGenerator(generator=copy.deepcopy(fresh), settings=SETTINGS)
    rng = np.random.default_rng(0)
    for _ in range(20):
        meta.recover(teachers=[meta_teachers[i] for i in rng.choice(len(meta_teachers), 4, replace=False)])

    scores: dict[str, dict[str, list[float]]] = {"meta": {"judge": [], "bn": []}, "fresh": {"judge": [], "bn": []}}
    for name, source in (("meta", meta.generator), ("fresh", fresh)):
        for repeat in range(2):
            for index, (teacher, judge) in enumerate(held_out):
                torch.manual_seed(100 * repeat + index)
                task, _ = recover_task(generator=copy.deepcopy(source), teacher=teacher, settings=SETTINGS)
                scores[name]["judge"].append(judge_accuracy(judge=judge, images=task.images, labels=task.labels))
                scores[name]["bn"].append(bn_statistics_distance(teacher=teacher, images=task.images))
    return {name: {k: float(np.mean(v)) for k, v in values.items()} for name, values in scores.items()}


@pytest.mark.slow
def test_meta_generator_recovers_tasks_an_independent_judge_recognises_better(outcome) -> None:
    assert outcome["meta"]["judge"] > outcome["fresh"]["judge"] + 0.03, outcome


@pytest.mark.slow
def test_meta_generator_matches_held_out_teachers_batchnorm_statistics_better(outcome) -> None:
    assert outcome["meta"]["bn"] < 0.85 * outcome["fresh"]["bn"], outcome
