"""What publishing needs from both kinds of Hub: a commit that replaces a repo's files, and a write check."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_hub import Source, model_files, source  # noqa: F401 - source is a fixture

from freehub.errors import HubPermissionError, RepoNotFoundError
from freehub.hub import RemoteHub, is_repo_id


def test_replace_removes_every_file_the_folder_lacks(source: Source, hub_org: str, tmp_path: Path) -> None:
    source.seed(f"{hub_org}/a", model_files())
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "config.json").write_bytes(b'{"num_classes": 3}')

    sha = source.hub.upload_folder(repo_id=f"{hub_org}/a", folder=tmp_path / "in", commit_message="replace", replace=True)

    info = source.hub.repo_info(repo_id=f"{hub_org}/a")
    assert info.sha == sha and {file.path for file in info.files} == {"config.json"}


def test_a_writable_hub_passes_the_write_check_and_nothing_is_written(source: Source, hub_org: str, hub_server) -> None:
    before = len(hub_server.requests)
    source.hub.check_write(repo_id=f"{hub_org}/new")
    with pytest.raises(RepoNotFoundError):
        source.hub.repo_info(repo_id=f"{hub_org}/new")
    if source.kind == "remote":
        # The write token was shown to the Hub, which vouched for it; nothing was created or committed.
        asked = hub_server.requests[before:]
        assert [(r.method, r.path, r.token_seen) for r in asked][0] == ("GET", "/api/whoami-v2", True)
        assert not [r for r in asked if r.method == "POST"]


def test_no_token_fails_the_write_check(hub_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)

    with pytest.raises(HubPermissionError, match="no token"):
        RemoteHub(endpoint=hub_server.url).check_write(repo_id="org/new")


def test_a_read_token_fails_the_write_check(hub_server) -> None:
    with pytest.raises(HubPermissionError, match="read-only"):
        RemoteHub(endpoint=hub_server.url, token="hf_test_read").check_write(repo_id="org/new")


@pytest.mark.parametrize("text", ["org/name", "a.b/c-d_e"])
def test_repo_ids_of_the_hub_form_are_accepted(text: str) -> None:
    assert is_repo_id(text)


@pytest.mark.parametrize("text", ["name", "org/name\n", "../x", "org/../x", "org/name/extra", "/org/name"])
def test_other_text_is_not_a_repo_id(text: str) -> None:
    assert not is_repo_id(text)
