"""What every Hub source shares: the result dataclasses, the :class:`Hub` interface and the rules for
names and model cards that both sources apply to what a Hub hands them."""

from __future__ import annotations

import abc
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from freehub.errors import CheckpointError, ConfigError, HubError

_SHA = re.compile(r"^[0-9a-f]{40}$")
_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_-])?"
_REPO_ID = re.compile(rf"^{_NAME_PART}/{_NAME_PART}$")
# Card fields a Hub indexes by; each must be a string (tags: a string or a list of strings).
_STRING_FIELDS = ("library_name", "pipeline_tag", "license")


@dataclass(frozen=True)
class RepoSummary:
    """One search hit. ``sha`` is the head commit when the source reports it."""

    repo_id: str
    sha: str | None
    tags: tuple[str, ...]
    library: str | None
    pipeline_tag: str | None
    author: str | None
    last_modified: str | None


@dataclass(frozen=True)
class RepoFile:
    """One file of a repo at a commit.

    ``sha256`` is the content hash (the LFS oid on a remote Hub); ``blob_id`` the git blob id of a regular
    (non-LFS) file. Downloads are verified against whichever the source gives.
    """

    path: str
    size: int
    sha256: str | None
    blob_id: str | None = None


@dataclass(frozen=True)
class RepoInfo:
    """A repo at one commit: its files, its model-card metadata and its access flags."""

    repo_id: str
    sha: str
    tags: tuple[str, ...]
    library: str | None
    pipeline_tag: str | None
    files: tuple[RepoFile, ...]
    card_data: dict[str, Any]
    gated: bool
    private: bool


class Hub(abc.ABC):
    """A source of model repos: search, inspect, download at a pinned commit, create, upload."""

    location: str

    @abc.abstractmethod
    def search(
        self,
        *,
        tags: Sequence[str] = (),
        library: str | None = None,
        pipeline_tag: str | None = None,
        author: str | None = None,
        search: str | None = None,
        limit: int | None = None,
    ) -> Iterator[RepoSummary]:
        """Repos carrying every tag, the library and pipeline tag, by ``author``, whose id contains ``search``."""

    @abc.abstractmethod
    def repo_info(self, *, repo_id: str, revision: str | None = None) -> RepoInfo:
        """The repo at ``revision`` (default: its head), resolved to a commit sha."""

    @abc.abstractmethod
    def download(
        self,
        *,
        repo_id: str,
        revision: str,
        filenames: Sequence[str],
        local_dir: Path,
        cancel: threading.Event | None = None,
    ) -> dict[str, Path]:
        """Fetch ``filenames`` at commit ``revision`` into ``local_dir``; returns ``{filename: local path}``.

        Each file is cut off at the size the revision's listing gives it and checked against its hash
        (:class:`~freehub.errors.IntegrityError`). Setting ``cancel`` from another thread abandons the
        download with :class:`~freehub.errors.CrawlAbortedError`.
        """

    @abc.abstractmethod
    def create_repo(self, *, repo_id: str, private: bool = False, exist_ok: bool = True) -> str:
        """Create ``repo_id`` and return its URL (remote) or folder (local)."""

    @abc.abstractmethod
    def upload_folder(self, *, repo_id: str, folder: Path, commit_message: str, replace: bool = False) -> str:
        """Add (or overwrite) every file of ``folder`` in ``repo_id`` in one commit; returns its sha.

        ``replace=True`` also removes, in the same commit, every file of the repo that ``folder`` lacks.
        """

    @abc.abstractmethod
    def check_write(self, *, repo_id: str) -> None:
        """Raise :class:`~freehub.errors.HubPermissionError` when ``repo_id`` could not be written here."""


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without anchors' aliases: a few hundred bytes of aliases expand to gigabytes once walked."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "aliases are not allowed in a model card", event.start_mark)
        return super().compose_node(parent, index)


def read_front_matter(text: str) -> dict[str, Any]:
    """The YAML front matter of a model card, checked: ``{}`` without one.

    Raises :class:`~freehub.errors.CheckpointError` (reason ``bad_card``) for front matter that is not
    closed, not valid alias-free YAML, not a mapping, or whose indexed fields (``tags``, ``license``,
    ``library_name``, ``pipeline_tag``) are not strings.
    """
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None:
        raise CheckpointError("README.md front matter is not closed by '---'", reason="bad_card")
    try:
        data = yaml.load("\n".join(lines[1:end]), Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"README.md front matter is not valid YAML: {first}", reason="bad_card") from error
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CheckpointError(f"README.md front matter is a {type(data).__name__}, not a mapping", reason="bad_card")
    for key in _STRING_FIELDS:
        if data.get(key) is not None and not isinstance(data[key], str):
            raise CheckpointError(f"README.md: {key} must be a string", reason="bad_card")
    tags = data.get("tags")
    if tags is not None and not isinstance(tags, str) and not (
        isinstance(tags, list) and all(isinstance(tag, str) for tag in tags)
    ):
        raise CheckpointError("README.md: tags must be a string or a list of strings", reason="bad_card")
    return data


def card_metadata(text: str) -> dict[str, Any]:
    """The YAML front matter of a model card as a dict; ``{}`` when absent or unusable."""
    try:
        return read_front_matter(text)
    except CheckpointError:
        return {}


def card_tags(card: dict[str, Any]) -> tuple[str, ...]:
    """The tags a Hub indexes a repo under: card tags, library, pipeline tag and ``license:<id>``."""
    raw = card.get("tags") or []
    tags = [tag for tag in (raw if isinstance(raw, list) else [raw]) if isinstance(tag, str)]
    for key in ("library_name", "pipeline_tag"):
        if isinstance(card.get(key), str) and card[key]:
            tags.append(card[key])
    if isinstance(card.get("license"), str) and card["license"]:
        tags.append(f"license:{card['license']}")
    return tuple(dict.fromkeys(tags))


def is_repo_id(text: object) -> bool:
    """Whether ``text`` is a repo id of the form ``ORG/NAME`` that every Hub call here accepts."""
    return isinstance(text, str) and bool(_REPO_ID.fullmatch(text)) and ".." not in text


def _check_repo_id(repo_id: str) -> None:
    """Refuse anything but ``ORG/NAME`` (:class:`~freehub.errors.ConfigError`)."""
    if not is_repo_id(repo_id):
        raise ConfigError(f"not a repo id of the form ORG/NAME: {repo_id!r}")


def _check_pinned(revision: str) -> None:
    """Refuse a revision that is not a 40-character commit sha (:class:`~freehub.errors.ConfigError`)."""
    if not _is_sha(revision):
        raise ConfigError(f"downloads must be pinned to a 40-character commit sha, got {revision!r}")


def _is_sha(revision: object) -> bool:
    """Whether ``revision`` is a 40-character lowercase hex commit sha."""
    return isinstance(revision, str) and bool(_SHA.fullmatch(revision))


def _check_filename(name: str) -> PurePosixPath:
    """``name`` as a relative path that cannot leave a download folder; :class:`HubError` otherwise."""
    # Names come from repo listings a hostile Hub controls: refuse anything that could leave local_dir.
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or path.is_absolute()
        or any(part in ("..", ".", "") for part in name.split("/"))
        or re.match(r"^[A-Za-z]:", name)
    ):
        raise HubError(f"unsafe file name in repo: {name!r}")
    return path


def _inside(path: Path, root: Path) -> Path:
    """``path`` resolved, provided it lies under ``root``; :class:`HubError` otherwise."""
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise HubError(f"refusing to write outside {root}: {path}")
    return resolved
