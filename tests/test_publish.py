"""freehub push end to end: round trips through the test server and a folder hub, and every refusal.

A refusal is one line on stderr, exit code 2, and no trace on the Hub.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from huggingface_hub import ModelCard
from run_factory import EVALUATIONS, SOURCES, evaluation, make_run

from freehub.cli.app import main
from freehub.errors import PublishError
from freehub.free.learners import LearnerSpec, load_learner
from freehub.hub import LocalHub, open_hub
from freehub.pretrained import FewShotLearner
from freehub.publish import push_learner
from freehub.sources import RunSources, SourceModel

WRITE_TOKEN = "hf_test_write"
SUPPORT = torch.rand(10, 3, 32, 32, generator=torch.Generator().manual_seed(1))
LABELS = [0, 1, 2, 3, 4] * 2
QUERIES = torch.rand(15, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _push(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as stop:
        main(["push", *args])
    captured = capsys.readouterr()
    return stop.value.code, captured.out, captured.err


def _refused(code: int, err: str, fragment: str) -> None:
    assert code == 2
    assert err.startswith("error: ") and err.strip().count("\n") == 0 and fragment in err


def _logits(learner: FewShotLearner) -> torch.Tensor:
    return learner.adapt(SUPPORT, LABELS).logits(QUERIES)


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "run")


@pytest.fixture
def server_hub(hub_server):
    return open_hub(hub_server.url, token=WRITE_TOKEN)


# --- round trips ---------------------------------------------------------------------------------------


def test_folder_hub_round_trip_predicts_like_the_run(run: Path, tmp_path: Path) -> None:
    push_learner(run_dir=run, repo_id="lab/free", hub=tmp_path / "hub")

    published = FewShotLearner.from_pretrained("lab/free", hub=tmp_path / "hub")

    assert torch.equal(_logits(published), _logits(FewShotLearner.from_pretrained(run)))


def test_server_round_trip_predicts_like_the_run(run: Path, server_hub, hub_org: str) -> None:
    push_learner(run_dir=run, repo_id=f"{hub_org}/free", hub=server_hub)

    published = FewShotLearner.from_pretrained(f"{hub_org}/free", hub=server_hub)

    assert torch.equal(_logits(published), _logits(FewShotLearner.from_pretrained(run)))
    assert published.config["revision"] == server_hub.repo_info(repo_id=f"{hub_org}/free").sha


def test_maml_learner_round_trip_fine_tunes_like_the_run(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", spec=LearnerSpec(backbone="conv4", algorithm="maml", conv_width=8))
    push_learner(run_dir=run, repo_id="lab/maml", hub=tmp_path / "hub")

    published = FewShotLearner.from_pretrained("lab/maml", hub=tmp_path / "hub")

    assert torch.allclose(_logits(published), _logits(FewShotLearner.from_pretrained(run)), atol=1e-6)


def test_pushed_card_parses_and_its_results_are_the_evaluations(run: Path, server_hub, hub_org: str) -> None:
    push_learner(run_dir=run, repo_id=f"{hub_org}/free", hub=server_hub)

    card = ModelCard.load(f"{hub_org}/free")

    measured = [e for e in json.loads((run / "evaluations.json").read_text())["evaluations"] if e["model"] != "random"]
    results = card.data.eval_results
    assert [(r.metric_value, r.metric_args["ci95"], r.dataset_args["k_shot"]) for r in results] == [
        (e["mean"], e["ci95"], e["k_shot"]) for e in measured
    ]
    for model in SOURCES.models:
        assert model.repo_id in card.data.base_model and f"| {model.repo_id} | `{model.sha}` |" in card.text


def test_one_commit_holds_weights_config_card_and_pictures(run: Path, server_hub, hub_server, hub_org: str) -> None:
    commits_before = len(hub_server.requests_to(f"/api/models/{hub_org}/free/commit/"))

    result = push_learner(run_dir=run, repo_id=f"{hub_org}/free", hub=server_hub)

    files = {entry.path for entry in server_hub.repo_info(repo_id=f"{hub_org}/free").files}
    assert files == {"README.md", "config.json", "model.safetensors", "images/meta_val.png", "images/recovered.png"}
    assert len(hub_server.requests_to(f"/api/models/{hub_org}/free/commit/")) == commits_before + 1
    assert result.commit == hub_server.head(f"{hub_org}/free") and result.created and result.results == 2


def test_timm_backbone_loads_with_timm_create_model_as_a_feature_extractor(tmp_path: Path, server_hub, hub_org: str) -> None:
    spec = LearnerSpec(backbone="timm:resnet18", algorithm="protonet", backbone_args={"layers": [1, 1, 1, 1], "channels": [8, 16, 16, 16]})
    run = make_run(tmp_path / "run", spec=spec)
    push_learner(run_dir=run, repo_id=f"{hub_org}/free-resnet", hub=server_hub)

    backbone = timm.create_model(f"hf-hub:{hub_org}/free-resnet", pretrained=True).eval()

    for layer in backbone.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.track_running_stats, layer.running_mean, layer.running_var = False, None, None
    config = timm.data.resolve_data_config(model=backbone)
    assert backbone.num_classes == 0 and config["input_size"] == (3, 32, 32) and tuple(config["mean"]) == (0.5, 0.5, 0.5)
    learner = load_learner(directory=run / "learner").eval()
    with torch.no_grad():
        assert torch.allclose(backbone((QUERIES - 0.5) / 0.5), learner.features(QUERIES), atol=1e-5)


def test_cli_push_prints_where_the_card_is(run: Path, tmp_path: Path, capsys) -> None:
    code, out, _ = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub")], capsys)

    assert code == 0
    assert f"card: {tmp_path / 'hub' / 'lab' / 'free' / 'README.md'}" in out
    assert ModelCard((tmp_path / "hub" / "lab" / "free" / "README.md").read_text()).data.library_name == "freehub"


def test_private_flag_creates_a_private_repo(run: Path, server_hub, hub_server, hub_org: str) -> None:
    push_learner(run_dir=run, repo_id=f"{hub_org}/secret", hub=server_hub, private=True)

    assert hub_server._repo(f"{hub_org}/secret")["private"] is True


# --- refusals ------------------------------------------------------------------------------------------


def test_no_such_run_is_refused(tmp_path: Path, capsys) -> None:
    code, _, err = _push(["--model", str(tmp_path / "nowhere"), "--repo", "lab/free", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "no such run")
    assert not (tmp_path / "hub" / "lab").exists()


def test_a_run_without_evaluations_is_refused(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run", evaluations=None)

    code, _, err = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "--no-results")
    assert not (tmp_path / "hub" / "lab").exists()


def test_evaluations_of_other_models_count_as_none(tmp_path: Path) -> None:
    others = [e for e in EVALUATIONS if e["model"] == "random"] + [evaluation(model=str(tmp_path / "oracle"), mean=0.9)]
    run = make_run(tmp_path / "run", evaluations=others)

    with pytest.raises(PublishError, match="no evaluation of its learner.*oracle"):
        push_learner(run_dir=run, repo_id="lab/free", hub=tmp_path / "hub")


def test_evaluations_of_an_earlier_learner_are_refused(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run")
    make_run(tmp_path / "extended", seed=1, evaluations=None)
    # What a resumed, extended run does: a new learner beside the old evaluations.
    (run / "learner" / "learner.safetensors").write_bytes((tmp_path / "extended" / "learner" / "learner.safetensors").read_bytes())

    code, _, err = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "measured on another learner")
    assert not (tmp_path / "hub" / "lab").exists()


def test_only_this_runs_evaluations_reach_the_card(tmp_path: Path) -> None:
    oracle = evaluation(model=str(tmp_path / "oracle"), mean=0.9, ci95=0.01)
    run = make_run(tmp_path / "run", evaluations=[*EVALUATIONS, oracle])

    result = push_learner(run_dir=run, repo_id="lab/free", hub=tmp_path / "hub")

    values = [r.metric_value for r in ModelCard(Path(result.card).read_text()).data.eval_results]
    assert values == [0.4615, 0.6593] and "90.00" not in Path(result.card).read_text()


def test_no_results_pushes_and_the_card_says_so(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run", evaluations=None)

    code, _, _ = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub"), "--no-results"], capsys)

    card = ModelCard((tmp_path / "hub" / "lab" / "free" / "README.md").read_text())
    assert code == 0 and "No results were measured" in card.text and card.data.eval_results is None


def test_a_run_without_sources_is_refused(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run", sources=None)

    code, _, err = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "sources.json")


def test_a_repo_with_other_content_is_refused_without_force(run: Path, tmp_path: Path, capsys) -> None:
    hub = LocalHub(root=tmp_path / "hub")
    hub.create_repo(repo_id="lab/free")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("someone else's")
    before = hub.upload_folder(repo_id="lab/free", folder=tmp_path / "theirs", commit_message="theirs")

    code, _, err = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "--force")
    assert hub.repo_info(repo_id="lab/free").sha == before


def test_force_replaces_every_file_of_a_folder_repo(run: Path, tmp_path: Path) -> None:
    hub = LocalHub(root=tmp_path / "hub")
    hub.create_repo(repo_id="lab/free")
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("someone else's")
    hub.upload_folder(repo_id="lab/free", folder=tmp_path / "theirs", commit_message="theirs")

    push_learner(run_dir=run, repo_id="lab/free", hub=hub, force=True)

    files = {entry.path for entry in hub.repo_info(repo_id="lab/free").files}
    assert "notes.txt" not in files and "model.safetensors" in files


def test_force_replaces_every_file_of_a_server_repo(run: Path, server_hub, hub_server, hub_org: str) -> None:
    hub_server.add_repo(f"{hub_org}/free", files={"notes.txt": b"someone else's", "old/weights.bin": b"old"})

    push_learner(run_dir=run, repo_id=f"{hub_org}/free", hub=server_hub, force=True)

    files = {entry.path for entry in server_hub.repo_info(repo_id=f"{hub_org}/free").files}
    assert files.isdisjoint({"notes.txt", "old/weights.bin"}) and "model.safetensors" in files


def test_a_template_that_fails_to_render_is_refused(run: Path, tmp_path: Path, capsys) -> None:
    template = tmp_path / "card.jinja"
    template.write_text("---\n{{ card_data }}\n---\n{{ missing_variable }}\n")

    code, _, err = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub"), "--card-template", str(template)], capsys)

    _refused(code, err, "card.jinja")
    assert not (tmp_path / "hub" / "lab").exists()


def _with_licenses(run: Path, *licenses: str | None) -> None:
    models = tuple(SourceModel(repo_id=f"lab/teacher-{i}", sha=f"{i}" * 40, library="timm", architecture="resnet18",
                               num_classes=5, label_names=("a", "b", "c", "d", "e"), license=value)
                   for i, value in enumerate(licenses))
    (run / "sources.json").write_text(json.dumps(RunSources(models=models, teachers=(), skipped=()).to_dict()))


def test_conflicting_source_licenses_are_refused(run: Path, tmp_path: Path, capsys) -> None:
    _with_licenses(run, "apache-2.0", "cc-by-nc-4.0")

    code, _, err = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "apache-2.0, cc-by-nc-4.0")
    assert not (tmp_path / "hub" / "lab").exists()


def test_an_unknown_source_license_is_refused(run: Path, tmp_path: Path, capsys) -> None:
    _with_licenses(run, "mit", None)

    code, _, err = _push(["--model", str(run), "--repo", "lab/free", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "lab/teacher-1")


def test_license_option_settles_a_conflict(run: Path, tmp_path: Path) -> None:
    _with_licenses(run, "apache-2.0", "cc-by-nc-4.0")

    result = push_learner(run_dir=run, repo_id="lab/free", hub=tmp_path / "hub", license="CC-BY-NC-4.0")

    assert result.license == "cc-by-nc-4.0"
    assert ModelCard(Path(result.card).read_text()).data.license == "cc-by-nc-4.0"


def test_no_write_token_is_refused(run: Path, hub_server, hub_org: str, capsys, monkeypatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)

    code, _, err = _push(["--model", str(run), "--repo", f"{hub_org}/free", "--hub", hub_server.url], capsys)

    _refused(code, err, "no token")
    assert hub_server._repo(f"{hub_org}/free") is None


def test_a_read_only_token_is_refused(run: Path, hub_server, hub_org: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", "hf_test_read")

    code, _, err = _push(["--model", str(run), "--repo", f"{hub_org}/free", "--hub", hub_server.url], capsys)

    _refused(code, err, "read-only")
    assert hub_server._repo(f"{hub_org}/free") is None


def test_cli_push_with_a_write_token_from_the_environment(run: Path, hub_server, hub_org: str, capsys, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", WRITE_TOKEN)

    code, out, _ = _push(["--model", str(run), "--repo", f"{hub_org}/free", "--hub", hub_server.url, "--json"], capsys)

    assert code == 0 and json.loads(out)["commit"] == hub_server.head(f"{hub_org}/free")


def test_a_bad_repo_id_is_refused(run: Path, tmp_path: Path, capsys) -> None:
    code, _, err = _push(["--model", str(run), "--repo", "../escape", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "ORG/NAME")


def test_evaluations_recorded_with_a_relative_path_count(tmp_path: Path) -> None:
    run = make_run(tmp_path / "runs" / "free", evaluations=[evaluation(model="runs/free"), evaluation(model="./free", k_shot=5)])

    result = push_learner(run_dir=run, repo_id="lab/free", hub=tmp_path / "hub")

    assert result.results == 2


def test_a_data_oracle_run_needs_a_license(tmp_path: Path, capsys) -> None:
    run = make_run(tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "recovery": "real"}))

    code, _, err = _push(["--model", str(run), "--repo", "lab/oracle", "--hub", str(tmp_path / "hub")], capsys)

    _refused(code, err, "data-oracle")


def test_the_cards_timm_snippet_runs_as_written(tmp_path: Path, server_hub, hub_org: str) -> None:
    spec = LearnerSpec(backbone="timm:resnet18", algorithm="protonet", backbone_args={"layers": [1, 1, 1, 1], "channels": [8, 8, 8, 8]})
    push_learner(run_dir=make_run(tmp_path / "run", spec=spec), repo_id=f"{hub_org}/free-resnet", hub=server_hub)
    snippet = ModelCard.load(f"{hub_org}/free-resnet").text.split("as a feature extractor:\n\n```python\n", 1)[1].split("```", 1)[0]

    namespace: dict = {}
    exec(compile(snippet, "card-timm-usage", "exec"), namespace)

    assert namespace["features"].shape == (8, 8)
