"""Collect throughput (models/s) from a local folder hub and from the test Hub server.

Publishes ``--repos`` tiny teachers (timm and transformers, distinct weights each) to both hubs,
then times one cold ``collect`` into an empty registry and one warm re-run (nothing new) per hub.

    python bench/bench_collect.py --repos 24 --workers 4
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

_SCRATCH = Path(tempfile.mkdtemp(prefix="freehub-bench-collect-"))
# huggingface_hub reads these once, at import: set them before anything imports it.
os.environ.update(
    {
        "HF_HOME": str(_SCRATCH / "hf_home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
)

import timm  # noqa: E402
import torch  # noqa: E402
from transformers import ResNetConfig, ResNetForImageClassification  # noqa: E402

from freehub.adapters import save_timm_checkpoint, save_transformers_checkpoint  # noqa: E402
from freehub.collect import collect  # noqa: E402
from freehub.hub import LocalHub, open_hub  # noqa: E402
from freehub.registry import Registry  # noqa: E402

_CARD = "---\nlicense: apache-2.0\nlibrary_name: {library}\npipeline_tag: image-classification\ntags:\n- few-shot\n---\n"


def _load_hub_server():
    path = Path(__file__).resolve().parents[1] / "tests" / "hub_server.py"
    spec = importlib.util.spec_from_file_location("hub_server", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["hub_server"] = module
    spec.loader.exec_module(module)
    return module


def _teacher_files(*, index: int, folder: Path) -> dict[str, bytes]:
    torch.manual_seed(index)
    labels = [f"class {index}-{k}" for k in range(5)]
    if index % 2 == 0:
        network = timm.create_model("test_efficientnet", num_classes=5)
        save_timm_checkpoint(model=network, folder=folder, label_names=labels, input_size=(3, 32, 32),
                             mean=(0.5,) * 3, std=(0.25,) * 3)
        library = "timm"
    else:
        config = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5)
        save_transformers_checkpoint(model=ResNetForImageClassification(config), folder=folder, label_names=labels,
                                     image_size=(32, 32), mean=(0.5,) * 3, std=(0.25,) * 3)
        library = "transformers"
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    files["README.md"] = _CARD.format(library=library).encode()
    return files


def _time_collect(*, hub, registry_dir: Path, workers: int) -> tuple[float, int]:
    registry = Registry.open(registry_dir)
    start = time.perf_counter()
    report = collect(hub=hub, registry=registry, tags=("few-shot",), workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    if report.skipped:
        raise SystemExit(f"unexpected skips: {report.summary()}")
    registry.close()
    return elapsed, len(report.collected) + len(report.already_present)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repos", type=int, default=24, help="teachers to publish to each hub")
    parser.add_argument("--workers", type=int, default=4, help="collect workers")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    server = _load_hub_server().HubServer(root=_SCRATCH / "server").start()
    try:
        _run(server=server, repos=args.repos, workers=args.workers)
    finally:
        server.stop()
        shutil.rmtree(_SCRATCH, ignore_errors=True)


def _run(*, server, repos: int, workers: int) -> None:
    local_root = _SCRATCH / "local_hub"
    for index in range(repos):
        files = _teacher_files(index=index, folder=_SCRATCH / "build" / f"t{index}")
        server.add_repo(f"bench/teacher-{index:03d}", files=files)
        repo = local_root / "bench" / f"teacher-{index:03d}"
        repo.mkdir(parents=True)
        for name, data in files.items():
            (repo / name).write_bytes(data)

    print(f"collect throughput, {repos} tiny teachers, {workers} workers, {os.cpu_count()} CPUs")
    print(f"{'hub':<14} {'run':<6} {'models':>6} {'seconds':>8} {'models/s':>9}")
    for label, hub in (("local folder", LocalHub(root=local_root)), ("test server", open_hub(server.url))):
        registry_dir = _SCRATCH / f"registry-{label.replace(' ', '-')}"
        for run in ("cold", "warm"):
            elapsed, count = _time_collect(hub=hub, registry_dir=registry_dir, workers=workers)
            print(f"{label:<14} {run:<6} {count:>6} {elapsed:>8.2f} {count / elapsed:>9.1f}")


if __name__ == "__main__":
    main()
