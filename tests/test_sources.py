"""sources.json: the registry models a run learned from, written by meta-train and read back field by field."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest
import timm

from freehub.adapters import load_task_model, save_timm_checkpoint
from freehub.errors import ConfigError
from freehub.free import MetaTrainConfig
from freehub.meta import meta_train, registry_teachers
from freehub.registry import Registry
from freehub.sources import SOURCES_NAME, read_sources, run_sources, write_sources

SHA_A = "a" * 40
SHA_B = "b" * 40
TINY_RUN = MetaTrainConfig(
    seed=1, device="cpu", iterations=1, warmup_iterations=0, teachers_per_step=2, generator_width=8, latent_dim=16,
    images_per_task=10, inversion_steps=1, conv_width=8, q_queries=1, episodes_per_step=1, max_replay_steps=1,
    patience=1, grid_every=1,
)


def _register(registry: Registry, *, repo_id: str, sha: str, classes: int, license: str | None) -> None:
    network = timm.create_model("resnet18", num_classes=classes, in_chans=1, layers=(1, 1, 1, 1), channels=(4, 8, 8, 8), stem_width=4)
    with registry.staging() as work:
        save_timm_checkpoint(model=network, folder=work, label_names=[f"{repo_id} {i}" for i in range(classes)],
                             input_size=(1, 28, 28), mean=(0.5,), std=(0.5,), license=license)
        files = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in work.iterdir()}
        registry.register(staged=work, repo_id=repo_id, sha=sha, spec=load_task_model(folder=work).spec, files=files, license=license)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    with Registry.open(tmp_path / "registry") as opened:
        _register(opened, repo_id="lab/five", sha=SHA_A, classes=5, license="apache-2.0")
        _register(opened, repo_id="lab/ten", sha=SHA_B, classes=10, license="mit")
        opened.record_skip(repo_id="lab/pickled", sha="c" * 40, reason="unsafe", message="weights only as pickle")
        yield opened


def test_every_model_behind_the_teachers_is_listed_once_with_repo_sha_and_license(registry: Registry) -> None:
    sources = run_sources(registry=registry, teachers=registry_teachers(registry=registry).infos)

    assert [(m.repo_id, m.sha, m.license, m.num_classes) for m in sources.models] == [
        ("lab/five", SHA_A, "apache-2.0", 5), ("lab/ten", SHA_B, "mit", 10),
    ]
    assert sources.models[1].label_names[9] == "lab/ten 9" and sources.models[0].library == "timm"


def test_each_teacher_index_maps_to_its_model_and_labels(registry: Registry) -> None:
    sources = run_sources(registry=registry, teachers=registry_teachers(registry=registry).infos)

    assert [(t.index, t.model) for t in sources.teachers] == [(0, 0), (1, 1)]
    assert sources.teachers[1].label_names == tuple(f"lab/ten {i}" for i in range(10))


def test_skipped_repos_are_listed_with_their_reason(registry: Registry) -> None:
    (skip,) = run_sources(registry=registry, teachers=registry_teachers(registry=registry).infos).skipped

    assert (skip.repo_id, skip.reason, skip.message) == ("lab/pickled", "unsafe", "weights only as pickle")


def test_written_file_reads_back_equal(registry: Registry, tmp_path: Path) -> None:
    teachers = registry_teachers(registry=registry).infos

    write_sources(run_dir=tmp_path / "run", registry=registry, teachers=teachers)

    assert read_sources(run_dir=tmp_path / "run") == run_sources(registry=registry, teachers=teachers)


def test_a_folder_holding_a_run_is_left_alone_unless_resuming(registry: Registry, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(b"a run")
    teachers = registry_teachers(registry=registry).infos

    assert write_sources(run_dir=run, registry=registry, teachers=teachers) is None
    assert not (run / SOURCES_NAME).exists()
    assert write_sources(run_dir=run, registry=registry, teachers=teachers, resume=True) == run / SOURCES_NAME


def test_meta_train_on_a_registry_writes_sources_json(registry: Registry, tmp_path: Path) -> None:
    meta_train(registry=registry, out_dir=tmp_path / "run", config=TINY_RUN, progress=False)

    sources = read_sources(run_dir=tmp_path / "run")
    assert sources is not None and [m.repo_id for m in sources.models] == ["lab/five", "lab/ten"]


def test_a_run_without_the_file_has_no_sources(tmp_path: Path) -> None:
    assert read_sources(run_dir=tmp_path) is None


@pytest.mark.parametrize(
    "change",
    [
        lambda d: d.update(format=2),
        lambda d: d["models"][0].update(sha="not-a-sha"),
        lambda d: d["models"][0].update(repo_id="../../etc"),
        lambda d: d["models"][0].update(num_classes=True),
        lambda d: d["models"][0].update(label_names="ALPHA"),
        lambda d: d["teachers"][0].update(model=7),
    ],
    ids=["format", "sha", "repo-id", "bool-count", "labels-not-list", "teacher-model-out-of-range"],
)
def test_a_malformed_file_is_refused(registry: Registry, tmp_path: Path, change) -> None:
    data = run_sources(registry=registry, teachers=registry_teachers(registry=registry).infos).to_dict()
    data = json.loads(json.dumps(data))
    change(data)
    (tmp_path / SOURCES_NAME).write_text(json.dumps(data))

    with pytest.raises(ConfigError):
        read_sources(run_dir=tmp_path)


def test_a_file_that_is_not_json_is_refused(tmp_path: Path) -> None:
    (tmp_path / SOURCES_NAME).write_text("{not json")

    with pytest.raises(ConfigError, match="not valid JSON"):
        read_sources(run_dir=tmp_path)


def test_teachers_not_from_a_registry_cannot_be_listed(registry: Registry) -> None:
    anonymous = replace(registry_teachers(registry=registry).infos[0], registry_id=None)

    with pytest.raises(ConfigError, match="registry"):
        run_sources(registry=registry, teachers=[anonymous])


def test_registry_teachers_describe_every_model_from_the_index_and_build_none(registry: Registry) -> None:
    _register(registry, repo_id="lab/pair", sha="d" * 40, classes=2, license=None)

    pool = registry_teachers(registry=registry)

    assert [(info.registry_id.split("--")[1], info.num_classes) for info in pool.infos] == [("five", 5), ("pair", 2), ("ten", 10)]
    assert pool.cache is not None and pool.cache.loads == 0
