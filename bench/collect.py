"""Collection throughput: 200 episodes x 100 steps of 64 px Two-Room (target <= 60 s, 2 cores).

    python bench/collect_tworoom.py [--episodes 200 --steps 100 --size 64]
"""

import argparse
import tempfile
from pathlib import Path

from common import save

from lewm.data.collect import CollectConfig, collect

p = argparse.ArgumentParser()
p.add_argument("--episodes", type=int, default=200)
p.add_argument("--steps", type=int, default=100)
p.add_argument("--size", type=int, default=64)
args = p.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    cfg = CollectConfig(episodes=args.episodes, steps=args.steps, size=args.size)
    out = collect(cfg, Path(tmp) / "bench.h5", progress=False)
    file_mb = (Path(tmp) / "bench.h5").stat().st_size / 2**20
save(f"collect_tworoom_{args.size}px", {
    "episodes": args.episodes, "steps": args.steps, "size": args.size,
    "seconds": round(out["seconds"], 2), "steps_per_s": round(out["steps_per_s"]),
    "file_mb": round(file_mb, 1), "target_seconds": 60,
})
