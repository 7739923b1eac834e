"""freehub.hub: the same behaviour from a remote Hub (the local test server) and from a local folder."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from freehub.errors import (
    ConfigError,
    EntryNotFoundError,
    HubConnectionError,
    HubError,
    HubPermissionError,
    RepoNotFoundError,
)
from freehub.hub import Hub, LocalHub, RemoteHub, RetryPolicy, open_hub

WRITE_TOKEN = "hf_test_write"
READ_TOKEN = "hf_test_read"
FAST_RETRY = RetryPolicy(max_retries=3, base_wait_s=0.01, max_wait_s=0.02)


def card(*, tags: list[str], library: str = "timm", pipeline: str = "image-classification") -> bytes:
    lines = ["---", f"library_name: {library}", f"pipeline_tag: {pipeline}", "license: apache-2.0", "tags:"]
    lines += [f"- {tag}" for tag in tags]
    return ("\n".join(lines) + "\n---\n# A test model\n").encode()


def model_files(*, tags: list[str] = ("glyphs",), library: str = "timm", weights: bytes = b"w" * 64) -> dict:
    return {
        "README.md": card(tags=list(tags), library=library),
        "config.json": b'{"num_classes": 5}',
        "model.safetensors": weights,
        "extra/labels.txt": b"a\nb\n",
    }


@dataclass
class Source:
    """A hub under test plus the way to put repos into it behind its back."""

    kind: str
    hub: Hub
    seed: Callable[[str, dict[str, bytes]], None]


@pytest.fixture(params=["remote", "local"])
def source(request: pytest.FixtureRequest, hub_server, tmp_path: Path) -> Source:
    if request.param == "remote":
        hub = RemoteHub(endpoint=hub_server.url, token=WRITE_TOKEN, retry=FAST_RETRY)
        return Source("remote", hub, lambda repo_id, files: hub_server.add_repo(repo_id, files=files))
    root = tmp_path / "local-hub"

    def seed(repo_id: str, files: dict[str, bytes]) -> None:
        for name, data in files.items():
            path = root / repo_id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)

    return Source("local", LocalHub(root=root), seed)


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# --- search ------------------------------------------------------------------------------------------


def test_search_by_tag(source: Source, hub_org: str) -> None:
    source.seed(f"{hub_org}/cats", model_files(tags=["cats", "glyphs"]))
    source.seed(f"{hub_org}/dogs", model_files(tags=["dogs"]))
    hits = list(source.hub.search(tags=["glyphs"], author=hub_org))
    assert [hit.repo_id for hit in hits] == [f"{hub_org}/cats"]
    assert {"glyphs", "timm", "image-classification", "license:apache-2.0"} <= set(hits[0].tags)


def test_search_by_library(source: Source, hub_org: str) -> None:
    source.seed(f"{hub_org}/a", model_files(library="timm"))
    source.seed(f"{hub_org}/b", model_files(library="transformers"))
    hits = list(source.hub.search(library="transformers", author=hub_org))
    assert [(hit.repo_id, hit.library) for hit in hits] == [(f"{hub_org}/b", "transformers")]


def test_search_by_pipeline_tag(source: Source, hub_org: str) -> None:
    source.seed(f"{hub_org}/a", model_files())
    source.seed(f"{hub_org}/b", {"README.md": card(tags=["x"], pipeline="object-detection")})
    hits = list(source.hub.search(pipeline_tag="object-detection", author=hub_org))
    assert [hit.repo_id for hit in hits] == [f"{hub_org}/b"]


def test_search_by_author(source: Source, hub_org: str) -> None:
    other = f"{hub_org}x"
    source.seed(f"{hub_org}/mine", model_files())
    source.seed(f"{other}/theirs", model_files())
    assert [hit.repo_id for hit in source.hub.search(author=other)] == [f"{other}/theirs"]


def test_search_free_text_matches_repo_id(source: Source, hub_org: str) -> None:
    source.seed(f"{hub_org}/conv4-omniglot-task7", model_files())
    source.seed(f"{hub_org}/resnet-cifar", model_files())
    hits = list(source.hub.search(search="OMNIGLOT", author=hub_org))
    assert [hit.repo_id for hit in hits] == [f"{hub_org}/conv4-omniglot-task7"]


def test_search_limit_stops_across_pages(source: Source, hub_org: str, hub_server, monkeypatch) -> None:
    monkeypatch.setattr(hub_server, "page_size", 2)
    for index in range(5):
        source.seed(f"{hub_org}/m{index}", model_files())
    before = len(hub_server.requests)
    hits = list(source.hub.search(author=hub_org, limit=3))
    assert [hit.repo_id for hit in hits] == [f"{hub_org}/m{index}" for index in range(3)]
    if source.kind == "remote":
        # Two pages of two hold the three hits: the third page is never asked for.
        assert [r.path for r in hub_server.requests[before:]] == ["/api/models"] * 2
    else:
        # The limit, not the folder, ended the list: without it the folder hub yields all five.
        assert len(list(source.hub.search(author=hub_org))) == 5


def test_search_summary_carries_the_head_sha(source: Source, hub_org: str) -> None:
    source.seed(f"{hub_org}/a", model_files())
    (hit,) = source.hub.search(author=hub_org)
    assert hit.sha == source.hub.repo_info(repo_id=f"{hub_org}/a").sha
    assert hit.author == hub_org and hit.last_modified


def test_remote_search_follows_link_pagination(hub_server, hub_org: str, monkeypatch) -> None:
    monkeypatch.setattr(hub_server, "page_size", 2)
    for index in range(5):
        hub_server.add_repo(f"{hub_org}/m{index}", files=model_files())
    hub = RemoteHub(endpoint=hub_server.url, retry=FAST_RETRY)
    before = len(hub_server.requests)
    hits = list(hub.search(author=hub_org))
    pages = [r for r in hub_server.requests[before:] if r.path == "/api/models"]
    assert len(hits) == 5
    assert len(pages) == 3 and "cursor" in pages[-1].query


# --- repo_info and download --------------------------------------------------------------------------


def test_repo_info_resolves_sha_files_and_card(source: Source, hub_org: str) -> None:
    source.seed(f"{hub_org}/a", model_files(tags=["glyphs"]))
    info = source.hub.repo_info(repo_id=f"{hub_org}/a")
    assert len(info.sha) == 40
    sizes = {file.path: file.size for file in info.files}
    assert sizes == {"README.md": len(card(tags=["glyphs"])), "config.json": 18, "model.safetensors": 64,
                     "extra/labels.txt": 4}
    weights = next(file for file in info.files if file.path == "model.safetensors")
    assert weights.sha256 == hashlib.sha256(b"w" * 64).hexdigest()
    assert info.card_data["library_name"] == "timm" and info.card_data["tags"] == ["glyphs"]
    assert (info.library, info.pipeline_tag, info.gated, info.private) == ("timm", "image-classification",
                                                                           False, False)


def test_download_pinned_files(source: Source, hub_org: str, hub_server, tmp_path: Path) -> None:
    files = model_files()
    source.seed(f"{hub_org}/a", files)
    sha = source.hub.repo_info(repo_id=f"{hub_org}/a").sha
    before = len(hub_server.requests)
    paths = source.hub.download(repo_id=f"{hub_org}/a", revision=sha, filenames=["config.json", "extra/labels.txt"],
                                local_dir=tmp_path / "out")
    assert paths["extra/labels.txt"] == (tmp_path / "out" / "extra" / "labels.txt").resolve()
    assert {name: path.read_bytes() for name, path in paths.items()} == {
        "config.json": files["config.json"], "extra/labels.txt": files["extra/labels.txt"]}
    if source.kind == "remote":
        resolves = [r for r in hub_server.requests[before:] if "/resolve/" in r.path]
        assert resolves and all(f"/{hub_org}/a/resolve/{sha}/" in r.path for r in resolves)


def test_download_of_an_older_revision_returns_its_bytes(source: Source, hub_org: str, tmp_path: Path) -> None:
    source.seed(f"{hub_org}/a", model_files(weights=b"old" * 10))
    old_sha = source.hub.repo_info(repo_id=f"{hub_org}/a").sha
    source.seed(f"{hub_org}/a", model_files(weights=b"new" * 10))
    assert source.hub.repo_info(repo_id=f"{hub_org}/a").sha != old_sha
    paths = source.hub.download(repo_id=f"{hub_org}/a", revision=old_sha, filenames=["model.safetensors"],
                                local_dir=tmp_path)
    assert paths["model.safetensors"].read_bytes() == b"old" * 10


def test_repo_info_at_an_older_revision(source: Source, hub_org: str) -> None:
    source.seed(f"{hub_org}/a", {"README.md": card(tags=["v1"])})
    old_sha = source.hub.repo_info(repo_id=f"{hub_org}/a").sha
    source.seed(f"{hub_org}/a", {"README.md": card(tags=["v2"])})
    assert "v1" in source.hub.repo_info(repo_id=f"{hub_org}/a", revision=old_sha).tags


# --- create and upload -------------------------------------------------------------------------------


def test_create_upload_then_search_finds_it(source: Source, hub_org: str, tmp_path: Path) -> None:
    folder = tmp_path / "to-upload"
    for name, data in model_files(tags=["freehub-upload"]).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    source.hub.create_repo(repo_id=f"{hub_org}/new")
    sha = source.hub.upload_folder(repo_id=f"{hub_org}/new", folder=folder, commit_message="first")
    (hit,) = source.hub.search(tags=["freehub-upload"], author=hub_org)
    assert (hit.repo_id, hit.sha) == (f"{hub_org}/new", sha)
    assert source.hub.repo_info(repo_id=f"{hub_org}/new").sha == sha


def test_upload_keeps_files_it_does_not_replace(source: Source, hub_org: str, tmp_path: Path) -> None:
    source.seed(f"{hub_org}/a", model_files())
    first = source.hub.repo_info(repo_id=f"{hub_org}/a").sha
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "config.json").write_bytes(b'{"num_classes": 7}')
    sha = source.hub.upload_folder(repo_id=f"{hub_org}/a", folder=tmp_path / "in", commit_message="update config")
    info = source.hub.repo_info(repo_id=f"{hub_org}/a")
    assert sha != first and info.sha == sha
    assert {file.path for file in info.files} == set(model_files())
    got = source.hub.download(repo_id=f"{hub_org}/a", revision=sha, filenames=["config.json"], local_dir=tmp_path / "o")
    assert got["config.json"].read_bytes() == b'{"num_classes": 7}'


def test_create_repo_twice_is_fine_with_exist_ok(source: Source, hub_org: str) -> None:
    first = source.hub.create_repo(repo_id=f"{hub_org}/twice")
    assert source.hub.create_repo(repo_id=f"{hub_org}/twice", exist_ok=True) == first
    with pytest.raises(HubError, match="already exists"):
        source.hub.create_repo(repo_id=f"{hub_org}/twice", exist_ok=False)


# --- errors ------------------------------------------------------------------------------------------


def test_unknown_repo(source: Source, hub_org: str, tmp_path: Path) -> None:
    with pytest.raises(RepoNotFoundError):
        source.hub.repo_info(repo_id=f"{hub_org}/missing")
    with pytest.raises(RepoNotFoundError):
        source.hub.download(repo_id=f"{hub_org}/missing", revision="a" * 40, filenames=["x"], local_dir=tmp_path)


def test_missing_file(source: Source, hub_org: str, tmp_path: Path) -> None:
    source.seed(f"{hub_org}/a", model_files())
    sha = source.hub.repo_info(repo_id=f"{hub_org}/a").sha
    with pytest.raises(EntryNotFoundError):
        source.hub.download(repo_id=f"{hub_org}/a", revision=sha, filenames=["nope.bin"], local_dir=tmp_path)


def test_unknown_revision(source: Source, hub_org: str, tmp_path: Path) -> None:
    source.seed(f"{hub_org}/a", model_files())
    with pytest.raises(EntryNotFoundError):
        source.hub.download(repo_id=f"{hub_org}/a", revision="0" * 40, filenames=["config.json"], local_dir=tmp_path)


@pytest.mark.parametrize("name", ["../evil.txt", "/etc/passwd", "a/../../b", "a\\..\\b", ""])
def test_unsafe_filenames_are_refused_before_asking(source: Source, hub_org: str, hub_server, tmp_path: Path,
                                                    name: str) -> None:
    before = len(hub_server.requests)
    # The repo does not exist: a refusal for the name, not for the repo, shows the name is checked first.
    with pytest.raises(HubError, match="unsafe file name"):
        source.hub.download(repo_id=f"{hub_org}/a", revision="a" * 40, filenames=[name], local_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()
    if source.kind == "remote":
        assert len(hub_server.requests) == before


def test_download_needs_a_commit_sha(source: Source, hub_org: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pinned"):
        source.hub.download(repo_id=f"{hub_org}/a", revision="main", filenames=["config.json"], local_dir=tmp_path)


def test_unreachable_endpoint_fails_fast(tmp_path: Path) -> None:
    hub = RemoteHub(endpoint=closed_port_url(), token=WRITE_TOKEN)
    calls = {
        "search": lambda: list(hub.search(tags=["x"])),
        "repo_info": lambda: hub.repo_info(repo_id="org/a"),
        "download": lambda: hub.download(repo_id="org/a", revision="a" * 40, filenames=["x"], local_dir=tmp_path),
        "create_repo": lambda: hub.create_repo(repo_id="org/a"),
    }
    for name, call in calls.items():
        start = time.monotonic()
        with pytest.raises(HubConnectionError):
            call()
        assert time.monotonic() - start < 3, name


def test_write_with_a_read_token_is_refused(hub_server, hub_org: str, tmp_path: Path) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    (tmp_path / "f.txt").write_bytes(b"x")
    hub = RemoteHub(endpoint=hub_server.url, token=READ_TOKEN, retry=FAST_RETRY)
    with pytest.raises(HubPermissionError):
        hub.create_repo(repo_id=f"{hub_org}/b")
    with pytest.raises(HubPermissionError):
        hub.upload_folder(repo_id=f"{hub_org}/a", folder=tmp_path, commit_message="x")


def test_write_without_a_token_is_refused(hub_server, hub_org: str) -> None:
    hub = RemoteHub(endpoint=hub_server.url, retry=FAST_RETRY)
    with pytest.raises(HubPermissionError):
        hub.create_repo(repo_id=f"{hub_org}/b")


def test_gated_repo_download_is_refused(hub_server, hub_org: str, tmp_path: Path) -> None:
    sha = hub_server.add_repo(f"{hub_org}/gated", files=model_files(), gated=True)
    hub = RemoteHub(endpoint=hub_server.url, token=WRITE_TOKEN, retry=FAST_RETRY)
    assert hub.repo_info(repo_id=f"{hub_org}/gated").gated
    with pytest.raises(HubPermissionError, match="gated"):
        hub.download(repo_id=f"{hub_org}/gated", revision=sha, filenames=["config.json"], local_dir=tmp_path)


def test_private_repo_is_invisible_without_a_token(hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/secret", files=model_files(), private=True)
    anonymous = RemoteHub(endpoint=hub_server.url, retry=FAST_RETRY)
    with pytest.raises(RepoNotFoundError):
        anonymous.repo_info(repo_id=f"{hub_org}/secret")
    assert list(anonymous.search(author=hub_org)) == []
    reader = RemoteHub(endpoint=hub_server.url, token=READ_TOKEN, retry=FAST_RETRY)
    assert reader.repo_info(repo_id=f"{hub_org}/secret").private


# --- retries -----------------------------------------------------------------------------------------


def test_rate_limited_repo_info_is_retried_after_retry_after(hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.fail_next(path_prefix=f"/api/models/{hub_org}/a", count=2, status=429, retry_after=0)
    hub = RemoteHub(endpoint=hub_server.url, retry=FAST_RETRY)
    assert hub.repo_info(repo_id=f"{hub_org}/a").sha == hub_server.head(f"{hub_org}/a")
    assert len(hub_server.requests_to(f"/api/models/{hub_org}/a")) == 3


def test_search_survives_server_errors(hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.fail_next(path_prefix="/api/models", count=2, status=503, method="GET")
    hub = RemoteHub(endpoint=hub_server.url, retry=FAST_RETRY)
    assert [hit.repo_id for hit in hub.search(author=hub_org)] == [f"{hub_org}/a"]


def test_retries_are_bounded(hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.fail_next(path_prefix=f"/api/models/{hub_org}/a", count=50, status=503)
    hub = RemoteHub(endpoint=hub_server.url, retry=FAST_RETRY)
    with pytest.raises(HubError, match="503"):
        hub.repo_info(repo_id=f"{hub_org}/a")
    assert len(hub_server.requests_to(f"/api/models/{hub_org}/a")) == FAST_RETRY.max_retries + 1


def test_commit_is_not_retried_on_server_error(hub_server, hub_org: str, tmp_path: Path) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.fail_next(path_prefix=f"/api/models/{hub_org}/a/commit", count=1, status=500)
    (tmp_path / "f.txt").write_bytes(b"x")
    hub = RemoteHub(endpoint=hub_server.url, token=WRITE_TOKEN, retry=FAST_RETRY)
    with pytest.raises(HubError, match="500"):
        hub.upload_folder(repo_id=f"{hub_org}/a", folder=tmp_path, commit_message="x")
    assert len(hub_server.requests_to(f"/api/models/{hub_org}/a/commit")) == 1


def test_download_survives_a_transient_error(hub_server, hub_org: str, tmp_path: Path) -> None:
    sha = hub_server.add_repo(f"{hub_org}/a", files=model_files())
    hub_server.fail_next(path_prefix=f"/{hub_org}/a/resolve/", count=1, status=503)
    hub = RemoteHub(endpoint=hub_server.url, retry=FAST_RETRY)
    paths = hub.download(repo_id=f"{hub_org}/a", revision=sha, filenames=["config.json"], local_dir=tmp_path)
    assert paths["config.json"].read_bytes() == b'{"num_classes": 5}'


# --- local specifics and open_hub --------------------------------------------------------------------


def test_local_hub_does_not_follow_symlinks(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    repo = tmp_path / "hub" / "org" / "a"
    repo.mkdir(parents=True)
    (repo / "config.json").write_text("{}")
    (repo / "leak.txt").symlink_to(secret)
    info = LocalHub(root=tmp_path / "hub").repo_info(repo_id="org/a")
    assert [file.path for file in info.files] == ["config.json"]


def test_local_upload_interrupted_between_renames_recovers_the_old_repo(tmp_path: Path) -> None:
    hub = LocalHub(root=tmp_path / "hub")
    hub.create_repo(repo_id="org/a")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "config.json").write_text("{}")
    sha = hub.upload_folder(repo_id="org/a", folder=tmp_path / "in", commit_message="x")
    # The state a crash after the first rename leaves behind.
    (tmp_path / "hub" / "org" / "a").rename(tmp_path / "hub" / "org" / ".a.dead.old")
    assert hub.repo_info(repo_id="org/a").sha == sha


def test_local_sha_is_a_content_hash(tmp_path: Path) -> None:
    for root in ("one", "two"):
        repo = tmp_path / root / "org" / "a"
        repo.mkdir(parents=True)
        (repo / "config.json").write_text('{"x": 1}')
    shas = {LocalHub(root=tmp_path / root).repo_info(repo_id="org/a").sha for root in ("one", "two")}
    assert len(shas) == 1


def test_open_hub_picks_the_source(tmp_path: Path, hub_server, monkeypatch) -> None:
    assert isinstance(open_hub(tmp_path), LocalHub)
    assert isinstance(open_hub("https://example.org"), RemoteHub)
    monkeypatch.setenv("HF_ENDPOINT", hub_server.url)
    default = open_hub()
    assert isinstance(default, RemoteHub) and default.location == hub_server.url


def test_remote_hub_never_shows_its_token(hub_server) -> None:
    hub = RemoteHub(endpoint=hub_server.url, token=WRITE_TOKEN)
    assert WRITE_TOKEN not in repr(hub) and WRITE_TOKEN not in str(hub)


def test_the_token_travels_only_in_the_authorization_header(hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/a", files=model_files())
    RemoteHub(endpoint=hub_server.url, token=WRITE_TOKEN).repo_info(repo_id=f"{hub_org}/a")
    recorded = hub_server.requests_to(f"/api/models/{hub_org}/a")
    # The server records every header but Authorization: the token was sent there, and nowhere else.
    assert recorded and all(request.token_seen for request in recorded)
    assert all(WRITE_TOKEN not in f"{request.path} {request.query} {request.headers}" for request in recorded)


def test_bad_repo_id_is_a_config_error(source: Source) -> None:
    with pytest.raises(ConfigError):
        source.hub.repo_info(repo_id="../etc")


def test_created_private_repo_reports_private(source: Source, hub_org: str) -> None:
    source.hub.create_repo(repo_id=f"{hub_org}/p", private=True)
    assert source.hub.repo_info(repo_id=f"{hub_org}/p").private
