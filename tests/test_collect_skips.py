"""Collect's remaining paths: a sharded checkpoint, and each skip reason a Hub or a loader can cause
(not_found, missing_file, private, load_failed), each recorded while the crawl goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from freehub.collect import collect
from freehub.errors import DataError
from freehub.hub import RemoteHub, RetryPolicy, open_hub
from freehub.registry import Registry
from test_hub import READ_TOKEN

NO_RETRY = RetryPolicy(max_retries=0)


@pytest.fixture
def cats(zoo) -> dict[str, bytes]:
    return dict(zoo["cats"].files)


def _sharded(files: dict[str, bytes]) -> dict[str, bytes]:
    tensors = load_safetensors(files["model.safetensors"])
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    sharded = {name: data for name, data in files.items() if name != "model.safetensors"}
    for shard, keys in shards.items():
        sharded[shard] = save_safetensors({key: tensors[key] for key in keys})
    weight_map = {key: shard for shard, keys in shards.items() for key in keys}
    sharded["model.safetensors.index.json"] = json.dumps({"metadata": {}, "weight_map": weight_map}).encode()
    return sharded


def test_a_sharded_checkpoint_is_collected_and_rebuilds_the_teacher(zoo, cats, hub_server, hub_org, tmp_path) -> None:
    files = _sharded(cats)
    hub_server.add_repo(f"{hub_org}/sharded", files=files)
    registry = Registry.open(tmp_path)
    (record,) = collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, progress=False).collected
    assert set(record.files) == set(files)
    images = torch.rand(3, *zoo["cats"].input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(registry.load(record.id)(images), zoo["cats"].logits(images), atol=1e-5, rtol=1e-4)


def _crawl(hub, hub_server, org: str, tmp_path: Path, valid: dict[str, bytes]):
    """Collect ``org`` (one valid repo beside the one under test); returns the only skip."""
    hub_server.add_repo(f"{org}/valid", files=valid)
    registry = Registry.open(tmp_path / "registry")
    report = collect(hub=hub, registry=registry, author=org, progress=False)
    assert [r.repo_id for r in report.collected] == [f"{org}/valid"]
    assert [p.name for p in (tmp_path / "registry" / "models").iterdir()] == [report.collected[0].id]
    (skip,) = report.skipped
    assert registry.skipped() == [skip]
    return skip


def test_a_repo_gone_between_search_and_listing_is_not_found(cats, hub_server, hub_org, tmp_path) -> None:
    hub_server.add_repo(f"{hub_org}/gone", files=cats)
    hub_server.fail_next(path_prefix=f"/api/models/{hub_org}/gone", status=404)
    skip = _crawl(open_hub(hub_server.url), hub_server, hub_org, tmp_path, cats)
    assert (skip.repo_id, skip.reason) == (f"{hub_org}/gone", "not_found")


def test_a_listed_file_the_hub_does_not_serve_is_missing_file(cats, hub_server, hub_org, tmp_path) -> None:
    hub_server.add_repo(f"{hub_org}/holey", files=cats)
    hub_server.fail_next(path_prefix=f"/{hub_org}/holey/resolve/", status=404)
    hub = RemoteHub(endpoint=hub_server.url, retry=NO_RETRY)
    skip = _crawl(hub, hub_server, hub_org, tmp_path, cats)
    assert (skip.repo_id, skip.reason) == (f"{hub_org}/holey", "missing_file")


def test_a_private_repo_whose_files_are_refused_is_private(cats, hub_server, hub_org, tmp_path) -> None:
    hub_server.add_repo(f"{hub_org}/secret", files=cats, private=True)
    hub_server.fail_next(path_prefix=f"/{hub_org}/secret/resolve/", status=403)
    hub = RemoteHub(endpoint=hub_server.url, token=READ_TOKEN, retry=NO_RETRY)
    skip = _crawl(hub, hub_server, hub_org, tmp_path, cats)
    assert (skip.repo_id, skip.reason) == (f"{hub_org}/secret", "private")


@pytest.mark.parametrize("error, message", [
    (DataError("labels in a shape nobody expected"), "labels in a shape nobody expected"),
    (ZeroDivisionError("division by zero"), "ZeroDivisionError: division by zero"),
])
def test_a_loader_failure_no_check_foresaw_is_load_failed_and_permanent(cats, hub_server, hub_org, tmp_path, monkeypatch,
                                                                         error, message) -> None:
    from freehub import collect as collect_module

    real = collect_module.load_task_model

    def load(**kwargs):
        # Only the repo under test fails: its config carries the marker.
        if b"load-me-not" in (kwargs["folder"] / "config.json").read_bytes():
            raise error
        return real(**kwargs)

    monkeypatch.setattr("freehub.collect.load_task_model", load)
    config = {**json.loads(cats["config.json"]), "note": "load-me-not"}
    hub_server.add_repo(f"{hub_org}/odd", files={**cats, "config.json": json.dumps(config).encode()})
    skip = _crawl(open_hub(hub_server.url), hub_server, hub_org, tmp_path, cats)
    assert (skip.repo_id, skip.reason, skip.message) == (f"{hub_org}/odd", "load_failed", message)
    seen = len(hub_server.requests_to(f"/{hub_org}/odd/resolve/"))
    again = collect(hub=open_hub(hub_server.url), registry=Registry.open(tmp_path / "registry"), author=hub_org, progress=False)
    assert [s.reason for s in again.skipped] == ["load_failed"]
    assert len(hub_server.requests_to(f"/{hub_org}/odd/resolve/")) == seen
