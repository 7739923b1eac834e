"""The task memory: class keys shared across teachers, bounds, episodes, checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from freehub.errors import ConfigError
from freehub.free.memory import TaskMemory, class_key
from freehub.task_model import canonical_label_key


def _images(count: int, value: float) -> torch.Tensor:
    return torch.full((count, 3, 8, 8), value)


def test_a_canonical_label_is_one_class_across_teachers() -> None:
    first = class_key(teacher_index=0, label_name="Golden Retriever", label_key=canonical_label_key("Golden Retriever"))
    second = class_key(teacher_index=5, label_name="golden_retriever", label_key=canonical_label_key("golden_retriever"))
    assert first == second


def test_model_local_labels_are_namespaced_by_teacher() -> None:
    first = class_key(teacher_index=0, label_name="LABEL_0", label_key=canonical_label_key("LABEL_0"))
    second = class_key(teacher_index=1, label_name="LABEL_0", label_key=canonical_label_key("LABEL_0"))
    assert first != second


def test_images_of_a_shared_class_from_two_teachers_pool_together() -> None:
    memory = TaskMemory()
    memory.add(images=_images(4, 0.2), labels=torch.tensor([0, 1, 0, 1]), keys=["cat", "teacher0/LABEL_1"])
    memory.add(images=_images(4, 0.8), labels=torch.tensor([0, 1, 0, 1]), keys=["cat", "teacher1/LABEL_1"])
    assert memory.keys == ("cat", "teacher0/LABEL_1", "teacher1/LABEL_1")
    assert [memory.class_size(k) for k in memory.keys] == [4, 2, 2]


def test_each_class_keeps_its_newest_images() -> None:
    memory = TaskMemory(max_per_class=3)
    memory.add(images=_images(2, 0.0), labels=torch.zeros(2, dtype=torch.long), keys=["a"])
    memory.add(images=_images(2, 1.0), labels=torch.zeros(2, dtype=torch.long), keys=["a"])
    episode = memory.sample_episode(n_way=1, k_shot=1, q_queries=2)
    values = torch.cat([episode.support_images, episode.query_images]).mean(dim=(1, 2, 3)).sort().values
    assert values.tolist() == [0.0, 1.0, 1.0]


def test_the_total_bound_evicts_the_oldest_images_first() -> None:
    memory = TaskMemory(max_per_class=10, max_images=5)
    memory.add(images=_images(3, 0.0), labels=torch.zeros(3, dtype=torch.long), keys=["old"])
    memory.add(images=_images(4, 1.0), labels=torch.zeros(4, dtype=torch.long), keys=["new"])
    assert len(memory) == 5
    assert memory.class_size("old") == 1 and memory.class_size("new") == 4
    memory.add(images=_images(2, 1.0), labels=torch.zeros(2, dtype=torch.long), keys=["newer"])
    assert "old" not in memory.keys and len(memory) == 5


def test_episodes_mix_classes_of_different_teachers_with_consistent_labels() -> None:
    memory = TaskMemory()
    for teacher in range(3):
        images = torch.cat([_images(6, (teacher * 2 + c) / 10) for c in range(2)])
        memory.add(images=images, labels=torch.tensor([0] * 6 + [1] * 6), keys=[f"t{teacher}/x", f"t{teacher}/y"])
    generator = torch.Generator().manual_seed(0)
    episode = memory.sample_episode(n_way=4, k_shot=2, q_queries=3, generator=generator)
    assert episode.support_images.shape == (8, 3, 8, 8) and episode.query_images.shape == (12, 3, 8, 8)
    assert len({memory.keys[c].split("/")[0] for c in episode.classes}) >= 2
    support_value = episode.support_images.mean(dim=(1, 2, 3))
    query_value = episode.query_images.mean(dim=(1, 2, 3))
    for label in range(4):
        class_values = torch.cat([support_value[episode.support_labels == label], query_value[episode.query_labels == label]])
        assert torch.allclose(class_values, class_values[0].expand_as(class_values), atol=1 / 255)


def test_an_episode_needs_enough_classes_with_enough_images() -> None:
    memory = TaskMemory()
    memory.add(images=_images(4, 0.5), labels=torch.tensor([0, 0, 1, 1]), keys=["a", "b"])
    assert memory.can_sample(n_way=2, per_class=2) and not memory.can_sample(n_way=2, per_class=3)
    with pytest.raises(ConfigError):
        memory.sample_episode(n_way=3, k_shot=1, q_queries=1)


def test_state_dict_round_trip_restores_the_same_episodes() -> None:
    memory = TaskMemory(max_per_class=5, max_images=12)
    for step in range(4):
        images = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(step))
        memory.add(images=images, labels=torch.tensor([0, 1, 2] * 2), keys=[f"k{step}", f"k{step + 1}", "shared"])
    clone = TaskMemory()
    clone.load_state_dict(memory.state_dict())
    assert clone.keys == memory.keys and len(clone) == len(memory)
    one = memory.sample_episode(n_way=3, k_shot=1, q_queries=1, generator=torch.Generator().manual_seed(3))
    two = clone.sample_episode(n_way=3, k_shot=1, q_queries=1, generator=torch.Generator().manual_seed(3))
    assert torch.equal(one.support_images, two.support_images) and torch.equal(one.query_images, two.query_images)


def test_episode_within_a_group_draws_only_that_sources_classes() -> None:
    memory = TaskMemory(max_per_class=10)
    memory.add(images=_images(6, 0.2), labels=torch.tensor([0, 1, 2] * 2), keys=["a", "b", "shared"], group="t0")
    memory.add(images=_images(6, 0.8), labels=torch.tensor([0, 1, 2] * 2), keys=["c", "d", "shared"], group="t1")
    assert memory.groups_with(n_way=3, per_class=2) == ["t0", "t1"]
    for seed in range(5):
        episode = memory.sample_episode(n_way=3, k_shot=1, q_queries=1, group="t1", generator=torch.Generator().manual_seed(seed))
        assert {memory.keys[i] for i in episode.classes} == {"c", "d", "shared"}


def test_groups_survive_a_state_dict_round_trip() -> None:
    memory = TaskMemory(max_per_class=10)
    memory.add(images=_images(4, 0.5), labels=torch.tensor([0, 1] * 2), keys=["a", "b"], group="t0")
    clone = TaskMemory()
    clone.load_state_dict(memory.state_dict())
    assert clone.groups_with(n_way=2, per_class=2) == ["t0"]


def test_group_samples_come_from_that_sources_classes_only() -> None:
    memory = TaskMemory(max_per_class=10)
    memory.add(images=_images(4, 0.2), labels=torch.tensor([0, 1] * 2), keys=["a", "b"], group="t0")
    memory.add(images=_images(4, 0.8), labels=torch.tensor([0, 1] * 2), keys=["c", "d"], group="t1")
    picked = memory.sample_group(group="t1", count=3, generator=torch.Generator().manual_seed(0))
    assert picked.shape == (3, 3, 8, 8) and torch.allclose(picked, torch.full_like(picked, 0.8), atol=1 / 255)
    assert len(memory.sample_group(group="t1", count=50)) == 4 and len(memory.sample_group(group="unknown", count=5)) == 0
