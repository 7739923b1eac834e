"""Split one ImageSet into meta-train / meta-val / meta-test over disjoint classes."""

from __future__ import annotations

import random
from collections.abc import Sequence

from freehub.data.imageset import ImageSet, SplitData
from freehub.errors import DataError

SPLIT_NAMES = ("train", "val", "test")
# Omniglot's background/evaluation proportions, with a validation share taken out.
DEFAULT_FRACTIONS = (0.6, 0.2, 0.2)


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    values = tuple(float(f) for f in fractions)
    if len(values) != 3 or any(f <= 0 for f in values):
        raise DataError(f"fractions must be three positive numbers (train, val, test), got {list(fractions)}")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def _build(imageset: ImageSet, parts: Sequence[Sequence[int]]) -> SplitData:
    train, val, test = (imageset.select_classes(sorted(p)) for p in parts)
    return SplitData(train=train, val=val, test=test)


def split_by_group(
    imageset: ImageSet, *, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> SplitData:
    """Split whole groups (alphabets) between the splits, aiming at ``fractions`` of the classes.

    Groups are shuffled by ``seed`` and each one goes to the split furthest below its share, so
    no group straddles two splits and the same seed always gives the same split.
    """
    shares = _check_fractions(fractions)
    groups = list(imageset.groups)
    if len(groups) < 3:
        raise DataError(f"split by group needs at least 3 groups, this set has {len(groups)}")
    random.Random(seed).shuffle(groups)
    members: dict[str, list[int]] = {g: [] for g in groups}
    for index, group in enumerate(imageset.class_groups):
        members[group].append(index)
    targets = [share * imageset.num_classes for share in shares]
    parts: list[list[int]] = [[], [], []]
    for group in groups:
        # Relative shortfall: the first three groups go one to each split, then the neediest wins.
        need = [(targets[s] - len(parts[s])) / targets[s] for s in range(3)]
        chosen = max(range(3), key=lambda s: (need[s], -s))
        parts[chosen].extend(members[group])
    return _build(imageset, parts)


def _resolve(imageset: ImageSet, names: Sequence[str], which: str) -> list[int]:
    index = {name: i for i, name in enumerate(imageset.class_names)}
    unknown = [n for n in names if n not in index]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5])
        raise DataError(f"unknown {which} class name(s): {shown} (the set has {imageset.num_classes} classes)")
    return [index[n] for n in dict.fromkeys(names)]


def split_classes(
    imageset: ImageSet,
    *,
    val_classes: Sequence[str] | None = None,
    test_classes: Sequence[str] | None = None,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    seed: int = 0,
) -> SplitData:
    """Split classes one by one: given by name, or drawn by ``seed`` in the ``fractions`` proportions.

    Named classes go where they are named; a split left unnamed is drawn from the classes still
    free; meta-train gets the rest. Every split must end up with at least one class.
    """
    shares = _check_fractions(fractions)
    total = imageset.num_classes
    val = _resolve(imageset, val_classes, "val") if val_classes is not None else None
    test = _resolve(imageset, test_classes, "test") if test_classes is not None else None
    if val is not None and test is not None and set(val) & set(test):
        both = sorted(imageset.class_names[i] for i in set(val) & set(test))
        raise DataError(f"class(es) named for both val and test: {', '.join(both[:5])}")
    taken = set(val or ()) | set(test or ())
    free = [i for i in range(total) if i not in taken]
    random.Random(seed).shuffle(free)
    if val is None:
        count = max(1, round(shares[1] * total))
        val, free = free[:count], free[count:]
    if test is None:
        count = max(1, round(shares[2] * total))
        test, free = free[:count], free[count:]
    parts = (free, val, test)
    for name, part in zip(SPLIT_NAMES, parts):
        if not part:
            raise DataError(f"too few classes for the split: {total} classes leave {name} empty")
    return _build(imageset, parts)
