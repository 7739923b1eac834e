"""Prior distillation: the teacher ensemble's similarities on prior samples, taught to the learner."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_free_trainer import CONFIG

from freehub.errors import ConfigError
from freehub.free import meta_train
from freehub.free.learners import LearnerSpec, build_learner
from freehub.free.losses import similarity_distance
from freehub.free.prior_distill import PriorDistillSettings, distil_similarity, ensemble_similarity, sample_prior
from freehub.free.reference import TeacherEnsemble
from freehub.free.strokes import StrokeGenerator
from freehub.free.trainer import PRIOR_STAGE_ITERATION

PRIOR = replace(CONFIG, generator="strokes", prior_distill_steps=20, prior_distill_images=256, prior_distill_batch=32)


def _strokes() -> StrokeGenerator:
    return StrokeGenerator(latent_dim=16, image_size=32)


def test_prior_samples_are_reproducible_and_leave_the_global_rng_alone() -> None:
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    first = sample_prior(make_generator=_strokes, count=30, per_generator=8, seed=1)
    assert torch.equal(torch.random.get_rng_state(), before)
    assert first.shape == (30, 3, 32, 32)
    assert torch.equal(first, sample_prior(make_generator=_strokes, count=30, per_generator=8, seed=1))
    assert not torch.equal(first, sample_prior(make_generator=_strokes, count=30, per_generator=8, seed=2))


def test_the_ensemble_similarity_is_the_cosine_of_the_concatenated_teacher_features(small_teachers) -> None:
    images = sample_prior(make_generator=_strokes, count=20, per_generator=10, seed=0)
    similarity, used = ensemble_similarity(images=images, teachers=small_teachers, block=10, device=torch.device("cpu"))
    assert used == len(small_teachers) and similarity.shape == (2, 10, 10)
    features = torch.nn.functional.normalize(TeacherEnsemble(teachers=small_teachers, cache_mb=0).features(images), dim=1)
    for block in range(2):
        rows = features[10 * block : 10 * block + 10]
        torch.testing.assert_close(similarity[block], rows @ rows.t(), rtol=1e-4, atol=1e-5)


def test_distillation_brings_the_learner_closer_to_the_ensemble(small_teachers) -> None:
    images = sample_prior(make_generator=_strokes, count=128, per_generator=32, seed=0)
    similarity, _ = ensemble_similarity(images=images, teachers=small_teachers, block=64, device=torch.device("cpu"))
    torch.manual_seed(0)
    learner = build_learner(spec=LearnerSpec(backbone="conv4", algorithm="protonet", conv_width=8))

    def probe() -> float:
        with torch.no_grad():
            return float(similarity_distance(learner_features=learner.features(images[:64]), target=similarity[0]))

    before = probe()
    settings = PriorDistillSettings(steps=60, images=128, block=64, batch=32, lr=3e-3)
    first, last = distil_similarity(learner=learner, images=images, similarity=similarity, settings=settings, seed=0, device=torch.device("cpu"))
    assert last < first
    assert probe() < 0.6 * before


@pytest.mark.parametrize(
    ("changes", "knob"),
    [
        ({"batch": 300}, "batch"), ({"images": 100}, "images"), ({"lr": 0.0}, "lr"), ({"steps": -1}, "steps"),
        ({"affine": -0.1}, "affine"), ({"affine": 0.8}, "affine"),
    ],
)
def test_unworkable_prior_settings_are_refused(changes: dict, knob: str) -> None:
    with pytest.raises(ConfigError, match=knob):
        replace(PriorDistillSettings(), **changes).validate()


def test_a_run_with_prior_distillation_records_it_and_starts_from_a_distilled_learner(tmp_path: Path, small_teachers) -> None:
    config = replace(PRIOR, iterations=0)
    plain = meta_train(teachers=small_teachers, config=replace(config, prior_distill_steps=0), out_dir=tmp_path / "plain", progress=False)
    distilled = meta_train(teachers=small_teachers, config=config, out_dir=tmp_path / "prior", progress=False)
    record = json.loads((tmp_path / "prior" / "prior_distill.json").read_text())
    assert record["images"] == 256 and record["teachers"] == len(small_teachers)
    assert not (tmp_path / "plain" / "prior_distill.json").exists()
    images = torch.rand(4, 3, 32, 32)
    assert not torch.allclose(plain.learner.features(images), distilled.learner.features(images))
    # The stage teaches similarities by angle, so the learner it makes compares by angle too.
    assert (plain.learner.spec.metric, distilled.learner.spec.metric) == ("euclidean", "cosine")


def test_a_resumed_run_does_not_repeat_the_prior_stage(tmp_path: Path, small_teachers) -> None:
    meta_train(teachers=small_teachers, config=replace(PRIOR, iterations=0), out_dir=tmp_path, progress=False)
    (tmp_path / "prior_distill.json").unlink()
    resumed = meta_train(teachers=small_teachers, config=replace(PRIOR, iterations=1), out_dir=tmp_path, resume=True, progress=False)
    assert resumed.iterations == 1 and not (tmp_path / "prior_distill.json").exists()


def test_the_distilled_learner_is_the_first_candidate_of_the_selection(tmp_path: Path, small_teachers, glyph_data) -> None:
    result = meta_train(teachers=small_teachers, config=replace(PRIOR, iterations=0), out_dir=tmp_path, val_data=glyph_data.val, progress=False)
    assert result.best_iteration == PRIOR_STAGE_ITERATION and result.best_val is not None
    saved = json.loads((result.learner_dir / "learner.json").read_text())
    assert saved["iteration"] == PRIOR_STAGE_ITERATION and saved["val_acc"] == result.best_val.mean
    assert json.loads((tmp_path / "prior_distill.json").read_text())["val_acc"] == result.best_val.mean
