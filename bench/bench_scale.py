"""How freehub's cost grows with the Hub: registry listing, collect, and meta-train start-up.

Every measurement runs the real command line in a child process and reads the child's own wall time
and peak resident memory (``wait4``), so that numbers include start-up and imports as a user sees them:

- ``freehub registry list`` on registries of 100 / 1,000 / 10,000 rows (rows cloned in the index);
- ``freehub collect`` of 100 / 1,000 tiny timm repos from the test Hub server (paged search);
- ``freehub meta-train`` (a few tiny iterations) on 24 / 240 / 2,400 registry entries: copies of the
  embedded zoo's teachers (hard links to their files, rows cloned in the index). Start-up is the
  wall time less the iterations' own time.

    python bench/bench_scale.py                 # the full table (~10 minutes on 2 cores)
    python bench/bench_scale.py --quick         # 100 / 1,000 rows, 50 / 100 repos, 24 / 240 entries
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_SCRATCH = Path(tempfile.mkdtemp(prefix="freehub-bench-scale-"))
# huggingface_hub reads these once, at import (children inherit them): set them before anything imports it.
os.environ.update(
    {
        "HF_HOME": str(_SCRATCH / "hf_home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "FREEHUB_HOME": str(_SCRATCH / "freehub_home"),
    }
)

import timm  # noqa: E402
import torch  # noqa: E402

from common import zoo_registry  # noqa: E402
from freehub.adapters import save_timm_checkpoint  # noqa: E402
from freehub.data import load_glyphs  # noqa: E402

_CARD = "---\nlicense: apache-2.0\nlibrary_name: timm\npipeline_tag: image-classification\ntags:\n- few-shot\n---\n"
_TINY_RUN = """\
device: cpu
iterations: {iterations}
warmup_iterations: 0
teachers_per_step: 4
generator_width: 16
latent_dim: 32
images_per_task: 10
inversion_steps: 2
conv_width: 8
q_queries: 1
episodes_per_step: 1
max_replay_steps: 1
patience: 1
grid_every: 1000
"""


# Linux keeps a process's peak memory across exec, so a child forked from this process (torch
# loaded) would report this process's size: a small launcher forks the measured command instead.
_LAUNCHER = """
import json, os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as handle:
    json.dump([os.waitstatus_to_exitcode(status), usage.ru_maxrss], handle)
