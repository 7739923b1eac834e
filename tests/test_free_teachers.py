"""Small real teachers for the FREE tests: Conv4 classifiers trained for seconds on glyph classes.

Other ``test_free_*`` modules import the helpers below; the test here checks that the teachers
they get are real classifiers (accurate on images they were not trained on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from freehub.data import ImageSet, SplitData, load_glyphs
from freehub.free.learners import Conv4
from freehub.task_model import ModelSpec, TaskModel


TRAIN_PER_CLASS = 15


def glyphs() -> SplitData:
    """The glyph splits at 32 x 32, 20 images per class (cached in the test session's FREEHUB_HOME)."""
    return load_glyphs(size=32, channels=3, seed=0, images_per_class=20)


def fit_split(task: ImageSet) -> tuple[ImageSet, ImageSet]:
    """The first TRAIN_PER_CLASS images of each class to fit on, the rest held out."""
    rank = torch.zeros_like(task.labels)
    for label in range(task.num_classes):
        rows = (task.labels == label).nonzero().flatten()
        rank[rows] = torch.arange(len(rows))
    fit, held_out = rank < TRAIN_PER_CLASS, rank >= TRAIN_PER_CLASS
    return (
        ImageSet(task.images[fit], task.labels[fit], task.class_names, task.class_groups),
        ImageSet(task.images[held_out], task.labels[held_out], task.class_names, task.class_groups),
    )


def _fit(network: nn.Module, data: ImageSet, *, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    images, labels = data.as_float(), data.labels
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-3)
    network.train()
    for _ in range(steps):
        shift = torch.randint(-2, 3, (2,)).tolist()
        batch = torch.roll(images, shifts=shift, dims=(2, 3))
        loss = F.cross_entropy(network((batch - 0.5) / 0.5), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return network.eval()


def train_teacher(*, task: ImageSet, seed: int, steps: int = 60, width: int = 16) -> TaskModel:
    """A Conv4 teacher (BatchNorm, with running statistics) over ``task``'s classes."""
    torch.manual_seed(seed)
    network = nn.Sequential(Conv4(width=width), nn.Linear(width * 4, task.num_classes))
    _fit(network, task, steps=steps, seed=seed)
    spec = ModelSpec(
        library="torch", architecture=f"conv4-w{width}", label_names=task.class_names, input_size=(3, 32, 32), mean=(0.5,) * 3, std=(0.5,) * 3,
        head_names=("1.weight", "1.bias"),
    )
    return TaskModel(network=network, spec=spec).eval()


class _Judge(nn.Module):
    # A different architecture from the teachers: 5x5 convolutions, no BatchNorm, average pooling.
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
            nn.Flatten(), nn.Linear(32 * 8 * 8, classes),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def train_judge(*, task: ImageSet, seed: int, steps: int = 80) -> nn.Module:
    """An independent classifier of another architecture, trained on real images of ``task``."""
    torch.manual_seed(seed)
    return _fit(_Judge(task.num_classes), task, steps=steps, seed=seed)


def judge_accuracy(*, judge: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """How often the judge names the class the images were generated for."""
    with torch.no_grad():
        return float((judge((images - 0.5) / 0.5).argmax(1) == labels).float().mean())


def test_teachers_and_judges_classify_held_out_real_images() -> None:
    data = glyphs()
    fit, held_out = fit_split(data.train.select_classes(range(5)))
    teacher = train_teacher(task=fit, seed=0)
    judge = train_judge(task=fit, seed=0)
    with torch.no_grad():
        teacher_acc = float((teacher(held_out.as_float()).argmax(1) == held_out.labels).float().mean())
    assert teacher_acc >= 0.7
    assert judge_accuracy(judge=judge, images=held_out.as_float(), labels=held_out.labels) >= 0.7
    assert teacher.has_batchnorm
