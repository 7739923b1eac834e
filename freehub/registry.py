"""The local model registry: a SQLite index plus the verified checkpoints on disk beside it.

Layout of a registry folder::

    .freehub-registry     marks the folder as a registry: freehub deletes only inside folders it marked
    index.sqlite          one row per registered model version, one per skipped repo revision
    models/<id>/          the verified native files of that version, plus spec.json
    staging/<hex>/        work folders of collect runs in progress, each alive while the process
    staging/<hex>.lock    that made it holds the lock on its lock file (see :mod:`freehub.locks`)

A model folder is fully written under ``staging/`` and renamed into ``models/`` inside the same
write transaction that inserts its row, so a crash at any moment leaves either no trace (a staging
folder or an unreferenced model folder, removed by the sweep on the next :meth:`Registry.open`) or a
complete, indexed model. Staging folders are judged alive by their locks, not by process ids, which
mean nothing across containers sharing a volume.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from freehub import locks
from freehub.atomic import atomic_write_text
from freehub.errors import ConfigError, RegistryError
from freehub.paths import freehub_home
from freehub.spec import ModelSpec, canonical_label_key

if TYPE_CHECKING:  # the index is read without torch: `freehub registry list` must stay light
    from freehub.task_model import TaskModel

SCHEMA_VERSION = 1
SPEC_FILENAME = "spec.json"
_INDEX_FILENAME = "index.sqlite"
_MARKER_FILENAME = ".freehub-registry"
_MODEL_ID = re.compile(r"^[A-Za-z0-9._-]+--[A-Za-z0-9._-]+--[0-9a-f]{12}$")
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE models (
    id TEXT PRIMARY KEY,
    repo_id TEXT NOT NULL,
    sha TEXT NOT NULL,
    version INTEGER NOT NULL,
    status TEXT NOT NULL,
    library TEXT NOT NULL,
    architecture TEXT NOT NULL,
    param_count INTEGER,
    input_channels INTEGER NOT NULL,
    input_height INTEGER NOT NULL,
    input_width INTEGER NOT NULL,
    mean TEXT NOT NULL,
    std TEXT NOT NULL,
    interpolation TEXT NOT NULL,
    num_classes INTEGER NOT NULL,
    label_names TEXT NOT NULL,
    label_keys TEXT NOT NULL,
    head_names TEXT NOT NULL,
    feature_dim INTEGER,
    license TEXT,
    tags TEXT NOT NULL,
    files TEXT NOT NULL,
    pickled INTEGER NOT NULL,
    collected_at TEXT NOT NULL,
    UNIQUE (repo_id, sha),
    UNIQUE (repo_id, version)
);
CREATE TABLE skipped (
    repo_id TEXT NOT NULL,
    sha TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    skipped_at TEXT NOT NULL,
    PRIMARY KEY (repo_id, sha)
);
"""


@dataclass(frozen=True)
class ModelRecord:
    """One registered model version, as indexed.

    ``status`` is ``"current"`` for the newest version of its repo and ``"superseded"`` for older
    ones. ``label_keys`` holds :func:`canonical_label_key` of each label (``None``: model-local).
    ``files`` maps each native file to its sha256. ``pickled`` marks weights collected from a
    pickle file under ``--allow-pickle`` (reloaded with ``weights_only=True``).
    """

    id: str
    repo_id: str
    sha: str
    version: int
    status: str
    library: str
    architecture: str
    param_count: int | None
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str
    num_classes: int
    label_names: tuple[str, ...]
    label_keys: tuple[str | None, ...]
    head_names: tuple[str, ...]
    feature_dim: int | None
    license: str | None
    tags: tuple[str, ...]
    files: dict[str, str]
    pickled: bool
    collected_at: str
    path: Path

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        data = asdict(self)
        data["path"] = str(self.path)
        return data


@dataclass(frozen=True)
class ModelSummary:
    """The fields of a :class:`ModelRecord` that a listing shows."""

    id: str
    version: int
    status: str
    library: str
    architecture: str
    num_classes: int
    input_size: tuple[int, int, int]


@dataclass(frozen=True)
class SkipRecord:
    """A repo revision that a crawl looked at and did not register, with why."""

    repo_id: str
    sha: str
    reason: str
    message: str
    skipped_at: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        return asdict(self)


def default_registry_path() -> Path:
    """Where the registry lives unless told otherwise: ``$FREEHUB_HOME/registry``."""
    return freehub_home() / "registry"


def model_id_for(*, repo_id: str, sha: str) -> str:
    """The registry id of a repo at a commit: filesystem-safe, stable across registries."""
    return f"{repo_id.replace('/', '--')}--{sha[:12]}"


