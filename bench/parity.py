"""lewm's paper model against the authors' (stable-worldmodel's LeWM) on the same random
weights and inputs: the max abs difference of every shared output (docs/parity.md).

    pip install -e '.[parity]'
    python bench/parity.py [--device cuda]
"""

import argparse
import sys
from pathlib import Path

import torch
from common import save

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import peer  # noqa: E402  (the test suite's loader of the authors' modules)

from lewm.model import LeWM  # noqa: E402
from lewm.model.authors import from_authors  # noqa: E402
from lewm.recipes import RECIPES  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--device", default="cpu")
p.add_argument("--seeds", type=int, default=3, help="random weights/inputs drawn per output")
args = p.parse_args()

lib = peer.load()
rows = {}
for seed in range(args.seeds):
    torch.manual_seed(seed)
    theirs = peer.build(lib).eval()
    peer.randomize(theirs, seed)
    ours = LeWM(RECIPES["paper"].train.model).eval()
    ours.load_state_dict(from_authors(theirs.state_dict()))
    diffs = peer.compare(lib, theirs.to(args.device), ours.to(args.device), seed, args.device)
    for name, value in diffs.items():
        rows[name] = max(rows.get(name, 0.0), value)
for name, value in rows.items():
    print(f"{value:9.2e}  {name}")
tag = "cuda" if args.device.startswith("cuda") else "cpu"
save(f"parity_{tag}", {"peer": f"stable-worldmodel {peer.version()}", "device": args.device,
                       "seeds": args.seeds, "precision": "fp32", "max_abs_diff": rows})
