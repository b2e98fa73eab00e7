"""SIGKILL at random moments of training and of collection (issue 15's acceptance).

    python bench/fault_injection.py [--kills 20] [--seed 0]

Training: a `tiny` run with a checkpoint every 2 steps is killed `--kills` times at random
moments (each restart resumes from the last complete checkpoint, or starts over when none
was written yet), then resumed to the end; its final weights are compared bit for bit with
an uninterrupted run's. Collection: `lewm collect` is killed `--kills` times at random
moments; after each kill no file may exist under the final name, and after a final complete
run no temporary file may remain.
"""

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import save
from safetensors.torch import load_file

p = argparse.ArgumentParser()
p.add_argument("--kills", type=int, default=20)
p.add_argument("--seed", type=int, default=0)
args = p.parse_args()
rng = random.Random(args.seed)
LEWM = [sys.executable, "-m", "lewm.cli"]
work = Path(tempfile.mkdtemp(prefix="lewm-faults-"))


def run(*a, check=True):
    r = subprocess.run([*LEWM, *map(str, a)], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise SystemExit(f"lewm {a} failed: {r.stderr[-2000:]}")
    return r


def kill_after(cmd, seconds: float) -> int:
    proc = subprocess.Popen([*LEWM, *map(str, cmd)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=seconds)
        return proc.returncode  # finished before the kill
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return -9


data = work / "tworoom.h5"
run("collect", "tworoom", "--episodes", 12, "--steps", 40, "--size", 32, "--seed", 3, "--out",
    data, "--quiet")
train = ["--preset", "tiny", "--data", data, "--set", "steps=400", "--set", "ckpt_every=2",
         "--set", "val_every=100", "--quiet"]
reference = work / "reference"
run("train", *train, "--out", reference)

run_dir = work / "killed"
kills, fresh_starts, t0 = 0, 0, time.perf_counter()
while kills < args.kills:
    resumable = (run_dir / "checkpoint").exists() or (run_dir / "checkpoint.old").exists()
    cmd = ["train", "--resume", run_dir, "--quiet"] if resumable else [
        "train", *train, "--out", run_dir, "--force"]
    fresh_starts += not resumable
    code = kill_after(cmd, rng.uniform(1.5, 8.0))
    finished = code == 0 or (code == 2 and "already finished" in run(*cmd, check=False).stderr)
    if code == -9 and not finished:
        kills += 1
    elif finished:  # finished before its kill: start again to keep killing
        run_dir = work / f"killed{kills}"
    else:
        raise SystemExit(f"after {kills} kills, `lewm {' '.join(map(str, cmd))}` failed ({code})")
r = run("train", "--resume", run_dir, "--quiet", check=False)
assert r.returncode in (0, 2), r.stderr  # 2: already finished
a = load_file(reference / "checkpoint" / "model.safetensors")
b = load_file(run_dir / "checkpoint" / "model.safetensors")
identical = a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
training = {"kills": kills, "fresh_starts_before_a_first_checkpoint": fresh_starts,
            "final_weights_bit_identical_to_uninterrupted": identical,
            "seconds": round(time.perf_counter() - t0, 1)}
print("training", training, flush=True)

out = work / "collected.h5"
partial, t0 = 0, time.perf_counter()
for _ in range(args.kills):
    kill_after(["collect", "tworoom", "--episodes", 400, "--steps", 50, "--size", 32, "--out", out,
                "--force", "--quiet"], rng.uniform(1.5, 5.0))
    partial += out.exists() and run("info", out, check=False).returncode != 0
run("collect", "tworoom", "--episodes", 4, "--steps", 10, "--size", 32, "--out", out, "--force",
    "--quiet")
left = [p.name for p in work.glob(".collected.h5.tmp-*")]
collection = {"kills": args.kills, "partial_files_under_the_final_name": int(partial),
              "temporary_files_left_after_the_next_run": left,
              "seconds": round(time.perf_counter() - t0, 1)}
print("collection", collection, flush=True)
save("fault_injection", {"training": training, "collection": collection})
