"""A collect run killed with SIGKILL leaves a consistent registry, and the next run completes it."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from freehub.collect import collect
from freehub.hub import LocalHub
from freehub.registry import Registry
from test_collect import write_repo

_COLLECT_SCRIPT = """
import sys
import torch
from freehub.collect import collect
from freehub.hub import LocalHub
from freehub.registry import Registry
collect(hub=LocalHub(root=sys.argv[1]), registry=Registry.open(sys.argv[2]), tags=(), workers=1, progress=False)
"""
_REPOS = 16


def _registered(index: Path) -> int:
    if not index.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=1) as conn:
            return conn.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _assert_consistent(root: Path) -> Registry:
    registry = Registry.open(root)
    records = registry.list(all_versions=True)
    assert sorted(p.name for p in (root / "models").iterdir()) == sorted(r.id for r in records)
    assert list((root / "staging").iterdir()) == []
    for record in records:
        assert (record.path / "spec.json").is_file()
        for name, digest in record.files.items():
            assert hashlib.sha256((record.path / name).read_bytes()).hexdigest() == digest
    return registry


@pytest.mark.slow
@pytest.mark.skipif(os.name == "nt", reason="SIGKILL is POSIX")
def test_a_killed_collect_leaves_a_consistent_registry(zoo, tmp_path: Path) -> None:
    for i in range(_REPOS):
        teacher = zoo["birds"] if i % 2 else zoo["cats"]
        write_repo(tmp_path / "hub" / "crash" / f"teacher-{i:02d}", teacher.files)
    root = tmp_path / "registry"
    child = subprocess.Popen([sys.executable, "-c", _COLLECT_SCRIPT, str(tmp_path / "hub"), str(root)])
    deadline = time.monotonic() + 120
    while _registered(root / "index.sqlite") < 1 and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 1 <= _registered(root / "index.sqlite") < _REPOS
    _assert_consistent(root).close()

    registry = Registry.open(root)
    report = collect(hub=LocalHub(root=tmp_path / "hub"), registry=registry, tags=(), workers=2, progress=False)
    assert len(report.collected) + len(report.already_present) == _REPOS and report.skipped == []
    assert len(_assert_consistent(root).list()) == _REPOS
