"""Advisory file locks shared by every process that opens the same file, in any container.

A process id says nothing across PID namespaces (two containers sharing a volume), but a lock on an
open file is held by the kernel for as long as the holder lives and released when it dies, however it
dies. The registry marks its staging folders this way and a folder hub serialises writes to a repo.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

if os.name == "nt":
    import msvcrt

    def _lock(fd: int, *, blocking: bool) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_LOCK if blocking else msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _lock(fd: int, *, blocking: bool) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            return False
        return True


@contextmanager
def exclusive(*, path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if needed) for the block, waiting for other holders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd, blocking=True)
        yield
    finally:
        os.close(fd)


def hold(*, path: Path, create: bool = True) -> int:
    """Take the lock on ``path`` without waiting and return its descriptor.

    The lock lasts until the descriptor is closed or the process ends. Raises :class:`BlockingIOError`
    when another open file holds it, :class:`FileNotFoundError` when ``path`` is missing and not ``create``.
    """
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o644)
    if not _lock(fd, blocking=False):
        os.close(fd)
        raise BlockingIOError(f"{path} is locked")
    return fd


def still_linked(*, path: Path, fd: int) -> bool:
    """Whether ``path`` still names the file open as ``fd`` (a sweeper may have removed it meanwhile)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
