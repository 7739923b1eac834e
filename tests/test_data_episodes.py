"""N-way K-shot episodes: shapes, labels that match the real images, determinism and errors."""

from __future__ import annotations

import pytest
import torch

from freehub.data import EpisodeSampler, ImageSet
from freehub.errors import DataError


def _imageset(classes: int = 10, per_class: int = 20) -> ImageSet:
    """Pixel (0, 0) holds the class, pixel (0, 1) the image's serial number: every image is traceable."""
    labels = torch.arange(classes).repeat_interleave(per_class)
    # Shuffled so the sampler cannot rely on images being grouped by class.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    labels = labels[order]
    images = torch.zeros(len(labels), 1, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = labels.to(torch.uint8)
    images[:, 0, 0, 1] = torch.arange(len(labels), dtype=torch.uint8)
    return ImageSet(
        images=images,
        labels=labels,
        class_names=tuple(f"c{i}" for i in range(classes)),
        class_groups=("g",) * classes,
    )


def _classes_of(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0] * 255).round().long().tolist()


def test_shapes_and_label_layout():
    episode = EpisodeSampler(_imageset(), n_way=5, k_shot=2, q_queries=3, seed=0).sample()
    assert episode.support_images.shape == (10, 1, 2, 2)
    assert episode.query_images.shape == (15, 1, 2, 2)
    assert episode.support_images.dtype == torch.float32
    assert episode.support_labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert episode.query_labels.tolist() == [i for i in range(5) for _ in range(3)]
    assert len(set(episode.classes)) == 5


def test_labels_match_the_real_class_of_each_image():
    sampler = EpisodeSampler(_imageset(), n_way=5, k_shot=1, q_queries=15, seed=3)
    for episode in sampler.take(20):
        classes = list(episode.classes)
        assert _classes_of(episode.support_images) == [classes[i] for i in episode.support_labels.tolist()]
        assert _classes_of(episode.query_images) == [classes[i] for i in episode.query_labels.tolist()]


def test_no_image_is_used_twice_in_one_episode():
    episode = EpisodeSampler(_imageset(), n_way=5, k_shot=5, q_queries=15, seed=1).sample()
    serials = (torch.cat([episode.support_images, episode.query_images])[:, 0, 0, 1] * 255).round().long()
    assert len(set(serials.tolist())) == len(serials)


def test_same_seed_same_episodes_and_different_seed_differs():
    a = EpisodeSampler(_imageset(), n_way=5, k_shot=1, seed=4).take(3)
    b = EpisodeSampler(_imageset(), n_way=5, k_shot=1, seed=4).take(3)
    c = EpisodeSampler(_imageset(), n_way=5, k_shot=1, seed=5).take(3)
    assert all(torch.equal(x.query_images, y.query_images) and x.classes == y.classes for x, y in zip(a, b))
    assert any(not torch.equal(x.query_images, z.query_images) for x, z in zip(a, c))


def test_iteration_yields_episodes():
    sampler = iter(EpisodeSampler(_imageset(), n_way=3, k_shot=1, q_queries=2, seed=0))
    assert next(sampler).n_way == 3


def test_classes_with_uneven_image_counts_are_sampled_correctly():
    base = _imageset(classes=6, per_class=20)
    keep = torch.ones(len(base), dtype=torch.bool)
    keep[torch.nonzero(base.labels == 2).flatten()[:10]] = False
    uneven = ImageSet(
        images=base.images[keep], labels=base.labels[keep], class_names=base.class_names, class_groups=base.class_groups
    )
    for episode in EpisodeSampler(uneven, n_way=6, k_shot=2, q_queries=8, seed=0).take(5):
        assert _classes_of(episode.query_images) == [episode.classes[i] for i in episode.query_labels.tolist()]


def test_too_many_ways_raise():
    with pytest.raises(DataError, match="10-way"):
        EpisodeSampler(_imageset(classes=5), n_way=10, k_shot=1)


def test_class_with_too_few_images_raises():
    with pytest.raises(DataError, match="fewer than 16 images"):
        EpisodeSampler(_imageset(per_class=10), n_way=5, k_shot=1, q_queries=15)
