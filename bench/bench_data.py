"""Benchmark of the data layer: cold glyph-set build, cache load and episode sampling rate.

Run: .venv/bin/python bench/bench_data.py   (builds into a throw-away cache folder)
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from freehub.data import EpisodeSampler, glyph_report, load_glyphs

EPISODES = 2000


def _timed(action):
    wall, cpu = time.perf_counter(), time.process_time()
    result = action()
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="freehub-bench-") as folder:
        cache = Path(folder)
        data, cold_wall, cold_cpu = _timed(lambda: load_glyphs(cache_dir=cache))
        _, warm_wall, warm_cpu = _timed(lambda: load_glyphs(cache_dir=cache))
        report = glyph_report(cache_dir=cache)

    rows = [
        ("glyph set, cold build (default: 32x32 RGB, 20/class)", f"{cold_wall:.1f} s", f"{cold_cpu:.1f} s"),
        ("glyph set, load from cache", f"{warm_wall:.2f} s", f"{warm_cpu:.2f} s"),
    ]
    # Episodes are small tensors: on a busy machine intra-op threads cost more than they give, so
    # the rate is measured both with torch's default thread count and with one thread.
    default_threads = torch.get_num_threads()
    for threads in dict.fromkeys((default_threads, 1)):
        torch.set_num_threads(threads)
        for shots in (1, 5):
            sampler = EpisodeSampler(data.test, n_way=5, k_shot=shots, q_queries=15, seed=0)
            _, wall, cpu = _timed(lambda: sampler.take(EPISODES))
            name = f"5-way {shots}-shot 15-query episodes, {threads} thread(s)"
            rows.append((name, f"{EPISODES / wall:.0f} /s", f"{EPISODES / cpu:.0f} /s"))
    torch.set_num_threads(default_threads)

    width = max(len(r[0]) for r in rows)
    print(f"| {'measure':{width}s} | {'wall':>10s} | {'per CPU s':>10s} |")
    print(f"|{'-' * (width + 2)}|{'-' * 12}|{'-' * 12}|")
    for name, wall, cpu in rows:
        print(f"| {name:{width}s} | {wall:>10s} | {cpu:>10s} |")
    print()
    print(f"alphabets: {len(report.alphabets)}, classes: {len(report.classes)} of {report.candidates} candidates")
    for name, stats in data.stats().items():
        print(f"  {name:5s} {stats['groups']:2d} alphabets {stats['classes']:5d} classes {stats['images']:6d} images")
    dropped = ", ".join(f"{reason} {count}" for reason, count in sorted(report.counts_by_reason().items()))
    print(f"dropped: {dropped}")
    print(f"look-alike threshold {report.threshold}; median same-letter Sans/Sans Mono: {report.face_agreement}")


if __name__ == "__main__":
    main()
