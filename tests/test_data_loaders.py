"""Bring-your-own data: an image folder and a `datasets` data set, both into the same SplitData."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from freehub.data import load_hf_dataset, load_image_folder, read_hf_dataset, read_image_folder
from freehub.errors import DataError

CLASSES = ("ant", "bee", "cat", "dog", "eel", "fox")


def _picture(value: int, size: int = 12) -> Image.Image:
    """A flat RGB picture whose red channel is ``value``: the class survives resizing."""
    array = np.zeros((size, size, 3), dtype=np.uint8)
    array[..., 0] = value
    return Image.fromarray(array)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    for index, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for shot in range(3):
            _picture(40 * index).save(root / name / f"{shot}.png")
        (root / name / "notes.txt").write_text("not an image")
    return root


def _rows() -> dict[str, list]:
    return {
        "image": [_picture(40 * i) for i in range(len(CLASSES)) for _ in range(3)],
        "label": [i for i in range(len(CLASSES)) for _ in range(3)],
    }


@pytest.fixture
def saved_dataset(tmp_path: Path) -> Path:
    import datasets

    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=list(CLASSES))})
    path = tmp_path / "saved"
    datasets.Dataset.from_dict(_rows(), features=features).save_to_disk(str(path))
    return path


def test_folder_classes_are_sorted_sub_folders_and_images_keep_their_class(folder):
    imageset = read_image_folder(root=folder, size=8)
    assert imageset.class_names == CLASSES
    assert imageset.images.shape == (18, 3, 8, 8)
    assert imageset.class_groups == ("pets",) * 6
    assert imageset.images[:, 0, 0, 0].tolist() == [40 * int(label) for label in imageset.labels]


def test_folder_grey_has_one_channel(folder):
    assert read_image_folder(root=folder, size=8, channels=1).images.shape[1] == 1


def test_folder_split_uses_named_test_classes(folder):
    data = load_image_folder(root=folder, size=8, test_classes=["dog", "eel"], seed=0)
    assert data.test.class_names == ("dog", "eel")
    assert not set(data.val.class_names) & {"dog", "eel"}
    assert data.train.num_classes + data.val.num_classes == 4


def test_folder_seeded_split_is_deterministic(folder):
    a = load_image_folder(root=folder, size=8, seed=2)
    b = load_image_folder(root=folder, size=8, seed=2)
    assert a.test.class_names == b.test.class_names and torch.equal(a.test.images, b.test.images)
    assert len({load_image_folder(root=folder, size=8, seed=seed).test.class_names for seed in range(6)}) > 1


def test_missing_folder_raises(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_image_folder(root=tmp_path / "nowhere")


def test_empty_class_folder_raises(folder):
    (folder / "zebra").mkdir()
    with pytest.raises(DataError, match="zebra"):
        read_image_folder(root=folder)


def test_unknown_class_name_in_folder_split_raises(folder):
    with pytest.raises(DataError, match="unknown test class"):
        load_image_folder(root=folder, test_classes=["unicorn"])


def test_saved_dataset_gives_class_label_names(saved_dataset):
    imageset = read_hf_dataset(path=str(saved_dataset), size=8)
    assert imageset.class_names == CLASSES
    assert imageset.images[:, 0, 0, 0].tolist() == [40 * int(label) for label in imageset.labels]


def test_saved_dataset_splits_with_named_val_classes(saved_dataset):
    data = load_hf_dataset(path=str(saved_dataset), size=8, val_classes=["cat"], seed=0)
    assert data.val.class_names == ("cat",)
    assert len(data.val) == 3


def test_data_files_folder_loads_through_load_dataset_with_string_labels(tmp_path):
    import datasets

    rows = _rows()
    rows["species"] = [CLASSES[label] for label in rows.pop("label")]
    folder = tmp_path / "parquet"
    folder.mkdir()
    features = datasets.Features({"image": datasets.Image(), "species": datasets.Value("string")})
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "train.parquet"))
    imageset = read_hf_dataset(path=str(folder), label_column="species", size=8)
    assert imageset.class_names == CLASSES
    assert len(imageset) == 18


def test_unknown_column_raises(saved_dataset):
    with pytest.raises(DataError, match="no column 'picture'"):
        read_hf_dataset(path=str(saved_dataset), image_column="picture")


def test_missing_dataset_path_raises(tmp_path):
    with pytest.raises(DataError, match="cannot load"):
        read_hf_dataset(path=str(tmp_path / "absent"))


def test_imageset_round_trips_through_a_datasets_dataset(folder):
    imageset = read_image_folder(root=folder, size=8)
    dataset = imageset.to_dataset()
    assert dataset.features["label"].names == list(CLASSES)
    assert dataset[4]["group"] == "pets"
    assert np.array_equal(np.asarray(dataset[4]["image"]), imageset.images[4].permute(1, 2, 0).numpy())
