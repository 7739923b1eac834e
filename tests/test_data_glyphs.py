"""The embedded glyph set: class filters, determinism, caching, splits and the `freehub data glyphs` command."""

from __future__ import annotations

import json
import shutil
import time
import unicodedata
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from freehub.cli.app import app
from freehub.data import glyph_imageset, glyph_report, load_glyphs
from freehub.errors import DataError

TINY = {"size": 16, "images_per_class": 2}


@pytest.fixture(scope="module")
def catalogue_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the class catalogue, built once for the module (the slow part)."""
    root = tmp_path_factory.mktemp("glyph-catalogue")
    glyph_report(cache_dir=root)
    return root


@pytest.fixture
def cache_dir(catalogue_dir: Path, tmp_path: Path) -> Path:
    """A fresh cache folder that already has the catalogue, so only the images get built."""
    target = tmp_path / "cache"
    target.mkdir()
    for path in catalogue_dir.glob("catalogue-*.json"):
        shutil.copy(path, target / path.name)
    return target


@pytest.fixture(scope="module")
def report(catalogue_dir: Path):
    return glyph_report(cache_dir=catalogue_dir)


@pytest.fixture(scope="module")
def built_dir(catalogue_dir: Path) -> Path:
    """The module's cache with the tiny RGB set built once: tests that only read it share it."""
    glyph_imageset(cache_dir=catalogue_dir, **TINY)
    return catalogue_dir


def test_catalogue_has_enough_alphabets_and_classes(report):
    assert len(report.alphabets) >= 12
    assert len(report.classes) >= 600
    assert len({c.name for c in report.classes}) == len(report.classes)


def test_greek_alpha_is_dropped_as_lookalike_of_latin_a(report):
    kept = {c.name for c in report.classes}
    dropped = {d.name: d for d in report.dropped}
    assert "LATIN CAPITAL LETTER A" in kept
    alpha = dropped["GREEK CAPITAL LETTER ALPHA"]
    assert alpha.reason == "lookalike"
    assert alpha.similar_to == "LATIN CAPITAL LETTER A"
    assert alpha.similarity >= report.threshold


def test_case_pair_that_only_differs_in_size_is_a_near_duplicate(report):
    dropped = {d.name: d for d in report.dropped}
    assert dropped["LATIN SMALL LETTER C"].reason == "near_duplicate"
    assert dropped["LATIN SMALL LETTER C"].similar_to == "LATIN CAPITAL LETTER C"


def test_distinct_letters_survive_the_lookalike_filter(report):
    kept = {c.name for c in report.classes}
    assert {"LATIN CAPITAL LETTER E", "LATIN CAPITAL LETTER F", "GREEK CAPITAL LETTER OMEGA"} <= kept


def test_accented_letters_are_dropped_as_diacritics(report):
    dropped = {d.name: d.reason for d in report.dropped}
    assert dropped["LATIN CAPITAL LETTER E WITH ACUTE"] == "diacritic"
    assert dropped["CYRILLIC SMALL LETTER YI"] == "diacritic"
    assert all(
        not any(unicodedata.combining(ch) for ch in unicodedata.normalize("NFKD", c.char)) for c in report.classes
    )


def test_dropped_counts_add_up(report):
    counts = report.counts_by_reason()
    assert sum(counts.values()) == len(report.dropped)
    assert {"diacritic", "lookalike", "near_duplicate"} <= set(counts)
    assert report.candidates == len(report.classes) + len(report.dropped)


def test_classes_are_only_drawn_in_faces_that_have_the_glyph(report):
    from freehub.data.fonts import dejavu_faces

    faces = {face.name: face for face in dejavu_faces()}
    assert all(c.codepoint in faces[name].codepoints for c in report.classes for name in c.faces)


def test_shapes_dtype_and_labels(built_dir, report):
    full = glyph_imageset(channels=3, cache_dir=built_dir, **TINY)
    assert full.images.shape == (len(report.classes) * 2, 3, 16, 16)
    assert full.images.dtype == torch.uint8
    assert torch.equal(full.class_counts(), torch.full((len(report.classes),), 2))
    assert full.class_groups == tuple(c.alphabet for c in report.classes)


def test_grey_images_have_one_channel(cache_dir):
    grey = glyph_imageset(channels=1, cache_dir=cache_dir, **TINY)
    assert grey.images.shape[1:] == (1, 16, 16)


