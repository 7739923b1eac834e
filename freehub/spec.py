"""What a checkpoint says about itself, normalised across libraries: no torch here, so that the
registry and its command line can read specs without importing a deep-learning framework."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any

_GENERIC_LABEL = re.compile(r"^(label|class|cls|category|output|target)?[\s_\-]*\d+$", re.IGNORECASE)


def canonical_label_key(name: str) -> str | None:
    """A key under which the same class is recognised across checkpoints, or ``None``.

    Keys are case-, accent-, whitespace- and punctuation-insensitive (``"Golden Retriever"`` and
    ``"golden_retriever"`` meet). Generic names such as ``LABEL_3`` or ``7`` carry no meaning across
    models and give ``None``: such a label stays local to its model.
    """
    text = unicodedata.normalize("NFKD", name.strip())
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    if not text or _GENERIC_LABEL.match(text):
        return None
    key = re.sub(r"[^\w]+", "_", text).strip("_")
    return key or None


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint says about itself, normalised across libraries.

    ``input_size`` is ``(channels, height, width)`` of what the network expects after its own
    preprocessing; ``mean`` and ``std`` have one entry per channel of that input.
    """

    library: str
    architecture: str
    label_names: tuple[str, ...]
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    interpolation: str = "bilinear"
    head_names: tuple[str, ...] = ()
    feature_dim: int | None = None
    param_count: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reverses it."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        """Rebuild a spec from :meth:`to_dict` output."""
        return cls(
            library=data["library"],
            architecture=data["architecture"],
            label_names=tuple(data["label_names"]),
            input_size=tuple(data["input_size"]),  # type: ignore[arg-type]
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            interpolation=data.get("interpolation", "bilinear"),
            head_names=tuple(data.get("head_names", ())),
            feature_dim=data.get("feature_dim"),
            param_count=data.get("param_count"),
            extra=dict(data.get("extra", {})),
        )
