"""Library adapters: checkpoint folders in timm's or transformers' Hub layout, both ways.

Read with :func:`load_task_model` (or :func:`inspect_checkpoint` for the configs alone); write with
:func:`save_timm_checkpoint` or :func:`save_transformers_checkpoint`.
"""

from freehub.adapters.loader import inspect_checkpoint, load_task_model
from freehub.adapters.safety import DEFAULT_MAX_FILE_BYTES
from freehub.adapters.timm import save_timm_checkpoint
from freehub.adapters.transformers import save_transformers_checkpoint

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "inspect_checkpoint",
    "load_task_model",
    "save_timm_checkpoint",
    "save_transformers_checkpoint",
]
