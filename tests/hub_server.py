"""A local Hub-compatible HTTP server for tests: the real huggingface_hub, timm and transformers talk to it.

It speaks the part of the Hugging Face Hub API that freehub and its libraries use (model search with
Link-header pagination, model info, tree, resolve, repo creation, preupload, NDJSON commits, whoami)
and stores repos under a folder: content-addressed blobs plus one JSON file per commit. Tests seed
repos with :meth:`HubServer.add_repo`, flip access flags, inject failures and hostile behaviours
(:meth:`HubServer.fail_next`, :meth:`HubServer.misbehave_next`, :attr:`HubServer.link_base`) and read
every request back from :attr:`HubServer.requests`. The routes themselves live in ``hub_routes.py``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from hub_routes import Reply, Routes, error_reply

_DEFAULT_TOKENS = {"hf_test_write": "write", "hf_test_read": "read"}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; ``headers`` never include Authorization, ``token_seen`` says
    whether one was sent."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    token_seen: bool = False


@dataclass
class _Failure:
    method: str | None
    path_prefix: str
    remaining: int
    status: int
    retry_after: int | None


@dataclass
class _Hostile:
    path_prefix: str
    remaining: int
    kind: str
    value: Any


def git_blob_sha1(data: bytes) -> str:
    """The git object id of ``data`` stored as a blob (what the Hub reports as a regular file's ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class HubServer:
    """A Hub on ``127.0.0.1`` at a free port, storing its repos under ``root``.

    ``tokens`` maps each valid token to ``"read"`` or ``"write"``; writes need a write token.
    ``page_size`` bounds every listing page so that tests can force pagination. ``link_base``, when
    set, replaces the server's own URL in next-page links (a Hub pointing its pagination elsewhere).
    """

    def __init__(self, *, root: Path, tokens: dict[str, str] | None = None, page_size: int = 50) -> None:
        self.root = Path(root)
        self.tokens = dict(_DEFAULT_TOKENS if tokens is None else tokens)
        self.page_size = page_size
        self.requests: list[RecordedRequest] = []
        self.link_base: str | None = None
        self._failures: list[_Failure] = []
        self._hostile: list[_Hostile] = []
        self._stopping = threading.Event()
        self._lock = threading.RLock()
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(parents=True, exist_ok=True)
        self._httpd = _Server(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hub-server", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- test-facing API ---------------------------------------------------------------------------

    def add_repo(
        self, repo_id: str, *, files: dict[str, bytes], gated: bool = False, private: bool = False,
        message: str = "seed",
    ) -> str:
        """Create ``repo_id`` if needed, set its access flags, commit ``files`` on top of its head and
        return the new commit sha. File names are stored as given, hostile ones included."""
        with self._lock:
            if self._repo(repo_id) is None:
                self._create(repo_id, private=private)
            self.set_access(repo_id, gated=gated, private=private)
            return self._commit(repo_id, upserts=files, deletes=(), message=message)

    def set_access(self, repo_id: str, *, gated: bool | None = None, private: bool | None = None) -> None:
        """Mark a repo gated (file downloads refused) and/or private (invisible without a valid token)."""
        with self._lock:
            meta = self._require(repo_id)
            if gated is not None:
                meta["gated"] = gated
            if private is not None:
                meta["private"] = private
            self._save_repo(repo_id, meta)

    def fail_next(
        self, *, path_prefix: str, count: int = 1, status: int = 503, retry_after: int | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` with ``status``."""
        with self._lock:
            self._failures.append(_Failure(method, path_prefix, count, status, retry_after))

    def misbehave_next(self, *, path_prefix: str, kind: str, count: int = 1, value: Any = None) -> None:
        """Answer the next ``count`` requests whose path starts with ``path_prefix`` with a hostile behaviour.

        ``kind`` is ``"silent"`` (accept, never answer; ``value``: seconds before hanging up, default
        until the server stops), ``"slow"`` (announce the whole body, then send one byte every ``value``
        seconds), ``"oversize"`` (append ``value`` bytes to the body, more than the listing announced) or
        ``"redirect"`` (302 to ``value`` + the same path and query, e.g. another server).
        """
        if kind not in ("silent", "slow", "oversize", "redirect"):
            raise ValueError(f"unknown hostile behaviour {kind!r}")
        with self._lock:
            self._hostile.append(_Hostile(path_prefix, count, kind, value))

    def blob_path(self, repo_id: str, filename: str, *, revision: str = "main") -> Path:
        """Where the bytes of ``filename`` at ``revision`` are stored: overwrite it to serve a corrupt file
        (its listed size and sha256 stay those of the original). Blobs are shared by content, so give the
        file content no other repo of the test uses."""
        record = self._resolve(repo_id, revision)
        if record is None or filename not in record["files"]:
            raise KeyError(f"{repo_id}@{revision}/{filename}")
        return self.root / "blobs" / record["files"][filename]["sha256"]

    def head(self, repo_id: str) -> str:
        """The current commit sha of ``repo_id``."""
        return self._require(repo_id)["head"]

    def requests_to(self, fragment: str) -> list[RecordedRequest]:
        """Recorded requests whose path contains ``fragment``."""
        return [request for request in list(self.requests) if fragment in request.path]

    # --- storage -----------------------------------------------------------------------------------

    def _repo_dir(self, repo_id: str) -> Path:
        return self.root / "repos" / repo_id

    def _repo(self, repo_id: str) -> dict[str, Any] | None:
        path = self._repo_dir(repo_id) / "repo.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _require(self, repo_id: str) -> dict[str, Any]:
        meta = self._repo(repo_id)
        if meta is None:
            raise KeyError(repo_id)
        return meta

    def _save_repo(self, repo_id: str, meta: dict[str, Any]) -> None:
        (self._repo_dir(repo_id) / "repo.json").write_text(json.dumps(meta))

    def _create(self, repo_id: str, *, private: bool) -> None:
        (self._repo_dir(repo_id) / "commits").mkdir(parents=True, exist_ok=True)
        self._save_repo(repo_id, {"head": None, "gated": False, "private": private, "created": self._now()})
        # The real Hub gives a new repo a first commit, so even an empty repo resolves "main" to a sha.
        self._commit(repo_id, upserts={}, deletes=(), message="initial commit")

    @staticmethod
    def _now() -> str:
        return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def _commit_record(self, repo_id: str, sha: str) -> dict[str, Any] | None:
        path = self._repo_dir(repo_id) / "commits" / f"{sha}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def _blob(self, sha256: str) -> bytes:
        return (self.root / "blobs" / sha256).read_bytes()

    def _commit(self, repo_id: str, *, upserts: dict[str, bytes], deletes: tuple[str, ...], message: str) -> str:
        meta = self._require(repo_id)
        parent = meta["head"]
        files = dict(self._commit_record(repo_id, parent)["files"]) if parent else {}
        for path in deletes:
            files = {name: entry for name, entry in files.items() if name != path and not name.startswith(path + "/")}
        for path, data in upserts.items():
            digest = hashlib.sha256(data).hexdigest()
            (self.root / "blobs" / digest).write_bytes(data)
            files[path] = {"sha256": digest, "size": len(data), "oid": git_blob_sha1(data)}
        date = self._now()
        payload = json.dumps({"parent": parent, "files": files, "message": message, "date": date}, sort_keys=True)
        sha = hashlib.sha1(payload.encode()).hexdigest()
        record = {"sha": sha, "parent": parent, "message": message, "date": date, "files": files}
        (self._repo_dir(repo_id) / "commits" / f"{sha}.json").write_text(json.dumps(record))
        meta["head"] = sha
        self._save_repo(repo_id, meta)
        return sha

    def _repo_ids(self) -> list[str]:
        base = self.root / "repos"
        return sorted(f"{org.name}/{name.name}" for org in base.iterdir() if org.is_dir()
                      for name in org.iterdir() if (name / "repo.json").is_file())

    def _resolve(self, repo_id: str, revision: str) -> dict[str, Any] | None:
        meta = self._require(repo_id)
        if revision == "main":
            return self._commit_record(repo_id, meta["head"]) if meta["head"] else None
        return self._commit_record(repo_id, revision)

    def _hostile_for(self, path: str) -> _Hostile | None:
        with self._lock:
            for rule in self._hostile:
                if rule.remaining > 0 and path.startswith(rule.path_prefix):
                    rule.remaining -= 1
                    return rule
        return None

    def _failure_for(self, method: str, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.remaining > 0 and path.startswith(failure.path_prefix) and failure.method in (None, method):
                    failure.remaining -= 1
                    return failure
        return None


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (a bounded client refusing a body) is not a server error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _make_handler(server: HubServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return

        def _read_body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        return b"".join(chunks)
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _handle(self) -> None:
            split = urlsplit(self.path)
            query = parse_qs(split.query, keep_blank_values=True)
            body = self._read_body()
            headers = {key: value for key, value in self.headers.items() if key.lower() != "authorization"}
            server.requests.append(RecordedRequest(self.command, split.path, query, headers,
                                                   token_seen="Authorization" in self.headers))
            hostile = server._hostile_for(split.path)
            if hostile is not None and hostile.kind == "silent":
                server._stopping.wait(hostile.value)
                self.close_connection = True
                return
            if hostile is not None and hostile.kind == "redirect":
                target = hostile.value + self.path
                self._send(Reply(302, b"", {"Location": target}))
                return
            failure = server._failure_for(self.command, split.path)
            if failure is not None:
                extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                reply = error_reply(failure.status, HTTPStatus(failure.status).phrase, headers=extra)
            else:
                try:
                    reply = Routes(server, self, self.command, split.path, query, body).dispatch()
                except (KeyError, ValueError) as error:
                    reply = error_reply(400, f"Bad request: {error}")
            if hostile is not None and hostile.kind == "oversize":
                reply.body += b"\0" * int(hostile.value)
            self._send(reply, drip_s=hostile.value if hostile is not None and hostile.kind == "slow" else None)

        def _send(self, reply: Reply, *, drip_s: float | None = None) -> None:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command == "HEAD":
                return
            try:
                if drip_s is None:
                    self.wfile.write(reply.body)
                    return
                for index in range(len(reply.body)):
                    if server._stopping.wait(drip_s):
                        break
                    self.wfile.write(reply.body[index:index + 1])
                    self.wfile.flush()
            except OSError:
                # The client hung up, as a bounded client does on a body too big or too slow.
                self.close_connection = True

        do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle

    return _Handler
