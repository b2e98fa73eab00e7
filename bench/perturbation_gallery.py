"""What each perturbation looks like: one row per family (clean first), one column pair per
world (the episode's first frame and its 20th), at each family's default level, drawn as
`lewm eval --perturb NAME --seed 42` draws episode 0's scene.

    python bench/perturbation_gallery.py --out docs/robustness-scenes.png
"""

from __future__ import annotations

import argparse
import importlib.util

import numpy as np
from PIL import Image, ImageDraw

from lewm.envs import make_env
from lewm.evaluate import PERTURB_STREAM
from lewm.perturb import FAMILIES, PerturbedEnv, parse


def frames(world: str, family: str | None, size: int, steps: int) -> list[np.ndarray]:
    env = make_env(world, size)
    shown = env if family is None else PerturbedEnv(env, parse(family), [42, 0, PERTURB_STREAM])
    try:
        obs, _ = shown.reset(seed=0)
        rng = np.random.default_rng(0)
        out = [obs]
        for _ in range(steps):
            obs = shown.step(rng.uniform(-1, 1, env.action_space.shape))[0]
        return out + [obs]
    finally:
        env.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="docs/robustness-scenes.png")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    worlds = [w for w, pkg in (("tworoom", None), ("pusht", "pymunk"), ("reacher", "mujoco"),
                               ("cube", "ogbench")) if pkg is None or importlib.util.find_spec(pkg)]
    label_w, gap = 90, 4
    rows = []
    for family in [None, *FAMILIES]:
        cells = [np.concatenate(frames(w, family, args.size, args.steps), axis=1) for w in worlds]
        pad = np.full((args.size, gap, 3), 255, np.uint8)
        row = np.concatenate([x for c in cells for x in (c, pad)][:-1], axis=1)
        label = Image.new("RGB", (label_w, args.size), "white")
        ImageDraw.Draw(label).text((4, args.size // 2 - 6), family or "clean", fill="black")
        rows.append(np.concatenate([np.asarray(label), row], axis=1))
        rows.append(np.full((gap, rows[-1].shape[1], 3), 255, np.uint8))
    img = Image.fromarray(np.concatenate(rows[:-1], axis=0))
    img = img.resize((img.width * 2, img.height * 2), Image.NEAREST)
    img.save(args.out)
    print(f"wrote {args.out}: {', '.join(worlds)}; columns: frame 0 and frame {args.steps}")


if __name__ == "__main__":
    main()
