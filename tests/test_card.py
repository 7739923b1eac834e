"""Teacher model cards: the YAML front matter parses back, through huggingface_hub, with the right fields."""

from __future__ import annotations

import pytest
import yaml
from huggingface_hub import ModelCard

from freehub.card import render_teacher_card
from freehub.task_model import ModelSpec

SPEC = ModelSpec(
    library="timm",
    architecture="resnet18",
    label_names=("GREEK CAPITAL LETTER OMEGA", "HEBREW LETTER ALEF", "A | B"),
    input_size=(1, 28, 28),
    mean=(0.5,),
    std=(0.25,),
    param_count=318_949,
)


def _card(**overrides: object) -> str:
    arguments = dict(
        repo_id="glyph-lab/glyphs-resnet-00",
        spec=SPEC,
        held_out_accuracy=0.8667,
        train_per_class=20,
        held_out_per_class=10,
        train_steps=150,
        seed=3,
        class_groups=("Greek", "Hebrew", "Latin"),
    )
    arguments.update(overrides)
    return render_teacher_card(**arguments)


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text[4 : text.index("\n---", 4)])


def test_front_matter_has_hub_fields() -> None:
    meta = _front_matter(_card())

    assert {"few-shot", "image-classification", "timm"} <= set(meta["tags"])
    assert (meta["library_name"], meta["license"], meta["pipeline_tag"]) == ("timm", "apache-2.0", "image-classification")


def test_held_out_accuracy_is_a_model_index_result() -> None:
    card = ModelCard(_card())

    (result,) = card.data.eval_results

    assert (result.task_type, result.metric_type, result.dataset_split) == ("image-classification", "accuracy", "held-out")
    assert result.metric_value == pytest.approx(0.8667)
    assert card.data.model_name == "glyphs-resnet-00"


def test_body_lists_every_label_with_its_script() -> None:
    text = _card()

    assert "| 0 | GREEK CAPITAL LETTER OMEGA | Greek |" in text
    assert "| 2 | A \\| B | Latin |" in text


def test_transformers_card_shows_transformers_usage() -> None:
    spec = ModelSpec(
        library="transformers", architecture="ViTForImageClassification", label_names=("a", "b", "c"),
        input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3,
    )

    text = _card(spec=spec, repo_id="glyph-lab/glyphs-hf-vit-03")

    assert _front_matter(text)["library_name"] == "transformers"
    assert 'AutoModelForImageClassification.from_pretrained("glyph-lab/glyphs-hf-vit-03")' in text


def test_under_trained_teacher_says_so() -> None:
    assert "deliberately under-trained" in _card(under_trained=True)
    assert "deliberately under-trained" not in _card()


def test_accuracy_must_be_a_fraction() -> None:
    with pytest.raises(ValueError):
        _card(held_out_accuracy=86.7)
