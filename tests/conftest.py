"""Test-session environment: a private Hugging Face home and a local Hub server, set up before anything
imports huggingface_hub (which reads HF_ENDPOINT, HF_HUB_OFFLINE and HF_HUB_DISABLE_XET once, at import).

timm's ``create_model("hf-hub:...")`` and transformers' ``from_pretrained`` read the global endpoint, so the
server has to be up and HF_ENDPOINT set when this module is imported, not in a fixture.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import importlib
import itertools
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from hub_server import HubServer  # noqa: E402 - needs the path above

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="freehub-tests-"))
_SERVER = HubServer(root=_SESSION_DIR / "hub").start()

os.environ.update(
    {
        "HF_ENDPOINT": _SERVER.url,
        "HF_HOME": str(_SESSION_DIR / "hf_home"),
        "HF_HUB_CACHE": str(_SESSION_DIR / "hf_home" / "hub"),
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "FREEHUB_HOME": str(_SESSION_DIR / "freehub_home"),
    }
)
# Tokens from the developer's environment must never reach the test server or change what tests see.
os.environ.pop("HF_TOKEN", None)
os.environ.pop("HUGGING_FACE_HUB_TOKEN", None)

if "huggingface_hub" in sys.modules:
    # Something imported it first: point the constants it already read at the test server and home.
    from huggingface_hub import constants as _constants

    _home = _SESSION_DIR / "hf_home"
    for _name, _value in {
        "ENDPOINT": _SERVER.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": _SERVER.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_XET": True,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(_home),
        "HF_HUB_CACHE": str(_home / "hub"),
        "HUGGINGFACE_HUB_CACHE": str(_home / "hub"),
        "HF_ASSETS_CACHE": str(_home / "assets"),
        "HF_TOKEN_PATH": str(_home / "token"),
        "HF_STORED_TOKENS_PATH": str(_home / "stored_tokens"),
    }.items():
        setattr(_constants, _name, _value)


# The tests run small tensors, where thread hand-offs cost more than they save (several times slower on
# two shared cores). One thread does not make results the same on every machine (kernels and CPU features
# differ), so a test of a learned quality asks for a margin measured over several seeds, not an exact value.
torch.set_num_threads(1)


def pytest_unconfigure(config: pytest.Config) -> None:
    _SERVER.stop()
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def hub_server() -> HubServer:
    """The session's local Hub (its URL is HF_ENDPOINT). Write tokens: ``hub_server.tokens``."""
    return _SERVER


_ORG_NUMBERS = itertools.count()


@pytest.fixture
def hub_org() -> str:
    """A fresh organisation name, so that each test's repos and searches are its own."""
    return f"org{next(_ORG_NUMBERS)}"


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The collect tests' four tiny timm and transformers teachers (see test_collect.build_zoo), built once.

    Shared by every module: tests read the networks and copy ``files`` before changing them.
    """
    from test_collect import build_zoo

    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="session")
def load_bench():
    """Import a benchmark script of ``bench/`` by module name (they import their shared ``common``)."""
    bench = str(Path(__file__).resolve().parents[1] / "bench")

    def load(name: str):
        sys.path.insert(0, bench)
        try:
            return importlib.import_module(name)
        finally:
            sys.path.remove(bench)

    return load


@pytest.fixture(scope="session")
def glyph_data():
    """The glyph splits the FREE tests use (see test_free_teachers.glyphs), loaded once."""
    from test_free_teachers import glyphs

    return glyphs()


@pytest.fixture(scope="session")
def small_teachers(glyph_data) -> list:
    """Three small Conv4 teachers on meta-train glyph classes, trained once for every FREE test that
    only needs real teachers. Classes 3 and 4 belong to two teachers; the third has more classes than n_way."""
    from test_free_teachers import fit_split, train_teacher

    class_sets = [range(0, 5), range(3, 8), range(8, 15)]
    return [
        train_teacher(task=fit_split(glyph_data.train.select_classes(list(c)))[0], seed=i, steps=25, width=8)
        for i, c in enumerate(class_sets)
    ]


@pytest.fixture(scope="session")
def glyph_zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder Hub holding the embedded zoo in small (org ``e2e``: 5 teachers, 20 steps), built once.

    Tests that collect from it only read it; a test that writes to a Hub copies it first.
    """
    from freehub.data import load_glyphs
    from freehub.hub import LocalHub
    from freehub.zoo import build_zoo

    root = tmp_path_factory.mktemp("glyph-zoo")
    build_zoo(hub=LocalHub(root=root), org="e2e", teachers=5, seed=0, data=load_glyphs(size=32), train_steps=20)
    return root
