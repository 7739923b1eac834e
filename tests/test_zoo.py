"""The teacher zoo: planning, training, and publishing to a remote (test server) or local folder Hub.

A small synthetic glyph-like set stands in for the rendered glyphs so that these tests stay fast;
the real set is used by the slow CLI test at the end.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from transformers import AutoModelForImageClassification
from typer.testing import CliRunner

from freehub.adapters import load_task_model
from freehub.card import FEW_SHOT_TAG
from freehub.cli.zoo import zoo_app
from freehub.data import ImageSet, SplitData
from freehub.hub import LocalHub, open_hub
from freehub.zoo import RECIPES, ZooResult, build_zoo, plan_hub_like, plan_zoo, train_teacher

GROUPS = ("Greek", "Hebrew", "Runic")
CLASSES_PER_GROUP = 6
IMAGES_PER_CLASS = 9


def _toy_imageset(seed: int) -> ImageSet:
    """Classes as distinct coarse random patterns plus per-image noise: learnable in a few steps."""
    generator = torch.Generator().manual_seed(seed)
    names, groups, images, labels = [], [], [], []
    for label in range(len(GROUPS) * CLASSES_PER_GROUP):
        group = GROUPS[label // CLASSES_PER_GROUP]
        names.append(f"{group.upper()} LETTER {label}")
        groups.append(group)
        pattern = torch.rand(1, 3, 4, 4, generator=generator).repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
        noisy = (pattern + 0.15 * torch.randn(IMAGES_PER_CLASS, 3, 32, 32, generator=generator)).clamp(0, 1)
        images.append((noisy * 255).round().to(torch.uint8))
        labels.append(torch.full((IMAGES_PER_CLASS,), label, dtype=torch.int64))
    return ImageSet(images=torch.cat(images), labels=torch.cat(labels), class_names=tuple(names), class_groups=tuple(groups))


@pytest.fixture(scope="module")
def toy_data() -> SplitData:
    train = _toy_imageset(0)
    return SplitData(train=train, val=_toy_imageset(1).select_classes([0, 1]), test=_toy_imageset(2).select_classes([0, 1]))


def test_plan_is_deterministic_in_the_seed(toy_data: SplitData) -> None:
    first = plan_zoo(classes=toy_data.train, teachers=24, seed=0)

    assert first == plan_zoo(classes=toy_data.train, teachers=24, seed=0)
    assert [p.class_indices for p in first] != [p.class_indices for p in plan_zoo(classes=toy_data.train, teachers=24, seed=1)]


def test_default_plan_is_heterogeneous(toy_data: SplitData) -> None:
    plans = plan_zoo(classes=toy_data.train, teachers=24, seed=0)

    architectures = {(p.recipe.library, p.recipe.architecture) for p in plans}
    assert len({a for lib, a in architectures if lib == "timm"}) >= 3
    assert len({a for lib, a in architectures if lib == "transformers"}) >= 2
    assert {p.recipe.size for p in plans} == {28, 32, 40}
    assert {p.recipe.channels for p in plans} == {1, 3}
    assert {p.effort for p in plans} == {"full", "medium", "short"}
    assert len({p.name for p in plans}) == 24


def test_plan_classes_are_five_distinct_and_overlap_between_teachers(toy_data: SplitData) -> None:
    plans = plan_zoo(classes=toy_data.train, teachers=24, seed=0)
    groups = toy_data.train.class_groups

    assert all(len(set(p.class_indices)) == 5 for p in plans)
    assert all(len({groups[c] for c in p.class_indices}) == 1 for p in plans[::2])
    assert any(len({groups[c] for c in p.class_indices}) > 1 for p in plans[1::2])
    assert any(set(a.class_indices) & set(b.class_indices) for i, a in enumerate(plans) for b in plans[i + 1 :])


def test_training_is_deterministic_in_the_seed(toy_data: SplitData) -> None:
    plan = plan_zoo(classes=toy_data.train, teachers=1, seed=4)[0]

    first = train_teacher(plan=plan, classes=toy_data.train, seed=4, train_steps=5)
    second = train_teacher(plan=plan, classes=toy_data.train, seed=4, train_steps=5)

    for (name, a), b in zip(first.model.network.state_dict().items(), second.model.network.state_dict().values()):
        assert torch.equal(a, b), name


def test_full_teacher_learns_its_classes_and_is_measured_on_other_images(toy_data: SplitData) -> None:
    plan = plan_zoo(classes=toy_data.train, teachers=1, seed=0)[0]

    trained = train_teacher(plan=plan, classes=toy_data.train, seed=0, train_steps=60)

    assert (trained.train_per_class, trained.held_out_per_class) == (6, 3)
    assert trained.held_out_accuracy >= 0.8
    assert trained.model.label_names == tuple(toy_data.train.class_names[c] for c in plan.class_indices)


def _retrained(result: ZooResult, data: SplitData, steps: int) -> dict[str, torch.nn.Module]:
    """The zoo's teachers trained again from the same seed: what each published repo must hold."""
    plans = plan_zoo(classes=data.train, teachers=len(result.teachers), seed=result.seed)
    return {
        f"{result.org}/{plan.name}": train_teacher(plan=plan, classes=data.train, seed=result.seed, train_steps=steps).model
        for plan in plans
    }


