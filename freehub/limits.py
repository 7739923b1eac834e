"""Bounds on everything a Hub or a repo controls: sizes, counts and waits.

A crawl reads from Hubs that anyone can write to and mirrors that anyone can run, so nothing they
announce is taken on trust: :class:`Limits` caps what one repo may cost on disk and in memory, and
:class:`Timeouts` caps how long any request may take. Both are plain frozen dataclasses: pass your own
to :func:`freehub.collect` and :func:`freehub.open_hub` (or use the ``freehub collect`` flags).
"""

from __future__ import annotations

from dataclasses import dataclass

_MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one repo may cost. A repo over any bound is skipped with reason ``too_large`` or ``too_many_files``.

    ``max_file_bytes`` bounds each weight file, ``max_repo_bytes`` the files downloaded from one repo
    together, ``max_files`` the number of files its listing may name; model cards (``README.md``) and JSON
    files (configs, preprocessor configs, shard indexes) have their own, much smaller bounds because they
    are parsed in memory. Bytes actually received are counted: a server that sends more than it listed is
    cut off at the listed size.
    """

    max_file_bytes: int = 512 * _MIB
    max_repo_bytes: int = 2048 * _MIB
    max_files: int = 200
    max_card_bytes: int = 1 * _MIB
    max_json_bytes: int = 4 * _MIB

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_repo_bytes", "max_files", "max_card_bytes", "max_json_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


@dataclass(frozen=True)
class Timeouts:
    """How long a request to a remote Hub may take, in seconds.

    ``connect_s`` bounds opening a connection and ``read_s`` any silence while waiting for bytes; a
    server that trickles bytes just fast enough to dodge ``read_s`` is still cut off by ``request_s`` for
    an API answer and by ``download_s`` for one file. ``max_api_bytes`` bounds one API answer (a search
    page or a repo listing), which is parsed in memory.
    """

    connect_s: float = 10.0
    read_s: float = 30.0
    request_s: float = 120.0
    download_s: float = 1800.0
    max_api_bytes: int = 32 * _MIB

    def __post_init__(self) -> None:
        for name in ("connect_s", "read_s", "request_s", "download_s", "max_api_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
