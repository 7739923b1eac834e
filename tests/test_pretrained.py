"""FewShotLearner: every source kind, every image kind, and hostile repos refused before anything is built."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from run_factory import make_run
from safetensors.torch import save_file

from freehub.errors import CheckpointError, ConfigError
from freehub.free.episodic import prototype_logits
from freehub.free.learners import LearnerSpec, load_learner
from freehub.hub import LocalHub, open_hub
from freehub.pretrained import CONFIG_NAME, WEIGHTS_NAME, FewShotLearner, export_learner

SUPPORT = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
QUERIES = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


@pytest.fixture
def published(run: Path, tmp_path: Path) -> Path:
    return export_learner(learner=load_learner(directory=run / "learner"), folder=tmp_path / "published")


def _logits(learner: FewShotLearner, support=SUPPORT, labels=(0, 1, 2, 0, 1, 2), queries=QUERIES) -> torch.Tensor:
    return learner.adapt(support, list(labels)).logits(queries)


def _edit_config(folder: Path, change) -> None:
    config = json.loads((folder / CONFIG_NAME).read_text())
    change(config)
    (folder / CONFIG_NAME).write_text(json.dumps(config))


def test_run_dir_learner_dir_and_published_folder_give_the_same_learner(run: Path, published: Path) -> None:
    expected = _logits(FewShotLearner.from_pretrained(run))

    assert torch.equal(_logits(FewShotLearner.from_pretrained(run / "learner")), expected)
    assert torch.equal(_logits(FewShotLearner.from_pretrained(published)), expected)


def test_pil_images_paths_and_uint8_tensors_give_the_same_predictions(published: Path, tmp_path: Path) -> None:
    learner = FewShotLearner.from_pretrained(published)
    support = (SUPPORT * 255).round().to(torch.uint8)
    images = [Image.fromarray(image.permute(1, 2, 0).numpy()) for image in support]
    paths = []
    for index, image in enumerate(images):
        paths.append(tmp_path / f"{index}.png")
        image.save(paths[-1])

    from_tensors = _logits(learner, support=support)

    assert torch.allclose(_logits(learner, support=images), from_tensors)
    assert torch.allclose(_logits(learner, support=[str(p) for p in paths]), from_tensors)


def test_grey_and_differently_sized_images_are_mapped_like_the_learner_does(published: Path) -> None:
    learner = FewShotLearner.from_pretrained(published)
    grey = torch.rand(6, 1, 48, 48, generator=torch.Generator().manual_seed(5))

    expected = _logits(learner, support=torch.nn.functional.interpolate(grey.expand(-1, 3, -1, -1), size=(32, 32), mode="bilinear"))

    assert torch.allclose(_logits(learner, support=[image for image in grey]), expected, atol=1e-6)


def test_prediction_maps_indices_to_the_given_labels(published: Path) -> None:
    classify = FewShotLearner.from_pretrained(published).adapt(SUPPORT, ["cat", "dog", "owl"] * 2)

    prediction = classify(QUERIES)

    assert classify.classes == ("cat", "dog", "owl")
    assert prediction.labels == tuple(classify.classes[i] for i in prediction.indices.tolist())
    assert prediction.probabilities.shape == (4, 3) and torch.allclose(prediction.probabilities.sum(dim=1), torch.ones(4))


@pytest.mark.parametrize(
    ("support", "labels", "message"),
    [
        (SUPPORT * 2, [0, 1, 2] * 2, r"\[0, 1\]"),
        (SUPPORT, [0] * 6, "two classes"),
        (SUPPORT, [0, 1, 2], "6 support images but 3 labels"),
        (SUPPORT, [0, "a", 1, "b", 0, 1], "all numbers or all strings"),
        (torch.rand(6, 4, 32, 32), [0, 1, 2] * 2, "1 or 3 channels"),
        ([object(), object()], [0, 1], "PIL image, a path or a tensor"),
    ],
    ids=["float-range", "one-class", "count", "mixed-labels", "channels", "type"],
)
def test_unusable_support_sets_are_refused(published: Path, support, labels, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        FewShotLearner.from_pretrained(published).adapt(support, labels)


def test_neither_a_folder_nor_a_repo_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither a folder nor a repo id"):
        FewShotLearner.from_pretrained(str(tmp_path / "missing" / "deeper" / "still"))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda c: c["freehub"]["spec"]["backbone_args"].update(checkpoint_path="weights.pth"), "unsafe"),
        (lambda c: c["freehub"]["spec"].update(backbone="timm:resnet18", backbone_args={"pretrained": True}), "unsafe"),
        (lambda c: c["freehub"]["spec"].update(image_size=100_000), "bad_config"),
        (lambda c: c["freehub"]["spec"].update(trust_remote_code=True), "bad_config"),
        (lambda c: c["freehub"]["spec"].update(metric="manhattan"), "bad_config"),
        (lambda c: c["freehub"]["spec"].update(metric=["cosine"]), "bad_config"),
        (lambda c: c["freehub"].update(format=99), "bad_config"),
        (lambda c: c["freehub"].update(weights="timm"), "bad_config"),
        (lambda c: c["freehub"]["spec"].update(backbone="timm:no_such_net"), "unknown_architecture"),
    ],
    ids=["checkpoint-path", "pretrained", "huge-image", "unknown-field", "unknown-metric", "metric-not-a-string", "format", "weights-kind", "unknown-timm"],
)
def test_hostile_configs_are_refused_before_building(published: Path, change, reason: str) -> None:
    _edit_config(published, change)

    with pytest.raises(CheckpointError) as refused:
        FewShotLearner.from_pretrained(published)
    assert refused.value.reason == reason


def test_weights_that_do_not_fit_the_spec_are_refused(published: Path) -> None:
    save_file({"backbone.blocks.0.weight": torch.zeros(3, 3)}, str(published / WEIGHTS_NAME))

    with pytest.raises(CheckpointError) as refused:
        FewShotLearner.from_pretrained(published)
    assert refused.value.reason == "shape_mismatch"


def test_a_repo_without_learner_files_is_refused(tmp_path: Path) -> None:
    hub = LocalHub(root=tmp_path / "hub")
    hub.create_repo(repo_id="lab/empty")
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "README.md").write_text("# nothing here\n")
    hub.upload_folder(repo_id="lab/empty", folder=tmp_path / "files", commit_message="card only")

    with pytest.raises(CheckpointError, match="not a freehub learner"):
        FewShotLearner.from_pretrained("lab/empty", hub=hub)


def test_a_corrupted_download_is_refused(published: Path, hub_server, hub_org: str) -> None:
    files = {path.name: path.read_bytes() for path in published.iterdir()}
    hub_server.add_repo(f"{hub_org}/free", files=files)
    hub_server.blob_path(f"{hub_org}/free", WEIGHTS_NAME).write_bytes(b"x" * len(files[WEIGHTS_NAME]))

    with pytest.raises(CheckpointError) as refused:
        FewShotLearner.from_pretrained(f"{hub_org}/free", hub=open_hub(hub_server.url))
    assert refused.value.reason == "checksum_mismatch"


def test_a_pinned_revision_loads_those_weights(run: Path, tmp_path: Path) -> None:
    hub = LocalHub(root=tmp_path / "hub")
    hub.create_repo(repo_id="lab/free")
    first = hub.upload_folder(repo_id="lab/free", folder=export_learner(learner=load_learner(directory=run / "learner"), folder=tmp_path / "v1"), commit_message="v1")
    other = make_run(tmp_path / "other", seed=7)
    hub.upload_folder(repo_id="lab/free", folder=export_learner(learner=load_learner(directory=other / "learner"), folder=tmp_path / "v2"), commit_message="v2")

    pinned = FewShotLearner.from_pretrained("lab/free", hub=hub, revision=first)

    assert torch.equal(_logits(pinned), _logits(FewShotLearner.from_pretrained(run)))
    assert not torch.equal(_logits(FewShotLearner.from_pretrained("lab/free", hub=hub)), _logits(pinned))


def test_a_timm_learner_without_its_head_file_is_refused(tmp_path: Path) -> None:
    spec = LearnerSpec(backbone="timm:resnet18", algorithm="maml", backbone_args={"layers": [1, 1, 1, 1], "channels": [8, 8, 8, 8]})
    run = make_run(tmp_path / "run", spec=spec)
    folder = export_learner(learner=load_learner(directory=run / "learner"), folder=tmp_path / "published")
    (folder / "learner_head.safetensors").unlink()

    with pytest.raises(CheckpointError, match="learner_head.safetensors"):
        FewShotLearner.from_pretrained(folder)


def test_an_existing_folder_wins_over_a_hub(run: Path, tmp_path: Path) -> None:
    learner = FewShotLearner.from_pretrained(run, hub=tmp_path / "empty-hub")

    assert torch.equal(_logits(learner), _logits(FewShotLearner.from_pretrained(run)))


def test_a_spec_larger_than_its_weight_files_is_refused_before_building(published: Path) -> None:
    _edit_config(published, lambda c: c["freehub"]["spec"].update(conv_width=1024, image_size=1024))

    with pytest.raises(CheckpointError, match="bytes of weights") as refused:
        FewShotLearner.from_pretrained(published)
    assert refused.value.reason == "shape_mismatch"


def test_a_folder_without_weights_is_refused_as_missing_files(published: Path) -> None:
    (published / WEIGHTS_NAME).unlink()

    with pytest.raises(CheckpointError) as refused:
        FewShotLearner.from_pretrained(published)
    assert refused.value.reason == "missing_files"


def test_a_published_cosine_learner_predicts_with_cosine_prototypes(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", spec=LearnerSpec(backbone="conv4", algorithm="protonet", conv_width=8, metric="cosine"))
    published = export_learner(learner=load_learner(directory=run / "learner"), folder=tmp_path / "published")
    learner = FewShotLearner.from_pretrained(published)
    logits = _logits(learner)
    with torch.no_grad():
        features = learner.learner.features(torch.cat([SUPPORT, QUERIES]))
    expected = {
        metric: prototype_logits(
            support_features=features[:6], support_labels=torch.tensor([0, 1, 2, 0, 1, 2]), query_features=features[6:], n_way=3, metric=metric
        )
        for metric in ("cosine", "euclidean")
    }
    torch.testing.assert_close(logits, expected["cosine"])
    assert not torch.allclose(logits, expected["euclidean"])
    assert torch.equal(logits, _logits(FewShotLearner.from_pretrained(run)))
