"""FREE's claim in small: a learner meta-trained from teachers alone beats random initialisation on real unseen classes.

Slow (about two minutes on two CPU cores): eight small Conv4 teachers over disjoint meta-train
glyph classes, a short protonet run, then 5-way 1-shot episodes of meta-VALIDATION classes
(never seen by a teacher) for the trained learner and for a random initialisation of the same
spec, on the same episodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_free_teachers import glyphs, train_teacher

from freehub.free import MetaTrainConfig, build_learner, evaluate_fewshot, meta_train


TEACHERS = 8
EPISODES = 100


@pytest.mark.slow
def test_meta_trained_learner_beats_random_initialisation_on_unseen_real_classes(tmp_path: Path) -> None:
    data = glyphs()
    teachers = [train_teacher(task=data.train.select_classes(range(5 * i, 5 * i + 5)), seed=i) for i in range(TEACHERS)]
    # No validation data: the last learner is scored, so nothing was selected on these classes.
    config = MetaTrainConfig(seed=0, device="cpu", iterations=12, warmup_iterations=2, teachers_per_step=2)
    run = meta_train(teachers=teachers, config=config, out_dir=tmp_path / "run", progress=False)

    torch.manual_seed(config.seed)
    random_init = build_learner(spec=run.learner.spec)
    scores = {
        name: evaluate_fewshot(learner=learner, data=data.val, n_way=5, k_shot=1, episodes=EPISODES, seed=1)
        for name, learner in (("free", run.learner), ("random", random_init))
    }
    assert scores["free"].mean - scores["free"].ci95 > scores["random"].mean + scores["random"].ci95, scores
