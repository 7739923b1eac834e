"""`freehub evaluate` scores the training-free references by name, beside any learner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.app import app
from freehub.errors import ConfigError
from freehub.evaluate import load_model
from freehub.free.reference import PixelPrototypes

runner = CliRunner()


def test_pixels_is_built_by_name_at_the_spec_size() -> None:
    learner = load_model(model="pixels")
    assert isinstance(learner, PixelPrototypes) and learner.spec.image_size == 32


def test_teacher_ensemble_without_a_registry_is_refused() -> None:
    with pytest.raises(ConfigError, match="--registry"):
        load_model(model="teacher-ensemble")


def test_teacher_ensemble_of_a_missing_registry_is_refused_without_creating_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no registry"):
        load_model(model="teacher-ensemble", registry=tmp_path / "nowhere")
    assert not (tmp_path / "nowhere").exists()


def test_cli_compares_pixels_with_random_on_shared_episodes() -> None:
    result = runner.invoke(
        app, ["evaluate", "--model", "pixels", "--baseline", "random", "--shot", "1", "--episodes", "40", "--json"]
    )
    assert result.exit_code == 0, result.output
    rows = {row["model"]: row for row in json.loads(result.output)}
    assert set(rows) == {"pixels", "random"}
    assert rows["pixels"]["diff_mean"] is not None  # paired with random, episode by episode


def test_cli_teacher_ensemble_reads_the_registry(glyph_zoo: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    collected = runner.invoke(app, ["collect", "--hub", str(glyph_zoo), "--registry", str(registry), "--author", "e2e"])
    assert collected.exit_code == 0, collected.output
    result = runner.invoke(
        app, ["evaluate", "--model", "teacher-ensemble", "--registry", str(registry), "--shot", "1", "--episodes", "20", "--json"]
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert row["model"] == "teacher-ensemble" and 0.2 < row["mean"] <= 1.0
