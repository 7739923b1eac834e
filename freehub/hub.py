"""Hub access: one interface, two sources.

:class:`RemoteHub` talks to a Hugging Face Hub endpoint (huggingface.co, a mirror, or any HF_ENDPOINT)
through ``huggingface_hub``; :class:`LocalHub` serves a folder laid out like the Hub (``ORG/NAME/<files>``
with a README.md model card). Both answer the same questions with the same dataclasses and raise the
same :mod:`freehub.errors`, so the collector, the zoo and the publisher never care which one they hold.

A commit sha pins exact bytes on both: the remote Hub's git commit, or a content hash of the local repo's
files, whose past revisions a local hub keeps in a content-addressed store under ``<root>/.freehub``.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import httpx2
import yaml
from huggingface_hub import HfApi, get_token, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError as _HfEntryNotFoundError,
)
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from freehub.atomic import atomic_write_bytes, atomic_write_text
from freehub.errors import (
    ConfigError,
    EntryNotFoundError,
    HubConnectionError,
    HubError,
    HubPermissionError,
    RepoNotFoundError,
)

DEFAULT_ENDPOINT = "https://huggingface.co"

_T = TypeVar("_T")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_NAME_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_-])?"
_REPO_ID = re.compile(rf"^{_NAME_PART}/{_NAME_PART}$")
# Folders the Hub never stores (huggingface_hub refuses to commit them): skipped by a local hub too.
_IGNORED_FOLDERS = frozenset({".git", ".cache"})
_SETTLED_S = 2.0


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
    """One file of a repo at a commit. ``sha256`` is the LFS oid when the Hub gives one."""

    path: str
    size: int
    sha256: str | None


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


@dataclass(frozen=True)
class RetryPolicy:
    """How a :class:`RemoteHub` retries requests that huggingface_hub itself does not retry.

    Waits grow from ``base_wait_s`` by doubling up to ``max_wait_s``; a ``Retry-After`` header wins
    when present, capped at ``max_retry_after_s`` so that a hostile server cannot park a crawl.
    """

    max_retries: int = 4
    base_wait_s: float = 0.5
    max_wait_s: float = 8.0
    max_retry_after_s: float = 60.0

    def wait_s(self, *, attempt: int, retry_after: str | None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        if retry_after is not None and retry_after.strip().isdigit():
            return min(float(retry_after), self.max_retry_after_s)
        return min(self.base_wait_s * 2**attempt, self.max_wait_s)


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
        self, *, repo_id: str, revision: str, filenames: Sequence[str], local_dir: Path
    ) -> dict[str, Path]:
        """Fetch ``filenames`` at commit ``revision`` into ``local_dir``; returns ``{filename: local path}``."""

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


def open_hub(location: str | os.PathLike[str] | None = None, *, token: str | None = None) -> Hub:
    """The Hub at ``location``: ``None`` means HF_ENDPOINT or huggingface.co, a ``http(s)://`` URL a remote
    Hub, anything else a local folder."""
    if location is None:
        location = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        return RemoteHub(endpoint=text, token=token)
    return LocalHub(root=Path(text).expanduser())


# --- shared rules ------------------------------------------------------------------------------------


def card_metadata(text: str) -> dict[str, Any]:
    """The YAML front matter of a model card as a dict; ``{}`` when absent or unparsable."""
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.safe_load(text[3:end])
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def card_tags(card: dict[str, Any]) -> tuple[str, ...]:
    """The tags a Hub indexes a repo under: card tags, library, pipeline tag and ``license:<id>``."""
    raw = card.get("tags") or []
    tags = [str(tag) for tag in (raw if isinstance(raw, list) else [raw])]
    for key in ("library_name", "pipeline_tag"):
        if card.get(key):
            tags.append(str(card[key]))
    if card.get("license"):
        tags.append(f"license:{card['license']}")
    return tuple(dict.fromkeys(tags))


def is_repo_id(text: str) -> bool:
    """Whether ``text`` is a repo id of the form ``ORG/NAME`` that every Hub call here accepts."""
    return isinstance(text, str) and bool(_REPO_ID.fullmatch(text)) and ".." not in text


def _check_repo_id(repo_id: str) -> None:
    if not is_repo_id(repo_id):
        raise ConfigError(f"not a repo id of the form ORG/NAME: {repo_id!r}")


def _check_pinned(revision: str) -> None:
    if not _SHA.match(revision):
        raise ConfigError(f"downloads must be pinned to a 40-character commit sha, got {revision!r}")


def _check_filename(name: str) -> PurePosixPath:
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
    resolved = path.resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise HubError(f"refusing to write outside {root}: {path}")
    return resolved


# --- remote ------------------------------------------------------------------------------------------


class RemoteHub(Hub):
    """A Hub endpoint reached through ``huggingface_hub``.

    The token comes from ``token``, else HF_TOKEN or the huggingface_hub login; it is never logged or shown.
    """

    def __init__(self, *, endpoint: str, token: str | None = None, retry: RetryPolicy | None = None) -> None:
        self.location = endpoint.rstrip("/")
        self._token = token
        self._retry = retry or RetryPolicy()
        self._api = HfApi(endpoint=self.location, token=token)

    def __repr__(self) -> str:
        return f"RemoteHub({self.location!r})"

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
        """See :meth:`Hub.search`. Pages are followed lazily through the Link header."""
        if limit is not None and limit <= 0:
            return
        query = [("filter", tag) for tag in (*tags, *([library] if library else []))]
        for key, value in (("pipeline_tag", pipeline_tag), ("author", author), ("search", search)):
            if value:
                query.append((key, value))
        query.append(("full", "true"))
        if limit is not None:
            query.append(("limit", str(limit)))
        params: list[tuple[str, str]] | None = query
        url: str | None = f"{self.location}/api/models"
        seen = 0
        with self._translated(what="search"):
            while url is not None:
                page_url, page_params = url, params
                response = self._with_retries(lambda: self._get(page_url, page_params), idempotent=True)
                for item in response.json():
                    yield _summary_from_api(item)
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
                url = response.links.get("next", {}).get("url")
                # The next link carries the whole query; passing params again would replace it.
                params = None

    def repo_info(self, *, repo_id: str, revision: str | None = None) -> RepoInfo:
        """See :meth:`Hub.repo_info`."""
        _check_repo_id(repo_id)
        with self._translated(what=f"repo {repo_id}"):
            info = self._with_retries(
                lambda: self._api.model_info(repo_id, revision=revision, files_metadata=True), idempotent=True
            )
        if not info.sha:
            raise HubError(f"repo {repo_id}: {self.location} did not report a commit sha")
        card = info.card_data.to_dict() if info.card_data is not None else {}
        return RepoInfo(
            repo_id=info.id,
            sha=info.sha,
            tags=tuple(info.tags or ()),
            library=info.library_name,
            pipeline_tag=info.pipeline_tag,
            files=tuple(
                RepoFile(path=sibling.rfilename, size=sibling.size or 0,
                         sha256=sibling.lfs.sha256 if sibling.lfs else None)
                for sibling in info.siblings or ()
            ),
            card_data=card,
            gated=bool(info.gated),
            private=bool(info.private),
        )

    def download(
        self, *, repo_id: str, revision: str, filenames: Sequence[str], local_dir: Path
    ) -> dict[str, Path]:
        """See :meth:`Hub.download`. Files land at ``local_dir/<filename>``."""
        _check_repo_id(repo_id)
        _check_pinned(revision)
        names = [(name, _check_filename(name)) for name in filenames]
        local_dir = Path(local_dir)
        # huggingface_hub retries an unreachable endpoint for ~23 s inside hf_hub_download; one metadata
        # request first fails fast instead, and also tells a missing revision from a missing file.
        self.repo_info(repo_id=repo_id, revision=revision)
        result: dict[str, Path] = {}
        for name, path in names:
            with self._translated(what=f"{repo_id}@{revision[:12]}/{name}"):
                local = hf_hub_download(
                    repo_id=repo_id, filename=str(path), revision=revision, local_dir=local_dir,
                    endpoint=self.location, token=self._token,
                )
            result[name] = _inside(Path(local), local_dir)
        return result

    def create_repo(self, *, repo_id: str, private: bool = False, exist_ok: bool = True) -> str:
        """See :meth:`Hub.create_repo`."""
        _check_repo_id(repo_id)
        with self._translated(what=f"create {repo_id}"):
            # Not retried on 5xx: the repo may have been created before the error, and a retry would then
            # answer "already exists".
            url = self._with_retries(
                lambda: self._api.create_repo(repo_id, private=private, exist_ok=exist_ok), idempotent=False
            )
        return str(url)

    def upload_folder(self, *, repo_id: str, folder: Path, commit_message: str, replace: bool = False) -> str:
        """See :meth:`Hub.upload_folder`. The Hub keeps ``.gitattributes`` even with ``replace``."""
        _check_repo_id(repo_id)
        if not Path(folder).is_dir():
            raise ConfigError(f"not a folder: {folder}")
        with self._translated(what=f"upload to {repo_id}"):
            commit = self._with_retries(
                lambda: self._api.upload_folder(
                    repo_id=repo_id, folder_path=folder, commit_message=commit_message,
                    delete_patterns="*" if replace else None,
                ),
                idempotent=False,
            )
        return commit.oid

    def check_write(self, *, repo_id: str) -> None:
        """See :meth:`Hub.check_write`: a token must exist, and the Hub must not call it read-only."""
        _check_repo_id(repo_id)
        token = self._token or get_token()
        if not token:
            raise HubPermissionError(f"no token for {self.location}: set HF_TOKEN or log in with `hf auth login`")
        with self._translated(what="check the token"):
            identity = self._with_retries(lambda: self._api.whoami(token=token), idempotent=True)
        # Fine-grained tokens report no single role; the commit itself is then the judge.
        auth = identity.get("auth") if isinstance(identity, dict) else None
        access = auth.get("accessToken") if isinstance(auth, dict) else None
        if isinstance(access, dict) and access.get("role") == "read":
            raise HubPermissionError(f"the token for {self.location} is read-only; a write token is needed")

    def _get(self, url: str, params: list[tuple[str, str]] | None) -> Any:
        response = get_session().get(url, params=params, headers=build_hf_headers(token=self._token))
        hf_raise_for_status(response)
        return response

    def _with_retries(self, call: Callable[[], _T], *, idempotent: bool) -> _T:
        # huggingface_hub retries downloads and preuploads itself, but not model_info, create_repo, the
        # commit call or a hand-followed listing: those go through here. A 429 means the request was not
        # served, so it is safe to repeat even for writes; a 5xx only for reads.
        attempt = 0
        while True:
            try:
                return call()
            except HfHubHTTPError as error:
                status = error.response.status_code if error.response is not None else None
                if status != 429 and not (idempotent and status in (500, 502, 503, 504)):
                    raise
                if attempt >= self._retry.max_retries:
                    raise
                retry_after = error.response.headers.get("Retry-After") if error.response is not None else None
            except httpx2.TimeoutException:
                if not idempotent or attempt >= self._retry.max_retries:
                    raise
                retry_after = None
            time.sleep(self._retry.wait_s(attempt=attempt, retry_after=retry_after))
            attempt += 1

    @contextmanager
    def _translated(self, *, what: str) -> Iterator[None]:
        try:
            yield
        except HubError:
            raise
        except Exception as error:
            translated = _translate_remote(error, what=what, endpoint=self.location)
            if translated is None:
                raise
            raise translated from error


def _summary_from_api(item: dict[str, Any]) -> RepoSummary:
    repo_id = item.get("id") or item.get("modelId")
    return RepoSummary(
        repo_id=repo_id,
        sha=item.get("sha"),
        tags=tuple(item.get("tags") or ()),
        library=item.get("library_name"),
        pipeline_tag=item.get("pipeline_tag"),
        author=item.get("author") or repo_id.split("/")[0],
        last_modified=item.get("lastModified"),
    )


def _translate_remote(error: BaseException, *, what: str, endpoint: str) -> HubError | None:
    """The freehub error for a huggingface_hub / HTTP failure, or ``None`` when it is not a Hub failure."""
    # hf_hub_download wraps HTTP failures it could not serve from cache: judge the underlying cause.
    if isinstance(error, LocalEntryNotFoundError) and error.__cause__ is not None:
        inner = _translate_remote(error.__cause__, what=what, endpoint=endpoint)
        if inner is not None:
            return inner
    if isinstance(error, GatedRepoError):
        return HubPermissionError(f"{what}: gated repo, access not granted to this token")
    if isinstance(error, RepositoryNotFoundError):
        return RepoNotFoundError(f"{what}: repository not found at {endpoint} (or not visible with this token)")
    if isinstance(error, RevisionNotFoundError):
        return EntryNotFoundError(f"{what}: revision not found")
    if isinstance(error, _HfEntryNotFoundError):
        return EntryNotFoundError(f"{what}: file not found")
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            return HubPermissionError(f"{what}: refused by {endpoint} (HTTP {status}); check the token's rights")
        if status == 409:
            return HubError(f"{what}: already exists")
        return HubError(f"{what}: {endpoint} answered HTTP {status}")
    if isinstance(error, (httpx2.TransportError, LocalEntryNotFoundError, OfflineModeIsEnabled)):
        return HubConnectionError(f"{what}: cannot reach {endpoint} ({type(error).__name__})")
    if isinstance(error, HFValidationError):
        return HubError(f"{what}: {str(error).splitlines()[0]}")
    return None


# --- local -------------------------------------------------------------------------------------------


@dataclass
class _Snapshot:
    sha: str
    files: dict[str, dict[str, Any]]  # path -> {"sha256", "size"}
    last_modified: float | None = None
    sources: dict[str, Path] = field(default_factory=dict)


class LocalHub(Hub):
    """A folder laid out like a Hub: ``ORG/NAME/<files>``, with past revisions under ``<root>/.freehub``.

    A repo's sha is a content hash of its files. Every revision seen by :meth:`repo_info` or written by
    :meth:`upload_folder` is kept (content-addressed), so a pinned download returns exactly those bytes
    even after the files change, or fails with :class:`~freehub.errors.EntryNotFoundError`.
    """

    def __init__(self, *, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self._hash_cache: dict[tuple[str, int, int, int], str] = {}

    def __repr__(self) -> str:
        return f"LocalHub({self.location!r})"

    @property
    def _store(self) -> Path:
        return self.root / ".freehub"

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
        """See :meth:`Hub.search`. Repos come in repo-id order."""
        wanted = [*tags, *(value for value in (library, pipeline_tag) if value)]
        seen = 0
        for repo_id in self._repo_ids():
            if limit is not None and seen >= limit:
                return
            if author and repo_id.split("/")[0] != author:
                continue
            if search and search.lower() not in repo_id.lower():
                continue
            snapshot = self._snapshot(repo_id)
            card = self._card(snapshot)
            repo_tags = card_tags(card)
            if not all(tag in repo_tags for tag in wanted):
                continue
            seen += 1
            yield RepoSummary(
                repo_id=repo_id,
                sha=snapshot.sha,
                tags=repo_tags,
                library=_optional_str(card.get("library_name")),
                pipeline_tag=_optional_str(card.get("pipeline_tag")),
                author=repo_id.split("/")[0],
                last_modified=_iso(snapshot.last_modified),
            )

    def repo_info(self, *, repo_id: str, revision: str | None = None) -> RepoInfo:
        """See :meth:`Hub.repo_info`. Records the current revision so that a later pin of it stays exact."""
        self._require(repo_id)
        current = self._snapshot(repo_id)
        self._record(repo_id, current)
        if revision in (None, "main", current.sha):
            snapshot = current
        else:
            snapshot = self._recorded(repo_id, revision)
        card = self._card(snapshot)
        return RepoInfo(
            repo_id=repo_id,
            sha=snapshot.sha,
            tags=card_tags(card),
            library=_optional_str(card.get("library_name")),
            pipeline_tag=_optional_str(card.get("pipeline_tag")),
            files=tuple(RepoFile(path=path, size=entry["size"], sha256=entry["sha256"])
                        for path, entry in sorted(snapshot.files.items())),
            card_data=card,
            gated=False,
            private=bool(self._settings(repo_id).get("private", False)),
        )

    def download(
        self, *, repo_id: str, revision: str, filenames: Sequence[str], local_dir: Path
    ) -> dict[str, Path]:
        """See :meth:`Hub.download`. Every byte is checked against the pinned revision's hashes."""
        _check_pinned(revision)
        names = [(name, _check_filename(name)) for name in filenames]
        self._require(repo_id)
        current = self._snapshot(repo_id)
        snapshot = current if revision == current.sha else self._recorded(repo_id, revision)
        local_dir = Path(local_dir)
        result: dict[str, Path] = {}
        for name, path in names:
            entry = snapshot.files.get(name)
            if entry is None:
                raise EntryNotFoundError(f"{repo_id}@{revision[:12]}/{name}: file not found")
            source = snapshot.sources.get(name) or self._object(entry["sha256"])
            data = source.read_bytes()
            if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                raise HubError(f"{repo_id}@{revision[:12]}/{name}: content changed while reading; retry")
            target = _inside(local_dir / path, local_dir)
            atomic_write_bytes(target, data)
            result[name] = target
        return result

    def create_repo(self, *, repo_id: str, private: bool = False, exist_ok: bool = True) -> str:
        """See :meth:`Hub.create_repo`. Returns the repo's folder."""
        _check_repo_id(repo_id)
        repo_dir = self._repo_dir(repo_id)
        self._recover(repo_id)
        if repo_dir.is_dir():
            if not exist_ok:
                raise HubError(f"create {repo_id}: already exists")
            return str(repo_dir)
        repo_dir.mkdir(parents=True)
        atomic_write_text(self._store / "repos" / repo_id / "settings.json", json.dumps({"private": private}))
        return str(repo_dir)

    def upload_folder(self, *, repo_id: str, folder: Path, commit_message: str, replace: bool = False) -> str:
        """See :meth:`Hub.upload_folder`. The repo folder is swapped in whole: readers see old or new."""
        self._require(repo_id)
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"not a folder: {folder}")
        repo_dir = self._repo_dir(repo_id)
        staging = repo_dir.parent / f".{repo_dir.name}.{secrets.token_hex(4)}.tmp"
        kept = [] if replace else list(_walk_files(repo_dir))
        try:
            for relative, source in [*kept, *_walk_files(folder)]:
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
            staging.mkdir(parents=True, exist_ok=True)
            retired = repo_dir.parent / f".{repo_dir.name}.{secrets.token_hex(4)}.old"
            os.rename(repo_dir, retired)
            os.rename(staging, repo_dir)
            shutil.rmtree(retired)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        snapshot = self._snapshot(repo_id)
        self._record(repo_id, snapshot, message=commit_message)
        return snapshot.sha

    def check_write(self, *, repo_id: str) -> None:
        """See :meth:`Hub.check_write`: the repo folder, or the nearest folder that exists above it, is writable."""
        _check_repo_id(repo_id)
        place = self._repo_dir(repo_id)
        while not place.exists() and place != place.parent:
            place = place.parent
        if not os.access(place, os.W_OK | os.X_OK):
            raise HubPermissionError(f"cannot write to {place}: permission denied")

    # --- storage -----------------------------------------------------------------------------------

    def _repo_dir(self, repo_id: str) -> Path:
        return self.root / repo_id

    def _require(self, repo_id: str) -> None:
        _check_repo_id(repo_id)
        self._recover(repo_id)
        if not self._repo_dir(repo_id).is_dir():
            raise RepoNotFoundError(f"repo {repo_id}: not found in {self.location}")

    def _recover(self, repo_id: str) -> None:
        # A crash between the two renames of upload_folder leaves only the retired copy: bring it back.
        repo_dir = self._repo_dir(repo_id)
        if repo_dir.exists() or not repo_dir.parent.is_dir():
            return
        retired = sorted(repo_dir.parent.glob(f".{repo_dir.name}.*.old"))
        if retired:
            os.rename(retired[-1], repo_dir)

    def _repo_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            f"{org.name}/{name.name}"
            for org in self.root.iterdir()
            if org.is_dir() and not org.name.startswith(".")
            for name in org.iterdir()
            if name.is_dir() and not name.name.startswith(".") and _REPO_ID.match(f"{org.name}/{name.name}")
        )

    def _settings(self, repo_id: str) -> dict[str, Any]:
        path = self._store / "repos" / repo_id / "settings.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def _snapshot(self, repo_id: str) -> _Snapshot:
        files: dict[str, dict[str, Any]] = {}
        sources: dict[str, Path] = {}
        newest: float | None = None
        for relative, path in _walk_files(self._repo_dir(repo_id)):
            stat = path.stat()
            key = (str(path), stat.st_size, stat.st_mtime_ns, stat.st_ino)
            digest = self._hash_cache.get(key)
            if digest is None:
                digest = _sha256_file(path)
                # Timestamps are coarse: a file rewritten within the same tick keeps its key. Like git's
                # "racy" rule, only trust the key of a file that has been still for a while.
                if time.time() - stat.st_mtime > _SETTLED_S:
                    self._hash_cache[key] = digest
            files[relative] = {"sha256": digest, "size": stat.st_size}
            sources[relative] = path
            newest = max(newest or stat.st_mtime, stat.st_mtime)
        return _Snapshot(sha=_content_sha(files), files=files, last_modified=newest, sources=sources)

    def _record(self, repo_id: str, snapshot: _Snapshot, *, message: str | None = None) -> None:
        manifest = self._store / "repos" / repo_id / "revisions" / f"{snapshot.sha}.json"
        if manifest.is_file():
            return
        try:
            for relative, entry in snapshot.files.items():
                target = self._object(entry["sha256"])
                if not target.is_file():
                    data = snapshot.sources[relative].read_bytes()
                    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
                        return
                    atomic_write_bytes(target, data)
            record = {"sha": snapshot.sha, "files": snapshot.files, "message": message,
                      "date": _iso(time.time())}
            atomic_write_text(manifest, json.dumps(record, sort_keys=True))
        except PermissionError:
            # A read-only hub still serves its current files; it just cannot remember past revisions.
            return

    def _recorded(self, repo_id: str, revision: str) -> _Snapshot:
        manifest = self._store / "repos" / repo_id / "revisions" / f"{revision}.json"
        if not _SHA.match(revision) or not manifest.is_file():
            raise EntryNotFoundError(f"repo {repo_id}: revision {revision} not found")
        record = json.loads(manifest.read_text())
        return _Snapshot(sha=record["sha"], files=record["files"])

    def _object(self, sha256: str) -> Path:
        return self._store / "objects" / sha256[:2] / sha256

    def _card(self, snapshot: _Snapshot) -> dict[str, Any]:
        entry = snapshot.files.get("README.md")
        if entry is None:
            return {}
        source = snapshot.sources.get("README.md") or self._object(entry["sha256"])
        return card_metadata(source.read_text(encoding="utf-8", errors="replace"))


def _walk_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """``(posix relative path, path)`` of the regular files under ``folder``, in sorted order.

    Symlinks are never followed (a repo folder must not expose files from elsewhere), and .git / .cache
    folders are skipped like the Hub does.
    """
    if not folder.is_dir():
        return
    for current, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _IGNORED_FOLDERS and not Path(current, d).is_symlink())
        for name in sorted(files):
            path = Path(current, name)
            if path.is_symlink() or not path.is_file():
                continue
            yield path.relative_to(folder).as_posix(), path


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _content_sha(files: dict[str, dict[str, Any]]) -> str:
    # 40 hex digits like a git commit, so that code validating Hub shas accepts local ones too.
    lines = "".join(f"{path}\0{entry['sha256']}\n" for path, entry in sorted(files.items()))
    return hashlib.sha1(lines.encode("utf-8")).hexdigest()


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat()


def _optional_str(value: Any) -> str | None:
    return str(value) if value else None
