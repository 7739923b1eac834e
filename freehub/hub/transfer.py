"""Bounded transfers: every byte a Hub sends is counted, timed, hashed and sent nowhere it should not go.

:class:`HubHttp` is the HTTP client of a remote Hub. Each request has connect and read timeouts and an
overall budget; an API answer is cut off at :attr:`~freehub.limits.Timeouts.max_api_bytes` and a file
at the size its listing gave it; retries wait a capped time. The token goes only to the endpoint's own
origin: redirects and next-page links to another host get no Authorization header (or are refused).
:class:`ContentCheck` verifies a file against its listing (sha256 for LFS files, the git blob id for
the rest); :func:`copy_verified` does the same for a local file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import httpx2
from huggingface_hub import get_token

from freehub.errors import (
    CrawlAbortedError,
    EntryNotFoundError,
    FreehubError,
    HubConnectionError,
    HubError,
    HubLimitError,
    HubPermissionError,
    IntegrityError,
    RepoNotFoundError,
)
from freehub.hub.base import RepoFile
from freehub.limits import Timeouts

DEFAULT_ENDPOINT = "https://huggingface.co"
_MAX_REDIRECTS = 5
_R = TypeVar("_R")
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """How a :class:`~freehub.hub.RemoteHub` retries a request that was not served (429, 5xx, timeout).

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


def endpoint_token(*, endpoint: str, token: str | None) -> str | None:
    """The token that may be sent to ``endpoint``: ``token`` when given, else the ambient one if it belongs there.

    The ambient token (HF_TOKEN or the huggingface_hub login) belongs to HF_ENDPOINT (default
    huggingface.co): no other endpoint gets it, and never over plain http to a host that is not loopback.
    """
    if token is not None:
        return token
    home = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    if _origin(endpoint) != _origin(home):
        return None
    parts = urlsplit(endpoint)
    if parts.scheme != "https" and not _is_loopback(parts.hostname or ""):
        return None
    return get_token()


