"""What `freehub meta-train` reads before training: config presets and files, and the meta-validation data spec."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from test_data_loaders import folder, saved_dataset  # noqa: F401 - fixtures

from freehub.data import load_hf_dataset, load_image_folder
from freehub.errors import ConfigError, DataError
from freehub.free import MetaTrainConfig
from freehub.meta import load_config, load_val_data


def test_the_paper_preset_is_the_gpu_reference_and_file_keys_override_it(tmp_path: Path) -> None:
    path = tmp_path / "paper.yaml"
    path.write_text("preset: paper\niterations: 7\n")
    config = load_config(path=path, overrides={"seed": 4, "device": None})
    assert config == MetaTrainConfig.paper(iterations=7, seed=4)
    assert config != MetaTrainConfig(iterations=7, seed=4)


def test_no_file_is_the_cpu_preset_with_the_overrides(tmp_path: Path) -> None:
    config = load_config(overrides={"teachers_per_step": 3, "device": "cpu", "seed": None})
    assert config == MetaTrainConfig(teachers_per_step=3, device="cpu")


@pytest.mark.parametrize("text, message", [
    ("preset: tpu\n", "unknown preset 'tpu'"),
    ("- a list\n", "mapping"),
    ("iterations: [1\n", "not valid YAML"),
])
def test_an_unusable_config_file_is_a_config_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path=path)


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(path=tmp_path / "absent.yaml")


def _same(a, b) -> bool:
    return a.class_names == b.class_names and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels)


def test_val_data_from_an_image_folder_is_its_val_split(folder: Path) -> None:  # noqa: F811 - fixture
    loaded = load_val_data(spec=str(folder), size=8, seed=3)
    assert _same(loaded, load_image_folder(root=folder, size=8, seed=3).val)
    assert loaded.num_classes >= 1


def test_val_data_from_a_datasets_path_is_its_val_split(saved_dataset: Path) -> None:  # noqa: F811 - fixture
    loaded = load_val_data(spec=f"hf:{saved_dataset}", size=8, seed=3)
    assert _same(loaded, load_hf_dataset(path=str(saved_dataset), size=8, seed=3).val)


def test_val_data_that_is_neither_glyphs_hf_nor_a_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--val-data 'omniglot' is neither"):
        load_val_data(spec="omniglot", size=8)
    with pytest.raises(DataError, match="cannot load data set"):
        load_val_data(spec=f"hf:{tmp_path / 'absent'}", size=8)
