import subprocess
import sys

import pytest
import typer

from freehub.cli import app as cli_app
from freehub.errors import DataError


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as stop:
        cli_app.main(["--help"])
    assert stop.value.code == 0
    assert "data" in capsys.readouterr().out


def test_freehub_error_becomes_one_line_and_nonzero_exit(capsys, monkeypatch):
    failing = typer.Typer()

    @failing.command()
    def boom() -> None:
        raise DataError("no such folder: nowhere")

    monkeypatch.setattr(cli_app, "app", failing)
    with pytest.raises(SystemExit) as stop:
        cli_app.main([])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: no such folder: nowhere"


def test_console_script_module_runs():
    done = subprocess.run([sys.executable, "-m", "freehub", "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
