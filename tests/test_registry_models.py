"""Models rebuilt from the registry behave exactly like the teachers that were published."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from freehub.collect import collect
from freehub.hub import LocalHub
from freehub.registry import Registry
from test_collect import publish_to_folder


@pytest.fixture(scope="module")
def collected(zoo, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("registry_models")
    publish_to_folder(root / "hub", org="zoo", teachers=zoo)
    registry = Registry.open(root / "registry")
    collect(hub=LocalHub(root=root / "hub"), registry=registry, progress=False)
    return zoo, registry


def test_every_task_model_reproduces_its_teachers_logits(collected) -> None:
    zoo, registry = collected
    models = list(registry.task_models())
    assert sorted(model.spec.extra["repo_id"] for model in models) == sorted(f"zoo/{name}" for name in zoo)
    for model in models:
        teacher = zoo[model.spec.extra["repo_id"].split("/")[1]]
        images = torch.rand(3, *teacher.input_size, generator=torch.Generator().manual_seed(7))
        with torch.no_grad():
            torch.testing.assert_close(model(images), teacher.logits(images), atol=1e-5, rtol=1e-4)


def test_task_models_take_any_image_size(collected) -> None:
    _, registry = collected
    for model in registry.task_models():
        with torch.no_grad():
            assert model(torch.rand(2, 3, 40, 40)).shape == (2, model.num_classes)


def test_a_loaded_model_knows_its_registry_id(collected) -> None:
    _, registry = collected
    record = registry.list(library="timm")[0]
    assert registry.load(record.id).spec.extra["registry_id"] == record.id


def test_a_spec_json_sits_beside_the_native_files(collected) -> None:
    _, registry = collected
    for record in registry.list():
        assert {Path(name).name for name in record.files} <= {p.name for p in record.path.iterdir()}
        assert (record.path / "spec.json").is_file()
