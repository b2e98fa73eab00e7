"""The CPU recipes' training step before and after a change, measured in one run: the profile
of `bench/train_profile.py` as the code stood at `--before` (a git revision, checked out
into a temporary worktree) and as it stands now, one after the other on the same machine,
each timed by its own `lewm train`.

    python bench/train_speed.py --before REV [--presets tworoom-cpu reacher-cpu pusht-cpu]
        [--variants fp32 window4 window8] [--threads 2]

`--variants` are the current code's (train_profile.py's: fp32, bf16, windowK); the
revision before runs its recipes as they were (fp32). Writes
bench/results/train_speed_cpu.json: both profiles in full, and per preset the ms per step
and the speed-up of each variant over the step before.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from common import save

ROOT = Path(__file__).resolve().parent.parent

p = argparse.ArgumentParser()
p.add_argument("--before", required=True, help="git revision of the step before")
p.add_argument("--presets", nargs="+", default=["tworoom-cpu", "reacher-cpu", "pusht-cpu"])
p.add_argument("--variants", nargs="+", default=["fp32", "window4", "window8"])
p.add_argument("--threads", type=int, default=2)
args = p.parse_args()


def profile(tree: Path, variants: list[str], tag: str) -> dict:
    """train_profile.py of the checkout `tree`, run with that checkout's lewm."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    subprocess.run([sys.executable, str(tree / "bench" / "train_profile.py"), "--presets",
                    *args.presets, "--variants", *variants, "--threads", str(args.threads),
                    "--tag", tag], cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    path = tree / "bench" / "results" / f"train_profile_cpu_{tag}.json"
    result = json.loads(path.read_text())
    path.unlink()
    return result


rev = subprocess.run(["git", "rev-parse", "--short", args.before], cwd=ROOT, check=True,
                     capture_output=True, text=True).stdout.strip()
now = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                     capture_output=True, text=True).stdout.strip()
with tempfile.TemporaryDirectory() as tmp:
    tree = Path(tmp) / "before"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True,
                   capture_output=True)
    try:
        before = profile(tree, ["fp32"], "before")
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT,
                       check=True)
after = profile(ROOT, args.variants, "after")

table = {}
for name in args.presets:
    old = before["presets"][name]["s_per_step_lewm_train"]
    row = {"before_ms": round(1000 * old, 1)}
    for variant in args.variants:
        key = name if variant == "fp32" else f"{name} {variant}"
        new = after["presets"][key]["s_per_step_lewm_train"]
        row[f"{variant}_ms"] = round(1000 * new, 1)
        row[f"{variant}_speedup"] = round(old / new, 2)
    table[name] = row
    print(name, row, flush=True)
save("train_speed_cpu", {"before_revision": rev, "after_revision": now,
                         "threads": args.threads, "ms_per_step": table,
                         "before": before, "after": after})
