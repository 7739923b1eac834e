"""Hostile and broken repos served by the test server: each is skipped with its reason, the crawl goes on,
and nothing half-written reaches the registry."""

from __future__ import annotations

import _thread
import errno
import hashlib
import io
import json
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from freehub.collect import collect
from freehub.errors import CrawlAbortedError
from freehub.hub import RemoteHub, RetryPolicy, open_hub
from freehub.limits import Limits, Timeouts
from freehub.registry import Registry
from hub_server import HubServer
from test_hub import READ_TOKEN


class _Marker:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def cats(zoo) -> dict[str, bytes]:
    return dict(zoo["cats"].files)


def _crawl(hub_server, org: str, tmp_path: Path, valid: dict[str, bytes], hostile: dict[str, bytes], *,
           gated: bool = False, tags: tuple[str, ...] = ("few-shot",), **options):
    """Serve one valid and one hostile repo under ``org``, collect them, check the registry holds only the valid one."""
    hub_server.add_repo(f"{org}/valid", files=valid)
    hub_server.add_repo(f"{org}/hostile", files=hostile, gated=gated)
    registry = Registry.open(tmp_path / "registry")
    report = collect(hub=open_hub(hub_server.url), registry=registry, tags=tags, author=org, progress=False, **options)
    assert [r.repo_id for r in report.collected] == [f"{org}/valid"]
    assert [r.repo_id for r in registry.list(all_versions=True)] == [f"{org}/valid"]
    assert [p.name for p in (tmp_path / "registry" / "models").iterdir()] == [report.collected[0].id]
    assert list((tmp_path / "registry" / "staging").iterdir()) == []
    assert [s.repo_id for s in report.skipped] == [f"{org}/hostile"]
    assert registry.skipped() == report.skipped
    return report.skipped[0]


def _downloads(hub_server, repo_id: str) -> list[str]:
    return [r.path for r in hub_server.requests_to(f"/{repo_id}/resolve/")]


def _tensors(files: dict[str, bytes]) -> dict[str, torch.Tensor]:
    return load_safetensors(files["model.safetensors"])


def test_pickle_only_weights_are_skipped_before_download(cats, hub_server, hub_org, tmp_path) -> None:
    marker = tmp_path / "unpickled"
    hostile = {"config.json": cats["config.json"], "pytorch_model.bin": pickle.dumps(_Marker(str(marker))), "README.md": cats["README.md"]}
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile)
    assert skip.reason == "pickle_only"
    assert _downloads(hub_server, f"{hub_org}/hostile") == []
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_allow_pickle_never_executes_a_pickle(cats, hub_server, hub_org, tmp_path) -> None:
    marker = tmp_path / "unpickled"
    hostile = {"config.json": cats["config.json"], "pytorch_model.bin": pickle.dumps(_Marker(str(marker))), "README.md": cats["README.md"]}
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile, allow_pickle=True)
    assert skip.reason == "unsafe_pickle"
    assert not marker.exists()


def test_allow_pickle_loads_plain_tensor_pickles(zoo, cats, hub_server, hub_org, tmp_path) -> None:
    buffer = io.BytesIO()
    torch.save(_tensors(cats), buffer)
    hub_server.add_repo(f"{hub_org}/pickled", files={"config.json": cats["config.json"], "pytorch_model.bin": buffer.getvalue(), "README.md": cats["README.md"]})
    registry = Registry.open(tmp_path)
    report = collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, allow_pickle=True, progress=False)
    [record] = report.collected
    assert record.pickled and set(record.files) == {"config.json", "pytorch_model.bin", "README.md"}
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(registry.load(record.id)(images), zoo["cats"].logits(images), atol=1e-5)


