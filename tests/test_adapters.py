"""Every zoo architecture survives the round trip: network -> native Hub folder -> TaskModel.

The reference is the library itself: timm's ``create_model("local-dir:...")`` with timm's own eval
transform, and transformers' ``from_pretrained`` with its ``AutoImageProcessor``, both reading the
folder freehub wrote. A TaskModel fed the same pixels as ``[0,1]`` tensors must give their logits.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from timm.data import create_transform, resolve_data_config
from transformers import AutoImageProcessor, AutoModelForImageClassification

from freehub.adapters import inspect_checkpoint, load_task_model
from freehub.zoo import RECIPES, Recipe, build_network, save_network

LABELS = ("GREEK CAPITAL LETTER OMEGA", "HEBREW LETTER ALEF", "LATIN SMALL LETTER A", "ARMENIAN CAPITAL LETTER AYB", "RUNIC LETTER FEHU")


def _trained_looking(recipe: Recipe) -> torch.nn.Module:
    """A network whose BatchNorm statistics are not the defaults, so that buffers must round-trip too."""
    torch.manual_seed(7)
    network = build_network(recipe=recipe, num_classes=len(LABELS))
    network.train()
    with torch.no_grad():
        for _ in range(2):
            network(torch.randn(4, recipe.channels, recipe.size, recipe.size) * 2 + 0.3)
    return network.eval()


def _pictures(recipe: Recipe, count: int = 3) -> list[Image.Image]:
    rng = np.random.default_rng(3)
    mode = "L" if recipe.channels == 1 else "RGB"
    shape = (recipe.size, recipe.size) if recipe.channels == 1 else (recipe.size, recipe.size, 3)
    return [Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode=mode) for _ in range(count)]


def _as_unit_tensor(pictures: list[Image.Image]) -> torch.Tensor:
    arrays = [np.asarray(p, dtype=np.float32) / 255.0 for p in pictures]
    batch = torch.from_numpy(np.stack(arrays))
    return batch.unsqueeze(1) if batch.dim() == 3 else batch.permute(0, 3, 1, 2)


def _library_logits(recipe: Recipe, folder: Path, pictures: list[Image.Image]) -> tuple[torch.Tensor, torch.Tensor]:
    """(the library's own input tensor, the logits of the library's own load of ``folder``)."""
    if recipe.library == "timm":
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        transform = create_transform(**resolve_data_config(model=model), is_training=False)
        pixels = torch.stack([transform(p) for p in pictures])
        with torch.no_grad():
            return pixels, model(pixels)
    model = AutoModelForImageClassification.from_pretrained(folder).eval()
    processor = AutoImageProcessor.from_pretrained(folder)
    images = [np.array(p)[..., None] for p in pictures] if recipe.channels == 1 else pictures
    pixels = processor(images=images, return_tensors="pt", input_data_format="channels_last")["pixel_values"]
    with torch.no_grad():
        return pixels, model(pixels).logits


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_saved_teacher_gives_the_library_logits(recipe: Recipe, tmp_path: Path) -> None:
    network = _trained_looking(recipe)
    folder = save_network(recipe=recipe, network=network, folder=tmp_path / recipe.name, label_names=LABELS)
    pictures = _pictures(recipe)

    pixels, library_logits = _library_logits(recipe, folder, pictures)
    with torch.no_grad():
        original = network(pixels)
        original_logits = original.logits if recipe.library == "transformers" else original
        ours = load_task_model(folder=folder)(_as_unit_tensor(pictures))

    torch.testing.assert_close(library_logits, original_logits, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours, original_logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.name for r in RECIPES])
def test_spec_describes_the_saved_teacher(recipe: Recipe, tmp_path: Path) -> None:
    network = _trained_looking(recipe)
    folder = save_network(recipe=recipe, network=network, folder=tmp_path / recipe.name, label_names=LABELS)

    spec = load_task_model(folder=folder).spec

    parameters = dict(network.named_parameters())
    assert (spec.library, spec.architecture, spec.label_names) == (recipe.library, recipe.architecture, LABELS)
    assert (spec.input_size, spec.mean, spec.std) == (recipe.input_size, recipe.mean, recipe.std)
    assert spec.interpolation == recipe.interpolation
    assert spec.head_names and all(name in parameters for name in spec.head_names)
    assert parameters[spec.head_names[0]].shape == (len(LABELS), spec.feature_dim)
    assert spec.param_count == sum(p.numel() for p in network.parameters())


def test_inspect_reads_the_configs_alone(tmp_path: Path) -> None:
    recipe = RECIPES[1]
    folder = save_network(recipe=recipe, network=_trained_looking(recipe), folder=tmp_path / "t", label_names=LABELS)
    (folder / "model.safetensors").unlink()

    spec = inspect_checkpoint(folder=folder)

    assert (spec.library, spec.label_names, spec.input_size) == (recipe.library, LABELS, recipe.input_size)


def test_timm_config_keeps_no_borrowed_metadata(tmp_path: Path) -> None:
    recipe = RECIPES[0]
    folder = save_network(recipe=recipe, network=_trained_looking(recipe), folder=tmp_path / "t", label_names=LABELS)

    config = json.loads((folder / "config.json").read_text())

    borrowed = {"tag", "paper_ids", "origin_url", "hf_hub_id", "url", "test_input_size", "notes"}
    assert not borrowed & set(config["pretrained_cfg"])
    assert config["pretrained_cfg"]["license"] == "apache-2.0"
    assert config["label_names"] == list(LABELS)
    assert config["model_args"]["layers"] == [1, 1, 1, 1]


def test_transformers_config_has_string_label_ids(tmp_path: Path) -> None:
    recipe = RECIPES[1]
    folder = save_network(recipe=recipe, network=_trained_looking(recipe), folder=tmp_path / "t", label_names=LABELS)

    config = json.loads((folder / "config.json").read_text())
    processor = json.loads((folder / "preprocessor_config.json").read_text())

    assert config["id2label"] == {str(i): name for i, name in enumerate(LABELS)}
    assert config["label2id"] == {name: i for i, name in enumerate(LABELS)}
    assert processor["size"] == {"height": recipe.size, "width": recipe.size}
    assert processor["image_mean"] == list(recipe.mean)


def test_grey_teacher_accepts_rgb_images(tmp_path: Path) -> None:
    recipe = RECIPES[0]
    network = _trained_looking(recipe)
    folder = save_network(recipe=recipe, network=network, folder=tmp_path / "t", label_names=LABELS)
    grey = torch.rand(2, 1, recipe.size, recipe.size)

    with torch.no_grad():
        from_rgb = load_task_model(folder=folder)(grey.expand(-1, 3, -1, -1))
        expected = network((grey - 0.5) / 0.5)

    torch.testing.assert_close(from_rgb, expected, atol=1e-5, rtol=1e-4)