class Registry:
    """A SQLite-indexed store of verified, normalised classifiers.

    Open one with :meth:`open`. A registry is safe to share between threads of one process and
    between processes: every write is one ``BEGIN IMMEDIATE`` transaction.
    """

    def __init__(self, *, root: Path, connection: sqlite3.Connection) -> None:
        self.root = root
        self._conn = connection
        self._lock = threading.RLock()

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Registry:
        """Open (creating if needed) the registry at ``path``, default :func:`default_registry_path`.

        Opening sweeps away what a crashed writer left behind: staging folders no live process holds
        and model folders that no row references. A folder that is not a registry but already has
        ``models/`` or ``staging/`` content is refused (:class:`~freehub.errors.ConfigError`): the
        sweep would delete it.
        """
        root = Path(path) if path is not None else default_registry_path()
        _claim(root)
        (root / "models").mkdir(parents=True, exist_ok=True)
        (root / "staging").mkdir(parents=True, exist_ok=True)
        try:
            connection = sqlite3.connect(
                root / _INDEX_FILENAME, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
            )
            connection.row_factory = sqlite3.Row
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")
            connection.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        except sqlite3.Error as error:
            raise RegistryError(f"cannot open registry index at {root / _INDEX_FILENAME}: {error}") from error
        registry = cls(root=root, connection=connection)
        registry._migrate()
        registry._sweep()
        return registry

    def close(self) -> None:
        """Close the index connection."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, serialised across threads and processes."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        with self._write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            elif version != SCHEMA_VERSION:
                raise RegistryError(
                    f"registry at {self.root} has schema version {version}; this freehub reads version {SCHEMA_VERSION}"
                )

    def _sweep(self) -> None:
        # Under the write lock no other process is between renaming a model folder into place and
        # committing its row, so an unreferenced folder here is debris from a crash. Only names this
        # registry gives its model folders are touched.
        with self._write() as conn:
            known = {row[0] for row in conn.execute("SELECT id FROM models")}
            for folder in (self.root / "models").iterdir():
                if folder.name not in known and _MODEL_ID.match(folder.name) and not folder.is_symlink():
                    shutil.rmtree(folder, ignore_errors=True)
        staging = self.root / "staging"
        for entry in staging.iterdir():
            if entry.name.endswith(".lock"):
                _sweep_if_unheld(lock=entry, folder=staging / entry.name[: -len(".lock")])
            elif entry.is_dir() and not entry.is_symlink() and not (staging / f"{entry.name}.lock").exists():
                # A work folder is made only once its lock is held: one without a lock file is debris.
                shutil.rmtree(entry, ignore_errors=True)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        """A fresh work folder on the registry's file system, removed on exit unless registered.

        The folder lives as long as this process holds the lock on ``<folder>.lock``: a sweep by any
        other process, in any container sharing the volume, leaves it alone.
        """
        while True:
            name = secrets.token_hex(8)
            lock = self.root / "staging" / f"{name}.lock"
            fd = locks.hold(path=lock)
            # A sweep may have taken and removed a lock file between its creation and our lock on it.
            if locks.still_linked(path=lock, fd=fd):
                break
            os.close(fd)
        folder = self.root / "staging" / name
        try:
            folder.mkdir()
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)
            os.close(fd)

    def register(
        self,
        *,
        staged: Path,
        repo_id: str,
        sha: str,
        spec: ModelSpec,
        files: Mapping[str, str],
        license: str | None = None,
        tags: Sequence[str] = (),
        pickled: bool = False,
    ) -> ModelRecord:
        """Move a verified checkpoint folder into the registry and index it, in one transaction.

        ``staged`` must be a folder from :meth:`staging` holding the native files listed in
        ``files`` (name -> sha256). It becomes ``models/<id>/`` with ``spec.json`` added. If this
        repo revision is already registered the existing record is returned and nothing changes.
        """
        model_id = model_id_for(repo_id=repo_id, sha=sha)
        atomic_write_text(staged / SPEC_FILENAME, json.dumps(spec.to_dict(), indent=2, sort_keys=True))
        target = self.root / "models" / model_id
        with self._write() as conn:
            existing = conn.execute("SELECT id FROM models WHERE repo_id = ? AND sha = ?", (repo_id, sha)).fetchone()
            if existing is None:
                version = conn.execute(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM models WHERE repo_id = ?", (repo_id,)
                ).fetchone()[0]
                os.replace(staged, target)
                try:
                    conn.execute(
                        "INSERT INTO models VALUES (" + ", ".join("?" * 24) + ")",
                        _model_row(
                            model_id=model_id,
                            repo_id=repo_id,
                            sha=sha,
                            version=version,
                            spec=spec,
                            files=files,
                            license=license,
                            tags=tags,
                            pickled=pickled,
                        ),
                    )
                    conn.execute("DELETE FROM skipped WHERE repo_id = ? AND sha = ?", (repo_id, sha))
                    _refresh_status(conn, repo_id=repo_id)
                except BaseException:
                    shutil.rmtree(target, ignore_errors=True)
                    raise
        return self.get(existing[0] if existing is not None else model_id)

    def record_skip(self, *, repo_id: str, sha: str, reason: str, message: str) -> SkipRecord:
        """Remember that a repo revision was not registered and why (latest reason wins)."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM skipped WHERE repo_id = ? AND sha = ?", (repo_id, sha)).fetchone()
            if row is None or (row["reason"], row["message"]) != (reason, message):
                conn.execute(
                    "INSERT OR REPLACE INTO skipped VALUES (?, ?, ?, ?, ?)", (repo_id, sha, reason, message, _now())
                )
            row = conn.execute("SELECT * FROM skipped WHERE repo_id = ? AND sha = ?", (repo_id, sha)).fetchone()
        return _skip_from_row(row)

    def find(self, *, repo_id: str, sha: str) -> ModelRecord | None:
        """The record of a repo at a commit, if registered."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM models WHERE repo_id = ? AND sha = ?", (repo_id, sha)).fetchone()
        return self._record_from_row(row) if row is not None else None

    def find_skip(self, *, repo_id: str, sha: str) -> SkipRecord | None:
        """Why a repo at a commit was skipped, if it was."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM skipped WHERE repo_id = ? AND sha = ?", (repo_id, sha)).fetchone()
        return _skip_from_row(row) if row is not None else None

    def get(self, model_id: str) -> ModelRecord:
        """The record with this id; :class:`RegistryError` if there is none."""
        with self._lock:
            row = self._conn.execute("SELECT * FROM models WHERE id = ?", (model_id,)).fetchone()
        if row is None:
            raise RegistryError(f"no model {model_id!r} in the registry at {self.root}")
        return self._record_from_row(row)

    def list(
        self, *, all_versions: bool = False, library: str | None = None, repo_id: str | None = None
    ) -> list[ModelRecord]:
        """Registered models sorted by repo and version: current versions only unless ``all_versions``."""
        return [self._record_from_row(row) for row in self._rows("*", all_versions=all_versions, library=library, repo_id=repo_id)]

    def summaries(self, *, all_versions: bool = False) -> list[ModelSummary]:
        """What a listing shows of each model (see :meth:`list`), read without decoding the rest of its row.

        A registry of thousands of models lists in a fraction of the time full records take.
        """
        columns = "id, version, status, library, architecture, num_classes, input_channels, input_height, input_width"
        return [
            ModelSummary(
                id=row["id"], version=row["version"], status=row["status"], library=row["library"], architecture=row["architecture"],
                num_classes=row["num_classes"], input_size=(row["input_channels"], row["input_height"], row["input_width"]),
            )
            for row in self._rows(columns, all_versions=all_versions)
        ]

    def _rows(
        self, columns: str, *, all_versions: bool, library: str | None = None, repo_id: str | None = None
    ) -> list[sqlite3.Row]:
        clauses, params = [], []
        if not all_versions:
            clauses.append("status = 'current'")
        if library is not None:
            clauses.append("library = ?")
            params.append(library)
        if repo_id is not None:
            clauses.append("repo_id = ?")
            params.append(repo_id)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            return self._conn.execute(f"SELECT {columns} FROM models {where} ORDER BY repo_id, version", params).fetchall()

    def skipped(self) -> list[SkipRecord]:
        """Every skipped repo revision, sorted by repo."""
        with self._lock:
            rows = self._conn.execute("SELECT * FROM skipped ORDER BY repo_id, skipped_at").fetchall()
        return [_skip_from_row(row) for row in rows]

    def remove(self, model_id: str) -> ModelRecord:
        """Unregister a model version and delete its folder; the newest remaining version becomes current."""
        record = self.get(model_id)
        with self._write() as conn:
            conn.execute("DELETE FROM models WHERE id = ?", (model_id,))
            _refresh_status(conn, repo_id=record.repo_id)
        # After the commit the folder is unreferenced: a crash here leaves debris for the sweep.
        shutil.rmtree(record.path, ignore_errors=True)
        return record

    def load(self, model_id: str) -> TaskModel:
        """Rebuild one registered model from its folder, in eval mode, tagged with its registry id."""
        return load_record(record=self.get(model_id))

    def task_models(
        self, *, library: str | None = None, all_versions: bool = False
    ) -> Iterator[TaskModel]:
        """Rebuild every listed model from disk (see :meth:`list`), one at a time."""
        for record in self.list(all_versions=all_versions, library=library):
            yield load_record(record=record)

    def _record_from_row(self, row: sqlite3.Row) -> ModelRecord:
        return ModelRecord(
            id=row["id"],
            repo_id=row["repo_id"],
            sha=row["sha"],
            version=row["version"],
            status=row["status"],
            library=row["library"],
            architecture=row["architecture"],
            param_count=row["param_count"],
            input_size=(row["input_channels"], row["input_height"], row["input_width"]),
            mean=tuple(json.loads(row["mean"])),
            std=tuple(json.loads(row["std"])),
            interpolation=row["interpolation"],
            num_classes=row["num_classes"],
            label_names=tuple(json.loads(row["label_names"])),
            label_keys=tuple(json.loads(row["label_keys"])),
            head_names=tuple(json.loads(row["head_names"])),
            feature_dim=row["feature_dim"],
            license=row["license"],
            tags=tuple(json.loads(row["tags"])),
            files=json.loads(row["files"]),
            pickled=bool(row["pickled"]),
            collected_at=row["collected_at"],
            path=self.root / "models" / row["id"],
        )


