"""Which characters become glyph classes, and a record of every one left out and why.

A class must be a character a person could tell apart from every other class, so four filters run
in order over each alphabet's letters or symbols:

1. ``diacritic``: its compatibility decomposition holds a combining mark (``é``, ``ї``, ``ώ``).
2. ``modifier``: its Unicode name marks it as a base letter plus a hook, stroke, tail or descender
   (``... WITH ...``); at 32 pixels the mark is a few pixels away from its base letter.
3. ``lookalike`` / ``near_duplicate``: its clean render is nearly identical to a class already kept
   from another alphabet (Greek Alpha after Latin A) or the same one (``o`` after ``O``). Measured,
   not listed: see :data:`SIMILARITY_THRESHOLD`.
4. ``alphabet_cap`` / ``small_alphabet``: an alphabet keeps at most its first ``max_per_alphabet``
   classes in code point order (the core of a Unicode block comes first: A-Z before Latin Extended,
   the six-dot Braille cells before the eight-dot ones) and is dropped whole below
   ``min_per_alphabet``, so that no script dominates and each one can feed an N-way task alone.
A character that draws no ink in any reference face is dropped as ``blank``; one that no reference
face has at all, as ``no_reference_face`` (its look-alikes could not be checked).
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from freehub.data.alphabets import ALPHABETS, Alphabet
from freehub.data.fonts import Face, dejavu_faces, render_glyph

# Clean renders are compared at this fixed size whatever size the images are later drawn at, so the
# class list does not depend on the requested image size.
REFERENCE_SIZE = 32
# The upright regular faces: the shapes compared when deciding whether two characters look alike.
REFERENCE_FACES = ("DejaVuSans", "DejaVuSansMono", "DejaVuSerif")
# Why 0.94: it is the median correlation between a Latin, Greek or Cyrillic letter drawn in DejaVu
# Sans and the same letter in DejaVu Sans Mono (measured over the ~500 letters both faces have, same
# blur; Sans against Serif gives 0.89). Two classes that agree more than a typical letter agrees with
# itself across two faces of one design are a typeface change apart, not a character apart: a
# learner that must generalise over typefaces cannot separate them. The report re-measures it as
# ``face_agreement``. It keeps E/F (0.93) and drops c/C (0.98), l/I (0.996) and o/O (0.955).
SIMILARITY_THRESHOLD = 0.94
# Gaussian blur (pixels at REFERENCE_SIZE) before correlating: one-pixel stroke offsets between two
# renders of the same shape must not read as a difference.
_BLUR_SIGMA = 1.0
MAX_PER_ALPHABET = 60
MIN_PER_ALPHABET = 10


@dataclass(frozen=True)
class GlyphClass:
    """A kept class: one character, its alphabet, and the faces that really have its glyph."""

    codepoint: int
    name: str
    alphabet: str
    faces: tuple[str, ...]

    @property
    def char(self) -> str:
        return chr(self.codepoint)


@dataclass(frozen=True)
class DroppedGlyph:
    """A candidate left out, the filter that dropped it and, for look-alikes, the class it matched."""

    codepoint: int
    name: str
    alphabet: str
    reason: str
    similar_to: str | None = None
    similarity: float | None = None


@dataclass(frozen=True)
class GlyphReport:
    """The outcome of the filters: kept classes in order, dropped candidates and the evidence."""

    classes: tuple[GlyphClass, ...]
    dropped: tuple[DroppedGlyph, ...]
    threshold: float
    face_agreement: float

    @property
    def alphabets(self) -> tuple[str, ...]:
        """Alphabets with at least one kept class, in catalogue order."""
        return tuple(dict.fromkeys(c.alphabet for c in self.classes))

    @property
    def candidates(self) -> int:
        return len(self.classes) + len(self.dropped)

    def counts_by_reason(self) -> dict[str, int]:
        """How many candidates each filter dropped."""
        return dict(Counter(d.reason for d in self.dropped))

    def classes_per_alphabet(self) -> dict[str, int]:
        """How many classes each alphabet keeps."""
        return dict(Counter(c.alphabet for c in self.classes))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` reverses it."""
        return {
            "classes": [asdict(c) for c in self.classes],
            "dropped": [asdict(d) for d in self.dropped],
            "threshold": self.threshold,
            "face_agreement": self.face_agreement,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GlyphReport:
        """Rebuild a report from :meth:`to_dict` output."""
        classes = tuple(
            GlyphClass(c["codepoint"], c["name"], c["alphabet"], tuple(c["faces"])) for c in data["classes"]
        )
        return cls(
            classes=classes,
            dropped=tuple(DroppedGlyph(**d) for d in data["dropped"]),
            threshold=data["threshold"],
            face_agreement=data["face_agreement"],
        )


def _text_reason(char: str, name: str) -> str | None:
    if any(unicodedata.combining(part) for part in unicodedata.normalize("NFKD", char)):
        return "diacritic"
    if " WITH " in name:
        return "modifier"
    return None


def _candidates(
    faces: tuple[Face, ...], alphabets: tuple[Alphabet, ...]
) -> tuple[list[GlyphClass], list[DroppedGlyph]]:
    covered = sorted(set().union(*(face.codepoints for face in faces)))
    candidates, dropped = [], []
    claimed: set[int] = set()
    for alphabet in alphabets:
        for codepoint in covered:
            char = chr(codepoint)
            name = unicodedata.name(char, "")
            if codepoint in claimed or not name:
                continue
            if not alphabet.contains(codepoint=codepoint, category=unicodedata.category(char), char_name=name):
                continue
            claimed.add(codepoint)
            reason = _text_reason(char, name)
            if reason is not None:
                dropped.append(DroppedGlyph(codepoint, name, alphabet.name, reason))
                continue
            owners = tuple(face.name for face in faces if codepoint in face.codepoints)
            candidates.append(GlyphClass(codepoint, name, alphabet.name, owners))
    return candidates, dropped


def _blur_matrix() -> torch.Tensor:
    """``B`` such that ``B @ image @ B.T`` is a Gaussian blur with replicated edges."""
    radius = 3
    steps = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-(steps**2) / (2 * _BLUR_SIGMA**2))
    kernel = kernel / kernel.sum()
    matrix = torch.zeros(REFERENCE_SIZE, REFERENCE_SIZE)
    for row in range(REFERENCE_SIZE):
        for tap, weight in zip(range(row - radius, row + radius + 1), kernel.tolist()):
            matrix[row, min(max(tap, 0), REFERENCE_SIZE - 1)] += weight
    return matrix


