"""Meta-learner model cards: valid Hub metadata, results only from evaluations, every source listed, safe text."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from run_factory import EVALUATIONS, SOURCES, evaluation

from freehub.card import evaluation_dataset, render_learner_card
from freehub.errors import ConfigError
from freehub.free.config import MetaTrainConfig
from freehub.free.learners import LearnerSpec
from freehub.run_files import parse_evaluation

SPEC = LearnerSpec(backbone="conv4", algorithm="protonet", conv_width=8)
MINE = tuple(parse_evaluation({**entry, "model": "runs/free"}) for entry in EVALUATIONS if entry["model"] != "random")


def _card(**overrides: object) -> str:
    arguments = dict(
        repo_id="glyph-lab/free-conv4",
        hub_location="https://huggingface.co",
        license="apache-2.0",
        license_derived=True,
        spec=SPEC,
        sources=SOURCES,
        evaluations=MINE,
        run_config=MetaTrainConfig().to_dict(),
        selected_iteration=3,
        selected_on_val=True,
        images={"recovered": "images/recovered.png", "meta_val": "images/meta_val.png"},
    )
    arguments.update(overrides)
    return render_learner_card(**arguments)


def test_metadata_has_the_hub_fields_and_every_source_as_base_model() -> None:
    data = ModelCard(_card()).data

    assert (data.library_name, data.license, data.pipeline_tag) == ("freehub", "apache-2.0", "image-classification")
    assert {"few-shot", "meta-learning", "data-free", "freehub"} <= set(data.tags)
    assert sorted(data.base_model) == ["glyph-lab/glyphs-hf-vit-01", "glyph-lab/glyphs-resnet-00"]


def test_model_index_has_one_result_per_evaluation_with_its_numbers() -> None:
    results = ModelCard(_card()).data.eval_results

    assert len(results) == len(MINE)
    for result, entry in zip(results, MINE):
        assert (result.metric_type, result.metric_value, result.metric_args["ci95"]) == ("accuracy", entry.mean, entry.ci95)
        assert (result.dataset_name, result.dataset_split) == ("freehub glyphs", "test")
        assert result.dataset_args == {"n_way": 5, "k_shot": entry.k_shot, "q_queries": 15, "episodes": 200, "seed": 0}


def test_results_table_shows_each_accuracy_with_its_interval_and_paired_difference() -> None:
    text = _card()

    assert "| 5-way 1-shot | 46.15 ± 1.33% | 200 | 15 | 0 | protonet | batch | +9.37 ± 1.21 points vs random |" in text
    assert "65.93 ± 1.38%" in text


def test_without_evaluations_the_card_says_nothing_was_measured() -> None:
    text = _card(evaluations=())

    assert "No results were measured" in text
    assert ModelCard(text).data.eval_results is None and "%" not in text.split("## Results")[1].split("##")[0]


def test_every_source_repo_and_sha_is_in_the_body_and_skips_have_their_reason() -> None:
    text = _card()

    for model in SOURCES.models:
        assert f"| {model.repo_id} | `{model.sha}` |" in text
    assert "| glyph-lab/pickled | `cccccccccccc` | unsafe | weights only as pickle \\| .bin |" in text


def test_hostile_label_names_cannot_break_the_table_or_inject_html() -> None:
    hostile = dataclasses.replace(SOURCES.models[0], label_names=("<script>x</script>", "A | B\n| row |"))
    sources = dataclasses.replace(SOURCES, models=(hostile, *SOURCES.models[1:]))

    text = _card(sources=sources)

    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "A \\| B \\| row \\|" in text


def test_a_folder_dataset_is_named_by_its_last_part_only(tmp_path: Path) -> None:
    assert evaluation_dataset(str(tmp_path / "data" / "birds")) == ("imagefolder", "birds")
    assert evaluation_dataset(f"hf:{tmp_path / 'saved' / 'flowers'}") == ("datasets", "flowers")
    assert evaluation_dataset("hf:org/sketches") == ("org/sketches", "org/sketches")


def test_a_publisher_license_is_called_the_publisher_choice() -> None:
    assert "chosen by the publisher" in _card(license="cc-by-4.0", license_derived=False)


def test_timm_backbone_card_shows_the_timm_snippet() -> None:
    spec = LearnerSpec(backbone="timm:resnet18", algorithm="protonet")

    assert 'timm.create_model("hf-hub:glyph-lab/free-conv4", pretrained=True)' in _card(spec=spec)
    assert "timm.create_model" not in _card()


def test_usage_names_a_non_default_hub() -> None:
    assert 'FewShotLearner.from_pretrained("glyph-lab/free-conv4", hub="http://127.0.0.1:8000")' in _card(hub_location="http://127.0.0.1:8000")


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("---\n{{ card_data }}\n---\n{% for x in %}", "does not render"),
        ("---\n{{ card_data }}\n---\n{{ no_such_field }}", "does not render"),
        ("---\n{{ card_data }}\n---\n{{ 1 / 0 }}", "does not render"),
        ("# no metadata at all\n", "metadata block"),
        ("---\nlicense: mit\n---\n# wrong metadata\n", "metadata block"),
        ("---\n{{ card_data }}\nbroken: [yaml\n---\n", "breaks the card metadata"),
    ],
    ids=["syntax", "undefined", "raises", "no-front-matter", "other-front-matter", "broken-yaml"],
)
def test_a_custom_template_that_fails_is_refused_in_one_line(template: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as refused:
        _card(template=template)
    assert "\n" not in str(refused.value)


def test_a_custom_template_gets_the_same_context() -> None:
    text = _card(template="---\n{{ card_data }}\n---\n# {{ repo_name }}: {{ results | length }} results\n")

    assert text.endswith("# free-conv4: 2 results\n")


def test_a_sandboxed_template_cannot_reach_python_internals() -> None:
    with pytest.raises(ConfigError):
        _card(template="---\n{{ card_data }}\n---\n{{ ''.__class__.__mro__[1].__subclasses__() }}")


def test_evaluations_of_another_data_set_keep_their_own_dataset(tmp_path: Path) -> None:
    entry = parse_evaluation(evaluation(data=str(tmp_path / "birds"), split="val"))

    (result,) = ModelCard(_card(evaluations=(entry,))).data.eval_results

    assert (result.dataset_type, result.dataset_name, result.dataset_split) == ("imagefolder", "birds", "val")
    assert str(tmp_path) not in _card(evaluations=(entry,))


def test_a_data_oracle_card_says_it_saw_real_images_and_claims_no_sources() -> None:
    text = _card(run_config={**MetaTrainConfig().to_dict(), "recovery": "real"})

    data = ModelCard(text).data
    assert "**real images**" in text and "It saw no real training images" not in text
    assert "data-free" not in data.tags and data.base_model is None


def test_a_baseline_recovery_is_named_as_such() -> None:
    text = _card(run_config={**MetaTrainConfig().to_dict(), "recovery": "pixels"})

    assert "optimising the pixels of each image for each classifier (a baseline recovery" in text


def test_a_prior_distilled_learner_kept_before_any_iteration_says_both() -> None:
    config = {**MetaTrainConfig().to_dict(), "generator": "strokes", "prior_distill_steps": 1500}
    text = _card(run_config=config, selected_iteration=-1)

    assert "prior distillation" in text and "`strokes` generator" in text
    assert "right after prior distillation, before FREE's first iteration" in text
    assert "iteration -1" not in text


def test_a_run_without_prior_distillation_does_not_mention_it() -> None:
    assert "prior distillation" not in _card()


def test_an_unknown_recovery_is_refused() -> None:
    with pytest.raises(ConfigError, match="recovery"):
        _card(run_config={**MetaTrainConfig().to_dict(), "recovery": "telepathy"})


def test_a_run_without_meta_validation_or_grids_gets_a_card_without_their_pictures() -> None:
    text = _card(images={}, selected_on_val=False)

    assert "No meta-validation ran" in text
    assert "images/meta_val.png" not in text and "## Recovered images" not in text
    assert "![" not in _card(images={"recovered": "images/recovered.png"}, selected_on_val=False).split("## Recovered images")[0]
