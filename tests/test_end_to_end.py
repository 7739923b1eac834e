"""The product path through the CLI: zoo -> collect -> registry -> meta-train -> resume, on real glyphs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from freehub.cli.app import app, main

TINY_RUN = {
    "generator_width": 16,
    "images_per_task": 10,
    "teachers_per_step": 2,
    "warmup_iterations": 1,
    "max_replay_steps": 2,
    "episodes_per_step": 1,
    "inner_steps": 1,
    "val_every": 1,
    "val_episodes": 4,
    "val_steps": 2,
    "grid_every": 1,
    "q_queries": 2,
}

runner = CliRunner()


@pytest.fixture(scope="module")
def registry(glyph_zoo, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("registry")
    done = runner.invoke(app, ["collect", "--hub", str(glyph_zoo), "--registry", str(folder), "--json"])
    assert done.exit_code == 0, done.output
    return folder


def _invoke_json(args: list[str]) -> dict:
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout[done.stdout.index("{"):])


def test_collect_registers_every_teacher_of_the_zoo(registry: Path) -> None:
    listed = _invoke_json(["registry", "list", "--registry", str(registry), "--json"])
    assert len(listed["models"]) == 5
    assert {m["library"] for m in listed["models"]} == {"timm", "transformers"}


def test_second_collect_changes_nothing(glyph_zoo: Path, registry: Path) -> None:
    report = _invoke_json(["collect", "--hub", str(glyph_zoo), "--registry", str(registry), "--json"])
    assert report["collected"] == [] and len(report["already_present"]) == 5


@pytest.mark.slow
def test_meta_train_runs_and_resumes_from_the_registry(registry: Path, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY_RUN))
    run = tmp_path / "run"
    base = ["meta-train", "--registry", str(registry), "--out", str(run), "--config", str(config), "--val-data", "glyphs"]
    first = _invoke_json([*base, "--iterations", "2", "--json"])
    assert first["iterations"] == 2 and first["best_val"] is not None
    logged = (run / "metrics.jsonl").read_bytes()
    resumed = _invoke_json([*base, "--iterations", "3", "--resume", "--json"])
    assert resumed["iterations"] == 3
    resolved = json.loads((run / "config.json").read_text())
    assert resolved["generator_width"] == 16 and resolved["iterations"] == 3
    # A restart from scratch would rewrite the first run's lines (their timings differ): resuming keeps them.
    metrics = (run / "metrics.jsonl").read_bytes()
    assert metrics.startswith(logged) and metrics != logged
    assert [json.loads(line)["iteration"] for line in metrics.decode().splitlines()] == [0, 1, 2]
    assert list((run / "grids").glob("*.png"))


def test_meta_train_on_an_empty_registry_is_one_line_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["meta-train", "--registry", str(tmp_path / "empty"), "--out", str(tmp_path / "run")])
    assert stop.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "freehub collect" in err


def test_unknown_config_key_is_one_line_error(tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("generator_wdith: 8\n")
    with pytest.raises(SystemExit) as stop:
        main(["meta-train", "--out", str(tmp_path / "run"), "--config", str(config)])
    assert stop.value.code == 2
    assert "generator_wdith" in capsys.readouterr().err


def test_collect_from_a_dead_endpoint_is_one_line_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["collect", "--hub", "http://127.0.0.1:9", "--registry", str(tmp_path / "reg")])
    assert stop.value.code != 0
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "127.0.0.1:9" in errors[0]


def test_meta_validation_on_the_teachers_own_classes_is_refused(registry: Path, tmp_path: Path, capsys) -> None:
    # A folder of classes named like the zoo's labels: whichever the split seed puts in meta-val, the teachers know them.
    listed = _invoke_json(["registry", "list", "--registry", str(registry), "--json"])
    labels = sorted({label for model in listed["models"] for label in model["label_names"]})[:8]
    for label in labels:
        (tmp_path / "val" / label).mkdir(parents=True)
        Image.new("RGB", (8, 8), (len(label) * 20 % 256, 0, 0)).save(tmp_path / "val" / label / "0.png")
    with pytest.raises(SystemExit) as stop:
        main(["meta-train", "--registry", str(registry), "--out", str(tmp_path / "run"), "--val-data", str(tmp_path / "val"),
              "--split-seed", "1"])
    assert stop.value.code == 2
    assert "classes the teachers were trained on" in capsys.readouterr().err
