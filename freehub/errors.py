"""Every error freehub raises on purpose.

The CLI turns any :class:`FreehubError` into one line on stderr and a non-zero exit code; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FreehubError(Exception):
    """Base class: a problem the user can act on, reported as one line."""

    exit_code: int = 1


class ConfigError(FreehubError):
    """An option, config file or argument that cannot be used as given."""

    exit_code = 2


class DataError(FreehubError):
    """A data set that cannot be built, found or split as asked."""


class HubError(FreehubError):
    """A Hub (remote endpoint or local folder) refused or failed a request."""


class HubConnectionError(HubError):
    """The Hub endpoint could not be reached."""


class RepoNotFoundError(HubError):
    """The repository does not exist (or is not visible with the current token)."""


class EntryNotFoundError(HubError):
    """The repository exists but the requested file or revision does not."""


class HubPermissionError(HubError):
    """The Hub refused the request: gated, private, or no write permission."""


class HubLimitError(HubError):
    """A Hub answer or file went past a bound of :mod:`freehub.limits` (size, count or time)."""


class IntegrityError(HubError):
    """Downloaded bytes differ from what the Hub's listing announced (size, sha256 or git blob id)."""


class CheckpointError(FreehubError):
    """A checkpoint that cannot be used: corrupt, inconsistent, unsupported or unsafe.

    ``reason`` is a short machine-friendly key recorded by the registry for skipped repos.
    """

    def __init__(self, message: str, *, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would need unpickling or remote code to load."""

    def __init__(self, message: str, *, reason: str = "unsafe") -> None:
        super().__init__(message, reason=reason)


class RegistryError(FreehubError):
    """The local model registry is missing, locked or inconsistent."""


class CrawlAbortedError(FreehubError):
    """A crawl stopped for a cause that is not the repo's fault (disk full, out of memory, Hub gone).

    Work finished before the stop stays registered; nothing is recorded against the repos in flight.
    """


class TrainingError(FreehubError):
    """A training run that cannot start or resume as asked."""


class PublishError(FreehubError):
    """A run that cannot be published as asked: nothing to publish, no results, a repo in the way,
    an undecidable license or no right to write. Raised before anything is written to the Hub."""

    exit_code = 2
