"""A remote Hub: huggingface.co, a mirror, or any HF_ENDPOINT.

Reads (search, repo listings, pinned downloads) go through :class:`~freehub.hub.transfer.HubHttp`, which
bounds every request in time and size and keeps the token on the endpoint's own origin; answers are
validated field by field before anything is built from them. Writes (create, upload) go through
huggingface_hub's ``HfApi`` with the same token.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
from huggingface_hub import HfApi, get_session
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, RepositoryNotFoundError

from freehub.errors import (
    ConfigError,
    EntryNotFoundError,
    HubConnectionError,
    HubError,
    HubPermissionError,
    RepoNotFoundError,
)
from freehub.hub.base import (
    Hub,
    RepoFile,
    RepoInfo,
    RepoSummary,
    _check_filename,
    _check_pinned,
    _check_repo_id,
    _inside,
    _is_sha,
)
from freehub.hub.transfer import HubHttp, RetryPolicy, endpoint_token
from freehub.limits import Timeouts

_T = TypeVar("_T")
log = logging.getLogger(__name__)


class RemoteHub(Hub):
    """A Hub endpoint reached over HTTP(S).

    The token comes from ``token``, else HF_TOKEN or the huggingface_hub login when this endpoint is
    the one they belong to (see :func:`~freehub.hub.transfer.endpoint_token`); it is never logged or shown.
    """

    def __init__(
        self,
        *,
        endpoint: str,
        token: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        self.location = endpoint.rstrip("/")
        self._token = endpoint_token(endpoint=self.location, token=token)
        self._retry = retry or RetryPolicy()
        timeouts = timeouts or Timeouts()
        self._http = HubHttp(endpoint=self.location, token=self._token, timeouts=timeouts, retry=self._retry)
        # Writes (create, commit, whoami) go through huggingface_hub's shared client, which has no
        # timeout at all: a silent server would hang `zoo build` or `push` forever.
        get_session().timeout = httpx2.Timeout(timeouts.read_s, connect=timeouts.connect_s)
        # token=False: huggingface_hub must not fall back to an ambient token this endpoint may not have.
        self._api = HfApi(endpoint=self.location, token=self._token or False)

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
        """See :meth:`Hub.search`. Pages are followed lazily through the Link header, on this endpoint only.

        Raises :class:`~freehub.errors.ConfigError` when the endpoint does not answer like a Hub.
        """
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
        first = True
        while url is not None:
            try:
                page, next_url = self._http.get_json(url, params=params, what="search",
                                                     malformed=ConfigError if first else HubError)
            except (RepoNotFoundError, EntryNotFoundError) as error:
                if first:
                    raise ConfigError(f"{self.location} does not answer like a Hub (no model search at "
                                      "/api/models)") from error
                raise
            if not isinstance(page, list):
                raise (ConfigError if first else HubError)(f"{self.location} does not answer like a Hub: "
                                                           "a search page is not a list")
            first = False
            for item in page:
                summary = _summary_from_api(item)
                if summary is None:
                    log.warning("search: ignoring a malformed hit from %s", self.location)
                    continue
                yield summary
                seen += 1
                if limit is not None and seen >= limit:
                    return
            if next_url is not None and not self._http.same_origin(next_url):
                raise HubError(f"search: {self.location} sent a next-page link to another host; not following it")
            url = next_url
            # The next link carries the whole query; passing params again would replace it.
            params = None

    def repo_info(self, *, repo_id: str, revision: str | None = None) -> RepoInfo:
        """See :meth:`Hub.repo_info`. Every field of the answer is checked before it is used."""
        _check_repo_id(repo_id)
        path = f"{self.location}/api/models/{repo_id}"
        if revision is not None:
            path += f"/revision/{quote(revision, safe='')}"
        what = f"repo {repo_id}"
        data, _ = self._http.get_json(path, params=[("blobs", "true")], what=what)
        try:
            return _info_from_api(data, repo_id=repo_id)
        except (KeyError, TypeError, ValueError) as error:
            raise HubError(f"{what}: malformed answer from {self.location} ({error})") from error

    def download(
        self,
        *,
        repo_id: str,
        revision: str,
        filenames: Sequence[str],
        local_dir: Path,
        cancel: threading.Event | None = None,
    ) -> dict[str, Path]:
        """See :meth:`Hub.download`. Files land at ``local_dir/<filename>``; setting ``cancel`` abandons it."""
        _check_repo_id(repo_id)
        _check_pinned(revision)
        names = [(name, _check_filename(name)) for name in filenames]
        local_dir = Path(local_dir)
        # The listing at this commit gives each file's size and hash: bytes beyond or beside them are refused.
        listed = {entry.path: entry for entry in self.repo_info(repo_id=repo_id, revision=revision).files}
        result: dict[str, Path] = {}
        for name, path in names:
            what = f"{repo_id}@{revision[:12]}/{name}"
            entry = listed.get(name)
            if entry is None:
                raise EntryNotFoundError(f"{what}: file not found")
            target = _inside(local_dir / path, local_dir)
            url = f"{self.location}/{repo_id}/resolve/{revision}/{quote(name)}"
            self._http.download(url, target=target, entry=entry, what=what, cancel=cancel)
            result[name] = target
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
        """See :meth:`Hub.check_write`: a token for this endpoint must exist, and the Hub must not call it read-only."""
        _check_repo_id(repo_id)
        token = self._token
        if not token:
            raise HubPermissionError(f"no token for {self.location}: set HF_TOKEN or log in with `hf auth login`")
        with self._translated(what="check the token"):
            identity = self._with_retries(lambda: self._api.whoami(token=token), idempotent=True)
        # Fine-grained tokens report no single role; the commit itself is then the judge.
        auth = identity.get("auth") if isinstance(identity, dict) else None
        access = auth.get("accessToken") if isinstance(auth, dict) else None
        if isinstance(access, dict) and access.get("role") == "read":
            raise HubPermissionError(f"the token for {self.location} is read-only; a write token is needed")

    def _with_retries(self, call: Callable[[], _T], *, idempotent: bool) -> _T:
        # huggingface_hub retries preuploads itself but not create_repo or the commit call. A 429 means the
        # request was not served, so it is safe to repeat even for writes; a 5xx only for reads.
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
            time.sleep(self._retry.wait_s(attempt=attempt, retry_after=retry_after))
            attempt += 1

    @contextmanager
    def _translated(self, *, what: str) -> Iterator[None]:
        try:
            yield
        except HubError:
            raise
        except Exception as error:
            translated = _translate_write_error(error, what=what, endpoint=self.location)
            if translated is None:
                raise
            raise translated from error


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _str_tuple(value: Any) -> tuple[str, ...]:
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()


def _summary_from_api(item: Any) -> RepoSummary | None:
    """A search hit, or ``None`` when it names no repo at all; an id freehub refuses is kept for the crawl to record."""
    if not isinstance(item, dict):
        return None
    repo_id = item.get("id") or item.get("modelId")
    if not isinstance(repo_id, str) or not repo_id:
        return None
    sha = item.get("sha")
    return RepoSummary(
        repo_id=repo_id,
        sha=sha if _is_sha(sha) else None,
        tags=_str_tuple(item.get("tags")),
        library=_optional_str(item.get("library_name")),
        pipeline_tag=_optional_str(item.get("pipeline_tag")),
        author=_optional_str(item.get("author")) or repo_id.split("/")[0],
        last_modified=_optional_str(item.get("lastModified")),
    )


def _info_from_api(data: Any, *, repo_id: str) -> RepoInfo:
    """A :class:`RepoInfo` from a model-info answer; ``KeyError``/``TypeError``/``ValueError`` when malformed."""
    if not isinstance(data, dict):
        raise TypeError("not an object")
    sha = data.get("sha")
    if not _is_sha(sha):
        raise ValueError("no 40-character commit sha")
    siblings = data.get("siblings") or []
    if not isinstance(siblings, list):
        raise TypeError("siblings is not a list")
    files = []
    for sibling in siblings:
        name, size = sibling["rfilename"], sibling.get("size", 0)
        if not isinstance(name, str) or not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(f"bad file entry {sibling!r:.80}")
        lfs = sibling.get("lfs")
        sha256 = lfs.get("sha256") if isinstance(lfs, dict) else None
        blob_id = sibling.get("blobId")
        files.append(RepoFile(path=name, size=size, sha256=sha256 if isinstance(sha256, str) else None,
                              blob_id=blob_id if isinstance(blob_id, str) else None))
    card = data.get("cardData")
    return RepoInfo(
        repo_id=repo_id,
        sha=sha,
        tags=_str_tuple(data.get("tags")),
        library=_optional_str(data.get("library_name")),
        pipeline_tag=_optional_str(data.get("pipeline_tag")),
        files=tuple(files),
        card_data=card if isinstance(card, dict) else {},
        gated=bool(data.get("gated")),
        private=bool(data.get("private")),
    )


def _translate_write_error(error: BaseException, *, what: str, endpoint: str) -> HubError | None:
    """The freehub error for a huggingface_hub write failure, or ``None`` when it is not a Hub failure."""
    if isinstance(error, RepositoryNotFoundError):
        return RepoNotFoundError(f"{what}: repository not found at {endpoint} (or not visible with this token)")
    if isinstance(error, HfHubHTTPError):
        status = error.response.status_code if error.response is not None else None
        if status in (401, 403):
            return HubPermissionError(f"{what}: refused by {endpoint} (HTTP {status}); check the token's rights")
        if status == 409:
            return HubError(f"{what}: already exists")
        return HubError(f"{what}: {endpoint} answered HTTP {status}")
    if isinstance(error, httpx2.TransportError):
        return HubConnectionError(f"{what}: cannot reach {endpoint} ({type(error).__name__})")
    if isinstance(error, HFValidationError):
        return HubError(f"{what}: {str(error).splitlines()[0]}")
    return None
