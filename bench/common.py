"""What the benchmarks share: the embedded zoo as a registry, and an independent judge of recovered images."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from freehub.collect import collect
from freehub.data import SplitData
from freehub.hub import LocalHub
from freehub.registry import Registry
from freehub.task_model import canonical_label_key
from freehub.zoo import build_zoo

ORG = "bench"


def add_zoo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every zoo benchmark shares: where results and the zoo go, and the zoo's size."""
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--work", type=Path, default=None, help="zoo and registry (default: OUT/work); reused when present")
    parser.add_argument("--teachers", type=int, default=24)
    parser.add_argument("--zoo-steps", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)


def zoo_registry(*, work: Path, teachers: int, zoo_steps: int, data: SplitData) -> Path:
    """The embedded zoo of ``teachers`` teachers on a folder Hub under ``work``, collected into a registry (both reused)."""
    (work / "hub").mkdir(parents=True, exist_ok=True)
    hub = LocalHub(root=work / "hub")
    if len(list(hub.search(author=ORG, tags=("few-shot",)))) < teachers:
        started = time.perf_counter()
        build_zoo(hub=hub, org=ORG, teachers=teachers, seed=0, data=data, train_steps=zoo_steps)
        print(f"built a zoo of {teachers} teachers in {time.perf_counter() - started:.0f} s", flush=True)
    with Registry.open(work / "registry") as registry:
        collect(hub=hub, registry=registry, tags=("few-shot",), author=ORG, progress=False)
    return work / "registry"


_JUDGES: dict[tuple[frozenset[str] | None, int], tuple[nn.Module, dict[str, int], float]] = {}
JUDGE_TRAIN_PER_CLASS = 15
JUDGE_STEPS = 400


def train_judge(data: SplitData, *, class_names: set[str] | None = None, steps: int = JUDGE_STEPS) -> tuple[nn.Module, dict[str, int], float]:
    """A classifier of another architecture than any teacher, trained on grey views of real images of
    the meta-train classes named (default: all): ``(network, class index by label key, accuracy on
    held-out real images)``.

    It judges recovered images without asking their teacher (whose own verdict saturates quickly).
    Trained once per process for each set of classes and steps; inputs are ``[0, 1]`` images mapped
    by :func:`judge_logits`.
    """
    cache_key = (None if class_names is None else frozenset(class_names), steps)
    if cache_key in _JUDGES:
        return _JUDGES[cache_key]
    train = data.train
    if class_names is not None:
        train = train.select_classes([i for i, name in enumerate(train.class_names) if name in class_names])
    rank = torch.zeros_like(train.labels)
    for label in range(train.num_classes):
        rows = torch.nonzero(train.labels == label).flatten()
        rank[rows] = torch.arange(len(rows))
    fit, held = rank < JUDGE_TRAIN_PER_CLASS, rank >= JUDGE_TRAIN_PER_CLASS
    images, labels = train.as_float(), train.labels
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        # 5x5 convolutions, no BatchNorm, average pooling: unlike every teacher of the zoo.
        net = nn.Sequential(
            nn.Conv2d(3, 16, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2), nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128, train.num_classes),
        )
        optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
        fit_images, fit_labels = images[fit], labels[fit]
        for _ in range(steps):
            pick = torch.randint(0, len(fit_labels), (128,))
            loss = F.cross_entropy(judge_logits(net, fit_images[pick]), fit_labels[pick])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    net.eval()
    with torch.no_grad():
        held_accuracy = float((judge_logits(net, images[held]).argmax(dim=1) == labels[held]).float().mean())
    keys = {canonical_label_key(name) or name: i for i, name in enumerate(train.class_names)}
    _JUDGES[cache_key] = (net, keys, held_accuracy)
    return _JUDGES[cache_key]


def judge_logits(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The judge's logits for ``[0, 1]`` images (it reads grey: teachers of one channel recover grey images)."""
    grey = images.mean(dim=1, keepdim=True).expand(-1, 3, -1, -1)
    return net(grey * 2 - 1)


def judge_within(*, net: nn.Module, columns: list[int], images: torch.Tensor, labels: torch.Tensor) -> float:
    """Judge accuracy when choosing only among one teacher's classes (``columns``: judge class per label)."""
    with torch.no_grad():
        logits = judge_logits(net, images)[:, torch.tensor(columns)]
    return float((logits.argmax(dim=1) == labels).float().mean())


def digits_folder(*, work: Path) -> Path | None:
    """scikit-learn's bundled handwritten digits (8 x 8, 10 classes) as an image folder: real images of a
    domain no teacher saw. ``None`` when scikit-learn is not installed (``pip install -e '.[bench]'``)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        return None
    import numpy as np
    from PIL import Image

    root = work / "digits"
    if (root / "9").is_dir():
        return root
    digits = load_digits()
    for index, (image, label) in enumerate(zip(digits.images, digits.target)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * (255 / 16)).astype(np.uint8)).save(folder / f"{index:04d}.png")
    return root
