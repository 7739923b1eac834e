"""A folder laid out like a Hub: ``ORG/NAME/<files>``, with past revisions under ``<root>/.freehub``.

Only real folders and regular files under the root count: a symlinked org, repo or file is never
followed, so a link to a home directory cannot leak its files into the hub's store or a registry.
Files are copied in bounded chunks and checked against their recorded sha256, never read whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from freehub import locks
from freehub.errors import ConfigError, EntryNotFoundError, HubError, HubPermissionError, RepoNotFoundError
from freehub.hub.base import (
    Hub,
    RepoFile,
    RepoInfo,
    RepoSummary,
    card_metadata,
    card_tags,
    _check_filename,
    _check_pinned,
    _check_repo_id,
    _inside,
    is_repo_id,
    _is_sha,
)
from freehub.hub.transfer import copy_verified
from freehub.atomic import atomic_write_text
from freehub.limits import Limits

# Folders the Hub never stores (huggingface_hub refuses to commit them): skipped by a local hub too.
_IGNORED_FOLDERS = frozenset({".git", ".cache"})
_SETTLED_S = 2.0


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
    even after the files change, or fails with :class:`~freehub.errors.EntryNotFoundError`. Writes to one
    repo are serialised across processes by a file lock. ``limits.max_card_bytes`` bounds the model
    cards read for search.
    """

    def __init__(self, *, root: Path, limits: Limits | None = None) -> None:
        self.root = Path(root)
        self.location = str(self.root)
        self._limits = limits or Limits()
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
        """See :meth:`Hub.search`. Repos come in repo-id order.

        Raises :class:`~freehub.errors.ConfigError` when the root is not a folder.
        """
        if not self.root.is_dir():
            raise ConfigError(f"no Hub at {self.location}: not a folder (a local Hub is a folder of ORG/NAME repos)")
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
            files=tuple(_entry(path, entry) for path, entry in sorted(snapshot.files.items())),
            card_data=card,
            gated=False,
            private=bool(self._settings(repo_id).get("private", False)),
        )

    def download(
        self,
        *,
        repo_id: str,
        revision: str,
        filenames: Sequence[str],
        local_dir: Path,
        cancel: threading.Event | None = None,
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
            what = f"{repo_id}@{revision[:12]}/{name}"
            if entry is None:
                raise EntryNotFoundError(f"{what}: file not found")
            source = snapshot.sources.get(name) or self._object(entry["sha256"])
            target = _inside(local_dir / path, local_dir)
            copy_verified(source=source, target=target, entry=_entry(name, entry), what=what, cancel=cancel)
            result[name] = target
        return result

    def create_repo(self, *, repo_id: str, private: bool = False, exist_ok: bool = True) -> str:
        """See :meth:`Hub.create_repo`. Returns the repo's folder."""
        _check_repo_id(repo_id)
        repo_dir = self._repo_dir(repo_id)
        with self._locked(repo_id):
            self._recover(repo_id)
            if repo_dir.is_dir():
                if not exist_ok:
                    raise HubError(f"create {repo_id}: already exists")
                return str(repo_dir)
            repo_dir.mkdir(parents=True)
            atomic_write_text(self._store / "repos" / repo_id / "settings.json", json.dumps({"private": private}))
        return str(repo_dir)

    def upload_folder(self, *, repo_id: str, folder: Path, commit_message: str, replace: bool = False) -> str:
        """See :meth:`Hub.upload_folder`. The repo folder is swapped in whole: readers see old or new, and
        concurrent uploads to one repo (from any process) apply one after the other."""
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"not a folder: {folder}")
        with self._locked(repo_id):
            self._require(repo_id)
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

    def _locked(self, repo_id: str) -> Any:
        _check_repo_id(repo_id)
        return locks.exclusive(path=self._store / "locks" / f"{repo_id.replace('/', '--')}.lock")

    def _require(self, repo_id: str) -> None:
        _check_repo_id(repo_id)
        self._recover(repo_id)
        if not self._is_repo_dir(repo_id):
            raise RepoNotFoundError(f"repo {repo_id}: not found in {self.location}")

    def _is_repo_dir(self, repo_id: str) -> bool:
        # A symlinked org or repo folder could point anywhere on the machine: it is not part of the hub.
        org, name = repo_id.split("/")
        org_dir = self.root / org
        return (
            org_dir.is_dir() and not org_dir.is_symlink()
            and (org_dir / name).is_dir() and not (org_dir / name).is_symlink()
        )

    def _recover(self, repo_id: str) -> None:
        # A crash between the two renames of upload_folder leaves only the retired copy: bring it back.
        repo_dir = self._repo_dir(repo_id)
        if repo_dir.exists() or repo_dir.is_symlink() or not repo_dir.parent.is_dir():
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
            if not org.name.startswith(".") and org.is_dir() and not org.is_symlink()
            for name in org.iterdir()
            if not name.name.startswith(".") and is_repo_id(f"{org.name}/{name.name}")
            and name.is_dir() and not name.is_symlink()
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
                    copy_verified(source=snapshot.sources[relative], target=target, entry=_entry(relative, entry),
                                  what=f"{repo_id}/{relative}")
            record = {"sha": snapshot.sha, "files": snapshot.files, "message": message,
                      "date": _iso(time.time())}
            atomic_write_text(manifest, json.dumps(record, sort_keys=True))
        except HubError:
            # A file changed while it was copied: this revision is gone already, there is nothing to keep.
            return
        except PermissionError:
            # A read-only hub still serves its current files; it just cannot remember past revisions.
            return

    def _recorded(self, repo_id: str, revision: str) -> _Snapshot:
        manifest = self._store / "repos" / repo_id / "revisions" / f"{revision}.json"
        if not _is_sha(revision) or not manifest.is_file():
            raise EntryNotFoundError(f"repo {repo_id}: revision {revision} not found")
        record = json.loads(manifest.read_text())
        return _Snapshot(sha=record["sha"], files=record["files"])

    def _object(self, sha256: str) -> Path:
        return self._store / "objects" / sha256[:2] / sha256

    def _card(self, snapshot: _Snapshot) -> dict[str, Any]:
        entry = snapshot.files.get("README.md")
        if entry is None or entry["size"] > self._limits.max_card_bytes:
            return {}
        source = snapshot.sources.get("README.md") or self._object(entry["sha256"])
        with open(source, "rb") as handle:
            data = handle.read(self._limits.max_card_bytes + 1)
        if len(data) > self._limits.max_card_bytes:
            return {}
        return card_metadata(data.decode("utf-8", errors="replace"))


def _entry(path: str, entry: dict[str, Any]) -> RepoFile:
    return RepoFile(path=path, size=entry["size"], sha256=entry["sha256"])


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
    return value if isinstance(value, str) and value else None
