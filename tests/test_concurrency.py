"""Two processes on one registry, and on one folder hub: neither loses the other's work."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from pathlib import Path

import pytest

from freehub.collect import collect
from freehub.hub import LocalHub
from freehub.registry import Registry
from test_collect import publish_to_folder

pytestmark = pytest.mark.skipif(os.name == "nt", reason="fork is POSIX")
_FORK = multiprocessing.get_context("fork")


def _collect_into(hub_root: Path, registry_root: Path, results) -> None:
    with Registry.open(registry_root) as registry:
        report = collect(hub=LocalHub(root=hub_root), registry=registry, tags=(), workers=2, progress=False)
    results.put((len(report.collected), len(report.already_present), len(report.skipped)))


def _push(hub_root: Path, folder: Path, rounds: int) -> None:
    hub = LocalHub(root=hub_root)
    for index in range(rounds):
        (folder / f"{folder.name}-{index}.txt").write_text(str(index))
        hub.upload_folder(repo_id="org/shared", folder=folder, commit_message=f"{folder.name} {index}")


def _run(target, *args) -> None:
    processes = [_FORK.Process(target=target, args=arguments) for arguments in args]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [process.exitcode for process in processes] == [0] * len(processes)


def test_two_collect_runs_on_one_registry_register_each_model_once(zoo, tmp_path: Path) -> None:
    for org in ("a", "b"):
        publish_to_folder(tmp_path / "hub", org=org, teachers=zoo)
    results = _FORK.Queue()
    _run(_collect_into, *[(tmp_path / "hub", tmp_path / "registry", results)] * 2)
    reports = [results.get(timeout=5) for _ in range(2)]
    assert all((collected + present, skipped) == (2 * len(zoo), 0) for collected, present, skipped in reports)
    registry = Registry.open(tmp_path / "registry")
    records = registry.list(all_versions=True)
    assert len(records) == 2 * len(zoo)
    assert sorted(p.name for p in (tmp_path / "registry" / "models").iterdir()) == sorted(r.id for r in records)
    assert list((tmp_path / "registry" / "staging").iterdir()) == []
    for record in records:
        for name, digest in record.files.items():
            assert hashlib.sha256((record.path / name).read_bytes()).hexdigest() == digest


def test_two_processes_pushing_to_one_folder_hub_repo_lose_no_update(tmp_path: Path) -> None:
    hub = LocalHub(root=tmp_path / "hub")
    hub.create_repo(repo_id="org/shared")
    folders = [tmp_path / "left", tmp_path / "right"]
    for folder in folders:
        folder.mkdir()
    rounds = 12
    _run(_push, *[(tmp_path / "hub", folder, rounds) for folder in folders])
    names = {file.path for file in hub.repo_info(repo_id="org/shared").files}
    assert names == {f"{folder.name}-{index}.txt" for folder in folders for index in range(rounds)}
