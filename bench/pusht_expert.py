"""How often Push-T's collection policies solve their own episodes: the quality of the data
(good data is what separates the paper's 96 % from ~30 %). Each episode starts and aims at
the poses `reset` draws; solved = the env reported success at any of its steps.

    python bench/pusht_expert.py [--episodes 100 --steps 200]
"""

import argparse
import tempfile
from pathlib import Path

from common import save

from lewm.data.collect import CollectConfig, collect

p = argparse.ArgumentParser()
p.add_argument("--episodes", type=int, default=100)
p.add_argument("--steps", type=int, default=200)
args = p.parse_args()

# (policy, action noise std): the expert at the collection default (0.1) and around it, and
# the two weak baselines.
SETTINGS = [("expert", 0.0), ("expert", 0.1), ("expert", 0.3), ("near-block", None),
            ("random", None)]
rows = []
with tempfile.TemporaryDirectory() as tmp:
    for policy, noise in SETTINGS:
        cfg = CollectConfig(world="pusht", episodes=args.episodes, steps=args.steps, size=32,
                            policy=policy, noise_std=noise, seed=1)
        out = collect(cfg, Path(tmp) / f"{policy}-{noise}.h5", progress=False)
        rows.append({"policy": policy, "noise_std": noise,
                     "episodes_solved": round(out["episodes_solved"], 3),
                     "seconds": round(out["seconds"], 1)})
        print(rows[-1], flush=True)
save("pusht_expert", {"episodes": args.episodes, "steps": args.steps, "results": rows})
