"""The routes of the test Hub: each answers one kind of request from the repos a :class:`~hub_server.HubServer` stores.

Split from ``hub_server.py``, which keeps the storage, the HTTP handler and the injected failures.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode

import yaml

if TYPE_CHECKING:
    from hub_server import HubServer

# Extensions the real Hub stores through LFS by default (its .gitattributes); those files get LFS metadata.
_LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.npz")


@dataclass
class Reply:
    """One answer: status, body and headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


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


class Routes:
    """The routes, each a method answering a :class:`Reply`; one instance per request."""

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

    def dispatch(self) -> Reply:
        parts = [unquote(part) for part in self.path.strip("/").split("/")]
        if parts[:2] == ["api", "models"] and len(parts) == 2 and self.method == "GET":
            return self.list_models()
        if parts[:2] == ["api", "whoami-v2"]:
            return self.whoami()
        if parts[:3] == ["api", "repos", "create"] and self.method == "POST":
            return self.create_repo()
        if parts[:2] == ["api", "validate-yaml"] and self.method == "POST":
            return json_reply({"errors": [], "warnings": []})
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            return self.model_route(f"{parts[2]}/{parts[3]}", parts[4:])
        if len(parts) >= 5 and parts[2] == "resolve" and self.method in ("GET", "HEAD"):
            return self.resolve(f"{parts[0]}/{parts[1]}", parts[3], "/".join(parts[4:]))
        return error_reply(404, "Not Found")

    def model_route(self, repo_id: str, rest: list[str]) -> Reply:
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
        return error_reply(404, "Not Found")

    # --- access ------------------------------------------------------------------------------------

    def _visible(self, repo_id: str) -> tuple[dict[str, Any] | None, Reply | None]:
        meta = self.server._repo(repo_id)
        if meta is None or (meta["private"] and self.role is None):
            # Like the real Hub, a private repo is indistinguishable from a missing one without a token.
            return None, error_reply(404 if self.role else 401, "Repository not found", code="RepoNotFound")
        return meta, None

    def _can_write(self) -> Reply | None:
        if self.role is None:
            return error_reply(401, "Invalid credentials in Authorization header")
        if self.role != "write":
            return error_reply(403, "You don't have the rights to write to this repo")
        return None

    # --- read routes -------------------------------------------------------------------------------

    def list_models(self) -> Reply:
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
        return json_reply(page, headers=headers)

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

    def model_info(self, repo_id: str, revision: str) -> Reply:
        meta, refusal = self._visible(repo_id)
        if refusal:
            return refusal
        record = self.server._resolve(repo_id, revision)
        if record is None:
            return error_reply(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        card = self._card(record)
        return json_reply({
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
            "author": repo_id.split("/")[0], "sha": record["sha"], "lastModified": record["date"],
            "createdAt": meta["created"], "private": meta["private"],
            "gated": "manual" if meta["gated"] else False, "disabled": False, "likes": 0, "downloads": 0,
            "tags": _card_tags(card), "pipeline_tag": card.get("pipeline_tag"),
            "library_name": card.get("library_name"), "cardData": card, "config": self._config(record),
            "siblings": [_sibling(name, entry) for name, entry in sorted(record["files"].items())],
        })

    def _readable(self, repo_id: str, revision: str) -> tuple[dict[str, Any] | None, Reply | None]:
        """The commit whose files may be read, or the refusal a Hub gives (hidden, gated, no such revision)."""
        meta, refusal = self._visible(repo_id)
        if refusal:
            return None, refusal
        if meta["gated"]:
            return None, error_reply(403, "Access to this gated repo is restricted", code="GatedRepo")
        record = self.server._resolve(repo_id, revision)
        if record is None:
            return None, error_reply(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return record, None

    def tree(self, repo_id: str, revision: str, prefix: str) -> Reply:
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
            return error_reply(404, f"{prefix} does not exist", code="EntryNotFound")
        return json_reply(list(entries.values()))

    def resolve(self, repo_id: str, revision: str, filename: str) -> Reply:
        record, refusal = self._readable(repo_id, revision)
        if refusal:
            return refusal
        entry = record["files"].get(filename)
        if entry is None:
            return error_reply(404, "Entry not found", code="EntryNotFound", headers={"X-Repo-Commit": record["sha"]})
        data = self.server._blob(entry["sha256"])
        headers = {"X-Repo-Commit": record["sha"], "ETag": f'"{entry["oid"]}"', "Accept-Ranges": "bytes",
                   "Content-Type": "application/octet-stream"}
        if _is_lfs(filename):
            headers.update({"X-Linked-Etag": f'"{entry["sha256"]}"', "X-Linked-Size": str(entry["size"])})
        ranged = _byte_range(self.handler.headers.get("Range"), len(data))
        if ranged is not None:
            start, end = ranged
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return Reply(206, data[start:end + 1], headers)
        return Reply(200, data, headers)

    def whoami(self) -> Reply:
        if self.role is None:
            return error_reply(401, "Invalid credentials in Authorization header")
        return json_reply({"type": "user", "name": "tester", "fullname": "Test User", "orgs": [],
                      "auth": {"type": "access_token", "accessToken": {"displayName": "test", "role": self.role}}})

    # --- write routes ------------------------------------------------------------------------------

    def create_repo(self) -> Reply:
        refusal = self._can_write()
        if refusal:
            return refusal
        payload = json.loads(self.body or b"{}")
        organization = payload.get("organization") or "tester"
        repo_id = f"{organization}/{payload['name']}"
        url = f"{self.server.url}/{repo_id}"
        with self.server._lock:
            if self.server._repo(repo_id) is not None:
                return json_reply({"error": "You already created this model repo", "url": url}, status=409)
            private = bool(payload.get("private")) or payload.get("visibility") == "private"
            self.server._create(repo_id, private=private)
        return json_reply({"url": url, "name": repo_id, "id": hashlib.md5(repo_id.encode()).hexdigest()[:24]})

    def preupload(self, repo_id: str, revision: str) -> Reply:
        refusal = self._can_write() or self._visible(repo_id)[1]
        if refusal:
            return refusal
        record = self.server._resolve(repo_id, revision)
        known = record["files"] if record else {}
        files = json.loads(self.body or b"{}").get("files", [])
        # Every file is "regular": clients then send contents inline in the commit and never need LFS or Xet.
        return json_reply({"files": [{"path": item["path"], "uploadMode": "regular", "shouldIgnore": False,
                                 "oid": known[item["path"]]["oid"] if item["path"] in known else None}
                                for item in files],
                      "commitOid": record["sha"] if record else None})

    def commit(self, repo_id: str, revision: str) -> Reply:
        refusal = self._can_write() or self._visible(repo_id)[1]
        if refusal:
            return refusal
        if revision != "main":
            return error_reply(400, "Commits are only accepted on main")
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
                return error_reply(400, f"Unsupported commit operation {key!r}: this Hub only takes regular files")
        with self.server._lock:
            head = self.server._require(repo_id)["head"]
            if header.get("parentCommit") and header["parentCommit"] != head:
                return error_reply(412, "A commit has happened since the parent commit")
            sha = self.server._commit(repo_id, upserts=upserts, deletes=tuple(deletes),
                                      message=header.get("summary", ""))
        return json_reply({"success": True, "commitOid": sha, "commitUrl": f"{self.server.url}/{repo_id}/commit/{sha}",
                      "pullRequestUrl": None})


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


def json_reply(payload: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


def error_reply(status: int, message: str, *, code: str | None = None, headers: dict[str, str] | None = None) -> Reply:
    extra = {"X-Error-Message": message, **(headers or {})}
    if code:
        extra["X-Error-Code"] = code
    return json_reply({"error": message}, status=status, headers=extra)
