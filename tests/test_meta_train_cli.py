"""`freehub meta-train` options on a registry of three tiny timm models: each option reaches the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_sources import SHA_A, SHA_B, TINY_RUN, _register

from freehub.cli.app import main
from freehub.registry import Registry

# TINY_RUN without the options under test, so that only the command line sets them.
TINY = {key: value for key, value in TINY_RUN.to_dict().items() if key not in ("seed", "device", "teachers_per_step", "iterations")}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    with Registry.open(root) as opened:
        _register(opened, repo_id="lab/five", sha=SHA_A, classes=5, license="apache-2.0")
        _register(opened, repo_id="lab/ten", sha=SHA_B, classes=10, license="mit")
        # A third model, so that three teachers per step are three models (each model is drawn once at most).
        _register(opened, repo_id="lab/pair", sha="c" * 40, classes=2, license="mit")
    return root


def _meta_train(registry: Path, run: Path, *options: str) -> None:
    config = run.parent / f"{run.name}.yaml"
    config.write_text(yaml.safe_dump(TINY))
    with pytest.raises(SystemExit) as stop:
        main(["meta-train", "--registry", str(registry), "--out", str(run), "--config", str(config), "--json", *options])
    assert stop.value.code in (None, 0)


def _learner(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "learner" / "learner.safetensors")


def test_seed_device_and_teachers_per_step_reach_the_run(registry: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _meta_train(registry, run, "--iterations", "1", "--seed", "5", "--device", "cpu", "--teachers-per-step", "3")
    config = json.loads((run / "config.json").read_text())
    assert (config["seed"], config["device"], config["resolved_device"], config["teachers_per_step"]) == (5, "cpu", "cpu", 3)
    (record,) = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(record["recovery_seconds"]) == 3


def test_the_seed_decides_the_learner(registry: Path, tmp_path: Path) -> None:
    learners = {}
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        _meta_train(registry, tmp_path / name, "--iterations", "0", "--seed", seed)
        learners[name] = _learner(tmp_path / name)
    assert all(torch.equal(learners["a"][key], learners["b"][key]) for key in learners["a"])
    assert not all(torch.equal(learners["a"][key], learners["c"][key]) for key in learners["a"])


@pytest.mark.parametrize("options, message", [
    (("--device", "tpu"), "device must be"),
    (("--teachers-per-step", "0"), "teachers_per_step must be at least 1"),
    (("--device", f"cuda:{torch.cuda.device_count()}"), "CUDA device"),
])
def test_a_bad_option_is_one_line_and_exit_2(registry: Path, tmp_path: Path, capsys, options, message) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["meta-train", "--registry", str(registry), "--out", str(tmp_path / "run"), *options])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
