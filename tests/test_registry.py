"""The registry index and its on-disk layout, without building any model."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
from pathlib import Path

import pytest

from freehub.errors import ConfigError, RegistryError
from freehub.registry import SPEC_FILENAME, Registry, default_registry_path, model_id_for
from freehub.task_model import ModelSpec

SHA_A = "a" * 40
SHA_B = "b" * 40


def _spec(labels: tuple[str, ...] = ("golden retriever", "LABEL_1", "Tabby Cat")) -> ModelSpec:
    return ModelSpec(
        library="timm",
        architecture="resnet10t",
        label_names=labels,
        input_size=(3, 32, 32),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        interpolation="bicubic",
        head_names=("fc.weight", "fc.bias"),
        feature_dim=64,
        param_count=1234,
    )


def _register(registry: Registry, *, repo_id: str = "org/cats", sha: str = SHA_A, labels: tuple[str, ...] | None = None):
    with registry.staging() as work:
        (work / "model.safetensors").write_bytes(b"weights")
        return registry.register(
            staged=work,
            repo_id=repo_id,
            sha=sha,
            spec=_spec(labels) if labels else _spec(),
            files={"model.safetensors": "f" * 64},
            license="apache-2.0",
            tags=("few-shot", "image-classification"),
        )


def test_register_indexes_every_field_and_moves_the_folder(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path / "reg")
    record = _register(registry)
    assert record.id == model_id_for(repo_id="org/cats", sha=SHA_A) == "org--cats--aaaaaaaaaaaa"
    assert (record.version, record.status, record.library, record.architecture) == (1, "current", "timm", "resnet10t")
    assert (record.input_size, record.mean, record.std, record.interpolation) == ((3, 32, 32), (0.5,) * 3, (0.25,) * 3, "bicubic")
    assert record.num_classes == 3 and record.param_count == 1234 and record.feature_dim == 64
    assert record.label_keys == ("golden_retriever", None, "tabby_cat")
    assert record.head_names == ("fc.weight", "fc.bias")
    assert (record.license, record.tags, record.files) == ("apache-2.0", ("few-shot", "image-classification"), {"model.safetensors": "f" * 64})
    assert (record.path / "model.safetensors").read_bytes() == b"weights"
    assert ModelSpec.from_dict(json.loads((record.path / SPEC_FILENAME).read_text())) == _spec()
    assert list((tmp_path / "reg" / "staging").iterdir()) == []


def test_registering_the_same_revision_twice_keeps_one_row(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    first = _register(registry)
    second = _register(registry)
    assert second == first
    assert [r.id for r in registry.list(all_versions=True)] == [first.id]
    assert list((tmp_path / "staging").iterdir()) == []


def test_a_new_commit_becomes_the_current_version(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    old = _register(registry, sha=SHA_A)
    new = _register(registry, sha=SHA_B)
    assert new.version == 2
    assert [r.id for r in registry.list()] == [new.id]
    assert [(r.id, r.status) for r in registry.list(all_versions=True)] == [(old.id, "superseded"), (new.id, "current")]


def test_removing_the_current_version_promotes_the_previous_one(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    old = _register(registry, sha=SHA_A)
    new = _register(registry, sha=SHA_B)
    registry.remove(new.id)
    assert not new.path.exists()
    assert [(r.id, r.status) for r in registry.list(all_versions=True)] == [(old.id, "current")]
    with pytest.raises(RegistryError, match="no model"):
        registry.get(new.id)


def test_summaries_show_what_the_full_records_say_in_the_same_order(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    _register(registry, repo_id="org/dogs")
    _register(registry, repo_id="org/cats", sha=SHA_A)
    _register(registry, repo_id="org/cats", sha=SHA_B)

    for all_versions in (False, True):
        assert [
            (s.id, s.version, s.status, s.library, s.architecture, s.num_classes, s.input_size)
            for s in registry.summaries(all_versions=all_versions)
        ] == [
            (r.id, r.version, r.status, r.library, r.architecture, r.num_classes, r.input_size)
            for r in registry.list(all_versions=all_versions)
        ]


def test_list_filters_by_library_and_repo(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    _register(registry, repo_id="org/cats")
    _register(registry, repo_id="org/dogs")
    assert [r.repo_id for r in registry.list(repo_id="org/dogs")] == ["org/dogs"]
    assert registry.list(library="transformers") == []
    assert len(registry.list(library="timm")) == 2


def test_skip_records_keep_their_first_time_until_the_reason_changes(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    first = registry.record_skip(repo_id="org/bad", sha=SHA_A, reason="corrupt_weights", message="truncated")
    again = registry.record_skip(repo_id="org/bad", sha=SHA_A, reason="corrupt_weights", message="truncated")
    assert again == first
    changed = registry.record_skip(repo_id="org/bad", sha=SHA_A, reason="pickle_only", message="only .bin")
    assert registry.skipped() == [changed]
    assert registry.find_skip(repo_id="org/bad", sha=SHA_B) is None


def test_registering_a_skipped_revision_clears_its_skip(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    registry.record_skip(repo_id="org/cats", sha=SHA_A, reason="pickle_only", message="only .bin")
    _register(registry)
    assert registry.skipped() == []


def test_open_sweeps_unreferenced_model_folders_and_unheld_staging(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    kept = _register(registry)
    registry.close()
    orphan = tmp_path / "models" / "org--half--cccccccccccc"
    orphan.mkdir()
    # Debris of crashed runs: a work folder whose lock file nobody holds, and one without a lock file.
    (tmp_path / "staging" / "0123").mkdir()
    (tmp_path / "staging" / "0123.lock").touch()
    (tmp_path / "staging" / "4567").mkdir()
    Registry.open(tmp_path)
    assert not orphan.exists() and list((tmp_path / "staging").iterdir()) == []
    assert kept.path.exists()


def test_open_leaves_what_the_registry_did_not_name_alone(tmp_path: Path) -> None:
    Registry.open(tmp_path).close()
    notes = tmp_path / "models" / "my-notes"
    notes.mkdir()
    Registry.open(tmp_path).close()
    assert notes.is_dir()


def test_open_refuses_a_folder_whose_models_are_not_a_registry_s(tmp_path: Path) -> None:
    mine = tmp_path / "models" / "resnet" / "weights.pt"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"precious")
    with pytest.raises(ConfigError, match="not a freehub registry"):
        Registry.open(tmp_path)
    assert mine.read_bytes() == b"precious" and not (tmp_path / "index.sqlite").exists()


def test_a_registry_made_before_the_marker_is_still_opened(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    record = _register(registry)
    registry.close()
    (tmp_path / ".freehub-registry").unlink()
    assert Registry.open(tmp_path).get(record.id).path.is_dir()


def _hold_staging(root: Path, ready, release) -> None:
    registry = Registry.open(root)
    with registry.staging() as work:
        (work / "part").write_bytes(b"in progress")
        ready.set()
        release.wait(30)


@pytest.mark.skipif(os.name == "nt", reason="fork is POSIX")
def test_another_process_s_staging_survives_until_that_process_dies(tmp_path: Path) -> None:
    Registry.open(tmp_path).close()
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    child = context.Process(target=_hold_staging, args=(tmp_path, ready, release))
    child.start()
    try:
        assert ready.wait(30)
        [work] = [p for p in (tmp_path / "staging").iterdir() if p.is_dir()]
        Registry.open(tmp_path).close()
        assert (work / "part").read_bytes() == b"in progress"
    finally:
        child.kill()
        child.join()
    Registry.open(tmp_path).close()
    assert list((tmp_path / "staging").iterdir()) == []


def test_a_row_the_index_refuses_leaves_no_folder(tmp_path: Path) -> None:
    registry = Registry.open(tmp_path)
    broken = ModelSpec(library="timm", architecture=None, label_names=("a", "b"), input_size=(3, 8, 8), mean=(0.5,) * 3, std=(0.5,) * 3)  # type: ignore[arg-type]
    with registry.staging() as work, pytest.raises(sqlite3.IntegrityError):
        registry.register(staged=work, repo_id="org/cats", sha=SHA_A, spec=broken, files={})
    assert list((tmp_path / "models").iterdir()) == []
    assert registry.list(all_versions=True) == []


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    Registry.open(tmp_path).close()
    with sqlite3.connect(tmp_path / "index.sqlite") as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(RegistryError, match="schema version 99"):
        Registry.open(tmp_path)


def test_default_location_follows_freehub_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FREEHUB_HOME", str(tmp_path))
    assert default_registry_path() == tmp_path / "registry"