def _origin(url: str) -> tuple[str, str, int | None]:
    """``(scheme, host, port)`` of a URL, default ports made explicit: what "the same endpoint" means."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ContentCheck:
    """Hashes bytes as they arrive and checks them against a listing entry at the end."""

    def __init__(self, *, entry: RepoFile, what: str) -> None:
        self.entry = entry
        self.what = what
        self.size = 0
        self._sha256 = hashlib.sha256()
        # git's blob id hashes a header holding the size, known from the listing before the first byte.
        self._blob = hashlib.sha1(b"blob %d\0" % entry.size) if entry.sha256 is None else None

    def update(self, chunk: bytes) -> None:
        """Take the next bytes; :class:`IntegrityError` as soon as they pass the listed size."""
        self.size += len(chunk)
        if self.size > self.entry.size:
            raise IntegrityError(f"{self.what}: the Hub sent more than the {self.entry.size} bytes it listed")
        self._sha256.update(chunk)
        if self._blob is not None:
            self._blob.update(chunk)

    def finish(self) -> str:
        """Check size and hash; returns the sha256 of the bytes."""
        if self.size != self.entry.size:
            raise IntegrityError(f"{self.what}: got {self.size} bytes, the Hub lists {self.entry.size}")
        digest = self._sha256.hexdigest()
        if self.entry.sha256 is not None:
            if digest != self.entry.sha256:
                raise IntegrityError(f"{self.what}: sha256 {digest} differs from the listed {self.entry.sha256}")
        elif self._blob is not None and self.entry.blob_id is not None:
            blob_id = self._blob.hexdigest()
            if blob_id != self.entry.blob_id:
                raise IntegrityError(f"{self.what}: git blob id {blob_id} differs from the listed {self.entry.blob_id}")
        else:
            raise IntegrityError(f"{self.what}: the Hub lists no sha256 or blob id to check it against")
        return digest


def file_matches(*, path: Path, entry: RepoFile) -> str:
    """Check a file on disk against its listing entry (size, then hash); returns its sha256."""
    check = ContentCheck(entry=entry, what=entry.path)
    if path.stat().st_size != entry.size:
        raise IntegrityError(f"{entry.path}: {path.stat().st_size} bytes on disk, the Hub lists {entry.size}")
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            check.update(chunk)
    return check.finish()


def copy_verified(
    *, source: Path, target: Path, entry: RepoFile, what: str, cancel: threading.Event | None = None
) -> None:
    """Copy ``source`` to ``target`` atomically, reading no more than the listed size and checking the hash."""
    check = ContentCheck(entry=entry, what=what)
    with _part_file(target) as (part, handle), open(source, "rb") as reader:
        # One byte past the listed size is enough to tell that the file grew.
        while chunk := reader.read(min(1 << 20, entry.size - check.size + 1)):
            _check_cancel(cancel)
            check.update(chunk)
            handle.write(chunk)
        check.finish()


@contextmanager
def _part_file(target: Path) -> Iterator[tuple[Path, Any]]:
    """A temporary file beside ``target`` that replaces it when the block succeeds, and is removed otherwise."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
    try:
        with open(part, "wb") as handle:
            yield part, handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _check_cancel(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CrawlAbortedError("cancelled")


class HubHttp:
    """GET requests to one Hub endpoint, bounded in time and size, retried when the Hub asks for it."""

    def __init__(self, *, endpoint: str, token: str | None, timeouts: Timeouts, retry: RetryPolicy) -> None:
        self.endpoint = endpoint
        self._origin = _origin(endpoint)
        self._token = token
        self._timeouts = timeouts
        self._retry = retry
        self._client = httpx2.Client(
            timeout=httpx2.Timeout(timeouts.read_s, connect=timeouts.connect_s),
            follow_redirects=False,
            headers={"Accept-Encoding": "identity", "User-Agent": "freehub"},
            trust_env=True,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def same_origin(self, url: str) -> bool:
        """Whether ``url`` is on this endpoint (scheme, host and port)."""
        return _origin(url) == self._origin

    def get_json(
        self,
        url: str,
        *,
        params: Sequence[tuple[str, str]] | None = None,
        what: str,
        missing: str = "repo",
        malformed: type[FreehubError] = HubError,
    ) -> tuple[Any, str | None]:
        """The parsed JSON answer of ``url`` and the URL of its ``rel="next"`` link (``None`` without one).

        ``missing`` says what a bare 404 means: ``"repo"`` (:class:`RepoNotFoundError`) or ``"file"``;
        ``malformed`` is raised for an answer that is not JSON.
        """
        limit = self._timeouts.max_api_bytes

        def read(response: httpx2.Response, deadline: float) -> tuple[Any, str | None]:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise HubLimitError(f"{what}: the answer is {declared} bytes, over the {limit}-byte limit")
            body = bytearray()
            for chunk in response.iter_bytes():
                body.extend(chunk)
                if len(body) > limit:
                    raise HubLimitError(f"{what}: the answer is over the {limit}-byte limit")
                self._check_deadline(deadline, what=what, budget=self._timeouts.request_s)
            try:
                data = json.loads(bytes(body))
            except ValueError as error:
                raise malformed(f"{what}: {self.endpoint} answered something that is not JSON") from error
            next_url = response.links.get("next", {}).get("url")
            return data, urljoin(str(response.url), next_url) if next_url else None

        return self._request(url, params=params, what=what, missing=missing,
                             budget=self._timeouts.request_s, consume=read)

    def download(self, url: str, *, target: Path, entry: RepoFile, what: str,
                 cancel: threading.Event | None = None) -> None:
        """Stream ``url`` to ``target``, cut off past the listed size, checked against the listed hash."""

        def read(response: httpx2.Response, deadline: float) -> None:
            check = ContentCheck(entry=entry, what=what)
            with _part_file(target) as (_, handle):
                for chunk in response.iter_bytes():
                    _check_cancel(cancel)
                    check.update(chunk)
                    handle.write(chunk)
                    self._check_deadline(deadline, what=what, budget=self._timeouts.download_s)
                check.finish()

        self._request(url, params=None, what=what, missing="file", budget=self._timeouts.download_s, consume=read)

    def _check_deadline(self, deadline: float, *, what: str, budget: float) -> None:
        if time.monotonic() > deadline:
            raise HubLimitError(f"{what}: {self.endpoint} took longer than {budget:g} s")

    def _request(self, url: str, *, params: Sequence[tuple[str, str]] | None, what: str, missing: str,
                 budget: float, consume: Callable[[httpx2.Response, float], _R]) -> _R:
        attempt = 0
        while True:
            retry_after: str | None = None
            try:
                with self._open(url, params=params, what=what) as response:
                    if response.status_code in _RETRY_STATUSES and attempt < self._retry.max_retries:
                        retry_after = response.headers.get("Retry-After")
                    elif response.status_code >= 300:
                        raise _status_error(response, what=what, endpoint=self.endpoint, missing=missing)
                    else:
                        return consume(response, time.monotonic() + budget)
            except httpx2.TimeoutException as error:
                if attempt >= self._retry.max_retries:
                    raise HubConnectionError(f"{what}: {self.endpoint} did not answer in time ({type(error).__name__})") from error
            except httpx2.TransportError as error:
                raise HubConnectionError(f"{what}: cannot reach {self.endpoint} ({type(error).__name__})") from error
            except (httpx2.DecodingError, httpx2.InvalidURL) as error:
                raise HubError(f"{what}: {self.endpoint} sent an unusable answer ({type(error).__name__})") from error
            time.sleep(self._retry.wait_s(attempt=attempt, retry_after=retry_after))
            attempt += 1

    @contextmanager
    def _open(self, url: str, *, params: Sequence[tuple[str, str]] | None, what: str) -> Iterator[httpx2.Response]:
        """The response to GET ``url`` after redirects; Authorization only ever goes to this endpoint."""
        for _ in range(_MAX_REDIRECTS + 1):
            headers = {"Authorization": f"Bearer {self._token}"} if self._token and self.same_origin(url) else {}
            request = self._client.build_request("GET", url, params=params, headers=headers)
            response = self._client.send(request, stream=True)
            location = response.headers.get("Location")
            if response.status_code not in (301, 302, 303, 307, 308) or not location:
                try:
                    yield response
                finally:
                    response.close()
                return
            response.close()
            url, params = urljoin(str(response.url), location), None
        raise HubError(f"{what}: more than {_MAX_REDIRECTS} redirects")


def _status_error(response: httpx2.Response, *, what: str, endpoint: str, missing: str) -> HubError:
    """The freehub error for an HTTP error status, judged by status and the Hub's X-Error-Code header."""
    status = response.status_code
    code = response.headers.get("X-Error-Code")
    if code == "GatedRepo":
        return HubPermissionError(f"{what}: gated repo, access not granted to this token")
    if code == "RepoNotFound" or (status == 404 and code is None and missing == "repo"):
        return RepoNotFoundError(f"{what}: repository not found at {endpoint} (or not visible with this token)")
    if code == "RevisionNotFound":
        return EntryNotFoundError(f"{what}: revision not found")
    if code == "EntryNotFound" or status == 404:
        return EntryNotFoundError(f"{what}: file not found")
    if status in (401, 403):
        return HubPermissionError(f"{what}: refused by {endpoint} (HTTP {status}); check the token's rights")
    return HubError(f"{what}: {endpoint} answered HTTP {status}")
