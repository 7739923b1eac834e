"""The typefaces the glyph set is drawn from, and clean renders of single characters.

The faces are the DejaVu family that matplotlib ships inside its wheel, so the glyph set needs no
download. A face's character map (read with fontTools) decides which characters it can draw:
a face without a glyph would fall back to an empty box, which must never become a training image.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from freehub.errors import DataError

# A glyph fills this share of its canvas before augmentation: room for rotation, shear and shift.
FIT_FRACTION = 0.72
# Glyphs are drawn at this many points per canvas pixel and then shrunk to fit: drawing larger than
# the target keeps thin strokes anti-aliased instead of dropping them.
_POINTS_PER_PIXEL = 1.5


@dataclass(frozen=True)
class Face:
    """One typeface file and the code points its character map covers."""

    name: str
    path: Path
    codepoints: frozenset[int]


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=1)
def dejavu_faces() -> tuple[Face, ...]:
    """Every DejaVu face matplotlib ships, sorted by file name, each with its character map."""
    from fontTools.ttLib import TTFont

    paths = sorted(_font_dir().glob("DejaVu*.ttf"))
    if not paths:
        raise DataError(f"no DejaVu typefaces found in {_font_dir()}: is matplotlib installed?")
    faces = []
    for path in paths:
        with TTFont(path, lazy=True) as font:
            cmap = font.getBestCmap() or {}
        faces.append(Face(name=path.stem, path=path, codepoints=frozenset(cmap)))
    return tuple(faces)


def faces_fingerprint(faces: tuple[Face, ...]) -> str:
    """A short hash of the faces' names and bytes: a different font set means a different cache."""
    digest = hashlib.sha256()
    for face in faces:
        digest.update(face.name.encode())
        digest.update(hashlib.sha256(face.path.read_bytes()).digest())
    return digest.hexdigest()[:16]


@lru_cache(maxsize=64)
def _truetype(path: Path, points: int) -> ImageFont.FreeTypeFont:
    # BASIC layout: the same pixels whether or not Pillow was built with libraqm.
    return ImageFont.truetype(str(path), points, layout_engine=ImageFont.Layout.BASIC)


def render_glyph(*, char: str, face: Face, canvas: int) -> np.ndarray | None:
    """Ink coverage (float32 in [0, 1], ``canvas x canvas``) of ``char`` in ``face``, centred.

    The glyph's ink box is scaled, keeping its aspect ratio, until its longer side spans
    :data:`FIT_FRACTION` of the canvas. Returns ``None`` when the glyph draws no ink.
    """
    font = _truetype(face.path, max(12, round(_POINTS_PER_PIXEL * canvas)))
    left, top, right, bottom = font.getbbox(char)
    width, height = right - left, bottom - top
    if width <= 0 or height <= 0:
        return None
    sheet = Image.new("L", (width + 4, height + 4), 0)
    ImageDraw.Draw(sheet).text((2 - left, 2 - top), char, fill=255, font=font)
    ink_box = sheet.getbbox()
    if ink_box is None:
        return None
    ink = sheet.crop(ink_box)
    scale = FIT_FRACTION * canvas / max(ink.size)
    new_size = (max(1, round(ink.width * scale)), max(1, round(ink.height * scale)))
    ink = ink.resize(new_size, Image.Resampling.LANCZOS)
    out = Image.new("L", (canvas, canvas), 0)
    out.paste(ink, ((canvas - ink.width) // 2, (canvas - ink.height) // 2))
    return np.asarray(out, dtype=np.float32) / 255.0
