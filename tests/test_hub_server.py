"""The local Hub server speaks enough of the Hub API for the real huggingface_hub, timm and transformers."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest
import torch
from huggingface_hub import HfApi, hf_hub_download

WRITE_TOKEN = "hf_test_write"


def test_hf_api_lists_pages_through_the_link_header(hub_server, hub_org: str, monkeypatch) -> None:
    monkeypatch.setattr(hub_server, "page_size", 2)
    for index in range(5):
        hub_server.add_repo(f"{hub_org}/m{index}", files={"README.md": b"---\ntags: [paged]\n---\n"})
    before = len(hub_server.requests)
    ids = [model.id for model in HfApi().list_models(author=hub_org, filter="paged")]
    assert ids == [f"{hub_org}/m{index}" for index in range(5)]
    assert len([r for r in hub_server.requests[before:] if r.path == "/api/models"]) == 3


def test_hf_hub_download_reads_lfs_metadata_and_pins_the_commit(hub_server, hub_org: str, tmp_path: Path) -> None:
    sha = hub_server.add_repo(f"{hub_org}/a", files={"model.safetensors": b"\x00" * 1000})
    path = hf_hub_download(f"{hub_org}/a", "model.safetensors", revision=sha, local_dir=tmp_path)
    assert Path(path).read_bytes() == b"\x00" * 1000
    head = hub_server.requests_to(f"/{hub_org}/a/resolve/{sha}/model.safetensors")[0]
    assert head.method == "HEAD"


def test_resolve_honours_range_requests(hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/a", files={"data.txt": b"0123456789"})
    response = httpx2.get(f"{hub_server.url}/{hub_org}/a/resolve/main/data.txt", headers={"Range": "bytes=2-4"})
    assert (response.status_code, response.content) == (206, b"234")
    assert response.headers["Content-Range"] == "bytes 2-4/10"


def test_writes_need_a_valid_token(hub_server, hub_org: str) -> None:
    body = {"name": "x", "organization": hub_org}
    anonymous = httpx2.post(f"{hub_server.url}/api/repos/create", json=body)
    bad = httpx2.post(f"{hub_server.url}/api/repos/create", json=body, headers={"Authorization": "Bearer nope"})
    reader = httpx2.post(f"{hub_server.url}/api/repos/create", json=body,
                         headers={"Authorization": "Bearer hf_test_read"})
    assert (anonymous.status_code, bad.status_code, reader.status_code) == (401, 401, 403)


def test_create_repo_conflict_carries_the_url(hub_server, hub_org: str) -> None:
    api = HfApi(token=WRITE_TOKEN)
    first = api.create_repo(f"{hub_org}/dup")
    assert api.create_repo(f"{hub_org}/dup", exist_ok=True) == first


def test_injected_failures_are_served_then_cleared(hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/a", files={"a.txt": b"a"})
    hub_server.fail_next(path_prefix=f"/api/models/{hub_org}/a", count=1, status=429, retry_after=7)
    first = httpx2.get(f"{hub_server.url}/api/models/{hub_org}/a")
    second = httpx2.get(f"{hub_server.url}/api/models/{hub_org}/a")
    assert (first.status_code, first.headers["Retry-After"], second.status_code) == (429, "7", 200)


def test_timm_push_and_create_model_round_trip(hub_server, hub_org: str) -> None:
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False, num_classes=3)
    timm.models.push_to_hf_hub(model, f"{hub_org}/tiny-timm", token=WRITE_TOKEN)
    loaded = timm.create_model(f"hf-hub:{hub_org}/tiny-timm", pretrained=True)
    assert loaded.num_classes == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_transformers_push_and_from_pretrained_round_trip(hub_server, hub_org: str) -> None:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    model = transformers.ResNetForImageClassification(config)
    model.push_to_hub(f"{hub_org}/tiny-resnet", token=WRITE_TOKEN)
    loaded = transformers.AutoModelForImageClassification.from_pretrained(f"{hub_org}/tiny-resnet")
    assert loaded.config.num_labels == 3
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_tree_lists_folders_or_recurses(hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/a", files={"a.txt": b"a", "sub/b.safetensors": b"bb"})
    api = HfApi()
    top = {entry.path for entry in api.list_repo_tree(f"{hub_org}/a")}
    deep = {entry.path: entry for entry in api.list_repo_tree(f"{hub_org}/a", recursive=True)}
    assert top == {"a.txt", "sub"}
    assert set(deep) == {"a.txt", "sub/b.safetensors"} and deep["sub/b.safetensors"].lfs.size == 2


def test_whoami_knows_the_token(hub_server) -> None:
    assert HfApi(token=WRITE_TOKEN).whoami()["auth"]["accessToken"]["role"] == "write"
