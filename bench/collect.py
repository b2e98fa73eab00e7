"""Collection throughput of a world with its default policy (Two-Room target: 200 x 100 steps
at 64 px in <= 60 s on 2 cores). Also records how often the policy solved its episodes.

    python bench/collect.py [--world tworoom --episodes 200 --steps 100 --size 64]
"""

import argparse
import tempfile
from pathlib import Path

from common import save

from lewm.data.collect import CollectConfig, collect

p = argparse.ArgumentParser()
p.add_argument("--world", default="tworoom")
p.add_argument("--episodes", type=int, default=200)
p.add_argument("--steps", type=int, default=100)
p.add_argument("--size", type=int, default=64)
args = p.parse_args()

with tempfile.TemporaryDirectory() as tmp:
    cfg = CollectConfig(world=args.world, episodes=args.episodes, steps=args.steps,
                        size=args.size)
    out = collect(cfg, Path(tmp) / "bench.h5", progress=False)
    file_mb = (Path(tmp) / "bench.h5").stat().st_size / 2**20
save(f"collect_{args.world}_{args.size}px", {
    "world": args.world, "policy": out["policy"], "episodes": args.episodes,
    "steps": args.steps, "size": args.size, "seconds": round(out["seconds"], 2),
    "steps_per_s": round(out["steps_per_s"]), "file_mb": round(file_mb, 1),
    "episodes_solved": round(out["episodes_solved"], 3),
    **({"target_seconds": 60} if (args.world, args.size) == ("tworoom", 64) else {}),
})
