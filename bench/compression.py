"""Episode-file compression at 224 px: file size and training-read throughput from disk, for
each `lewm collect --compression` (the authors' datasets use Blosc lz4; an uncompressed
paper-size Push-T set is ~600 GB).

    python bench/compression.py [--world pusht] [--episodes 20] [--steps 100]
"""

import argparse
import tempfile
import time
from pathlib import Path

from common import save

from lewm.data.clips import ClipDataset, EpisodeData, batch_indices, fit_stats
from lewm.data.collect import CollectConfig, collect
from lewm.data.config import COMPRESSIONS

p = argparse.ArgumentParser()
p.add_argument("--world", default="pusht")
p.add_argument("--episodes", type=int, default=20)
p.add_argument("--steps", type=int, default=100)
p.add_argument("--size", type=int, default=224)
p.add_argument("--seconds", type=float, default=5.0, help="time per read measurement")
args = p.parse_args()

PAPER_ROWS = {"pusht": 20_000 * 201, "tworoom": 10_000 * 101, "reacher": 10_000 * 201,
              "cube": 10_000 * 201}
rows = {}
with tempfile.TemporaryDirectory() as tmp:
    for name in COMPRESSIONS:
        path = Path(tmp) / f"{name}.h5"
        cfg = CollectConfig(args.world, episodes=args.episodes, steps=args.steps,
                            size=args.size, compression=name)
        t0 = time.perf_counter()
        collect(cfg, path, progress=False)
        write_s = time.perf_counter() - t0
        data = EpisodeData(path, in_memory=False)  # read clip by clip from disk, as at scale
        eps = range(data.num_episodes)
        ds = ClipDataset(data, eps, clip_frames=4, frameskip=5, stats=fit_stats(data, eps))
        done, step, start = 0, 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            ds.batch(batch_indices(len(ds), 128, 0, step))
            done, step = done + 128, step + 1
        clips_per_s = done / (time.perf_counter() - start)
        data.close()
        n_rows = args.episodes * (args.steps + 1)
        per_row = path.stat().st_size / n_rows
        rows[name] = {"bytes_per_frame": round(per_row), "file_mb": round(
            path.stat().st_size / 1e6, 1), "collect_steps_per_s": round(
            args.episodes * args.steps / write_s), "read_clips_per_s": round(clips_per_s),
            "read_frames_per_s": round(4 * clips_per_s),
            "paper_size_gb": round(per_row * PAPER_ROWS[args.world] / 1e9, 1)}
        print(name, rows[name], flush=True)

save(f"compression_{args.world}_{args.size}px", {
    "file": f"{args.episodes} x {args.steps}-step {args.world} episodes at {args.size} px, "
            "default collection policy",
    "read": "random batches of 128 clips (4 frames every 5 steps) from disk, one process",
    "paper_rows": PAPER_ROWS[args.world], "compressions": rows})
