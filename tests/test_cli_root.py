import logging
import subprocess
import sys

import pytest
import typer
from huggingface_hub import get_session

from freehub.cli import app as cli_app
from freehub.errors import DataError
from freehub.hub import open_hub
from freehub.limits import Timeouts


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


@pytest.fixture
def restore_logging():
    loggers = [logging.getLogger(), logging.getLogger("freehub")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels):
        logger.setLevel(level)


def _collect_from_server(hub_server, hub_org, tmp_path, *options: str) -> None:
    hub_server.add_repo(f"{hub_org}/a", files={"README.md": b"---\ntags: [few-shot]\n---\n", "config.json": b"{}"})
    with pytest.raises(SystemExit) as stop:
        cli_app.main([*options, "collect", "--hub", hub_server.url, "--author", hub_org,
                      "--registry", str(tmp_path / "reg"), "--json"])
    assert stop.value.code in (None, 0)


def test_a_remote_crawl_logs_no_transport_lines(hub_server, hub_org, tmp_path, caplog, restore_logging):
    # Whatever level logging was left at (here the INFO the CLI used to set), the CLI decides its own.
    logging.getLogger().setLevel(logging.INFO)
    _collect_from_server(hub_server, hub_org, tmp_path)
    assert [r.getMessage() for r in caplog.records if r.name.startswith(("httpx", "huggingface_hub"))] == []


def test_verbose_shows_the_transport_lines(hub_server, hub_org, tmp_path, caplog, restore_logging):
    _collect_from_server(hub_server, hub_org, tmp_path, "-v")
    assert any("HTTP Request" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("where", ["folder", "url"])
def test_a_hub_that_does_not_exist_is_a_one_line_error_and_exit_2(hub_server, tmp_path, capsys, where):
    hub = str(tmp_path / "no-such-folder") if where == "folder" else f"{hub_server.url}/not-a-hub"
    with pytest.raises(SystemExit) as stop:
        cli_app.main(["collect", "--hub", hub, "--registry", str(tmp_path / "reg")])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Hub" in err


def test_a_foreign_registry_folder_is_a_one_line_error_and_exit_2(tmp_path, capsys):
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "hub").mkdir()
    with pytest.raises(SystemExit) as stop:
        cli_app.main(["collect", "--hub", str(tmp_path / "hub"), "--registry", str(tmp_path)])
    assert stop.value.code == 2
    assert "not a freehub registry" in capsys.readouterr().err
    assert (tmp_path / "models" / "mine").is_dir()


def test_a_remote_hub_gives_huggingface_hub_s_own_client_its_timeouts():
    open_hub("http://127.0.0.1:9", timeouts=Timeouts(read_s=7.5))
    timeout = get_session().timeout
    assert (timeout.connect, timeout.read) == (Timeouts().connect_s, 7.5)


def test_listing_the_registry_imports_neither_torch_nor_a_hub_client(tmp_path):
    # `registry list/show/remove` and `--help` must stay light: no deep-learning framework, no HTTP stack.
    script = (
        "import sys\n"
        "from freehub.cli.app import main\n"
        "for argv in (['--help'], ['registry', 'list', '--registry', sys.argv[1]], ['registry', 'list', '--help'],\n"
        "             ['registry', 'show', 'org--none--0123456789ab', '--registry', sys.argv[1]],\n"
        "             ['registry', 'remove', 'org--none--0123456789ab', '--registry', sys.argv[1]]):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted({'torch', 'timm', 'transformers', 'huggingface_hub', 'httpx2'} & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "registry")], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[]"