def load_record(*, record: ModelRecord) -> TaskModel:
    """Rebuild a registered model from its folder, in eval mode, tagged with its registry id.

    Needs no open index: a meta-training run loads its teachers by record, long after listing them.
    """
    from freehub.adapters import load_task_model

    model = load_task_model(folder=record.path, allow_pickle=record.pickled)
    model.eval()
    return model.with_spec(extra={**model.spec.extra, "registry_id": record.id, "repo_id": record.repo_id})


def _model_row(
    *,
    model_id: str,
    repo_id: str,
    sha: str,
    version: int,
    spec: ModelSpec,
    files: Mapping[str, str],
    license: str | None,
    tags: Sequence[str],
    pickled: bool,
) -> tuple[Any, ...]:
    channels, height, width = spec.input_size
    return (
        model_id,
        repo_id,
        sha,
        version,
        "current",
        spec.library,
        spec.architecture,
        spec.param_count,
        channels,
        height,
        width,
        json.dumps(list(spec.mean)),
        json.dumps(list(spec.std)),
        spec.interpolation,
        spec.num_classes,
        json.dumps(list(spec.label_names)),
        json.dumps([canonical_label_key(name) for name in spec.label_names]),
        json.dumps(list(spec.head_names)),
        spec.feature_dim,
        license,
        json.dumps(list(tags)),
        json.dumps(dict(sorted(files.items()))),
        int(pickled),
        _now(),
    )


