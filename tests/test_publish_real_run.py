"""Publishing a run the real way: registry -> meta-train -> evaluate --save -> push -> from_pretrained.

The run directory is what the trainer, meta-train and evaluate write (not a hand-made one), on two
tiny registry teachers and a small set of random-pattern classes, so the whole loop takes seconds.
The slow test walks the same loop through the CLI on a real zoo, with the relative paths a user types.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from test_end_to_end import TINY_RUN as TINY_YAML
from test_sources import SHA_A, SHA_B, TINY_RUN, _register

from freehub.cli.app import main
from freehub.data import ImageSet
from freehub.evaluate import EvaluationRequest, evaluate_models, load_model, save_evaluations
from freehub.meta import meta_train
from freehub.pretrained import FewShotLearner
from freehub.publish import push_learner
from freehub.registry import Registry


def _classes(seed: int, count: int = 6, per_class: int = 4) -> ImageSet:
    generator = torch.Generator().manual_seed(seed)
    patterns = torch.rand(count, 3, 4, 4, generator=generator).repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    noisy = (patterns.repeat_interleave(per_class, dim=0) + 0.1 * torch.randn(count * per_class, 3, 32, 32, generator=generator)).clamp(0, 1)
    return ImageSet(
        images=(noisy * 255).round().to(torch.uint8),
        labels=torch.arange(count).repeat_interleave(per_class),
        class_names=tuple(f"PATTERN {seed}-{i}" for i in range(count)),
        class_groups=("patterns",) * count,
    )


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("real")
    run = root / "run"
    with Registry.open(root / "registry") as registry:
        _register(registry, repo_id="lab/five", sha=SHA_A, classes=5, license="apache-2.0")
        _register(registry, repo_id="lab/ten", sha=SHA_B, classes=10, license="apache-2.0")
        config = replace(TINY_RUN, iterations=2, val_every=1, val_episodes=2, val_q_queries=2, val_steps=1)
        meta_train(registry=registry, out_dir=run, config=config, val_data=_classes(1), progress=False)
    request = EvaluationRequest(data="glyphs", n_way=5, shots=(1,), q_queries=2, episodes=3)
    results = evaluate_models(models={str(run): load_model(model=str(run))}, data=_classes(2), request=request)
    save_evaluations(run_dir=run, evaluations=results)
    return run


def test_a_trained_and_evaluated_run_round_trips_through_a_folder_hub(real_run: Path, tmp_path: Path) -> None:
    result = push_learner(run_dir=real_run, repo_id="lab/free", hub=tmp_path / "hub")

    support, queries = _classes(3).as_float()[::4][:5], _classes(3).as_float()[1::4][:5]
    published = FewShotLearner.from_pretrained("lab/free", hub=tmp_path / "hub").adapt(support, range(5))(queries)
    original = FewShotLearner.from_pretrained(real_run).adapt(support, range(5))(queries)
    assert torch.equal(published.probabilities, original.probabilities)
    assert set(result.files) >= {"images/meta_val.png", "images/recovered.png", "model.safetensors", "config.json"}


def test_the_card_of_a_real_run_holds_its_measured_result_and_its_sources(real_run: Path, tmp_path: Path) -> None:
    result = push_learner(run_dir=real_run, repo_id="lab/free", hub=tmp_path / "hub")

    card = ModelCard(Path(result.card).read_text())
    (saved,) = json.loads((real_run / "evaluations.json").read_text())["evaluations"]
    (measured,) = card.data.eval_results
    assert (measured.metric_value, measured.metric_args["ci95"], measured.dataset_args["episodes"]) == (saved["mean"], saved["ci95"], 3)
    assert f"| lab/five | `{SHA_A}` |" in card.text and f"| lab/ten | `{SHA_B}` |" in card.text
    assert card.data.base_model == ["lab/five", "lab/ten"]


def test_evaluate_loads_a_pushed_learner_by_repo_id(real_run: Path, tmp_path: Path) -> None:
    push_learner(run_dir=real_run, repo_id="lab/free", hub=tmp_path / "hub")

    learner = load_model(model="lab/free", hub=str(tmp_path / "hub"))

    probe = _classes(4).as_float()[:10]
    assert torch.equal(learner.features(probe), load_model(model=str(real_run)).features(probe))


@pytest.mark.slow
def test_the_cards_usage_snippet_runs_as_written(real_run: Path, tmp_path: Path, capsys) -> None:
    result = push_learner(run_dir=real_run, repo_id="lab/free", hub=tmp_path / "hub")
    text = Path(result.card).read_text()
    snippet = text.split("## Use\n\n```python\n", 1)[1].split("```", 1)[0]

    exec(compile(snippet, "card-usage", "exec"), {})

    accuracy = float(capsys.readouterr().out.strip().removeprefix("tensor(").removesuffix(")"))
    assert 0.0 <= accuracy <= 1.0


@pytest.mark.slow
def test_the_cli_loop_collect_train_evaluate_push_then_evaluate_the_repo(glyph_zoo: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    shutil.copytree(glyph_zoo, tmp_path / "zoo")
    (tmp_path / "tiny.yaml").write_text(json.dumps(TINY_YAML))
    monkeypatch.chdir(tmp_path)
    steps = [
        ["collect", "--hub", "zoo", "--registry", "registry", "--json"],
        ["meta-train", "--registry", "registry", "--out", "runs/free", "--config", "tiny.yaml", "--val-data", "glyphs", "--iterations", "2", "--json"],
        ["evaluate", "--model", "runs/free", "--baseline", "random", "--shot", "1", "--episodes", "5", "--save", "--json"],
        ["push", "--model", "runs/free", "--repo", "e2e/free", "--hub", "published", "--json"],
        ["evaluate", "--model", "e2e/free", "--hub", "published", "--shot", "1", "--episodes", "5", "--json"],
    ]
    outputs = []
    for step in steps:
        with pytest.raises(SystemExit) as stop:
            main(step)
        captured = capsys.readouterr()
        assert stop.value.code == 0, (step[0], captured.err)
        outputs.append(captured.out)

    pushed = json.loads(outputs[3][outputs[3].index("{"):])
    saved = [e for e in json.loads(outputs[2][outputs[2].index("["):]) if e["model"] == "runs/free"]
    from_repo = json.loads(outputs[4][outputs[4].index("["):])
    card = ModelCard(Path(pushed["card"]).read_text())
    assert [r.metric_value for r in card.data.eval_results] == [e["mean"] for e in saved]
    assert from_repo[0]["mean"] == saved[0]["mean"]
    assert len(card.data.base_model) == 5
