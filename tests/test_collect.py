"""`collect` over a small zoo of real timm and transformers teachers, from the test server and a local folder.

The zoo helpers at the top are shared with the other collect and registry test modules.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
import typer
from transformers import ResNetConfig, ResNetForImageClassification, ViTConfig, ViTForImageClassification
from typer.testing import CliRunner

from freehub.adapters import save_timm_checkpoint, save_transformers_checkpoint
from freehub.cli.collect import collect_command
from freehub.collect import collect
from freehub.hub import LocalHub, open_hub
from freehub.registry import Registry


@dataclass(frozen=True)
class Teacher:
    """One zoo member: the original network, how it expects its input, and its repo files."""

    name: str
    network: torch.nn.Module
    library: str
    input_size: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    files: dict[str, bytes]

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """The original model's logits for ``[0,1]`` images already at its input size."""
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        with torch.no_grad():
            output = self.network((images - mean) / std)
        return output.logits if self.library == "transformers" else output


def card(*, library: str, tags: tuple[str, ...] = ("few-shot",), license: str = "apache-2.0") -> bytes:
    """A model card whose YAML front matter tags the repo like the zoo does."""
    lines = ["---", f"license: {license}", f"library_name: {library}", "pipeline_tag: image-classification", "tags:"]
    lines += [f"- {tag}" for tag in tags]
    return ("\n".join([*lines, "---", "", "# A tiny teacher", ""])).encode()


def _folder_files(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir()) if path.is_file()}


def build_zoo(folder: Path) -> dict[str, Teacher]:
    """Four tiny teachers: timm 5-way, timm 10-way, transformers ResNet 5-way, transformers ViT with generic labels."""
    torch.manual_seed(0)
    teachers = {}

    def _timm(name: str, arch: str, labels: list[str], **kwargs: object) -> None:
        network = timm.create_model(arch, num_classes=len(labels), **kwargs).eval()
        target = save_timm_checkpoint(
            model=network, folder=folder / name, label_names=labels, input_size=(3, 32, 32),
            mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), interpolation="bilinear",
            model_args=dict(kwargs),
        )
        files = {**_folder_files(target), "README.md": card(library="timm")}
        teachers[name] = Teacher(name, network, "timm", (3, 32, 32), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), files)

    def _transformers(name: str, network: torch.nn.Module, labels: list[str], size: int) -> None:
        network.eval()
        target = save_transformers_checkpoint(
            model=network, folder=folder / name, label_names=labels, image_size=(size, size),
            mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        )
        files = {**_folder_files(target), "README.md": card(library="transformers")}
        teachers[name] = Teacher(name, network, "transformers", (3, size, size), (0.5,) * 3, (0.5,) * 3, files)

    _timm("cats", "test_efficientnet", ["tabby cat", "siamese", "persian", "sphynx", "bengal"])
    _timm("digits", "test_resnet", [f"digit {i}" for i in range(10)])
    resnet = ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=5))
    _transformers("birds", resnet, ["robin", "wren", "heron", "gull", "owl"], 24)
    vit = ViTForImageClassification(
        ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=32, num_labels=5)
    )
    _transformers("generic", vit, [f"LABEL_{i}" for i in range(5)], 32)
    return teachers


def publish_to_server(server, *, org: str, teachers: dict[str, Teacher]) -> dict[str, str]:
    """Commit every teacher to ``server`` as ``org/<name>``; returns repo id -> commit sha."""
    return {f"{org}/{name}": server.add_repo(f"{org}/{name}", files=t.files) for name, t in teachers.items()}


def publish_to_folder(root: Path, *, org: str, teachers: dict[str, Teacher]) -> None:
    """Lay every teacher out as ``root/org/<name>/`` (a local folder hub)."""
    for name, teacher in teachers.items():
        write_repo(root / org / name, teacher.files)