def test_same_seed_gives_identical_tensors_in_a_fresh_cache(built_dir, cache_dir):
    first = glyph_imageset(cache_dir=built_dir, **TINY)
    second = glyph_imageset(cache_dir=cache_dir, **TINY)
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.labels, second.labels)


def test_different_seeds_give_different_images(built_dir, cache_dir):
    a = glyph_imageset(seed=0, cache_dir=built_dir, **TINY)
    b = glyph_imageset(seed=1, cache_dir=cache_dir, **TINY)
    assert not torch.equal(a.images, b.images)


def test_second_call_loads_the_cache_instead_of_rebuilding(built_dir):
    built = glyph_imageset(cache_dir=built_dir, **TINY)
    (cached,) = built_dir.glob("glyphs-*.safetensors")
    stamp = cached.stat().st_mtime_ns
    loaded = glyph_imageset(cache_dir=built_dir, **TINY)
    assert cached.stat().st_mtime_ns == stamp
    assert torch.equal(built.images, loaded.images)
    assert loaded.class_names == built.class_names


def test_corrupt_cache_file_is_rebuilt(built_dir, cache_dir):
    built = glyph_imageset(cache_dir=built_dir, **TINY)
    for path in built_dir.glob("glyphs-*.safetensors"):
        shutil.copy(path, cache_dir / path.name)
    (copied,) = cache_dir.glob("glyphs-*.safetensors")
    copied.write_bytes(b"not a safetensors file")
    again = glyph_imageset(cache_dir=cache_dir, **TINY)
    assert torch.equal(built.images, again.images)
    assert copied.read_bytes()[:8] != b"not a sa"


def test_no_temporary_files_are_left_in_the_cache(built_dir):
    assert list(built_dir.glob("glyphs-*.safetensors"))
    assert not [p for p in built_dir.iterdir() if p.name.endswith(".tmp")]


def test_split_by_alphabet_is_disjoint_and_covers_everything(built_dir, report):
    data = load_glyphs(cache_dir=built_dir, **TINY)
    parts = data.splits().values()
    groups = [set(part.groups) for part in parts]
    assert all(groups) and not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(part.num_classes for part in parts) == len(report.classes)
    names = [set(part.class_names) for part in parts]
    assert len(set().union(*names)) == len(report.classes)


def test_split_proportions_are_roughly_sixty_twenty_twenty(built_dir):
    stats = load_glyphs(cache_dir=built_dir, **TINY).stats()
    total = sum(s["classes"] for s in stats.values())
    assert 0.5 <= stats["train"]["classes"] / total <= 0.7
    assert 0.1 <= stats["val"]["classes"] / total <= 0.3
    assert 0.1 <= stats["test"]["classes"] / total <= 0.3


def test_bad_arguments_raise_data_error(cache_dir):
    with pytest.raises(DataError, match="channels"):
        glyph_imageset(channels=2, cache_dir=cache_dir, **TINY)
    with pytest.raises(DataError, match="size"):
        glyph_imageset(size=4, cache_dir=cache_dir)


def test_cli_prints_statistics_as_json_and_writes_a_preview(built_dir, tmp_path):
    preview = tmp_path / "grid.png"
    result = CliRunner().invoke(
        app,
        ["data", "glyphs", "--size", "16", "--images-per-class", "2", "--cache-dir", str(built_dir),
         "--preview", str(preview), "--json"],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload["splits"]) == {"train", "val", "test"}
    assert payload["classes"] == sum(s["classes"] for s in payload["splits"].values())
    assert payload["dropped"]["lookalike"] > 0
    assert preview.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_prints_a_readable_table(built_dir):
    result = CliRunner().invoke(
        app, ["data", "glyphs", "--size", "16", "--images-per-class", "2", "--cache-dir", str(built_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "train" in result.stdout and "dropped:" in result.stdout and "lookalike" in result.stdout


def test_cli_help_shows_an_example():
    result = CliRunner().invoke(app, ["data", "glyphs", "--help"])
    assert result.exit_code == 0
    assert "Example" in result.stdout


@pytest.mark.slow
def test_default_set_builds_cold_in_under_a_minute(tmp_path):
    started = time.perf_counter()
    data = load_glyphs(cache_dir=tmp_path)
    assert time.perf_counter() - started < 60
    assert all(count >= 20 for part in data.splits().values() for count in part.class_counts().tolist())