def test_truncated_safetensors_are_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    weights = cats["model.safetensors"]
    skip = _crawl(hub_server, hub_org, tmp_path, cats, {**cats, "model.safetensors": weights[: len(weights) // 2]})
    assert skip.reason == "corrupt_weights"


def test_bytes_that_differ_from_the_listed_hash_are_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    listed = cats["model.safetensors"] + b" "
    hub_server.add_repo(f"{hub_org}/tampered", files={**cats, "model.safetensors": listed})
    # The server now serves other bytes of the same size than the sha256 its listing announces.
    (hub_server.root / "blobs" / hashlib.sha256(listed).hexdigest()).write_bytes(cats["model.safetensors"] + b"!")
    registry = Registry.open(tmp_path)
    report = collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, progress=False)
    assert [(s.repo_id, s.reason) for s in report.skipped] == [(f"{hub_org}/tampered", "checksum_mismatch")]
    assert registry.list(all_versions=True) == [] and list((tmp_path / "models").iterdir()) == []


def test_weights_that_do_not_fit_the_config_are_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    tensors = _tensors(cats)
    name = next(key for key, value in tensors.items() if value.dim() == 2)
    tensors[name] = torch.zeros(7, tensors[name].shape[1])
    skip = _crawl(hub_server, hub_org, tmp_path, cats, {**cats, "model.safetensors": save_safetensors(tensors)})
    assert skip.reason == "shape_mismatch"


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_skipped(cats, hub_server, hub_org, tmp_path, value) -> None:
    tensors = _tensors(cats)
    first = next(name for name, tensor in tensors.items() if tensor.is_floating_point())
    tensors[first] = tensors[first].clone()
    tensors[first].view(-1)[0] = value
    skip = _crawl(hub_server, hub_org, tmp_path, cats, {**cats, "model.safetensors": save_safetensors(tensors)})
    assert skip.reason == "non_finite"


@pytest.mark.parametrize("config", [None, b"{not json", b"[1, 2]"])
def test_a_missing_or_invalid_config_is_skipped(cats, hub_server, hub_org, tmp_path, config) -> None:
    hostile = {key: value for key, value in cats.items() if key != "config.json"}
    if config is not None:
        hostile["config.json"] = config
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile)
    assert skip.reason == "bad_config"


def test_an_unbuildable_architecture_is_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    config = json.loads(cats["config.json"])
    config["architecture"] = "no_such_network_anywhere"
    skip = _crawl(hub_server, hub_org, tmp_path, cats, {**cats, "config.json": json.dumps(config).encode()})
    assert skip.reason == "unknown_architecture"


def test_remote_code_is_skipped(zoo, cats, hub_server, hub_org, tmp_path) -> None:
    birds = dict(zoo["birds"].files)
    config = json.loads(birds["config.json"])
    config["auto_map"] = {"AutoModelForImageClassification": "modeling_evil.EvilModel"}
    birds["config.json"] = json.dumps(config).encode()
    birds["modeling_evil.py"] = b"raise SystemExit('remote code ran')\n"
    skip = _crawl(hub_server, hub_org, tmp_path, cats, birds)
    assert skip.reason == "remote_code"
    assert not any(path.endswith("modeling_evil.py") for path in _downloads(hub_server, f"{hub_org}/hostile"))


def test_an_oversized_file_is_skipped_before_download(cats, hub_server, hub_org, tmp_path) -> None:
    limit = len(cats["model.safetensors"]) + 10
    hostile = {**cats, "model.safetensors": b"\0" * (limit + 1)}
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile, limits=Limits(max_file_bytes=limit))
    assert skip.reason == "too_large"
    assert _downloads(hub_server, f"{hub_org}/hostile") == []


def test_too_many_files_are_skipped_before_download(cats, hub_server, hub_org, tmp_path) -> None:
    hostile = {**cats, **{f"extra/{i}.txt": b"x" for i in range(8)}}
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile, limits=Limits(max_files=len(cats) + 2))
    assert skip.reason == "too_many_files"
    assert _downloads(hub_server, f"{hub_org}/hostile") == []


@pytest.mark.parametrize("name", ["../escape.json", "/etc/evil.json", "sub/../../up.json", "C:/evil.json"])
def test_unsafe_file_names_are_skipped_before_download(cats, hub_server, hub_org, tmp_path, name) -> None:
    skip = _crawl(hub_server, hub_org, tmp_path, cats, {**cats, name: b"{}"})
    assert skip.reason == "unsafe_path"
    assert _downloads(hub_server, f"{hub_org}/hostile") == []


def test_a_malformed_card_is_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    hostile = {**cats, "README.md": b"---\ntags: [few-shot\nlicense: mit\n---\n# broken\n"}
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile, tags=())
    assert skip.reason == "bad_card"


def test_no_weights_at_all_is_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    hostile = {key: value for key, value in cats.items() if key != "model.safetensors"}
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile)
    assert skip.reason == "no_weights"


def test_a_gated_repo_is_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    skip = _crawl(hub_server, hub_org, tmp_path, cats, cats, gated=True)
    assert skip.reason == "gated"


