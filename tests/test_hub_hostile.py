"""A remote Hub that misbehaves: tokens stay on their endpoint, and every request ends in bounded time and size."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from freehub.errors import (
    ConfigError,
    HubConnectionError,
    HubError,
    HubLimitError,
    IntegrityError,
    RepoNotFoundError,
)
from freehub.hub import LocalHub, RemoteHub, RetryPolicy, endpoint_token, open_hub
from freehub.limits import Limits, Timeouts
from hub_server import HubServer
from test_hub import FAST_RETRY, READ_TOKEN, WRITE_TOKEN, model_files

NO_RETRY = RetryPolicy(max_retries=0)
TIGHT = Timeouts(connect_s=1.0, read_s=0.2, request_s=1.0, download_s=0.5)


@pytest.fixture
def mirror(hub_server) -> Iterator[HubServer]:
    """A second server on another port (another origin) serving the same repos."""
    other = HubServer(root=hub_server.root).start()
    yield other
    other.stop()


def test_a_next_page_link_to_another_host_is_not_followed(hub_server, mirror, hub_org, monkeypatch) -> None:
    monkeypatch.setattr(hub_server, "page_size", 1)
    monkeypatch.setattr(hub_server, "link_base", mirror.url)
    for name in ("a", "b"):
        hub_server.add_repo(f"{hub_org}/{name}", files=model_files())
    hub = RemoteHub(endpoint=hub_server.url, token=WRITE_TOKEN, retry=FAST_RETRY)
    with pytest.raises(HubError, match="another host"):
        list(hub.search(author=hub_org))
    assert mirror.requests == []


def test_a_redirect_to_another_host_gets_no_token(hub_server, mirror, hub_org, tmp_path: Path) -> None:
    sha = hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.misbehave_next(path_prefix=f"/{hub_org}/a/resolve/", kind="redirect", value=mirror.url)
    hub = RemoteHub(endpoint=hub_server.url, token=READ_TOKEN, retry=FAST_RETRY)
    paths = hub.download(repo_id=f"{hub_org}/a", revision=sha, filenames=["config.json"], local_dir=tmp_path)
    assert paths["config.json"].read_bytes() == model_files()["config.json"]
    [redirected] = mirror.requests_to("/resolve/")
    assert not redirected.token_seen
    assert all(request.token_seen for request in hub_server.requests_to(f"/{hub_org}/a/"))


def test_the_ambient_token_goes_only_to_its_own_endpoint(hub_server, mirror, hub_org, monkeypatch) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    open_hub(mirror.url).repo_info(repo_id=f"{hub_org}/a")
    open_hub(hub_server.url).repo_info(repo_id=f"{hub_org}/a")
    assert [r.token_seen for r in mirror.requests_to(f"/api/models/{hub_org}/a")] == [False]
    assert [r.token_seen for r in hub_server.requests_to(f"/api/models/{hub_org}/a")] == [True]


def test_the_ambient_token_never_travels_over_plain_http_to_another_machine(monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", READ_TOKEN)
    monkeypatch.setenv("HF_ENDPOINT", "http://hub.example.org")
    assert endpoint_token(endpoint="http://hub.example.org", token=None) is None
    assert endpoint_token(endpoint="http://hub.example.org", token=WRITE_TOKEN) == WRITE_TOKEN
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org")
    assert endpoint_token(endpoint="https://hub.example.org/", token=None) == READ_TOKEN
    assert endpoint_token(endpoint="https://hub.example.org:8443", token=None) is None


def test_a_silent_server_times_out(hub_server, hub_org) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.misbehave_next(path_prefix=f"/api/models/{hub_org}/a", kind="silent", count=10)
    hub = RemoteHub(endpoint=hub_server.url, retry=RetryPolicy(max_retries=2, base_wait_s=0.01), timeouts=TIGHT)
    start = time.monotonic()
    with pytest.raises(HubConnectionError, match="did not answer in time"):
        hub.repo_info(repo_id=f"{hub_org}/a")
    assert time.monotonic() - start < 3
    assert len(hub_server.requests_to(f"/api/models/{hub_org}/a")) == 3


def test_a_trickling_download_is_cut_off(hub_server, hub_org, tmp_path: Path) -> None:
    sha = hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.misbehave_next(path_prefix=f"/{hub_org}/a/resolve/", kind="slow", value=0.05)
    hub = RemoteHub(endpoint=hub_server.url, retry=NO_RETRY, timeouts=TIGHT)
    start = time.monotonic()
    with pytest.raises(HubLimitError, match="took longer"):
        hub.download(repo_id=f"{hub_org}/a", revision=sha, filenames=["model.safetensors"], local_dir=tmp_path)
    assert time.monotonic() - start < 3
    assert list(tmp_path.iterdir()) == []


def test_a_body_larger_than_listed_is_cut_off(hub_server, hub_org, tmp_path: Path) -> None:
    sha = hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.misbehave_next(path_prefix=f"/{hub_org}/a/resolve/", kind="oversize", value=50_000_000)
    hub = RemoteHub(endpoint=hub_server.url, retry=NO_RETRY, timeouts=TIGHT)
    with pytest.raises(IntegrityError, match="more than the 64 bytes"):
        hub.download(repo_id=f"{hub_org}/a", revision=sha, filenames=["model.safetensors"], local_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_api_answer_over_the_size_limit_is_refused(hub_server, hub_org) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.misbehave_next(path_prefix=f"/api/models/{hub_org}/a", kind="oversize", value=50_000_000)
    hub = RemoteHub(endpoint=hub_server.url, retry=NO_RETRY, timeouts=Timeouts(max_api_bytes=1_000_000))
    with pytest.raises(HubLimitError, match="limit"):
        hub.repo_info(repo_id=f"{hub_org}/a")


def test_a_malformed_answer_is_a_hub_error(hub_server, hub_org) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.misbehave_next(path_prefix=f"/api/models/{hub_org}/a", kind="oversize", value=3)
    with pytest.raises(HubError, match="not JSON"):
        RemoteHub(endpoint=hub_server.url, retry=NO_RETRY).repo_info(repo_id=f"{hub_org}/a")


def test_an_enormous_retry_after_is_capped(hub_server, hub_org) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.fail_next(path_prefix=f"/api/models/{hub_org}/a", count=1, status=429, retry_after=86_400)
    hub = RemoteHub(endpoint=hub_server.url, retry=RetryPolicy(max_retries=1, max_retry_after_s=0.05))
    start = time.monotonic()
    assert hub.repo_info(repo_id=f"{hub_org}/a").sha == hub_server.head(f"{hub_org}/a")
    assert time.monotonic() - start < 2
    assert len(hub_server.requests_to(f"/api/models/{hub_org}/a")) == 2


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_a_same_size_edit_of_any_file_is_refused(hub_server, hub_org, tmp_path: Path, name: str) -> None:
    # Blobs are stored by content: bytes no other test uses, so that the edit reaches this repo only.
    files = model_files(weights=hub_org.encode().ljust(64, b"v"))
    files["config.json"] = f'{{"tampered": "{hub_org}"}}'.encode()
    sha = hub_server.add_repo(f"{hub_org}/a", files=files)
    original = files[name]
    hub_server.blob_path(f"{hub_org}/a", name).write_bytes(original[:-2] + bytes([original[-2] ^ 1]) + original[-1:])
    hub = RemoteHub(endpoint=hub_server.url, retry=NO_RETRY)
    with pytest.raises(IntegrityError, match="blob id" if name == "config.json" else "sha256"):
        hub.download(repo_id=f"{hub_org}/a", revision=sha, filenames=[name], local_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_address_that_is_not_a_hub_is_a_config_error(hub_server) -> None:
    hub = RemoteHub(endpoint=f"{hub_server.url}/not-a-hub", retry=NO_RETRY)
    with pytest.raises(ConfigError, match="does not answer like a Hub"):
        list(hub.search(tags=["x"]))


# --- folder hubs: nothing outside the root, nothing read whole ------------------------------------------


def _folder_repo(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, data in model_files().items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)


@pytest.mark.parametrize("linked", ["repo", "org"])
def test_a_symlinked_folder_is_not_part_of_a_folder_hub(tmp_path: Path, linked: str) -> None:
    private = tmp_path / "home" / "me"
    _folder_repo(private / "secrets")
    (tmp_path / "hub" / "org").mkdir(parents=True)
    if linked == "repo":
        (tmp_path / "hub" / "org" / "secrets").symlink_to(private / "secrets", target_is_directory=True)
    else:
        (tmp_path / "hub" / "me").symlink_to(private, target_is_directory=True)
    repo_id = "org/secrets" if linked == "repo" else "me/secrets"
    hub = LocalHub(root=tmp_path / "hub")
    assert list(hub.search()) == []
    with pytest.raises(RepoNotFoundError):
        hub.repo_info(repo_id=repo_id)
    assert not (tmp_path / "hub" / ".freehub" / "objects").exists()


def test_a_folder_hub_card_over_the_limit_is_not_read(tmp_path: Path) -> None:
    _folder_repo(tmp_path / "hub" / "org" / "a")
    hub = LocalHub(root=tmp_path / "hub", limits=Limits(max_card_bytes=64))
    assert list(hub.search(tags=["glyphs"])) == []
    assert [hit.repo_id for hit in LocalHub(root=tmp_path / "hub").search(tags=["glyphs"])] == ["org/a"]


def test_a_folder_hub_file_that_grew_after_listing_is_cut_off(tmp_path: Path) -> None:
    _folder_repo(tmp_path / "hub" / "org" / "a")
    hub = LocalHub(root=tmp_path / "hub")
    sha = hub.repo_info(repo_id="org/a").sha
    with open(tmp_path / "hub" / "org" / "a" / "model.safetensors", "ab") as grown:
        grown.write(b"\0" * 1_000_000)
    # The pinned revision is served from the hub's store, never from the grown file.
    paths = hub.download(repo_id="org/a", revision=sha, filenames=["model.safetensors"], local_dir=tmp_path / "out")
    assert paths["model.safetensors"].read_bytes() == model_files()["model.safetensors"]


def test_a_missing_folder_is_not_a_hub(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no Hub"):
        list(LocalHub(root=tmp_path / "no-such-folder").search())
