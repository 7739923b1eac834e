"""freehub: data-free meta-learning from public model hubs.

The main entry points are importable from the top level; they load lazily so that
``import freehub`` stays cheap::

    import freehub
    hub = freehub.open_hub("https://huggingface.co")
    with freehub.Registry.open() as registry:
        report = freehub.collect(hub=hub, registry=registry, tags=("few-shot",))
    run = freehub.meta_train(out_dir="runs/free", val_data="glyphs")
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "open_hub": "freehub.hub",
    "Registry": "freehub.registry",
    "collect": "freehub.collect",
    "Limits": "freehub.limits",
    "Timeouts": "freehub.limits",
    "load_glyphs": "freehub.data",
    "EpisodeSampler": "freehub.data",
    "TaskModel": "freehub.task_model",
    "MetaTrainConfig": "freehub.free.config",
    "meta_train": "freehub.meta",
    "evaluate_fewshot": "freehub.free.fewshot",
    "build_zoo": "freehub.zoo",
    "run_demo": "freehub.pipeline",
    "FewShotLearner": "freehub.pretrained",
    "push_learner": "freehub.publish",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'freehub' has no attribute {name!r}")