def _unit_vectors(renders: torch.Tensor) -> torch.Tensor:
    """Blurred, mean-centred, unit-norm pixel vectors: their dot product is a correlation."""
    blur = _blur_matrix()
    x = (blur @ renders.reshape(-1, REFERENCE_SIZE, REFERENCE_SIZE) @ blur.T).flatten(1)
    x = x - x.mean(dim=1, keepdim=True)
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)


def _reference_vectors(
    candidates: list[GlyphClass], faces: tuple[Face, ...], progress: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors ``[faces, candidates, pixels]`` of clean renders, and which ones exist."""
    by_name = {face.name: face for face in faces}
    reference = [by_name[name] for name in REFERENCE_FACES if name in by_name]
    renders = np.zeros((len(reference), len(candidates), REFERENCE_SIZE, REFERENCE_SIZE), np.float32)
    present = np.zeros((len(reference), len(candidates)), bool)
    jobs = [(f, i) for f in range(len(reference)) for i in range(len(candidates))]
    if progress:
        from tqdm import tqdm

        jobs = tqdm(jobs, desc="glyph look-alike check", unit="render")
    for f, i in jobs:
        face = reference[f]
        if candidates[i].codepoint not in face.codepoints:
            continue
        ink = render_glyph(char=chr(candidates[i].codepoint), face=face, canvas=2 * REFERENCE_SIZE)
        if ink is not None:
            # Drawn at twice the size and averaged down: the same anti-aliasing the images get.
            renders[f, i] = ink.reshape(REFERENCE_SIZE, 2, REFERENCE_SIZE, 2).mean(axis=(1, 3))
            present[f, i] = True
    vectors = _unit_vectors(torch.from_numpy(renders).flatten(0, 1)).view(len(reference), len(candidates), -1)
    return vectors, torch.from_numpy(present)


def _similarity_matrix(vectors: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Pairwise look-alike score: the highest correlation over the reference faces both classes have.

    Two classes that share no reference face are compared across faces instead, so that every pair
    gets a score.
    """
    floor = torch.tensor(-1.0)
    similarity = torch.full((vectors.shape[1],) * 2, -1.0)
    for f in range(vectors.shape[0]):
        both = present[f][:, None] & present[f][None, :]
        similarity = torch.maximum(similarity, torch.where(both, vectors[f] @ vectors[f].T, floor))
    # Only a class missing from the first reference face can lack a shared face with another one.
    partial = torch.nonzero(~present[0]).flatten()
    if partial.numel():
        cross = torch.full((partial.numel(), vectors.shape[1]), -1.0)
        for f in range(vectors.shape[0]):
            for g in range(vectors.shape[0]):
                both = present[f][partial][:, None] & present[g][None, :]
                cross = torch.maximum(cross, torch.where(both, vectors[f][partial] @ vectors[g].T, floor))
        shared = (present[:, partial][:, :, None] & present[:, None, :]).any(dim=0)
        cross = torch.where(shared, similarity[partial], cross)
        similarity[partial] = cross
        similarity[:, partial] = cross.T
    return similarity


def _face_agreement(vectors: torch.Tensor, present: torch.Tensor, candidates: list[GlyphClass]) -> float:
    """Median correlation of a Latin/Greek/Cyrillic letter with itself in DejaVu Sans and Sans Mono."""
    letters = torch.tensor([c.alphabet in ("Latin", "Greek", "Cyrillic") for c in candidates])
    both = present[0] & present[1] & letters if vectors.shape[0] > 1 else torch.zeros_like(letters)
    if not bool(both.any()):
        return float("nan")
    return float((vectors[0] * vectors[1]).sum(dim=1)[both].median())


def build_catalogue(
    *,
    threshold: float = SIMILARITY_THRESHOLD,
    max_per_alphabet: int = MAX_PER_ALPHABET,
    min_per_alphabet: int = MIN_PER_ALPHABET,
    alphabets: tuple[Alphabet, ...] = ALPHABETS,
    progress: bool = False,
) -> GlyphReport:
    """Run the filters over every alphabet and return the kept classes with the dropped record.

    Deterministic and independent of any seed: the class list is a property of the fonts.
    """
    faces = dejavu_faces()
    reference = [face for face in faces if face.name in REFERENCE_FACES]
    candidates, dropped = _candidates(faces, alphabets)
    vectors, present = _reference_vectors(candidates, faces, progress)
    similarity = _similarity_matrix(vectors, present)
    drawable = present.any(dim=0)

    kept: list[int] = []
    for alphabet in alphabets:
        survivors: list[int] = []
        for i, cand in enumerate(candidates):
            if cand.alphabet != alphabet.name:
                continue
            if not bool(drawable[i]):
                reason = "blank" if any(cand.codepoint in f.codepoints for f in reference) else "no_reference_face"
                dropped.append(DroppedGlyph(cand.codepoint, cand.name, cand.alphabet, reason))
                continue
            pool = kept + survivors
            if pool:
                scores = similarity[i, pool]
                best = int(scores.argmax())
                if float(scores[best]) >= threshold:
                    match = candidates[pool[best]]
                    reason = "lookalike" if match.alphabet != cand.alphabet else "near_duplicate"
                    dropped.append(
                        DroppedGlyph(
                            cand.codepoint, cand.name, cand.alphabet, reason, match.name, round(float(scores[best]), 4)
                        )
                    )
                    continue
            survivors.append(i)
        if len(survivors) < min_per_alphabet:
            dropped.extend(
                DroppedGlyph(candidates[i].codepoint, candidates[i].name, alphabet.name, "small_alphabet")
                for i in survivors
            )
            continue
        if len(survivors) > max_per_alphabet:
            dropped.extend(
                DroppedGlyph(candidates[i].codepoint, candidates[i].name, alphabet.name, "alphabet_cap")
                for i in survivors[max_per_alphabet:]
            )
            survivors = survivors[:max_per_alphabet]
        kept.extend(survivors)

    return GlyphReport(
        classes=tuple(candidates[i] for i in kept),
        dropped=tuple(sorted(dropped, key=lambda d: d.codepoint)),
        threshold=threshold,
        face_agreement=round(_face_agreement(vectors, present, candidates), 4),
    )
