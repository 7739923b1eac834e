"""Hostile checkpoint folders: each is refused with its own reason, and nothing in it ever runs."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from freehub.adapters import load_task_model
from freehub.errors import CheckpointError, UnsafeCheckpointError
from freehub.zoo import RECIPES, build_network, save_network

LABELS = ("alpha", "beta", "gamma", "delta", "epsilon")
TIMM_RECIPE = RECIPES[0]
HF_RECIPE = RECIPES[1]


@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("originals")
    torch.manual_seed(0)
    folders = {}
    for recipe in (TIMM_RECIPE, HF_RECIPE):
        network = build_network(recipe=recipe, num_classes=len(LABELS)).eval()
        folders[recipe.library] = save_network(recipe=recipe, network=network, folder=root / recipe.library, label_names=LABELS)
    return folders


@pytest.fixture
def timm_folder(originals: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(originals["timm"], tmp_path / "timm"))


@pytest.fixture
def hf_folder(originals: dict[str, Path], tmp_path: Path) -> Path:
    return Path(shutil.copytree(originals["transformers"], tmp_path / "transformers"))


def _edit_json(path: Path, **changes: object) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def _edit_weights(folder: Path, edit) -> None:
    tensors = load_file(folder / "model.safetensors")
    edit(tensors)
    save_file(tensors, folder / "model.safetensors")


def _refusal(folder: Path, **kwargs: object) -> CheckpointError:
    with pytest.raises(CheckpointError) as caught:
        load_task_model(folder=folder, **kwargs)
    return caught.value


class _OpensAFile:
    """Pickles as a call to ``open(marker, "w")``: unpickling it would create the marker."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickle_only_weights_are_refused_by_default(timm_folder: Path) -> None:
    tensors = load_file(timm_folder / "model.safetensors")
    (timm_folder / "model.safetensors").unlink()
    torch.save(tensors, timm_folder / "pytorch_model.bin")

    error = _refusal(timm_folder)

    assert isinstance(error, UnsafeCheckpointError) and error.reason == "pickle_only"


def test_plain_tensor_pickle_loads_when_allowed(timm_folder: Path) -> None:
    reference = load_task_model(folder=timm_folder)
    tensors = load_file(timm_folder / "model.safetensors")
    (timm_folder / "model.safetensors").unlink()
    torch.save(tensors, timm_folder / "pytorch_model.bin")
    images = torch.rand(2, 3, 28, 28)

    loaded = load_task_model(folder=timm_folder, allow_pickle=True)

    with torch.no_grad():
        torch.testing.assert_close(loaded(images), reference(images))


def test_code_in_a_pickle_never_runs(timm_folder: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (timm_folder / "model.safetensors").unlink()
    torch.save({"fc.weight": _OpensAFile(marker)}, timm_folder / "pytorch_model.bin")

    error = _refusal(timm_folder, allow_pickle=True)

    assert isinstance(error, UnsafeCheckpointError) and error.reason == "unsafe_pickle"
    assert not marker.exists()


def test_truncated_safetensors_is_corrupt(timm_folder: Path) -> None:
    weights = timm_folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])

    assert _refusal(timm_folder).reason == "corrupt_weights"


def test_garbage_safetensors_is_corrupt(hf_folder: Path) -> None:
    (hf_folder / "model.safetensors").write_bytes(b"\xff" * 64)

    assert _refusal(hf_folder).reason == "corrupt_weights"


def test_shard_index_pointing_outside_the_folder_is_corrupt(timm_folder: Path) -> None:
    (timm_folder / "model.safetensors").unlink()
    index = {"weight_map": {"fc.weight": "../elsewhere/model.safetensors"}}
    (timm_folder / "model.safetensors.index.json").write_text(json.dumps(index))

    assert _refusal(timm_folder).reason == "corrupt_weights"


def test_timm_weights_missing_a_tensor_do_not_fit(timm_folder: Path) -> None:
    _edit_weights(timm_folder, lambda t: t.pop("fc.bias"))

    assert _refusal(timm_folder).reason == "shape_mismatch"


def test_timm_weights_of_the_wrong_shape_do_not_fit(timm_folder: Path) -> None:
    _edit_weights(timm_folder, lambda t: t.update({"fc.weight": torch.zeros(7, t["fc.weight"].shape[1])}))

    assert _refusal(timm_folder).reason == "shape_mismatch"


def test_transformers_missing_head_is_not_silently_reinitialised(hf_folder: Path) -> None:
    _edit_weights(hf_folder, lambda t: t.pop("classifier.1.bias"))

    assert _refusal(hf_folder).reason == "shape_mismatch"


def test_transformers_unexpected_tensor_does_not_fit(hf_folder: Path) -> None:
    _edit_weights(hf_folder, lambda t: t.update({"extra.weight": torch.zeros(3)}))

    assert _refusal(hf_folder).reason == "shape_mismatch"


def test_nan_weights_are_refused(hf_folder: Path) -> None:
    def poison(tensors: dict[str, torch.Tensor]) -> None:
        tensors["classifier.1.weight"][0, 0] = float("nan")

    _edit_weights(hf_folder, poison)

    assert _refusal(hf_folder).reason == "non_finite"


def test_infinite_weights_are_refused(timm_folder: Path) -> None:
    def poison(tensors: dict[str, torch.Tensor]) -> None:
        tensors["conv1.weight"][0, 0, 0, 0] = float("inf")

    _edit_weights(timm_folder, poison)

    assert _refusal(timm_folder).reason == "non_finite"


def test_missing_config_is_a_bad_config(timm_folder: Path) -> None:
    (timm_folder / "config.json").unlink()

    assert _refusal(timm_folder).reason == "bad_config"


