"""Hub access: one interface, two sources.

:class:`RemoteHub` talks to a Hugging Face Hub endpoint (huggingface.co, a mirror, or any HF_ENDPOINT);
:class:`LocalHub` serves a folder laid out like the Hub (``ORG/NAME/<files>`` with a README.md model
card). Both answer the same questions with the same dataclasses and raise the same
:mod:`freehub.errors`, so the collector, the zoo and the publisher never care which one they hold.

A commit sha pins exact bytes on both: the remote Hub's git commit, or a content hash of the local repo's
files, whose past revisions a local hub keeps in a content-addressed store under ``<root>/.freehub``.
What a Hub sends is bounded by :mod:`freehub.limits` and checked against its listing
(:mod:`freehub.hub.transfer`).
"""

from __future__ import annotations

import os
from pathlib import Path

from freehub.hub.base import (
    Hub,
    RepoFile,
    RepoInfo,
    RepoSummary,
    card_metadata,
    card_tags,
    is_repo_id,
    read_front_matter,
)
from freehub.hub.local import LocalHub
from freehub.hub.remote import RemoteHub
from freehub.hub.transfer import DEFAULT_ENDPOINT, RetryPolicy, endpoint_token
from freehub.limits import Limits, Timeouts

__all__ = [
    "DEFAULT_ENDPOINT",
    "Hub",
    "LocalHub",
    "RemoteHub",
    "RepoFile",
    "RepoInfo",
    "RepoSummary",
    "RetryPolicy",
    "card_metadata",
    "card_tags",
    "endpoint_token",
    "is_repo_id",
    "open_hub",
    "read_front_matter",
]


def open_hub(
    location: str | os.PathLike[str] | None = None,
    *,
    token: str | None = None,
    timeouts: Timeouts | None = None,
    limits: Limits | None = None,
) -> Hub:
    """The Hub at ``location``: ``None`` means HF_ENDPOINT or huggingface.co, a ``http(s)://`` URL a remote
    Hub, anything else a local folder. ``timeouts`` bound a remote Hub's requests, ``limits`` what a local
    Hub reads for search."""
    if location is None:
        location = os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    text = os.fspath(location)
    if text.startswith(("http://", "https://")):
        return RemoteHub(endpoint=text, token=token, timeouts=timeouts)
    return LocalHub(root=Path(text).expanduser(), limits=limits)
