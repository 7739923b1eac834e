"""Crawl a Hub for image classifiers, verify them and register them: the first arrow of freehub.

For every search hit, :func:`collect` resolves the commit, decides from the file listing alone
whether the repo is acceptable (file names, count, sizes within :class:`~freehub.limits.Limits`,
weight format), downloads exactly the chosen files pinned to that commit, checks their sizes and
hashes against the Hub's listing (sha256 for LFS files, the git blob id for the rest), reads the
model card, builds the model through :func:`freehub.adapters.load_task_model` and registers it.
Whatever goes wrong with one repo is recorded as skipped with a reason key and the crawl goes on;
what is not the repo's fault (disk full, out of memory, Ctrl-C, a Hub that stopped answering)
stops the crawl, leaving everything finished so far registered and nothing half-written.
"""

from __future__ import annotations

import errno
import itertools
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from tqdm.auto import tqdm

from freehub.adapters import load_task_model
from freehub.errors import (
    CheckpointError,
    ConfigError,
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
from freehub.hub import Hub, RepoFile, RepoInfo, RepoSummary, read_front_matter
from freehub.hub.transfer import file_matches
from freehub.limits import Limits
from freehub.registry import ModelRecord, Registry, SkipRecord
from freehub.task_model import ModelSpec

# A Hub that fails this many repos in a row for want of an answer is gone: stop rather than time out
# once per remaining search hit.
MAX_UNREACHABLE_IN_A_ROW = 3
_POLL_S = 0.2
# Search hits submitted ahead of the workers: enough to keep them busy, few enough to keep memory flat.
_QUEUED_PER_WORKER = 2
_T = TypeVar("_T")
_METADATA_FILES = ("config.json", "preprocessor_config.json", "README.md")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
# Reasons that follow from a revision's bytes alone: the same commit would fail the same way, so a
# later crawl does not download it again (unless asked to with ``retry_skipped``). Every other
# reason depends on the crawl's options, the token or the network, and is checked afresh.
_PERMANENT_REASONS = frozenset(
    {
        "unsafe_path",
        "no_weights",
        "checksum_mismatch",
        "bad_card",
        "corrupt_weights",
        "shape_mismatch",
        "non_finite",
        "bad_config",
        "unknown_library",
        "unknown_architecture",
        "remote_code",
        "unsafe_pickle",
        "load_failed",
    }
)


@dataclass
class CollectReport:
    """What one :func:`collect` run did, each list sorted by repo id."""

    collected: list[ModelRecord] = field(default_factory=list)
    already_present: list[ModelRecord] = field(default_factory=list)
    skipped: list[SkipRecord] = field(default_factory=list)

    def skipped_by_reason(self) -> dict[str, list[str]]:
        """Repo ids of the skipped repos, grouped by reason key."""
        groups: dict[str, list[str]] = {}
        for skip in self.skipped:
            groups.setdefault(skip.reason, []).append(skip.repo_id)
        return dict(sorted(groups.items()))

    def summary(self) -> str:
        """A few human-readable lines: counts, then skipped repos by reason."""
        lines = [
            f"collected {len(self.collected)}, already present {len(self.already_present)}, "
            f"skipped {len(self.skipped)}"
        ]
        for reason, repos in self.skipped_by_reason().items():
            lines.append(f"  skipped ({reason}): {', '.join(repos)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole report."""
        return {
            "collected": [record.to_dict() for record in self.collected],
            "already_present": [record.to_dict() for record in self.already_present],
            "skipped": [skip.to_dict() for skip in self.skipped],
            "skipped_by_reason": self.skipped_by_reason(),
        }


class _Skip(Exception):
    """A repo revision that will not be registered; ``reason`` is the registry's reason key."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class _Options:
    allow_pickle: bool
    limits: Limits
    retry_skipped: bool
    cancel: threading.Event


def collect(
    *,
    hub: Hub,
    registry: Registry,
    tags: Sequence[str] = ("few-shot",),
    library: str | None = None,
    author: str | None = None,
    search: str | None = None,
    limit: int | None = None,
    workers: int = 4,
    allow_pickle: bool = False,
    limits: Limits | None = None,
    retry_skipped: bool = False,
    progress: bool = True,
) -> CollectReport:
    """Search ``hub`` and register every acceptable classifier found into ``registry``.

    Repos already registered at their current commit are left alone; a repo with a new commit
    gets a new registry version. Pickle weights are refused unless ``allow_pickle`` (and then
    loaded with ``torch.load(weights_only=True)``). ``limits`` bounds the size of each repo (default
    :class:`~freehub.limits.Limits`). Revisions skipped earlier for a reason of their own bytes are not
    downloaded again unless ``retry_skipped``. ``workers`` repos are processed in parallel.

    Returns what was collected, already present and skipped. Raises
    :class:`~freehub.errors.CrawlAbortedError` when the disk is full, memory runs out or the Hub stops
    answering, and re-raises ``KeyboardInterrupt`` after cancelling the repos not started yet; the
    registry holds everything finished before.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    options = _Options(
        allow_pickle=allow_pickle, limits=limits or Limits(), retry_skipped=retry_skipped, cancel=threading.Event()
    )
    report = CollectReport()
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="collect")
    try:
        candidates = iter(hub.search(tags=tags, library=library, author=author, search=search, limit=limit))
        # A location that is not a Hub fails on the first page, before any progress is shown.
        first = next(candidates, None)
        with tqdm(total=limit, unit="repo", desc="collect", disable=not progress) as bar:
            hits = itertools.chain([first], candidates) if first is not None else iter(())
            unreachable = 0

            def submit(hit: RepoSummary) -> Future[tuple[str, ModelRecord | SkipRecord]]:
                return pool.submit(_collect_one, hub=hub, registry=registry, summary=hit, options=options)

            for future in _stream(hits=hits, window=_QUEUED_PER_WORKER * workers, submit=submit):
                outcome, record = future.result()
                getattr(report, outcome).append(record)
                unreachable = unreachable + 1 if outcome == "skipped" and record.reason == "unreachable" else 0
                if unreachable >= MAX_UNREACHABLE_IN_A_ROW:
                    raise CrawlAbortedError(f"{hub.location} stopped answering: {record.message}")
                bar.update(1)
                bar.set_postfix(new=len(report.collected), present=len(report.already_present),
                                skipped=len(report.skipped))
    except BaseException:
        # Repos not started are dropped and those in flight stop at their next step; each cleans up its
        # own staging folder, so the registry is left as it was plus whatever finished.
        options.cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    report.collected.sort(key=lambda record: record.repo_id)
    report.already_present.sort(key=lambda record: record.repo_id)
    report.skipped.sort(key=lambda skip: skip.repo_id)
    return report


def _stream(
    *, hits: Iterator[RepoSummary], window: int, submit: Callable[[RepoSummary], Future[_T]]
) -> Iterator[Future[_T]]:
    """Futures as they finish, with at most ``window`` submitted and unfinished at any time.

    The search is read only as fast as repos are processed, so memory stays flat however long the
    listing is. Waits wake at least every :data:`_POLL_S` so that Ctrl-C is seen at once: a thread
    blocked in a plain wait does not notice a signal that the OS delivered to another thread.
    """
    pending: set[Future[_T]] = set()
    exhausted = False
    while True:
        while not exhausted and len(pending) < window:
            hit = next(hits, None)
            if hit is None:
                exhausted = True
            else:
                pending.add(submit(hit))
        if not pending:
            return
        done, pending = wait(pending, timeout=_POLL_S, return_when=FIRST_COMPLETED)
        yield from done


def _collect_one(
    *, hub: Hub, registry: Registry, summary: RepoSummary, options: _Options
) -> tuple[str, ModelRecord | SkipRecord]:
    """Process one search hit; returns the report list it belongs to and its record.

    Every failure of this one repo becomes a recorded skip; only what would fail every other repo too
    (see :func:`_fatal`) escapes, as :class:`CrawlAbortedError`.
    """
    repo_id = summary.repo_id
    sha = summary.sha or ""
    try:
        _check_cancel(options)
        # A search hit that already names a known commit costs no further request.
        known = _known(registry=registry, repo_id=repo_id, sha=sha, options=options) if sha else None
        if known is not None:
            return known
        info = _repo_info(hub=hub, repo_id=repo_id)
        sha = info.sha
        known = _known(registry=registry, repo_id=repo_id, sha=sha, options=options)
        if known is not None:
            return known
        return "collected", _fetch_and_register(hub=hub, registry=registry, info=info, options=options)
    except _Skip as skip:
        reason, message = skip.reason, skip.message
    except CrawlAbortedError:
        raise
    except BaseException as error:
        fatal = _fatal(error)
        if fatal is not None:
            raise fatal from error
        if not isinstance(error, Exception):
            raise
        reason, message = _reason(error), _one_line(error)
    return "skipped", registry.record_skip(repo_id=repo_id, sha=sha, reason=reason, message=message)


def _check_cancel(options: _Options) -> None:
    if options.cancel.is_set():
        raise CrawlAbortedError("cancelled")


def _fatal(error: BaseException) -> CrawlAbortedError | None:
    """The crawl-ending error for a failure that is not the repo's fault, else ``None``."""
    if isinstance(error, MemoryError):
        return CrawlAbortedError("out of memory; lower --workers or the size limits and rerun")
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return CrawlAbortedError(f"disk full ({error.strerror}); free some space and rerun")
    if isinstance(error, sqlite3.OperationalError) and "full" in str(error):
        return CrawlAbortedError(f"registry index: {error}; free some space and rerun")
    return None


def _reason(error: Exception) -> str:
    """The skip reason of an error raised while processing one repo."""
    if isinstance(error, CheckpointError):
        return error.reason
    if isinstance(error, ConfigError):
        return "invalid_repo"
    if isinstance(error, HubError):
        return _hub_reason(error)
    return "error"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text if isinstance(error, FreehubError) else f"{type(error).__name__}: {text}"


def _known(
    *, registry: Registry, repo_id: str, sha: str, options: _Options
) -> tuple[str, ModelRecord | SkipRecord] | None:
    """The outcome of an earlier crawl of this revision, when it still holds."""
    present = registry.find(repo_id=repo_id, sha=sha)
    if present is not None:
        return "already_present", present
    earlier = registry.find_skip(repo_id=repo_id, sha=sha)
    if earlier is not None and earlier.reason in _PERMANENT_REASONS and not options.retry_skipped:
        return "skipped", earlier
    return None


def _repo_info(*, hub: Hub, repo_id: str) -> RepoInfo:
    try:
        return hub.repo_info(repo_id=repo_id)
    except HubError as error:
        raise _Skip(_hub_reason(error), str(error)) from error


def _hub_reason(error: HubError, *, info: RepoInfo | None = None) -> str:
    if isinstance(error, HubPermissionError):
        if info is not None and info.gated:
            return "gated"
        return "private" if info is not None and info.private else "access_denied"
    if isinstance(error, RepoNotFoundError):
        return "not_found"
    if isinstance(error, EntryNotFoundError):
        return "missing_file"
    if isinstance(error, HubConnectionError):
        return "unreachable"
    if isinstance(error, IntegrityError):
        return "checksum_mismatch"
    if isinstance(error, HubLimitError):
        return "too_large"
    return "hub_error"


def _fetch_and_register(*, hub: Hub, registry: Registry, info: RepoInfo, options: _Options) -> ModelRecord:
    chosen, pickled = _choose_files(files=info.files, options=options)
    with registry.staging() as work:
        download_dir = work / "download"
        model_dir = work / "model"
        model_dir.mkdir()
        _check_cancel(options)
        try:
            local = hub.download(repo_id=info.repo_id, revision=info.sha, filenames=[f.path for f in chosen],
                                 local_dir=download_dir, cancel=options.cancel)
        except HubError as error:
            raise _Skip(_hub_reason(error, info=info), str(error)) from error
        # Only the verified files move on: whatever else the download left (caches, locks) stays behind.
        digests = {}
        for entry in chosen:
            digests[entry.path] = _verify(entry=entry, local=local, root=download_dir)
            target = model_dir / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(local[entry.path], target)
        card = _read_card(model_dir / "README.md")
        _check_cancel(options)
        spec = _normalise(folder=model_dir, options=options, pickled=pickled)
        license_name = card.get("license")
        tags = sorted({*info.tags, *_as_list(card.get("tags"))})
        _check_cancel(options)
        return registry.register(
            staged=model_dir,
            repo_id=info.repo_id,
            sha=info.sha,
            spec=spec,
            files=digests,
            license=license_name,
            tags=tags,
            pickled=pickled,
        )


def _choose_files(*, files: Sequence[RepoFile], options: _Options) -> tuple[list[RepoFile], bool]:
    """Pick the files to download from the listing alone; returns them and whether weights are pickles."""
    limits = options.limits
    for entry in files:
        if not _safe_name(entry.path):
            raise _Skip("unsafe_path", f"refusing file name {entry.path!r}")
    if len(files) > limits.max_files:
        raise _Skip("too_many_files", f"{len(files)} files listed, the limit is {limits.max_files}")
    top_level = [entry for entry in files if "/" not in entry.path]
    names = {entry.path for entry in top_level}
    pickled = False
    if "model.safetensors" in names:
        weights = [entry for entry in top_level if entry.path == "model.safetensors"]
    elif "model.safetensors.index.json" in names:
        weights = [entry for entry in top_level if entry.path.endswith((".safetensors", ".safetensors.index.json"))]
    else:
        weights = [entry for entry in top_level if entry.path.endswith(_PICKLE_SUFFIXES)]
        if not weights:
            raise _Skip("no_weights", "no model.safetensors (or pickle weights) at the repo root")
        if not options.allow_pickle:
            shown = ", ".join(entry.path for entry in weights)
            raise _Skip("pickle_only", f"only pickle weights ({shown}); see allow_pickle / --allow-pickle")
        pickled = True
    chosen = weights + [entry for entry in top_level if entry.path in _METADATA_FILES]
    for entry in chosen:
        bound = _size_limit(entry.path, limits)
        if entry.size > bound:
            raise _Skip("too_large", f"{entry.path} is {entry.size} bytes, the limit is {bound}")
    total = sum(entry.size for entry in chosen)
    if total > limits.max_repo_bytes:
        raise _Skip("too_large", f"the files to download are {total} bytes, the limit is {limits.max_repo_bytes}")
    return chosen, pickled


def _size_limit(path: str, limits: Limits) -> int:
    # Cards and JSON files are parsed in memory, so they get bounds far below the weights'.
    if path == "README.md":
        return limits.max_card_bytes
    if path.endswith(".json"):
        return limits.max_json_bytes
    return limits.max_file_bytes


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(name)
        and not path.is_absolute()
        and "\\" not in name
        and ":" not in name
        and "\x00" not in name
        and all(part not in ("", ".", "..") for part in name.split("/"))
    )


