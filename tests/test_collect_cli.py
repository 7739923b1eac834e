"""`freehub collect` options, each shown to change what a crawl of a folder Hub or the test server registers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors

from freehub.cli.app import main
from test_collect import card, publish_to_folder, write_repo


def _collect(capsys, hub: str, registry: Path, *options: str) -> dict:
    with pytest.raises(SystemExit) as stop:
        main(["collect", "--hub", hub, "--registry", str(registry), "--json", *options])
    assert stop.value.code in (None, 0)
    printed = capsys.readouterr().out
    return json.loads(printed[printed.index("{"):])


def _collected(report: dict) -> list[str]:
    return sorted(record["repo_id"] for record in report["collected"])


@pytest.fixture
def folder_hub(zoo, tmp_path: Path) -> Path:
    """local/{cats,digits,birds,generic} and other/cats."""
    publish_to_folder(tmp_path / "hub", org="local", teachers=zoo)
    publish_to_folder(tmp_path / "hub", org="other", teachers={"cats": zoo["cats"]})
    return tmp_path / "hub"


@pytest.mark.parametrize("options, expected", [
    ((), ["local/birds", "local/cats", "local/digits", "local/generic", "other/cats"]),
    (("--library", "transformers"), ["local/birds", "local/generic"]),
    (("--author", "other"), ["other/cats"]),
    (("--search", "dig"), ["local/digits"]),
])
def test_each_filter_narrows_the_crawl(folder_hub: Path, tmp_path: Path, capsys, options, expected) -> None:
    assert _collected(_collect(capsys, str(folder_hub), tmp_path / "registry", *options)) == expected


def test_limit_bounds_the_hits_looked_at(folder_hub: Path, tmp_path: Path, capsys) -> None:
    report = _collect(capsys, str(folder_hub), tmp_path / "registry", "--limit", "2")
    assert len(report["collected"]) + len(report["skipped"]) == 2
    rest = _collect(capsys, str(folder_hub), tmp_path / "registry")
    assert len(rest["collected"]) == 3 and len(rest["already_present"]) == 2


def test_allow_pickle_registers_tensor_pickles_skipped_without_it(zoo, tmp_path: Path, capsys) -> None:
    buffer = io.BytesIO()
    torch.save(load_safetensors(zoo["cats"].files["model.safetensors"]), buffer)
    files = {"config.json": zoo["cats"].files["config.json"], "pytorch_model.bin": buffer.getvalue(), "README.md": card(library="timm")}
    write_repo(tmp_path / "hub" / "local" / "pickled", files)
    refused = _collect(capsys, str(tmp_path / "hub"), tmp_path / "registry")
    assert refused["skipped_by_reason"] == {"pickle_only": ["local/pickled"]}
    allowed = _collect(capsys, str(tmp_path / "hub"), tmp_path / "registry", "--allow-pickle")
    assert _collected(allowed) == ["local/pickled"] and allowed["collected"][0]["pickled"] is True


def test_max_file_mb_refuses_larger_weights_before_download(zoo, tmp_path: Path, capsys) -> None:
    publish_to_folder(tmp_path / "hub", org="local", teachers={"cats": zoo["cats"]})
    size_mb = len(zoo["cats"].files["model.safetensors"]) / 2**20
    refused = _collect(capsys, str(tmp_path / "hub"), tmp_path / "small", "--max-file-mb", f"{size_mb / 2:.6f}")
    assert refused["skipped_by_reason"] == {"too_large": ["local/cats"]}
    allowed = _collect(capsys, str(tmp_path / "hub"), tmp_path / "large", "--max-file-mb", f"{size_mb * 2:.6f}")
    assert _collected(allowed) == ["local/cats"]


def test_retry_skipped_fetches_again_a_revision_skipped_for_its_bytes(zoo, hub_server, hub_org, tmp_path, capsys) -> None:
    files = dict(zoo["cats"].files)
    files["README.md"] = card(library="timm") + f"\nServed to {hub_org}.\n".encode()
    hub_server.add_repo(f"{hub_org}/flaky", files=files)
    blob = hub_server.blob_path(f"{hub_org}/flaky", "README.md")
    blob.write_bytes(files["README.md"].replace(b"Served", b"served"))
    options = ("--author", hub_org)
    first = _collect(capsys, hub_server.url, tmp_path / "registry", *options)
    assert first["skipped_by_reason"] == {"checksum_mismatch": [f"{hub_org}/flaky"]}
    blob.write_bytes(files["README.md"])  # the mirror serves the right bytes again
    downloads = len(hub_server.requests_to(f"/{hub_org}/flaky/resolve/"))
    again = _collect(capsys, hub_server.url, tmp_path / "registry", *options)
    assert again["skipped_by_reason"] == first["skipped_by_reason"]
    assert len(hub_server.requests_to(f"/{hub_org}/flaky/resolve/")) == downloads
    retried = _collect(capsys, hub_server.url, tmp_path / "registry", *options, "--retry-skipped")
    assert _collected(retried) == [f"{hub_org}/flaky"] and retried["skipped"] == []