def test_an_unauthorised_repo_is_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    hub_server.fail_next(path_prefix=f"/api/models/{hub_org}/hostile", status=401)
    skip = _crawl(hub_server, hub_org, tmp_path, cats, cats)
    assert skip.reason == "access_denied"


def test_a_permanent_skip_is_not_downloaded_again_unless_asked(cats, hub_server, hub_org, tmp_path) -> None:
    weights = cats["model.safetensors"]
    _crawl(hub_server, hub_org, tmp_path, cats, {**cats, "model.safetensors": weights[:100]})
    registry = Registry.open(tmp_path / "registry")
    hub = open_hub(hub_server.url)
    seen = len(_downloads(hub_server, f"{hub_org}/hostile"))
    again = collect(hub=hub, registry=registry, author=hub_org, progress=False)
    assert [s.reason for s in again.skipped] == ["corrupt_weights"]
    assert len(_downloads(hub_server, f"{hub_org}/hostile")) == seen
    collect(hub=hub, registry=registry, author=hub_org, progress=False, retry_skipped=True)
    assert len(_downloads(hub_server, f"{hub_org}/hostile")) > seen


def test_an_allowed_retry_registers_a_repo_skipped_for_pickles(zoo, cats, hub_server, hub_org, tmp_path) -> None:
    buffer = io.BytesIO()
    torch.save(_tensors(cats), buffer)
    pickled = {"config.json": cats["config.json"], "pytorch_model.bin": buffer.getvalue(), "README.md": cats["README.md"]}
    skip = _crawl(hub_server, hub_org, tmp_path, cats, pickled)
    assert skip.reason == "pickle_only"
    registry = Registry.open(tmp_path / "registry")
    report = collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, allow_pickle=True, progress=False)
    assert [r.repo_id for r in report.collected] == [f"{hub_org}/hostile"]
    assert registry.skipped() == []


# --- bounds and integrity: every file checked, every size and wait bounded -----------------------------


def _tampered(data: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and old in data
    return data.replace(old, new, 1)


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "README.md"])
def test_a_same_size_edit_of_any_file_is_skipped(cats, hub_server, hub_org, tmp_path, name) -> None:
    # Blobs are stored by content: bytes no other test serves, so that the edit reaches this repo only.
    listed = dict(cats)
    listed["config.json"] = json.dumps({**json.loads(cats["config.json"]), "note": hub_org}).encode()
    listed["README.md"] = cats["README.md"] + f"\nServed to {hub_org}.\n".encode()
    listed["model.safetensors"] = cats["model.safetensors"] + hub_org.encode()
    hub_server.add_repo(f"{hub_org}/tampered", files=listed)
    edits = {"config.json": (b"tabby cat", b"tabby dog"), "README.md": (b"Served", b"served"),
             "model.safetensors": (hub_org.encode()[:1], b"!")}
    old, new = edits[name]
    data = listed[name]
    served = data[: -len(hub_org)] + _tampered(data[-len(hub_org):], old, new) if name == "model.safetensors" \
        else _tampered(data, old, new)
    hub_server.blob_path(f"{hub_org}/tampered", name).write_bytes(served)
    registry = Registry.open(tmp_path)
    report = collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, progress=False)
    assert [(s.repo_id, s.reason) for s in report.skipped] == [(f"{hub_org}/tampered", "checksum_mismatch")]
    assert registry.list(all_versions=True) == [] and list((tmp_path / "models").iterdir()) == []


def test_a_yaml_alias_bomb_in_the_card_is_skipped_at_once(cats, hub_server, hub_org, tmp_path) -> None:
    lines = ["---", "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb = ("\n".join([*lines, "tags: *a9", "---", "# boom", ""])).encode()
    start = time.monotonic()
    skip = _crawl(hub_server, hub_org, tmp_path, cats, {**cats, "README.md": bomb}, tags=())
    assert skip.reason == "bad_card" and "aliases" in skip.message
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("field", ["license", "tags", "library_name"])
def test_a_card_with_a_non_string_where_a_string_belongs_is_skipped(cats, hub_server, hub_org, tmp_path, field) -> None:
    card = f"---\n{field}:\n  - nested: [1, 2]\n---\n# odd\n".encode()
    skip = _crawl(hub_server, hub_org, tmp_path, cats, {**cats, "README.md": card}, tags=())
    assert skip.reason == "bad_card" and field in skip.message


@pytest.mark.parametrize("name, limits", [
    ("README.md", Limits(max_card_bytes=4096)),
    ("config.json", Limits(max_json_bytes=4096)),
])
def test_a_huge_card_or_config_is_skipped_before_download(cats, hub_server, hub_org, tmp_path, name, limits) -> None:
    padding = b" " * 5000
    hostile = {**cats, name: cats[name] + padding if name == "README.md" else cats[name][:-1] + padding + b"}"}
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile, tags=(), limits=limits)
    assert skip.reason == "too_large" and name in skip.message
    assert _downloads(hub_server, f"{hub_org}/hostile") == []


