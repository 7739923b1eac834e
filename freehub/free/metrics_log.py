"""``metrics.jsonl``: one JSON record per meta-training iteration, appended as the run goes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from freehub.atomic import atomic_write_text


def append_record(*, path: Path, record: dict[str, Any]) -> None:
    """Append ``record`` as one line (NaN becomes ``null``, which JSON has and NaN is not)."""
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(_json_safe(record)) + "\n")


def read_records(*, path: Path) -> list[dict[str, Any]]:
    """Every record of ``path`` in order; none when it does not exist."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def truncate_records(*, path: Path, keep_before: int) -> None:
    """Keep the records of iterations before ``keep_before``."""
    # A run killed after logging but before its checkpoint replays those iterations: drop their lines.
    kept = [r for r in read_records(path=path) if r["iteration"] < keep_before]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return None if value != value else value
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
