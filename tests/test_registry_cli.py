"""`freehub registry list / show / remove` over a registry filled through the library."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from freehub.cli.app import main
from freehub.cli.registry import registry_app
from freehub.registry import Registry
from freehub.task_model import ModelSpec

runner = CliRunner()


SPEC = ModelSpec(
    library="transformers",
    architecture="ResNetForImageClassification",
    label_names=("ant", "bee"),
    input_size=(3, 16, 16),
    mean=(0.5,) * 3,
    std=(0.5,) * 3,
)


def _fill(root: Path) -> str:
    registry = Registry.open(root)
    with registry.staging() as work:
        record = registry.register(staged=work, repo_id="org/insects", sha="c" * 40, spec=SPEC, files={})
    registry.record_skip(repo_id="org/pickled", sha="d" * 40, reason="pickle_only", message="only pytorch_model.bin")
    registry.close()
    return record.id


def test_list_shows_models_and_all_adds_skipped(tmp_path: Path) -> None:
    model_id = _fill(tmp_path)
    plain = runner.invoke(registry_app, ["list", "--registry", str(tmp_path)])
    assert plain.exit_code == 0, plain.output
    assert model_id in plain.output and "org/pickled" not in plain.output
    full = runner.invoke(registry_app, ["list", "--all", "--registry", str(tmp_path)])
    assert "org/pickled" in full.output and "pickle_only" in full.output


def test_list_json_is_parseable(tmp_path: Path) -> None:
    model_id = _fill(tmp_path)
    result = runner.invoke(registry_app, ["list", "--all", "--json", "--registry", str(tmp_path)])
    payload = json.loads(result.output)
    assert [m["id"] for m in payload["models"]] == [model_id]
    assert [s["reason"] for s in payload["skipped"]] == ["pickle_only"]


def test_show_prints_the_record(tmp_path: Path) -> None:
    model_id = _fill(tmp_path)
    result = runner.invoke(registry_app, ["show", model_id, "--json", "--registry", str(tmp_path)])
    assert result.exit_code == 0
    assert json.loads(result.output)["label_names"] == ["ant", "bee"]


def test_remove_deletes_the_model(tmp_path: Path) -> None:
    model_id = _fill(tmp_path)
    result = runner.invoke(registry_app, ["remove", model_id, "--registry", str(tmp_path)])
    assert result.exit_code == 0 and "removed" in result.output
    assert Registry.open(tmp_path).list(all_versions=True) == []


def test_help_has_examples() -> None:
    result = runner.invoke(registry_app, ["--help"])
    assert result.exit_code == 0 and "freehub registry list --all --json" in result.output


@pytest.mark.parametrize("command", ["show", "remove"])
def test_an_unknown_id_is_one_line_and_a_failing_exit(tmp_path: Path, capsys, command: str) -> None:
    _fill(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["registry", command, "org--nothing--000000000000", "--registry", str(tmp_path)])
    assert stop.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "org--nothing--000000000000" in err
    assert len(Registry.open(tmp_path).list(all_versions=True)) == 1


def test_removing_a_superseded_version_keeps_the_current_one(tmp_path: Path) -> None:
    old_id = _fill(tmp_path)
    registry = Registry.open(tmp_path)
    old = registry.get(old_id)
    with registry.staging() as work:
        (work / "weights").write_bytes(b"new")
        new = registry.register(staged=work, repo_id="org/insects", sha="e" * 40, spec=SPEC, files={})
    registry.close()
    result = runner.invoke(registry_app, ["remove", old_id, "--registry", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"version {old.version}" in result.output
    with Registry.open(tmp_path) as reopened:
        assert [(r.id, r.status, r.version) for r in reopened.list(all_versions=True)] == [(new.id, "current", 2)]
    assert not old.path.exists() and (new.path / "weights").read_bytes() == b"new"