def test_a_repo_over_the_repo_limit_is_skipped_before_download(cats, hub_server, hub_org, tmp_path) -> None:
    hostile = {**cats, "model.safetensors": cats["model.safetensors"] + b" " * 4096}
    limits = Limits(max_repo_bytes=sum(len(data) for data in cats.values()) + 100)
    skip = _crawl(hub_server, hub_org, tmp_path, cats, hostile, limits=limits)
    assert skip.reason == "too_large" and "files to download" in skip.message
    assert _downloads(hub_server, f"{hub_org}/hostile") == []


def test_a_body_larger_than_listed_is_cut_off_and_skipped(cats, hub_server, hub_org, tmp_path) -> None:
    hub_server.misbehave_next(path_prefix=f"/{hub_org}/hostile/resolve/", kind="oversize", value=50_000_000, count=9)
    skip = _crawl(hub_server, hub_org, tmp_path, cats, cats)
    assert skip.reason == "checksum_mismatch" and "more than" in skip.message


def test_a_malformed_listing_is_recorded_and_the_crawl_goes_on(cats, hub_server, hub_org, tmp_path) -> None:
    hub_server.misbehave_next(path_prefix=f"/api/models/{hub_org}/hostile", kind="oversize", value=3)
    skip = _crawl(hub_server, hub_org, tmp_path, cats, cats)
    assert skip.reason == "hub_error" and "not JSON" in skip.message


def test_an_id_freehub_refuses_is_recorded_and_the_crawl_goes_on(cats, hub_server, hub_org, tmp_path) -> None:
    hub_server.add_repo(f"{hub_org}/valid", files=cats)
    hub_server.add_repo(f"{hub_org}/café", files=cats)
    registry = Registry.open(tmp_path)
    report = collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, progress=False)
    assert [r.repo_id for r in report.collected] == [f"{hub_org}/valid"]
    assert [(s.repo_id, s.reason) for s in registry.skipped()] == [(f"{hub_org}/café", "invalid_repo")]


def test_a_hub_that_stops_answering_ends_the_crawl_in_bounded_time(cats, hub_server, hub_org, tmp_path) -> None:
    for index in range(6):
        hub_server.add_repo(f"{hub_org}/m{index}", files=cats)
    hub_server.misbehave_next(path_prefix=f"/api/models/{hub_org}/", kind="silent", count=100)
    hub = RemoteHub(endpoint=hub_server.url, retry=RetryPolicy(max_retries=0), timeouts=Timeouts(read_s=0.2))
    registry = Registry.open(tmp_path)
    start = time.monotonic()
    with pytest.raises(CrawlAbortedError, match="stopped answering"):
        collect(hub=hub, registry=registry, author=hub_org, workers=1, progress=False)
    assert time.monotonic() - start < 5
    assert list((tmp_path / "staging").iterdir()) == []


def test_a_full_disk_stops_the_crawl_without_blaming_the_repo(cats, hub_server, hub_org, tmp_path, monkeypatch) -> None:
    hub_server.add_repo(f"{hub_org}/good", files=cats)

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    registry = Registry.open(tmp_path)
    monkeypatch.setattr("freehub.registry.atomic_write_text", disk_full)
    with pytest.raises(CrawlAbortedError, match="disk full"):
        collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, progress=False)
    assert registry.skipped() == [] and registry.list(all_versions=True) == []
    assert list((tmp_path / "staging").iterdir()) == []


def test_running_out_of_memory_stops_the_crawl_without_blaming_the_repo(cats, hub_server, hub_org, tmp_path,
                                                                         monkeypatch) -> None:
    hub_server.add_repo(f"{hub_org}/good", files=cats)

    def out_of_memory(**kwargs: object) -> None:
        raise MemoryError

    monkeypatch.setattr("freehub.collect.load_task_model", out_of_memory)
    registry = Registry.open(tmp_path)
    with pytest.raises(CrawlAbortedError, match="out of memory"):
        collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, progress=False)
    assert registry.skipped() == []


