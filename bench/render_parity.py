"""lewm's Two-Room and Push-T frames against the authors' for the same states, at 224 px:
the mean absolute pixel difference (0-255) per world (docs/parity.md).

The authors' environments need pygame, OpenCV and their package, which lewm never installs:
make a separate environment once with `bash bench/peer_env.sh`, then

    python bench/render_parity.py --peer-python .peer-venv/bin/python [--pngs DIR]

The script runs itself in that environment (`--side peer`) to render the authors' frames,
loading their environment modules by path (their package's __init__ imports torchvision).
"""

import argparse
import importlib
import importlib.util
import math
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

SIZE = 224
TWOROOM = [(60.0, 112.0), (164.0, 112.0), (112.0, 49.0), (30.0, 200.0), (203.0, 21.0),
           (100.3, 80.7), (150.6, 30.2)]  # agent (x, y), free in both worlds
PUSHT = [(256.0, 400.0, 256.0, 256.0, math.pi / 4, 0.0, 0.0),  # agent xy, block xy, angle, v
         (100.0, 100.0, 300.0, 300.0, 1.0, 0.0, 0.0),
         (400.0, 120.0, 200.0, 250.0, 0.0, 0.0, 0.0),
         (80.0, 430.0, 330.0, 180.0, 2.5, 0.0, 0.0),
         (450.0, 450.0, 150.0, 150.0, 4.0, 0.0, 0.0),
         (60.0, 60.0, 380.0, 380.0, 5.5, 0.0, 0.0)]


def peer_frames(out: Path) -> None:
    """The authors' frames (run in the peer environment)."""
    import os

    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    root = Path(importlib.util.find_spec("stable_worldmodel").submodule_search_locations[0])
    for name, sub in (("stable_worldmodel", ""), ("stable_worldmodel.envs", "envs"),
                      ("stable_worldmodel.envs.pusht", "envs/pusht"),
                      ("stable_worldmodel.envs.two_room", "envs/two_room")):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(root / sub)]
        sys.modules[name] = pkg
    top = sys.modules["stable_worldmodel"]
    top.utils = importlib.import_module("stable_worldmodel.utils")
    top.spaces = importlib.import_module("stable_worldmodel.spaces")
    two_room = importlib.import_module("stable_worldmodel.envs.two_room.env")
    pusht = importlib.import_module("stable_worldmodel.envs.pusht.env")
    env = two_room.TwoRoomEnv()
    frames = []
    for s in TWOROOM:
        s = np.array(s, np.float32)
        env.reset(seed=0, options={"state": s, "target_state": s})
        frames.append(env.render())
    np.save(out / "peer_tworoom.npy", np.stack(frames).astype(np.uint8))
    for name, goal in (("pusht", False), ("pusht_goal", True)):
        env = pusht.PushT(resolution=SIZE, with_target=goal)
        frames = []
        for s in PUSHT:
            env.reset(seed=0, options={"state": np.array(s), "goal_state": np.array(s)})
            frames.append(env.render())
        np.save(out / f"peer_{name}.npy", np.stack(frames).astype(np.uint8))


def lewm_frames() -> dict:
    from lewm.envs import make_env
    from lewm.envs.pusht import PushTRenderer

    tworoom, pusht = make_env("tworoom", SIZE), make_env("pusht", SIZE)
    goal = PushTRenderer(SIZE, draw_goal=True)
    return {"tworoom": np.stack([tworoom.render_state(np.array(s)) for s in TWOROOM]),
            "pusht": np.stack([pusht.render_state(np.array(s)) for s in PUSHT]),
            "pusht_goal": np.stack([goal.render(np.array(s)) for s in PUSHT])}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--peer-python", default=".peer-venv/bin/python")
    p.add_argument("--side", choices=["peer"], help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--pngs", help="write authors | lewm | 4 x |difference| strips here")
    args = p.parse_args()
    if args.side == "peer":
        return peer_frames(Path(args.out))
    from common import save

    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([args.peer_python, __file__, "--side", "peer", "--out", tmp], check=True)
        theirs = {k: np.load(Path(tmp) / f"peer_{k}.npy") for k in ("tworoom", "pusht",
                                                                   "pusht_goal")}
    ours = lewm_frames()
    rows = {}
    for world, a in theirs.items():
        d = np.abs(a.astype(np.int16) - ours[world].astype(np.int16))
        rows[world] = {"mean_abs": round(float(d.mean()), 4), "max_abs": int(d.max()),
                       "per_state": d.reshape(len(d), -1).mean(1).round(3).tolist()}
        print(world, rows[world])
        if args.pngs:
            from PIL import Image

            Path(args.pngs).mkdir(parents=True, exist_ok=True)
            for i in range(len(d)):
                strip = np.concatenate([a[i], ours[world][i], np.clip(4 * d[i], 0, 255)], 1)
                Image.fromarray(strip.astype(np.uint8)).save(Path(args.pngs) / f"{world}{i}.png")
    version = subprocess.run([args.peer_python, "-c", "from importlib.metadata import version; "
                              "print(version('stable-worldmodel'))"], capture_output=True,
                             text=True).stdout.strip()
    save("render_parity", {
        "peer": f"stable-worldmodel {version}", "size": SIZE,
        "note": "pusht_goal: the authors' default frames, which draw a fixed light-green goal "
                "T; lewm draws it only with PushTRenderer(draw_goal=True)",
        "before": {"tworoom": 3.759, "pusht": 2.902, "pusht_goal": 4.301,
                   "how": "lewm 0.1.0 at commit 414d0ea, the same states"},
        "mean_abs_diff": rows})


if __name__ == "__main__":
    main()