def write_repo(folder: Path, files: dict[str, bytes]) -> None:
    """Write a repo's files into a local-hub folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)


def _run(hub, registry: Registry, **kwargs):
    return collect(hub=hub, registry=registry, tags=("few-shot",), progress=False, workers=2, **kwargs)


def test_collect_by_tag_registers_the_whole_zoo_from_the_test_server(zoo, hub_server, hub_org, tmp_path) -> None:
    heads = publish_to_server(hub_server, org=hub_org, teachers=zoo)
    hub_server.add_repo(f"{hub_org}/untagged", files={**zoo["cats"].files, "README.md": card(library="timm", tags=("other",))})
    registry = Registry.open(tmp_path / "registry")
    report = _run(open_hub(hub_server.url), registry, author=hub_org)
    assert sorted(r.repo_id for r in report.collected) == sorted(heads)
    assert report.skipped == [] and report.already_present == []
    for record in registry.list():
        assert record.sha == heads[record.repo_id]
        assert "few-shot" in record.tags and record.license == "apache-2.0"
        assert set(record.files) >= {"config.json", "model.safetensors", "README.md"}
    # Every file download was pinned to the commit the crawl resolved.
    downloads = [r.path for r in hub_server.requests_to("/resolve/") if r.path.startswith(f"/{hub_org}/")]
    assert downloads and all(f"/resolve/{heads[p.split('/resolve/')[0].strip('/')]}/" in p for p in downloads)


def test_collect_records_what_each_model_is(zoo, hub_server, hub_org, tmp_path) -> None:
    publish_to_server(hub_server, org=hub_org, teachers=zoo)
    registry = Registry.open(tmp_path)
    _run(open_hub(hub_server.url), registry, author=hub_org)
    records = {record.repo_id.split("/")[1]: record for record in registry.list()}
    assert (records["cats"].library, records["cats"].architecture, records["cats"].num_classes) == ("timm", "test_efficientnet", 5)
    assert records["cats"].label_keys[0] == "tabby_cat" and records["cats"].input_size == (3, 32, 32)
    assert records["digits"].num_classes == 10
    assert records["birds"].library == "transformers" and records["birds"].input_size == (3, 24, 24)
    assert records["birds"].head_names and records["birds"].feature_dim == 16
    assert records["generic"].label_keys == (None,) * 5
    assert all(record.param_count and record.param_count > 0 for record in records.values())
    files = records["cats"].files
    assert files["model.safetensors"] == hashlib.sha256(zoo["cats"].files["model.safetensors"]).hexdigest()


def test_collect_from_a_local_folder_hub(zoo, tmp_path) -> None:
    publish_to_folder(tmp_path / "hub", org="local", teachers=zoo)
    registry = Registry.open(tmp_path / "registry")
    report = _run(LocalHub(root=tmp_path / "hub"), registry)
    assert sorted(r.repo_id for r in report.collected) == sorted(f"local/{name}" for name in zoo)
    assert report.skipped == []


def test_library_filter_narrows_the_crawl(zoo, tmp_path) -> None:
    publish_to_folder(tmp_path / "hub", org="local", teachers=zoo)
    report = _run(LocalHub(root=tmp_path / "hub"), Registry.open(tmp_path / "registry"), library="transformers")
    assert sorted(r.repo_id for r in report.collected) == ["local/birds", "local/generic"]


def test_a_second_run_collects_nothing_and_downloads_nothing(zoo, hub_server, hub_org, tmp_path) -> None:
    publish_to_server(hub_server, org=hub_org, teachers=zoo)
    registry = Registry.open(tmp_path)
    hub = open_hub(hub_server.url)
    first = _run(hub, registry, author=hub_org)
    before = [(r.id, r.collected_at) for r in registry.list(all_versions=True)]
    seen = len(hub_server.requests_to(f"/{hub_org}/"))
    second = _run(hub, registry, author=hub_org)
    assert second.collected == [] and second.skipped == []
    assert sorted(r.id for r in second.already_present) == sorted(r.id for r in first.collected)
    assert [(r.id, r.collected_at) for r in registry.list(all_versions=True)] == before
    # The search hits name their commits: nothing more is asked about known revisions.
    assert hub_server.requests_to(f"/{hub_org}/")[seen:] == []


def test_a_new_commit_gets_a_new_version(zoo, hub_server, hub_org, tmp_path) -> None:
    publish_to_server(hub_server, org=hub_org, teachers={"cats": zoo["cats"]})
    registry = Registry.open(tmp_path)
    hub = open_hub(hub_server.url)
    first = _run(hub, registry, author=hub_org).collected[0]
    new_sha = hub_server.add_repo(f"{hub_org}/cats", files={"README.md": card(library="timm") + b"\nRetrained.\n"})
    second = _run(hub, registry, author=hub_org).collected[0]
    assert (second.sha, second.version, second.status) == (new_sha, 2, "current")
    assert registry.get(first.id).status == "superseded"
    assert [r.id for r in registry.list()] == [second.id]


def test_a_busy_server_is_waited_for(zoo, hub_server, hub_org, tmp_path) -> None:
    publish_to_server(hub_server, org=hub_org, teachers={"cats": zoo["cats"]})
    hub_server.fail_next(path_prefix=f"/api/models/{hub_org}/cats", count=2, status=429, retry_after=0)
    report = _run(open_hub(hub_server.url), Registry.open(tmp_path), author=hub_org)
    assert [r.repo_id for r in report.collected] == [f"{hub_org}/cats"]
    # Two refused listings, then the listing that was served and the one the pinned download checks against.
    assert len(hub_server.requests_to(f"/api/models/{hub_org}/cats")) == 2 + 2


def test_report_summary_counts_by_reason(zoo, tmp_path) -> None:
    publish_to_folder(tmp_path / "hub", org="local", teachers={"cats": zoo["cats"]})
    write_repo(tmp_path / "hub" / "local" / "pickled", {"pytorch_model.bin": b"x", "README.md": card(library="timm")})
    report = _run(LocalHub(root=tmp_path / "hub"), Registry.open(tmp_path / "registry"))
    assert report.skipped_by_reason() == {"pickle_only": ["local/pickled"]}
    assert report.summary().splitlines() == ["collected 1, already present 0, skipped 1", "  skipped (pickle_only): local/pickled"]
    assert json.loads(json.dumps(report.to_dict()))["skipped"][0]["reason"] == "pickle_only"


def test_cli_collect_prints_a_json_report(zoo, tmp_path) -> None:
    publish_to_folder(tmp_path / "hub", org="local", teachers={"birds": zoo["birds"]})
    app = typer.Typer()
    app.command()(collect_command)
    args = ["--tag", "few-shot", "--hub", str(tmp_path / "hub"), "--registry", str(tmp_path / "reg"), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert [r["repo_id"] for r in json.loads(result.output)["collected"]] == ["local/birds"]
    again = CliRunner().invoke(app, args[:-1])
    assert again.stdout.strip() == "collected 0, already present 1, skipped 0"


def test_collect_leaves_no_staging_behind(zoo, tmp_path) -> None:
    publish_to_folder(tmp_path / "hub", org="local", teachers={"cats": zoo["cats"]})
    shutil.copytree(tmp_path / "hub" / "local" / "cats", tmp_path / "hub" / "local" / "broken")
    (tmp_path / "hub" / "local" / "broken" / "model.safetensors").write_bytes(b"not safetensors")
    report = _run(LocalHub(root=tmp_path / "hub"), Registry.open(tmp_path / "registry"))
    assert [s.reason for s in report.skipped] == ["corrupt_weights"]
    assert list((tmp_path / "registry" / "staging").iterdir()) == []
    assert [p.name for p in (tmp_path / "registry" / "models").iterdir()] == [report.collected[0].id]


def test_collect_reads_the_search_only_a_few_hits_ahead_of_the_work_done(zoo, tmp_path) -> None:
    for org in ("lab-a", "lab-b", "lab-c", "lab-d"):
        publish_to_folder(tmp_path / "hub", org=org, teachers=zoo)
    registry = Registry.open(tmp_path / "registry")
    ahead: list[int] = []

    class WatchedHub(LocalHub):
        def search(self, **kwargs):
            for pulled, hit in enumerate(super().search(**kwargs)):
                ahead.append(pulled - len(registry.list()) - len(registry.skipped()))
                yield hit

    report = _run(WatchedHub(root=tmp_path / "hub"), registry)

    assert len(report.collected) + len(report.skipped) == len(ahead) == 4 * len(zoo)
    # Two workers, two queued hits each: the listing never runs further ahead, however long it is.
    assert max(ahead) < 4