"""


def _run(command: list[str]) -> tuple[float, float, str]:
    """Run ``command``; its wall seconds, its peak resident MiB and its stdout."""
    usage_path, out_path, err_path = _SCRATCH / "child.json", _SCRATCH / "child.out", _SCRATCH / "child.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", _LAUNCHER, str(usage_path), *command], stdout=out, stderr=err, check=True)
        elapsed = time.perf_counter() - started
    code, peak_kib = json.loads(usage_path.read_text())
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed ({code}): {err_path.read_text()[-2000:]}")
    return elapsed, peak_kib / 1024, out_path.read_text()


def _freehub(*args: str) -> list[str]:
    return [sys.executable, "-m", "freehub", *args]


def _clone_rows(*, registry: Path, copies: int, link_files: bool) -> int:
    """Grow ``registry`` to ``copies`` rows per row it holds: clones with new ids and repo ids (``-cN``).

    With ``link_files`` each clone gets a model folder of hard links to its original's files, so that
    it loads like the original; without, the clones are index rows only (what listing reads).
    """
    connection = sqlite3.connect(registry / "index.sqlite", isolation_level=None)
    originals = connection.execute("SELECT id, repo_id FROM models").fetchall()
    columns = [row[1] for row in connection.execute("PRAGMA table_info(models)")]
    connection.execute("BEGIN")
    for copy in range(1, copies):
        for model_id, repo_id in originals:
            new_repo = f"{repo_id}-c{copy}"
            new_id = model_id.replace(repo_id.replace("/", "--"), new_repo.replace("/", "--"), 1)
            values = ", ".join("?" if name in ("id", "repo_id") else name for name in columns)
            connection.execute(f"INSERT INTO models SELECT {values} FROM models WHERE id = ?", (new_id, new_repo, model_id))
            if link_files:
                source, target = registry / "models" / model_id, registry / "models" / new_id
                target.mkdir()
                for path in source.iterdir():
                    os.link(path, target / path.name)
    connection.execute("COMMIT")
    count = connection.execute("SELECT COUNT(*) FROM models").fetchone()[0]
    connection.close()
    return count


def _link_weights(source: str, target: str) -> None:
    # Model files are shared between copies; the index is each registry's own.
    if f"{os.sep}models{os.sep}" in source:
        os.link(source, target)
    else:
        shutil.copy2(source, target)


def _tiny_repo(*, folder: Path) -> dict[str, bytes]:
    torch.manual_seed(0)
    network = timm.create_model("resnet18", num_classes=3, in_chans=1, layers=(1, 1, 1, 1), channels=(4, 8, 8, 8), stem_width=4)
    save_timm_checkpoint(model=network, folder=folder, label_names=["cat", "dog", "bean"], input_size=(1, 28, 28), mean=(0.5,), std=(0.5,))
    files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    files["README.md"] = _CARD.encode()
    return files


def bench_list(*, sizes: list[int]) -> list[tuple[str, int, float, float]]:
    """``registry list`` and ``--help`` on registries of each size."""
    rows = []
    registry = _SCRATCH / "list-registry"
    hub_root = _SCRATCH / "list-hub" / "bench" / "tiny"
    hub_root.mkdir(parents=True)
    for name, data in _tiny_repo(folder=_SCRATCH / "list-build").items():
        (hub_root / name).write_bytes(data)
    _run(_freehub("collect", "--hub", str(_SCRATCH / "list-hub"), "--registry", str(registry), "--json"))
    # The floor under any command: Python with the CLI framework (Typer validates options through pydantic).
    seconds, peak, _ = _run([sys.executable, "-c", "import typer, pydantic"])
    rows.append(("python: import typer, pydantic", 0, seconds, peak))
    seconds, peak, _ = _run(_freehub("--help"))
    rows.append(("freehub --help", 0, seconds, peak))
    base = _SCRATCH / "list-base"
    shutil.copytree(registry, base)
    for size in sizes:
        shutil.rmtree(registry)
        shutil.copytree(base, registry)
        count = _clone_rows(registry=registry, copies=size, link_files=False)
        seconds, peak, stdout = _run(_freehub("registry", "list", "--registry", str(registry)))
        if len(stdout.splitlines()) != count:
            raise SystemExit(f"registry list printed {len(stdout.splitlines())} rows, the index holds {count}")
        rows.append(("freehub registry list", count, seconds, peak))
        print(f"registry list, {count} rows: {seconds:.2f} s, {peak:.0f} MiB", flush=True)
    return rows


def bench_collect(*, sizes: list[int], workers: int) -> list[tuple[str, int, float, float]]:
    """``collect`` of each number of repos from the test Hub server into an empty registry."""
    # The test server and the routes module beside it are test code, not part of the package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from hub_server import HubServer

    server = HubServer(root=_SCRATCH / "server").start()
    files = _tiny_repo(folder=_SCRATCH / "collect-build")
    rows = []
    try:
        published = 0
        for size in sizes:
            for index in range(published, size):
                server.add_repo(f"bench/tiny-{index:05d}", files=files)
            published = size
            registry = _SCRATCH / f"collect-registry-{size}"
            seconds, peak, stdout = _run(
                _freehub("collect", "--hub", server.url, "--registry", str(registry), "--workers", str(workers), "--json")
            )
            report = json.loads(stdout)
            if len(report["collected"]) != size or report["skipped"]:
                raise SystemExit(f"collect of {size} repos: {len(report['collected'])} collected, {len(report['skipped'])} skipped")
            rows.append((f"freehub collect ({workers} workers)", size, seconds, peak))
            print(f"collect, {size} repos: {seconds:.2f} s, {peak:.0f} MiB", flush=True)
    finally:
        server.stop()
    return rows


def bench_meta_train(*, sizes: list[int], zoo_steps: int, iterations: int, work: Path) -> list[tuple[str, int, float, float, float]]:
    """Start-up and peak memory of ``meta-train`` on registries of each size (copies of the 24-teacher zoo in ``work``)."""
    base = zoo_registry(work=work, teachers=24, zoo_steps=zoo_steps, data=load_glyphs(size=32, seed=0))
    config = _SCRATCH / "tiny.yaml"
    config.write_text(_TINY_RUN.format(iterations=iterations))
    rows = []
    for size in sizes:
        registry = _SCRATCH / f"train-registry-{size}"
        shutil.copytree(base, registry, copy_function=_link_weights)
        count = _clone_rows(registry=registry, copies=size // 24, link_files=True)
        out = _SCRATCH / f"run-{size}"
        seconds, peak, stdout = _run(_freehub("meta-train", "--out", str(out), "--registry", str(registry), "--config", str(config), "--json"))
        trained = json.loads(stdout)["seconds"]
        rows.append(("freehub meta-train", count, seconds - trained, peak, trained))
        print(f"meta-train, {count} entries: start-up {seconds - trained:.2f} s, {peak:.0f} MiB", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a smoke run")
    parser.add_argument("--workers", type=int, default=4, help="collect workers")
    parser.add_argument("--zoo-steps", type=int, default=20, help="training steps of each zoo teacher (quality does not matter here)")
    parser.add_argument("--iterations", type=int, default=6, help="meta-train iterations per run")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--parts", default="list,collect,train", help="which measurements to run (comma-separated)")
    parser.add_argument("--work", type=Path, help="keep the zoo and its registry here, to reuse them (default: a temporary folder)")
    args = parser.parse_args()
    list_sizes = [100, 1000] if args.quick else [100, 1000, 10_000]
    collect_sizes = [50, 100] if args.quick else [100, 1000]
    train_sizes = [24, 240] if args.quick else [24, 240, 2400]
    try:
        parts = set(args.parts.split(","))
        listing = bench_list(sizes=list_sizes) if "list" in parts else []
        collecting = bench_collect(sizes=collect_sizes, workers=args.workers) if "collect" in parts else []
        work = args.work or _SCRATCH / "zoo"
        training = (
            bench_meta_train(sizes=train_sizes, zoo_steps=args.zoo_steps, iterations=args.iterations, work=work) if "train" in parts else []
        )
    finally:
        shutil.rmtree(_SCRATCH, ignore_errors=True)
    print(f"\nhow cost grows ({os.cpu_count()} CPUs; child processes, wall time and peak resident memory)\n")
    print(f"{'command':<32} {'size':>7} {'seconds':>8} {'peak MiB':>9} {'per s':>7}")
    for name, size, seconds, peak in listing:
        print(f"{name:<32} {size:>7} {seconds:>8.2f} {peak:>9.0f} {'':>7}")
    for name, size, seconds, peak in collecting:
        print(f"{name:<32} {size:>7} {seconds:>8.2f} {peak:>9.0f} {size / seconds:>7.1f}")
    print(f"\n{'meta-train':<32} {'entries':>7} {'start-up s':>10} {'peak MiB':>9} {f'{args.iterations} iterations s':>16}")
    for _, size, startup, peak, trained in training:
        print(f"{'freehub meta-train':<32} {size:>7} {startup:>10.2f} {peak:>9.0f} {trained:>16.2f}")
    if args.json:
        args.json.write_text(json.dumps({"list": listing, "collect": collecting, "meta_train": training}, indent=2) + "\n")


if __name__ == "__main__":
    main()
