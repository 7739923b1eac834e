"""Reading a run for publishing: evaluations.json checked field by field, the meta-val curve, the latest grids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_factory import EVALUATIONS, evaluation, make_run, write_evaluations

from freehub.errors import ConfigError
from freehub.run_files import latest_grids, read_evaluations, read_val_curve


def test_every_entry_reads_back_with_its_numbers(tmp_path: Path) -> None:
    write_evaluations(tmp_path, EVALUATIONS)

    entries = read_evaluations(run_dir=tmp_path)

    assert [(e.model, e.k_shot, e.mean, e.ci95) for e in entries] == [
        (str(tmp_path), 1, 0.4615, 0.0133), (str(tmp_path), 5, 0.6593, 0.0138), ("random", 1, 0.3678, 0.0106),
    ]
    assert entries[0].baseline == "random" and entries[0].diff_mean == 0.0937 and entries[2].diff_ci95 is None


def test_a_run_without_the_file_has_no_evaluations(tmp_path: Path) -> None:
    assert read_evaluations(run_dir=tmp_path) is None


@pytest.mark.parametrize(
    "entry",
    [
        evaluation(mean=46.15),
        evaluation(ci95=-0.1),
        evaluation(n_way=True),
        evaluation(episodes=0),
        evaluation(method="knn"),
        evaluation(split="test\n| injected | row |"),
        evaluation(diff_mean="0.09"),
        evaluation(mean=float("nan")),
        {key: value for key, value in evaluation().items() if key != "seed"},
        ["not", "an", "object"],
    ],
    ids=["percent", "negative-ci", "bool-int", "no-episodes", "method", "newline", "string-number", "nan", "missing-key", "list"],
)
def test_an_entry_that_does_not_check_out_is_refused(tmp_path: Path, entry) -> None:
    write_evaluations(tmp_path, [evaluation(), entry])

    with pytest.raises(ConfigError, match="evaluation 1"):
        read_evaluations(run_dir=tmp_path)


@pytest.mark.parametrize("document", ['{"format": 2, "evaluations": []}', '{"format": 1}', "[1, 2]", "{broken"])
def test_a_file_of_another_shape_is_refused(tmp_path: Path, document: str) -> None:
    (tmp_path / "evaluations.json").write_text(document)

    with pytest.raises(ConfigError):
        read_evaluations(run_dir=tmp_path)


def test_val_curve_keeps_measured_iterations_and_skips_broken_lines(tmp_path: Path) -> None:
    make_run(tmp_path)
    with (tmp_path / "metrics.jsonl").open("a") as handle:
        handle.write("{truncated\n" + json.dumps({"iteration": 9, "val_acc": "high"}) + "\n")

    curve = read_val_curve(run_dir=tmp_path)

    assert [(p.iteration, p.accuracy, p.ci95) for p in curve] == [(1, 0.35, 0.03), (3, 0.41, 0.03), (5, 0.38, 0.03)]


def test_val_curve_starts_with_the_score_after_prior_distillation(tmp_path: Path) -> None:
    make_run(tmp_path)
    (tmp_path / "prior_distill.json").write_text(json.dumps({"images": 4000, "val_acc": 0.52, "val_ci95": 0.02}))

    curve = read_val_curve(run_dir=tmp_path)

    assert [(p.iteration, p.accuracy) for p in curve[:2]] == [(-1, 0.52), (1, 0.35)]


def test_latest_grids_are_those_of_the_last_pictured_iteration(tmp_path: Path) -> None:
    make_run(tmp_path)
    (tmp_path / "grids" / "notes.png").write_bytes(b"not a grid")

    grids = latest_grids(run_dir=tmp_path)

    assert [(index, path.name) for index, path in grids] == [(1, "iter00005_teacher0001.png"), (2, "iter00005_teacher0002.png")]
