"""Where freehub keeps things on disk."""

from __future__ import annotations

import os
from pathlib import Path


def freehub_home() -> Path:
    """The root of freehub's caches: ``$FREEHUB_HOME``, else ``~/.cache/freehub``."""
    env = os.environ.get("FREEHUB_HOME")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "freehub"