def _refresh_status(conn: sqlite3.Connection, *, repo_id: str) -> None:
    conn.execute(
        "UPDATE models SET status = CASE WHEN version = "
        "(SELECT MAX(version) FROM models AS newest WHERE newest.repo_id = models.repo_id) "
        "THEN 'current' ELSE 'superseded' END WHERE repo_id = ?",
        (repo_id,),
    )


def _skip_from_row(row: sqlite3.Row) -> SkipRecord:
    return SkipRecord(
        repo_id=row["repo_id"], sha=row["sha"], reason=row["reason"], message=row["message"], skipped_at=row["skipped_at"]
    )


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _claim(root: Path) -> None:
    """Mark ``root`` as a registry, refusing a folder whose ``models/`` or ``staging/`` someone else filled."""
    marker = root / _MARKER_FILENAME
    if marker.is_file():
        return
    if root.exists() and not root.is_dir():
        raise ConfigError(f"registry {root}: not a folder")
    # A registry made before the marker existed is recognised by its index.
    if not (root / _INDEX_FILENAME).is_file():
        foreign = [name for name in ("models", "staging") if (root / name).is_dir() and any((root / name).iterdir())]
        if foreign:
            raise ConfigError(
                f"registry {root}: not a freehub registry, and its {' and '.join(foreign)} folder is not empty; "
                "choose an empty or new folder"
            )
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, json.dumps({"freehub_registry_schema": SCHEMA_VERSION}) + "\n")


def _sweep_if_unheld(*, lock: Path, folder: Path) -> None:
    """Remove a staging folder and its lock file when no process holds the lock."""
    try:
        fd = locks.hold(path=lock, create=False)
    except (BlockingIOError, FileNotFoundError):
        return
    try:
        if locks.still_linked(path=lock, fd=fd):
            shutil.rmtree(folder, ignore_errors=True)
            lock.unlink(missing_ok=True)
    finally:
        os.close(fd)