def _verify(*, entry: RepoFile, local: dict[str, Path], root: Path) -> str:
    """Check one downloaded file against the listing this crawl decided on; returns its sha256."""
    path = local.get(entry.path)
    if path is None or not path.is_file():
        raise _Skip("missing_file", f"{entry.path} was not downloaded")
    if not path.resolve().is_relative_to(root.resolve()):
        raise _Skip("unsafe_path", f"{entry.path} landed outside the download folder")
    try:
        return file_matches(path=path, entry=entry)
    except IntegrityError as error:
        raise _Skip("checksum_mismatch", str(error)) from error


def _read_card(path: Path) -> dict[str, Any]:
    """The checked YAML front matter of a model card (empty without a card or front matter)."""
    if not path.is_file():
        return {}
    try:
        return read_front_matter(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise _Skip("bad_card", f"README.md is not UTF-8: {error}") from error
    except CheckpointError as error:
        raise _Skip(error.reason, str(error)) from error


def _as_list(value: object) -> Iterable[object]:
    if value is None:
        return ()
    return value if isinstance(value, list) else (value,)


def _normalise(*, folder: Path, options: _Options, pickled: bool) -> ModelSpec:
    try:
        model = load_task_model(folder=folder, allow_pickle=pickled, max_file_bytes=options.limits.max_file_bytes)
    except CheckpointError as error:
        raise _Skip(error.reason, str(error)) from error
    except FreehubError as error:
        raise _Skip("load_failed", str(error)) from error
    except Exception as error:  # noqa: BLE001 - a hostile checkpoint must not stop the crawl
        if _fatal(error) is not None:
            # Not the checkpoint's fault: recording "load_failed" would refuse a good repo for good.
            raise
        raise _Skip("load_failed", f"{type(error).__name__}: {error}") from error
    return model.spec