def _logits(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.logits


def test_zoo_on_the_test_server_loads_in_timm_and_transformers(toy_data, hub_server, hub_org) -> None:
    hub = open_hub(hub_server.url, token="hf_test_write")

    result = build_zoo(hub=hub, org=hub_org, teachers=5, seed=2, data=toy_data, train_steps=6)

    found = sorted(s.repo_id for s in hub.search(tags=[FEW_SHOT_TAG], author=hub_org))
    assert found == sorted(t.repo_id for t in result.teachers)
    assert {t.library for t in result.teachers} == {"timm", "transformers"}
    for repo_id, expected in _retrained(result, toy_data, steps=6).items():
        if expected.spec.library == "timm":
            model = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
        else:
            model = AutoModelForImageClassification.from_pretrained(repo_id).eval()
        pixels = torch.randn(2, *expected.spec.input_size)
        with torch.no_grad():
            torch.testing.assert_close(_logits(model(pixels)), _logits(expected.eval().network(pixels)), atol=1e-5, rtol=1e-4)


@pytest.fixture(scope="module")
def local_zoo(toy_data: SplitData, tmp_path_factory: pytest.TempPathFactory) -> tuple[LocalHub, ZooResult]:
    hub = LocalHub(root=tmp_path_factory.mktemp("hub"))
    return hub, build_zoo(hub=hub, org="glyph-lab", teachers=3, seed=1, data=toy_data, train_steps=6)


def test_zoo_in_a_local_folder_loads_as_task_models(local_zoo, toy_data, tmp_path) -> None:
    hub, result = local_zoo

    images = torch.rand(4, 3, 32, 32)
    for repo_id, expected in _retrained(result, toy_data, steps=6).items():
        info = hub.repo_info(repo_id=repo_id)
        names = [f.path for f in info.files]
        assert {"README.md", "config.json", "model.safetensors"} <= set(names)
        assert FEW_SHOT_TAG in info.tags
        hub.download(repo_id=repo_id, revision=info.sha, filenames=names, local_dir=tmp_path / repo_id)
        loaded = load_task_model(folder=tmp_path / repo_id)
        with torch.no_grad():
            torch.testing.assert_close(loaded(images), expected.eval()(images), atol=1e-5, rtol=1e-4)


def test_every_card_carries_its_teachers_measured_accuracy(local_zoo) -> None:
    hub, result = local_zoo

    for teacher in result.teachers:
        model_index = hub.repo_info(repo_id=teacher.repo_id).card_data["model-index"]
        assert model_index[0]["results"][0]["metrics"][0]["value"] == pytest.approx(teacher.held_out_accuracy, abs=1e-4)
    assert len({teacher.held_out_accuracy for teacher in result.teachers}) > 1


def test_hub_like_teachers_have_two_three_and_a_whole_alphabet_of_classes_at_a_larger_input(toy_data: SplitData) -> None:
    plans = plan_hub_like(classes=toy_data.train, first_index=24, seed=0)
    groups = toy_data.train.class_groups

    assert [len(set(p.class_indices)) for p in plans] == [2, 2, 3, CLASSES_PER_GROUP]
    assert len({groups[c] for c in plans[-1].class_indices}) == 1
    assert plans[-1].recipe.size > max(r.size for r in RECIPES)
    assert [p.index for p in plans] == [24, 25, 26, 27] and len({p.name for p in plans}) == 4


def test_hub_like_teachers_come_after_the_others_and_leave_them_as_they_were(local_zoo, toy_data, tmp_path) -> None:
    _, plain = local_zoo

    with_hub_like = build_zoo(
        hub=LocalHub(root=tmp_path / "hub"), org="glyph-lab", teachers=3, seed=1, data=toy_data, train_steps=6, hub_like=True
    )

    assert len(with_hub_like.teachers) == 7
    assert [(t.repo_id, t.class_names, t.held_out_accuracy) for t in with_hub_like.teachers[:3]] == [
        (t.repo_id, t.class_names, t.held_out_accuracy) for t in plain.teachers
    ]
    assert [len(t.class_names) for t in with_hub_like.teachers[3:]] == [2, 2, 3, CLASSES_PER_GROUP]


def test_table_lists_every_teacher(local_zoo) -> None:
    _, result = local_zoo

    table = result.table()

    for teacher in result.teachers:
        assert teacher.repo_id in table and teacher.architecture in table
    assert "held-out acc" in table.splitlines()[0]


def test_cli_help_shows_an_example() -> None:
    output = CliRunner().invoke(zoo_app, ["build", "--help"]).output

    assert "--teachers" in output and "freehub zoo build --hub" in output


@pytest.mark.slow
def test_cli_builds_a_zoo_from_the_rendered_glyphs(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(
        zoo_app, ["build", "--hub", str(tmp_path / "hub"), "--org", "glyph-lab", "--teachers", "2", "--steps", "3", "--json"]
    )

    assert outcome.exit_code == 0, outcome.output
    report = json.loads(outcome.output)
    assert [t["repo_id"] for t in report["teachers"]] == ["glyph-lab/glyphs-resnet-00", "glyph-lab/glyphs-hf-resnet-01"]
    assert all(0.0 <= t["held_out_accuracy"] <= 1.0 for t in report["teachers"])
    assert (tmp_path / "hub" / "glyph-lab" / "glyphs-resnet-00" / "model.safetensors").is_file()