def test_invalid_json_config_is_a_bad_config(hf_folder: Path) -> None:
    (hf_folder / "config.json").write_text("{not json")

    assert _refusal(hf_folder).reason == "bad_config"


def test_label_count_disagreeing_with_the_head_is_a_bad_config(timm_folder: Path) -> None:
    _edit_json(timm_folder / "config.json", label_names=["one", "two"])

    assert _refusal(timm_folder).reason == "bad_config"


def test_model_args_may_not_point_timm_at_a_file(timm_folder: Path, tmp_path: Path) -> None:
    config = json.loads((timm_folder / "config.json").read_text())
    config["model_args"]["checkpoint_path"] = str(tmp_path / "elsewhere.pth")
    (timm_folder / "config.json").write_text(json.dumps(config))

    assert _refusal(timm_folder).reason == "bad_config"


def test_unknown_timm_architecture(timm_folder: Path) -> None:
    _edit_json(timm_folder / "config.json", architecture="resnet_from_the_future")

    assert _refusal(timm_folder).reason == "unknown_architecture"


def test_transformers_model_that_is_not_an_image_classifier(hf_folder: Path) -> None:
    _edit_json(hf_folder / "config.json", model_type="bert", architectures=["BertForSequenceClassification"])

    assert _refusal(hf_folder).reason == "unknown_architecture"


def test_auto_map_asks_for_remote_code(hf_folder: Path) -> None:
    _edit_json(hf_folder / "config.json", auto_map={"AutoModelForImageClassification": "modeling_evil.EvilNet"})
    (hf_folder / "modeling_evil.py").write_text("raise SystemExit('repo code ran')\n")

    error = _refusal(hf_folder)

    assert isinstance(error, UnsafeCheckpointError) and error.reason == "remote_code"


def test_model_type_transformers_does_not_ship_needs_remote_code(hf_folder: Path) -> None:
    _edit_json(hf_folder / "config.json", model_type="evil_net", architectures=["EvilNetForImageClassification"])

    assert _refusal(hf_folder).reason == "remote_code"


def test_file_over_the_size_limit(timm_folder: Path) -> None:
    limit = (timm_folder / "config.json").stat().st_size + 10

    assert _refusal(timm_folder, max_file_bytes=limit).reason == "too_large"


def test_folder_without_weights(hf_folder: Path) -> None:
    (hf_folder / "model.safetensors").unlink()

    assert _refusal(hf_folder).reason == "no_weights"


def test_config_of_no_known_library(timm_folder: Path) -> None:
    (timm_folder / "config.json").write_text(json.dumps({"layers": 3}))

    assert _refusal(timm_folder).reason == "unknown_library"


def _edit_model_args(folder: Path, **changes: object) -> None:
    config = json.loads((folder / "config.json").read_text())
    config["model_args"].update(changes)
    (folder / "config.json").write_text(json.dumps(config))


def test_timm_model_args_outside_the_allowlist_are_refused(timm_folder: Path) -> None:
    _edit_model_args(timm_folder, act_layer="gelu")

    assert _refusal(timm_folder).reason == "bad_config"


def test_timm_depth_past_the_bound_is_refused_before_building(timm_folder: Path) -> None:
    _edit_model_args(timm_folder, layers=[100_000, 1, 1, 1])

    error = _refusal(timm_folder)

    assert error.reason == "bad_config" and "layers" in str(error)


def test_a_class_count_that_would_size_memory_is_refused(timm_folder: Path) -> None:
    _edit_json(timm_folder / "config.json", num_classes=3_000_000_000, label_names=None)

    assert _refusal(timm_folder).reason == "bad_config"


def test_an_enormous_input_size_is_refused(timm_folder: Path) -> None:
    config = json.loads((timm_folder / "config.json").read_text())
    config["pretrained_cfg"]["input_size"] = [1, 100_000, 100_000]
    (timm_folder / "config.json").write_text(json.dumps(config))

    assert _refusal(timm_folder).reason == "bad_config"


def test_a_timm_config_larger_than_its_weights_is_refused_before_building(timm_folder: Path) -> None:
    # Built for real, a last stage 8,192 channels wide would need gigabytes; its shapes alone refuse it.
    _edit_model_args(timm_folder, channels=[16, 32, 64, 8192])
    start = time.monotonic()

    assert _refusal(timm_folder).reason == "shape_mismatch"
    assert time.monotonic() - start < 5


def test_a_transformers_config_larger_than_its_weights_is_refused_before_building(hf_folder: Path) -> None:
    config = json.loads((hf_folder / "config.json").read_text())
    _edit_json(hf_folder / "config.json", hidden_sizes=[*config["hidden_sizes"][:-1], 20_000])
    start = time.monotonic()

    assert _refusal(hf_folder).reason == "shape_mismatch"
    assert time.monotonic() - start < 5


def test_transformers_block_counts_past_the_bound_are_refused(hf_folder: Path) -> None:
    _edit_json(hf_folder / "config.json", depths=[100_000, 1, 1, 1])

    assert _refusal(hf_folder).reason == "bad_config"


def test_sharded_safetensors_load_shard_by_shard(timm_folder: Path) -> None:
    expected = load_task_model(folder=timm_folder)
    tensors = load_file(timm_folder / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    for shard, keys in shards.items():
        save_file({key: tensors[key] for key in keys}, timm_folder / shard)
    weight_map = {key: shard for shard, keys in shards.items() for key in keys}
    (timm_folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (timm_folder / "model.safetensors").unlink()

    loaded = load_task_model(folder=timm_folder)

    images = torch.rand(2, *expected.spec.input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(images), expected(images))
