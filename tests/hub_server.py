"""A local Hub-compatible HTTP server for tests: the real huggingface_hub, timm and transformers talk to it.

It speaks the part of the Hugging Face Hub API that freehub and its libraries use (model search with
Link-header pagination, model info, tree, resolve, repo creation, preupload, NDJSON commits, whoami)
and stores repos under a folder: content-addressed blobs plus one JSON file per commit. Tests seed
repos with :meth:`HubServer.add_repo`, flip access flags, inject failures and hostile behaviours
(:meth:`HubServer.fail_next`, :meth:`HubServer.misbehave_next`, :attr:`HubServer.link_base`) and read
every request back from :attr:`HubServer.requests`.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import yaml

# Extensions the real Hub stores through LFS by default (its .gitattributes); those files get LFS metadata.
_LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.npz")
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


@dataclass
class _Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of ``data`` stored as a blob (what the Hub reports as a regular file's ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _NoAliasLoader(yaml.SafeLoader):
    """Refuses YAML aliases, as the real Hub must: hostile cards carry alias bombs."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.YAMLError("aliases are not allowed")
        return super().compose_node(parent, index)


def card_metadata(readme: bytes | None) -> dict[str, Any]:
    """The YAML front matter of a model card, or ``{}`` when there is none, it does not parse or it has aliases."""
    if not readme:
        return {}
    text = readme.decode("utf-8", errors="replace")
    if not text.startswith("---"):
        return {}
    end = text.find("\n---", 3)
    if end < 0:
        return {}
    try:
        data = yaml.load(text[3:end], Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except (yaml.YAMLError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def _card_tags(card: dict[str, Any]) -> list[str]:
    # The real Hub indexes a repo under its card tags, its library, its pipeline tag and its license.
    raw = card.get("tags") or []
    tags = [str(tag) for tag in (raw if isinstance(raw, list) else [raw])]
    for key in ("library_name", "pipeline_tag"):
        if card.get(key):
            tags.append(str(card[key]))
    if card.get("license"):
        tags.append(f"license:{card['license']}")
    return list(dict.fromkeys(tags))


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


class _Api:
    """The routes, each a method answering a :class:`_Reply`; one instance per request."""

    def __init__(self, server: HubServer, handler: BaseHTTPRequestHandler, method: str, path: str,
                 query: dict[str, list[str]], body: bytes) -> None:
        self.server = server
        self.handler = handler
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        auth = handler.headers.get("Authorization", "")
        self.token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        self.role = server.tokens.get(self.token) if self.token else None

    def dispatch(self) -> _Reply:
        parts = [unquote(part) for part in self.path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) == 2 and self.method == "GET":
            return self.list_models()
        if parts[:2] == ["api", "whoami-v2"]:
            return self.whoami()
        if parts[:3] == ["api", "repos", "create"] and self.method == "POST":
            return self.create_repo()
        if parts[:2] == ["api", "validate-yaml"] and self.method == "POST":
            return _json({"errors": [], "warnings": []})
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self.model_route(f"{parts[2]}/{parts[3]}", parts[4:])
        if len(parts) >= 5 and parts[2] == "resolve" and self.method in ("GET", "HEAD"):
            return self.resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        return _error(404, "Not Found")

    def model_route(self, repo_id: str, rest: list[str]) -> _Reply:
        if self.method == "GET" and not rest:
            return self.model_info(repo_id, "main")
        if self.method == "GET" and len(rest) == 2 and rest[0] == "revision":
            return self.model_info(repo_id, rest[1])
        if self.method == "GET" and len(rest) >= 2 and rest[0] == "tree":
            return self.tree(repo_id, rest[1], "/".join(rest[2:]))
        if self.method == "POST" and len(rest) == 2 and rest[0] == "preupload":
            return self.preupload(repo_id, rest[1])
        if self.method == "POST" and len(rest) == 2 and rest[0] == "commit":
            return self.commit(repo_id, rest[1])
        return _error(404, "Not Found")

    # --- access ------------------------------------------------------------------------------------

    def _visible(self, repo_id: str) -> tuple[dict[str, Any] | None, _Reply | None]:
        meta = self.server._repo(repo_id)
        if meta is None or (meta["private"] and self.role is None):
            # Like the real Hub, a private repo is indistinguishable from a missing one without a token.
            return None, _error(404 if self.role else 401, "Repository not found", code="RepoNotFound")
        return meta, None

    def _can_write(self) -> _Reply | None:
        if self.role is None:
            return _error(401, "Invalid credentials in Authorization header")
        if self.role != "write":
            return _error(403, "You don't have the rights to write to this repo")
        return None

    # --- read routes -------------------------------------------------------------------------------

    def list_models(self) -> _Reply:
        filters = self.query.get("filter", []) + self.query.get("pipeline_tag", [])
        author = _first(self.query, "author")
        search = (_first(self.query, "search") or "").lower()
        full = _truthy(self.query, "full")
        hits = []
        for repo_id in self.server._repo_ids():
            meta = self.server._repo(repo_id)
            if meta is None or (meta["private"] and self.role is None):
                continue
            if author and repo_id.split("/")[0] != author:
                continue
            if search and search not in repo_id.lower():
                continue
            summary = self._summary(repo_id, meta, full=full)
            if all(tag in summary["tags"] for tag in filters):
                hits.append(summary)
        limit = int(_first(self.query, "limit") or self.server.page_size)
        size = max(1, min(limit, self.server.page_size))
        offset = int(base64.urlsafe_b64decode(_first(self.query, "cursor") or "MA==").decode())
        page = hits[offset:offset + size]
        headers = {}
        if offset + size < len(hits):
            query = {key: value for key, value in self.query.items() if key != "cursor"}
            query["cursor"] = [base64.urlsafe_b64encode(str(offset + size).encode()).decode()]
            headers["Link"] = f'<{self.server.link_base or self.server.url}/api/models?{urlencode(query, doseq=True)}>; rel="next"'
        return _json(page, headers=headers)

    def _summary(self, repo_id: str, meta: dict[str, Any], *, full: bool) -> dict[str, Any]:
        record = self.server._commit_record(repo_id, meta["head"])
        card = self._card(record)
        item: dict[str, Any] = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "likes": 0, "downloads": 0, "private": meta["private"], "tags": _card_tags(card),
            "pipeline_tag": card.get("pipeline_tag"), "library_name": card.get("library_name"),
            "createdAt": meta["created"],
        }
        if full:
            item.update(author=repo_id.split("/")[0], sha=record["sha"], lastModified=record["date"],
                        gated="manual" if meta["gated"] else False, disabled=False,
                        siblings=[{"rfilename": name} for name in sorted(record["files"])])
        if _truthy(self.query, "cardData") or full:
            item["cardData"] = card
        if _truthy(self.query, "config"):
            item["config"] = self._config(record)
        return item

    def _card(self, record: dict[str, Any]) -> dict[str, Any]:
        entry = record["files"].get("README.md")
        return card_metadata(self.server._blob(entry["sha256"]) if entry else None)

    def _config(self, record: dict[str, Any]) -> dict[str, Any]:
        entry = record["files"].get("config.json")
        if entry is None:
            return {}
        try:
            return json.loads(self.server._blob(entry["sha256"]))
        except ValueError:
            return {}

    def model_info(self, repo_id: str, revision: str) -> _Reply:
        meta, refusal = self._visible(repo_id)
        if refusal:
            return refusal
        record = self.server._resolve(repo_id, revision)
        if record is None:
            return _error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        card = self._card(record)
        return _json({
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": record["sha"], "lastModified": record["date"],
            "createdAt": meta["created"], "private": meta["private"],
            "gated": "manual" if meta["gated"] else False, "disabled": False, "likes": 0, "downloads": 0,
            "tags": _card_tags(card), "pipeline_tag": card.get("pipeline_tag"),
            "library_name": card.get("library_name"), "cardData": card, "config": self._config(record),
            "siblings": [_sibling(name, entry) for name, entry in sorted(record["files"].items())],
        })

    def _readable(self, repo_id: str, revision: str) -> tuple[dict[str, Any] | None, _Reply | None]:
        """The commit whose files may be read, or the refusal a Hub gives (hidden, gated, no such revision)."""
        meta, refusal = self._visible(repo_id)
        if refusal:
            return None, refusal
        if meta["gated"]:
            return None, _error(403, "Access to this gated repo is restricted", code="GatedRepo")
        record = self.server._resolve(repo_id, revision)
        if record is None:
            return None, _error(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return record, None

    def tree(self, repo_id: str, revision: str, prefix: str) -> _Reply:
        record, refusal = self._readable(repo_id, revision)
        if refusal:
            return refusal
        recursive = _truthy(self.query, "recursive")
        base = f"{prefix}/" if prefix else ""
        entries: dict[str, dict[str, Any]] = {}
        for name, entry in sorted(record["files"].items()):
            if not name.startswith(base):
                continue
            rest = name[len(base):]
            if "/" in rest and not recursive:
                folder = base + rest.split("/")[0]
                entries[folder] = {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(),
                                   "size": 0, "path": folder}
                continue
            item = {"type": "file", "oid": entry["oid"], "size": entry["size"], "path": name}
            if _is_lfs(name):
                item["lfs"] = {"oid": entry["sha256"], "size": entry["size"], "pointerSize": 134}
            entries[name] = item
        if prefix and not entries:
            return _error(404, f"{prefix} does not exist", code="EntryNotFound")
        return _json(list(entries.values()))

    def resolve(self, repo_id: str, revision: str, filename: str) -> _Reply:
        record, refusal = self._readable(repo_id, revision)
        if refusal:
            return refusal
        entry = record["files"].get(filename)
        if entry is None:
            return _error(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": record["sha"]})
        data = self.server._blob(entry["sha256"])
        headers = {"X-Repo-Commit": record["sha"], "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if _is_lfs(filename):
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])})
        ranged = _byte_range(self.handler.headers.get("Range"), len(data))
        if ranged is not None:
            start, end = ranged
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return _Reply(206, data[start:end + 1], headers)
        return _Reply(200, data, headers)

    def whoami(self) -> _Reply:
        if self.role is None:
            return _error(401, "Invalid credentials in Authorization header")
        return _json({"type": "user", "name": "tester", "fullname": "Test User", "orgs": [],
                      "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": self.role}}})

    # --- write routes ------------------------------------------------------------------------------

    def create_repo(self) -> _Reply:
        refusal = self._can_write()
        if refusal:
            return refusal
        payload = json.loads(self.body or b"{}")
        organization = payload.get("organization") or "tester"
        repo_id = f"{organization}/{payload['name']}"
        url = f"{self.server.url}/{repo_id}"
        with self.server._lock:
            if self.server._repo(repo_id) is not None:
                return _json({"error": "You already created this model repo", "url": url}, status=409)
            private = bool(payload.get("private")) or payload.get("visibility") == "private"
            self.server._create(repo_id, private=private)
        return _json({"url": url, "name": repo_id, "id": hashlib.md5(repo_id.encode()).hexdigest()[:24]})

    def preupload(self, repo_id: str, revision: str) -> _Reply:
        refusal = self._can_write() or self._visible(repo_id)[1]
        if refusal:
            return refusal
        record = self.server._resolve(repo_id, revision)
        known = record["files"] if record else {}
        files = json.loads(self.body or b"{}").get("files", [])
        # Every file is "regular": clients then send contents inline in the commit and never need LFS or Xet.
        return _json({"files": [{"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                                 "oid": known[item["path"]]["oid"] if item["path"] in known else None}
                                for item in files],
                      "commitOid": record["sha"] if record else None})

    def commit(self, repo_id: str, revision: str) -> _Reply:
        refusal = self._can_write() or self._visible(repo_id)[1]
        if refusal:
            return refusal
        if revision != "main":
            return _error(400, "Commits are only accepted on main")
        upserts: dict[str, bytes] = {}
        deletes: list[str] = []
        header: dict[str, Any] = {}
        for line in self.body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                upserts[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                deletes.append(value["path"].rstrip("/"))
            else:
                return _error(400, f"Unsupported commit operation {key!r}: this Hub only takes regular files")
        with self.server._lock:
            head = self.server._require(repo_id)["head"]
            if header.get("parentCommit") and header["parentCommit"] != head:
                return _error(412, "A commit has happened since the parent commit")
            sha = self.server._commit(repo_id, upserts=upserts, deletes=tuple(deletes),
                                      message=header.get("summary", ""))
        return _json({"success": True, "commitOid": sha, "commitUrl": f"{self.server.url}/{repo_id}/commit/{sha}",
                      "pullRequestUrl": None})


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (a bounded client refusing a body) is not a server error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _sibling(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    sibling: dict[str, Any] = {"rfilename": name, "size": entry["size"], "blobId": entry["oid"]}
    if _is_lfs(name):
        sibling["lfs"] = {"sha256": entry["sha256"], "size": entry["size"], "pointerSize": 134}
    return sibling


def _is_lfs(name: str) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern) for pattern in _LFS_PATTERNS)


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes="):].partition("-")
    if not first:
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end else None


def _first(query: dict[str, list[str]], key: str) -> str | None:
    values = query.get(key)
    return values[0] if values else None


def _truthy(query: dict[str, list[str]], key: str) -> bool:
    return (_first(query, key) or "").lower() in ("1", "true", "yes")


def _json(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> _Reply:
    return _Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


def _error(status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> _Reply:
    extra = {"X-Error-Message": message, **(headers or {})}
    if code:
        extra["X-Error-Code"] = code
    return _json({"error": message}, status=status, headers=extra)


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
                self._send(_Reply(302, b"", {"Location": target}))
                return
            failure = server._failure_for(self.command, split.path)
            if failure is not None:
                extra = {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
                reply = _error(failure.status, HTTPStatus(failure.status).phrase, headers=extra)
            else:
                try:
                    reply = _Api(server, self, self.command, split.path, query, body).dispatch()
                except (KeyError, ValueError) as error:
                    reply = _error(400, f"Bad request: {error}")
            if hostile is not None and hostile.kind == "oversize":
                reply.body += b"\0" * int(hostile.value)
            self._send(reply, drip_s=hostile.value if hostile is not None and hostile.kind == "slow" else None)

        def _send(self, reply: _Reply, *, drip_s: float | None = None) -> None:
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