def test_a_crawl_of_a_hub_that_misbehaves_every_way_ends_bounded_and_keeps_the_token_home(
    zoo, cats, hub_server, hub_org, tmp_path
) -> None:
    mirror = HubServer(root=hub_server.root).start()
    try:
        hub_server.add_repo(f"{hub_org}/valid", files=cats)
        hub_server.add_repo(f"{hub_org}/redirected", files=dict(zoo["birds"].files))
        hub_server.misbehave_next(path_prefix=f"/{hub_org}/redirected/resolve/", kind="redirect", value=mirror.url,
                                  count=9)
        bomb = b"---\na: &a [x, x, x, x]\nb: &b [*a, *a, *a, *a]\ntags: *b\n---\n"
        hostile = {
            "bomb": {**cats, "README.md": bomb},
            "huge-config": {**cats, "config.json": b"{" + b" " * 10_000_000 + b"}"},
            "oversize": {**cats, "model.safetensors": cats["model.safetensors"] + hub_org.encode()},
            "trickle": {**cats, "model.safetensors": cats["model.safetensors"] + b"trickle" + hub_org.encode()},
            "silent": cats,
            "config-bomb": {**cats, "config.json": json.dumps({**json.loads(cats["config.json"]),
                                                              "num_classes": 3_000_000_000}).encode()},
        }
        for name, files in hostile.items():
            hub_server.add_repo(f"{hub_org}/{name}", files=files)
        hub_server.misbehave_next(path_prefix=f"/{hub_org}/oversize/resolve/", kind="oversize", value=10**8, count=9)
        hub_server.misbehave_next(path_prefix=f"/{hub_org}/trickle/resolve/", kind="slow", value=0.05, count=9)
        hub_server.misbehave_next(path_prefix=f"/api/models/{hub_org}/silent", kind="silent", count=9)
        hub = RemoteHub(endpoint=hub_server.url, token=READ_TOKEN, retry=RetryPolicy(max_retries=1, base_wait_s=0.01),
                        timeouts=Timeouts(read_s=1.0, request_s=4, download_s=1))
        registry = Registry.open(tmp_path)
        start = time.monotonic()
        report = collect(hub=hub, registry=registry, tags=(), author=hub_org, progress=False)
        assert time.monotonic() - start < 20
        assert [r.repo_id for r in report.collected] == [f"{hub_org}/redirected", f"{hub_org}/valid"]
        assert {s.repo_id.split("/")[1]: s.reason for s in report.skipped} == {
            "bomb": "bad_card", "huge-config": "too_large", "oversize": "checksum_mismatch",
            "trickle": "too_large", "silent": "unreachable", "config-bomb": "bad_config"}
        assert mirror.requests_to("/resolve/") and not any(r.token_seen for r in mirror.requests)
    finally:
        mirror.stop()


def test_ctrl_c_cancels_the_queued_repos_and_leaves_a_consistent_registry(cats, hub_server, hub_org, tmp_path) -> None:
    for index in range(12):
        hub_server.add_repo(f"{hub_org}/m{index:02d}", files=cats)
    # Every download trickles: waiting for the queue to drain would take hours.
    hub_server.misbehave_next(path_prefix=f"/{hub_org}/", kind="slow", value=0.02, count=100)
    registry = Registry.open(tmp_path)

    def downloads() -> list[str]:
        return [r.path for r in hub_server.requests_to(f"/{hub_org}/") if r.path.startswith(f"/{hub_org}/")]

    def interrupt_once_downloading() -> None:
        while not downloads():
            time.sleep(0.01)
        _thread.interrupt_main()

    # interrupt_main() does nothing while SIGINT is ignored, as it is in a process started in the
    # background by a non-interactive shell (`make test &`, a CI runner): the test would then wait on a
    # trickling download for hours. Python's own handler is installed for the test's duration.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Thread(target=interrupt_once_downloading, daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            collect(hub=open_hub(hub_server.url), registry=registry, author=hub_org, workers=2, progress=False)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert time.monotonic() - start < 5
    assert registry.list(all_versions=True) == [] and registry.skipped() == []
    assert list((tmp_path / "staging").iterdir()) == []
    # The two repos in flight stopped at their first file; the ten queued ones were never asked for.
    assert len(downloads()) <= 2
    assert len({r.path.split("/")[4] for r in hub_server.requests_to(f"/api/models/{hub_org}/")}) <= 4
