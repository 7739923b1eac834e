"""ImageSet basics and the two ways of splitting one into meta-train / meta-val / meta-test."""

from __future__ import annotations

import pytest
import torch

from freehub.data import ImageSet, split_by_group, split_classes
from freehub.errors import DataError


def _imageset(classes: int = 12, per_class: int = 3, groups: int = 6) -> ImageSet:
    labels = torch.arange(classes).repeat_interleave(per_class)
    images = labels.to(torch.uint8).view(-1, 1, 1, 1).expand(-1, 1, 4, 4).clone()
    return ImageSet(
        images=images,
        labels=labels,
        class_names=tuple(f"class{i}" for i in range(classes)),
        class_groups=tuple(f"group{i % groups}" for i in range(classes)),
    )


def test_select_classes_relabels_in_the_given_order():
    subset = _imageset().select_classes([5, 2])
    assert subset.class_names == ("class5", "class2")
    assert subset.labels.tolist() == [1, 1, 1, 0, 0, 0]
    # Each image still shows its original class (pixel value = original index).
    assert [int(subset.images[i, 0, 0, 0]) for i in range(len(subset))] == [2, 2, 2, 5, 5, 5]


def test_select_classes_rejects_out_of_range_and_repeated_indices():
    with pytest.raises(DataError):
        _imageset().select_classes([0, 99])
    with pytest.raises(DataError):
        _imageset().select_classes([1, 1])


def test_as_float_is_in_unit_range():
    values = _imageset().as_float()
    assert values.dtype == torch.float32
    assert float(values.max()) == pytest.approx(11 / 255)


def test_imageset_rejects_float_images():
    with pytest.raises(DataError, match="uint8"):
        ImageSet(
            images=torch.zeros(2, 1, 4, 4),
            labels=torch.zeros(2, dtype=torch.int64),
            class_names=("a",),
            class_groups=("g",),
        )


def test_split_by_group_keeps_groups_whole_and_classes_disjoint():
    data = split_by_group(_imageset(), seed=0)
    groups = [set(part.groups) for part in data.splits().values()]
    names = [set(part.class_names) for part in data.splits().values()]
    for a in range(3):
        for b in range(a + 1, 3):
            assert not groups[a] & groups[b]
            assert not names[a] & names[b]
    assert sum(len(n) for n in names) == 12


def test_split_by_group_is_deterministic_under_a_seed():
    first = split_by_group(_imageset(), seed=7)
    second = split_by_group(_imageset(), seed=7)
    assert all(a.class_names == b.class_names for a, b in zip(first.splits().values(), second.splits().values()))
    others = [split_by_group(_imageset(), seed=seed).test.class_names for seed in range(8)]
    assert len(set(others)) > 1, "the seed is ignored"


def test_split_by_group_needs_three_groups():
    with pytest.raises(DataError, match="at least 3 groups"):
        split_by_group(_imageset(groups=2))


def test_stats_count_groups_classes_and_images():
    stats = split_by_group(_imageset(), seed=0).stats()
    assert sum(s["classes"] for s in stats.values()) == 12
    assert sum(s["images"] for s in stats.values()) == 36
    assert sum(s["groups"] for s in stats.values()) == 6


def test_split_classes_puts_named_classes_where_named():
    data = split_classes(_imageset(), val_classes=["class1"], test_classes=["class2", "class3"])
    assert data.val.class_names == ("class1",)
    assert data.test.class_names == ("class2", "class3")
    assert data.train.num_classes == 9


def test_split_classes_draws_unnamed_splits_by_seed():
    a = split_classes(_imageset(), test_classes=["class0"], seed=1)
    b = split_classes(_imageset(), test_classes=["class0"], seed=1)
    assert a.val.class_names == b.val.class_names
    assert len({split_classes(_imageset(), test_classes=["class0"], seed=seed).val.class_names for seed in range(8)}) > 1
    assert "class0" not in a.val.class_names + a.train.class_names
    assert a.val.num_classes == round(0.2 * 12)


def test_split_classes_rejects_unknown_names():
    with pytest.raises(DataError, match="unknown val class"):
        split_classes(_imageset(), val_classes=["nope"])


def test_split_classes_rejects_a_class_named_twice():
    with pytest.raises(DataError, match="both val and test"):
        split_classes(_imageset(), val_classes=["class1"], test_classes=["class1"])


def test_split_classes_with_too_few_classes_fails():
    with pytest.raises(DataError, match="too few classes"):
        split_classes(_imageset(classes=2, groups=2))


def test_fractions_must_be_three_positive_numbers():
    with pytest.raises(DataError, match="fractions"):
        split_classes(_imageset(), fractions=(0.5, 0.5))
