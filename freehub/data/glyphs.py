"""The embedded many-class image set: characters of many scripts, one class each, one alphabet per script.

Built from the DejaVu typefaces matplotlib ships (no download), once per set of arguments, and
cached on disk: ``catalogue-*.json`` holds the class list and the record of dropped characters,
``glyphs-*.safetensors`` the images. Both are written atomically, so an interrupted build leaves
no half file behind.

Example::

    from freehub.data import load_glyphs, EpisodeSampler
    data = load_glyphs(size=32, seed=0)
    episode = EpisodeSampler(data.test, n_way=5, k_shot=1).sample()
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from freehub.atomic import atomic_path, atomic_write_text
from freehub.data.alphabets import ALPHABETS
from freehub.data.catalogue import (
    MAX_PER_ALPHABET,
    MIN_PER_ALPHABET,
    SIMILARITY_THRESHOLD,
    GlyphReport,
    build_catalogue,
)
from freehub.data.fonts import dejavu_faces, faces_fingerprint
from freehub.data.imageset import ImageSet, SplitData
from freehub.data.render import Variation, render_images, variation_key
from freehub.data.splits import DEFAULT_FRACTIONS, split_by_group
from freehub.errors import DataError
from freehub.paths import freehub_home

# Bump when the way classes are chosen or images drawn changes, so that old caches are not reused.
_FORMAT_VERSION = 1


def default_cache_dir() -> Path:
    """Where glyph sets are cached unless told otherwise: ``$FREEHUB_HOME/data/glyphs``."""
    return freehub_home() / "data" / "glyphs"


def _digest(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def _catalogue_key() -> str:
    return _digest(
        {
            "version": _FORMAT_VERSION,
            "fonts": faces_fingerprint(dejavu_faces()),
            "alphabets": repr(ALPHABETS),
            "filter": [SIMILARITY_THRESHOLD, MAX_PER_ALPHABET, MIN_PER_ALPHABET],
        }
    )


def glyph_report(*, cache_dir: Path | None = None, progress: bool = False) -> GlyphReport:
    """Which characters the glyph set keeps, which it drops and why (built once, then cached).

    ``report.counts_by_reason()`` gives the dropped counts; each ``report.dropped`` entry names the
    filter and, for look-alikes, the kept class it matched and the measured similarity.
    """
    path = Path(cache_dir or default_cache_dir()) / f"catalogue-{_catalogue_key()}.json"
    if path.exists():
        try:
            return GlyphReport.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, KeyError, TypeError):
            path.unlink()
    report = build_catalogue(progress=progress)
    atomic_write_text(path, json.dumps(report.to_dict(), ensure_ascii=False))
    return report


def _check_arguments(size: int, channels: int, images_per_class: int) -> None:
    if size < 8:
        raise DataError(f"glyph images must be at least 8 pixels wide, got size={size}")
    if channels not in (1, 3):
        raise DataError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    if images_per_class < 1:
        raise DataError(f"images_per_class must be at least 1, got {images_per_class}")


def _read_cached(path: Path) -> ImageSet | None:
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
        tensors = load_file(str(path))
        return ImageSet(
            images=tensors["images"],
            labels=tensors["labels"],
            class_names=tuple(json.loads(meta["class_names"])),
            class_groups=tuple(json.loads(meta["class_groups"])),
        )
    except (SafetensorError, OSError, KeyError, ValueError, DataError):
        return None


def glyph_imageset(
    *,
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
    images_per_class: int = 20,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> ImageSet:
    """Every glyph class in one ImageSet (class groups are the alphabets), built once and cached."""
    _check_arguments(size, channels, images_per_class)
    root = Path(cache_dir or default_cache_dir())
    variation = Variation()
    key = _digest(
        {
            "catalogue": _catalogue_key(),
            "size": size,
            "channels": channels,
            "seed": seed,
            "images_per_class": images_per_class,
            "variation": variation_key(variation),
        }
    )
    path = root / f"glyphs-{key}.safetensors"
    if path.exists():
        cached = _read_cached(path)
        if cached is not None:
            return cached
    report = glyph_report(cache_dir=root, progress=progress)
    images, labels = render_images(
        classes=report.classes,
        faces=dejavu_faces(),
        size=size,
        channels=channels,
        images_per_class=images_per_class,
        seed=seed,
        variation=variation,
        progress=progress,
    )
    imageset = ImageSet(
        images=images,
        labels=labels,
        class_names=tuple(c.name for c in report.classes),
        class_groups=tuple(c.alphabet for c in report.classes),
    )
    metadata = {
        "class_names": json.dumps(imageset.class_names, ensure_ascii=False),
        "class_groups": json.dumps(imageset.class_groups, ensure_ascii=False),
    }
    with atomic_path(path) as tmp:
        save_file({"images": images.contiguous(), "labels": labels.contiguous()}, str(tmp), metadata=metadata)
    return imageset


def load_glyphs(
    *,
    size: int = 32,
    channels: int = 3,
    seed: int = 0,
    images_per_class: int = 20,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> SplitData:
    """The glyph set split by alphabet into meta-train / meta-val / meta-test (about 60/20/20 of classes).

    ``seed`` fixes both the images and which alphabets land in which split; the same arguments
    always give identical tensors. The first call builds the set (seconds) and caches it under
    ``cache_dir`` (default :func:`default_cache_dir`); later calls load it.
    """
    imageset = glyph_imageset(
        size=size,
        channels=channels,
        seed=seed,
        images_per_class=images_per_class,
        cache_dir=cache_dir,
        progress=progress,
    )
    return split_by_group(imageset, fractions=fractions, seed=seed)

