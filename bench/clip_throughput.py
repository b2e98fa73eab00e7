"""Clip dataset throughput: clips/s of 4 frames at 64 px from a 200 x 100-step file
(target >= 5,000 clips/s), for batched reads (how training uses it) and single items.

    python bench/clip_throughput.py
"""

import tempfile
import time
from pathlib import Path

import numpy as np
from common import save

from lewm.data.clips import ClipDataset, EpisodeData, batch_indices, fit_stats, split_episodes
from lewm.data.collect import CollectConfig, collect


def rate(fn, n_clips, seconds=3.0):
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        done += fn()
    return done / (time.perf_counter() - start)


with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "bench.h5"
    collect(CollectConfig(episodes=200, steps=100, size=64), path, progress=False)
    t0 = time.perf_counter()
    data = EpisodeData(path, columns=("state",))
    load_s = time.perf_counter() - t0
    train, val = split_episodes(data.num_episodes, 0.1, seed=0)
    ds = ClipDataset(data, train, clip_frames=4, frameskip=5, stats=fit_stats(data, train))
    step = iter(range(10**9))

    def batched():
        ds.batch(batch_indices(len(ds), 128, 0, next(step)))
        return 128

    rng = np.random.default_rng(0)

    def single():
        ds[int(rng.integers(len(ds)))]
        return 1

    batched_rate = rate(batched, 128)
    single_rate = rate(single, 1)
    lazy = ClipDataset(EpisodeData(path, in_memory=False), train, 4, 5, fit_stats(data, train))

    def lazy_batched():
        lazy.batch(batch_indices(len(lazy), 128, 0, next(step)))
        return 128

    lazy_rate = rate(lazy_batched, 128)

save("clip_throughput_64px", {
    "file": "200 episodes x 100 steps, 64 px Two-Room", "clip": "4 frames every 5 steps",
    "clips": len(ds), "load_seconds": round(load_s, 2),
    "batched_clips_per_s": round(batched_rate), "single_item_clips_per_s": round(single_rate),
    "lazy_from_disk_batched_clips_per_s": round(lazy_rate), "target_clips_per_s": 5000,
})
